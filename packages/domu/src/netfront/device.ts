/**
 * Netfront's xenbus side and the interface guest code uses: one
 * {@link Netfront} per `device/vif/<handle>`, negotiating as Linux's
 * `xen-netfront.c` does, and sending and receiving Ethernet frames through
 * its data path (`datapath.ts`).
 *
 * When the backend reaches InitWait, the frontend requires its
 * `feature-rx-copy`, takes `feature-sg` if offered, allocates and grants
 * the two ring pages and the TX and RX buffers, allocates an event channel
 * for the backend and publishes, going Initialised (Linux's netfront goes
 * straight to Connected; pvkit's xenbus framework walks the usual
 * Initialised → Connected path):
 *
 * | key | value |
 * | --- | --- |
 * | `tx-ring-ref`, `rx-ring-ref` | the rings' grant references |
 * | `event-channel` | the port (one for both rings) |
 * | `event-channel-tx`, `event-channel-rx` | instead, with `splitEventChannels` and the backend's `feature-split-event-channels` |
 * | `request-rx-copy` | 1: fill RX buffers by grant copy |
 * | `feature-rx-notify` | 1: the frontend notifies when it posts RX buffers |
 * | `feature-sg` | 1 if frames may span several slots |
 * | `feature-no-csum-offload` | 1: checksums are always complete |
 *
 * The frontend's `mac` key, written by the toolstack, is the interface's
 * address. Disconnecting (either end closing, the backend's domain going
 * away) closes the port and ends access to every page; a page the backend
 * still maps is kept, and access to it retried, until it is unmapped.
 *
 * ```ts
 * const nic = orThrow(await Netfront.open(k, openXenstore(k)));
 * nic.onReceive((frame) => stack.input(frame));
 * await nic.send(frame);
 * await nic.close();
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE, XEN_ERRNO, XenbusState } from "@pvkit/abi";
import { XenbusFrontend, type DisconnectReason, type Kernel, type OtherEnd, type XenError, type XsClient } from "@pvkit/kernel";
import { parseMac } from "../net/ethernet.js";
import type { NetLink } from "../net/stack.js";
import { NetfrontDataPath, type NetBuffer, type NetfrontStats } from "./datapath.js";

/** How a netfront is opened. */
export interface NetfrontOptions {
  /** The vif's handle: `device/vif/<id>` (default `"0"`). */
  readonly id?: string;
  /** RX buffers (pages) to post (default 32, at most 256). */
  readonly rxBuffers?: number;
  /** TX buffers (pages) (default 32). */
  readonly txBuffers?: number;
  /** Use `feature-sg` when the backend offers it (default true). */
  readonly sg?: boolean;
  /** Frames kept for {@link Netfront.receive} when no handler is set (default 256); more are dropped. */
  readonly rxQueueMax?: number;
  /** Use separate TX and RX event channels when the backend offers `feature-split-event-channels` (default false). */
  readonly splitEventChannels?: boolean;
}

/** A netfront error as a {@link XenError}. */
export function netfrontError(op: string, name: keyof typeof XEN_ERRNO, detail: string): XenError {
  return { op, code: -XEN_ERRNO[name], name, message: `${op}: ${detail}` };
}

/** A page of ours granted to the backend. */
interface Granted {
  readonly pfn: number;
  ref: number | undefined;
}

/** Everything a connection holds, for disconnect to give back. */
interface Resources {
  readonly pages: Granted[];
  readonly ports: number[];
  rings: { readonly tx: Uint8Array; readonly rx: Uint8Array } | undefined;
}

const MS = 1_000_000;

/** A vif's frontend: a network interface for guest code. */
export class Netfront extends XenbusFrontend implements NetLink {
  /** The interface's MAC address (the `mac` key). */
  readonly mac: Uint8Array;
  /** Whether `feature-sg` is in use on the current connection. */
  sg = false;
  /** Whether separate TX and RX event channels are in use on the current connection. */
  split = false;
  private dp: NetfrontDataPath | undefined;
  private res: Resources | undefined;
  private handler: ((frame: Uint8Array) => void) | undefined;
  private readonly queue: Uint8Array[] = [];
  private readonly receivers: ((frame: Uint8Array | undefined) => void)[] = [];
  private readonly opts: NetfrontOptions;
  /** Counters of past connections, added to the current one's. */
  private readonly pastStats: NetfrontStats = { txFrames: 0, txQueued: 0, txErrors: new Map(), rxFrames: 0, rxBytes: 0, rxDropped: new Map() };
  /** Grant references the backend still mapped when disconnecting, being retried. */
  lingering = 0;

