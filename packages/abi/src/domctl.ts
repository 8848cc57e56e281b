/**
 * `domctl.h`: `__HYPERVISOR_domctl`, the per-domain control interface of the
 * toolstack. Only a privileged domain (dom0, or one the XSM policy allows)
 * may call it; it creates, destroys, pauses and inspects domains and sets
 * their limits and scheduling.
 *
 * Every call passes one {@link xen_domctl}: a command, the interface version
 * (the hypervisor refuses any other), the target domain, and a 128-byte union
 * holding the command's struct.
 *
 * @module
 */
import { constants } from "./constants.js";
import { bytes, i32, i64, nested, struct, u16, u32, u64, u8 } from "./layout.js";

/**
 * The domctl interface version (`XEN_DOMCTL_INTERFACE_VERSION`), which every
 * caller puts in `xen_domctl.interface_version`; the hypervisor fails any call
 * with another value with `-EACCES`.
 */
export const XEN_DOMCTL_INTERFACE = constants("domctl.h", "XEN_DOMCTL_INTERFACE_", { VERSION: 0x15 });

/** Commands of `__HYPERVISOR_domctl` (`XEN_DOMCTL_*`), in `xen_domctl.cmd`. */
export const XEN_DOMCTL = constants("domctl.h", "XEN_DOMCTL_", {
  /** Create a domain ({@link xen_domctl_createdomain}); `xen_domctl.domain` is the wanted id, or 0 to let the hypervisor choose. Returns the id in `domain`. */
  createdomain: 1,
  /** Tear a domain down and release its memory and other resources. */
  destroydomain: 2,
  /** Stop scheduling the domain's vCPUs. */
  pausedomain: 3,
  /** Undo one `pausedomain`. */
  unpausedomain: 4,
  /** State, memory and CPU time of the domain ({@link xen_domctl_getdomaininfo}). */
  getdomaininfo: 5,
  /** Set a vCPU's hard and/or soft pCPU affinity ({@link xen_domctl_vcpuaffinity}). */
  setvcpuaffinity: 9,
  /** Shadow paging and log-dirty control. */
  shadow_op: 10,
  /** Set the domain's memory limit ({@link xen_domctl_max_mem}). */
  max_mem: 11,
  /** Set a vCPU's register state. */
  setvcpucontext: 12,
  /** Read a vCPU's register state. */
  getvcpucontext: 13,
  /** State and CPU time of one vCPU ({@link xen_domctl_getvcpuinfo}). */
  getvcpuinfo: 14,
  /** Allocate the domain's vCPUs ({@link xen_domctl_max_vcpus}). */
  max_vcpus: 15,
  /** Read or set the domain's scheduler parameters ({@link xen_domctl_scheduler_op}). */
  scheduler_op: 16,
  /** Set the domain's 16-byte handle (its UUID; {@link xen_domctl_setdomainhandle}). */
  setdomainhandle: 17,
  /** Mark the domain as being debugged. */
  setdebugging: 18,
  /** Grant or revoke access to a physical IRQ. */
  irq_permission: 19,
  /** Grant or revoke access to a range of machine frames of I/O memory. */
  iomem_permission: 20,
  /** Grant or revoke access to a range of I/O ports. */
  ioport_permission: 21,
  /** Write the hypercall page into a guest frame. */
  hypercall_init: 22,
  /** Set the domain's wallclock offset ({@link xen_domctl_settimeoffset}). */
  settimeoffset: 24,
  /** Read a vCPU's affinity ({@link xen_domctl_vcpuaffinity}). */
  getvcpuaffinity: 25,
  /** Obsolete (PowerPC only). */
  real_mode_area: 26,
  /** Resume a domain that suspended itself. */
  resumedomain: 27,
  /** Send a virtual NMI, reset, INIT, power or sleep trigger. */
  sendtrigger: 28,
  /** Ask for a port to be notified when the domain suspends. */
  subscribe: 29,
  gethvmcontext: 33,
  sethvmcontext: 34,
  set_address_size: 35,
  get_address_size: 36,
  assign_device: 37,
  bind_pt_irq: 38,
  memory_mapping: 39,
  ioport_mapping: 40,
  set_ext_vcpucontext: 42,
  get_ext_vcpucontext: 43,
  /** Obsolete (IA64 only). */
  set_opt_feature: 44,
  test_assign_device: 45,
  /** Let the domain act with privilege over a target domain, as a device model does ({@link xen_domctl_set_target}). */
  set_target: 46,
  deassign_device: 47,
  unbind_pt_irq: 48,
  get_device_group: 50,
  debug_op: 54,
  gethvmcontext_partial: 55,
  vm_event_op: 56,
  mem_sharing_op: 57,
  gettscinfo: 59,
  settscinfo: 60,
  getpageframeinfo3: 61,
  setvcpuextstate: 62,
  getvcpuextstate: 63,
  set_access_required: 64,
  audit_p2m: 65,
  /** Route a global VIRQ to the domain instead of dom0. */
  set_virq_handler: 66,
  set_broken_page_p2m: 67,
  setnodeaffinity: 68,
  getnodeaffinity: 69,
  cacheflush: 71,
  get_vcpu_msrs: 72,
  set_vcpu_msrs: 73,
  setvnumainfo: 74,
  psr_cmt_op: 75,
  monitor_op: 77,
  psr_alloc: 78,
  /** Reset the domain's state in place, after it shut down with `SHUTDOWN_soft_reset`. */
  soft_reset: 79,
  vuart_op: 81,
  get_cpu_policy: 82,
  set_cpu_policy: 83,
  vmtrace_op: 84,
  get_paging_mempool_size: 85,
  set_paging_mempool_size: 86,
  gdbsx_guestmemio: 1000,
  gdbsx_pausevcpu: 1001,
  gdbsx_unpausevcpu: 1002,
  gdbsx_domstatus: 1003,
});

