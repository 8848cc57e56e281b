/**
 * `xen.h`: hypercall numbers, virtual IRQs, reserved domain ids, the MMU
 * commands, and the pages every PV guest shares with the hypervisor —
 * `shared_info` (with one `vcpu_info` per vCPU) and `start_info`.
 *
 * @module
 */
import { constants } from "./constants.js";
import { array, bytes, i8, nested, struct, u32, u64, u8 } from "./layout.js";

/** Bytes in a page (x86 `PAGE_SIZE`; `XEN_PAGE_SHIFT` is 12). */
export const PAGE = constants("io/ring.h", "XEN_PAGE_", { SHIFT: 12 });

/** Size of a machine or guest frame in bytes. */
export const PAGE_SIZE = 1 << PAGE.SHIFT;

/**
 * Hypercall numbers (`__HYPERVISOR_*`). A PV guest enters the hypervisor with
 * one of these and up to five arguments; the result is `>= 0` on success or a
 * negative {@link XEN_ERRNO} value.
 */
export const HYPERVISOR = constants("xen.h", "__HYPERVISOR_", {
  set_trap_table: 0,
  mmu_update: 1,
  set_gdt: 2,
  stack_switch: 3,
  set_callbacks: 4,
  fpu_taskswitch: 5,
  sched_op_compat: 6,
  platform_op: 7,
  set_debugreg: 8,
  get_debugreg: 9,
  update_descriptor: 10,
  memory_op: 12,
  multicall: 13,
  update_va_mapping: 14,
  set_timer_op: 15,
  event_channel_op_compat: 16,
  xen_version: 17,
  console_io: 18,
  physdev_op_compat: 19,
  grant_table_op: 20,
  vm_assist: 21,
  update_va_mapping_otherdomain: 22,
  iret: 23,
  vcpu_op: 24,
  set_segment_base: 25,
  mmuext_op: 26,
  xsm_op: 27,
  nmi_op: 28,
  sched_op: 29,
  callback_op: 30,
  xenoprof_op: 31,
  event_channel_op: 32,
  physdev_op: 33,
  hvm_op: 34,
  sysctl: 35,
  domctl: 36,
  kexec_op: 37,
  tmem_op: 38,
  argo_op: 39,
  xenpmu_op: 40,
  dm_op: 41,
  hypfs_op: 42,
  arch_0: 48,
  arch_1: 49,
  arch_2: 50,
  arch_3: 51,
  arch_4: 52,
  arch_5: 53,
  arch_6: 54,
  arch_7: 55,
});

/**
 * Virtual IRQs (`VIRQ_*`), bound to event channels with `EVTCHNOP_bind_virq`.
 * Per-vCPU ones (`V.`) are bound per vCPU; global ones (`G.`) once per domain.
 */
export const VIRQ = constants("xen.h", "VIRQ_", {
  /** V. Timebase update and/or requested timeout. */
  TIMER: 0,
  /** V. Request guest to dump debug info. */
  DEBUG: 1,
  /** G. (dom0) Bytes received on the emergency console. */
  CONSOLE: 2,
  /** G. (dom0) Exceptional event for some domain (it shut down or died). */
  DOM_EXC: 3,
  /** G. (dom0) Trace buffer has records available. */
  TBUF: 4,
  /** G. (dom0) A domain has paused for debugging. */
  DEBUGGER: 6,
  /** V. XenOprofile interrupt. */
  XENOPROF: 7,
  /** G. (dom0) Bytes received on the console ring. */
  CON_RING: 8,
  /** G. (dom0) A pCPU changed state. */
  PCPU_STATE: 9,
  /** G. (dom0) A memory event occurred. */
  MEM_EVENT: 10,
  /** G. Argo interdomain message notification. */
  ARGO: 11,
  /** G. (dom0) Hypervisor low on heap memory. */
  ENOMEM: 12,
  /** V. PMC interrupt. */
  XENPMU: 13,
  ARCH_0: 16,
  ARCH_1: 17,
  ARCH_2: 18,
  ARCH_3: 19,
  ARCH_4: 20,
  ARCH_5: 21,
  ARCH_6: 22,
  ARCH_7: 23,
});

/** Number of virtual IRQs (`NR_VIRQS`). */
export const NR = constants("xen.h", "NR_", { VIRQS: 24 });

/**
 * Reserved domain ids (`DOMID_*`). Real domains are numbered below
 * `DOMID_FIRST_RESERVED`; `DOMID_SELF` names the caller in any hypercall that
 * takes a domid.
 */
