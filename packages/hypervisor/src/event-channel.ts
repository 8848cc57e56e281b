/**
 * Event channels with Xen's 2-level ABI: `__HYPERVISOR_event_channel_op`,
 * virtual IRQs, and delivery into the `shared_info` bitmaps.
 *
 * ## Ports
 *
 * Each domain has 4096 ports (`EVTCHN_2L_NR_CHANNELS`), numbered from 0, of
 * which it may allocate those up to its `max_evtchn_port` (set at creation).
 * Port 0 is reserved and never handed out, so a port number of 0 can mean
 * "none" to a guest, as it does on Xen. A new port is always the lowest free
 * one. Every port is in one of these states (the `EVTCHNSTAT_*` values that
 * `EVTCHNOP_status` reports):
 *
 * - **closed**: free (port 0 is permanently closed: reserved);
 * - **unbound**: allocated with `EVTCHNOP_alloc_unbound` and offered to one
 *   remote domain, which may connect to it;
 * - **interdomain**: connected to a port of another domain (or, as a
 *   loopback, of the same domain); sending on one end makes the other pending;
 * - **virq**: bound to a virtual IRQ the hypervisor raises (`VIRQ_TIMER`,
 *   `VIRQ_DOM_EXC`...);
 * - **ipi**: bound to a vCPU of the same domain; sending on it makes it
 *   pending on that vCPU.
 *
 * ```
 *          alloc_unbound            bind_interdomain (by the offered domain)
 *  closed ─────────────► unbound ──────────────────────────► interdomain
 *    ▲  ▲                 │  ▲                                  │  │
 *    │  └── close ────────┘  └──── the peer closes its end ─────┘  │
 *    │                           (or dies): offered back to it     │
 *    └──────────────────────────── close ──────────────────────────┘
 *
 *  closed ── bind_virq ──► virq ── close ──► closed
 *  closed ── bind_ipi ───► ipi  ── close ──► closed
 * ```
 *
 * Every port also has a notify vCPU, the one whose `vcpu_info` hears of it:
 * vCPU 0 unless the binding names another or `EVTCHNOP_bind_vcpu` moves it
 * (IPIs and per-vCPU virqs stay where they were bound). Closing a port frees
 * it, clears its pending bit and resets its notify vCPU to 0.
 *
 * Per-vCPU virqs (`VIRQ_TIMER`, `_DEBUG`, `_XENOPROF`, `_XENPMU`) may be bound
 * once on every vCPU; all others are global and are bound once per domain, on
 * vCPU 0. Each vCPU has a virq → port table through which the hypervisor
 * raises them ({@link sendVirq}).
 *
 * ## 2-level delivery
 *
 * The pending and mask bitmaps live in the receiving domain's `shared_info`
 * page: 64 words of 64 bits each, port `p` being bit `p % 64` of word
 * `p / 64`. Each vCPU's `vcpu_info` has a 64-bit selector,
 * `evtchn_pending_sel`, with one bit per word, and an `evtchn_upcall_pending`
 * flag. Making port `p` pending for vCPU `v` (`evtchn_2l_set_pending`) is, in
 * this order:
 *
 * 1. test-and-set `evtchn_pending[p]`; if it was already set, stop: the
 *    guest has yet to see the earlier event, and will see this one with it;
 * 2. unless `evtchn_mask[p]` is set, test-and-set bit `p / 64` of `v`'s
 *    `evtchn_pending_sel`, and if that was clear, set
 *    `evtchn_upcall_pending`; if that too was clear, kick `v` (wake it if it
 *    is blocked);
 * 3. wake every vCPU polling `p` (`SCHEDOP_poll`), masked or not.
 *
 * The guest undoes this from the top: it clears `evtchn_upcall_pending`,
 * exchanges `evtchn_pending_sel` with 0, and for each selected word handles
 * the ports pending and not masked, clearing their pending bits. A masked
 * port stays pending without an upcall; `EVTCHNOP_unmask` clears the mask and,
 * if the port is pending, raises the selector and upcall as if it had just
 * been sent.
 *
 * The bit operations are atomic read-modify-writes on the shared machine
 * memory (`Atomics` on 32-bit words: port `p` is bit `p % 32` of 32-bit word
 * `p / 32`, on a little-endian host), so a guest running in another thread
 * sees them in Xen's order.
 *
 * ## Privilege
 *
 * A domain signals, binds, closes and unmasks only its own ports (port numbers
 * name the caller's own table). Acting on another domain's ports
 * (`alloc_unbound` in it, `status` of it, `reset` of it) asks the policy for
 * `"evtchn:<command>"` on that domain, as Xen's XSM_TARGET hooks do.
 *
 * Sources followed: Xen's `xen/common/event_channel.c`, `event_2l.c` and the
 * notes in `public/event_channel.h`.
 *
 * @module
 */
import {
  DOMID,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNOP,
  EVTCHNSTAT,
  NR,
  PAGE_SIZE,
  VIRQ,
  XEN_ERRNO,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_unmask,
  shared_info,
  vcpu_info,
  type StructLayout,
} from "@pvkit/abi";
import type { Domain, Vcpu } from "./domain.js";
import { readGuestStruct, writeGuestStruct } from "./guest-memory.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";

