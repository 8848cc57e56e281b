/**
 * `vcpu.h`: the operations of `__HYPERVISOR_vcpu_op`, with which a guest
 * brings its vCPUs up and down, reads their run-state accounting, runs
 * per-vCPU timers, and moves its `vcpu_info` out of `shared_info`.
 *
 * @module
 */
import { constants } from "./constants.js";
import { array, i32, struct, u32, u64 } from "./layout.js";

/**
 * Commands of `__HYPERVISOR_vcpu_op(cmd, vcpuid, extra_arg)` (`VCPUOP_*`).
 * Most act on the vCPU `vcpuid` of the calling domain.
 */
export const VCPUOP = constants("vcpu.h", "VCPUOP_", {
  /** Set the initial register state of a vCPU that has never run (argument: `vcpu_guest_context`). */
  initialise: 0,
  /** Start an initialised vCPU. */
  up: 1,
  /** Stop a vCPU; it can be brought up again with its state kept. */
  down: 2,
  /** Returns 1 if the vCPU is up, 0 if down. */
  is_up: 3,
  /** Copy the vCPU's {@link vcpu_runstate_info} out. */
  get_runstate_info: 4,
  /** Keep a copy of the vCPU's run state updated at a guest address ({@link vcpu_register_runstate_memory_area}). */
  register_runstate_memory_area: 5,
  /** Fire `VIRQ_TIMER` every `period_ns` ({@link vcpu_set_periodic_timer}). */
  set_periodic_timer: 6,
  /** Stop the periodic timer. */
  stop_periodic_timer: 7,
  /** Fire `VIRQ_TIMER` once at an absolute system time ({@link vcpu_set_singleshot_timer}). */
  set_singleshot_timer: 8,
  /** Cancel the single-shot timer. */
  stop_singleshot_timer: 9,
  /** Place the vCPU's `vcpu_info` at a frame and offset of the guest's choosing ({@link vcpu_register_vcpu_info}). */
  register_vcpu_info: 10,
  /** Send an NMI to the vCPU. */
  send_nmi: 11,
  /** The physical id of the pCPU under a vCPU, for the hardware domain ({@link vcpu_get_physid}). */
  get_physid: 12,
  /** Keep a copy of the vCPU's time info updated at a guest address ({@link vcpu_register_time_memory_area}). */
  register_vcpu_time_memory_area: 13,
});

/** `vcpu_runstate_info.state` values and indexes of its `time` array (`RUNSTATE_*`). */
export const RUNSTATE = constants("vcpu.h", "RUNSTATE_", {
  /** Running on a pCPU. */
  running: 0,
  /** Runnable but waiting for a pCPU. */
  runnable: 1,
  /** Blocked waiting for an event (idle); not runnable. */
  blocked: 2,
  /** Not runnable for another reason: down, paused by the toolstack, or preempted by the hypervisor. */
  offline: 3,
});

/** `vcpu_set_singleshot_timer.flags` (`VCPU_SSHOTTMR_*`). */
export const VCPU_SSHOTTMR = constants("vcpu.h", "VCPU_SSHOTTMR_", {
  /** Fail with `-ETIME` if the timeout has already passed (the hypervisor may ignore this). */
  future: 1 << 0,
});

/**
 * How long a vCPU has spent in each {@link RUNSTATE} (ns), and the state it is
 * in now with the system time it entered it. The four times sum to system
 * time and never drift from it. With `VMASST_TYPE_runstate_update_flag`, bit
 * 63 of `state_entry_time` (`XEN_RUNSTATE_UPDATE`) is set while a registered
 * copy is being rewritten.
 */
export const vcpu_runstate_info = struct("struct vcpu_runstate_info", 48, {
  state: i32(0),
  state_entry_time: u64(8),
  time: array(16, 4, u64(0)),
});

/**
 * `VCPUOP_register_runstate_memory_area`: the guest virtual address at which
 * the hypervisor keeps the vCPU's {@link vcpu_runstate_info} up to date (it is
 * refreshed whenever the vCPU is scheduled in). The union lets the same 8
 * bytes be written as a guest handle, a pointer, or a plain number.
 */
export const vcpu_register_runstate_memory_area = struct("struct vcpu_register_runstate_memory_area", 8, {
  addr_h: u64(0, "addr.h.p"),
  addr_v: u64(0, "addr.v"),
  addr_p: u64(0, "addr.p"),
});

/** `VCPUOP_set_periodic_timer`: the period in nanoseconds. */
export const vcpu_set_periodic_timer = struct("struct vcpu_set_periodic_timer", 8, {
  period_ns: u64(0),
});

/** `VCPUOP_set_singleshot_timer`: absolute system time (ns) of the timeout, and {@link VCPU_SSHOTTMR} flags. */
export const vcpu_set_singleshot_timer = struct("struct vcpu_set_singleshot_timer", 16, {
  timeout_abs_ns: u64(0),
  flags: u32(8),
});

/**
 * `VCPUOP_register_vcpu_info`: move the vCPU's `vcpu_info` to byte `offset`
 * of machine frame `mfn`. Needed for vCPUs beyond `XEN_LEGACY_MAX_VCPUS`;
 * allowed once per vCPU.
 */
export const vcpu_register_vcpu_info = struct("struct vcpu_register_vcpu_info", 16, {
  mfn: u64(0),
  offset: u32(8),
  rsvd: u32(12),
});

/** `VCPUOP_get_physid`: the APIC id (low 32 bits) and ACPI id (high 32 bits) of the pCPU. */
export const vcpu_get_physid = struct("struct vcpu_get_physid", 8, {
  phys_id: u64(0),
});

/**
 * `VCPUOP_register_vcpu_time_memory_area`: the guest virtual address at which
 * the hypervisor keeps a copy of the vCPU's `vcpu_time_info`, for use by user
 * space.
 */
export const vcpu_register_time_memory_area = struct("struct vcpu_register_time_memory_area", 8, {
  addr_h: u64(0, "addr.h.p"),
  addr_v: u64(0, "addr.v"),
  addr_p: u64(0, "addr.p"),
});
