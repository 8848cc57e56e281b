/**
 * The bytes a ring lives in: one or more pages, contiguous or not.
 *
 * A multi-page ring is virtually contiguous in a real guest, but in pvkit its
 * pages may be separate machine frames, so a ring is given its pages as a
 * list. An entry that lies within one page is read and written in place; one
 * that straddles two pages goes through a scratch copy. Nothing here
 * allocates after construction.
 *
 * @module
 */
import { PAGE_SIZE, type StructLayout, decodeStruct, encodeStruct, zeroStruct, type StructValue } from "@pvkit/abi";

/** Ring memory: one view of whole pages, or a list of single pages in ring order. */
export type RingMemory = Uint8Array | readonly Uint8Array[];

/**
 * Reads and writes one kind of ring entry at a byte offset of a DataView.
 * A codec may read lazily or eagerly; it must not keep the view.
 */
export interface Codec<T> {
  /** Bytes the entry occupies. */
  readonly size: number;
  /** Reads the entry at `offset`. */
  read(view: DataView, offset: number): T;
  /** Writes the entry at `offset`. */
  write(view: DataView, offset: number, value: T): void;
}

/**
 * A codec for any struct layout of `@pvkit/abi`: reads give a plain object of
 * every field; writes zero the struct first, then set the fields given.
 */
export function structCodec<L extends StructLayout>(layout: L): Codec<StructValue<L>> {
  return {
    size: layout.size,
    read: (view, offset) => decodeStruct(layout, view, offset),
    write: (view, offset, value) => {
      zeroStruct(layout, view, offset);
      encodeStruct(layout, view, offset, value);
    },
  };
}

/** Ring pages split into page views, with a scratch area for straddling entries. */
export class Pages {
  /** Total bytes. */
  readonly byteLength: number;
  private readonly views: DataView[];
  private readonly bytes: Uint8Array[];
  private readonly scratch: Uint8Array;
  private readonly scratchView: DataView;

  /** Wraps `memory`; `maxEntry` sizes the scratch area. */
  constructor(memory: RingMemory, maxEntry: number) {
    const list = memory instanceof Uint8Array ? split(memory) : [...memory];
    if (list.length === 0) throw new RangeError("a ring needs at least one page");
    for (const [i, p] of list.entries()) {
      if (p.byteLength !== PAGE_SIZE) throw new RangeError(`ring page ${i} is ${p.byteLength} bytes, not ${PAGE_SIZE}`);
    }
    this.bytes = list;
    this.views = list.map((p) => new DataView(p.buffer, p.byteOffset, p.byteLength));
    this.byteLength = list.length * PAGE_SIZE;
    this.scratch = new Uint8Array(maxEntry);
    this.scratchView = new DataView(this.scratch.buffer);
  }

  /** The first page, where a shared ring's header lives. */
  get first(): Uint8Array {
    return this.bytes[0]!;
  }

  /** Reads a `codec` entry at byte `offset` of the ring. */
  read<T>(codec: Codec<T>, offset: number): T {
    const page = offset >>> 12;
    const within = offset & (PAGE_SIZE - 1);
    if (within + codec.size <= PAGE_SIZE) return codec.read(this.views[page]!, within);
    this.copyOut(offset, codec.size);
    return codec.read(this.scratchView, 0);
  }

  /** Writes a `codec` entry at byte `offset` of the ring. */
  write<T>(codec: Codec<T>, offset: number, value: T): void {
    const page = offset >>> 12;
    const within = offset & (PAGE_SIZE - 1);
    if (within + codec.size <= PAGE_SIZE) {
      codec.write(this.views[page]!, within, value);
      return;
    }
    codec.write(this.scratchView, 0, value);
    this.copyIn(offset, codec.size);
  }

  private copyOut(offset: number, length: number): void {
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const within = at & (PAGE_SIZE - 1);
      const n = Math.min(length - done, PAGE_SIZE - within);
      this.scratch.set(this.bytes[at >>> 12]!.subarray(within, within + n), done);
      done += n;
    }
  }

  private copyIn(offset: number, length: number): void {
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const within = at & (PAGE_SIZE - 1);
      const n = Math.min(length - done, PAGE_SIZE - within);
      this.bytes[at >>> 12]!.set(this.scratch.subarray(done, done + n), within);
      done += n;
    }
  }
}

function split(memory: Uint8Array): Uint8Array[] {
  if (memory.byteLength % PAGE_SIZE !== 0) throw new RangeError(`ring memory is ${memory.byteLength} bytes, not whole pages`);
  const pages: Uint8Array[] = [];
  for (let off = 0; off < memory.byteLength; off += PAGE_SIZE) pages.push(memory.subarray(off, off + PAGE_SIZE));
  return pages;
}

/**
 * Four 32-bit words at `byteOffset` of `bytes`, for Atomics: ring indexes are
 * read and written with sequentially consistent atomics, which give the
 * ordering Xen's `xen_mb()`/`xen_wmb()` give in C, also across threads over a
 * SharedArrayBuffer.
 */
export function indexWords(bytes: Uint8Array, byteOffset: number, count: number): Uint32Array {
  const at = bytes.byteOffset + byteOffset;
  if (at % 4 !== 0) throw new RangeError("ring indexes must be 4-byte aligned");
  return new Uint32Array(bytes.buffer, at, count);
}

// Ring indexes are little-endian in Xen's x86 ABI; a Uint32Array uses the
// host's byte order, so refuse to run where the two differ.
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error("@pvkit/ring needs a little-endian host");
