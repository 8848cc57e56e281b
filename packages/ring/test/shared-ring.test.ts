import { describe, expect, it } from "vitest";
import {
  BLKIF_OP,
  PAGE_SIZE,
  blkif_request,
  blkif_response,
  blkif_sring,
  netif_rx_request,
  netif_rx_response,
  netif_tx_request,
  netif_tx_response,
  ringSize,
} from "@pvkit/abi";
import { BackRing, FrontRing, RingFullError, RingProtocolError, structCodec, type RingCodecs } from "@pvkit/ring";

const blkif = { request: structCodec(blkif_request), response: structCodec(blkif_response) };
type Req = ReturnType<typeof blkif.request.read>;
type Rsp = ReturnType<typeof blkif.response.read>;

/** A counter-carrying codec pair of any entry size, for protocol tests that do not care about blkif. */
function counterCodecs(size: number): RingCodecs<number, number> {
  const c = { size, read: (v: DataView, o: number) => v.getUint32(o, true), write: (v: DataView, o: number, x: number) => v.setUint32(o, x, true) };
  return { request: c, response: c };
}

function readRequest(id: number): Partial<Req> {
  return { operation: BLKIF_OP.READ, nr_segments: 1, handle: 0, id: BigInt(id), sector_number: BigInt(id * 8), seg: [{ gref: 100 + id, first_sect: 0, last_sect: 7 }] };
}

function pair(pages = 1) {
  const mem = new Uint8Array(new SharedArrayBuffer(pages * PAGE_SIZE));
  const front = FrontRing.init(mem, blkif);
  const back = BackRing.attach<Req, Rsp>(mem, blkif);
  return { mem, front, back, header: new DataView(mem.buffer) };
}

describe("ring size", () => {
  it.each([
    ["blkif, 1 page", PAGE_SIZE, 112, 32],
    ["blkif, 2 pages", 2 * PAGE_SIZE, 112, 64],
    ["blkif, 4 pages", 4 * PAGE_SIZE, 112, 128],
    ["netif tx, 1 page", PAGE_SIZE, 12, 256],
    ["netif rx, 1 page", PAGE_SIZE, 8, 256],
    ["exact fit", 64 + 4 * 16, 16, 4],
    ["one short of a power of two", 64 + 7 * 16, 16, 4],
  ])("%s: %i bytes of %i-byte entries hold %i", (_name, bytes, entry, want) => {
    expect(ringSize(bytes, entry)).toBe(want);
  });

  it("refuses memory with no room for one entry", () => {
    expect(() => ringSize(64, 112)).toThrow(RangeError);
  });

  it("matches the entries of the netif rings built on the abi layouts", () => {
    const mem = new Uint8Array(PAGE_SIZE);
    expect(FrontRing.init(mem, { request: structCodec(netif_tx_request), response: structCodec(netif_tx_response) }).size).toBe(256);
    expect(FrontRing.init(mem, { request: structCodec(netif_rx_request), response: structCodec(netif_rx_response) }).size).toBe(256);
  });
});

