/**
 * Netback's data path for one vif: the TX and RX rings of `io/netif.h`,
 * apart from any XenStore negotiation (that is `device.ts`).
 *
 * ## Transmit (guest → bridge)
 *
 * The frontend posts a frame as one request, optionally followed by
 * extra-info slots (`NETTXF_extra_info`, chained by
 * `XEN_NETIF_EXTRA_FLAG_MORE`), then by more requests while the previous
 * one has `NETTXF_more_data`. The first request's `size` is the whole
 * frame's; each later request's `size` is its own; the first slot holds
 * what is left. Netback copies every request out of the ring once and
 * validates the copy, in this order — the first rule broken decides the
 * answer, given to every slot of the frame (`NETIF_RSP_NULL` to extras):
 *
 * | rule broken | answer |
 * | --- | --- |
 * | an extra of type 0 or ≥ `XEN_NETIF_EXTRA_TYPE_MAX`, or GSO (not offered) | `NETIF_RSP_ERROR` |
 * | an extra `MCAST_ADD`/`MCAST_DEL` (a control request, no frame) | `NETIF_RSP_OKAY`, nothing sent |
 * | more than one data slot when `feature-sg` was not negotiated | `NETIF_RSP_DROPPED` |
 * | more than `XEN_NETIF_NR_SLOTS_MIN` data slots | `NETIF_RSP_ERROR` |
 * | a later slot larger than what remains of the frame's size | `NETIF_RSP_ERROR` |
 * | a frame shorter than an Ethernet header (14 bytes) | `NETIF_RSP_ERROR` |
 * | a slot's `offset + size` past the end of its page | `NETIF_RSP_ERROR` |
 * | a grant copy that fails (bad reference, not granted to us…) | `NETIF_RSP_ERROR` |
 * | none | `NETIF_RSP_OKAY`, the frame goes to the bridge |
 *
 * The ring itself is broken — and the vif alone is disconnected — when
 * the frontend publishes more requests than the ring holds
 * (`RING_REQUEST_PROD_OVERFLOW`), or a frame's extras or more-data slots
 * run past what it published (it must publish a frame's slots together, as
 * Linux's netback demands).
 *
 * ## Receive (bridge → guest), `feature-rx-copy`
 *
 * The frontend posts empty granted pages as RX requests. A frame from the
 * bridge waits in a short queue until enough requests are posted (one per
 * page of the frame; a frame larger than a page needs `feature-sg`), then is
 * grant-copied into them; each response carries the request's `id`,
 * `offset` 0, the bytes in that page as `status` (or `NETIF_RSP_ERROR` if
 * its copy failed) and `NETRXF_more_data` on all but the last. Responses
 * go in the same ring slots as the requests they answer, as Linux's
 * netfront assumes.
 *
 * @module
 */
import { NETIF_RSP, NETRXF, NETTXF, PAGE_SIZE, XEN_NETIF, netif_extra_info, netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response, type StructValue } from "@pvkit/abi";
import { BackRing, RingProtocolError, structCodec, type Codec, type RingMemory } from "@pvkit/ring";
import type { BridgePort } from "./bridge.js";

/** Bytes of an Ethernet header: the smallest frame netback accepts. */
const ETH_HLEN = 14;
/** Frames queued for a guest that has not posted enough RX buffers yet, by default. */
export const NETBACK_RX_QUEUE_DEFAULT = 64;

/** Part of one granted page of the frontend. */
export interface NetGrantSegment {
  /** The frontend's grant reference. */
  readonly gref: number;
  /** Offset in the page. */
  readonly offset: number;
  /** Bytes. */
  readonly len: number;
}

/** What the data path needs to move bytes: grant copies to and from the frontend's pages. */
export interface VifIo {
  /** Copies each segment out of the frontend's grants: the bytes, or a `GNTST_*` status on failure. */
  readFrontend(segs: readonly NetGrantSegment[]): readonly (Uint8Array | number)[];
  /** Copies each segment's data into the frontend's grants; returns `GNTST_*` statuses. */
  writeFrontend(segs: readonly (NetGrantSegment & { readonly data: Uint8Array })[]): readonly number[];
}

