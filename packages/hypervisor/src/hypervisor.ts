/**
 * The hypervisor: machine memory, domains, the hypercall table, time.
 *
 * It is state plus handlers, nothing more: no timers, no I/O, no threads. An
 * engine drives it: it advances {@link Hypervisor.now}, fires due timers with
 * {@link Hypervisor.advanceTo}, runs vCPUs, and hears through
 * {@link EngineHooks} when a vCPU becomes runnable or gives up its pCPU.
 *
 * @module
 */
import { DOMID, EVTCHN_2L_NR_CHANNELS, HYPERVISOR, PAGE_SIZE, RUNSTATE, SHUTDOWN, VIRQ, XEN_ERRNO, XEN_LEGACY, keyOf, vcpu_info } from "@pvkit/abi";
import { Domain, type DomainConfig, type ShutdownReason, type Vcpu } from "./domain.js";
import { EventChannels, NR_HOST_IRQS, eventChannelOp, evtchnDestroy, localEventsPending, pollSatisfied, sendVirq } from "./event-channel.js";
import { DEFAULT_MAX_GRANT_FRAMES, DEFAULT_MAX_MAPTRACK_FRAMES, GrantTable, grantDestroy, grantTableOp } from "./grant-table.js";
import { dummyPolicy, type HypercallContext, type HypercallHandler, type Policy, type XsmDefault } from "./hypercall.js";
import { MachineMemory, PageType } from "./machine.js";
import { memoryOp } from "./memory-op.js";
import { callbackOp, consoleIo, multicall, xenVersion } from "./misc-ops.js";
import { domctl, sysctl } from "./control-ops.js";
import { schedOp, setTimerOp, vcpuOp } from "./sched-ops.js";
import { Trace } from "./trace.js";

/** What the engine wants to hear from the hypervisor. */
export interface EngineHooks {
  /** `v` became runnable (an event, a timer, an unpause). */
  wake(v: Vcpu): void;
  /** The running `v` gave up its pCPU (block, poll, yield, shutdown, pause). */
  deschedule(v: Vcpu): void;
  /** `d` is destroyed: forget everything kept for its vCPUs. */
  destroyed?(d: Domain): void;
}

/** Host-level configuration of a {@link Hypervisor}. */
export interface HypervisorConfig {
  /** Machine memory in 4 KiB frames. */
  readonly frames: number;
  /** Simulated physical CPUs (reported by `XEN_SYSCTL_physinfo`). */
  readonly pcpus?: number;
  /** Keep a trace (default true). */
  readonly trace?: boolean;
  /** The privilege policy (default {@link dummyPolicy}). */
  readonly policy?: Policy;
}

/** The `xen_version` this hypervisor reports: 4.17, as the headers it speaks. */
export const XEN_VERSION = { major: 4, minor: 17, extra: "-pvkit" } as const;

const NO_HOOKS: EngineHooks = { wake: () => {}, deschedule: () => {} };

/** Whether a hypercall argument is a register's worth: a finite number. */
const isRegister = (a: unknown): boolean => typeof a === "number" && Number.isFinite(a);

/** Ring 0. */
export class Hypervisor {
  /** Machine memory and the frame table. */
  readonly machine: MachineMemory;
  /** Live domains (not yet destroyed), by domid. */
  readonly domains = new Map<number, Domain>();
  /** Event channel state of each domain. */
  readonly evtchn = new WeakMap<Domain, EventChannels>();
  /** Grant table state of each domain. */
  readonly grants = new WeakMap<Domain, GrantTable>();
  /** Simulated pCPUs. */
  readonly pcpus: number;
  /** The trace. */
  readonly trace: Trace;
  /** The privilege policy. */
  policy: Policy;
  /** The engine's hooks; the default does nothing (handlers can be tested with no engine). */
  hooks: EngineHooks = NO_HOOKS;
  /** Virtual time in nanoseconds since boot; the engine advances it. */
  now = 0;
  /** Xen's console: what `console_io` writes and hypervisor messages, for `xl dmesg`. */
  readonly console: string[] = [];
  /** Bytes typed at Xen's console and not yet read by `CONSOLEIO_read` (Xen's serial input ring). */
  readonly serialInput: number[] = [];

  private readonly table = new Map<number, HypercallHandler>();
  /** The last domid chosen for a domain created without one (Xen's `rover`). */
  private rover = 0;
  private readonly hostIrqs = new Set<number>();