/** Ports per domain with the 2-level ABI. */
const NR_PORTS = EVTCHN_2L_NR_CHANNELS;

/**
 * Ports become valid in buckets, as Xen allocates its `struct evtchn` array a
 * page (64 channels) at a time: a port above every bucket allocated so far is
 * invalid (`-EINVAL`), a free port inside one is merely closed.
 */
const PORTS_PER_BUCKET = 64;

/**
 * `EVTCHNOP_reset_cont` (14): Xen's continuation of a preempted reset. The
 * header defines it only for Xen itself (`__XEN__`), but the hypercall accepts
 * it from a guest too; pvkit never preempts a reset, so it always answers
 * `-EBUSY`, as Xen does when no reset is in progress.
 */
const EVTCHNOP_RESET_CONT = 14;

const CLOSED = EVTCHNSTAT.closed;
const UNBOUND = EVTCHNSTAT.unbound;
const INTERDOMAIN = EVTCHNSTAT.interdomain;
const VIRQ_STATE = EVTCHNSTAT.virq;
const IPI = EVTCHNSTAT.ipi;
const PIRQ_STATE = EVTCHNSTAT.pirq;

/** Host interrupt lines a hypervisor offers (pvkit's "physical" IRQs). */
export const NR_HOST_IRQS = 256;

const PENDING = shared_info.fields.evtchn_pending.offset;
const MASK = shared_info.fields.evtchn_mask.offset;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending.offset;
const UPCALL_MASK = vcpu_info.fields.evtchn_upcall_mask.offset;
const PENDING_SEL = vcpu_info.fields.evtchn_pending_sel.offset;

const E = XEN_ERRNO;

/** The virqs bound per vCPU; every other virq is global (x86 has no per-vCPU arch virqs). */
const PER_VCPU_VIRQS: ReadonlySet<number> = new Set([VIRQ.TIMER, VIRQ.DEBUG, VIRQ.XENOPROF, VIRQ.XENPMU]);

/**
 * True if `virq` is global (bound once per domain, on vCPU 0) rather than
 * per-vCPU. As Xen's `virq_is_global`: `VIRQ_TIMER`, `VIRQ_DEBUG`,
 * `VIRQ_XENOPROF` and `VIRQ_XENPMU` are per-vCPU; every other virq, the x86
 * `VIRQ_ARCH_*` included, is global.
 */
export function virqIsGlobal(virq: number): boolean {
  return !PER_VCPU_VIRQS.has(virq);
}

/**
 * The event channel table of one domain, in compact form: one entry per port
 * in typed arrays, indexed by port number, plus a virq → port table per vCPU.
 * What each entry means depends on its state:
 *
 * | state         | `remoteDomid`              | `remotePort`   | `virq`       |
 * |---------------|----------------------------|----------------|--------------|
 * | `unbound`     | the domain it is offered to | —             | —            |
 * | `interdomain` | the peer domain            | the peer port  | —            |
 * | `virq`        | —                          | —              | the virq     |
 *
 * Only this module changes it; read it through {@link portState} and
 * {@link portsInUse}.
 */
export class EventChannels {
  /** `EVTCHNSTAT_*` of each port (`EVTCHNSTAT.closed` when free). */
  readonly status = new Uint8Array(NR_PORTS);
  /** The vCPU each port notifies. */
  readonly notifyVcpu = new Uint8Array(NR_PORTS);
  /** Unbound: the domid allowed to bind. Interdomain: the peer's domid. */
  readonly remoteDomid = new Uint16Array(NR_PORTS);
  /** Interdomain: the peer's port. */
  readonly remotePort = new Uint16Array(NR_PORTS);
  /** Virq ports: the virq number. */
  readonly virq = new Uint8Array(NR_PORTS);
  /** Pirq ports: the host interrupt line. */
  readonly pirq = new Uint16Array(NR_PORTS);
  /** Host interrupt line → port (0: not bound). */
  readonly pirqToPort = new Uint16Array(NR_HOST_IRQS);
  /** Per vCPU, virq → port (0: not bound). Global virqs are in vCPU 0's table. */
  readonly virqToPort: readonly Uint16Array[];
  /** Ports below this are valid (Xen's `valid_evtchns`): a multiple of 64, growing as ports are allocated. */
  validPorts = PORTS_PER_BUCKET;
  /** The highest port that may be allocated (Xen's `max_evtchn_port`, at most 4095 with the 2-level ABI). */
  readonly maxPort: number;
  /** Ports not closed (Xen's `active_evtchns`). */
  inUse = 0;
  /** No port below this is free (a search hint; port 0 is never free). */
  private lowestFree = 1;

  /** An empty table for `domain`: every port closed, port 0 reserved; no port above `maxPort` (`max_evtchn_port`) may be allocated. */
  constructor(
    readonly hv: Hypervisor,
    readonly domain: Domain,
    maxPort: number = NR_PORTS - 1,
  ) {
    this.virqToPort = domain.vcpus.map(() => new Uint16Array(NR.VIRQS));
    this.maxPort = Math.min(maxPort, NR_PORTS - 1);
  }

  /** Xen's `port_is_valid`: the port lies in an allocated bucket. */
  isValid(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < this.validPorts;
  }

