/**
 * The hypercall table and the privilege policy.
 *
 * A guest enters ring 0 with a hypercall number and up to five register
 * arguments. The table maps Xen's numbers (`__HYPERVISOR_*`) to handlers; an
 * unknown number answers `-ENOSYS`. A handler returns what the guest's
 * hypercall returns: `>= 0` on success, a negative Xen errno on failure.
 *
 * Every privileged operation asks one {@link Policy} whether the caller may do
 * it to the target, the place Xen's XSM hooks sit. Each call site names, as
 * each of Xen's hooks does, the default action class of the operation
 * ({@link XsmDefault}, Xen's `xsm_default_t`), and the default policy is
 * Xen's "dummy" one, which decides from that class alone: some operations
 * are open to anyone, some to a domain acting on itself or to the privileged
 * domain, some only to the privileged domain, even on itself.
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

/**
 * The default action class of a privileged operation (Xen's
 * `xsm_default_t`), which the dummy policy decides by:
 *
 * - `hook` (`XSM_HOOK`): anyone;
 * - `target` (`XSM_TARGET`): a domain acting on itself, else as `priv`;
 * - `xs_priv` (`XSM_XS_PRIV`): the XenStore domain, else as `priv` (even
 *   on itself);
 * - `dm_priv` (`XSM_DM_PRIV`): a device model acting on its target, else as
 *   `priv`; pvkit has no device models (`XEN_DOMCTL_set_target`), so this is
 *   `priv`;
 * - `priv` (`XSM_PRIV`): the privileged domain only, even on itself.
 */
export type XsmDefault = "hook" | "target" | "xs_priv" | "dm_priv" | "priv";

/**
 * Decides privileged operations. `action` names the operation as
 * `"<hypercall>:<command>"`, e.g. `"domctl:createdomain"`; `xsm` is its
 * default class, which a policy may use or ignore.
 */
export interface Policy {
  /** May `caller` perform `action` on `target` (or on the system, if undefined)? */
  allows(caller: Domain, action: string, xsm: XsmDefault, target?: Domain): boolean;
}

/** Xen's dummy policy (`xsm_default_action`): the default class of each action decides. */
export const dummyPolicy: Policy = {
  allows(caller, _action, xsm, target) {
    switch (xsm) {
      case "hook":
        return true;
      case "target":
        return target === caller || caller.privileged;
      case "xs_priv":
        return caller.xenstore || caller.privileged;
      default: // dm_priv (no device models) and priv
        return caller.privileged;
    }
  },
};
