/**
 * Netback's data path against a hostile or careless frontend: the TX
 * requests of each row are put on a real ring page, the vif serves them
 * through a fake grant table, and the row says how every slot must be
 * answered, what reaches the bridge, and whether the ring is declared
 * broken. Then the RX side: frames copied into posted buffers, over
 * several slots with feature-sg, held until buffers are posted, dropped
 * when they cannot be delivered.
 */
import { describe, expect, it } from "vitest";
import { GNTST, NETIF_RSP, NETRXF, NETTXF, PAGE_SIZE, XEN_NETIF, encodeStruct, netif_extra_info, netif_tx_request, type StructValue } from "@pvkit/abi";
import { FrontRing } from "@pvkit/ring";
import { VifDataPath, netRxCodecs, netTxBackCodecs, type VifIo } from "@pvkit/dom0";

type Req = Partial<StructValue<typeof netif_tx_request>>;
type Extra = Partial<StructValue<typeof netif_extra_info>>;
type Slot = { readonly req: Req } | { readonly extra: Extra };

/** A frontend's grant table: ref → page (the page's bytes are a pattern of the ref). */
class FakeGrants {
  readonly pages = new Map<number, { page: Uint8Array; readonly: boolean }>();
  grant(ref: number, readonly = false): Uint8Array {
    const page = new Uint8Array(PAGE_SIZE).map((_, i) => (ref * 7 + i) & 0xff);
    this.pages.set(ref, { page, readonly });
    return page;
  }
  io(): VifIo {
    return {
      readFrontend: (segs) =>
        segs.map((s) => {
          const e = this.pages.get(s.gref);
          if (e === undefined) return GNTST.bad_gntref;
          if (s.offset + s.len > PAGE_SIZE) return GNTST.bad_copy_arg;
          return e.page.slice(s.offset, s.offset + s.len);
        }),
      writeFrontend: (segs) =>
        segs.map((s) => {
          const e = this.pages.get(s.gref);
          if (e === undefined) return GNTST.bad_gntref;
          if (e.readonly) return GNTST.general_error;
          e.page.set(s.data.subarray(0, s.len), s.offset);
          return GNTST.okay;
        }),
    };
  }
}

function slotBytes(s: Slot): Uint8Array {
  const b = new Uint8Array(netif_tx_request.size);
  const v = new DataView(b.buffer);
  if ("req" in s) encodeStruct(netif_tx_request, v, 0, s.req);
  else encodeStruct(netif_extra_info, v, 0, s.extra);
  return b;
}

function harness(opts: { sg?: boolean; rxQueueMax?: number } = {}) {
  const grants = new FakeGrants();
  for (let ref = 10; ref < 40; ref++) grants.grant(ref);
  const txPage = new Uint8Array(PAGE_SIZE);
  const rxPage = new Uint8Array(PAGE_SIZE);
  const tx = FrontRing.init(txPage, netTxBackCodecs);
  const rx = FrontRing.init(rxPage, netRxCodecs);
  const frames: Uint8Array[] = [];
  const broken: string[] = [];
  const notified = { tx: 0, rx: 0 };
  const vif = new VifDataPath({
    name: "vif1.0",
    txRing: txPage,
    rxRing: rxPage,
    io: grants.io(),
    sg: opts.sg ?? true,
    notifyTx: () => notified.tx++,
    notifyRx: () => notified.rx++,
    onBroken: (r) => broken.push(r),
    ...(opts.rxQueueMax !== undefined && { rxQueueMax: opts.rxQueueMax }),
  });
  vif.output = (f) => frames.push(f);
  const send = (slots: readonly Slot[]) => {
    for (const s of slots) tx.putRequest(slotBytes(s));
    tx.pushRequests();
    vif.event();
  };
  const txResponses = () => {
    const out: { id: number; status: number }[] = [];
    for (let r; (r = tx.takeResponse()) !== undefined; ) out.push(r);
    return out;
  };
  const post = (...reqs: { id: number; gref: number }[]) => {
    for (const r of reqs) rx.putRequest({ id: r.id, pad: 0, gref: r.gref });
    const notify = rx.pushRequests();
    vif.event();
    return notify;
  };
  const rxResponses = () => {
    const out: { id: number; offset: number; flags: number; status: number }[] = [];
    for (let r; (r = rx.takeResponse()) !== undefined; ) out.push(r);
    return out;
  };
  return { grants, vif, tx, rx, frames, broken, notified, send, txResponses, post, rxResponses, txPage };
}