  /**
   * Xen's `get_free_port` without taking the port: the lowest free port, or
   * `-ENOSPC` when every port up to {@link maxPort} is in use, or `-EINVAL`
   * if the domain is dying.
   */
  freePort(): number {
    if (this.domain.dead) return -E.EINVAL;
    for (let p = this.lowestFree; p <= this.maxPort; p++) {
      if (this.status[p] === CLOSED) {
        this.lowestFree = p;
        return p;
      }
    }
    this.lowestFree = this.maxPort + 1;
    return -E.ENOSPC;
  }

  /** Takes free `port` into `state`, notifying `vcpu`, and grows the valid range to cover it. */
  claim(port: number, state: number, vcpu: number): void {
    this.status[port] = state;
    this.notifyVcpu[port] = vcpu;
    while (port >= this.validPorts) this.validPorts += PORTS_PER_BUCKET;
    this.inUse++;
  }

  /** Frees `port` (Xen's `evtchn_free`, less the pending bit, which closing clears first). */
  release(port: number): void {
    this.status[port] = CLOSED;
    this.notifyVcpu[port] = 0;
    this.remoteDomid[port] = 0;
    this.remotePort[port] = 0;
    this.virq[port] = 0;
    this.pirq[port] = 0;
    this.inUse--;
    if (port < this.lowestFree) this.lowestFree = port;
  }
}

/** What one open port is, as {@link portState} reports it. */
export type PortState = {
  /** The port number. */
  readonly port: number;
  /** The vCPU it notifies. */
  readonly vcpu: number;
  /** Its bit in `shared_info.evtchn_pending`. */
  readonly pending: boolean;
  /** Its bit in `shared_info.evtchn_mask`. */
  readonly masked: boolean;
} & (
  | { readonly status: typeof EVTCHNSTAT.unbound; readonly remoteDomid: number }
  | { readonly status: typeof EVTCHNSTAT.interdomain; readonly remoteDomid: number; readonly remotePort: number }
  | { readonly status: typeof EVTCHNSTAT.virq; readonly virq: number }
  | { readonly status: typeof EVTCHNSTAT.pirq; readonly pirq: number }
  | { readonly status: typeof EVTCHNSTAT.ipi }
);

function channels(hv: Hypervisor, d: Domain): EventChannels {
  const ec = hv.evtchn.get(d);
  if (ec === undefined) throw new Error(`domain ${d.domid} has no event channel table`);
  return ec;
}

// ---------------------------------------------------------------------------
// Bits in shared memory

/** Atomically sets bit `bit` of the bitmap at byte `at` (4-aligned); true if it was already set. */
function testAndSet(w: Int32Array, at: number, bit: number): boolean {
  const m = 1 << (bit & 31);
  return (Atomics.or(w, (at >> 2) + (bit >> 5), m) & m) !== 0;
}

/** Atomically clears bit `bit` of the bitmap at byte `at`; true if it was set. */
function testAndClear(w: Int32Array, at: number, bit: number): boolean {
  const m = 1 << (bit & 31);
  return (Atomics.and(w, (at >> 2) + (bit >> 5), ~m) & m) !== 0;
}

/** Reads bit `bit` of the bitmap at byte `at`. */
function testBit(w: Int32Array, at: number, bit: number): boolean {
  return (Atomics.load(w, (at >> 2) + (bit >> 5)) & (1 << (bit & 31))) !== 0;
}

/** Byte address of `d`'s shared_info in machine memory, or -1 if it has none. */
function sharedInfoAt(d: Domain): number {
  return d.sharedInfoMfn < 0 ? -1 : d.sharedInfoMfn * PAGE_SIZE;
}

/**
 * Raises the selector bit of `port`'s word and then the upcall flag in `v`'s
 * vcpu_info (the tail of `evtchn_2l_set_pending` and `evtchn_2l_unmask`).
 * @returns true if this newly set `evtchn_upcall_pending`, so `v` must be kicked.
 */
function raiseUpcall(hv: Hypervisor, v: Vcpu, port: number): boolean {
  const info = hv.vcpuInfoView(v);
  if (info === undefined) return false; // vCPUs past 31 have no vcpu_info in shared_info
  if (testAndSet(hv.machine.words, info.byteOffset + PENDING_SEL, port >> 6)) return false;
  // vcpu_mark_events_pending: test-and-set the upcall flag; kick only on the edge.
  return (Atomics.or(hv.machine.bytes, info.byteOffset + UPCALL_PENDING, 1) & 1) === 0;
}

/**
 * Makes `port` of `d` pending for its vCPU `vcpuId`: Xen's
 * `evtchn_2l_set_pending`, then the kick and `evtchn_check_pollers`.
 */
function setPending(hv: Hypervisor, d: Domain, vcpuId: number, port: number): void {
  const si = sharedInfoAt(d);
  const v = d.vcpus[vcpuId];
  if (si < 0 || v === undefined) return;
  const w = hv.machine.words;
  if (testAndSet(w, si + PENDING, port)) return;
  const upcall = !testBit(w, si + MASK, port) && raiseUpcall(hv, v, port);
  hv.trace.record({ t: hv.now, kind: "evtchn_pending", domid: d.domid, port, vcpu: vcpuId, upcall });
  if (upcall) hv.wake(v);
  // A poller waits for its ports whether or not they are masked.
  for (const p of d.vcpus) if (p.poll !== undefined && p.poll.ports.includes(port)) hv.wake(p);
}