/** `xen_domctl_createdomain.flags` (`XEN_DOMCTL_CDF_*`): the kind of domain. No flag means a PV guest. */
export const XEN_DOMCTL_CDF = constants("domctl.h", "XEN_DOMCTL_CDF_", {
  /** An HVM guest rather than PV. */
  hvm: 1 << 0,
  /** Use hardware-assisted paging if available. */
  hap: 1 << 1,
  /** Have tboot verify memory integrity across S3. */
  s3_integrity: 1 << 2,
  /** Disable out-of-sync shadow page tables. */
  oos_off: 1 << 3,
  /** The domain runs XenStore. */
  xs_domain: 1 << 4,
  /** The domain may use the IOMMU (device passthrough). */
  iommu: 1 << 5,
  /** Offer nested virtualisation. */
  nested_virt: 1 << 6,
  /** Expose the virtual PMU. */
  vpmu: 1 << 7,
  /** The highest flag defined. */
  MAX: 1 << 7,
});

/** `xen_domctl_createdomain.iommu_opts` (`XEN_DOMCTL_IOMMU_*`). */
export const XEN_DOMCTL_IOMMU = constants("domctl.h", "XEN_DOMCTL_IOMMU_", {
  /** Do not share page tables between the CPU and the IOMMU. */
  no_sharept: 1 << 0,
  /** The highest flag defined. */
  MAX: 1 << 0,
});

/** `xen_domctl_createdomain.grant_opts` (`XEN_DOMCTL_GRANT_*`): the low 4 bits hold the highest grant table version allowed. */
export const XEN_DOMCTL_GRANT = constants("domctl.h", "XEN_DOMCTL_GRANT_", { version_mask: 0xf });

/** x86 device emulation flags of `xen_arch_domainconfig.emulation_flags` (`XEN_X86_EMU_*`); a PV guest has none. */
export const XEN_X86_EMU = constants("arch-x86/xen.h", "XEN_X86_EMU_", {
  LAPIC: 1 << 0,
  HPET: 1 << 1,
  PM: 1 << 2,
  RTC: 1 << 3,
  IOAPIC: 1 << 4,
  PIC: 1 << 5,
  VGA: 1 << 6,
  IOMMU: 1 << 7,
  PIT: 1 << 8,
  USE_PIRQ: 1 << 9,
  VPCI: 1 << 10,
  /** Every emulated device, as for a full HVM guest. */
  ALL: 0x7ff,
});

