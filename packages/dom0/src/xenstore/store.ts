/**
 * The XenStore tree as a persistent (immutable) value.
 *
 * Every node has a value (bytes, possibly empty), permissions, an ordered
 * set of named children and a generation count. An update returns a new
 * {@link Store} that shares every untouched subtree with the old one, so a
 * transaction's snapshot is just a reference to the store of the moment,
 * and a failed operation leaves nothing half-done.
 *
 * The operations are xenstored's (`xenstored_core.c`), permission checks
 * and quotas included:
 *
 * - **lookup** (`get_node`): a node the caller may not access is `EACCES`.
 *   A missing node is `ENOENT` if the nearest existing ancestor grants the
 *   wanted access, and `EACCES` otherwise, so that a caller learns nothing
 *   about nodes it could not see (`errno_from_parents`).
 * - **write** / **mkdir** create missing parents (`construct_node`). New
 *   nodes copy the permissions of the nearest existing ancestor, except
 *   that an unprivileged creator becomes their owner; a privileged creator
 *   leaves the inherited owner in place. Each new node counts against its
 *   owner's node quota. Only the written path produces a watch event, not
 *   the parents created on the way. `MKDIR` of an existing node changes
 *   nothing and fires nothing.
 * - **rm** (`do_rm`, `rm_node`) deletes a node and its subtree. Removing `/`
 *   is `EINVAL`. Removing a missing node whose parent exists succeeds;
 *   with a missing parent it is `ENOENT`. Events come children first: each
 *   deleted descendant fires the watches set exactly on it, and the removed
 *   node itself fires the watches at or above it (`delnode_sub`).
 * - **setPerms** needs write and owner rights; an unprivileged caller may
 *   not change the owner (`EPERM`).
 *
 * A node record reaching the entry-size quota is `ENOSPC` for unprivileged
 * writers (`write_node_raw`); so is a domain owning too many nodes.
 *
 * Generation counts come from a {@link GenerationCounter} shared by the
 * live store and all transaction views: a node gets a fresh count whenever
 * its own record (value, permissions or child list) changes. Transactions
 * compare them to detect conflicts, and `DIRECTORY_PART` reports them.
 *
 * @module
 */
import { childPath, components, parentPath, basename } from "./path.js";
import { XS_PERM, hasAccess, inheritPerms, ownedBy, ownerOf, permFor, type Accessor, type NodePerms } from "./perms.js";
import { entrySizeError, nodeRecordSize, quotaError, type Quota } from "./quota.js";
import type { XsErrorName } from "./wire.js";

/** One node of the tree. Values are shared, never mutate them. */
export interface XsNode {
  /** The node's value: raw bytes, usually ASCII without a NUL. */
  readonly value: Uint8Array;
  /** Owner entry first, then per-domain entries. */
  readonly perms: NodePerms;
  /** The children by name, in creation order. */
  readonly children: ReadonlyMap<string, XsNode>;
  /** The generation count of the node's last change. */
  readonly generation: number;
}

/** The source of generation counts: each call of `next` returns a new, larger one. */
export class GenerationCounter {
  /** Starts counting at `start`. */
  constructor(private n = 0) {}

  /** A fresh generation count. */
  next(): number {
    return this.n++;
  }

  /** The count `next` will return. */
  get peek(): number {
    return this.n;
  }
}

/**
 * A change that may fire watches: the changed `path`; whether only watches
 * set exactly on it fire (`exact`, for descendants of a removed node) or all
 * watches at or above it; and the permission sets that decide who may see
 * it. A watcher receives the event if any of `readers` grants it read
 * access (xenstored's `watch_permitted`: the node, its parent, and for
 * `SET_PERMS` the node's old permissions).
 */
export interface Change {
  /** The changed node. */
  readonly path: string;
  /** True if only watches on exactly `path` fire. */
  readonly exact: boolean;
  /** Read access to any of these lets a watcher see the event. */
  readonly readers: readonly NodePerms[];
}

/** Called with each node an operation reads, before it changes anything (for transactions). */
export type AccessObserver = (path: string, node: XsNode | undefined) => void;

/** The result of a lookup: the node, or the error to answer. */
export type Lookup = { readonly ok: true; readonly node: XsNode } | { readonly ok: false; readonly error: XsErrorName };

/** The result of an update: the new store and its changes, or the error to answer. */
export type StoreResult =
  | { readonly ok: true; readonly store: Store; readonly changes: readonly Change[] }
  | { readonly ok: false; readonly error: XsErrorName };

/** Who performs an operation, under which limits, and who watches its reads. */
export interface OpContext {
  /** The caller. */
  readonly acc: Accessor;
  /** The limits that apply to unprivileged callers. */
  readonly quota: Quota;
  /** Told about every node read. */
  readonly observe?: AccessObserver | undefined;
}

const EMPTY = new Uint8Array(0);
const NO_CHILDREN: ReadonlyMap<string, XsNode> = new Map();

/** The record size xenstored accounts for `node`. */
export function recordSize(node: XsNode): number {
  return nodeRecordSize(node.value.length, node.perms.length, node.children.keys());
}

