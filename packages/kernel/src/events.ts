/**
 * Event channels, guest side: the upcall that scans the 2-level bitmaps and
 * dispatches to per-port handlers, and the operations that bind ports.
 *
 * When the hypervisor marks port `p` pending it sets bit `p` of
 * `shared_info.evtchn_pending`, then (if the port is not masked) bit `p / 64`
 * of the vCPU's `evtchn_pending_sel` and `evtchn_upcall_pending`. The upcall
 * undoes that in reverse: clear `evtchn_upcall_pending`, take (exchange with
 * 0) the selector, and for each selected word take the pending and unmasked
 * bits, clearing each port's pending bit before calling its handler — so an
 * event arriving during the handler is seen again rather than lost.
 *
 * Handlers are synchronous callbacks run inside the upcall. Code that wants
 * to wait for a port awaits {@link Events.wait}, which resolves on the next
 * event (or at once if one came since the last wait).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  DOMID,
  EVTCHNOP,
  EVTCHN_2L_NR_CHANNELS,
  HYPERVISOR,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_send,
  evtchn_unmask,
  shared_info,
  vcpu_info,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import { result, type Hypercaller, type XenError } from "./hypercall.js";

/** A port handler, called inside the upcall with the port that fired. */
export type PortHandler = (port: number) => void;

const PENDING_WORD0 = shared_info.fields.evtchn_pending.offset / 4;
const MASK_WORD0 = shared_info.fields.evtchn_mask.offset / 4;

/** The guest's event channels, over its mapping of shared_info. */
export class Events {
  private readonly handlers = new Map<number, PortHandler>();
  private readonly fired = new Set<number>();
  private readonly waiters = new Map<number, (() => void)[]>();
  /** shared_info as 32-bit words, for atomic bit operations. */
  private readonly words: Uint32Array;
  /** Events dispatched so far, by port. */
  readonly counts = new Map<number, number>();

  /**
   * @param hc the hypercall entry and argument stack
   * @param sharedInfo the kernel's view of its shared_info page
   */
  constructor(
    private readonly hc: Hypercaller,
    sharedInfo: DataView,
  ) {
    this.words = new Uint32Array(sharedInfo.buffer, sharedInfo.byteOffset, 1024);
  }

  /** Upcalls run so far: the idle loop compares it around `SCHEDOP_block`. */
  upcalls = 0;

  /** The upcall: registered with the platform, called by the hypervisor with events pending for `vcpuId`. */
  readonly upcall = (vcpuId: number): void => {
    this.upcalls++;
    const vi = (vcpu_info.size * vcpuId) / 4;
    const bytes = new Uint8Array(this.words.buffer, this.words.byteOffset + vcpu_info.size * vcpuId, 1);
    Atomics.store(bytes, 0, 0); // evtchn_upcall_pending
    const selWord = vi + vcpu_info.fields.evtchn_pending_sel.offset / 4;
    // The 64-bit selector as two 32-bit halves: words 0..31, then 32..63.
    for (let half = 0; half < 2; half++) {
      let sel = Atomics.exchange(this.words, selWord + half, 0);
      while (sel !== 0) {
        const bit = 31 - Math.clz32(sel & -sel);
        sel &= sel - 1;
        this.scanWord(half * 32 + bit);
      }
    }
  };