/** x86 `xen_arch_domainconfig.misc_flags` (`XEN_X86_MSR_*`). */
export const XEN_X86_MSR = constants("arch-x86/xen.h", "XEN_X86_MSR_", {
  /** Accesses to MSRs Xen does not handle read as zero and ignore writes instead of raising #GP. */
  RELAXED: 1 << 0,
});

/**
 * `xen_domctl_getdomaininfo.flags` (`XEN_DOMINF_*`). When `shutdown` is set,
 * the guest's `SHUTDOWN_*` reason is `(flags >> shutdownshift) & shutdownmask`.
 */
export const XEN_DOMINF = constants("domctl.h", "XEN_DOMINF_", {
  /** The domain is being destroyed. */
  dying: 1 << 0,
  /** An HVM guest rather than PV. */
  hvm_guest: 1 << 1,
  /** The guest has shut down. */
  shutdown: 1 << 2,
  /** Paused by the toolstack. */
  paused: 1 << 3,
  /** Blocked waiting for an event. */
  blocked: 1 << 4,
  /** A vCPU is running. */
  running: 1 << 5,
  /** Being debugged. */
  debugged: 1 << 6,
  /** The domain runs XenStore. */
  xs_domain: 1 << 7,
  /** The domain uses hardware-assisted paging. */
  hap: 1 << 8,
  shutdownmask: 255,
  shutdownshift: 16,
});

/** `xen_domctl_getdomaininfo.max_vcpu_id` of a domain without vCPUs (`XEN_INVALID_MAX_VCPU_ID`). */
export const XEN_INVALID = constants("domctl.h", "XEN_INVALID_", { MAX_VCPU_ID: 0xffffffff });

/** `xen_domctl_vcpuaffinity.flags` (`XEN_VCPUAFFINITY_*`): which affinity a call sets or reads. */
export const XEN_VCPUAFFINITY = constants("domctl.h", "XEN_VCPUAFFINITY_", {
  /** The pCPUs the vCPU may run on. */
  HARD: 1 << 0,
  /** The pCPUs the vCPU prefers. */
  SOFT: 1 << 1,
  /** Undo a `SCHEDOP_pin_override`. */
  FORCE: 1 << 2,
});

/** Scheduler ids (`XEN_SCHEDULER_*`), as in `xen_domctl_scheduler_op.sched_id` and `XEN_SYSCTL_sched_id`. */
export const XEN_SCHEDULER = constants("domctl.h", "XEN_SCHEDULER_", {
  /** The credit scheduler (weights and caps; the long-time default). */
  CREDIT: 5,
  /** The credit2 scheduler (the default since Xen 4.12). */
  CREDIT2: 6,
  /** ARINC 653 static cyclic scheduling. */
  ARINC653: 7,
  /** Real-time deferrable server (period, budget). */
  RTDS: 8,
  /** The null scheduler: one vCPU per pCPU, no time sharing. */
  NULL: 9,
});

/** `xen_domctl_scheduler_op.cmd` (`XEN_DOMCTL_SCHEDOP_*`). */
export const XEN_DOMCTL_SCHEDOP = constants("domctl.h", "XEN_DOMCTL_SCHEDOP_", {
  /** Set the domain's parameters. */
  putinfo: 0,
  /** Read the domain's parameters. */
  getinfo: 1,
  /** Set per-vCPU parameters. */
  putvcpuinfo: 2,
  /** Read per-vCPU parameters. */
  getvcpuinfo: 3,
});

/** `xen_domctl_sched_rtds.flags` (`XEN_DOMCTL_SCHEDRT_*`). */
export const XEN_DOMCTL_SCHEDRT = constants("domctl.h", "XEN_DOMCTL_SCHEDRT_", {
  /** The vCPU may run beyond its reserved budget when time is spare. */
  extra: 1 << 0,
});

