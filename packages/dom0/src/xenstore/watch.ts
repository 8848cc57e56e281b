/**
 * Watches (`XS_WATCH`, `XS_UNWATCH`, `XS_RESET_WATCHES`), as
 * `xenstored_watch.c` implements them.
 *
 * - `WATCH <wpath>|<token>|` registers a watch and answers `OK`; then,
 *   right after the reply, the watch fires once with `<wpath>` itself,
 *   whether or not the node exists. The header's `tx_id` is ignored.
 *   A relative `<wpath>` is taken below the connection's home
 *   (`/local/domain/<domid>`), and every event for that watch carries a
 *   path relative to the home too. `<wpath>` may also be any name starting
 *   with `@`; only `@introduceDomain` and `@releaseDomain` ever fire.
 * - The same path and token twice is `EEXIST`; more than the watch quota is
 *   `E2BIG`; an invalid path is `EINVAL`. A payload that is not exactly two
 *   NUL-terminated strings is `EINVAL`.
 * - A change at `p` fires every watch whose path is `p` or an ancestor of
 *   `p`: writes, `MKDIR` of a new node, `SET_PERMS`, and `RM`. Removing a
 *   subtree also fires, for each node in it, the watches set exactly on
 *   that node, so a watch on `/a/b/c` fires with `/a/b/c` when `/a` is
 *   removed (if `/a/b/c` existed). Changes inside a transaction fire when
 *   it commits.
 * - An event reaches a connection only if it may read the changed node or
 *   its parent (or, for `SET_PERMS`, could read the node before the change)
 *   (`watch_permitted`). Special events reach connections allowed to read
 *   the special path's permissions, which are `n0` unless dom0 sets them
 *   with `SET_PERMS` (`check_perms_special`).
 * - `UNWATCH <wpath>|<token>|` removes the watch with exactly that
 *   (canonicalised) path and token, else `ENOENT`. `RESET_WATCHES` removes
 *   all of the connection's watches and transactions.
 *
 * Events are `XS_WATCH_EVENT` messages with payload `<epath>|<token>|`;
 * one whose payload would exceed `XENSTORE_PAYLOAD_MAX` is dropped, as in
 * Xen's `send_event`.
 *
 * One difference from C xenstored: its `is_child` treats every name as
 * below `/`, so a watch on `/` also receives `@introduceDomain` and
 * `@releaseDomain` events there. Here special events reach only watches on
 * exactly their name.
 *
 * @module
 */
import { canonicalize, isAtOrBelow, relativeTo, resolvePath } from "./path.js";
import type { Accessor } from "./perms.js";
import { pathLengthLimit, quotaError, type Quota } from "./quota.js";
import type { Change } from "./store.js";
import type { XsErrorName } from "./wire.js";

/** A registered watch. */
export interface Watch {
  /** The canonical path (or `@` name) watched. */
  readonly path: string;
  /** The client's token, echoed in every event. */
  readonly token: string;
  /** True if the client gave the path relative to its home; events are then relative too. */
  readonly relative: boolean;
}

/** One connection's watches, in registration order. */
export class WatchTable implements Iterable<Watch> {
  private readonly list: Watch[] = [];

  /** How many watches are registered. */
  get size(): number {
    return this.list.length;
  }

  /** Whether a watch on `path` with `token` is registered. */
  has(path: string, token: string): boolean {
    return this.list.some((w) => w.path === path && w.token === token);
  }

  /** Adds `w` (no checks; see {@link addWatch}). */
  add(w: Watch): void {
    this.list.push(w);
  }

  /** Removes the watch on `path` with `token`; false if there was none. */
  remove(path: string, token: string): boolean {
    const i = this.list.findIndex((w) => w.path === path && w.token === token);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  /** Removes every watch. */
  clear(): void {
    this.list.length = 0;
  }

  /** The watches, oldest first. */
  [Symbol.iterator](): Iterator<Watch> {
    return [...this.list][Symbol.iterator]();
  }
}

/** A new watch, or the error to answer. */
export type AddWatchResult = { readonly ok: true; readonly watch: Watch } | { readonly ok: false; readonly error: XsErrorName };

/**
 * `WATCH`: validates `rawPath` for `acc`, refuses duplicates (`EEXIST`) and
 * watches over quota (`E2BIG`), and registers the watch in `table`.
 */
export function addWatch(table: WatchTable, rawPath: string, token: string, acc: Accessor, quota: Quota): AddWatchResult {
  const resolved = resolvePath(rawPath, acc.domid, { special: "watch", maxPathLength: pathLengthLimit(quota, acc) });
  if (resolved === undefined) return { ok: false, error: "EINVAL" };
  if (table.has(resolved.path, token)) return { ok: false, error: "EEXIST" };
  const over = quotaError(quota, "maxWatches", acc, table.size);
  if (over !== undefined) return { ok: false, error: over };
  const watch: Watch = { path: resolved.path, token, relative: resolved.relative };
  table.add(watch);
  return { ok: true, watch };
}

/**
 * `UNWATCH`: removes the watch of `domid` with the canonical form of
 * `rawPath` and `token`; false (`ENOENT`) if there is none.
 */
export function removeWatch(table: WatchTable, rawPath: string, token: string, domid: number): boolean {
  return table.remove(canonicalize(rawPath, domid), token);
}

/** Whether `change` fires `w`. */
export function watchFires(w: Watch, change: Pick<Change, "path" | "exact">): boolean {
  const special = change.path.startsWith("@");
  if (special || w.path.startsWith("@")) return special && w.path === change.path;
  return change.exact ? w.path === change.path : isAtOrBelow(change.path, w.path);
}

/** The path an event for `w` carries for a change at `path`, `home` being the watcher's home directory. */
export function eventPath(w: Watch, path: string, home: string): string {
  return w.relative ? relativeTo(path, home) : path;
}