  private constructor(
    private readonly k: Kernel,
    xs: XsClient,
    mac: Uint8Array,
    opts: NetfrontOptions,
  ) {
    // Initialised, then Connected once the backend is: the framework's connectAtInitWait path takes the
    // window where this end is Connected and the backend still InitWait for a backend restart.
    super(xs, { type: "vif", id: opts.id ?? "0" });
    this.mac = mac;
    this.opts = opts;
    this.onChange(() => {
      if (this.status === "stopped") for (const r of this.receivers.splice(0)) r(undefined);
    });
  }

  /**
   * Opens `device/vif/<id>`: reads its `mac`, negotiates with the backend
   * and resolves once both ends are Connected — or with the error that
   * stopped it (the backend refused, or closed).
   */
  static async open(k: Kernel, xs: XsClient, opts: NetfrontOptions = {}): Promise<E.Either<XenError, Netfront>> {
    const id = opts.id ?? "0";
    const macKey = await xs.read(`device/vif/${id}/mac`)();
    if (E.isLeft(macKey)) return macKey;
    const mac = parseMac(macKey.right);
    if (mac === undefined) return E.left(netfrontError("netfront open", "EINVAL", `device/vif/${id}/mac is "${macKey.right}", not a MAC address`));
    const nf = new Netfront(k, xs, mac, opts);
    const started = await nf.start();
    if (E.isLeft(started)) return started;
    await nf.waitFor((d) => d.up || d.status !== "running" || d.error !== undefined || d.state === XenbusState.Closing || d.state === XenbusState.Closed);
    if (nf.up) return E.right(nf);
    const why = nf.error ?? netfrontError("netfront open", "ENOTCONN", `backend ${nf.backendPath} is ${nf.otherState}, frontend ${nf.state}`);
    await nf.stop();
    return E.left(why);
  }

  /** Whether frames can flow: both ends Connected and the data path up. */
  get up(): boolean {
    return this.live && this.dp !== undefined && this.dp.broken === undefined && this.state === XenbusState.Connected && this.otherState === XenbusState.Connected;
  }

  /** Counters, over every connection so far. */
  get stats(): NetfrontStats {
    const cur = this.dp?.stats;
    if (cur === undefined) return this.pastStats;
    const merge = <K>(a: Map<K, number>, b: Map<K, number>) => {
      const m = new Map(a);
      for (const [k, v] of b) m.set(k, (m.get(k) ?? 0) + v);
      return m;
    };
    const p = this.pastStats;
    return {
      txFrames: p.txFrames + cur.txFrames,
      txQueued: p.txQueued + cur.txQueued,
      txErrors: merge(p.txErrors, cur.txErrors),
      rxFrames: p.rxFrames + cur.rxFrames,
      rxBytes: p.rxBytes + cur.rxBytes,
      rxDropped: merge(p.rxDropped, cur.rxDropped),
    };
  }

  /** The shared ring pages while connected (TX, RX): for diagnostics, and for tests of a hostile guest. */
  sharedRings(): { readonly tx: Uint8Array; readonly rx: Uint8Array } | undefined {
    return this.res?.rings;
  }

  /** The largest frame that can be sent now (0 when not connected). */
  get maxFrame(): number {
    return this.dp?.maxFrame ?? 0;
  }