/** The x86 part of a domain's configuration: emulated devices ({@link XEN_X86_EMU}) and {@link XEN_X86_MSR} flags. */
export const xen_arch_domainconfig = struct("struct xen_arch_domainconfig", 8, {
  emulation_flags: u32(0),
  misc_flags: u32(4),
});

/**
 * `XEN_DOMCTL_createdomain`: the kind of domain ({@link XEN_DOMCTL_CDF}), its
 * handle, and the limits fixed for its life. Negative `max_grant_frames` and
 * `max_maptrack_frames` ask for the hypervisor's defaults.
 */
export const xen_domctl_createdomain = struct("struct xen_domctl_createdomain", 64, {
  ssidref: u32(0),
  /** The domain's UUID. */
  handle: bytes(4, 16),
  flags: u32(20),
  iommu_opts: u32(24),
  max_vcpus: u32(28),
  max_evtchn_port: u32(32),
  max_grant_frames: i32(36),
  max_maptrack_frames: i32(40),
  grant_opts: u32(44),
  vmtrace_size: u32(48),
  cpupool_id: u32(52),
  arch: nested(56, xen_arch_domainconfig),
});

/**
 * `XEN_DOMCTL_getdomaininfo`: what the toolstack lists in `xl list`: state
 * flags ({@link XEN_DOMINF}), page counts, CPU time (ns), vCPUs and handle.
 * Also the element of `XEN_SYSCTL_getdomaininfolist`.
 */
export const xen_domctl_getdomaininfo = struct("struct xen_domctl_getdomaininfo", 112, {
  domain: u16(0),
  pad1: u16(2),
  flags: u32(4),
  tot_pages: u64(8),
  max_pages: u64(16),
  outstanding_pages: u64(24),
  shr_pages: u64(32),
  paged_pages: u64(40),
  /** Frame of the domain's shared_info page. */
  shared_info_frame: u64(48),
  cpu_time: u64(56),
  nr_online_vcpus: u32(64),
  max_vcpu_id: u32(68),
  ssidref: u32(72),
  handle: bytes(76, 16),
  cpupool: u32(92),
  gpaddr_bits: u8(96),
  pad2: bytes(97, 7),
  arch_config: nested(104, xen_arch_domainconfig),
});

/** `XEN_DOMCTL_max_mem`: the most memory the domain may have, in KiB. */
export const xen_domctl_max_mem = struct("struct xen_domctl_max_mem", 8, {
  max_memkb: u64(0),
});

/** `XEN_DOMCTL_max_vcpus`: the number of vCPUs to allocate, equal to `createdomain`'s `max_vcpus`. */
export const xen_domctl_max_vcpus = struct("struct xen_domctl_max_vcpus", 4, {
  max: u32(0),
});

/** `XEN_DOMCTL_getvcpuinfo`: whether `vcpu` is online, blocked or running, its CPU time (ns) and current pCPU. */
export const xen_domctl_getvcpuinfo = struct("struct xen_domctl_getvcpuinfo", 24, {
  vcpu: u32(0),
  online: u8(4),
  blocked: u8(5),
  running: u8(6),
  cpu_time: u64(8),
  cpu: u32(16),
});

/** A bitmap of CPUs or nodes passed by reference: a guest handle to the bytes and its length in bits. */
export const xenctl_bitmap = struct("struct xenctl_bitmap", 16, {
  bitmap: u64(0, "bitmap.p"),
  nr_bits: u32(8),
});

/**
 * `XEN_DOMCTL_setvcpuaffinity` and `getvcpuaffinity`: the hard and/or soft
 * ({@link XEN_VCPUAFFINITY}) pCPU maps of `vcpu`. On a set, the maps come back
 * holding the affinity in effect.
 */
export const xen_domctl_vcpuaffinity = struct("struct xen_domctl_vcpuaffinity", 40, {
  vcpu: u32(0),
  flags: u32(4),
  cpumap_hard: nested(8, xenctl_bitmap),
  cpumap_soft: nested(24, xenctl_bitmap),
});

/** Credit scheduler parameters: relative `weight` and `cap` (percent of one pCPU, 0 for none). */
export const xen_domctl_sched_credit = struct("struct xen_domctl_sched_credit", 4, {
  weight: u16(0),
  cap: u16(2),
});