/** A TX request as copied out of the ring. */
export type NetTxRequest = StructValue<typeof netif_tx_request>;
/** An extra-info slot as copied out of the ring. */
export type NetExtraInfo = StructValue<typeof netif_extra_info>;
/** A TX response. */
export type NetTxResponse = StructValue<typeof netif_tx_response>;
/** An RX request. */
export type NetRxRequest = StructValue<typeof netif_rx_request>;
/** An RX response. */
export type NetRxResponse = StructValue<typeof netif_rx_response>;

/** A TX slot copied out whole (12 bytes), to be read as a request or an extra-info. */
const rawTxSlot: Codec<Uint8Array> = {
  size: netif_tx_request.size,
  read: (view, offset) => new Uint8Array(view.buffer, view.byteOffset + offset, netif_tx_request.size).slice(),
  write: (view, offset, value) => new Uint8Array(view.buffer, view.byteOffset + offset, netif_tx_request.size).set(value),
};

const txRequestCodec = structCodec(netif_tx_request);
const extraCodec = structCodec(netif_extra_info);

/** Decodes a raw TX slot as a request. */
export function decodeNetTxRequest(slot: Uint8Array): NetTxRequest {
  return txRequestCodec.read(new DataView(slot.buffer, slot.byteOffset, slot.byteLength), 0);
}

/** Decodes a raw TX slot as an extra-info. */
export function decodeNetExtraInfo(slot: Uint8Array): NetExtraInfo {
  return extraCodec.read(new DataView(slot.buffer, slot.byteOffset, slot.byteLength), 0);
}

/** The codecs of the backend's TX ring: raw slots in, responses out. */
export const netTxBackCodecs = { request: rawTxSlot, response: structCodec(netif_tx_response) };
/** The codecs of the RX ring (both ends). */
export const netRxCodecs = { request: structCodec(netif_rx_request), response: structCodec(netif_rx_response) };

/** How a vif's data path is built. */
export interface VifDataPathOptions {
  /** The port's name (`vif<domid>.<handle>`). */
  readonly name: string;
  /** The TX ring's page, mapped. */
  readonly txRing: RingMemory;
  /** The RX ring's page, mapped. */
  readonly rxRing: RingMemory;
  /** Grant copies to and from the frontend. */
  readonly io: VifIo;
  /** Whether the frontend negotiated `feature-sg` (frames over several slots). */
  readonly sg: boolean;
  /** Sends the TX event (the only event with one event channel). */
  readonly notifyTx: () => void;
  /** Sends the RX event. */
  readonly notifyRx: () => void;
  /** Called once if the ring is broken; the vif stops and should be disconnected. */
  readonly onBroken: (reason: string) => void;
  /** Frames held while the guest has too few RX buffers posted (default {@link NETBACK_RX_QUEUE_DEFAULT}). */
  readonly rxQueueMax?: number;
}

/** Counters of one vif. */
export interface VifStats {
  /** Frames the guest sent that went to the bridge. */
  txFrames: number;
  /** Their bytes. */
  txBytes: number;
  /** Frames refused, by reason. */
  readonly txErrors: Map<string, number>;
  /** Frames copied into the guest. */
  rxFrames: number;
  /** Their bytes. */
  rxBytes: number;
  /** Frames for the guest dropped, by reason. */
  readonly rxDropped: Map<string, number>;
}

/** The verdict on one TX frame. */
interface TxVerdict {
  readonly status: number;
  readonly reason?: string;
}

/** One vif's rings: the bridge port of a guest's network interface. */
export class VifDataPath implements BridgePort {
  /** The port's name. */
  readonly name: string;
  /** Counters. */
  readonly stats: VifStats = { txFrames: 0, txBytes: 0, txErrors: new Map(), rxFrames: 0, rxBytes: 0, rxDropped: new Map() };
  /** Where frames the guest sends go (the bridge's input); set by the owner. */
  output: (frame: Uint8Array) => void = () => {};
  /** Why the ring was declared broken, once it is. */
  broken: string | undefined;
  private readonly tx: BackRing<Uint8Array, NetTxResponse>;
  private readonly rx: BackRing<NetRxRequest, NetRxResponse>;
  private readonly rxQueue: Uint8Array[] = [];
  private readonly rxQueueMax: number;
  private stopped = false;

  /** Attaches to both rings (`BACK_RING_INIT`). */
  constructor(private readonly opts: VifDataPathOptions) {
    this.name = opts.name;
    this.tx = BackRing.attach(opts.txRing, netTxBackCodecs);
    this.rx = BackRing.attach(opts.rxRing, netRxCodecs);
    this.rxQueueMax = opts.rxQueueMax ?? NETBACK_RX_QUEUE_DEFAULT;
  }

