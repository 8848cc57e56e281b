/**
 * What a virtual disk is backed by: bytes that blkback reads, writes,
 * flushes and discards.
 *
 * The toolstack names the backing store in the backend directory, as libxl
 * does: `type` and `params`.
 *
 * | `type`   | `params`                 | store |
 * |----------|--------------------------|-------|
 * | `file`   | a path on the host       | {@link FileBlockStore}: a raw image, real file I/O through `node:fs/promises` |
 * | `memory` | the size in bytes        | {@link MemoryBlockStore}: zeroed bytes held by dom0, gone when the device is |
 *
 * Every operation reports through a callback, never a promise the caller
 * awaits: the memory store calls it at once, the file store when the host
 * I/O has completed *and* dom0's vCPU runs again (see {@link BlkHostIo}), so
 * the data path always finishes a request on its own vCPU, where it may make
 * hypercalls.
 *
 * A discard zeroes the range: later reads return zeros, as a file whose
 * range was punched out (`FALLOC_FL_PUNCH_HOLE`, what Linux's loop device
 * does for a discard) reads.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { open, type FileHandle } from "node:fs/promises";

/** The completion of a store operation: the value, or the host's error. */
export type BlkStoreDone<T> = (result: E.Either<Error, T>) => void;

/**
 * Host I/O that completes on the kernel's vCPU: `task` runs on the host
 * (it may await anything), and `done` is called later from the kernel's
 * event handling, never from the host callback itself.
 */
export interface BlkHostIo {
  /** Starts `task` on the host; `done` gets its outcome on the kernel's vCPU. */
  submit<T>(task: () => Promise<T>, done: BlkStoreDone<T>): void;
}

/** The bytes behind a virtual disk. Offsets and lengths are in bytes, multiples of 512. */
export interface BlockStore {
  /** `"file"` or `"memory"`. */
  readonly kind: string;
  /** Size in bytes, a multiple of 512. */
  readonly size: number;
  /** Whether {@link BlockStore.discard} does anything useful (it always answers). */
  readonly canDiscard: boolean;
  /** Reads `length` bytes at `offset`. */
  read(offset: number, length: number, done: BlkStoreDone<Uint8Array>): void;
  /** Writes `data` at `offset`. */
  write(offset: number, data: Uint8Array, done: BlkStoreDone<void>): void;
  /** Makes every completed write durable. */
  flush(done: BlkStoreDone<void>): void;
  /** Forgets `length` bytes at `offset` (they read back as zeros). */
  discard(offset: number, length: number, done: BlkStoreDone<void>): void;
  /** Releases the store (closes the file). */
  close(done: BlkStoreDone<void>): void;
}

function outOfRange(size: number, offset: number, length: number): Error | undefined {
  return offset < 0 || length < 0 || offset + length > size ? new RangeError(`bytes ${offset}..${offset + length} are outside a ${size}-byte store`) : undefined;
}

/** A disk held in dom0's memory: zeros at first, gone with the device. Every operation completes at once. */
export class MemoryBlockStore implements BlockStore {
  /** `"memory"`. */
  readonly kind = "memory";
  /** Discards zero bytes in place. */
  readonly canDiscard = true;
  /** The disk's bytes. */
  readonly bytes: Uint8Array;

  /** A zeroed disk of `size` bytes (a multiple of 512). */
  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) throw new RangeError(`a memory disk's size must be a positive multiple of 512 bytes, not ${size}`);
    this.bytes = new Uint8Array(size);
  }

  /** {@inheritDoc BlockStore.read} */
  read(offset: number, length: number, done: BlkStoreDone<Uint8Array>): void {
    const bad = outOfRange(this.size, offset, length);
    done(bad ? E.left(bad) : E.right(this.bytes.slice(offset, offset + length)));
  }

  /** {@inheritDoc BlockStore.write} */
  write(offset: number, data: Uint8Array, done: BlkStoreDone<void>): void {
    const bad = outOfRange(this.size, offset, data.byteLength);
    if (bad === undefined) this.bytes.set(data, offset);
    done(bad ? E.left(bad) : E.right(undefined));
  }

  /** {@inheritDoc BlockStore.flush} */
  flush(done: BlkStoreDone<void>): void {
    done(E.right(undefined));
  }

  /** {@inheritDoc BlockStore.discard} */
  discard(offset: number, length: number, done: BlkStoreDone<void>): void {
    const bad = outOfRange(this.size, offset, length);
    if (bad === undefined) this.bytes.fill(0, offset, offset + length);
    done(bad ? E.left(bad) : E.right(undefined));
  }

  /** {@inheritDoc BlockStore.close} */
  close(done: BlkStoreDone<void>): void {
    done(E.right(undefined));
  }
}

/** Zeros written per host call when discarding. */
const ZERO_CHUNK = 1 << 20;

/**
 * A raw image file on the host. Reads and writes are positional
 * (`pread`/`pwrite`), a flush is `fdatasync`, a discard writes zeros. The
 * size is the file's, rounded down to whole sectors, as a loop device
 * rounds it.
 */
