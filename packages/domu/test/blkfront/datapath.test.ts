/**
 * blkfront's data path against a scripted back end: the queue and its
 * bounds, grants (one-off and persistent), indirect requests, error
 * statuses, a back end that lies, and teardown.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_OP, BLKIF_RSP } from "@pvkit/abi";
import { RingProtocolError } from "@pvkit/ring";
import { BlkfrontRing, type BlkDiskInfo } from "@pvkit/domu";
import { MockBack, MockMemory } from "./mock.js";

const tick = async (n = 3) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

const disk = (o: Partial<BlkDiskInfo> = {}): BlkDiskInfo => ({
  sectors: 2048,
  sectorSize: 512,
  physicalSectorSize: 512,
  vdisk: 0,
  readOnly: false,
  flush: "flush",
  discard: true,
  discardSecure: false,
  persistent: false,
  maxSegments: 11,
  ringPages: 1,
  ...o,
});

function bed(o: { info?: Partial<BlkDiskInfo>; queueDepth?: number; maxDataPages?: number; ringPages?: number; memLimit?: number; open?: boolean } = {}) {
  const mem = new MockMemory(o.memLimit);
  const pages = mem.ringPages(o.ringPages ?? 1);
  const broken: RingProtocolError[] = [];
  let notifies = 0;
  const front = new BlkfrontRing({
    ring: pages,
    memory: mem,
    handle: 51712,
    ...(o.queueDepth !== undefined && { queueDepth: o.queueDepth }),
    ...(o.maxDataPages !== undefined && { maxDataPages: o.maxDataPages }),
    notify: () => notifies++,
    onBroken: (e) => broken.push(e),
  });
  const back = new MockBack(pages, mem);
  if (o.open ?? true) front.open(disk(o.info));
  /** Lets queued operations reach the ring, serves them all, delivers the event, until quiet. */
  const pump = async () => {
    for (let i = 0; i < 100; i++) {
      await tick();
      if (back.auto() === 0) break;
      front.kick();
    }
    await tick();
  };
  return { mem, pages, front, back, broken, pump, notifies: () => notifies };
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

describe("BlkfrontRing: reading and writing", () => {
  it("writes an unaligned run of sectors and reads it back, granting a write's pages read-only and a read's writable", async () => {
    const { mem, front, back, pump } = bed();
    const data = pattern(20 * 512, 1);
    const w = front.write(5, data);
    await tick();
    const [req] = back.take();
    expect(req).toMatchObject({ operation: BLKIF_OP.WRITE, sector: 5n, indirect: false });
    expect(req!.segments.map((s) => [s.first, s.last])).toEqual([
      [5, 7],
      [0, 7],
      [0, 7],
      [0, 0],
    ]);
    expect(req!.segments.every((s) => mem.grants.get(s.gref)!.readonly)).toBe(true);
    back.serve(req!);
    front.kick();
    expect(await w).toEqual(E.right(undefined));
    expect(back.disk.subarray(5 * 512, 25 * 512)).toEqual(data);

    const r = front.read(5, 20);
    await tick();
    const [rreq] = back.take();
    expect(rreq!.segments.every((s) => !mem.grants.get(s.gref)!.readonly)).toBe(true);
    back.serve(rreq!);
    front.kick();
    expect(await r).toEqual(E.right(data));
    await pump();
    expect(mem.grants.size).toBe(0); // every one-off grant ended
    expect(front.pages).toBeLessThanOrEqual(4);
  });

  it("cuts a large transfer into requests and reassembles the read in order", async () => {
    const { front, back, pump } = bed();
    const data = pattern(300 * 512, 2);
    back.disk.set(data, 100 * 512);
    const r = front.read(100, 300);
    await pump();
    expect(await r).toEqual(E.right(data));
    expect(front.stats.requests).toBe(Math.ceil(((100 % 8) + 300) / 88));
  });

  it("uses indirect requests beyond 11 segments: one descriptor page, granted read-only", async () => {
    const { mem, front, back, pump } = bed({ info: { maxSegments: 32 } });
    const data = pattern(32 * 4096, 3);
    const w = front.write(0, data);
    await tick();
    const [req] = back.take();
    expect(req).toMatchObject({ indirect: true, operation: BLKIF_OP.WRITE });
    expect(req!.segments).toHaveLength(32);
    expect(req!.indirectGrefs).toHaveLength(1);
    expect(mem.grants.get(req!.indirectGrefs[0]!)!.readonly).toBe(true);
    back.serve(req!);
    front.kick();
    expect(await w).toEqual(E.right(undefined));
    expect(back.disk.subarray(0, data.byteLength)).toEqual(data);
    const r = front.read(0, 256);
    await pump();
    expect(await r).toEqual(E.right(data));
    expect(front.stats.indirect).toBe(2);
  });

  it("with persistent grants, grants each page once, writable, and keeps the grants until closed", async () => {
    const { mem, front, pump } = bed({ info: { persistent: true } });
    for (let i = 0; i < 6; i++) {
      const w = front.write(i * 16, pattern(4096, i));
      await pump();
      expect(E.isRight(await w)).toBe(true);
      const r = front.read(i * 16, 8);
      await pump();
      expect(await r).toEqual(E.right(pattern(4096, i)));
    }
    expect(mem.granted).toBe(1); // one page, reused (LIFO) for every request
    expect([...mem.grants.values()].every((g) => !g.readonly)).toBe(true);
    front.close();
    expect(mem.grants.size).toBe(0);
    expect(mem.allocated).toBe(0);
  });

  it("flushes and discards with their operations; a flush is a no-op without a cache to flush", async () => {
    const { front, back } = bed();
    const f = front.flush();
    const d = front.discard(8, 24);
    await tick();
    const reqs = back.take();
    expect(reqs.map((r) => [r.operation, r.sector, r.nrSectors, r.segments.length])).toEqual([
      [BLKIF_OP.FLUSH_DISKCACHE, 0n, undefined, 0],
      [BLKIF_OP.DISCARD, 8n, 24n, 0],
    ]);
    reqs.forEach((r) => back.serve(r));
    front.kick();
    expect([await f, await d]).toEqual([E.right(undefined), E.right(undefined)]);

    const none = bed({ info: { flush: "none", discard: false } });
    expect(await none.front.flush()).toEqual(E.right(undefined));
    expect(E.isLeft(await none.front.discard(0, 8)) && (await none.front.discard(0, 8))).toMatchObject({ left: { name: "EOPNOTSUPP" } });
    await tick();
    expect(none.back.take()).toEqual([]);
  });
});