  /** Boots a hypervisor with empty machine memory. */
  constructor(config: HypervisorConfig) {
    this.machine = new MachineMemory(config.frames);
    this.pcpus = config.pcpus ?? 1;
    this.trace = new Trace(config.trace ?? true);
    this.policy = config.policy ?? dummyPolicy;
    const H = HYPERVISOR;
    const entries: [number, HypercallHandler][] = [
      [H.xen_version, xenVersion],
      [H.console_io, consoleIo],
      [H.sched_op, schedOp],
      [H.set_timer_op, setTimerOp],
      [H.vcpu_op, vcpuOp],
      [H.event_channel_op, eventChannelOp],
      [H.grant_table_op, grantTableOp],
      [H.memory_op, memoryOp],
      [H.multicall, multicall],
      [H.callback_op, callbackOp],
      [H.domctl, domctl],
      [H.sysctl, sysctl],
    ];
    for (const [op, handler] of entries) this.table.set(op, handler);
  }

  /**
   * Enters the hypervisor from `vcpu` (the guest's hypercall instruction).
   *
   * A guest's registers are numbers: an `op` that is not an integer, or an
   * argument that is not a finite number (a BigInt, a string, NaN...),
   * answers `-EINVAL` before any handler runs. A dead domain's calls answer
   * `-ESRCH`, unknown numbers `-ENOSYS`.
   *
   * A handler that throws has hit a hypervisor bug, never the guest's fault:
   * ring 0 contains it, as Xen contains a fault it can pin on one domain with
   * `domain_crash`. The error goes to Xen's console with the hypercall and
   * its caller, the calling domain is crashed (`SHUTDOWN_crash`), and the
   * call answers `-EFAULT`. Whatever the handler changed before it threw
   * stays changed.
   */
  hypercall(vcpu: Vcpu, op: number, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
    const d = vcpu.domain;
    const validOp = typeof op === "number" && Number.isInteger(op);
    // Registers hold numbers; anything else a caller passed is refused (checked without allocating: this is the hot path).
    const registers = validOp && isRegister(a1) && isRegister(a2) && isRegister(a3) && isRegister(a4) && isRegister(a5);
    const name = () => (validOp ? (keyOf(HYPERVISOR, op) ?? String(op)) : "invalid");
    let result: number;
    if (!registers) result = -XEN_ERRNO.EINVAL;
    else if (d.dead) result = -XEN_ERRNO.ESRCH;
    else {
      const handler = this.table.get(op);
      if (handler === undefined) result = -XEN_ERRNO.ENOSYS;
      else {
        try {
          result = handler({ hv: this, domain: d, vcpu }, a1, a2, a3, a4, a5);
        } catch (error) {
          this.log(`hypervisor bug in ${name()} from d${d.domid}v${vcpu.id}: ${error instanceof Error ? error.message : String(error)}; crashing domain ${d.domid}`);
          this.shutdown(d, SHUTDOWN.crash);
          result = -XEN_ERRNO.EFAULT;
        }
      }
    }
    if (this.trace.enabled) {
      // Only numbers go into the trace, which serializes as JSON.
      const numbers = [a1, a2, a3, a4, a5].map((a) => (typeof a === "number" ? a : Number.NaN));
      this.trace.record({ t: this.now, kind: "hypercall", domid: d.domid, vcpu: vcpu.id, op: name(), args: numbers, result });
    }
    return result;
  }

  /** A context for calling handlers directly (used by multicall and tests). */
  context(vcpu: Vcpu): HypercallContext {
    return { hv: this, domain: vcpu.domain, vcpu };
  }

  /** Looks up a domain; `DOMID_SELF` means the caller. */
  lookup(caller: Domain, domid: number): Domain | undefined {
    if (domid === DOMID.SELF) return caller;
    return this.domains.get(domid);
  }

  /**
   * Asks the policy whether `caller` may do `action` to `target`; `xsm` is
   * the operation's default class, as Xen's hook for it names.
   */
  allows(caller: Domain, action: string, xsm: XsmDefault, target?: Domain): boolean {
    return this.policy.allows(caller, action, xsm, target);
  }

