/**
 * The hypercall table and the privilege policy.
 *
 * A guest enters ring 0 with a hypercall number and up to five register
 * arguments. The table maps Xen's numbers (`__HYPERVISOR_*`) to handlers; an
 * unknown number answers `-ENOSYS`. A handler returns what the guest's
 * hypercall returns: `>= 0` on success, a negative Xen errno on failure.
 *
 * Every privileged operation asks one {@link Policy} whether the caller may do
 * it to the target, the place Xen's XSM hooks sit. The default policy is
 * Xen's "dummy" one: a privileged domain may do anything; any domain may act
 * on itself; nobody else may do anything.
 *
 * @module
 */
import type { Domain, Vcpu } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";

/** Who is calling: the hypervisor, the calling domain and vCPU. */
export interface HypercallContext {
  /** The hypervisor being entered. */
  readonly hv: Hypervisor;
  /** The calling domain. */
  readonly domain: Domain;
  /** The calling vCPU. */
  readonly vcpu: Vcpu;
}

/** A hypercall handler: `(ctx, a1..a5) => result`. */
export type HypercallHandler = (ctx: HypercallContext, a1: number, a2: number, a3: number, a4: number, a5: number) => number;

/** Handlers by hypercall number. */
export type HypercallTable = ReadonlyMap<number, HypercallHandler>;

/**
 * Decides privileged operations. `action` names the operation as
 * `"<hypercall>:<command>"`, e.g. `"domctl:createdomain"`.
 */
export interface Policy {
  /** May `caller` perform `action` on `target` (or on the system, if undefined)? */
  allows(caller: Domain, action: string, target?: Domain): boolean;
}

/** Xen's dummy policy: privileged domains may do anything, others only act on themselves. */
export const dummyPolicy: Policy = {
  allows: (caller, _action, target) => caller.privileged || (target !== undefined && target === caller),
};