/** The bytes a slot carries from the fake grant table. */
const content = (ref: number, offset: number, len: number) => new Uint8Array(len).map((_, i) => (ref * 7 + offset + i) & 0xff);
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

const { more_data: MORE, extra_info: EXTRA } = NETTXF;
const { OKAY, ERROR, DROPPED, NULL } = NETIF_RSP;
const chain = (n: number, each: number) =>
  Array.from({ length: n }, (_, i): Slot => ({ req: { gref: 10 + i, offset: 0, flags: i < n - 1 ? MORE : 0, id: i, size: i === 0 ? n * each : each } }));

describe("netback TX validation", () => {
  it.each<{ name: string; sg?: boolean; slots: Slot[]; statuses: number[]; frame?: Uint8Array; reason?: string }>([
    { name: "a one-slot frame", slots: [{ req: { gref: 10, offset: 100, id: 1, size: 60 } }], statuses: [OKAY], frame: content(10, 100, 60) },
    {
      name: "a frame over three slots (feature-sg)",
      slots: [
        { req: { gref: 10, offset: 0, flags: MORE, id: 1, size: 9000 } },
        { req: { gref: 11, offset: 0, flags: MORE, id: 2, size: 4096 } },
        { req: { gref: 12, offset: 8, id: 3, size: 808 } },
      ],
      statuses: [OKAY, OKAY, OKAY],
      frame: cat(content(10, 0, 4096), content(11, 0, 4096), content(12, 8, 808)),
    },
    { name: "exactly XEN_NETIF_NR_SLOTS_MIN slots", slots: chain(18, 100), statuses: Array(18).fill(OKAY), frame: cat(...Array.from({ length: 18 }, (_, i) => content(10 + i, 0, 100))) },
    { name: "a zero-size continuation slot", slots: [{ req: { gref: 10, flags: MORE, id: 1, size: 60 } }, { req: { gref: 11, id: 2, size: 0 } }], statuses: [OKAY, OKAY], frame: content(10, 0, 60) },
    { name: "a frame of 13 bytes", slots: [{ req: { gref: 10, id: 1, size: 13 } }], statuses: [ERROR], reason: "frame shorter than an Ethernet header" },
    { name: "a slot past its page (offset 4000, size 200)", slots: [{ req: { gref: 10, offset: 4000, id: 1, size: 200 } }], statuses: [ERROR], reason: "a slot crosses its page boundary" },
    {
      name: "the first slot's own part past its page",
      slots: [
        { req: { gref: 10, offset: 200, flags: MORE, id: 1, size: 5000 } },
        { req: { gref: 11, id: 2, size: 1000 } },
      ],
      statuses: [ERROR, ERROR],
      reason: "a slot crosses its page boundary",
    },
    { name: "several slots without feature-sg", sg: false, slots: chain(2, 100), statuses: [DROPPED, DROPPED], reason: "several slots without feature-sg" },
    { name: "more than XEN_NETIF_NR_SLOTS_MIN slots", slots: chain(19, 100), statuses: Array(19).fill(ERROR), reason: "19 slots, more than 18" },
    {
      name: "a later slot larger than what remains",
      slots: [
        { req: { gref: 10, flags: MORE, id: 1, size: 100 } },
        { req: { gref: 11, id: 2, size: 200 } },
      ],
      statuses: [ERROR, ERROR],
      reason: "a slot is larger than what remains of the frame",
    },
    { name: "a grant reference not granted", slots: [{ req: { gref: 99, id: 1, size: 60 } }], statuses: [ERROR], reason: `grant copy failed (GNTST ${GNTST.bad_gntref})` },
    {
      name: "a bad grant reference in a later slot",
      slots: [
        { req: { gref: 10, flags: MORE, id: 1, size: 200 } },
        { req: { gref: 1234, id: 2, size: 100 } },
      ],
      statuses: [ERROR, ERROR],
      reason: `grant copy failed (GNTST ${GNTST.bad_gntref})`,
    },
    {
      name: "an extra-info of type 0",
      slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 60 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_NONE } }],
      statuses: [ERROR, NULL],
      reason: "extra-info type 0",
    },
    {
      name: "an extra-info of type XEN_NETIF_EXTRA_TYPE_MAX",
      slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 60 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_MAX } }],
      statuses: [ERROR, NULL],
      reason: "extra-info type 5",
    },
    {
      name: "a GSO extra-info (not negotiated)",
      slots: [{ req: { gref: 10, flags: EXTRA | MORE, id: 1, size: 6000 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_GSO, gso_size: 1448, gso_type: XEN_NETIF.GSO_TYPE_TCPV4 } }, { req: { gref: 11, id: 2, size: 2000 } }],
      statuses: [ERROR, NULL, ERROR],
      reason: "GSO was not negotiated",
    },
    {
      name: "a multicast-add control request: answered, nothing sent",
      slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 0 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_MCAST_ADD, mcast_addr: new Uint8Array([1, 0, 0x5e, 0, 0, 1]) } }],
      statuses: [OKAY, NULL],
    },
    {
      name: "a hash extra-info, then the frame",
      slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 60 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_HASH, hash_type: 0, hash_algorithm: 1 } }],
      statuses: [OKAY, NULL],
      frame: content(10, 0, 60),
    },
    {
      name: "chained extras (XEN_NETIF_EXTRA_FLAG_MORE), then more data",
      slots: [
        { req: { gref: 10, flags: EXTRA | MORE, id: 1, size: 160 } },
        { extra: { type: XEN_NETIF.EXTRA_TYPE_HASH, flags: XEN_NETIF.EXTRA_FLAG_MORE } },
        { extra: { type: XEN_NETIF.EXTRA_TYPE_HASH } },
        { req: { gref: 11, id: 2, size: 100 } },
      ],
      statuses: [OKAY, NULL, NULL, OKAY],
      frame: cat(content(10, 0, 60), content(11, 0, 100)),
    },
    {
      name: "a bad frame does not spoil the next",
      slots: [{ req: { gref: 99, id: 1, size: 60 } }, { req: { gref: 10, id: 2, size: 60 } }],
      statuses: [ERROR, OKAY],
      frame: content(10, 0, 60),
      reason: `grant copy failed (GNTST ${GNTST.bad_gntref})`,
    },
  ])("$name", ({ sg, slots, statuses, frame, reason }) => {
    const h = harness({ ...(sg !== undefined && { sg }) });
    h.send(slots);
    const rsps = h.txResponses();
    expect(rsps.map((r) => r.status)).toEqual(statuses);
    // Every data slot's response carries its request's id, in ring order.
    const ids = slots.map((s) => ("req" in s ? (s.req.id ?? 0) : undefined));
    rsps.forEach((r, i) => ids[i] !== undefined && expect(r.id).toBe(ids[i]));
    expect(h.frames).toEqual(frame === undefined ? [] : [frame]);
    expect([...h.vif.stats.txErrors.keys()]).toEqual(reason === undefined ? [] : [reason]);
    expect(h.broken).toEqual([]);
    expect(h.notified.tx).toBeGreaterThan(0);
  });

  it.each<{ name: string; slots: Slot[]; overflow?: boolean; why: RegExp }>([
    { name: "a frame whose more-data slot is not published", slots: [{ req: { gref: 10, flags: MORE, id: 1, size: 200 } }], why: /NETTXF_more_data slot is missing/ },
    { name: "a frame whose extra-info slot is not published", slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 60 } }], why: /extra-info slot is missing/ },
    {
      name: "an extra chain that runs past req_prod",
      slots: [{ req: { gref: 10, flags: EXTRA, id: 1, size: 60 } }, { extra: { type: XEN_NETIF.EXTRA_TYPE_HASH, flags: XEN_NETIF.EXTRA_FLAG_MORE } }],
      why: /extra-info slot is missing/,
    },
    { name: "req_prod 10000 past rsp_prod", slots: [], overflow: true, why: /ring holds 256/ },
  ])("a broken ring — $name — stops this vif alone", ({ slots, overflow, why }) => {
    const h = harness();
    if (overflow) {
      new DataView(h.txPage.buffer).setUint32(0, 10_000, true);
      h.vif.event();
    } else h.send(slots);
    expect(h.broken).toHaveLength(1);
    expect(h.broken[0]).toMatch(why);
    expect(h.vif.broken).toMatch(why);
    // Stopped: nothing more is served, and the broken callback does not run again.
    h.vif.event();
    h.vif.deliver(new Uint8Array(60));
    expect(h.broken).toHaveLength(1);
    expect(h.frames).toEqual([]);
  });
});