  /**
   * Creates a paused domain with a shared_info page and no RAM.
   *
   * Without a domid, one is chosen as Xen's `XEN_DOMCTL_createdomain` does:
   * round-robin, the first free id after the last one chosen this way,
   * wrapping from the reserved ids to 1, so 0 is never chosen.
   *
   * The domid is checked first, as Xen's domctl does; then the configuration.
   * The grant and event channel limits are checked as Xen 4.17 checks them
   * (`grant_table_init`): `maxGrantFrames` from 1 to 64 and
   * `maxMaptrackFrames` from 0 to 1024 (Xen's defaults, which bound what a
   * domain may be given), `maxEvtchnPort` not negative.
   * @param domid a specific domid, or undefined to choose one
   * @returns the domain, or a negative errno (`-EEXIST` for a domid in use,
   * `-EINVAL` for a reserved domid or bad config, `-ENOMEM` when no domid or
   * frame is free).
   */
  createDomain(config: DomainConfig, domid?: number): Domain | number {
    const id = domid ?? this.chooseDomid();
    if (id === undefined) return -XEN_ERRNO.ENOMEM;
    if (!Number.isInteger(id) || id < 0 || id >= DOMID.FIRST_RESERVED) return -XEN_ERRNO.EINVAL;
    if (this.domains.has(id)) return -XEN_ERRNO.EEXIST;
    if (!Number.isInteger(config.maxVcpus) || config.maxVcpus < 1 || config.maxVcpus > XEN_LEGACY.MAX_VCPUS) return -XEN_ERRNO.EINVAL;
    if (!Number.isInteger(config.maxPages) || config.maxPages < 0) return -XEN_ERRNO.EINVAL;
    const grantFrames = config.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES;
    const maptrackFrames = config.maxMaptrackFrames ?? DEFAULT_MAX_MAPTRACK_FRAMES;
    const evtchnPort = config.maxEvtchnPort ?? EVTCHN_2L_NR_CHANNELS - 1;
    if (!Number.isInteger(grantFrames) || grantFrames < 1 || grantFrames > DEFAULT_MAX_GRANT_FRAMES) return -XEN_ERRNO.EINVAL;
    if (!Number.isInteger(maptrackFrames) || maptrackFrames < 0 || maptrackFrames > DEFAULT_MAX_MAPTRACK_FRAMES) return -XEN_ERRNO.EINVAL;
    if (!Number.isInteger(evtchnPort) || evtchnPort < 0) return -XEN_ERRNO.EINVAL;
    const d = new Domain(this.machine, id, config, this.now);
    const si = this.machine.alloc(id, "xenheap");
    if (si === undefined) return -XEN_ERRNO.ENOMEM;
    this.machine.type[si] = PageType.shared_info;
    this.machine.typeCount[si] = 1;
    d.sharedInfoMfn = si;
    // Upcalls start masked, as Xen leaves them until the guest is ready.
    for (const v of d.vcpus) {
      const info = this.vcpuInfoView(v);
      if (info !== undefined) vcpu_info.fields.evtchn_upcall_mask.set(info, 0, 1);
    }
    d.vcpus[0]!.runstate = RUNSTATE.runnable; // vCPU 0 is up; it runs once the domain is unpaused
    this.domains.set(id, d);
    this.evtchn.set(d, new EventChannels(this, d, evtchnPort));
    this.grants.set(d, new GrantTable(this, d, grantFrames, maptrackFrames));
    this.traceDomain(d, "created", `paused, max ${config.maxPages} pages, ${config.maxVcpus} vCPU(s)${config.privileged ? ", privileged" : ""}`);
    return d;
  }

  /** The first free domid after the rover, wrapping from the reserved ids to 1; the rover moves to it. */
  private chooseDomid(): number | undefined {
    let dom = this.rover;
    for (let tried = 1; tried < DOMID.FIRST_RESERVED; tried++) {
      dom = dom + 1 >= DOMID.FIRST_RESERVED ? 1 : dom + 1;
      if (!this.domains.has(dom)) return (this.rover = dom);
    }
    return undefined;
  }

  /** The `vcpu_info` of `v` in its domain's shared_info (vCPUs below `XEN_LEGACY_MAX_VCPUS`), as a DataView at its base. */
  vcpuInfoView(v: Vcpu): DataView | undefined {
    if (v.id >= XEN_LEGACY.MAX_VCPUS || v.domain.sharedInfoMfn < 0) return undefined;
    return new DataView(this.machine.buffer, v.domain.sharedInfoMfn * PAGE_SIZE + v.id * vcpu_info.size, vcpu_info.size);
  }