  /** Sets up the data path for a backend in InitWait; returns the keys to publish. */
  protected async connect(backend: OtherEnd): Promise<E.Either<XenError, Readonly<Record<string, string>>>> {
    const op = `netfront connect ${this.nodename}`;
    if (backend.keys.get("feature-rx-copy") !== "1") return E.left(netfrontError(op, "EOPNOTSUPP", "the backend does not offer feature-rx-copy"));
    this.sg = (this.opts.sg ?? true) && backend.keys.get("feature-sg") === "1";
    const k = this.k;
    this.split = (this.opts.splitEventChannels ?? false) && backend.keys.get("feature-split-event-channels") === "1";
    const res: Resources = { pages: [], ports: [], rings: undefined };
    this.res = res;
    const page = (readonly: boolean): E.Either<XenError, NetBuffer> => {
      const pfn = k.memory.allocPage();
      if (pfn === undefined) return E.left(netfrontError(op, "ENOMEM", "out of pages"));
      const g: Granted = { pfn, ref: undefined };
      res.pages.push(g);
      const ref = k.grants.grantAccess(this.backendId, k.memory.mfnOf(pfn), readonly);
      if (E.isLeft(ref)) return ref;
      g.ref = ref.right;
      const v = k.memory.memory.page(pfn * PAGE_SIZE);
      return E.right({ ref: ref.right, page: new Uint8Array(v.buffer, v.byteOffset, PAGE_SIZE) });
    };
    const pages = (n: number, readonly: boolean): E.Either<XenError, NetBuffer[]> => {
      const out: NetBuffer[] = [];
      for (let i = 0; i < n; i++) {
        const p = page(readonly);
        if (E.isLeft(p)) return p;
        out.push(p.right);
      }
      return E.right(out);
    };
    const rings = pages(2, false);
    if (E.isLeft(rings)) return rings;
    const tx = pages(this.opts.txBuffers ?? 32, true);
    if (E.isLeft(tx)) return tx;
    const rx = pages(Math.min(this.opts.rxBuffers ?? 32, 256), false);
    if (E.isLeft(rx)) return rx;
    for (let i = 0; i < (this.split ? 2 : 1); i++) {
      const port = k.events.allocUnbound(this.backendId);
      if (E.isLeft(port)) return port;
      res.ports.push(port.right);
    }
    const [txPort, rxPort] = [res.ports[0]!, res.ports[res.ports.length - 1]!];
    const [txRing, rxRing] = rings.right as [NetBuffer, NetBuffer];
    res.rings = { tx: txRing.page, rx: rxRing.page };
    const dp = new NetfrontDataPath({
      txRing: txRing.page,
      rxRing: rxRing.page,
      txBuffers: tx.right,
      rxBuffers: rx.right,
      sg: this.sg,
      notify: () => void k.events.notify(txPort),
      notifyRx: () => void k.events.notify(rxPort),
      onFrame: (frame) => this.deliver(frame),
      onBroken: (reason) => void k.print(`netfront ${this.nodename}: ${reason}; closing`).then(() => this.close()),
    });
    this.dp = dp;
    for (const p of res.ports) k.events.on(p, () => dp.event());
    return E.right({
      "tx-ring-ref": String(txRing.ref),
      "rx-ring-ref": String(rxRing.ref),
      ...(this.split ? { "event-channel-tx": String(txPort), "event-channel-rx": String(rxPort) } : { "event-channel": String(txPort) }),
      "request-rx-copy": "1",
      "feature-rx-notify": "1",
      "feature-sg": this.sg ? "1" : "0",
      "feature-no-csum-offload": "1",
    });
  }

  /** Closes the port, ends access to every page and frees it (later, for a page the backend still maps). */
  protected async disconnect(_reason: DisconnectReason): Promise<void> {
    const dp = this.dp;
    const res = this.res;
    this.dp = undefined;
    this.res = undefined;
    if (dp !== undefined) {
      dp.stop();
      this.keepStats(dp.stats);
    }
    if (res === undefined) return;
    for (const p of res.ports) {
      this.k.events.off(p);
      this.k.events.close(p);
    }
    const left = res.pages.filter((g) => !this.retire(g));
    if (left.length > 0) void this.retireLater(left);
  }

