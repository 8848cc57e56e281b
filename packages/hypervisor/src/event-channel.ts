/** STUB — being written. */
import { XEN_ERRNO } from "@pvkit/abi";
import type { Domain, Vcpu } from "./domain.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";
export class EventChannels {
  constructor(readonly hv: Hypervisor, readonly domain: Domain) {}
}
export function eventChannelOp(_ctx: HypercallContext, _cmd: number, _arg: number): number {
  return -XEN_ERRNO.ENOSYS;
}
export function sendVirq(_hv: Hypervisor, _d: Domain, _virq: number, _vcpu: number): void {}
export function evtchnDestroy(_hv: Hypervisor, _d: Domain): void {}
export function localEventsPending(_hv: Hypervisor, _v: Vcpu): boolean {
  return false;
}
export function pollSatisfied(_hv: Hypervisor, _v: Vcpu): boolean {
  return false;
}
export function evtchnInvariants(_hv: Hypervisor): string[] {
  return [];
}