  /** Pauses `d` once more (`XEN_DOMCTL_pausedomain`). */
  pause(d: Domain): void {
    d.pauseCount++;
    if (d.state === "running") {
      d.state = "paused";
      for (const v of d.vcpus) if (v.runstate === RUNSTATE.running || v.runstate === RUNSTATE.runnable) this.hooks.deschedule(v);
      this.traceDomain(d, "paused");
    }
  }

  /** Undoes one pause; at zero a paused domain runs. @returns false if it was not paused. */
  unpause(d: Domain): boolean {
    if (d.pauseCount === 0) return false;
    d.pauseCount--;
    if (d.pauseCount === 0 && d.state === "paused") {
      d.state = "running";
      this.traceDomain(d, "running");
      for (const v of d.vcpus) if (v.runstate !== RUNSTATE.offline) this.hooks.wake(v);
    }
    return true;
  }

  /** True if `v` may be put on a pCPU: its domain runs and it is not blocked or offline. */
  runnable(v: Vcpu): boolean {
    return v.domain.state === "running" && (v.runstate === RUNSTATE.runnable || v.runstate === RUNSTATE.running);
  }

  /** Moves `v` to a runstate, accounting the time spent in the previous one. */
  setRunstate(v: Vcpu, state: number): void {
    if (v.runstate === state) return;
    v.runstateTime[v.runstate]! += Math.max(0, this.now - v.runstateEntered);
    v.runstate = state;
    v.runstateEntered = this.now;
  }

  /**
   * Blocks `v` until an event (`SCHEDOP_block`): unless an event is already
   * waiting, in which case it stays runnable, as Xen checks
   * `local_events_need_delivery` after enabling upcalls.
   */
  block(v: Vcpu): void {
    if (localEventsPending(this, v)) return;
    this.setRunstate(v, RUNSTATE.blocked);
    this.hooks.deschedule(v);
  }

  /** Wakes a blocked `v` (an event or timer arrived for it). */
  wake(v: Vcpu): void {
    // A shut-down or dying domain's vCPUs stay stopped, whatever events arrive.
    if (v.runstate !== RUNSTATE.blocked || (v.domain.state !== "running" && v.domain.state !== "paused")) return;
    if (v.poll !== undefined && !pollSatisfied(this, v) && (v.poll.deadline === undefined || v.poll.deadline > this.now)) return;
    v.poll = undefined;
    this.setRunstate(v, RUNSTATE.runnable);
    if (v.domain.state === "running") this.hooks.wake(v);
  }

  /**
   * Shuts `d` down with `reason` (`SCHEDOP_shutdown` or
   * `SCHEDOP_remote_shutdown`): its vCPUs stop, and dom0 hears of it through
   * `VIRQ_DOM_EXC`. The domain keeps its memory until destroyed.
   */
  shutdown(d: Domain, reason: ShutdownReason): void {
    if (d.state === "shutdown" || d.dead) return;
    d.state = "shutdown";
    d.shutdownReason = reason;
    for (const v of d.vcpus) {
      if (v.runstate !== RUNSTATE.offline) this.setRunstate(v, RUNSTATE.blocked);
      this.hooks.deschedule(v);
    }
    this.traceDomain(d, "shutdown", keyOf(SHUTDOWN, reason) ?? String(reason));
    this.notifyDomExc();
  }

  /**
   * Destroys `d`: closes its event channels, undoes its grant mappings,
   * returns every frame and drops its timers. A frame another domain still
   * maps stays allocated (its reference count) until that mapping goes.
   * @returns 0, or `-EINVAL` if it was already destroyed.
   */
  destroyDomain(d: Domain): number {
    if (d.state === "destroyed" || !this.domains.has(d.domid)) return -XEN_ERRNO.EINVAL;
    d.state = "dying";
    this.traceDomain(d, "dying");
    for (const v of d.vcpus) {
      v.singleshotDeadline = undefined;
      v.periodicPeriod = undefined;
      v.poll = undefined;
      this.setRunstate(v, RUNSTATE.offline);
      this.hooks.deschedule(v);
    }
    evtchnDestroy(this, d);
    grantDestroy(this, d);
    // Each mapping holds one reference on its frame (grant mappings were undone above).
    for (const m of d.mappings.values()) this.machine.put(m.mfn);
    d.mappings.clear();
    d.p2m.forEach((_mfn, pfn) => d.depopulate(pfn));
    this.machine.put(d.sharedInfoMfn);
    d.sharedInfoMfn = -1;
    this.reap();
    return 0;
  }

