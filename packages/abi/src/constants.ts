/**
 * Groups of Xen constants that share a C prefix.
 *
 * Xen's headers name constants with a prefix per family: `EVTCHNOP_send`,
 * `GNTST_bad_handle`, `__HYPERVISOR_sched_op`. pvkit keeps each family as one
 * frozen object keyed by the rest of the name, so `EVTCHNOP.send` reads like
 * the C it stands for and a family can be listed, searched and reverse-mapped
 * (for traces and error messages) as a whole.
 *
 * Each group remembers the header it comes from and its C prefix; the
 * conformance test uses that to ask the C compiler for every value.
 *
 * @module
 */

/** Where a constant group comes from in Xen's public headers. */
export interface ConstantGroupInfo {
  /** The header under `/usr/include/xen`, e.g. `event_channel.h`. */
  readonly header: string;
  /** The C prefix that, joined with a key, gives the C name. */
  readonly cPrefix: string;
}

const groups = new WeakMap<object, ConstantGroupInfo>();

/**
 * Declares a constant group: `constants("sched.h", "SCHEDOP_", { yield: 0 })`
 * stands for `#define SCHEDOP_yield 0`. Returns the frozen values.
 */
export function constants<const T extends Readonly<Record<string, number>>>(header: string, cPrefix: string, values: T): T {
  const frozen = Object.freeze({ ...values });
  groups.set(frozen, { header, cPrefix });
  return frozen;
}

/** The header and prefix of a group made by {@link constants}, or undefined for any other value. */
export function constantGroupInfo(value: unknown): ConstantGroupInfo | undefined {
  return typeof value === "object" && value !== null ? groups.get(value) : undefined;
}

/**
 * The C name of `value` in a group, for messages and traces:
 * `cName(XEN_ERRNO, 22)` is `"XEN_EINVAL"`. Where several names share a value
 * (aliases such as `EWOULDBLOCK`), the first declared wins. Unknown values
 * come back as the number in decimal.
 */
export function cName(group: Readonly<Record<string, number>>, value: number): string {
  const key = keyOf(group, value);
  return key === undefined ? String(value) : (groups.get(group)?.cPrefix ?? "") + key;
}

/** Each frozen group's keys by value (the first declared for an alias), built on first use: traces name every hypercall. */
const keysByValue = new WeakMap<object, ReadonlyMap<number, string>>();

/** The key of `value` in a group (`keyOf(XEN_ERRNO, 22)` is `"EINVAL"`), or undefined. Where several keys share a value, the first declared. */
export function keyOf<T extends Readonly<Record<string, number>>>(group: T, value: number): (keyof T & string) | undefined {
  // Only a frozen group (every one made by `constants`) can be indexed once for good.
  if (!Object.isFrozen(group)) {
    for (const [k, v] of Object.entries(group)) if (v === value) return k;
    return undefined;
  }
  let index = keysByValue.get(group);
  if (index === undefined) {
    const m = new Map<number, string>();
    for (const [k, v] of Object.entries(group)) if (!m.has(v)) m.set(v, k);
    keysByValue.set(group, (index = m));
  }
  return index.get(value) as (keyof T & string) | undefined;
}
