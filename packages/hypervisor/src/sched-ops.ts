/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { HypercallContext } from "./hypercall.js";
export function schedOp(_ctx: HypercallContext, _cmd: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function setTimerOp(_ctx: HypercallContext, _timeout: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function vcpuOp(_ctx: HypercallContext, _cmd: number, _vcpuid: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
