/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { HypercallContext } from "./hypercall.js";
export function xenVersion(_ctx: HypercallContext, _cmd: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function consoleIo(_ctx: HypercallContext, _cmd: number, _count: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function multicall(_ctx: HypercallContext, _arg: number, _count: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function callbackOp(_ctx: HypercallContext, _cmd: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