  /**
   * Finishes destroying dying domains whose last frame has been released.
   * A dying domain whose pages another domain still maps stays dying (Xen's
   * zombie) and keeps its domid until that mapping goes; whoever drops such
   * a mapping calls this.
   */
  reap(): void {
    for (const d of this.domains.values()) {
      if (d.state !== "dying" || this.machine.ownedBy(d.domid) > 0) continue;
      d.state = "destroyed";
      this.domains.delete(d.domid);
      this.hooks.destroyed?.(d);
      this.traceDomain(d, "destroyed");
      this.notifyDomExc();
    }
  }

  /** The earliest timer deadline of any vCPU or watchdog of a domain not shut down, or undefined when none is armed. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (t: number | undefined) => {
      if (t !== undefined && (next === undefined || t < next)) next = t;
    };
    for (const d of this.domains.values()) {
      if (d.dead || d.state === "shutdown") continue;
      for (const w of d.watchdogs) consider(w);
      for (const v of d.vcpus) {
        consider(v.singleshotDeadline);
        if (v.periodicPeriod !== undefined) consider(v.periodicNext);
        consider(v.poll?.deadline);
      }
    }
    return next;
  }

  /**
   * Advances virtual time to `t` and fires every timer due by then:
   * single-shot and periodic timers raise `VIRQ_TIMER` on their vCPU, and a
   * poll whose timeout passed wakes its vCPU; a watchdog that expired shuts
   * its domain down with `SHUTDOWN_watchdog`.
   */
  advanceTo(t: number): void {
    if (t < this.now) throw new RangeError(`time runs forward: ${t} < ${this.now}`);
    this.now = t;
    for (const d of [...this.domains.values()]) {
      if (d.dead || d.state === "shutdown") continue;
      if (d.watchdogs.some((w) => w !== undefined && w <= t)) {
        d.watchdogs.fill(undefined);
        this.log(`watchdog expired: shutting down domain ${d.domid}`);
        this.shutdown(d, SHUTDOWN.watchdog);
        continue;
      }
      for (const v of d.vcpus) {
        if (v.singleshotDeadline !== undefined && v.singleshotDeadline <= t) {
          v.singleshotDeadline = undefined;
          sendVirq(this, d, VIRQ.TIMER, v.id);
        }
        if (v.periodicPeriod !== undefined && v.periodicNext <= t) {
          while (v.periodicNext <= t) v.periodicNext += v.periodicPeriod;
          sendVirq(this, d, VIRQ.TIMER, v.id);
        }
        if (v.poll?.deadline !== undefined && v.poll.deadline <= t) this.wake(v);
      }
    }
  }

  /**
   * Allocates a host interrupt line (a pirq) for host I/O to be delivered to
   * the privileged domain; the line is bound with `EVTCHNOP_bind_pirq` and
   * raised with `raisePirq`. Lines start at 16, above the legacy ISA range.
   * @throws when all are in use
   */
  allocHostIrq(): number {
    for (let pirq = 16; pirq < NR_HOST_IRQS; pirq++) {
      if (!this.hostIrqs.has(pirq)) {
        this.hostIrqs.add(pirq);
        return pirq;
      }
    }
    throw new Error(`all ${NR_HOST_IRQS - 16} host interrupt lines are in use`);
  }

  /** True if `pirq` is an allocated host interrupt line. */
  hostIrqAllocated(pirq: number): boolean {
    return this.hostIrqs.has(pirq);
  }

  /** Writes a line to Xen's console (what `xl dmesg` shows). */
  log(text: string, domid: number = DOMID.XEN): void {
    this.console.push(text);
    this.trace.record({ t: this.now, kind: "console", domid, text });
  }

  private notifyDomExc(): void {
    const dom0 = this.domains.get(0);
    if (dom0 !== undefined && !dom0.dead) sendVirq(this, dom0, VIRQ.DOM_EXC, 0);
  }

  private traceDomain(d: Domain, state: string, detail?: string): void {
    this.trace.record(detail === undefined ? { t: this.now, kind: "domain", domid: d.domid, state } : { t: this.now, kind: "domain", domid: d.domid, state, detail });
  }
}