// ---------------------------------------------------------------------------
// Operations on a domain's table (shared by the hypercall, reset and destroy)

/**
 * Xen's `evtchn_close`: frees `port` of `d`. An interdomain peer goes back to
 * unbound, offered to `d`; a virq port leaves its vCPU's table.
 * @returns 0, or `-EINVAL` for an invalid, closed or reserved port.
 */
function closePort(hv: Hypervisor, d: Domain, port: number): number {
  const ec = channels(hv, d);
  if (!ec.isValid(port)) return -E.EINVAL;
  switch (ec.status[port]) {
    case UNBOUND:
    case IPI:
      break;
    case PIRQ_STATE:
      ec.pirqToPort[ec.pirq[port]!] = 0;
      break;
    case VIRQ_STATE: {
      const virq = ec.virq[port]!;
      const table = ec.virqToPort[virqIsGlobal(virq) ? 0 : ec.notifyVcpu[port]!];
      if (table !== undefined && table[virq] === port) table[virq] = 0;
      break;
    }
    case INTERDOMAIN: {
      const peer = hv.domains.get(ec.remoteDomid[port]!);
      const pec = peer && hv.evtchn.get(peer);
      const pport = ec.remotePort[port]!;
      if (pec !== undefined && pec.status[pport] === INTERDOMAIN) {
        pec.status[pport] = UNBOUND;
        pec.remoteDomid[pport] = d.domid;
        pec.remotePort[pport] = 0;
      }
      break;
    }
    default: // closed, and port 0 (reserved)
      return -E.EINVAL;
  }
  // Clear the pending bit so that a later binding of this port starts clean.
  const si = sharedInfoAt(d);
  if (si >= 0) testAndClear(hv.machine.words, si + PENDING, port);
  ec.release(port);
  return 0;
}

/** Closes every open port of `d`, highest first (as Xen's `evtchn_destroy`). */
function closeAll(hv: Hypervisor, d: Domain): void {
  const ec = channels(hv, d);
  for (let port = ec.validPorts - 1; port > 0 && ec.inUse > 0; port--) if (ec.status[port] !== CLOSED) closePort(hv, d, port);
}

// ---------------------------------------------------------------------------
// The hypercall

/** Copies `layout` in from `va`, runs `op` on it and, if it succeeded and `out`, copies it back. */
function withArg(ctx: HypercallContext, va: number, layout: StructLayout, out: boolean, op: (arg: DataView) => number): number {
  const { hv, domain } = ctx;
  const arg = readGuestStruct(hv.machine, domain, va, layout);
  if (arg === undefined) return -E.EFAULT;
  const rc = op(arg);
  // As Xen: a result that cannot be copied out is -EFAULT, and what was done stays done.
  if (rc === 0 && out && !writeGuestStruct(hv.machine, domain, va, arg)) return -E.EFAULT;
  return rc;
}

function allocUnbound(ctx: HypercallContext, arg: DataView): number {
  const f = evtchn_alloc_unbound.fields;
  const d = ctx.hv.lookup(ctx.domain, f.dom.get(arg, 0));
  if (d === undefined) return -E.ESRCH;
  const ec = channels(ctx.hv, d);
  const port = ec.freePort();
  if (port < 0) return port;
  if (!ctx.hv.allows(ctx.domain, "evtchn:alloc_unbound", "target", d)) return -E.EPERM;
  const remote = f.remote_dom.get(arg, 0);
  ec.claim(port, UNBOUND, 0);
  ec.remoteDomid[port] = remote === DOMID.SELF ? ctx.domain.domid : remote;
  f.port.set(arg, 0, port);
  return 0;
}

function bindInterdomain(ctx: HypercallContext, arg: DataView): number {
  const { hv, domain: ld } = ctx;
  const f = evtchn_bind_interdomain.fields;
  const rd = hv.lookup(ld, f.remote_dom.get(arg, 0));
  if (rd === undefined) return -E.ESRCH;
  const lec = channels(hv, ld);
  const rec = channels(hv, rd);
  const lport = lec.freePort();
  if (lport < 0) return lport;
  const rport = f.remote_port.get(arg, 0);
  // The remote port must be unbound and offered to us.
  if (!rec.isValid(rport) || rec.status[rport] !== UNBOUND || rec.remoteDomid[rport] !== ld.domid) return -E.EINVAL;
  lec.claim(lport, INTERDOMAIN, 0);
  lec.remoteDomid[lport] = rd.domid;
  lec.remotePort[lport] = rport;
  rec.status[rport] = INTERDOMAIN;
  rec.remoteDomid[rport] = ld.domid;
  rec.remotePort[rport] = lport;
  // Sends on the remote port while it was unbound were dropped: make up for
  // any such loss by always marking the new local port pending.
  setPending(hv, ld, lec.notifyVcpu[lport]!, lport);
  f.local_port.set(arg, 0, lport);
  return 0;
}

