/**
 * `arch-x86/xen.h` and `arch-x86/xen-x86_64.h`: the register state of an x86_64
 * PV vCPU.
 *
 * The domain builder starts a PV kernel by setting vCPU 0's context with
 * `XEN_DOMCTL_setvcpucontext`: `user_regs.rip` is the kernel's entry point and
 * `user_regs.rsi` the virtual address of its `start_info`, as Xen's
 * `xc_dom_boot` does. pvkit's vCPUs run TypeScript, not x86 instructions, so
 * of this state the engine uses exactly those two registers (and `flags`);
 * the rest is carried for the layout's sake.
 *
 * @module
 */
import { constants } from "./constants.js";
import { array, bytes, nested, struct, u16, u64, u8 } from "./layout.js";

/** `vcpu_guest_context.flags` bits (`VGCF_*`). */
export const VGCF = constants("arch-x86/xen.h", "VGCF_", {
  I387_VALID: 1 << 0,
  IN_KERNEL: 1 << 2,
  i387_valid: 1 << 0,
  /** The vCPU starts in kernel mode (always, for a PV kernel's entry). */
  in_kernel: 1 << 2,
  failsafe_disables_events: 1 << 3,
  syscall_disables_events: 1 << 4,
  online: 1 << 5,
});

/** The general registers of an x86_64 vCPU (`struct cpu_user_regs`, 200 bytes). */
export const cpu_user_regs = struct("struct cpu_user_regs", 200, {
  r15: u64(0),
  r14: u64(8),
  r13: u64(16),
  r12: u64(24),
  rbp: u64(32),
  rbx: u64(40),
  r11: u64(48),
  r10: u64(56),
  r9: u64(64),
  r8: u64(72),
  rax: u64(80),
  rcx: u64(88),
  rdx: u64(96),
  /** A PV kernel finds its `start_info` here at entry. */
  rsi: u64(104),
  rdi: u64(112),
  /** The entry point at boot. */
  rip: u64(128),
  cs: u16(136),
  saved_upcall_mask: u8(140),
  rflags: u64(144),
  rsp: u64(152),
  ss: u16(160),
  es: u16(168),
  ds: u16(176),
  fs: u16(184),
  gs: u16(192),
});

/** A PV vCPU's whole context (`struct vcpu_guest_context`, x86_64), as `XEN_DOMCTL_setvcpucontext` takes it. */
export const vcpu_guest_context = struct("struct vcpu_guest_context", 5168, {
  fpu_ctxt: bytes(0, 512),
  flags: u64(512),
  user_regs: nested(520, cpu_user_regs),
  trap_ctxt: bytes(720, 4096),
  ldt_base: u64(4816),
  gdt_frames: array(4832, 16, u64(0)),
  kernel_ss: u64(4968),
  kernel_sp: u64(4976),
  ctrlreg: array(4984, 8, u64(0)),
  debugreg: array(5048, 8, u64(0)),
  event_callback_eip: u64(5112),
  failsafe_callback_eip: u64(5120),
  syscall_callback_eip: u64(5128),
  vm_assist: u64(5136),
  fs_base: u64(5144),
  gs_base_kernel: u64(5152),
  gs_base_user: u64(5160),
});
