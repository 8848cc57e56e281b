/**
 * Domains and their vCPUs.
 *
 * A domain is created paused (the toolstack unpauses it when it is built),
 * then runs; its vCPUs block and wake as they wait for events. It may be
 * paused again, and ends by shutting down with one of Xen's reasons
 * (`SHUTDOWN_poweroff`, `reboot`, `suspend`, `crash`, `watchdog`), after which
 * the toolstack destroys it: it becomes dying while its resources are
 * released, then destroyed.
 *
 * ```
 *            unpause                       shutdown(reason)
 * (created) ─────────► running ◄──────► paused ──────────► shutdown
 *  paused                │  ▲  (pause)                         │ destroy
 *                        ▼  │                                  ▼
 *                   (all vCPUs blocked)                 dying ─► destroyed
 * ```
 *
 * @module
 */
import { PAGE_SIZE, RUNSTATE, SHUTDOWN, XEN_ERRNO } from "@pvkit/abi";
import type { MachineMemory } from "./machine.js";

/** Where a domain is in its life. "Blocked" is not a state: it is a running domain whose vCPUs all wait. */
export type DomainState = "paused" | "running" | "shutdown" | "dying" | "destroyed";

/** A `SHUTDOWN_*` reason. */
export type ShutdownReason = (typeof SHUTDOWN)[keyof typeof SHUTDOWN];

/** P2M entry of a pfn with no frame. */
export const INVALID_MFN = -1;

/** The pseudo-physical space of a domain: pfns below 2^24 (64 GiB). */
export const MAX_PFN = 1 << 24;

/** A virtual CPU. Its scheduling state is Xen's runstate. */
export class Vcpu {
  /** vCPU id within its domain. */
  readonly id: number;
  /** The domain it belongs to. */
  readonly domain: Domain;
  /** `RUNSTATE_running`, `_runnable`, `_blocked` or `_offline`. */
  runstate: number;
  /** Virtual time the runstate was entered. */
  runstateEntered = 0;
  /** Nanoseconds spent in each runstate, indexed by `RUNSTATE_*`. */
  readonly runstateTime = [0, 0, 0, 0];
  /** Absolute deadline of the single-shot timer (`set_timer_op`, `VCPUOP_set_singleshot_timer`), or undefined. */
  singleshotDeadline: number | undefined;
  /** Period of the periodic timer in ns, or undefined; its next expiry is `periodicNext`. */
  periodicPeriod: number | undefined;
  /** Next expiry of the periodic timer. */
  periodicNext = 0;
  /** Ports a `SCHEDOP_poll` waits on, and its deadline; undefined when not polling. */
  poll: { readonly ports: readonly number[]; readonly deadline: number | undefined } | undefined;
  /** Virtual time from which the vCPU may run: when it was woken, or when its last slice ended. */
  readyAt = 0;
  /** Whether the guest registered an event upcall (`CALLBACKTYPE_event`). */
  upcallRegistered = false;
  /**
   * The boot registers set by `XEN_DOMCTL_setvcpucontext`: `rip`, the
   * virtual address of the kernel image, and `rsi`, that of `start_info`.
   * The engine boots the kernel from them when the vCPU first runs.
   */
  context: { readonly rip: number; readonly rsi: number } | undefined;

  /** Creates vCPU `id` of `domain`, offline until brought up. */
  constructor(domain: Domain, id: number) {
    this.domain = domain;
    this.id = id;
    this.runstate = RUNSTATE.offline;
  }
}

/** Options of {@link Domain}. */
export interface DomainConfig {
  /** Most pages the domain may own (`max_pages`, set by `XEN_DOMCTL_max_mem`). */
  readonly maxPages: number;
  /** Number of vCPUs (`XEN_DOMCTL_max_vcpus`). */
  readonly maxVcpus: number;
  /** Whether it may use privileged operations (dom0, or a domain the policy trusts). */
  readonly privileged: boolean;
  /** Toolstack-chosen handle (a UUID's 16 bytes in Xen). */
  readonly handle?: Uint8Array;
}

/** A foreign or grant mapping installed in a domain's address space. */
export interface Mapping {
  /** The machine frame mapped. */
  readonly mfn: number;
  /** Whether writes are allowed through it. */
  readonly writable: boolean;
}

/**
 * A domain: its memory (reservation and P2M), its address space, its vCPUs
 * and its lifecycle. Event channels, grant tables and scheduling parameters
 * hang off it in their own modules' state.
 */