export class FileBlockStore implements BlockStore {
  /** `"file"`. */
  readonly kind = "file";
  /** Discards zero the range. */
  readonly canDiscard = true;

  private constructor(
    private readonly io: BlkHostIo,
    private readonly handle: FileHandle,
    /** The path opened. */
    readonly path: string,
    /** Size in bytes. */
    readonly size: number,
    /** Opened read-only. */
    readonly readOnly: boolean,
  ) {}

  /** Opens `path` (read-only when `readOnly`, else read-write; it must exist) and learns its size. */
  static open(io: BlkHostIo, path: string, readOnly: boolean, done: BlkStoreDone<FileBlockStore>): void {
    io.submit(
      async () => {
        const fh = await open(path, readOnly ? "r" : "r+");
        try {
          const st = await fh.stat();
          if (!st.isFile()) throw new Error(`${path} is not a regular file`);
          return { fh, size: Math.floor(st.size / 512) * 512 };
        } catch (e) {
          await fh.close();
          throw e;
        }
      },
      (r) => done(E.map(({ fh, size }: { fh: FileHandle; size: number }) => new FileBlockStore(io, fh, path, size, readOnly))(r)),
    );
  }

  /** {@inheritDoc BlockStore.read} */
  read(offset: number, length: number, done: BlkStoreDone<Uint8Array>): void {
    const bad = outOfRange(this.size, offset, length);
    if (bad) return done(E.left(bad));
    this.io.submit(async () => {
      const buf = new Uint8Array(length);
      for (let got = 0; got < length; ) {
        const { bytesRead } = await this.handle.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break; // past the end of a file that shrank: the rest reads as zeros
        got += bytesRead;
      }
      return buf;
    }, done);
  }

  /** {@inheritDoc BlockStore.write} */
  write(offset: number, data: Uint8Array, done: BlkStoreDone<void>): void {
    const bad = outOfRange(this.size, offset, data.byteLength);
    if (bad) return done(E.left(bad));
    this.io.submit(async () => {
      for (let put = 0; put < data.byteLength; ) put += (await this.handle.write(data, put, data.byteLength - put, offset + put)).bytesWritten;
    }, done);
  }

  /** {@inheritDoc BlockStore.flush} */
  flush(done: BlkStoreDone<void>): void {
    this.io.submit(() => this.handle.datasync(), done);
  }

  /** {@inheritDoc BlockStore.discard} */
  discard(offset: number, length: number, done: BlkStoreDone<void>): void {
    const bad = outOfRange(this.size, offset, length);
    if (bad) return done(E.left(bad));
    this.io.submit(async () => {
      const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
      for (let at = 0; at < length; ) {
        const n = Math.min(zeros.byteLength, length - at);
        at += (await this.handle.write(zeros, 0, n, offset + at)).bytesWritten;
      }
    }, done);
  }

  /**
   * Closes the file, after an `fdatasync` when it was writable: what the
   * guest wrote is on the disk once the device has gone, flushed or not. The
   * file is closed even when the sync fails; the sync's error is the answer.
   */
  close(done: BlkStoreDone<void>): void {
    this.io.submit(async () => {
      try {
        if (!this.readOnly) await this.handle.datasync();
      } finally {
        await this.handle.close();
      }
    }, done);
  }
}

/** How the toolstack described the store: `type`, `params` and `mode` of the backend directory. */
export interface BlkStoreSpec {
  /** `file` or `memory`. */
  readonly type: "file" | "memory";
  /** The file's path, or the memory disk's size in bytes. */
  readonly params: string;
  /** No `w` in `mode`: the disk is read-only (Linux blkback's test). */
  readonly readOnly: boolean;
}

/** Parses the backend keys `type`, `params` and `mode` into a {@link BlkStoreSpec}, or says what is wrong. */
export function parseStoreSpec(type: string | undefined, params: string | undefined, mode: string | undefined): E.Either<string, BlkStoreSpec> {
  if (params === undefined || params === "") return E.left("no params");
  const readOnly = !(mode ?? "w").includes("w");
  switch (type ?? "file") {
    case "file":
      return E.right({ type: "file", params, readOnly });
    case "memory": {
      const size = /^\d+$/.test(params) ? Number(params) : NaN;
      if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) return E.left(`memory disk size "${params}" is not a positive multiple of 512 bytes`);
      return E.right({ type: "memory", params, readOnly });
    }
    default:
      return E.left(`backing store type "${type}" is not supported (file, memory)`);
  }
}

/** Opens the store `spec` names; a file store needs `io`. */
export function openBlockStore(spec: BlkStoreSpec, io: BlkHostIo | undefined, done: BlkStoreDone<BlockStore>): void {
  if (spec.type === "memory") return done(E.right(new MemoryBlockStore(Number(spec.params))));
  if (io === undefined) return done(E.left(new Error("file-backed disks need host I/O, which only the privileged domain has")));
  FileBlockStore.open(io, spec.params, spec.readOnly, done);
}