function bindVirq(ctx: HypercallContext, arg: DataView): number {
  const d = ctx.domain;
  const f = evtchn_bind_virq.fields;
  const virq = f.virq.get(arg, 0);
  const vcpu = f.vcpu.get(arg, 0);
  if (virq >= NR.VIRQS) return -E.EINVAL;
  if (virqIsGlobal(virq) && vcpu !== 0) return -E.EINVAL;
  if (vcpu >= d.vcpus.length) return -E.ENOENT;
  const ec = channels(ctx.hv, d);
  const table = ec.virqToPort[vcpu]!;
  if (table[virq] !== 0) return -E.EEXIST;
  const port = ec.freePort();
  if (port < 0) return port;
  ec.claim(port, VIRQ_STATE, vcpu);
  ec.virq[port] = virq;
  table[virq] = port;
  f.port.set(arg, 0, port);
  return 0;
}

function bindPirq(ctx: HypercallContext, arg: DataView): number {
  const { hv, domain: d } = ctx;
  const f = evtchn_bind_pirq.fields;
  const pirq = f.pirq.get(arg, 0);
  if (!hv.hostIrqAllocated(pirq)) return -E.EINVAL;
  // Xen checks the caller's access to the irq; pvkit's host lines are the privileged domain's.
  if (!hv.allows(d, "evtchn:bind_pirq", "priv")) return -E.EPERM;
  const ec = channels(hv, d);
  if (ec.pirqToPort[pirq] !== 0) return -E.EEXIST;
  const port = ec.freePort();
  if (port < 0) return port;
  ec.claim(port, PIRQ_STATE, 0);
  ec.pirq[port] = pirq;
  ec.pirqToPort[pirq] = port;
  f.port.set(arg, 0, port);
  return 0;
}

/**
 * Xen's `send_guest_pirq`: marks pending the port a domain bound to host
 * interrupt line `pirq`. Nothing happens if no live domain bound it.
 * @returns whether a port was signalled.
 */
export function raisePirq(hv: Hypervisor, pirq: number): boolean {
  if (!Number.isInteger(pirq) || pirq < 0 || pirq >= NR_HOST_IRQS) return false;
  for (const d of hv.domains.values()) {
    const ec = hv.evtchn.get(d);
    const port = ec?.pirqToPort[pirq] ?? 0;
    if (d.dead || ec === undefined || port === 0) continue;
    setPending(hv, d, ec.notifyVcpu[port]!, port);
    return true;
  }
  return false;
}

function bindIpi(ctx: HypercallContext, arg: DataView): number {
  const d = ctx.domain;
  const f = evtchn_bind_ipi.fields;
  const vcpu = f.vcpu.get(arg, 0);
  if (vcpu >= d.vcpus.length) return -E.ENOENT;
  const ec = channels(ctx.hv, d);
  const port = ec.freePort();
  if (port < 0) return port;
  ec.claim(port, IPI, vcpu);
  f.port.set(arg, 0, port);
  return 0;
}

function send(ctx: HypercallContext, arg: DataView): number {
  const { hv, domain: ld } = ctx;
  const lport = evtchn_send.fields.port.get(arg, 0);
  const lec = channels(hv, ld);
  if (!lec.isValid(lport)) return -E.EINVAL;
  switch (lec.status[lport]) {
    case INTERDOMAIN: {
      const rd = hv.domains.get(lec.remoteDomid[lport]!);
      const rport = lec.remotePort[lport]!;
      hv.trace.record({ t: hv.now, kind: "evtchn_send", domid: ld.domid, port: lport, toDomid: lec.remoteDomid[lport]!, toPort: rport });
      if (rd !== undefined) setPending(hv, rd, channels(hv, rd).notifyVcpu[rport]!, rport);
      return 0;
    }
    case IPI:
      hv.trace.record({ t: hv.now, kind: "evtchn_send", domid: ld.domid, port: lport, toDomid: ld.domid, toPort: lport });
      setPending(hv, ld, lec.notifyVcpu[lport]!, lport);
      return 0;
    case UNBOUND:
      return 0; // nobody is connected yet: Xen drops the notification silently
    default:
      return -E.EINVAL;
  }
}

function status(ctx: HypercallContext, arg: DataView): number {
  const f = evtchn_status.fields;
  const d = ctx.hv.lookup(ctx.domain, f.dom.get(arg, 0));
  if (d === undefined) return -E.ESRCH;
  const ec = channels(ctx.hv, d);
  const port = f.port.get(arg, 0);
  if (!ec.isValid(port)) return -E.EINVAL;
  if (!ctx.hv.allows(ctx.domain, "evtchn:status", "target", d)) return -E.EPERM;
  const state = ec.status[port]!;
  f.status.set(arg, 0, state);
  switch (state) {
    case UNBOUND:
      f.unbound_dom.set(arg, 0, ec.remoteDomid[port]!);
      break;
    case INTERDOMAIN:
      f.interdomain_dom.set(arg, 0, ec.remoteDomid[port]!);
      f.interdomain_port.set(arg, 0, ec.remotePort[port]!);
      break;
    case VIRQ_STATE:
      f.virq.set(arg, 0, ec.virq[port]!);
      break;
    case PIRQ_STATE:
      f.pirq.set(arg, 0, ec.pirq[port]!);
      break;
  }
  f.vcpu.set(arg, 0, ec.notifyVcpu[port]!);
  return 0;
}