describe("front and back exchange", () => {
  it("init writes Xen's SHARED_RING_INIT header", () => {
    const mem = new Uint8Array(PAGE_SIZE).fill(0xaa);
    FrontRing.init(mem, blkif);
    const v = new DataView(mem.buffer);
    const f = blkif_sring.fields;
    expect([f.req_prod, f.req_event, f.rsp_prod, f.rsp_event].map((x) => x.get(v, 0))).toEqual([0, 1, 0, 1]);
    expect(mem.subarray(16, 64).every((b) => b === 0)).toBe(true);
    expect(mem[64]).toBe(0xaa); // slots are not the header's business
  });

  it("delivers requests and responses with every field intact", () => {
    const { front, back } = pair();
    for (let i = 0; i < 3; i++) front.putRequest(readRequest(i) as Req);
    expect(back.unconsumedRequests()).toBe(0); // not pushed yet
    expect(front.pushRequests()).toBe(true);
    const got: Req[] = [];
    for (let r; (r = back.takeRequest()) !== undefined; ) got.push(r);
    expect(got.map((r) => [r.id, r.sector_number, r.seg[0]!.gref, r.seg[0]!.last_sect])).toEqual([
      [0n, 0n, 100, 7],
      [1n, 8n, 101, 7],
      [2n, 16n, 102, 7],
    ]);
    for (const r of got) back.putResponse({ id: r.id, operation: r.operation, status: -1 });
    expect(back.pushResponses()).toBe(true);
    const rsps: Rsp[] = [];
    for (let r; (r = front.takeResponse()) !== undefined; ) rsps.push(r);
    expect(rsps.map((r) => [r.id, r.status])).toEqual([
      [0n, -1],
      [1n, -1],
      [2n, -1],
    ]);
  });

  it.each([
    // [req_event the back end set, requests before the push, requests in the push, notify?]
    { event: 1, before: 0, pushed: 1, notify: true },
    { event: 1, before: 1, pushed: 1, notify: false }, // event index already passed: back end is awake
    { event: 5, before: 0, pushed: 4, notify: false }, // asks to be woken at the 5th request only
    { event: 5, before: 0, pushed: 5, notify: true },
    { event: 5, before: 4, pushed: 3, notify: true },
    { event: 4, before: 3, pushed: 2, notify: true },
    { event: 3, before: 3, pushed: 2, notify: false }, // the event index equals the old producer: that push already woke it
  ])("push with req_event $event after $before requests, pushing $pushed: notify $notify", ({ event, before, pushed, notify }) => {
    const { front, header } = pair();
    for (let i = 0; i < before; i++) front.putRequest(readRequest(i) as Req);
    front.pushRequests();
    blkif_sring.fields.req_event.set(header, 0, event);
    for (let i = 0; i < pushed; i++) front.putRequest(readRequest(i) as Req);
    expect(front.pushRequests()).toBe(notify);
  });

  it("counts free slots and refuses a request when full", () => {
    const { front, back } = pair();
    for (let i = 0; i < front.size; i++) front.putRequest(readRequest(i) as Req);
    expect(front.full).toBe(true);
    expect(() => front.putRequest(readRequest(99) as Req)).toThrow(RingFullError);
    front.pushRequests();
    const r = back.takeRequest()!;
    back.putResponse({ id: r.id, operation: r.operation, status: 0 });
    back.pushResponses();
    expect(front.full).toBe(true); // a slot frees only once its response is taken
    front.takeResponse();
    expect(front.freeRequests).toBe(1);
  });

  it("final checks re-arm the event index one past the consumer", () => {
    const { front, back, header } = pair();
    front.putRequest(readRequest(0) as Req);
    front.pushRequests();
    expect(back.finalCheckForRequests()).toBe(true); // work pending: no re-arm
    back.takeRequest();
    expect(back.finalCheckForRequests()).toBe(false);
    expect(blkif_sring.fields.req_event.get(header, 0)).toBe(2);
    expect(front.finalCheckForResponses()).toBe(false);
    expect(blkif_sring.fields.rsp_event.get(header, 0)).toBe(1);
  });

  it("a response without a request is refused", () => {
    const { back } = pair();
    expect(() => back.putResponse({ id: 0n, operation: 0, status: 0 })).toThrow(/every request taken has been answered/);
  });

  it("attach at an index near 2^32 wraps through zero", () => {
    const mem = new Uint8Array(PAGE_SIZE);
    const start = 0xffff_fffe;
    const v = new DataView(mem.buffer);
    for (const f of ["req_prod", "rsp_prod"] as const) blkif_sring.fields[f].set(v, 0, start);
    for (const f of ["req_event", "rsp_event"] as const) blkif_sring.fields[f].set(v, 0, start + 1);
    const front = FrontRing.attach(mem, blkif, start);
    const back = BackRing.attach<Req, Rsp>(mem, blkif, start);
    for (let i = 0; i < 5; i++) front.putRequest(readRequest(i) as Req);
    expect(front.pushRequests()).toBe(true);
    expect(front.reqProdPvt).toBe(3);
    const ids: bigint[] = [];
    for (let r; (r = back.takeRequest()) !== undefined; ) {
      ids.push(r.id);
      back.putResponse({ id: r.id, operation: r.operation, status: 0 });
    }
    expect(ids).toEqual([0n, 1n, 2n, 3n, 4n]);
    back.pushResponses();
    expect(front.unconsumedResponses()).toBe(5);
  });
});