export const DOMID = constants("xen.h", "DOMID_", {
  FIRST_RESERVED: 0x7ff0,
  SELF: 0x7ff0,
  IO: 0x7ff1,
  XEN: 0x7ff2,
  COW: 0x7ff3,
  INVALID: 0x7ff4,
  IDLE: 0x7fff,
  MASK: 0x7fff,
});

/** Commands of `__HYPERVISOR_mmu_update`, in the low 2 bits of `mmu_update.ptr`. */
export const MMU = constants("xen.h", "MMU_", {
  NORMAL_PT_UPDATE: 0,
  MACHPHYS_UPDATE: 1,
  PT_UPDATE_PRESERVE_AD: 2,
  PT_UPDATE_NO_TRANSLATE: 3,
});

/** Commands of `__HYPERVISOR_mmuext_op` (`mmuext_op.cmd`). */
export const MMUEXT = constants("xen.h", "MMUEXT_", {
  PIN_L1_TABLE: 0,
  PIN_L2_TABLE: 1,
  PIN_L3_TABLE: 2,
  PIN_L4_TABLE: 3,
  UNPIN_TABLE: 4,
  NEW_BASEPTR: 5,
  TLB_FLUSH_LOCAL: 6,
  INVLPG_LOCAL: 7,
  TLB_FLUSH_MULTI: 8,
  INVLPG_MULTI: 9,
  TLB_FLUSH_ALL: 10,
  INVLPG_ALL: 11,
  FLUSH_CACHE: 12,
  SET_LDT: 13,
  NEW_USER_BASEPTR: 15,
  CLEAR_PAGE: 16,
  COPY_PAGE: 17,
  FLUSH_CACHE_GLOBAL: 18,
  MARK_SUPER: 19,
  UNMARK_SUPER: 20,
});

/** Flush flags of `__HYPERVISOR_update_va_mapping` (`UVMF_*`). */
export const UVMF = constants("xen.h", "UVMF_", {
  NONE: 0,
  TLB_FLUSH: 1,
  INVLPG: 2,
  FLUSHTYPE_MASK: 3,
  MULTI: 0,
  LOCAL: 0,
  ALL: 4,
});

/** Commands of `__HYPERVISOR_console_io`: write to or read from Xen's console. */
export const CONSOLEIO = constants("xen.h", "CONSOLEIO_", { write: 0, read: 1 });

/** `__HYPERVISOR_vm_assist` commands and assist types. */
export const VMASST = constants("xen.h", "VMASST_", {
  CMD_enable: 0,
  CMD_disable: 1,
  TYPE_4gb_segments: 0,
  TYPE_4gb_segments_notify: 1,
  TYPE_writable_pagetables: 2,
  TYPE_pae_extended_cr3: 3,
  TYPE_architectural_iopl: 4,
  TYPE_runstate_update_flag: 5,
  TYPE_m2p_strict: 32,
});

/** `start_info.flags` bits (`SIF_*`). */
export const SIF = constants("xen.h", "SIF_", {
  /** The domain is privileged (may use domctl, map foreign memory...). */
  PRIVILEGED: 1 << 0,
  /** The domain is the initial control domain (dom0). */
  INITDOMAIN: 1 << 1,
  /** `mod_start` is a multiboot module. */
  MULTIBOOT_MOD: 1 << 2,
  /** `mod_start` is a pfn rather than a virtual address. */
  MOD_START_PFN: 1 << 3,
  /** The tools understand a virtually mapped p2m list. */
  VIRT_P2M_4TOOLS: 1 << 4,
  /** Byte reserved for power-management options. */
  PM_MASK: 0xff << 8,
});

/** Sizes fixed by the x86 and common headers. */
export const XEN_LEGACY = constants("arch-x86/xen.h", "XEN_LEGACY_", {
  /** vCPUs whose `vcpu_info` lives in `shared_info` (more need `VCPUOP_register_vcpu_info`). */
  MAX_VCPUS: 32,
});

/** Bytes of the guest command line in `start_info` (`MAX_GUEST_CMDLINE`). */
export const MAX_GUEST = constants("xen.h", "MAX_GUEST_", { CMDLINE: 1024 });

/**
 * Time as Xen publishes it to each vCPU (`struct vcpu_time_info`, 32 bytes).
 * Readers retry while `version` is odd or changes across the read, as with a
 * seqlock.
 */
export const vcpu_time_info = struct("struct vcpu_time_info", 32, {
  version: u32(0),
  pad0: u32(4),
  tsc_timestamp: u64(8),
  /** Nanoseconds since boot at the last update. */
  system_time: u64(16),
  tsc_to_system_mul: u32(24),
  tsc_shift: i8(28),
  flags: u8(29),
  pad1: bytes(30, 2),
});

