/**
 * `sched.h`: the operations of `__HYPERVISOR_sched_op`, with which a vCPU
 * yields, blocks, polls event channels, or shuts its domain down, and the
 * shutdown reasons a domain reports.
 *
 * @module
 */
import { constants } from "./constants.js";
import { i32, struct, u16, u32, u64 } from "./layout.js";

/** Commands of `__HYPERVISOR_sched_op` (`SCHEDOP_*`). */
export const SCHEDOP = constants("sched.h", "SCHEDOP_", {
  /** Give up the pCPU but stay runnable. No argument. */
  yield: 0,
  /**
   * Sleep until an event is pending. The guest clears its upcall mask first;
   * the call returns at once if an event is already pending. No argument.
   */
  block: 1,
  /** Stop all vCPUs of the domain with a {@link SHUTDOWN} reason ({@link sched_shutdown}). */
  shutdown: 2,
  /** Sleep until one of a set of ports is pending or a timeout passes ({@link sched_poll}). */
  poll: 3,
  /** Shut down another domain; for privileged domains ({@link sched_remote_shutdown}). */
  remote_shutdown: 4,
  /** Record a shutdown reason without shutting down yet, for the tools to read ({@link sched_shutdown}). */
  shutdown_code: 5,
  /** Create, arm or destroy a domain watchdog ({@link sched_watchdog}). */
  watchdog: 6,
  /** Temporarily pin the calling vCPU to a pCPU, or undo it; for hardware domains ({@link sched_pin_override}). */
  pin_override: 7,
});

/** Why a domain shut down (`SHUTDOWN_*`), as `SCHEDOP_shutdown` reports it and the toolstack acts on it. */
export const SHUTDOWN = constants("sched.h", "SHUTDOWN_", {
  /** Exited normally: clean up and destroy. */
  poweroff: 0,
  /** Clean up, destroy, and start again. */
  reboot: 1,
  /** Clean up and save the state for a later resume. */
  suspend: 2,
  /** The guest crashed. */
  crash: 3,
  /** Restart because the watchdog fired. */
  watchdog: 4,
  /**
   * Reset the domain in place: the toolstack tears down its state and starts
   * it again without destroying it (used by kexec-style guests).
   */
  soft_reset: 5,
  /** The largest valid reason. */
  MAX: 5,
});

/** `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code`: the {@link SHUTDOWN} reason. */
export const sched_shutdown = struct("struct sched_shutdown", 4, {
  reason: u32(0),
});

/**
 * `SCHEDOP_poll`: block until one of `nr_ports` ports in the `ports` array is
 * pending, or until system time `timeout` (ns; 0 means no timeout). Returns 0
 * when an event or the timeout wakes the vCPU.
 */
export const sched_poll = struct("struct sched_poll", 24, {
  ports: u64(0, "ports.p"),
  nr_ports: u32(8),
  timeout: u64(16),
});

/** `SCHEDOP_remote_shutdown`: shut down `domain_id` with a {@link SHUTDOWN} reason. */
export const sched_remote_shutdown = struct("struct sched_remote_shutdown", 8, {
  domain_id: u16(0),
  reason: u32(4),
});

/**
 * `SCHEDOP_watchdog`: with `id` 0, create a watchdog firing after `timeout`
 * seconds and return its id; with a non-zero `id`, re-arm it, or destroy it if
 * `timeout` is 0. A fired watchdog shuts the domain down with `SHUTDOWN_watchdog`.
 */
export const sched_watchdog = struct("struct sched_watchdog", 8, {
  id: u32(0),
  timeout: u32(4),
});

/** `SCHEDOP_pin_override`: pin the caller to `pcpu`, or drop the override with a negative value. */
export const sched_pin_override = struct("struct sched_pin_override", 4, {
  pcpu: i32(0),
});