describe("BlkfrontRing: the queue", () => {
  it("admits queueDepth operations; the next caller waits, in order, until one completes", async () => {
    const { front, back } = bed({ queueDepth: 2 });
    const done: number[] = [];
    const ops = [0, 1, 2].map((i) => front.write(i * 8, pattern(4096, i)).then(() => done.push(i)));
    await tick();
    expect(front.stats.queueWaits).toBe(1);
    const first = back.take();
    expect(first).toHaveLength(2);
    back.serve(first[0]!);
    front.kick();
    await tick();
    expect(done).toEqual([0]);
    const third = back.take();
    expect(third.map((r) => r.sector)).toEqual([16n]);
    back.serve(first[1]!);
    back.serve(third[0]!);
    front.kick();
    await Promise.all(ops);
    expect(done).toEqual([0, 1, 2]);
  });

  it("a request waits while the ring is full and goes out when a response frees a slot", async () => {
    const { front, back } = bed({ queueDepth: 100 });
    expect(front.size).toBe(32);
    const reads = Array.from({ length: 40 }, (_, i) => front.read(i, 1));
    await tick();
    const batch = back.take();
    expect(batch).toHaveLength(32);
    expect(front.inFlight).toBe(32);
    expect(front.queued).toBe(8);
    expect(front.stats.ringFull).toBeGreaterThan(0);
    batch.slice(0, 5).forEach((r) => back.serve(r));
    front.kick();
    const more = back.take();
    expect(more).toHaveLength(5);
    expect(front.queued).toBe(3);
    [...batch.slice(5), ...more].forEach((r) => back.serve(r));
    front.kick();
    const last = back.take();
    expect(last).toHaveLength(3);
    last.forEach((r) => back.serve(r));
    front.kick();
    expect((await Promise.all(reads)).every(E.isRight)).toBe(true);
  });

  it("a request waits for data pages when the page budget is spent", async () => {
    const { front, back, mem } = bed({ maxDataPages: 4 });
    const a = front.write(0, pattern(4 * 4096, 1));
    const b = front.write(32, pattern(4 * 4096, 2));
    await tick();
    const first = back.take();
    expect(first).toHaveLength(1);
    expect(front.stats.pageWaits).toBeGreaterThan(0);
    expect(mem.allocated).toBe(4);
    back.serve(first[0]!);
    front.kick();
    const second = back.take();
    expect(second.map((r) => r.sector)).toEqual([32n]);
    back.serve(second[0]!);
    front.kick();
    expect([await a, await b]).toEqual([E.right(undefined), E.right(undefined)]);
    expect(mem.allocated).toBe(4);
  });

  it("fails with ENOMEM when the guest has no page at all for the data", async () => {
    const { front } = bed({ memLimit: 0 });
    const r = await front.write(0, new Uint8Array(512));
    expect(E.isLeft(r) && r.left.name).toBe("ENOMEM");
  });

  it("checks ranges and sizes before queueing, and answers ENODEV until open", async () => {
    const { front } = bed();
    expect(await front.read(2047, 2)).toMatchObject({ left: { name: "EINVAL" } });
    expect(await front.write(0, new Uint8Array(100))).toMatchObject({ left: { name: "EINVAL" } });
    expect(await front.discard(-1, 1)).toMatchObject({ left: { name: "EINVAL" } });
    const closed = bed({ open: false });
    expect(await closed.front.read(0, 1)).toMatchObject({ left: { name: "ENODEV" } });
  });
});

