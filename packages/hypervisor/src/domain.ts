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
import { RUNSTATE, SHUTDOWN, XEN_ERRNO } from "@pvkit/abi";
import type { MachineMemory } from "./machine.js";
import { INVALID_MFN, MAX_PFN, P2m } from "./p2m.js";

/** Where a domain is in its life. "Blocked" is not a state: it is a running domain whose vCPUs all wait. */
export type DomainState = "paused" | "running" | "shutdown" | "dying" | "destroyed";

/** A `SHUTDOWN_*` reason. */
export type ShutdownReason = (typeof SHUTDOWN)[keyof typeof SHUTDOWN];

/** An entry point a vCPU registered with `CALLBACKOP_register`: its guest virtual address and `CALLBACKF_*` flags. */
export interface GuestCallback {
  /** Where the guest is entered. */
  readonly address: bigint;
  /** `CALLBACKF_*` flags (`mask_events`). */
  readonly flags: number;
}

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
  /** Entry points registered with `CALLBACKOP_register`, by `CALLBACKTYPE_*`. */
  readonly callbacks = new Map<number, GuestCallback>();
  /** True while the vCPU runs a multicall: a nested one is refused. */
  inMulticall = false;

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
  /** Whether the domain runs XenStore (`XEN_DOMCTL_CDF_xs_domain`). */
  readonly xenstore?: boolean;
  /** Most grant-table frames (`max_grant_frames`): 1 up to Xen's default of 64, which is also pvkit's default. */
  readonly maxGrantFrames?: number;
  /** Most maptrack frames (`max_maptrack_frames`): 0 up to Xen's default of 1024, which is also pvkit's default. */
  readonly maxMaptrackFrames?: number;
  /** Highest event channel port the domain may use (`max_evtchn_port`); default 4095, the last of the 2-level ABI. */
  readonly maxEvtchnPort?: number;
}

/** What a virtual page leads to: a machine frame, and whether writes are allowed. */
export interface Translation {
  /** The machine frame. */
  readonly mfn: number;
  /** Whether writes are allowed. */
  readonly writable: boolean;
}

/**
 * A mapping installed in a domain's address space over the direct map: by
 * the physmap operations of `memory_op` (`physmap`: shared_info, grant-table
 * frames, foreign pages) or by the grant table (`grant`: a mapped grant,
 * which only `GNTTABOP_unmap_grant_ref` takes away).
 */
export interface Mapping extends Translation {
  /** Who installed it, and so who may take it away. */
  readonly kind: "physmap" | "grant";
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
  /** `max_pages`: the RAM the domain owns may not grow past it. */
  maxPages: number;
  /** pfn → mfn of the domain's RAM. */
  readonly p2m = new P2m();
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
  /** Whether it runs XenStore (`XEN_DOMCTL_CDF_xs_domain`): Xen's dummy policy lets it inspect any domain. */
  readonly xenstore: boolean;
  /**
   * The wallclock offset in seconds the toolstack set with
   * `XEN_DOMCTL_settimeoffset` (0 until it does). Whoever publishes the
   * wallclock in `shared_info` adds it, as Xen does for PV guests.
   */
  timeOffset = 0n;

  private readonly machine: MachineMemory;

  /** Creates a paused domain with no memory. Use {@link Hypervisor.createDomain}. */
  constructor(machine: MachineMemory, domid: number, config: DomainConfig, now: number) {
    this.machine = machine;
    this.domid = domid;
    this.privileged = config.privileged;
    this.maxPages = config.maxPages;
    this.handle = config.handle ?? new Uint8Array(16);
    this.xenstore = config.xenstore ?? false;
    this.vcpus = Array.from({ length: config.maxVcpus }, (_, i) => new Vcpu(this, i));
    this.createdAt = now;
  }

  /** True once the domain is dying or destroyed: it may not be used any more. */
  get dead(): boolean {
    return this.state === "dying" || this.state === "destroyed";
  }

  /**
   * Pages the domain owns as RAM (`tot_pages`): frames allocated to it by
   * {@link populate}, whether or not still in its P2M. A page it gave back
   * while another mapping holds it counts until that mapping goes, as Xen
   * drops `tot_pages` only when a page is freed. Its shared_info and
   * grant-table frames do not count.
   */
  get totPages(): number {
    return this.machine.ramOwnedBy(this.domid);
  }

  /** The frame behind `pfn`, or undefined. */
  pfnToMfn(pfn: number): number | undefined {
    return this.p2m.get(pfn);
  }

  /**
   * Allocates a frame at `pfn` from machine memory, within `max_pages`.
   * @returns the mfn, or a negative errno: `-EINVAL` for a pfn outside the
   * pseudo-physical space, `-EEXIST` if the pfn is populated, `-ENOMEM` if the
   * RAM the domain owns has reached `max_pages` or the machine is out of memory.
   */
  populate(pfn: number): number {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= MAX_PFN) return -XEN_ERRNO.EINVAL;
    if (this.pfnToMfn(pfn) !== undefined) return -XEN_ERRNO.EEXIST;
    if (this.totPages >= this.maxPages) return -XEN_ERRNO.ENOMEM;
    const mfn = this.machine.alloc(this.domid);
    if (mfn === undefined) return -XEN_ERRNO.ENOMEM;
    this.p2m.set(pfn, mfn);
    return mfn;
  }

  /**
   * Takes the frame at `pfn` out of the P2M and drops its reference
   * (`decrease_reservation`); the frame is freed, and leaves `tot_pages`, once
   * no other mapping holds it. @returns false if nothing was there.
   */
  depopulate(pfn: number): boolean {
    const mfn = this.pfnToMfn(pfn);
    if (mfn === undefined) return false;
    this.p2m.delete(pfn);
    this.machine.put(mfn);
    return true;
  }

  /**
   * What the virtual page `vpn` maps: a physmap or grant mapping, or else the
   * direct map of RAM (virtual page n is pfn n, writable).
   */
  translate(vpn: number): Translation | undefined {
    const m = this.mappings.get(vpn);
    if (m !== undefined) return m;
    const mfn = this.pfnToMfn(vpn);
    return mfn === undefined ? undefined : { mfn, writable: true };
  }
}