describe("entries that straddle pages", () => {
  it("a 2-page ring given as two separate pages carries every slot, including ones across the page boundary", () => {
    // Two pages that are not adjacent in memory: the ring sees only the list.
    const machine = new Uint8Array(new SharedArrayBuffer(3 * PAGE_SIZE));
    const pages = [machine.subarray(2 * PAGE_SIZE), machine.subarray(0, PAGE_SIZE)];
    const front = FrontRing.init(pages, blkif);
    const back = BackRing.attach<Req, Rsp>(pages, blkif);
    expect(front.size).toBe(64);
    // Slot 36 spans bytes 4096+..: 64 + 36*112 = 4096, slot 35 = 3984..4096 fits; slot 36 starts page 2.
    // Entry 35 ends exactly at 4096; entries straddle at other sizes, so run the whole ring twice.
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 64; i++) front.putRequest(readRequest(round * 64 + i) as Req);
      front.pushRequests();
      for (let i = 0; i < 64; i++) {
        const r = back.takeRequest()!;
        expect(r.id).toBe(BigInt(round * 64 + i));
        expect(r.seg[0]!.gref).toBe(100 + round * 64 + i);
        back.putResponse({ id: r.id, operation: r.operation, status: 0 });
      }
      back.pushResponses();
      for (let i = 0; i < 64; i++) expect(front.takeResponse()!.id).toBe(BigInt(round * 64 + i));
    }
    expect(machine.subarray(PAGE_SIZE, 2 * PAGE_SIZE).every((b) => b === 0)).toBe(true); // the gap page is untouched
  });

  it("entries of a size that does not divide the page are split and rejoined", () => {
    const pages = [new Uint8Array(PAGE_SIZE), new Uint8Array(PAGE_SIZE)];
    const codecs = counterCodecs(100); // 8128/100 = 81 → 64 slots; slot 40 is at 4064..4164
    const front = FrontRing.init(pages, codecs);
    const back = BackRing.attach(pages, codecs);
    for (let i = 0; i < 64; i++) front.putRequest(0xdead0000 + i);
    front.pushRequests();
    const got: number[] = [];
    for (let r; (r = back.takeRequest()) !== undefined; ) got.push(r);
    expect(got).toEqual(Array.from({ length: 64 }, (_, i) => 0xdead0000 + i));
  });

  it("refuses pages that are not page-sized", () => {
    expect(() => FrontRing.init([new Uint8Array(100)], blkif)).toThrow(/not 4096/);
    expect(() => FrontRing.init(new Uint8Array(PAGE_SIZE + 1), blkif)).toThrow(/whole pages/);
    expect(() => FrontRing.init([], blkif)).toThrow(/at least one page/);
  });
});

describe("a hostile or broken peer", () => {
  it.each([
    ["one past the ring", 33],
    ["far ahead", 1_000_000],
    ["behind the consumer (negative distance)", 0xffff_ffff],
  ])("a back ring reports req_prod %s as a protocol error", (_name, reqProd) => {
    const { back, header } = pair();
    blkif_sring.fields.req_prod.set(header, 0, reqProd);
    expect(() => back.unconsumedRequests()).toThrow(RingProtocolError);
    expect(() => back.takeRequest()).toThrow(RingProtocolError);
    expect(() => back.finalCheckForRequests()).toThrow(RingProtocolError);
    expect(back.reqCons).toBe(0);
  });

  it("a back ring accepts a front end that filled the ring exactly", () => {
    const { back, header } = pair();
    blkif_sring.fields.req_prod.set(header, 0, 32);
    expect(back.unconsumedRequests()).toBe(32);
  });

  it("a front ring reports responses it never asked for as a protocol error", () => {
    const { front, header } = pair();
    front.putRequest(readRequest(0) as Req);
    front.pushRequests();
    blkif_sring.fields.rsp_prod.set(header, 0, 2);
    expect(() => front.takeResponse()).toThrow(RingProtocolError);
    expect(front.rspCons).toBe(0);
  });
});
