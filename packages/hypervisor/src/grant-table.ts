/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { Domain } from "./domain.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";
export class GrantTable {
  readonly frames: number[] = [];
  constructor(readonly hv: Hypervisor, readonly domain: Domain) {}
}
export function grantTableOp(_ctx: HypercallContext, _cmd: number, _arg: number, _count: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function grantDestroy(_hv: Hypervisor, _d: Domain): void {}
export function grantInvariants(_hv: Hypervisor): string[] {
  return [];
}
export function grantFrame(_hv: Hypervisor, _d: Domain, _idx: number): number | undefined {
  return undefined;
}
