/**
 * Transactions (`XS_TRANSACTION_START` / `XS_TRANSACTION_END`).
 *
 * `TRANSACTION_START` (with `tx_id` 0 in the header; a known `tx_id` is
 * `EBUSY`, Xen has no nested transactions) answers a new id as an unsigned
 * decimal string and a NUL, e.g. `"1\0"`. Ids are per connection, never 0,
 * and not reused while open. Requests carrying that id in `tx_id` then work
 * on the transaction's own view of the store; an id the connection does
 * not have open is `ENOENT` (xenstored's `transaction_lookup`).
 * `TRANSACTION_END` with `"T\0"` commits, `"F\0"` aborts, anything else is
 * `EINVAL`; either way the id is gone afterwards.
 *
 * The view starts as a snapshot of the store when the transaction started
 * (O(1): the store is persistent), so a transaction does not see writes
 * made by others after it began, and others do not see its writes until it
 * commits.
 *
 * Conflicts follow xenstored's generation-count rule
 * (`xenstored_transaction.c`): the transaction remembers the generation of
 * every node it read or wrote, as its view showed it on first access
 * (including nodes it found missing). The commit fails with `EAGAIN` if any
 * of them has a different generation (or existence) in the live store.
 * Otherwise the transaction's successful updates are replayed on the live
 * store: as every node they depend on is unchanged, they have the effects
 * they had in the view, and quotas are checked again against the live
 * counts (`ENOSPC`, as xenstored's `transaction_fix_domains`). Watches fire
 * for the replayed changes at commit, never before.
 *
 * A transaction of an unprivileged connection may touch at most
 * `maxTransactionNodes` distinct nodes (`quota_trans_nodes`); the request
 * that would exceed it is `ENOSPC` and changes nothing.
 *
 * @module
 */
import type { AccessObserver, Change, Store, StoreResult } from "./store.js";
import type { XsErrorName } from "./wire.js";

/** An update run inside a transaction and replayed at commit. */
export type TxOp = (store: Store, observe: AccessObserver | undefined) => StoreResult;

/** A value computed inside a transaction, or the error that stopped it. */
export type TxRead<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: XsErrorName };

/** One open transaction: its view of the store, what it accessed, and its updates. */
export class Transaction {
  private current: Store;
  private readonly accessed = new Map<string, number | undefined>();
  private readonly log: TxOp[] = [];

  /**
   * Opens transaction `id` on `snapshot`. With `nodeLimit`, it may access
   * at most that many distinct nodes.
   */
  constructor(
    /** The id answered by `TRANSACTION_START`. */
    readonly id: number,
    snapshot: Store,
    private readonly nodeLimit?: number,
  ) {
    this.current = snapshot;
  }

  /** The store as this transaction sees it. */
  get view(): Store {
    return this.current;
  }

  /** How many distinct nodes it has read or written. */
  get accessCount(): number {
    return this.accessed.size;
  }

  /** The number of successful updates to replay at commit. */
  get updates(): number {
    return this.log.length;
  }

  private track<T>(fn: (view: Store, observe: AccessObserver) => T): TxRead<T> {
    const fresh = new Map<string, number | undefined>();
    const observe: AccessObserver = (path, node) => {
      if (!this.accessed.has(path) && !fresh.has(path)) fresh.set(path, node?.generation);
    };
    const value = fn(this.current, observe);
    if (this.nodeLimit !== undefined && this.accessed.size + fresh.size > this.nodeLimit) return { ok: false, error: "ENOSPC" };
    for (const [p, g] of fresh) this.accessed.set(p, g);
    return { ok: true, value };
  }

  /** Computes `fn` on the view, remembering the nodes it reads. */
  read<T>(fn: (view: Store, observe: AccessObserver) => T): TxRead<T> {
    return this.track(fn);
  }

  /** Runs an update on the view; if it succeeds, the view moves on and the update is kept for commit. */
  apply(op: TxOp): StoreResult {
    const t = this.track(op);
    if (!t.ok) return t;
    if (t.value.ok) {
      this.current = t.value.store;
      this.log.push(op);
    }
    return t.value;
  }

  /** The first node whose generation in `live` differs from what this transaction saw, if any. */
  conflict(live: Store): string | undefined {
    for (const [path, gen] of this.accessed) if (live.get(path)?.generation !== gen) return path;
    return undefined;
  }

  /**
   * Commits onto `live`: `EAGAIN` on a conflict, the first error of a
   * replayed update if one fails (e.g. `ENOSPC`), else the new live store
   * and the changes whose watches must now fire.
   */
  commit(live: Store): StoreResult {
    if (this.conflict(live) !== undefined) return { ok: false, error: "EAGAIN" };
    let store = live;
    const changes: Change[] = [];
    for (const op of this.log) {
      const r = op(store, undefined);
      if (!r.ok) return r;
      store = r.store;
      changes.push(...r.changes);
    }
    return { ok: true, store, changes };
  }
}

/** The transactions a connection has open, by id. */
export class TransactionTable {
  private readonly open = new Map<number, Transaction>();
  private nextId = 1;

  /** How many are open. */
  get size(): number {
    return this.open.size;
  }

  /** Opens a transaction on `snapshot` with a fresh id (never 0, not in use). */
  start(snapshot: Store, nodeLimit?: number): Transaction {
    let id = this.nextId;
    while (id === 0 || this.open.has(id)) id = (id + 1) >>> 0;
    this.nextId = (id + 1) >>> 0;
    const tx = new Transaction(id, snapshot, nodeLimit);
    this.open.set(id, tx);
    return tx;
  }

  /** The open transaction `id`, if any. */
  get(id: number): Transaction | undefined {
    return this.open.get(id);
  }

  /** Closes transaction `id` and returns it (undefined if it was not open). */
  end(id: number): Transaction | undefined {
    const tx = this.open.get(id);
    this.open.delete(id);
    return tx;
  }

  /** Drops every open transaction (connection reset or close). */
  clear(): void {
    this.open.clear();
  }
}
