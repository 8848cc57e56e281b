/**
 * netfront's data path against a careless or hostile backend: responses
 * are written straight into the ring pages, and the frontend must drop
 * what is malformed, keep its RX buffers posted, and declare the ring
 * broken when the backend breaks the protocol.
 */
import { describe, expect, it } from "vitest";
import { NETIF_RSP, NETRXF, NETTXF, PAGE_SIZE, XEN_NETIF } from "@pvkit/abi";
import { BackRing } from "@pvkit/ring";
import { NetfrontDataPath, netRxFrontCodecs, netTxFrontCodecs, type NetBuffer } from "@pvkit/domu";

function setup(opts: { sg?: boolean; rx?: number; tx?: number } = {}) {
  let ref = 100;
  const buf = (): NetBuffer => ({ ref: ref++, page: new Uint8Array(PAGE_SIZE) });
  const txPage = new Uint8Array(PAGE_SIZE);
  const rxPage = new Uint8Array(PAGE_SIZE);
  const rxBuffers = Array.from({ length: opts.rx ?? 4 }, buf);
  const frames: Uint8Array[] = [];
  const broken: string[] = [];
  let notified = 0;
  const dp = new NetfrontDataPath({
    txRing: txPage,
    rxRing: rxPage,
    txBuffers: Array.from({ length: opts.tx ?? 4 }, buf),
    rxBuffers,
    sg: opts.sg ?? true,
    notify: () => notified++,
    onFrame: (f) => frames.push(f),
    onBroken: (r) => broken.push(r),
  });
  const tx = BackRing.attach(txPage, netTxFrontCodecs);
  const rx = BackRing.attach(rxPage, netRxFrontCodecs);
  const bufferOf = (gref: number) => rxBuffers.find((b) => b.ref === gref)!;
  /** Answers the next RX request with `fill` bytes written at `offset` of its buffer. */
  const answer = (status: number, flags = 0, offset = 0, fill = 0x5a) => {
    const req = rx.takeRequest()!;
    if (status > 0) bufferOf(req.gref).page.fill(fill, offset, Math.min(PAGE_SIZE, offset + status));
    rx.putResponse({ id: req.id, offset, flags, status });
    return req;
  };
  /** An extra-info in the next RX slot: type in byte 0, flags in byte 1 (the high byte of `id`). */
  const extra = (more: boolean) => {
    rx.takeRequest();
    rx.putResponse({ id: XEN_NETIF.EXTRA_TYPE_GSO | ((more ? XEN_NETIF.EXTRA_FLAG_MORE : 0) << 8), offset: 0, flags: 0, status: 0 });
  };
  const deliver = () => {
    rx.pushResponses();
    tx.pushResponses();
    dp.event();
  };
  return { dp, tx, rx, frames, broken, answer, extra, deliver, txPage, notified: () => notified };
}