function bindVcpu(ctx: HypercallContext, arg: DataView): number {
  const d = ctx.domain;
  const port = evtchn_bind_vcpu.fields.port.get(arg, 0);
  const vcpu = evtchn_bind_vcpu.fields.vcpu.get(arg, 0);
  if (vcpu >= d.vcpus.length) return -E.ENOENT;
  const ec = channels(ctx.hv, d);
  if (!ec.isValid(port)) return -E.EINVAL;
  switch (ec.status[port]) {
    case VIRQ_STATE:
      if (!virqIsGlobal(ec.virq[port]!)) return -E.EINVAL; // a per-vCPU virq stays on its vCPU
      ec.notifyVcpu[port] = vcpu;
      return 0;
    case UNBOUND:
    case INTERDOMAIN:
      ec.notifyVcpu[port] = vcpu;
      return 0;
    default: // IPIs stay where they were bound; closed ports have no binding
      return -E.EINVAL;
  }
}

function unmask(ctx: HypercallContext, arg: DataView): number {
  const { hv, domain: d } = ctx;
  const port = evtchn_unmask.fields.port.get(arg, 0);
  const ec = channels(hv, d);
  if (!ec.isValid(port)) return -E.EINVAL;
  if (ec.status[port] === CLOSED) return 0; // Xen leaves a port that is not in use alone
  const si = sharedInfoAt(d);
  const vcpuId = ec.notifyVcpu[port]!;
  const v = d.vcpus[vcpuId]!;
  const w = hv.machine.words;
  // evtchn_2l_unmask: only a mask this call clears, on a pending port, re-delivers.
  if (si >= 0 && testAndClear(w, si + MASK, port) && testBit(w, si + PENDING, port)) {
    const upcall = raiseUpcall(hv, v, port);
    hv.trace.record({ t: hv.now, kind: "evtchn_pending", domid: d.domid, port, vcpu: vcpuId, upcall });
    if (upcall) hv.wake(v);
  }
  return 0;
}

function reset(ctx: HypercallContext, arg: DataView, resuming: boolean): number {
  const d = ctx.hv.lookup(ctx.domain, evtchn_reset.fields.dom.get(arg, 0));
  if (d === undefined) return -E.ESRCH;
  if (!ctx.hv.allows(ctx.domain, "evtchn:reset", "target", d)) return -E.EPERM;
  // Another domain's ports may only be reset while the toolstack has it paused.
  if (d !== ctx.domain && d.pauseCount === 0) return -E.EINVAL;
  if (resuming) return -E.EBUSY; // no reset is ever left half done here
  closeAll(ctx.hv, d);
  return 0;
}

/**
 * The handler of `__HYPERVISOR_event_channel_op(cmd, arg)`: `arg` is the
 * guest virtual address of the command's struct (`evtchn_send` for
 * `EVTCHNOP_send`...), copied in once and, for commands with results, copied
 * back out. Answers as Xen's `do_event_channel_op`:
 *
 * - `-EFAULT`: the struct cannot be read (or its result written back; what
 *   the command did stays done, as on Xen);
 * - `-ESRCH`: a named domain does not exist;
 * - `-EPERM`: the policy refuses an action on another domain;
 * - `-EINVAL`: an invalid port, a port in the wrong state (a remote port not
 *   unbound or not offered to the caller, a closed port to close or send
 *   on...), a virq out of range or a global virq on a vCPU other than 0;
 * - `-ENOENT`: no such vCPU;
 * - `-EEXIST`: the virq is already bound on that vCPU;
 * - `-ENOSPC`: every port up to the domain's `max_evtchn_port` is in use;
 * - `-ENOSYS`: an unknown command, the FIFO ABI's `init_control` and
 *   `expand_array` (not implemented: guests fall back to 2-level), and
 *   `set_priority` on a valid port (2-level ports have no priority, as on Xen).
 *
 * `EVTCHNOP_bind_pirq` binds a host interrupt line (see
 * {@link Hypervisor.allocHostIrq}) to a port of a privileged domain: pvkit's
 * "physical" IRQs are the host's I/O completions, raised with
 * {@link raisePirq}. A line not allocated, or one already bound, answers
 * `-EINVAL` or `-EEXIST`; an unprivileged caller `-EPERM`.
 */