/** x86_64 per-vCPU architecture state in `vcpu_info` (`struct arch_vcpu_info`). */
export const arch_vcpu_info = struct("struct arch_vcpu_info", 16, {
  cr2: u64(0),
  pad: u64(8),
});

/**
 * Per-vCPU event state (`struct vcpu_info`, 64 bytes). With the 2-level
 * event-channel ABI the hypervisor sets a port's bit in
 * `shared_info.evtchn_pending`, then the port's word bit in
 * `evtchn_pending_sel`, then `evtchn_upcall_pending`; the guest clears them in
 * the reverse order. `evtchn_upcall_mask` set means "do not upcall me".
 */
export const vcpu_info = struct("struct vcpu_info", 64, {
  evtchn_upcall_pending: u8(0),
  evtchn_upcall_mask: u8(1),
  evtchn_pending_sel: u64(8),
  arch: nested(16, arch_vcpu_info),
  time: nested(32, vcpu_time_info),
});

/** x86 part of `shared_info` (`struct arch_shared_info`). */
export const arch_shared_info = struct("struct arch_shared_info", 48, {
  max_pfn: u64(0),
  pfn_to_mfn_frame_list_list: u64(8),
  nmi_reason: u64(16),
  p2m_cr3: u64(24),
  p2m_vaddr: u64(32),
  p2m_generation: u64(40),
});

/**
 * The page every domain shares with the hypervisor (`struct shared_info`).
 *
 * `evtchn_pending` and `evtchn_mask` are the 2-level event bitmaps: 64 words of
 * 64 bits, one bit per port, 4096 ports. Port `p` is bit `p % 64` of word
 * `p / 64`, and word `w` has bit `w` in each vCPU's `evtchn_pending_sel`.
 * The wallclock (`wc_*`) is the time of day at system time zero.
 */
export const shared_info = struct("struct shared_info", 3136, {
  vcpu_info: array(0, 32, nested(0, vcpu_info)),
  evtchn_pending: array(2048, 64, u64(0)),
  evtchn_mask: array(2560, 64, u64(0)),
  wc_version: u32(3072),
  wc_sec: u32(3076),
  wc_nsec: u32(3080),
  wc_sec_hi: u32(3084),
  arch: nested(3088, arch_shared_info),
});

/**
 * What the domain builder hands a PV kernel at boot (`struct start_info`). Its
 * address is the kernel's first argument. A domU finds its XenStore and
 * console rings through `store_mfn`/`store_evtchn` and
 * `console_domU_mfn`/`console_domU_evtchn`; dom0 (with `SIF_INITDOMAIN`)
 * reads the `console_dom0_*` view of the same union instead.
 */
export const start_info = struct("struct start_info", 1168, {
  /** `"xen-<version>-<platform>"`, NUL-padded. */
  magic: bytes(0, 32),
  nr_pages: u64(32),
  /** Machine address of the shared_info page. */
  shared_info: u64(40),
  flags: u32(48),
  store_mfn: u64(56),
  store_evtchn: u32(64),
  console_domU_mfn: u64(72, "console.domU.mfn"),
  console_domU_evtchn: u32(80, "console.domU.evtchn"),
  console_dom0_info_off: u32(72, "console.dom0.info_off"),
  console_dom0_info_size: u32(76, "console.dom0.info_size"),
  pt_base: u64(88),
  nr_pt_frames: u64(96),
  mfn_list: u64(104),
  mod_start: u64(112),
  mod_len: u64(120),
  cmd_line: bytes(128, 1024),
  first_p2m_pfn: u64(1152),
  nr_p2m_frames: u64(1160),
});

/** One request of `__HYPERVISOR_mmu_update`: `ptr` (with the MMU_* command in its low bits) and `val`. */
export const mmu_update = struct("struct mmu_update", 16, {
  ptr: u64(0),
  val: u64(8),
});

/** One request of `__HYPERVISOR_mmuext_op`. */
export const mmuext_op = struct("struct mmuext_op", 24, {
  cmd: u32(0),
  arg1_mfn: u64(8, "arg1.mfn"),
  arg1_linear_addr: u64(8, "arg1.linear_addr"),
  arg2_nr_ents: u32(16, "arg2.nr_ents"),
  arg2_vcpumask: u64(16, "arg2.vcpumask.p"),
  arg2_src_mfn: u64(16, "arg2.src_mfn"),
});

/**
 * One entry of a `__HYPERVISOR_multicall` batch: the hypercall number, its
 * result (written back by the hypervisor) and six arguments.
 */
export const multicall_entry = struct("struct multicall_entry", 64, {
  op: u64(0),
  result: u64(8),
  args: array(16, 6, u64(0)),
});