describe("BlkfrontRing: what the back end answers", () => {
  it("BLKIF_RSP_ERROR fails the operation with EIO and the status", async () => {
    const { front, back } = bed();
    const w = front.write(0, new Uint8Array(4096));
    await tick();
    back.serve(back.take()[0]!, BLKIF_RSP.ERROR);
    front.kick();
    expect(await w).toMatchObject({ left: { name: "EIO", status: BLKIF_RSP.ERROR, op: "write" } });
  });

  it("EOPNOTSUPP to a flush or discard turns the feature off, as Linux blkfront does", async () => {
    const { front, back } = bed();
    const f = front.flush();
    const d = front.discard(0, 8);
    await tick();
    for (const r of back.take()) back.serve(r, BLKIF_RSP.EOPNOTSUPP);
    front.kick();
    expect(await f).toMatchObject({ left: { name: "EOPNOTSUPP" } });
    expect(await d).toMatchObject({ left: { name: "EOPNOTSUPP" } });
    expect(await front.flush()).toEqual(E.right(undefined));
    expect(await front.discard(0, 8)).toMatchObject({ left: { name: "EOPNOTSUPP" } });
    await tick();
    expect(back.take()).toEqual([]);
  });

  it("a response for no request in flight, or with the wrong operation, breaks the ring: everything fails", async () => {
    for (const lie of ["id", "operation"] as const) {
      const { front, back, broken } = bed();
      const w = front.write(0, new Uint8Array(4096));
      const r = front.read(8, 8);
      await tick();
      const [req] = back.take();
      if (lie === "id") back.respond(999n, BLKIF_OP.WRITE, 0);
      else back.respond(req!.id, BLKIF_OP.READ, 0);
      front.kick();
      expect(broken).toHaveLength(1);
      expect(front.state).toBe("broken");
      expect(await w).toMatchObject({ left: { name: "EIO" } });
      expect(await r).toMatchObject({ left: { name: "EIO" } });
      expect(await front.read(0, 1)).toMatchObject({ left: { name: "ENODEV" } });
    }
  });

  it("a response producer index past the requests outstanding is a protocol error too", () => {
    const { front, pages, broken } = bed();
    new DataView(pages[0]!.buffer).setUint32(8, 5, true); // rsp_prod = 5, nothing was asked
    front.kick();
    expect(broken).toHaveLength(1);
    expect(front.state).toBe("broken");
  });
});

describe("BlkfrontRing: closing", () => {
  it("takes what was answered, fails the rest with ENODEV, and holds back grants the back end still maps", async () => {
    const { front, back, mem } = bed({ info: { persistent: false } });
    const a = front.write(0, new Uint8Array(4096).fill(1));
    const b = front.write(8, new Uint8Array(4096).fill(2));
    const c = front.write(16, new Uint8Array(4096).fill(3));
    await tick();
    const [ra, rb] = back.take();
    back.serve(ra!); // answered but the event not seen yet
    mem.grants.get(rb!.segments[0]!.gref)!.mapped = 1; // still mapped by the back end
    front.close();
    expect(await a).toEqual(E.right(undefined));
    expect(await b).toMatchObject({ left: { name: "ENODEV" } });
    expect(await c).toMatchObject({ left: { name: "ENODEV" } });
    expect(front.reclaim.pending).toBe(1);
    expect(mem.allocated).toBe(1);
    mem.grants.get(rb!.segments[0]!.gref)!.mapped = 0;
    expect(front.reclaim.retry()).toBe(0);
    expect(mem.allocated).toBe(0);
    expect(mem.grants.size).toBe(0);
  });

  it("a multi-page ring has more slots", () => {
    expect(bed({ ringPages: 2 }).front.size).toBe(64);
    expect(bed({ ringPages: 4 }).front.size).toBe(128);
  });
});
