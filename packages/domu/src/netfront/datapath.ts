/**
 * Netfront's data path: the guest's side of the TX and RX rings of
 * `io/netif.h`, apart from the XenStore negotiation (`device.ts`).
 *
 * ## Transmit
 *
 * Each TX buffer is a page granted read-only to the backend once, when the
 * device connects, and reused. A frame is copied into as many buffers as it
 * needs pages (several only with `feature-sg`); the first request carries
 * the whole frame's size, each later one its own, and every request but
 * the last is flagged `NETTXF_more_data`. A buffer is free again when the
 * response with its `id` comes back; a response naming a buffer that is
 * not in flight breaks the ring.
 *
 * ## Receive (`request-rx-copy`)
 *
 * Each RX buffer is a page granted writable to the backend, posted as an RX
 * request. As Linux's netfront does, a buffer belongs to a ring *slot*: the
 * request at slot `i` has `id` `i`, and the response found at slot `i`
 * (data or extra-info, whatever its `id` says) frees that slot's buffer,
 * which is posted again at the next free slot. A frame is the data of a
 * response and of those that follow while `NETRXF_more_data` is set
 * (extra-info slots after a response flagged `NETRXF_extra_info` are
 * skipped). A frame with a negative status, a slot whose `offset + status`
 * runs past its page, more than `XEN_NETIF_NR_SLOTS_MIN` slots, or more
 * than 64 KiB is dropped whole.
 *
 * @module
 */
import { NETIF_RSP, NETRXF, NETTXF, PAGE_SIZE, XEN_NETIF, netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response, type StructValue } from "@pvkit/abi";
import { FrontRing, RingProtocolError, structCodec, type RingMemory } from "@pvkit/ring";

/** Bytes of an Ethernet header: the shortest frame sent. */
const ETH_HLEN = 14;

/** A page shared with the backend: its grant reference and the bytes. */
export interface NetBuffer {
  /** The grant reference the backend uses. */
  readonly ref: number;
  /** The page (4096 bytes). */
  readonly page: Uint8Array;
}

/** The codecs of the TX ring's front end. */
export const netTxFrontCodecs = { request: structCodec(netif_tx_request), response: structCodec(netif_tx_response) };
/** The codecs of the RX ring's front end. */
export const netRxFrontCodecs = { request: structCodec(netif_rx_request), response: structCodec(netif_rx_response) };

/** A TX response as read from the ring. */
type TxRsp = StructValue<typeof netif_tx_response>;
/** An RX response as read from the ring. */
type RxRsp = StructValue<typeof netif_rx_response>;

/** How a netfront data path is built. */
export interface NetfrontDataPathOptions {
  /** The TX ring's page (initialised here). */
  readonly txRing: RingMemory;
  /** The RX ring's page (initialised here). */
  readonly rxRing: RingMemory;
  /** TX buffers, granted read-only. */
  readonly txBuffers: readonly NetBuffer[];
  /** RX buffers, granted writable; all are posted at once (at most the ring's size). */
  readonly rxBuffers: readonly NetBuffer[];
  /** Whether `feature-sg` was negotiated: frames over several slots. */
  readonly sg: boolean;
  /** Sends the event to the backend (the TX event, with split event channels). */
  readonly notify: () => void;
  /** Sends the RX event, with split event channels (default: `notify`). */
  readonly notifyRx?: () => void;
  /** Takes a received frame (the data path keeps no reference to it). */
  readonly onFrame: (frame: Uint8Array) => void;
  /** Called once if the backend breaks the ring. */
  readonly onBroken: (reason: string) => void;
}

/** Why a frame was not sent. */
export type NetTransmitResult = "sent" | "busy" | "closed" | "too-large" | "too-short";

/** Counters of a netfront. */
export interface NetfrontStats {
  /** Frames sent and answered `NETIF_RSP_OKAY`. */
  txFrames: number;
  /** Frames put on the ring. */
  txQueued: number;
  /** Frames answered with an error, by status (`NETIF_RSP_ERROR`, `NETIF_RSP_DROPPED`). */
  readonly txErrors: Map<number, number>;
  /** Frames received. */
  rxFrames: number;
  /** Bytes received. */
  rxBytes: number;
  /** Frames received but dropped, by reason. */
  readonly rxDropped: Map<string, number>;
}