describe("netback RX (feature-rx-copy)", () => {
  const frameOf = (len: number) => new Uint8Array(len).map((_, i) => (i * 13 + 5) & 0xff);

  it("holds a frame until a buffer is posted, copies it, answers in the request's slot, and notifies", () => {
    const h = harness();
    const f = frameOf(98);
    h.vif.deliver(f);
    expect(h.vif.rxQueued).toBe(1);
    // netback re-armed req_event, so the frontend's post notifies.
    expect(h.post({ id: 3, gref: 20 })).toBe(true);
    expect(h.rxResponses()).toEqual([{ id: 3, offset: 0, flags: 0, status: 98 }]);
    expect(h.grants.pages.get(20)!.page.subarray(0, 98)).toEqual(f);
    expect(h.notified.rx).toBe(1);
    expect(h.vif.stats).toMatchObject({ rxFrames: 1, rxBytes: 98 });
  });

  it("spreads a large frame over several buffers with NETRXF_more_data, once enough are posted", () => {
    const h = harness();
    const f = frameOf(9000);
    h.post({ id: 0, gref: 20 }, { id: 1, gref: 21 });
    h.vif.deliver(f);
    expect(h.rxResponses()).toEqual([]);
    h.post({ id: 2, gref: 22 });
    expect(h.rxResponses()).toEqual([
      { id: 0, offset: 0, flags: NETRXF.more_data, status: 4096 },
      { id: 1, offset: 0, flags: NETRXF.more_data, status: 4096 },
      { id: 2, offset: 0, flags: 0, status: 808 },
    ]);
    const got = cat(...[20, 21, 22].map((g, i) => h.grants.pages.get(g)!.page.subarray(0, [4096, 4096, 808][i])));
    expect(got).toEqual(f);
  });

  it.each([
    { name: "a frame over a page without feature-sg", sg: false, len: 5000, why: "frame larger than a page without feature-sg" },
    { name: "a frame over 64 KiB", sg: true, len: 70_000, why: "frame too large" },
  ])("drops $name", ({ sg, len, why }) => {
    const h = harness({ sg });
    h.vif.deliver(frameOf(len));
    expect(h.vif.rxQueued).toBe(0);
    expect(Object.fromEntries(h.vif.stats.rxDropped)).toEqual({ [why]: 1 });
  });

  it("drops frames beyond the queue while the guest posts nothing", () => {
    const h = harness({ rxQueueMax: 2 });
    for (let i = 0; i < 3; i++) h.vif.deliver(frameOf(60));
    expect(h.vif.rxQueued).toBe(2);
    expect(h.vif.stats.rxDropped.get("RX queue full")).toBe(1);
    h.post({ id: 0, gref: 20 }, { id: 1, gref: 21 }, { id: 2, gref: 22 });
    expect(h.rxResponses().map((r) => r.status)).toEqual([60, 60]);
  });

  it("answers NETIF_RSP_ERROR in the slot of a buffer it cannot copy into, and goes on", () => {
    const h = harness();
    h.grants.grant(30, true);
    h.post({ id: 0, gref: 999 }, { id: 1, gref: 30 }, { id: 2, gref: 20 });
    for (let i = 0; i < 3; i++) h.vif.deliver(frameOf(60));
    expect(h.rxResponses()).toEqual([
      { id: 0, offset: 0, flags: 0, status: ERROR },
      { id: 1, offset: 0, flags: 0, status: ERROR },
      { id: 2, offset: 0, flags: 0, status: 60 },
    ]);
    expect(h.vif.stats.rxDropped.get("grant copy failed")).toBe(2);
  });

  it("a stopped vif takes nothing", () => {
    const h = harness();
    h.vif.stop();
    h.vif.deliver(frameOf(60));
    h.send([{ req: { gref: 10, id: 1, size: 60 } }]);
    expect(h.vif.rxQueued).toBe(0);
    expect(h.txResponses()).toEqual([]);
  });
});
