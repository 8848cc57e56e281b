/**
 * blkback's data path against the driver-side mock: requests through a
 * real shared ring, grants from a mock table, memory and file stores.
 */
import { describe, expect, it, vi } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BLKIF_OP, BLKIF_RSP, PAGE_SIZE, blkif_sring } from "@pvkit/abi";
import { RingProtocolError } from "@pvkit/ring";
import { BlkbackRing, FileBlockStore, MemoryBlockStore, type BlkDiskLimits, type BlkHostIo, type BlockStore } from "@pvkit/dom0";
import { MockFront, MockGrants, discard, indirect, indirectPage, rw, type Seg } from "./mock.js";

const MIB = 1 << 20;

function bed(opts: { store?: BlockStore; limits?: Partial<BlkDiskLimits>; persistent?: boolean; pages?: number; maxPersistentGrants?: number } = {}) {
  const front = new MockFront(opts.pages ?? 1);
  const grants = new MockGrants();
  const store = opts.store ?? new MemoryBlockStore(MIB);
  const broken: RingProtocolError[] = [];
  const back = new BlkbackRing({
    ring: front.pages,
    grants,
    store,
    limits: { sectors: BigInt(store.size / 512), readOnly: false, maxIndirectSegments: 256, discard: true, discardSecure: false, ...opts.limits },
    persistent: opts.persistent ?? false,
    ...(opts.maxPersistentGrants !== undefined && { maxPersistentGrants: opts.maxPersistentGrants }),
    notify: () => front.notified++,
    onBroken: (e) => broken.push(e),
  });
  const run = (...reqs: Uint8Array[]) => {
    front.send(...reqs);
    back.kick();
    return front.take();
  };
  return { front, grants, store, back, broken, run };
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
const page = (fill: number) => new Uint8Array(PAGE_SIZE).fill(fill);
const whole = (gref: number): Seg => ({ gref, first: 0, last: 7 });

describe("BlkbackRing: reads and writes", () => {
  it("writes from the granted pages' sectors and reads back into them, at the segments' offsets", () => {
    const { grants, store, run, back } = bed();
    const data = pattern(PAGE_SIZE, 1);
    const a = grants.grant(data, true); // a write's page may be granted read-only
    const b = grants.grant(pattern(PAGE_SIZE, 2), true);
    // sectors 3..7 of page a, then 0..1 of page b: 7 sectors at disk sector 13.
    const wr = run(rw(BLKIF_OP.WRITE, 1n, 13n, [{ gref: a, first: 3, last: 7 }, { gref: b, first: 0, last: 1 }]));
    expect(wr).toEqual([{ id: 1n, operation: BLKIF_OP.WRITE, status: BLKIF_RSP.OKAY }]);
    const disk = (store as MemoryBlockStore).bytes;
    expect(disk.subarray(13 * 512, 18 * 512)).toEqual(data.subarray(3 * 512, 8 * 512));
    expect(disk.subarray(18 * 512, 20 * 512)).toEqual(pattern(PAGE_SIZE, 2).subarray(0, 1024));
    expect(disk.subarray(12 * 512, 13 * 512).every((x) => x === 0)).toBe(true);

    const into = page(0xee);
    const c = grants.grant(into);
    expect(run(rw(BLKIF_OP.READ, 2n, 13n, [{ gref: c, first: 1, last: 5 }]))).toEqual([{ id: 2n, operation: BLKIF_OP.READ, status: BLKIF_RSP.OKAY }]);
    expect(into.subarray(512, 6 * 512)).toEqual(data.subarray(3 * 512, 8 * 512));
    expect(into.subarray(0, 512).every((x) => x === 0xee)).toBe(true);
    expect(into.subarray(6 * 512).every((x) => x === 0xee)).toBe(true);
    expect(grants.mapped).toBe(0);
    expect(grants.maps).toBe(3);
    expect(grants.unmaps).toBe(3);
    // xentop's VBD_RD, VBD_WR, VBD_RSECT, VBD_WSECT.
    expect(back.stats).toMatchObject({ rdReq: 1, wrReq: 1, rdSect: 5, wrSect: 7, fReq: 0, dsReq: 0 });
  });

  it("maps a read's pages writable and a write's read-only: a read into a read-only grant fails", () => {
    const { grants, run } = bed();
    const ro = grants.grant(page(1), true);
    expect(run(rw(BLKIF_OP.READ, 3n, 0n, [whole(ro)]))[0]!.status).toBe(BLKIF_RSP.ERROR);
    expect(run(rw(BLKIF_OP.WRITE, 4n, 0n, [whole(ro)]))[0]!.status).toBe(BLKIF_RSP.OKAY);
  });

  it("answers a grant that does not map with an error, and releases the pages it had mapped", () => {
    const { grants, run, back } = bed();
    const good = grants.grant(page(1));
    expect(run(rw(BLKIF_OP.WRITE, 5n, 0n, [whole(good), whole(good), whole(4242)]))).toEqual([{ id: 5n, operation: BLKIF_OP.WRITE, status: BLKIF_RSP.ERROR }]);
    expect(grants.mapped).toBe(0);
    expect(back.stats.refusals.at(-1)).toMatch(/gref 4242/);
  });

  it("answers every malformed request with an error response and keeps serving", () => {
    const { grants, run, back } = bed({ limits: { readOnly: false } });
    const g = grants.grant(page(3));
    const rsps = run(
      rw(BLKIF_OP.READ, 10n, 0n, []),
      rw(BLKIF_OP.WRITE, 11n, 0n, [whole(g)], 12),
      rw(BLKIF_OP.READ, 12n, 0n, [{ gref: g, first: 4, last: 2 }]),
      rw(BLKIF_OP.READ, 13n, 2047n, [whole(g)]),
      rw(9, 14n, 0n, []),
      indirect(BLKIF_OP.FLUSH_DISKCACHE, 15n, 0n, 1, [g]),
      discard(16n, 2040n, 100n),
      rw(BLKIF_OP.WRITE_BARRIER, 17n, 0n, [whole(g)]),
      rw(BLKIF_OP.READ, 18n, 0n, [whole(g)]), // a good one after all that
    );
    expect(rsps.map((r) => [r.id, r.operation, r.status])).toEqual([
      [10n, BLKIF_OP.READ, BLKIF_RSP.ERROR],
      [11n, BLKIF_OP.WRITE, BLKIF_RSP.ERROR],
      [12n, BLKIF_OP.READ, BLKIF_RSP.ERROR],
      [13n, BLKIF_OP.READ, BLKIF_RSP.ERROR],
      [14n, 9, BLKIF_RSP.EOPNOTSUPP],
      [15n, BLKIF_OP.FLUSH_DISKCACHE, BLKIF_RSP.ERROR],
      [16n, BLKIF_OP.DISCARD, BLKIF_RSP.ERROR],
      [17n, BLKIF_OP.WRITE_BARRIER, BLKIF_RSP.EOPNOTSUPP],
      [18n, BLKIF_OP.READ, BLKIF_RSP.OKAY],
    ]);
    expect(back.stats).toMatchObject({ requests: 9, okay: 1, errors: 6, unsupported: 2 });
    expect(grants.mapped).toBe(0);
  });
});

describe("BlkbackRing: a read-only disk", () => {
  it("reads, and refuses writes, flushes and discards with BLKIF_RSP_ERROR, leaving the disk as it was", () => {
    const store = new MemoryBlockStore(MIB);
    store.bytes.fill(0x5a, 0, 4096);
    const { grants, run } = bed({ store, limits: { readOnly: true } });
    const g = grants.grant(page(0x11));
    const r = run(
      rw(BLKIF_OP.WRITE, 1n, 0n, [whole(g)]),
      indirect(BLKIF_OP.WRITE, 2n, 0n, 1, [grants.grant(indirectPage([whole(g)]))]),
      rw(BLKIF_OP.FLUSH_DISKCACHE, 3n, 0n, []),
      discard(4n, 0n, 8n),
      rw(BLKIF_OP.READ, 5n, 0n, [whole(g)]),
    );
    expect(r.map((x) => x.status)).toEqual([BLKIF_RSP.ERROR, BLKIF_RSP.ERROR, BLKIF_RSP.ERROR, BLKIF_RSP.ERROR, BLKIF_RSP.OKAY]);
    expect(store.bytes.subarray(0, 4096).every((x) => x === 0x5a)).toBe(true);
    expect(grants.pages.get(g)!.bytes.every((x) => x === 0x5a)).toBe(true);
  });
});

describe("BlkbackRing: flush, discard, indirect", () => {
  it("a flush with segments writes them; a discard zeroes its range; a zero-length discard is a no-op", () => {
    const { grants, store, run, back } = bed();
    const g = grants.grant(page(0x77), true);
    expect(run(rw(BLKIF_OP.FLUSH_DISKCACHE, 1n, 8n, [whole(g)]), rw(BLKIF_OP.FLUSH_DISKCACHE, 2n, 0n, [])).map((x) => x.status)).toEqual([0, 0]);
    const disk = (store as MemoryBlockStore).bytes;
    expect(disk.subarray(4096, 8192).every((x) => x === 0x77)).toBe(true);
    expect(run(discard(3n, 9n, 2n), discard(4n, 0n, 0n)).map((x) => [x.operation, x.status])).toEqual([
      [BLKIF_OP.DISCARD, 0],
      [BLKIF_OP.DISCARD, 0],
    ]);
    expect(disk.subarray(9 * 512, 11 * 512).every((x) => x === 0)).toBe(true);
    expect(disk.subarray(8 * 512, 9 * 512).every((x) => x === 0x77)).toBe(true);
    expect(disk.subarray(11 * 512, 16 * 512).every((x) => x === 0x77)).toBe(true);
    // A flush's segments count as written sectors, as Linux counts a flush's bio.
    expect(back.stats).toMatchObject({ fReq: 2, dsReq: 2, wrReq: 0, wrSect: 8, rdReq: 0, rdSect: 0 });
  });

  it("an indirect write and read of 40 pages: descriptors read from the indirect page, which is unmapped after", () => {
    const { grants, store, run } = bed();
    const pages = Array.from({ length: 40 }, (_, i) => pattern(PAGE_SIZE, i));
    const refs = pages.map((p) => grants.grant(p, true));
    const desc = grants.grant(indirectPage(refs.map(whole)), true);
    expect(run(indirect(BLKIF_OP.WRITE, 7n, 64n, 40, [desc]))).toEqual([{ id: 7n, operation: BLKIF_OP.WRITE, status: 0 }]);
    const disk = (store as MemoryBlockStore).bytes;
    pages.forEach((p, i) => expect(disk.subarray((64 + i * 8) * 512, (72 + i * 8) * 512)).toEqual(p));

    const into = Array.from({ length: 40 }, () => page(0));
    const intoRefs = into.map((p) => grants.grant(p));
    const desc2 = grants.grant(indirectPage(intoRefs.map((r, i) => (i === 0 ? { gref: r, first: 4, last: 7 } : whole(r)))), true);
    expect(run(indirect(BLKIF_OP.READ, 8n, 68n, 40, [desc2]))[0]).toEqual({ id: 8n, operation: BLKIF_OP.READ, status: 0 });
    expect(into[0]!.subarray(2048)).toEqual(pages[0]!.subarray(2048));
    expect(into[1]).toEqual(disk.subarray(72 * 512, 80 * 512));
    expect(grants.mapped).toBe(0);
  });

  it("refuses an indirect request whose descriptor page does not map or holds a bad segment", () => {
    const { grants, run } = bed();
    const g = grants.grant(page(0));
    const bad = grants.grant(indirectPage([whole(g), { gref: g, first: 6, last: 3 }]), true);
    expect(run(indirect(BLKIF_OP.READ, 1n, 0n, 1, [9999]), indirect(BLKIF_OP.READ, 2n, 0n, 2, [bad])).map((x) => x.status)).toEqual([BLKIF_RSP.ERROR, BLKIF_RSP.ERROR]);
    expect(grants.mapped).toBe(0);
  });
});

describe("BlkbackRing: persistent grants", () => {
  it("maps each grant once, writable, keeps it across requests, and unmaps them all at shutdown", async () => {
    const { grants, run, back } = bed({ persistent: true });
    const refs = [grants.grant(page(1)), grants.grant(page(2))];
    for (let i = 0; i < 5; i++) {
      expect(run(rw(BLKIF_OP.WRITE, BigInt(i), BigInt(i * 16), refs.map(whole)))[0]!.status).toBe(0);
      expect(run(rw(BLKIF_OP.READ, BigInt(100 + i), BigInt(i * 16), refs.map(whole)))[0]!.status).toBe(0);
    }
    expect(grants.maps).toBe(2);
    expect(grants.mapped).toBe(2);
    expect(back.persistentGrants).toBe(2);
    expect(back.stats.persistentHits).toBe(18);
    await back.shutdown();
    expect(grants.mapped).toBe(0);
    expect(back.state).toBe("closed");
  });

  it("needs writable grants (blkif.h note 8), and maps per request beyond its budget", () => {
    const { grants, run, back } = bed({ persistent: true, maxPersistentGrants: 1 });
    const ro = grants.grant(page(1), true);
    expect(run(rw(BLKIF_OP.WRITE, 1n, 0n, [whole(ro)]))[0]!.status).toBe(BLKIF_RSP.ERROR);
    const a = grants.grant(page(1));
    const b = grants.grant(page(2));
    expect(run(rw(BLKIF_OP.WRITE, 2n, 0n, [whole(a), whole(b)]))[0]!.status).toBe(0);
    expect(back.persistentGrants).toBe(1);
    expect(grants.mapped).toBe(1);
  });
});

describe("BlkbackRing: the ring", () => {
  it("serves a four-page ring (128 slots) filled in one go", () => {
    const { grants, run, front } = bed({ pages: 4 });
    expect(front.ring.size).toBe(128);
    const g = grants.grant(page(9));
    const rsps = run(...Array.from({ length: 128 }, (_, i) => rw(BLKIF_OP.READ, BigInt(i), BigInt(i), [whole(g)])));
    expect(rsps.map((r) => r.id)).toEqual(Array.from({ length: 128 }, (_, i) => BigInt(i)));
    expect(front.notified).toBeGreaterThan(0);
  });

  it("a front end that claims more requests than the ring holds breaks its ring only", () => {
    const a = bed();
    const b = bed();
    const view = new DataView(a.front.pages[0]!.buffer);
    blkif_sring.fields.req_prod.set(view, 0, 1000);
    a.back.kick();
    expect(a.broken).toHaveLength(1);
    expect(a.broken[0]).toBeInstanceOf(RingProtocolError);
    expect(a.back.state).toBe("broken");
    a.back.kick();
    expect(a.broken).toHaveLength(1);
    // The other device is untouched.
    const g = b.grants.grant(page(1));
    expect(b.run(rw(BLKIF_OP.WRITE, 1n, 0n, [whole(g)]))[0]!.status).toBe(0);
  });

  it("notifies only when the front end's rsp_event asks (hold-off)", () => {
    const { grants, front, back } = bed();
    const g = grants.grant(page(1));
    front.send(rw(BLKIF_OP.READ, 1n, 0n, [whole(g)]), rw(BLKIF_OP.READ, 2n, 0n, [whole(g)]));
    back.kick();
    expect(front.notified).toBe(1); // rsp_event was 1: the first response wakes it, the second does not
    front.take(); // re-arms rsp_event
    front.send(rw(BLKIF_OP.READ, 3n, 0n, [whole(g)]));
    back.kick();
    expect(front.notified).toBe(2);
  });
});

describe("BlkbackRing over a file, completions arriving later", () => {
  /** Host I/O for tests: completions come back on a later turn, as they do through the host line. */
  const laterIo = (): BlkHostIo & { pending: number } => {
    const io = {
      pending: 0,
      submit<T>(task: () => Promise<T>, done: (r: E.Either<Error, T>) => void) {
        io.pending++;
        task().then(
          (v) => setImmediate(() => (io.pending--, done(E.right(v)))),
          (e: Error) => setImmediate(() => (io.pending--, done(E.left(e)))),
        );
      },
    };
    return io;
  };
  const openFile = (io: BlkHostIo, path: string, readOnly = false) =>
    new Promise<FileBlockStore>((resolve, reject) => FileBlockStore.open(io, path, readOnly, (r) => (E.isRight(r) ? resolve(r.right) : reject(r.left))));
  /** Waits for `cond`: turns of the event loop, then (a sync on a busy disk can be slow) up to 20 s of polling. */
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  };

  it("writes to and reads from the image, holding a read's pages until the data is in, and drains at shutdown", async () => {
    const dir = mkdtempSync(join(tmpdir(), "blkback-"));
    try {
      const path = join(dir, "disk.img");
      writeFileSync(path, new Uint8Array(64 * 1024 + 100)); // not whole sectors: rounded down
      const io = laterIo();
      const store = await openFile(io, path);
      expect(store.size).toBe(64 * 1024);
      const { grants, front, back } = bed({ store });
      const data = pattern(PAGE_SIZE, 5);
      const w = grants.grant(data, true);
      front.send(rw(BLKIF_OP.WRITE, 1n, 16n, [whole(w)]), rw(BLKIF_OP.FLUSH_DISKCACHE, 2n, 0n, []));
      back.kick();
      expect(back.inFlight).toBe(2);
      expect(grants.mapped).toBe(0); // a write's data was copied out at once
      await until(() => io.pending === 0);
      expect(front.take().map((r) => [r.id, r.status])).toEqual(
        expect.arrayContaining([
          [1n, 0],
          [2n, 0],
        ]),
      );
      expect(readFileSync(path).subarray(16 * 512, 24 * 512)).toEqual(Buffer.from(data));

      const into = page(0);
      const r = grants.grant(into);
      front.send(rw(BLKIF_OP.READ, 3n, 16n, [whole(r)]), rw(BLKIF_OP.READ, 4n, 200n, [whole(r)]));
      back.kick();
      expect(front.take().map((x) => [x.id, x.status])).toEqual([[4n, BLKIF_RSP.ERROR]]); // past the end: refused at once
      expect(grants.mapped).toBe(1);
      const stopped = back.shutdown();
      await until(() => io.pending === 0);
      await stopped;
      expect(front.take().map((x) => [x.id, x.status])).toEqual([[3n, 0]]);
      expect(into).toEqual(data);
      expect(grants.mapped).toBe(0);
      await new Promise<void>((resolve) => store.close(() => resolve()));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a discard zeroes the file's range; a read-only image cannot be written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "blkback-"));
    try {
      const path = join(dir, "disk.img");
      writeFileSync(path, new Uint8Array(32 * 512).fill(0xab));
      const io = laterIo();
      const store = await openFile(io, path);
      const { front, back } = bed({ store });
      front.send(discard(1n, 4n, 3n));
      back.kick();
      await until(() => io.pending === 0);
      expect(front.take()[0]!.status).toBe(0);
      const bytes = readFileSync(path);
      expect(bytes.subarray(4 * 512, 7 * 512).every((x) => x === 0)).toBe(true);
      expect(bytes[4 * 512 - 1]).toBe(0xab);
      expect(bytes[7 * 512]).toBe(0xab);
      await new Promise<void>((resolve) => store.close(() => resolve()));

      const ro = await openFile(io, path, true);
      const result = await new Promise<E.Either<Error, void>>((resolve) => ro.write(0, new Uint8Array(512), resolve));
      expect(E.isLeft(result)).toBe(true);
      await new Promise<void>((resolve) => ro.close(() => resolve()));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("closing a writable image syncs it first (a read-only one is not synced); a failed sync still closes the file and is reported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "blkback-"));
    const openFds = () => readdirSync("/proc/self/fd").length;
    try {
      const path = join(dir, "disk.img");
      writeFileSync(path, new Uint8Array(8 * 512));
      const probe = await open(path, "r");
      const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
      await probe.close();
      // Each sync notes how many files are open as it runs: the image's must still be.
      const openAtSync: number[] = [];
      const realSync = proto.datasync;
      const syncs = vi.spyOn(proto, "datasync").mockImplementation(function (this: unknown) {
        openAtSync.push(openFds());
        return realSync.call(this);
      });
      const io = laterIo();
      const closeStore = (s: FileBlockStore) => new Promise<E.Either<Error, void>>((resolve) => s.close(resolve));
      try {
        const before = openFds();
        expect(await closeStore(await openFile(io, path, true))).toEqual(E.right(undefined));
        expect(syncs).toHaveBeenCalledTimes(0);
        expect(await closeStore(await openFile(io, path))).toEqual(E.right(undefined));
        expect(openAtSync).toEqual([before + 1]);
        expect(openFds()).toBe(before);

        syncs.mockRejectedValueOnce(new Error("EIO: the disk went away"));
        const failed = await closeStore(await openFile(io, path));
        expect(E.isLeft(failed) && failed.left.message).toBe("EIO: the disk went away");
        expect(openFds()).toBe(before);
      } finally {
        syncs.mockRestore();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