export class Domain {
  /** The domain id. */
  readonly domid: number;
  /** Privileged domains pass the policy's privileged checks. */
  privileged: boolean;
  /** Lifecycle state. */
  state: DomainState = "paused";
  /** Nested pauses: the domain runs only at 0. Created with 1, the toolstack's. */
  pauseCount = 1;
  /** Why it shut down, once it has. */
  shutdownReason: ShutdownReason | undefined;
  /** `max_pages`: the reservation may not grow past it. */
  maxPages: number;
  /** Pages currently owned (`tot_pages`). */
  totPages = 0;
  /** pfn → mfn; {@link INVALID_MFN} where no frame is populated. Grows as pfns are used. */
  p2m: Int32Array;
  /** The vCPUs. */
  readonly vcpus: Vcpu[];
  /** Toolstack handle. */
  handle: Uint8Array;
  /** The frame of this domain's shared_info page. */
  sharedInfoMfn = INVALID_MFN;
  /**
   * Foreign, grant and special-frame mappings, by virtual page number. Each
   * holds one reference on its frame, taken when it is installed and dropped
   * when it is removed.
   */
  readonly mappings = new Map<number, Mapping>();
  /** Scheduler parameters (credit: weight 1..65535, default 256; cap in percent, 0 = none). */
  readonly sched = { weight: 256, cap: 0 };
  /** Deadlines of the domain's watchdogs (`SCHEDOP_watchdog`), undefined where free. */
  readonly watchdogs: (number | undefined)[] = [undefined, undefined];
  /** Virtual time the domain was created, for `xl list`'s Time(s) and uptime. */
  readonly createdAt: number;

  private readonly machine: MachineMemory;

  /** Creates a paused domain with no memory. Use {@link Hypervisor.createDomain}. */
  constructor(machine: MachineMemory, domid: number, config: DomainConfig, now: number) {
    this.machine = machine;
    this.domid = domid;
    this.privileged = config.privileged;
    this.maxPages = config.maxPages;
    this.handle = config.handle ?? new Uint8Array(16);
    this.p2m = new Int32Array(Math.max(16, config.maxPages)).fill(INVALID_MFN);
    this.vcpus = Array.from({ length: config.maxVcpus }, (_, i) => new Vcpu(this, i));
    this.createdAt = now;
  }

  /** True once the domain is dying or destroyed: it may not be used any more. */
  get dead(): boolean {
    return this.state === "dying" || this.state === "destroyed";
  }

  /** The frame behind `pfn`, or undefined. */
  pfnToMfn(pfn: number): number | undefined {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.p2m.length) return undefined;
    const mfn = this.p2m[pfn]!;
    return mfn === INVALID_MFN ? undefined : mfn;
  }

  /**
   * Allocates a frame at `pfn` from machine memory, within `max_pages`.
   * @returns the mfn, or a negative errno: `-EINVAL` for a pfn outside the
   * pseudo-physical space, `-EEXIST` if the pfn is populated, `-ENOMEM` if the
   * domain is at its maximum or the machine is out of memory.
   */
  populate(pfn: number): number {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= MAX_PFN) return -XEN_ERRNO.EINVAL;
    if (this.pfnToMfn(pfn) !== undefined) return -XEN_ERRNO.EEXIST;
    if (this.totPages >= this.maxPages) return -XEN_ERRNO.ENOMEM;
    const mfn = this.machine.alloc(this.domid);
    if (mfn === undefined) return -XEN_ERRNO.ENOMEM;
    if (pfn >= this.p2m.length) this.growP2m(pfn + 1);
    this.p2m[pfn] = mfn;
    this.totPages++;
    return mfn;
  }

  /** Releases the frame at `pfn` (`decrease_reservation`). @returns false if nothing was there. */
  depopulate(pfn: number): boolean {
    const mfn = this.pfnToMfn(pfn);
    if (mfn === undefined) return false;
    this.p2m[pfn] = INVALID_MFN;
    this.totPages--;
    this.machine.put(mfn);
    return true;
  }

  private growP2m(min: number): void {
    let size = this.p2m.length;
    while (size < min) size *= 2;
    const next = new Int32Array(size).fill(INVALID_MFN);
    next.set(this.p2m);
    this.p2m = next;
  }

  /**
   * What the virtual page `vpn` maps: a foreign or grant mapping, or else the
   * direct map of RAM (virtual page n is pfn n, writable).
   */
  translate(vpn: number): Mapping | undefined {
    const m = this.mappings.get(vpn);
    if (m !== undefined) return m;
    const mfn = this.pfnToMfn(vpn);
    return mfn === undefined ? undefined : { mfn, writable: true };
  }

  /** Bytes of RAM the domain owns. */
  get memoryBytes(): number {
    return this.totPages * PAGE_SIZE;
  }
}