describe("netfront RX", () => {
  it("posts every buffer at start with ids equal to their ring slots", () => {
    const h = setup({ rx: 4 });
    const reqs = Array.from({ length: 4 }, () => h.rx.takeRequest()!);
    expect(reqs.map((r) => r.id)).toEqual([0, 1, 2, 3]);
    expect(new Set(reqs.map((r) => r.gref)).size).toBe(4);
    expect(h.rx.takeRequest()).toBeUndefined();
  });

  it.each<{ name: string; steps: (h: ReturnType<typeof setup>) => void; frames: number[]; dropped?: string }>([
    { name: "a one-slot frame", steps: (h) => h.answer(60), frames: [60] },
    { name: "a frame over three slots", steps: (h) => (h.answer(4096, NETRXF.more_data), h.answer(4096, NETRXF.more_data), h.answer(808)), frames: [9000] },
    { name: "a frame at an offset", steps: (h) => h.answer(100, 0, 2000), frames: [100] },
    { name: "an error status", steps: (h) => h.answer(NETIF_RSP.ERROR), frames: [], dropped: "backend error" },
    { name: "a dropped status", steps: (h) => h.answer(NETIF_RSP.DROPPED), frames: [], dropped: "backend dropped it" },
    { name: "a slot past its page", steps: (h) => h.answer(200, 0, 4000), frames: [], dropped: "a slot runs past its page" },
    { name: "a runt", steps: (h) => h.answer(13), frames: [], dropped: "frame shorter than an Ethernet header" },
    {
      name: "an error in the middle spoils the whole frame, and the next frame is fine",
      steps: (h) => (h.answer(4096, NETRXF.more_data), h.answer(NETIF_RSP.ERROR, NETRXF.more_data), h.answer(60), h.answer(70)),
      frames: [70],
      dropped: "backend error",
    },
    { name: "extra-info slots after NETRXF_extra_info are skipped", steps: (h) => (h.answer(1000, NETRXF.extra_info | NETRXF.more_data), h.extra(true), h.extra(false), h.answer(500)), frames: [1500] },
  ])("$name", ({ steps, frames, dropped }) => {
    const h = setup({ rx: 8 });
    steps(h);
    h.deliver();
    expect(h.frames.map((f) => f.length)).toEqual(frames);
    expect([...h.dp.stats.rxDropped.keys()]).toEqual(dropped === undefined ? [] : [dropped]);
    expect(h.broken).toEqual([]);
    // Every slot answered got its buffer posted again.
    let posted = 0;
    while (h.rx.takeRequest() !== undefined) posted++;
    expect(posted).toBe(8);
  });

  it("drops a frame of more than XEN_NETIF_NR_SLOTS_MIN slots", () => {
    const h = setup({ rx: 32 });
    for (let i = 0; i < 19; i++) h.answer(100, i < 18 ? NETRXF.more_data : 0);
    h.deliver();
    expect(h.frames).toEqual([]);
    expect(h.dp.stats.rxDropped.get("too many slots")).toBe(1);
  });

  it("copies the data out of the buffer before reposting it", () => {
    const h = setup({ rx: 1 });
    h.answer(60, 0, 0, 0x11);
    h.deliver();
    h.answer(60, 0, 0, 0x22);
    h.deliver();
    expect(h.frames.map((f) => f[0])).toEqual([0x11, 0x22]);
  });
});

describe("netfront TX", () => {
  it("splits a frame over slots with NETTXF_more_data, the first carrying the total size", () => {
    const h = setup({ tx: 4 });
    const f = new Uint8Array(9000).map((_, i) => i & 0xff);
    expect(h.dp.transmit(f)).toBe("sent");
    const reqs = Array.from({ length: 3 }, () => h.tx.takeRequest()!);
    expect(reqs.map((r) => [r.flags, r.size, r.offset])).toEqual([
      [NETTXF.more_data, 9000, 0],
      [NETTXF.more_data, 4096, 0],
      [0, 808, 0],
    ]);
    expect(h.notified()).toBe(1);
    expect(h.dp.transmit(f)).toBe("busy"); // one buffer left
    for (const r of reqs) h.tx.putResponse({ id: r.id, status: NETIF_RSP.OKAY });
    h.deliver();
    expect(h.dp.txInFlight).toBe(0);
    expect(h.dp.stats.txFrames).toBe(1);
    expect(h.dp.transmit(f)).toBe("sent");
  });

  it("counts error answers by status", () => {
    const h = setup();
    h.dp.transmit(new Uint8Array(60));
    h.dp.transmit(new Uint8Array(60));
    const [a, b] = [h.tx.takeRequest()!, h.tx.takeRequest()!];
    h.tx.putResponse({ id: a.id, status: NETIF_RSP.ERROR });
    h.tx.putResponse({ id: b.id, status: NETIF_RSP.DROPPED });
    h.deliver();
    expect(Object.fromEntries(h.dp.stats.txErrors)).toEqual({ [NETIF_RSP.ERROR]: 1, [NETIF_RSP.DROPPED]: 1 });
  });

  it("breaks on a response for a buffer not in flight", () => {
    const h = setup();
    h.dp.transmit(new Uint8Array(60));
    const r = h.tx.takeRequest()!;
    h.tx.putResponse({ id: r.id + 1, status: NETIF_RSP.OKAY });
    h.deliver();
    expect(h.broken).toEqual([`TX response for id ${r.id + 1}, which is not in flight`]);
    expect(h.dp.transmit(new Uint8Array(60))).toBe("closed");
  });

  it("breaks on a backend claiming more responses than requests", () => {
    const h = setup();
    new DataView(h.txPage.buffer).setUint32(8, 5, true); // rsp_prod 5 with nothing sent
    h.dp.event();
    expect(h.broken[0]).toMatch(/back end published rsp_prod 5/);
  });
});
