/**
 * `sysctl.h`: `__HYPERVISOR_sysctl`, the host-wide control interface of the
 * toolstack. Only a privileged domain may call it; it reads the hypervisor
 * console and the host's physical description, lists domains, and manages
 * pCPUs, cpupools and schedulers.
 *
 * Every call passes one {@link xen_sysctl}: a command, the interface version,
 * and a 128-byte union holding the command's struct.
 *
 * @module
 */
import { constants } from "./constants.js";
import { array, struct, u16, u32, u64, u8, bytes } from "./layout.js";

/**
 * The sysctl interface version (`XEN_SYSCTL_INTERFACE_VERSION`), which every
 * caller puts in `xen_sysctl.interface_version`; the hypervisor fails any call
 * with another value with `-EACCES`.
 */
export const XEN_SYSCTL_INTERFACE = constants("sysctl.h", "XEN_SYSCTL_INTERFACE_", { VERSION: 0x15 });

/** Commands of `__HYPERVISOR_sysctl` (`XEN_SYSCTL_*`), in `xen_sysctl.cmd`. */
export const XEN_SYSCTL = constants("sysctl.h", "XEN_SYSCTL_", {
  /** Read (and optionally clear) the hypervisor console ring ({@link xen_sysctl_readconsole}); `xl dmesg`. */
  readconsole: 1,
  /** Trace buffer control. */
  tbuf_op: 2,
  /** The host's CPUs, memory and capabilities ({@link xen_sysctl_physinfo}); `xl info`. */
  physinfo: 3,
  /** The id of the default scheduler ({@link xen_sysctl_sched_id}). */
  sched_id: 4,
  /** Read or reset the software performance counters. */
  perfc_op: 5,
  /** Information about up to `max_domains` domains from `first_domain` on ({@link xen_sysctl_getdomaininfolist}). */
  getdomaininfolist: 6,
  /** Inject debug keys, as if typed on the hypervisor's serial console. */
  debug_keys: 7,
  /** Idle time of each pCPU. */
  getcpuinfo: 8,
  /** Free heap memory, optionally per NUMA node and address width. */
  availheap: 9,
  /** Power-management statistics (P- and C-states). */
  get_pmstat: 10,
  /** Bring a pCPU online or offline. */
  cpu_hotplug: 11,
  /** Power-management control. */
  pm_op: 12,
  /** Offline, online or query pages of machine memory. */
  page_offline_op: 14,
  /** Lock profiling. */
  lockprof_op: 15,
  /** The core, socket and node of each pCPU. */
  cputopoinfo: 16,
  /** Memory and distances of each NUMA node. */
  numainfo: 17,
  /** Create, destroy and populate cpupools, and move domains between them. */
  cpupool_op: 18,
  /** Scheduler parameters of a cpupool. */
  scheduler_op: 19,
  /** Code coverage data. */
  coverage_op: 20,
  /** Cache monitoring (Intel PSR CMT). */
  psr_cmt_op: 21,
  /** The NUMA node of PCI devices. */
  pcitopoinfo: 22,
  /** Cache and memory bandwidth allocation (Intel PSR). */
  psr_alloc: 23,
  /** CPUID levelling capabilities. */
  get_cpu_levelling_caps: 25,
  /** A CPU featureset (raw, host, PV or HVM). */
  get_cpu_featureset: 26,
  /** Live patching. */
  livepatch_op: 27,
  /** A CPUID/MSR policy of the host. */
  get_cpu_policy: 29,
});

/** `xen_sysctl_physinfo.capabilities` (`XEN_SYSCTL_PHYSCAP_*`): what the host supports. */
export const XEN_SYSCTL_PHYSCAP = constants("sysctl.h", "XEN_SYSCTL_PHYSCAP_", {
  /** HVM guests. */
  hvm: 1 << 0,
  /** PV guests. */
  pv: 1 << 1,
  /** Direct device access through an IOMMU. */
  directio: 1 << 2,
  /** Hardware-assisted paging. */
  hap: 1 << 3,
  /** Shadow paging. */
  shadow: 1 << 4,
  /** Sharing HAP page tables with the IOMMU. */
  iommu_hap_pt_share: 1 << 5,
  /** Processor tracing of guests. */
  vmtrace: 1 << 6,
  /** A virtual PMU. */
  vpmu: 1 << 7,
  /** Grant table version 1. */
  gnttab_v1: 1 << 8,
  /** Grant table version 2. */
  gnttab_v2: 1 << 9,
  /** The highest flag defined. */
  MAX: 1 << 9,
});

/**
 * `XEN_SYSCTL_readconsole`: copy up to `count` bytes of the hypervisor console
 * ring to `buffer`; `count` comes back as the bytes written. With `incremental`
 * reading starts at `index`, which comes back as the position reached; with
 * `clear` the ring is emptied afterwards.
 */
export const xen_sysctl_readconsole = struct("struct xen_sysctl_readconsole", 24, {
  clear: u8(0),
  incremental: u8(1),
  pad0: u8(2),
  pad1: u8(3),
  index: u32(4),
  buffer: u64(8, "buffer.p"),
  count: u32(16),
});

/**
 * `XEN_SYSCTL_physinfo`: the host's topology (threads per core, cores per
 * socket, CPUs and nodes), clock, {@link XEN_SYSCTL_PHYSCAP} capabilities and
 * page counts.
 */
export const xen_sysctl_physinfo = struct("struct xen_sysctl_physinfo", 112, {
  threads_per_core: u32(0),
  cores_per_socket: u32(4),
  /** pCPUs online. */
  nr_cpus: u32(8),
  max_cpu_id: u32(12),
  /** NUMA nodes online. */
  nr_nodes: u32(16),
  max_node_id: u32(20),
  cpu_khz: u32(24),
  capabilities: u32(28),
  arch_capabilities: u32(32),
  pad: u32(36),
  total_pages: u64(40),
  free_pages: u64(48),
  scrub_pages: u64(56),
  outstanding_pages: u64(64),
  max_mfn: u64(72),
  hw_cap: array(80, 8, u32(0)),
});

/** `XEN_SYSCTL_sched_id`: the id (`XEN_SCHEDULER_*`) of the default scheduler. */
export const xen_sysctl_sched_id = struct("struct xen_sysctl_sched_id", 4, {
  sched_id: u32(0),
});

/**
 * `XEN_SYSCTL_getdomaininfolist`: fill `buffer` with up to `max_domains`
 * `xen_domctl_getdomaininfo` records, for domains with id `first_domain` and
 * up, in id order; `num_domains` says how many were written.
 */
export const xen_sysctl_getdomaininfolist = struct("struct xen_sysctl_getdomaininfolist", 24, {
  first_domain: u16(0),
  max_domains: u32(4),
  buffer: u64(8, "buffer.p"),
  num_domains: u32(16),
});

/**
 * The argument of every `__HYPERVISOR_sysctl` call: the {@link XEN_SYSCTL}
 * command, `XEN_SYSCTL_INTERFACE_VERSION`, and at offset 8 the 128-byte union
 * `u` holding the command's struct.
 */
export const xen_sysctl = struct("struct xen_sysctl", 136, {
  cmd: u32(0),
  interface_version: u32(4),
  u: bytes(8, 128),
});