  /** Dispatches every pending, unmasked port of 64-bit word `w`. */
  private scanWord(w: number): void {
    for (let half = 0; half < 2; half++) {
      const i = w * 2 + half;
      let bits = Atomics.load(this.words, PENDING_WORD0 + i) & ~Atomics.load(this.words, MASK_WORD0 + i);
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        Atomics.and(this.words, PENDING_WORD0 + i, ~(1 << bit));
        this.dispatch(i * 32 + bit);
      }
    }
  }

  private dispatch(port: number): void {
    this.counts.set(port, (this.counts.get(port) ?? 0) + 1);
    this.handlers.get(port)?.(port);
    const waiting = this.waiters.get(port);
    if (waiting !== undefined && waiting.length > 0) {
      this.waiters.delete(port);
      for (const w of waiting) w();
    } else this.fired.add(port);
  }

  /** Calls `handler` for every event on `port` (replacing any earlier handler). */
  on(port: number, handler: PortHandler): void {
    this.handlers.set(port, handler);
  }

  /** Stops calling the handler of `port`. */
  off(port: number): void {
    this.handlers.delete(port);
  }

  /** Resolves at the next event on `port`, or at once if one arrived since the last wait. */
  wait(port: number): Promise<void> {
    if (this.fired.delete(port)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.waiters.get(port) ?? [];
      list.push(resolve);
      this.waiters.set(port, list);
    });
  }

  /** True if an event on `port` arrived that no {@link Events.wait} has taken yet. */
  hasFired(port: number): boolean {
    return this.fired.has(port);
  }

  /** Whether `port` is pending in shared_info. */
  isPending(port: number): boolean {
    return (Atomics.load(this.words, PENDING_WORD0 + (port >>> 5)) & (1 << (port & 31))) !== 0;
  }

  /** Masks `port`: it may become pending but will not upcall. */
  mask(port: number): void {
    Atomics.or(this.words, MASK_WORD0 + (port >>> 5), 1 << (port & 31));
  }

  /** Unmasks `port` (`EVTCHNOP_unmask`), which delivers it if it became pending while masked. */
  unmask(port: number): E.Either<XenError, number> {
    return this.call("unmask", EVTCHNOP.unmask, evtchn_unmask, { port }, () => 0);
  }

  /** A port for `remoteDomid` to bind to (`EVTCHNOP_alloc_unbound`). */
  allocUnbound(remoteDomid: number, dom: number = DOMID.SELF): E.Either<XenError, number> {
    return this.call("alloc_unbound", EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom, remote_dom: remoteDomid }, (s) => s.port);
  }

  /** Connects a local port to `remotePort` of `remoteDomid` (`EVTCHNOP_bind_interdomain`). */
  bindInterdomain(remoteDomid: number, remotePort: number): E.Either<XenError, number> {
    return this.call("bind_interdomain", EVTCHNOP.bind_interdomain, evtchn_bind_interdomain, { remote_dom: remoteDomid, remote_port: remotePort }, (s) => s.local_port);
  }

  /** Binds virtual IRQ `virq` on `vcpu` to a port (`EVTCHNOP_bind_virq`). */
  bindVirq(virq: number, vcpu = 0): E.Either<XenError, number> {
    return this.call("bind_virq", EVTCHNOP.bind_virq, evtchn_bind_virq, { virq, vcpu }, (s) => s.port);
  }

  /** A port for inter-processor events to `vcpu` (`EVTCHNOP_bind_ipi`). */
  bindIpi(vcpu: number): E.Either<XenError, number> {
    return this.call("bind_ipi", EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu }, (s) => s.port);
  }

  /** Signals the other end of `port` (`EVTCHNOP_send`). */
  notify(port: number): E.Either<XenError, number> {
    return this.call("send", EVTCHNOP.send, evtchn_send, { port }, () => 0);
  }

  /** Closes `port` (`EVTCHNOP_close`) and forgets its handler. */
  close(port: number): E.Either<XenError, number> {
    this.handlers.delete(port);
    this.fired.delete(port);
    return this.call("close", EVTCHNOP.close, evtchn_close, { port }, () => 0);
  }

  /** Makes one `event_channel_op` call with its struct, reading the result with `out`. */
  private call<L extends StructLayout>(name: string, cmd: number, layout: L, values: Partial<StructValue<L>>, out: (s: StructValue<L>) => number): E.Either<XenError, number> {
    return this.hc.args.frame((a) => {
      const va = a.put(layout, values);
      const rc = this.hc.hypercall(HYPERVISOR.event_channel_op, cmd, va);
      return E.map(() => out(a.get(layout, va)))(result(`EVTCHNOP_${name}`, rc));
    });
  }
}

/** Ports the 2-level ABI can address. */
export const MAX_PORTS = EVTCHN_2L_NR_CHANNELS;