function fail(error: XsErrorName): { ok: false; error: XsErrorName } {
  return { ok: false, error };
}

function updateAt(node: XsNode, comps: readonly string[], i: number, f: (n: XsNode) => XsNode): XsNode {
  if (i === comps.length) return f(node);
  const name = comps[i] as string;
  const child = node.children.get(name);
  if (child === undefined) throw new Error(`store: no node ${name} to update`);
  const children = new Map(node.children);
  children.set(name, updateAt(child, comps, i + 1, f));
  return { ...node, children };
}

function addCount(m: Map<number, number>, domid: number, n: number): void {
  const v = (m.get(domid) ?? 0) + n;
  if (v === 0) m.delete(domid);
  else m.set(domid, v);
}

/** An immutable XenStore tree with per-owner node counts. */
export class Store {
  private constructor(
    /** The root node `/`. */
    readonly root: XsNode,
    private readonly owned: ReadonlyMap<number, number>,
    /** The generation counter this store and its descendants share. */
    readonly clock: GenerationCounter,
  ) {}

  /**
   * The tree xenstored starts with (`setup_structure`): `/`, `/tool` and
   * `/tool/xenstored`, owned by dom0 with no access for others (`n0`).
   */
  static initial(clock: GenerationCounter = new GenerationCounter()): Store {
    const perms = ownedBy(0);
    const xenstored: XsNode = { value: EMPTY, perms, children: NO_CHILDREN, generation: clock.next() };
    const tool: XsNode = { value: EMPTY, perms, children: new Map([["xenstored", xenstored]]), generation: clock.next() };
    const root: XsNode = { value: EMPTY, perms, children: new Map([["tool", tool]]), generation: clock.next() };
    return new Store(root, new Map([[0, 3]]), clock);
  }