/** A frame being assembled from RX responses. */
interface PartialFrame {
  readonly chunks: Uint8Array[];
  bytes: number;
  slots: number;
  bad: string | undefined;
}

/** The guest's side of one vif's rings. */
export class NetfrontDataPath {
  /** Counters. */
  readonly stats: NetfrontStats = { txFrames: 0, txQueued: 0, txErrors: new Map(), rxFrames: 0, rxBytes: 0, rxDropped: new Map() };
  /** Why the ring broke, once it has. */
  broken: string | undefined;
  private readonly tx: FrontRing<StructValue<typeof netif_tx_request>, TxRsp>;
  private readonly rx: FrontRing<StructValue<typeof netif_rx_request>, RxRsp>;
  private readonly freeTx: number[];
  /** TX buffer ids in flight, and whether each is the first slot of its frame. */
  private readonly inFlight = new Map<number, boolean>();
  /** Which RX buffer each ring slot holds. */
  private readonly rxSlot: (number | undefined)[];
  private partial: PartialFrame | undefined;
  private extrasExpected = false;
  private stopped = false;
  private readonly spaceWaiters: (() => void)[] = [];

  /** Initialises both rings (`SHARED_RING_INIT`) and posts every RX buffer. */
  constructor(private readonly opts: NetfrontDataPathOptions) {
    this.tx = FrontRing.init(opts.txRing, netTxFrontCodecs);
    this.rx = FrontRing.init(opts.rxRing, netRxFrontCodecs);
    if (opts.rxBuffers.length > this.rx.size) throw new RangeError(`${opts.rxBuffers.length} RX buffers, more than the ring's ${this.rx.size} slots`);
    if (opts.txBuffers.length > 0xffff) throw new RangeError("too many TX buffers for 16-bit ids");
    this.freeTx = opts.txBuffers.map((_, i) => opts.txBuffers.length - 1 - i);
    this.rxSlot = new Array<number | undefined>(this.rx.size).fill(undefined);
    opts.rxBuffers.forEach((_, i) => this.post(i));
    this.rx.pushRequests();
  }

  /** Slots of frames in flight on the TX ring. */
  get txInFlight(): number {
    return this.inFlight.size;
  }

  /** The largest frame this path can send. */
  get maxFrame(): number {
    return this.opts.sg ? Math.min(XEN_NETIF.MAX_TX_SIZE, this.opts.txBuffers.length * PAGE_SIZE) : PAGE_SIZE;
  }

  private post(buffer: number): void {
    const slot = this.rx.reqProdPvt & (this.rx.size - 1);
    this.rxSlot[slot] = buffer;
    this.rx.putRequest({ id: slot, pad: 0, gref: this.opts.rxBuffers[buffer]!.ref });
  }

  /** Puts a frame on the TX ring, or says why not ("busy": no free buffers or slots now). */
  transmit(frame: Uint8Array): NetTransmitResult {
    if (this.stopped) return "closed";
    if (frame.length < ETH_HLEN) return "too-short";
    if (frame.length > this.maxFrame) return "too-large";
    const slots = Math.max(1, Math.ceil(frame.length / PAGE_SIZE));
    if (this.freeTx.length < slots || this.tx.freeRequests < slots) return "busy";
    for (let i = 0; i < slots; i++) {
      const id = this.freeTx.pop()!;
      const chunk = frame.subarray(i * PAGE_SIZE, Math.min(frame.length, (i + 1) * PAGE_SIZE));
      const buf = this.opts.txBuffers[id]!;
      buf.page.set(chunk, 0);
      this.inFlight.set(id, i === 0);
      this.tx.putRequest({ gref: buf.ref, offset: 0, flags: i < slots - 1 ? NETTXF.more_data : 0, id, size: i === 0 ? frame.length : chunk.length });
    }
    this.stats.txQueued++;
    if (this.tx.pushRequests()) this.opts.notify();
    return "sent";
  }

