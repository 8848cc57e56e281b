/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { HypercallContext } from "./hypercall.js";
export function domctl(_ctx: HypercallContext, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function sysctl(_ctx: HypercallContext, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