  /** Frames waiting for RX buffers. */
  get rxQueued(): number {
    return this.rxQueue.length;
  }

  /** The event from the frontend: serve both rings. */
  event(): void {
    this.serviceTx();
    this.serviceRx();
  }

  /** Stops serving (the device is disconnecting); queued frames are dropped. */
  stop(): void {
    this.stopped = true;
    this.rxQueue.length = 0;
  }

  private count(map: Map<string, number>, reason: string): void {
    map.set(reason, (map.get(reason) ?? 0) + 1);
  }

  private fail(e: unknown): void {
    if (this.broken !== undefined) return;
    this.broken = e instanceof RingProtocolError ? e.message : `internal error: ${e instanceof Error ? e.message : String(e)}`;
    this.stop();
    this.opts.onBroken(this.broken);
  }

  /** Serves every published TX request, answering each. */
  serviceTx(): void {
    if (this.stopped) return;
    try {
      do {
        while (this.tx.unconsumedRequests() > 0) {
          if (!this.txFrame()) return;
        }
        if (this.tx.pushResponses()) this.opts.notifyTx();
      } while (this.tx.finalCheckForRequests());
    } catch (e) {
      this.fail(e);
    }
  }

  /** Takes one frame's slots off the TX ring, judges and answers them; false if the ring is broken. */
  private txFrame(): boolean {
    const first = decodeNetTxRequest(this.tx.takeRequest()!);
    // The slots in ring order: each gets a response in the same order.
    const slots: ({ readonly kind: "data"; readonly req: NetTxRequest } | { readonly kind: "extra"; readonly extra: NetExtraInfo })[] = [{ kind: "data", req: first }];
    let more = (first.flags & NETTXF.extra_info) !== 0;
    while (more) {
      const raw = this.tx.takeRequest();
      if (raw === undefined) return this.brokenRing("an extra-info slot is missing: the frame runs past req_prod");
      const extra = decodeNetExtraInfo(raw);
      slots.push({ kind: "extra", extra });
      more = (extra.flags & XEN_NETIF.EXTRA_FLAG_MORE) !== 0;
    }
    let last = first;
    while ((last.flags & NETTXF.more_data) !== 0) {
      const raw = this.tx.takeRequest();
      if (raw === undefined) return this.brokenRing("a NETTXF_more_data slot is missing: the frame runs past req_prod");
      last = decodeNetTxRequest(raw);
      slots.push({ kind: "data", req: last });
    }
    const data = slots.flatMap((s) => (s.kind === "data" ? [s.req] : []));
    const extras = slots.flatMap((s) => (s.kind === "extra" ? [s.extra] : []));
    let frame: Uint8Array | undefined;
    let verdict = this.judge(data, extras);
    if (verdict === undefined) {
      const copied = this.copyOut(data);
      if (typeof copied === "string") verdict = { status: NETIF_RSP.ERROR, reason: copied };
      else {
        frame = copied;
        verdict = { status: NETIF_RSP.OKAY };
      }
    }
    for (const s of slots) this.tx.putResponse(s.kind === "data" ? { id: s.req.id, status: verdict.status } : { id: 0, status: NETIF_RSP.NULL });
    if (verdict.reason !== undefined) this.count(this.stats.txErrors, verdict.reason);
    if (frame !== undefined) {
      this.stats.txFrames++;
      this.stats.txBytes += frame.length;
      this.output(frame);
    }
    return !this.stopped;
  }

  private brokenRing(reason: string): false {
    this.fail(new RingProtocolError(reason));
    return false;
  }

