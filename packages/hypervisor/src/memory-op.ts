/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { HypercallContext } from "./hypercall.js";
export function memoryOp(_ctx: HypercallContext, _cmd: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