export function eventChannelOp(ctx: HypercallContext, cmd: number, argVa: number): number {
  switch (cmd) {
    case EVTCHNOP.alloc_unbound:
      return withArg(ctx, argVa, evtchn_alloc_unbound, true, (a) => allocUnbound(ctx, a));
    case EVTCHNOP.bind_interdomain:
      return withArg(ctx, argVa, evtchn_bind_interdomain, true, (a) => bindInterdomain(ctx, a));
    case EVTCHNOP.bind_virq:
      return withArg(ctx, argVa, evtchn_bind_virq, true, (a) => bindVirq(ctx, a));
    case EVTCHNOP.bind_ipi:
      return withArg(ctx, argVa, evtchn_bind_ipi, true, (a) => bindIpi(ctx, a));
    case EVTCHNOP.bind_pirq:
      return withArg(ctx, argVa, evtchn_bind_pirq, true, (a) => bindPirq(ctx, a));
    case EVTCHNOP.close:
      return withArg(ctx, argVa, evtchn_close, false, (a) => closePort(ctx.hv, ctx.domain, evtchn_close.fields.port.get(a, 0)));
    case EVTCHNOP.send:
      return withArg(ctx, argVa, evtchn_send, false, (a) => send(ctx, a));
    case EVTCHNOP.status:
      return withArg(ctx, argVa, evtchn_status, true, (a) => status(ctx, a));
    case EVTCHNOP.bind_vcpu:
      return withArg(ctx, argVa, evtchn_bind_vcpu, false, (a) => bindVcpu(ctx, a));
    case EVTCHNOP.unmask:
      return withArg(ctx, argVa, evtchn_unmask, false, (a) => unmask(ctx, a));
    case EVTCHNOP.reset:
    case EVTCHNOP_RESET_CONT:
      return withArg(ctx, argVa, evtchn_reset, false, (a) => reset(ctx, a, cmd === EVTCHNOP_RESET_CONT));
    case EVTCHNOP.init_control:
      return withArg(ctx, argVa, evtchn_init_control, true, () => -E.ENOSYS);
    case EVTCHNOP.expand_array:
      return withArg(ctx, argVa, evtchn_expand_array, false, () => -E.ENOSYS);
    case EVTCHNOP.set_priority:
      return withArg(ctx, argVa, evtchn_set_priority, false, (a) =>
        channels(ctx.hv, ctx.domain).isValid(evtchn_set_priority.fields.port.get(a, 0)) ? -E.ENOSYS : -E.EINVAL,
      );
    default:
      return -E.ENOSYS;
  }
}

// ---------------------------------------------------------------------------
// What the rest of the hypervisor uses

/**
 * Raises `virq` in `d`, as Xen's `send_guest_vcpu_virq` and
 * `send_guest_global_virq`: a per-vCPU virq on the port vCPU `vcpuId` bound
 * for it; a global virq on the port bound on vCPU 0, delivered to that port's
 * notify vCPU (`vcpuId` is then ignored). Nothing happens if the virq is not
 * bound or `d` is dying.
 */
export function sendVirq(hv: Hypervisor, d: Domain, virq: number, vcpuId: number): void {
  if (d.dead || !Number.isInteger(virq) || virq < 0 || virq >= NR.VIRQS) return;
  const ec = hv.evtchn.get(d);
  if (ec === undefined) return;
  if (virqIsGlobal(virq)) {
    const port = ec.virqToPort[0]?.[virq] ?? 0;
    if (port !== 0) setPending(hv, d, ec.notifyVcpu[port]!, port);
  } else {
    const port = ec.virqToPort[vcpuId]?.[virq] ?? 0;
    if (port !== 0) setPending(hv, d, vcpuId, port);
  }
}

/**
 * Closes every port of the dying domain `d` (Xen's `evtchn_destroy`): the
 * peers of its interdomain ports go back to unbound, offered to `d`'s domid,
 * exactly as if `d` had closed them.
 */
export function evtchnDestroy(hv: Hypervisor, d: Domain): void {
  if (hv.evtchn.get(d) !== undefined) closeAll(hv, d);
}

/**
 * Xen's `local_events_need_delivery`: `v` has an upcall waiting
 * (`evtchn_upcall_pending`) and accepts upcalls (`evtchn_upcall_mask` clear).
 */
export function localEventsPending(hv: Hypervisor, v: Vcpu): boolean {
  const info = hv.vcpuInfoView(v);
  if (info === undefined) return false;
  return Atomics.load(hv.machine.bytes, info.byteOffset + UPCALL_PENDING) !== 0 && Atomics.load(hv.machine.bytes, info.byteOffset + UPCALL_MASK) === 0;
}

/**
 * True if any port `v` polls (`SCHEDOP_poll`, in `v.poll.ports`) is pending
 * in its domain's `shared_info`, masked or not.
 */
export function pollSatisfied(hv: Hypervisor, v: Vcpu): boolean {
  const si = sharedInfoAt(v.domain);
  if (v.poll === undefined || si < 0) return false;
  const w = hv.machine.words;
  return v.poll.ports.some((p) => Number.isInteger(p) && p >= 0 && p < NR_PORTS && testBit(w, si + PENDING, p));
}

/**
 * The state of `port` of `d`: what it is bound to, its notify vCPU and its
 * pending and mask bits; undefined for a closed, reserved or out-of-range port.
 */
export function portState(hv: Hypervisor, d: Domain, port: number): PortState | undefined {
  const ec = hv.evtchn.get(d);
  if (ec === undefined || !ec.isValid(port) || ec.status[port] === CLOSED) return undefined;
  const si = sharedInfoAt(d);
  const w = hv.machine.words;
  const base = {
    port,
    vcpu: ec.notifyVcpu[port]!,
    pending: si >= 0 && testBit(w, si + PENDING, port),
    masked: si >= 0 && testBit(w, si + MASK, port),
  };
  switch (ec.status[port]) {
    case UNBOUND:
      return { ...base, status: UNBOUND, remoteDomid: ec.remoteDomid[port]! };
    case INTERDOMAIN:
      return { ...base, status: INTERDOMAIN, remoteDomid: ec.remoteDomid[port]!, remotePort: ec.remotePort[port]! };
    case VIRQ_STATE:
      return { ...base, status: VIRQ_STATE, virq: ec.virq[port]! };
    case PIRQ_STATE:
      return { ...base, status: PIRQ_STATE, pirq: ec.pirq[port]! };
    default:
      return { ...base, status: IPI };
  }
}

