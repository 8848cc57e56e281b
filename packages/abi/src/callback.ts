/**
 * `callback.h`: the operations of `__HYPERVISOR_callback_op`, with which a PV
 * guest tells the hypervisor where to enter it for events, failsafe returns,
 * system calls and NMIs.
 *
 * @module
 */
import { constants } from "./constants.js";
import { struct, u16, u64 } from "./layout.js";

/** The entry points a guest can register (`CALLBACKTYPE_*`). */
export const CALLBACKTYPE = constants("callback.h", "CALLBACKTYPE_", {
  /** Event upcall: entered when an event is pending and upcalls are not masked. */
  event: 0,
  /** Entered when the hypervisor cannot restore the guest's state on return (e.g. a bad segment). */
  failsafe: 1,
  /** 64-bit `syscall` from a 64-bit guest application. */
  syscall: 2,
  /** The old number of `sysenter`, kept for guests built against interfaces before 3.2.7. */
  sysenter_deprecated: 3,
  /** NMI delivery. */
  nmi: 4,
  /** `sysenter` from a 32-bit guest application. */
  sysenter: 5,
  /** `syscall` from a 32-bit guest application. */
  syscall32: 7,
});

/** Callback flags (`CALLBACKF_*`). */
export const CALLBACKF = constants("callback.h", "CALLBACKF_", {
  /** Mask event upcalls on entry, as an interrupt gate clears IF. */
  mask_events: 1 << 0,
});

/** Commands of `__HYPERVISOR_callback_op` (`CALLBACKOP_*`). */
export const CALLBACKOP = constants("callback.h", "CALLBACKOP_", {
  /** Register an entry point ({@link callback_register}). */
  register: 0,
  /** Remove an entry point ({@link callback_unregister}); not every type may be removed. */
  unregister: 1,
});

/**
 * `CALLBACKOP_register`: enter the guest at `address` (a guest virtual
 * address; `xen_callback_t` is `unsigned long` on x86_64) for callback
 * `type`, with {@link CALLBACKF} `flags`.
 */
export const callback_register = struct("struct callback_register", 16, {
  type: u16(0),
  flags: u16(2),
  address: u64(8),
});

/** `CALLBACKOP_unregister`: forget the entry point of callback `type`. */
export const callback_unregister = struct("struct callback_unregister", 4, {
  type: u16(0),
  _unused: u16(2),
});
