/**
 * Per-domain and per-connection limits, with C xenstored's defaults and the
 * errors it answers when one is hit.
 *
 * | limit                     | default | answer   | xenstored                      |
 * | ------------------------- | ------: | -------- | ------------------------------ |
 * | nodes owned by a domain   |    1000 | `ENOSPC` | `quota_nb_entry_per_domain`    |
 * | size of one node record   |    2048 | `ENOSPC` | `quota_max_entry_size`         |
 * | watches per connection    |     128 | `E2BIG`  | `quota_nb_watch_per_domain`    |
 * | open transactions         |      10 | `ENOSPC` | `quota_max_transaction`        |
 * | entries in a perms list   |       5 | `ENOSPC` | `quota_nb_perms_per_node`      |
 * | nodes one transaction uses|    1024 | `ENOSPC` | `quota_trans_nodes`            |
 * | path length below home    |    2048 | `EINVAL` | `quota_max_path_len`           |
 *
 * Quotas bind unprivileged connections only; dom0 and other privileged
 * connections are exempt, as in Xen (`domain_is_unprivileged`).
 *
 * There is no `EQUOTA` on the wire: that name is oxenstored's and is not in
 * `xsd_errors[]`. C xenstored answers quota violations with `ENOSPC`
 * (`create_node`, `write_node_raw`, `do_transaction_start`,
 * `do_set_perms`, `access_node`), except too many watches, which is `E2BIG`
 * (`do_watch`), and an over-long path, which is simply an invalid path.
 *
 * A node record's size is what xenstored stores in its database: the
 * 24-byte `struct xs_tdb_record_hdr`, 8 bytes per permission entry
 * (`struct xs_permissions`), the value, and each child's name with its NUL.
 * Xen refuses the write when that size reaches the limit.
 *
 * Each limit here is the most allowed: a connection may hold exactly
 * `maxWatches` watches. (C xenstored compares the count before adding with
 * `>`, which lets one more watch and one more transaction through.)
 *
 * @module
 */
import { XENSTORE } from "@pvkit/abi";
import type { Accessor } from "./perms.js";
import type { XsErrorName } from "./wire.js";

/** The limits a daemon enforces on unprivileged connections. */
export interface Quota {
  /** Nodes a domain may own. */
  readonly maxNodesPerDomain: number;
  /** Bytes a node record may not reach (header, perms, value, child names). */
  readonly maxEntrySize: number;
  /** Watches one connection may hold. */
  readonly maxWatches: number;
  /** Transactions one connection may have open. */
  readonly maxTransactions: number;
  /** Entries a `SET_PERMS` list may have. */
  readonly maxPermsPerNode: number;
  /** Distinct nodes one transaction may read or write. */
  readonly maxTransactionNodes: number;
  /** Longest path below `/local/domain/<domid>/` (or absolute path elsewhere). */
  readonly maxPathLength: number;
}

/** C xenstored's defaults (Xen 4.17 `xenstored_core.c`). */
export const DEFAULT_QUOTA: Readonly<Quota> = Object.freeze({
  maxNodesPerDomain: 1000,
  maxEntrySize: 2048,
  maxWatches: 128,
  maxTransactions: 10,
  maxPermsPerNode: 5,
  maxTransactionNodes: 1024,
  maxPathLength: XENSTORE.REL_PATH_MAX,
});

/** The error each limit answers with. */
export const QUOTA_ERRORS: Readonly<Record<keyof Quota, XsErrorName>> = Object.freeze({
  maxNodesPerDomain: "ENOSPC",
  maxEntrySize: "ENOSPC",
  maxWatches: "E2BIG",
  maxTransactions: "ENOSPC",
  maxPermsPerNode: "ENOSPC",
  maxTransactionNodes: "ENOSPC",
  maxPathLength: "EINVAL",
});

/**
 * The defaults overridden by `partial`. Throws `RangeError` for a value
 * that is not a non-negative integer.
 */
export function resolveQuota(partial: Partial<Quota> = {}): Quota {
  const q: Quota = { ...DEFAULT_QUOTA, ...partial };
  for (const [k, v] of Object.entries(q)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`quota ${k} must be a non-negative integer, got ${String(v)}`);
  }
  return q;
}

/** Bytes of `struct xs_tdb_record_hdr` (u64 generation, three u32, padded to 8). */
export const XS_TDB_RECORD_HDR_SIZE = 24;

/** Bytes of one `struct xs_permissions`. */
export const XS_PERMISSIONS_SIZE = 8;

/** The size xenstored accounts for a node record. */
export function nodeRecordSize(valueLength: number, permCount: number, childNames: Iterable<string>): number {
  let children = 0;
  for (const n of childNames) children += n.length + 1;
  return XS_TDB_RECORD_HDR_SIZE + XS_PERMISSIONS_SIZE * permCount + valueLength + children;
}

/**
 * The error, if any, for `acc` adding one more of something of which it
 * has `count` against limit `key` (undefined when allowed or exempt).
 */
export function quotaError(q: Quota, key: keyof Quota, acc: Accessor, count: number): XsErrorName | undefined {
  if (acc.privileged) return undefined;
  return count >= q[key] ? QUOTA_ERRORS[key] : undefined;
}

/** The error, if any, for `acc` storing a node record of `size` bytes. */
export function entrySizeError(q: Quota, acc: Accessor, size: number): XsErrorName | undefined {
  if (acc.privileged) return undefined;
  return size >= q.maxEntrySize ? QUOTA_ERRORS.maxEntrySize : undefined;
}

/** The error, if any, for `acc` setting a permission list of `count` entries. */
export function permCountError(q: Quota, acc: Accessor, count: number): XsErrorName | undefined {
  if (acc.privileged) return undefined;
  return count > q.maxPermsPerNode ? QUOTA_ERRORS.maxPermsPerNode : undefined;
}

/** The most {@link quotaPathLength} may be for `acc`, or undefined if it is exempt. */
export function pathLengthLimit(q: Quota, acc: Accessor): number | undefined {
  return acc.privileged ? undefined : q.maxPathLength;
}