/** Credit2 scheduler parameters: relative `weight` and `cap`. */
export const xen_domctl_sched_credit2 = struct("struct xen_domctl_sched_credit2", 4, {
  weight: u16(0),
  cap: u16(2),
});

/** RTDS scheduler parameters: `budget` microseconds of every `period`, and {@link XEN_DOMCTL_SCHEDRT} flags. */
export const xen_domctl_sched_rtds = struct("struct xen_domctl_sched_rtds", 12, {
  period: u32(0),
  budget: u32(4),
  flags: u32(8),
});

/** One vCPU's scheduler parameters, for the per-vCPU scheduler operations. */
export const xen_domctl_schedparam_vcpu = struct("struct xen_domctl_schedparam_vcpu", 16, {
  credit_weight: u16(0, "u.credit.weight"),
  credit_cap: u16(2, "u.credit.cap"),
  credit2_weight: u16(0, "u.credit2.weight"),
  credit2_cap: u16(2, "u.credit2.cap"),
  rtds_period: u32(0, "u.rtds.period"),
  rtds_budget: u32(4, "u.rtds.budget"),
  rtds_flags: u32(8, "u.rtds.flags"),
  vcpuid: u32(12),
});

/**
 * `XEN_DOMCTL_scheduler_op`: read or set ({@link XEN_DOMCTL_SCHEDOP}) the
 * parameters of the domain under scheduler `sched_id`, which must be the one
 * running its cpupool. The per-vCPU commands use `v_vcpus`, an array of
 * `v_nr_vcpus` {@link xen_domctl_schedparam_vcpu}.
 */
export const xen_domctl_scheduler_op = struct("struct xen_domctl_scheduler_op", 24, {
  sched_id: u32(0),
  cmd: u32(4),
  credit_weight: u16(8, "u.credit.weight"),
  credit_cap: u16(10, "u.credit.cap"),
  credit2_weight: u16(8, "u.credit2.weight"),
  credit2_cap: u16(10, "u.credit2.cap"),
  rtds_period: u32(8, "u.rtds.period"),
  rtds_budget: u32(12, "u.rtds.budget"),
  rtds_flags: u32(16, "u.rtds.flags"),
  v_vcpus: u64(8, "u.v.vcpus.p"),
  v_nr_vcpus: u32(16, "u.v.nr_vcpus"),
  v_padding: u32(20, "u.v.padding"),
});

/** `XEN_DOMCTL_setdomainhandle`: the domain's new 16-byte handle (UUID). */
export const xen_domctl_setdomainhandle = struct("struct xen_domctl_setdomainhandle", 16, {
  handle: bytes(0, 16),
});

/** `XEN_DOMCTL_settimeoffset`: seconds added to the domain's wallclock. */
export const xen_domctl_settimeoffset = struct("struct xen_domctl_settimeoffset", 8, {
  time_offset_seconds: i64(0),
});

/** `XEN_DOMCTL_set_target`: the domain over which `xen_domctl.domain` gains privilege. */
export const xen_domctl_set_target = struct("struct xen_domctl_set_target", 2, {
  target: u16(0),
});

/**
 * The argument of every `__HYPERVISOR_domctl` call: the {@link XEN_DOMCTL}
 * command, `XEN_DOMCTL_INTERFACE_VERSION`, the domain acted on, and at offset
 * 16 the 128-byte union `u` holding the command's struct.
 */
export const xen_domctl = struct("struct xen_domctl", 144, {
  cmd: u32(0),
  interface_version: u32(4),
  domain: u16(8),
  _pad: bytes(10, 6),
  u: bytes(16, 128),
});

/**
 * Argument of `XEN_DOMCTL_setvcpucontext` and `getvcpucontext`: the vCPU and
 * a guest handle to a `vcpu_guest_context` in the caller's memory.
 */
export const xen_domctl_vcpucontext = struct("struct xen_domctl_vcpucontext", 16, {
  vcpu: u32(0),
  ctxt: u64(8, "ctxt.p"),
});