/** Every open port of `d`, in port order (what Xen's `'e'` debug key dumps). */
export function portsInUse(hv: Hypervisor, d: Domain): PortState[] {
  const ec = hv.evtchn.get(d);
  const out: PortState[] = [];
  if (ec === undefined) return out;
  for (let port = 1; port < ec.validPorts; port++) {
    const s = portState(hv, d, port);
    if (s !== undefined) out.push(s);
  }
  return out;
}

/**
 * Violated event channel invariants, as sentences (empty when all hold):
 * every domain has a table; port 0 stays reserved; no port lies past the
 * valid range, which never exceeds 4096; the in-use count matches the open
 * ports; a dying domain has none; notify vCPUs exist; interdomain ports are
 * symmetric (A:p → B:q implies B:q → A:p, both interdomain); an unbound port
 * is offered to a concrete domid (never `DOMID_SELF`); the virq tables and
 * the virq ports agree both ways (a per-vCPU virq in its notify vCPU's table,
 * a global one in vCPU 0's); host-line (pirq) ports and their lines agree both
 * ways and belong to privileged domains.
 */
export function evtchnInvariants(hv: Hypervisor): string[] {
  const problems: string[] = [];
  for (const d of hv.domains.values()) {
    const ec = hv.evtchn.get(d);
    const who = `domain ${d.domid}`;
    if (ec === undefined) {
      problems.push(`${who} has no event channel table`);
      continue;
    }
    if (ec.validPorts > NR_PORTS || ec.validPorts % PORTS_PER_BUCKET !== 0) problems.push(`${who}: ${ec.validPorts} valid ports, not a multiple of ${PORTS_PER_BUCKET} up to ${NR_PORTS}`);
    if (ec.status[0] !== CLOSED) problems.push(`${who}: reserved port 0 is in use`);
    let open = 0;
    for (let port = 0; port < NR_PORTS; port++) {
      const state = ec.status[port]!;
      if (state === CLOSED) continue;
      open++;
      const at = `${who} port ${port}`;
      if (port >= ec.validPorts) problems.push(`${at} is in use beyond the ${ec.validPorts} valid ports`);
      if (ec.notifyVcpu[port]! >= d.vcpus.length) problems.push(`${at} notifies vCPU ${ec.notifyVcpu[port]}, which does not exist`);
      switch (state) {
        case UNBOUND:
          if (ec.remoteDomid[port] === DOMID.SELF) problems.push(`${at} is unbound and offered to DOMID_SELF, which should have been resolved`);
          break;
        case INTERDOMAIN: {
          const rdom = ec.remoteDomid[port]!;
          const rport = ec.remotePort[port]!;
          const peer = hv.domains.get(rdom);
          const pec = peer && hv.evtchn.get(peer);
          if (pec === undefined) problems.push(`${at} is connected to domain ${rdom}, which does not exist`);
          else if (pec.status[rport] !== INTERDOMAIN || pec.remoteDomid[rport] !== d.domid || pec.remotePort[rport] !== port) {
            problems.push(`${at} is connected to domain ${rdom} port ${rport}, which is not connected back to it`);
          }
          break;
        }
        case VIRQ_STATE: {
          const virq: number = ec.virq[port]!;
          const owner = virqIsGlobal(virq) ? 0 : ec.notifyVcpu[port]!;
          if (virq >= NR.VIRQS) problems.push(`${at} is bound to virq ${virq}, past NR_VIRQS`);
          else if (ec.virqToPort[owner]?.[virq] !== port) problems.push(`${at} is bound to virq ${virq}, but vCPU ${owner}'s table does not name it`);
          break;
        }
        case PIRQ_STATE: {
          const pirq = ec.pirq[port]!;
          if (ec.pirqToPort[pirq] !== port) problems.push(`${at} is bound to host line ${pirq}, but the line names port ${ec.pirqToPort[pirq]}`);
          else if (!d.privileged) problems.push(`${at} is bound to host line ${pirq} in an unprivileged domain`);
          break;
        }
        case IPI:
          break;
        default:
          problems.push(`${at} is in state ${state}, which pvkit never creates`);
      }
    }
    if (open !== ec.inUse) problems.push(`${who}: ${ec.inUse} ports counted in use, but ${open} are open`);
    ec.pirqToPort.forEach((port, pirq) => {
      if (port !== 0 && (ec.status[port] !== PIRQ_STATE || ec.pirq[port] !== pirq)) problems.push(`${who}: host line ${pirq} names port ${port}, which is not bound to it`);
    });
    if (d.dead && open > 0) problems.push(`${who} is dying with ${open} ports still open`);
    ec.virqToPort.forEach((table, vcpu) =>
      table.forEach((port, virq) => {
        if (port === 0) return;
        const at = `${who} vCPU ${vcpu} virq ${virq}`;
        if (ec.status[port] !== VIRQ_STATE || ec.virq[port] !== virq) problems.push(`${at} names port ${port}, which is not bound to that virq`);
        else if (virqIsGlobal(virq) ? vcpu !== 0 : ec.notifyVcpu[port] !== vcpu) problems.push(`${at} names port ${port}, which is bound on vCPU ${ec.notifyVcpu[port]}`);
      }),
    );
  }
  return problems;
}