  private keepStats(s: NetfrontStats): void {
    const p = this.pastStats;
    p.txFrames += s.txFrames;
    p.txQueued += s.txQueued;
    p.rxFrames += s.rxFrames;
    p.rxBytes += s.rxBytes;
    for (const [k, v] of s.txErrors) p.txErrors.set(k, (p.txErrors.get(k) ?? 0) + v);
    for (const [k, v] of s.rxDropped) p.rxDropped.set(k, (p.rxDropped.get(k) ?? 0) + v);
  }

  /** Ends access to a page and frees it; false while the backend still maps it. */
  private retire(g: Granted): boolean {
    if (g.ref !== undefined && E.isLeft(this.k.grants.endAccess(g.ref))) return false;
    this.k.memory.freePage(g.pfn);
    return true;
  }

  /** Retries ending access to pages still mapped, as Linux's deferred grant freeing does. */
  private async retireLater(pages: Granted[]): Promise<void> {
    this.lingering += pages.length;
    for (let tries = 0; tries < 100 && pages.length > 0; tries++) {
      await this.k.sleep(10 * MS);
      const before = pages.length;
      pages = pages.filter((g) => !this.retire(g));
      this.lingering -= before - pages.length;
    }
    if (pages.length > 0) await this.k.print(`netfront ${this.nodename}: ${pages.length} pages still mapped by the backend; leaking them`);
  }

  private deliver(frame: Uint8Array): void {
    if (this.handler !== undefined) return this.handler(frame);
    const r = this.receivers.shift();
    if (r !== undefined) return r(frame);
    if (this.queue.length < (this.opts.rxQueueMax ?? 256)) this.queue.push(frame);
  }

  /** Calls `handler` for every frame received from now on (inside the event upcall); frames queued so far go to it first. */
  onReceive(handler: (frame: Uint8Array) => void): void {
    this.handler = handler;
    for (const f of this.queue.splice(0)) handler(f);
  }

  /** The next received frame (when no handler is set), or undefined once the device has stopped. */
  receive(): Promise<Uint8Array | undefined> {
    const f = this.queue.shift();
    if (f !== undefined) return Promise.resolve(f);
    if (this.status === "stopped") return Promise.resolve(undefined);
    return new Promise((resolve) => this.receivers.push(resolve));
  }

  /** Puts a frame on the TX ring if there is room now; false if not (not connected, full, or a bad size). */
  transmit(frame: Uint8Array): boolean {
    return this.up && this.dp!.transmit(frame) === "sent";
  }

  /** Sends a frame, waiting for TX room if need be. */
  async send(frame: Uint8Array): Promise<E.Either<XenError, void>> {
    for (;;) {
      const dp = this.dp;
      if (dp === undefined || !this.up) return E.left(netfrontError("netfront send", "ENOTCONN", `${this.nodename} is not connected`));
      const r = dp.transmit(frame);
      if (r === "sent") return E.right(undefined);
      if (r === "too-large") return E.left(netfrontError("netfront send", "EMSGSIZE", `${frame.length}-byte frame, at most ${dp.maxFrame}`));
      if (r === "too-short") return E.left(netfrontError("netfront send", "EINVAL", `${frame.length}-byte frame is shorter than an Ethernet header`));
      if (r === "closed") return E.left(netfrontError("netfront send", "ENOTCONN", `${this.nodename} is not connected`));
      await dp.txSpace();
    }
  }

  /**
   * Closes the device: waits (a little) for frames on the TX ring to be
   * answered, then walks xenbus to Closed; every page and the port are
   * given back. A backend that does not follow within `timeoutNs` (default
   * 2 s) is left behind: the device stops anyway.
   */
  override async close(timeoutNs = 2_000 * MS): Promise<void> {
    const dp = this.dp;
    const deadline = this.k.clock.now() + 100 * MS;
    while (dp !== undefined && this.dp === dp && this.up && dp.txInFlight > 0 && this.k.clock.now() < deadline) {
      await Promise.race([dp.txSpace(), this.k.sleep(10 * MS)]);
    }
    let timedOut = false;
    await Promise.race([super.close(), this.k.sleep(timeoutNs).then(() => (timedOut = true))]);
    if (timedOut && this.status !== "stopped") await this.stop();
  }
}