  /** Resolves when TX buffers may have been freed (after the next TX responses, or when stopped). */
  txSpace(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /** The event from the backend: take TX and RX responses. */
  event(): void {
    if (this.stopped) return;
    try {
      this.txResponses();
      this.rxResponses();
    } catch (e) {
      this.fail(e instanceof RingProtocolError ? e.message : `internal error: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private fail(reason: string): void {
    if (this.broken !== undefined) return;
    this.broken = reason;
    this.stop();
    this.opts.onBroken(reason);
  }

  private txResponses(): void {
    let freed = false;
    do {
      for (let r; (r = this.tx.takeResponse()) !== undefined; ) {
        if (r.status === NETIF_RSP.NULL) continue;
        const first = this.inFlight.get(r.id);
        if (first === undefined) throw new RingProtocolError(`TX response for id ${r.id}, which is not in flight`);
        this.inFlight.delete(r.id);
        this.freeTx.push(r.id);
        freed = true;
        if (!first) continue;
        if (r.status === NETIF_RSP.OKAY) this.stats.txFrames++;
        else this.stats.txErrors.set(r.status, (this.stats.txErrors.get(r.status) ?? 0) + 1);
      }
    } while (this.tx.finalCheckForResponses());
    if (freed) for (const w of this.spaceWaiters.splice(0)) w();
  }

  private rxResponses(): void {
    let reposted = false;
    do {
      for (;;) {
        const slot = this.rx.rspCons & (this.rx.size - 1);
        const r = this.rx.takeResponse();
        if (r === undefined) break;
        const buffer = this.rxSlot[slot];
        if (buffer === undefined) throw new RingProtocolError(`RX response in slot ${slot}, where no buffer was posted`);
        this.rxSlot[slot] = undefined;
        this.receiveSlot(r, this.opts.rxBuffers[buffer]!.page);
        this.post(buffer);
        reposted = true;
      }
    } while (this.rx.finalCheckForResponses());
    if (reposted && this.rx.pushRequests()) (this.opts.notifyRx ?? this.opts.notify)();
  }

  /** One RX response: an extra-info to skip, or a piece of a frame. */
  private receiveSlot(r: RxRsp, page: Uint8Array): void {
    if (this.extrasExpected) {
      // An extra-info overlays the response: its flags byte is the high byte of `id`.
      this.extrasExpected = ((r.id >> 8) & XEN_NETIF.EXTRA_FLAG_MORE) !== 0;
      return;
    }
    const p = (this.partial ??= { chunks: [], bytes: 0, slots: 0, bad: undefined });
    p.slots++;
    if (r.status < 0) p.bad ??= r.status === NETIF_RSP.DROPPED ? "backend dropped it" : "backend error";
    else if (r.offset + r.status > PAGE_SIZE) p.bad ??= "a slot runs past its page";
    else if (p.slots > XEN_NETIF.NR_SLOTS_MIN) p.bad ??= "too many slots";
    else if (p.bytes + r.status > XEN_NETIF.MAX_TX_SIZE) p.bad ??= "frame larger than 64 KiB";
    else {
      p.chunks.push(page.slice(r.offset, r.offset + r.status));
      p.bytes += r.status;
    }
    if ((r.flags & NETRXF.extra_info) !== 0) this.extrasExpected = true;
    if ((r.flags & NETRXF.more_data) !== 0) return;
    this.partial = undefined;
    if (p.bad === undefined && p.bytes < ETH_HLEN) p.bad = "frame shorter than an Ethernet header";
    if (p.bad !== undefined) {
      this.stats.rxDropped.set(p.bad, (this.stats.rxDropped.get(p.bad) ?? 0) + 1);
      return;
    }
    const frame = p.chunks.length === 1 ? p.chunks[0]! : concat(p.chunks, p.bytes);
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    this.opts.onFrame(frame);
  }

  /** Stops using the rings (the device is disconnecting); waiters for TX space are woken. */
  stop(): void {
    this.stopped = true;
    for (const w of this.spaceWaiters.splice(0)) w();
  }
}

function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