  /** The rules of the module notes, in order: a verdict if one is broken (or the request is control only), else undefined. */
  private judge(data: readonly NetTxRequest[], extras: readonly NetExtraInfo[]): TxVerdict | undefined {
    for (const x of extras) {
      if (x.type === XEN_NETIF.EXTRA_TYPE_NONE || x.type >= XEN_NETIF.EXTRA_TYPE_MAX) return { status: NETIF_RSP.ERROR, reason: `extra-info type ${x.type}` };
      if (x.type === XEN_NETIF.EXTRA_TYPE_GSO) return { status: NETIF_RSP.ERROR, reason: "GSO was not negotiated" };
    }
    if (extras.some((x) => x.type === XEN_NETIF.EXTRA_TYPE_MCAST_ADD || x.type === XEN_NETIF.EXTRA_TYPE_MCAST_DEL)) return { status: NETIF_RSP.OKAY };
    if (data.length > 1 && !this.opts.sg) return { status: NETIF_RSP.DROPPED, reason: "several slots without feature-sg" };
    if (data.length > XEN_NETIF.NR_SLOTS_MIN) return { status: NETIF_RSP.ERROR, reason: `${data.length} slots, more than ${XEN_NETIF.NR_SLOTS_MIN}` };
    let firstOwn = data[0]!.size;
    for (const r of data.slice(1)) {
      if (r.size > firstOwn) return { status: NETIF_RSP.ERROR, reason: "a slot is larger than what remains of the frame" };
      firstOwn -= r.size;
    }
    if (data[0]!.size < ETH_HLEN) return { status: NETIF_RSP.ERROR, reason: "frame shorter than an Ethernet header" };
    const sizes = [firstOwn, ...data.slice(1).map((r) => r.size)];
    if (data.some((r, i) => r.offset + sizes[i]! > PAGE_SIZE)) return { status: NETIF_RSP.ERROR, reason: "a slot crosses its page boundary" };
    return undefined;
  }

  /** Copies a validated frame out of the guest: its bytes, or why a copy failed. */
  private copyOut(data: readonly NetTxRequest[]): Uint8Array | string {
    const total = data[0]!.size;
    let firstOwn = total;
    for (const r of data.slice(1)) firstOwn -= r.size;
    const segs = data.map((r, i) => ({ gref: r.gref, offset: r.offset, len: i === 0 ? firstOwn : r.size })).filter((s) => s.len > 0);
    const parts = this.opts.io.readFrontend(segs);
    const frame = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      if (typeof p === "number") return `grant copy failed (GNTST ${p})`;
      frame.set(p, at);
      at += p.length;
    }
    return frame;
  }

  /** A frame from the bridge for the guest: queues it (or drops it, counted) and serves the RX ring. */
  deliver(frame: Uint8Array): void {
    if (this.stopped) return;
    if (frame.length > (this.opts.sg ? XEN_NETIF.MAX_TX_SIZE : PAGE_SIZE)) return this.count(this.stats.rxDropped, this.opts.sg ? "frame too large" : "frame larger than a page without feature-sg");
    if (this.rxQueue.length >= this.rxQueueMax) return this.count(this.stats.rxDropped, "RX queue full");
    this.rxQueue.push(frame);
    this.serviceRx();
  }

  /** Copies queued frames into posted RX buffers while there are enough. */
  serviceRx(): void {
    if (this.stopped) return;
    try {
      let pushed = false;
      while (this.rxQueue.length > 0) {
        const frame = this.rxQueue[0]!;
        const needed = Math.max(1, Math.ceil(frame.length / PAGE_SIZE));
        if (this.rx.unconsumedRequests() < needed) {
          // Ask to be woken at the next request the frontend posts (it promised feature-rx-notify), then look again.
          this.rx.finalCheckForRequests();
          if (this.rx.unconsumedRequests() < needed) break;
        }
        this.rxQueue.shift();
        const reqs = Array.from({ length: needed }, () => this.rx.takeRequest()!);
        const segs = reqs.map((r, i) => {
          const data = frame.subarray(i * PAGE_SIZE, Math.min(frame.length, (i + 1) * PAGE_SIZE));
          return { gref: r.gref, offset: 0, len: data.length, data };
        });
        const status = this.opts.io.writeFrontend(segs);
        const ok = status.every((s) => s === 0);
        reqs.forEach((r, i) =>
          this.rx.putResponse({ id: r.id, offset: 0, flags: i < needed - 1 ? NETRXF.more_data : 0, status: status[i] === 0 ? segs[i]!.len : NETIF_RSP.ERROR }),
        );
        pushed = true;
        if (ok) {
          this.stats.rxFrames++;
          this.stats.rxBytes += frame.length;
        } else this.count(this.stats.rxDropped, "grant copy failed");
      }
      if (pushed && this.rx.pushResponses()) this.opts.notifyRx();
    } catch (e) {
      this.fail(e);
    }
  }
}