  /** The node at canonical `path`, or undefined. No permission check. */
  get(path: string): XsNode | undefined {
    let node: XsNode | undefined = this.root;
    for (const c of components(path)) {
      node = node.children.get(c);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** How many nodes `domid` owns. */
  nodesOwnedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  /** Node counts by owner. */
  get owners(): ReadonlyMap<number, number> {
    return this.owned;
  }

  /** Every node at or below `path` (pre-order, children in order) with its path. */
  *walk(path = "/"): Generator<[string, XsNode]> {
    const start = this.get(path);
    if (start === undefined) return;
    const stack: [string, XsNode][] = [[path, start]];
    while (stack.length > 0) {
      const [p, n] = stack.pop() as [string, XsNode];
      yield [p, n];
      const kids = [...n.children].reverse();
      for (const [name, child] of kids) stack.push([childPath(p, name), child]);
    }
  }

  /**
   * xenstored's `get_node`: the node at `path` if the caller has all of
   * `want` on it, else `EACCES`, or `ENOENT`/`EACCES` for a missing node
   * depending on the nearest existing ancestor.
   */
  lookup(path: string, want: number, ctx: Pick<OpContext, "acc" | "observe">): Lookup {
    const node = this.get(path);
    ctx.observe?.(path, node);
    if (node !== undefined) return hasAccess(ctx.acc, node.perms, want) ? { ok: true, node } : fail("EACCES");
    let p = path;
    while (p !== "/") {
      p = parentPath(p);
      const a = this.get(p);
      ctx.observe?.(p, a);
      if (a !== undefined) return (permFor(ctx.acc, a.perms) & want) !== 0 ? fail("ENOENT") : fail("EACCES");
    }
    return fail("ENOENT");
  }

  private with(root: XsNode, owned: ReadonlyMap<number, number>): Store {
    return new Store(root, owned, this.clock);
  }

  /** `WRITE`: sets the value at `path`, creating it and missing parents. */
  write(path: string, value: Uint8Array, ctx: OpContext): StoreResult {
    const r = this.lookup(path, XS_PERM.WRITE, ctx);
    if (!r.ok) return r.error === "ENOENT" ? this.create(path, value, ctx) : r;
    const updated: XsNode = { ...r.node, value, generation: this.clock.next() };
    const tooBig = entrySizeError(ctx.quota, ctx.acc, recordSize(updated));
    if (tooBig !== undefined) return fail(tooBig);
    const parent = this.get(parentPath(path)) as XsNode;
    const root = updateAt(this.root, components(path), 0, () => updated);
    return { ok: true, store: this.with(root, this.owned), changes: [{ path, exact: false, readers: [updated.perms, parent.perms] }] };
  }

  /** `MKDIR`: makes sure `path` exists, creating it and missing parents with empty values. */
  mkdir(path: string, ctx: OpContext): StoreResult {
    const r = this.lookup(path, XS_PERM.WRITE, ctx);
    if (r.ok) return { ok: true, store: this, changes: [] };
    return r.error === "ENOENT" ? this.create(path, EMPTY, ctx) : r;
  }

  private create(path: string, value: Uint8Array, ctx: OpContext): StoreResult {
    const { acc, quota, observe } = ctx;
    // The missing nodes, deepest first, up to the nearest existing ancestor.
    const missing = [path];
    let anc = parentPath(path);
    let ancNode = this.get(anc);
    observe?.(anc, ancNode);
    while (ancNode === undefined) {
      missing.push(anc);
      anc = parentPath(anc);
      ancNode = this.get(anc);
      observe?.(anc, ancNode);
    }
    const perms = inheritPerms(ancNode.perms, acc);
    const quotaHit = quotaError(quota, "maxNodesPerDomain", acc, this.nodesOwnedBy(acc.domid) + missing.length - 1);
    if (quotaHit !== undefined) return fail(quotaHit);
    let sub: XsNode = { value, perms, children: NO_CHILDREN, generation: this.clock.next() };
    let tooBig = entrySizeError(quota, acc, recordSize(sub));
    for (let i = 1; i < missing.length && tooBig === undefined; i++) {
      sub = { value: EMPTY, perms, children: new Map([[basename(missing[i - 1] as string), sub]]), generation: this.clock.next() };
      tooBig = entrySizeError(quota, acc, recordSize(sub));
    }
    const top = basename(missing[missing.length - 1] as string);
    const grown: XsNode = { ...ancNode, children: new Map(ancNode.children).set(top, sub), generation: this.clock.next() };
    tooBig ??= entrySizeError(quota, acc, recordSize(grown));
    if (tooBig !== undefined) return fail(tooBig);
    const owned = new Map(this.owned);
    addCount(owned, ownerOf(perms), missing.length);
    const root = updateAt(this.root, components(anc), 0, () => grown);
    const parentPerms = missing.length > 1 ? perms : ancNode.perms;
    return { ok: true, store: this.with(root, owned), changes: [{ path, exact: false, readers: [perms, parentPerms] }] };
  }

  /** `RM`: removes `path` and everything below it. */
  rm(path: string, ctx: OpContext): StoreResult {
    const { observe } = ctx;
    const r = this.lookup(path, XS_PERM.WRITE, ctx);
    if (!r.ok) {
      if (r.error !== "ENOENT") return r;
      const pp = parentPath(path);
      const parent = this.get(pp);
      observe?.(pp, parent);
      return parent !== undefined ? { ok: true, store: this, changes: [] } : fail("ENOENT");
    }
    if (path === "/") return fail("EINVAL");
    const pp = parentPath(path);
    const parent = this.get(pp) as XsNode;
    observe?.(pp, parent);
    const changes: Change[] = [];
    const owned = new Map(this.owned);
    const visit = (p: string, node: XsNode, parentPerms: NodePerms): void => {
      for (const [name, child] of node.children) {
        const cp = childPath(p, name);
        observe?.(cp, child);
        visit(cp, child, node.perms);
      }
      addCount(owned, ownerOf(node.perms), -1);
      changes.push({ path: p, exact: p !== path, readers: [node.perms, parentPerms] });
    };
    visit(path, r.node, parent.perms);
    const children = new Map(parent.children);
    children.delete(basename(path));
    const shrunk: XsNode = { ...parent, children, generation: this.clock.next() };
    const root = updateAt(this.root, components(pp), 0, () => shrunk);
    return { ok: true, store: this.with(root, owned), changes };
  }

  /** `SET_PERMS`: replaces the permissions of `path`. */
  setPerms(path: string, perms: NodePerms, ctx: OpContext): StoreResult {
    const r = this.lookup(path, XS_PERM.WRITE | XS_PERM.OWNER, ctx);
    if (!r.ok) return r;
    if (!ctx.acc.privileged && ownerOf(perms) !== ownerOf(r.node.perms)) return fail("EPERM");
    const updated: XsNode = { ...r.node, perms, generation: this.clock.next() };
    const tooBig = entrySizeError(ctx.quota, ctx.acc, recordSize(updated));
    if (tooBig !== undefined) return fail(tooBig);
    const owned = new Map(this.owned);
    addCount(owned, ownerOf(r.node.perms), -1);
    addCount(owned, ownerOf(perms), 1);
    const parent = this.get(parentPath(path)) as XsNode;
    const root = updateAt(this.root, components(path), 0, () => updated);
    return { ok: true, store: this.with(root, owned), changes: [{ path, exact: false, readers: [r.node.perms, perms, parent.perms] }] };
  }

  /**
   * Checks the store's bookkeeping (xenstored's `check_store`): recounts
   * the nodes of every owner. Returns the problems found and a store with
   * the counts repaired (this one if there were none).
   */
  check(): { readonly problems: readonly string[]; readonly store: Store } {
    const counted = new Map<number, number>();
    for (const [, n] of this.walk()) addCount(counted, ownerOf(n.perms), 1);
    const problems: string[] = [];
    for (const d of new Set([...counted.keys(), ...this.owned.keys()])) {
      const want = counted.get(d) ?? 0;
      const have = this.owned.get(d) ?? 0;
      if (want !== have) problems.push(`domain ${d}: ${have} nodes accounted, ${want} in the tree`);
    }
    return { problems, store: problems.length === 0 ? this : this.with(this.root, counted) };
  }
}
