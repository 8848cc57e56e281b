/**
 * The XenStore daemon's core: connections, request dispatch and replies,
 * with no I/O of its own. A transport (a domain's ring page, a Unix
 * socket) calls {@link Xenstored.connect} with a `send` callback and feeds
 * the bytes it receives to {@link XsConnection.receive}; replies and watch
 * events come back through `send` as encoded messages.
 *
 * ## Requests
 *
 * Payload notation as in Xen's `docs/misc/xenstore.txt`: `|` is a NUL,
 * `<value|>` raw bytes. Unless noted, success is `OK|`.
 *
 * | request                | payload                     | reply                              |
 * | ---------------------- | --------------------------- | ---------------------------------- |
 * | `READ`                 | `<path>\|`                  | `<value\|>` (raw, no NUL)          |
 * | `WRITE`                | `<path>\|<value\|>`         |                                    |
 * | `MKDIR`                | `<path>\|`                  |                                    |
 * | `RM`                   | `<path>\|`                  |                                    |
 * | `DIRECTORY`            | `<path>\|`                  | `<child>\|*`                       |
 * | `DIRECTORY_PART`       | `<path>\|<offset>\|`        | `<gencnt>\|<child>\|*` (+ `\|` at end) |
 * | `GET_PERMS`            | `<path>\|`                  | `<perm>\|+`                        |
 * | `SET_PERMS`            | `<path>\|<perm>\|+`         |                                    |
 * | `WATCH` / `UNWATCH`    | `<wpath>\|<token>\|`        |                                    |
 * | `RESET_WATCHES`        | anything                    |                                    |
 * | `TRANSACTION_START`    | anything (`tx_id` 0)        | `<id>\|`                           |
 * | `TRANSACTION_END`      | `T\|` or `F\|`              |                                    |
 * | `INTRODUCE` (priv)     | `<domid>\|<mfn>\|<port>\|`  |                                    |
 * | `RELEASE` (priv)       | `<domid>\|`                 |                                    |
 * | `RESUME` (priv)        | `<domid>\|`                 |                                    |
 * | `SET_TARGET` (priv)    | `<domid>\|<tdomid>\|`       |                                    |
 * | `GET_DOMAIN_PATH`      | `<domid>\|`                 | `/local/domain/<domid>\|`          |
 * | `IS_DOMAIN_INTRODUCED` (priv) | `<domid>\|`          | `T\|` or `F\|`                     |
 * | `CONTROL` (priv)       | `<command>\|<arg>\|*`       | per command                        |
 *
 * Dispatch follows xenstored's `process_message`: an unknown type (and
 * `WATCH_EVENT`, `ERROR`) is `ENOSYS`; a privileged-only request from an
 * unprivileged connection is `EACCES`; then, except for `WATCH` and
 * `UNWATCH`, a `tx_id` the connection has not open is `ENOENT`. Errors are
 * `XS_ERROR` replies naming the errno (`"EINVAL\0"`). A reply payload over
 * `XENSTORE_PAYLOAD_MAX` is answered `E2BIG` instead (`send_reply`).
 *
 * `DIRECTORY_PART` pages a child list longer than one payload
 * (`send_directory_part`): `<offset>` is a byte offset into the node's
 * NUL-separated child list; the reply is the node's generation count, then
 * as many whole names from the offset as fit, with one more NUL (an empty
 * name) when the list ends there. An offset at or past the end gives just
 * the generation count and the empty name.
 *
 * Watch events caused by a request go out before its reply, as xenstored
 * queues them (`fire_watches` precedes `send_ack`); a `WATCH`'s own first
 * event follows its `OK`.
 *
 * ## Domains
 *
 * `INTRODUCE` tells the daemon about a domain: the hook
 * `introduce(domid, mfn, port)` lets the transport map the ring page and
 * bind the event channel (and call `connect`), then `@introduceDomain`
 * fires. The toolstack, not the daemon, creates `/local/domain/<domid>`,
 * as in Xen. Introducing an introduced domain again calls the hook again
 * (Xen rebinds the event channel) and resets the domain's connections'
 * watches and transactions, without an event. `RELEASE` closes the domain's
 * connections (dropping their watches and transactions), removes
 * `/local/domain/<domid>`, fires `@releaseDomain` and calls `release`.
 * dom0 counts as introduced from the start.
 *
 * ## Hostile input
 *
 * A connection's bytes are framed by its own {@link MessageReader}: a
 * truncated message just waits for more; a header announcing more than
 * `XENSTORE_PAYLOAD_MAX` closes that connection (Xen's
 * `ignore_connection`). Malformed payloads are `EINVAL`. Nothing a
 * connection sends can throw out of `receive` or touch another
 * connection's state, and a `send` callback that throws closes only its own
 * connection. The store is persistent, so a request that fails leaves it
 * exactly as it was.
 *
 * @module
 */
import { DOMID, XENSTORE, XS } from "@pvkit/abi";
import { domainPath, isSpecialPath, resolvePath, SPECIAL_PATHS, type SpecialPath } from "./path.js";
import { XS_PERM, formatPerms, hasAccess, ownedBy, parsePerms, permFor, type Accessor, type NodePerms } from "./perms.js";
import { pathLengthLimit, permCountError, quotaError, resolveQuota, type Quota } from "./quota.js";
import { Store, type AccessObserver, type Change, type OpContext, type XsNode } from "./store.js";
import { TransactionTable, type Transaction, type TxOp, type TxRead } from "./transaction.js";
import { addWatch, eventPath, removeWatch, watchFires, WatchTable } from "./watch.js";
import {
  MessageReader,
  OK_PAYLOAD,
  XsProtocolError,
  binaryToBytes,
  bytesToBinary,
  encodeMessage,
  errorReply,
  joinStrings,
  messageTypeName,
  oneArg,
  reply,
  splitStrings,
  watchEvent,
  type XsErrorName,
  type XsMessage,
} from "./wire.js";

/** Callbacks into the host for domain lifecycle requests. */
export interface XenstoredHooks {
  /** `INTRODUCE`: map `mfn` of `domid` and bind `port`; throw to refuse (answered `EIO`). */
  introduce?(domid: number, mfn: number, port: number): void;
  /** `RELEASE`: unmap and unbind `domid`. */
  release?(domid: number): void;
}

/** How a {@link Xenstored} is set up. */
export interface XenstoredOptions {
  /** Limits overriding {@link DEFAULT_QUOTA}. */
  readonly quota?: Partial<Quota>;
  /** Domain lifecycle callbacks. */
  readonly hooks?: XenstoredHooks;
  /** Where diagnostics go (closed connections, `CONTROL log`/`print`, traces). */
  log?(line: string): void;
}

/** How a connection is set up. */
export interface ConnectOptions {
  /** Bypass permission checks and quotas (default: `domid === 0`). */
  readonly privileged?: boolean;
}

/** One client's connection to the daemon. */
export interface XsConnection {
  /** Unique among this daemon's connections. */
  readonly id: number;
  /** The domain the connection speaks for. */
  readonly domid: number;
  /** Whether it bypasses permissions and quotas. */
  readonly privileged: boolean;
  /** Feeds bytes from the client: frames them and handles each complete request. Never throws. */
  receive(bytes: Uint8Array): void;
  /** Closes the connection, dropping its watches and transactions. */
  close(): void;
  /** True once closed (by `close`, a protocol error, a failing `send` or `RELEASE`). */
  readonly closed: boolean;
}

interface DomainRecord {
  mfn: number;
  port: number;
  target?: number;
}

class Connection implements XsConnection {
  readonly watches = new WatchTable();
  readonly transactions = new TransactionTable();
  readonly reader = new MessageReader();
  isClosed = false;

  constructor(
    readonly id: number,
    readonly domid: number,
    readonly privileged: boolean,
    readonly sendBytes: (bytes: Uint8Array) => void,
    private readonly onReceive: (c: Connection, bytes: Uint8Array) => void,
    private readonly onClose: (c: Connection) => void,
  ) {}

  get closed(): boolean {
    return this.isClosed;
  }

  receive(bytes: Uint8Array): void {
    this.onReceive(this, bytes);
  }

  close(): void {
    this.onClose(this);
  }
}

interface Req {
  readonly conn: Connection;
  readonly msg: XsMessage;
  readonly tx: Transaction | undefined;
  readonly acc: Accessor;
}

type Handler = (req: Req) => XsErrorName | undefined;

/** Only privileged connections may send it (`XS_FLAG_PRIV`). */
const PRIV = 1;
/** The header's `tx_id` is ignored (`XS_FLAG_NOTID`). */
const NOTID = 2;

const DOMID_SELF = DOMID.SELF;
const DOMID_FIRST_RESERVED = DOMID.FIRST_RESERVED;

function parseUint(s: string | undefined, max: number): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

function parseInteger(s: string | undefined): number | undefined {
  if (s === undefined || !/^-?\d{1,20}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

function printable(payload: Uint8Array): string {
  const s = bytesToBinary(payload.subarray(0, 256)).replace(/\0/g, " ").replace(/[^\x20-\x7e]/g, ".");
  return payload.length > 256 ? `${s}...` : s;
}

/**
 * The daemon: the store, the domains it knows, and its connections. All
 * state changes happen in {@link Xenstored.handle}, one request at a time.
 */
export class Xenstored {
  private live: Store = Store.initial();
  private readonly quota: Quota;
  private readonly hooks: XenstoredHooks;
  private readonly logLine: ((line: string) => void) | undefined;
  private tracing = false;
  private readonly conns = new Set<Connection>();
  private readonly domains = new Map<number, DomainRecord>([[0, { mfn: 0, port: 0 }]]);
  private readonly specialPerms = new Map<SpecialPath, NodePerms>([
    [SPECIAL_PATHS.introduceDomain, ownedBy(0)],
    [SPECIAL_PATHS.releaseDomain, ownedBy(0)],
  ]);
  private nextConnId = 1;
  private readonly handlers: ReadonlyMap<number, { readonly flags: number; readonly fn: Handler }>;

  /** A daemon with xenstored's initial tree (`/tool/xenstored`) and dom0 introduced. */
  constructor(opts: XenstoredOptions = {}) {
    this.quota = resolveQuota(opts.quota);
    this.hooks = opts.hooks ?? {};
    this.logLine = opts.log?.bind(opts);
    const h = (flags: number, fn: Handler): { flags: number; fn: Handler } => ({ flags, fn });
    this.handlers = new Map([
      [XS.CONTROL, h(PRIV, (r) => this.opControl(r))],
      [XS.DIRECTORY, h(0, (r) => this.opDirectory(r))],
      [XS.READ, h(0, (r) => this.opRead(r))],
      [XS.GET_PERMS, h(0, (r) => this.opGetPerms(r))],
      [XS.WATCH, h(NOTID, (r) => this.opWatch(r))],
      [XS.UNWATCH, h(NOTID, (r) => this.opUnwatch(r))],
      [XS.TRANSACTION_START, h(0, (r) => this.opTransactionStart(r))],
      [XS.TRANSACTION_END, h(0, (r) => this.opTransactionEnd(r))],
      [XS.INTRODUCE, h(PRIV, (r) => this.opIntroduce(r))],
      [XS.RELEASE, h(PRIV, (r) => this.opRelease(r))],
      [XS.GET_DOMAIN_PATH, h(0, (r) => this.opGetDomainPath(r))],
      [XS.WRITE, h(0, (r) => this.opWrite(r))],
      [XS.MKDIR, h(0, (r) => this.opMkdir(r))],
      [XS.RM, h(0, (r) => this.opRm(r))],
      [XS.SET_PERMS, h(0, (r) => this.opSetPerms(r))],
      [XS.IS_DOMAIN_INTRODUCED, h(PRIV, (r) => this.opIsDomainIntroduced(r))],
      [XS.RESUME, h(PRIV, (r) => this.opResume(r))],
      [XS.SET_TARGET, h(PRIV, (r) => this.opSetTarget(r))],
      [XS.RESET_WATCHES, h(0, (r) => this.opResetWatches(r))],
      [XS.DIRECTORY_PART, h(0, (r) => this.opDirectoryPart(r))],
    ]);
  }

  /** The live store (an immutable snapshot; later requests replace it). */
  get store(): Store {
    return this.live;
  }

  /** The limits in force. */
  get limits(): Quota {
    return this.quota;
  }

  /** The open connections, oldest first. */
  connections(): XsConnection[] {
    return [...this.conns];
  }

  /** A copy of the value at absolute `path`, or undefined if there is no such node. No permission check. */
  read(path: string): Uint8Array | undefined {
    return this.live.get(path)?.value.slice();
  }

  /** Whether `domid` has been introduced and not released (dom0 always is). */
  isIntroduced(domid: number): boolean {
    return this.domains.has(domid);
  }

  /**
   * Opens a connection for `domid`. Replies and events are passed to
   * `send` as encoded messages. Throws `RangeError` for a domid that is not
   * a real domain (0 to `DOMID_FIRST_RESERVED - 1`).
   */
  connect(domid: number, send: (bytes: Uint8Array) => void, opts: ConnectOptions = {}): XsConnection {
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) throw new RangeError(`not a domain id: ${domid}`);
    const conn = new Connection(
      this.nextConnId++,
      domid,
      opts.privileged ?? domid === 0,
      send,
      (c, b) => this.receive(c, b),
      (c) => this.closeConnection(c, "closed"),
    );
    this.conns.add(conn);
    return conn;
  }

  private log(line: string): void {
    this.logLine?.(line);
  }

  private receive(conn: Connection, bytes: Uint8Array): void {
    if (conn.isClosed) return;
    let msgs: readonly XsMessage[];
    let broken: Error | undefined;
    try {
      msgs = conn.reader.feed(bytes);
    } catch (e) {
      // Requests framed before the bad header are still answered, as
      // xenstored handles each message as soon as it is complete.
      msgs = e instanceof XsProtocolError ? e.messages : [];
      broken = e as Error;
    }
    for (const m of msgs) {
      if (conn.isClosed) break;
      try {
        this.handle(conn, m);
      } catch (e) {
        this.log(`xenstored: internal error handling ${messageTypeName(m.type)} from connection ${conn.id}: ${(e as Error).stack ?? String(e)}`);
        this.send(conn, errorReply(m, "EIO"));
      }
    }
    if (broken !== undefined) this.closeConnection(conn, `protocol error: ${broken.message}`);
  }

  private closeConnection(conn: Connection, why: string): void {
    if (conn.isClosed) return;
    conn.isClosed = true;
    this.conns.delete(conn);
    conn.watches.clear();
    conn.transactions.clear();
    this.log(`xenstored: connection ${conn.id} (domain ${conn.domid}) ${why}`);
  }

  private send(conn: Connection, m: XsMessage): void {
    if (conn.isClosed) return;
    if (this.tracing) this.log(`OUT ${conn.id} ${messageTypeName(m.type)} (${printable(m.payload)})`);
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(m);
    } catch {
      // Only an over-long reply can fail to encode; Xen answers E2BIG (send_reply).
      bytes = encodeMessage(errorReply(m, "E2BIG"));
    }
    try {
      conn.sendBytes(bytes);
    } catch (e) {
      this.closeConnection(conn, `send failed: ${(e as Error).message}`);
    }
  }

  private accessor(conn: Connection): Accessor {
    return { domid: conn.domid, privileged: conn.privileged, target: this.domains.get(conn.domid)?.target };
  }

  /**
   * Handles one complete request from `conn` (as `receive` does for each
   * message it frames): dispatches it, applies its effects, and sends its
   * reply and any watch events. Requests on closed connections are ignored.
   */
  handle(conn: XsConnection, msg: XsMessage): void {
    if (!(conn instanceof Connection) || !this.conns.has(conn)) return;
    if (this.tracing) this.log(`IN  ${conn.id} ${messageTypeName(msg.type)} (${printable(msg.payload)})`);
    const entry = this.handlers.get(msg.type);
    if (entry === undefined) return this.send(conn, errorReply(msg, "ENOSYS"));
    if ((entry.flags & PRIV) !== 0 && !conn.privileged) return this.send(conn, errorReply(msg, "EACCES"));
    let tx: Transaction | undefined;
    if ((entry.flags & NOTID) === 0 && msg.txId !== 0) {
      tx = conn.transactions.get(msg.txId);
      if (tx === undefined) return this.send(conn, errorReply(msg, "ENOENT"));
    }
    const error = entry.fn({ conn, msg, tx, acc: this.accessor(conn) });
    if (error !== undefined) this.send(conn, errorReply(msg, error));
  }

  // ---- helpers for handlers ----

  private ok(req: Req, payload: Uint8Array = OK_PAYLOAD): undefined {
    this.send(req.conn, reply(req.msg, payload));
    return undefined;
  }

  private ctx(req: Req, observe: AccessObserver | undefined): OpContext {
    return { acc: req.acc, quota: this.quota, observe };
  }

  private nodePath(req: Req, raw: string | undefined): string | undefined {
    if (raw === undefined) return undefined;
    return resolvePath(raw, req.conn.domid, { maxPathLength: pathLengthLimit(this.quota, req.acc) })?.path;
  }

  /** Runs a read on the request's view (its transaction's, or the live store). */
  private inspect<T>(req: Req, fn: (s: Store, observe: AccessObserver | undefined) => T): TxRead<T> {
    return req.tx !== undefined ? req.tx.read(fn) : { ok: true, value: fn(this.live, undefined) };
  }

  /** Runs an update: inside the transaction, or on the live store firing its watches. */
  private update(req: Req, op: TxOp): XsErrorName | undefined {
    if (req.tx !== undefined) {
      const r = req.tx.apply(op);
      return r.ok ? undefined : r.error;
    }
    const r = op(this.live, undefined);
    if (!r.ok) return r.error;
    this.live = r.store;
    this.fire(r.changes);
    return undefined;
  }

  private lookupNode(req: Req, raw: string | undefined, want: number): { ok: true; node: XsNode } | { ok: false; error: XsErrorName } {
    const path = this.nodePath(req, raw);
    if (path === undefined) return { ok: false, error: "EINVAL" };
    const r = this.inspect(req, (s, observe) => s.lookup(path, want, { acc: req.acc, observe }));
    return r.ok ? r.value : r;
  }

  private fire(changes: readonly Change[]): void {
    for (const change of changes) {
      for (const conn of [...this.conns]) {
        let visible: boolean | undefined;
        for (const w of conn.watches) {
          if (!watchFires(w, change)) continue;
          if (visible === undefined) {
            const acc = this.accessor(conn);
            visible = change.readers.some((p) => (permFor(acc, p) & XS_PERM.READ) !== 0);
          }
          if (visible) this.sendEvent(conn, eventPath(w, change.path, domainPath(conn.domid)), w.token);
        }
      }
    }
  }

  private fireSpecial(name: SpecialPath): void {
    const perms = this.specialPerms.get(name) as NodePerms;
    for (const conn of [...this.conns]) {
      if ((permFor(this.accessor(conn), perms) & XS_PERM.READ) === 0) continue;
      for (const w of conn.watches) if (watchFires(w, { path: name, exact: false })) this.sendEvent(conn, name, w.token);
    }
  }

  private sendEvent(conn: Connection, path: string, token: string): void {
    const ev = watchEvent(path, token);
    if (ev.payload.length > XENSTORE.PAYLOAD_MAX) return; // xenstored drops over-long events
    this.send(conn, ev);
  }

  // ---- the store requests ----

  private opRead(req: Req): XsErrorName | undefined {
    const r = this.lookupNode(req, oneArg(req.msg.payload), XS_PERM.READ);
    return r.ok ? this.ok(req, r.node.value) : r.error;
  }

  private opDirectory(req: Req): XsErrorName | undefined {
    const r = this.lookupNode(req, oneArg(req.msg.payload), XS_PERM.READ);
    return r.ok ? this.ok(req, joinStrings([...r.node.children.keys()])) : r.error;
  }

  private opDirectoryPart(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length !== 2) return "EINVAL";
    const off = parseUint(strings[1], 0xffffffff);
    if (off === undefined) return "EINVAL";
    const r = this.lookupNode(req, strings[0], XS_PERM.READ);
    if (!r.ok) return r.error;
    const gen = binaryToBytes(`${r.node.generation}\0`);
    const children = joinStrings([...r.node.children.keys()]);
    if (off >= children.length) return this.ok(req, concat(gen, new Uint8Array(1)));
    const maxlen = XENSTORE.PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    for (;;) {
      const nul = children.indexOf(0, off + len);
      const nameLen = nul - (off + len);
      if (len + nameLen >= maxlen) break;
      len += nameLen + 1;
      if (off + len === children.length) break;
    }
    const end = off + len === children.length;
    return this.ok(req, concat(gen, children.subarray(off, off + len), end ? new Uint8Array(1) : new Uint8Array(0)));
  }

  private opGetPerms(req: Req): XsErrorName | undefined {
    const arg = oneArg(req.msg.payload);
    if (arg !== undefined && isSpecialPath(arg)) {
      const perms = this.specialPerms.get(arg) as NodePerms;
      return hasAccess(req.acc, perms, XS_PERM.READ) ? this.ok(req, joinStrings(formatPerms(perms))) : "EACCES";
    }
    const r = this.lookupNode(req, arg, XS_PERM.READ);
    return r.ok ? this.ok(req, joinStrings(formatPerms(r.node.perms))) : r.error;
  }

  private opWrite(req: Req): XsErrorName | undefined {
    const payload = req.msg.payload;
    const nul = payload.indexOf(0);
    if (nul < 0) return "EINVAL";
    const path = this.nodePath(req, bytesToBinary(payload.subarray(0, nul)));
    if (path === undefined) return "EINVAL";
    const value = payload.slice(nul + 1);
    return this.update(req, (s, o) => s.write(path, value, this.ctx(req, o))) ?? this.ok(req);
  }

  private opMkdir(req: Req): XsErrorName | undefined {
    const path = this.nodePath(req, oneArg(req.msg.payload));
    if (path === undefined) return "EINVAL";
    return this.update(req, (s, o) => s.mkdir(path, this.ctx(req, o))) ?? this.ok(req);
  }

  private opRm(req: Req): XsErrorName | undefined {
    const path = this.nodePath(req, oneArg(req.msg.payload));
    if (path === undefined) return "EINVAL";
    return this.update(req, (s, o) => s.rm(path, this.ctx(req, o))) ?? this.ok(req);
  }

  private opSetPerms(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length < 2) return "EINVAL";
    const tooMany = permCountError(this.quota, req.acc, strings.length - 1);
    if (tooMany !== undefined) return tooMany;
    const perms = parsePerms(strings.slice(1));
    if (perms === undefined) return "EINVAL";
    const raw = strings[0] as string;
    if (raw.startsWith("@")) {
      if (!isSpecialPath(raw)) return "EINVAL";
      if (!hasAccess(req.acc, this.specialPerms.get(raw) as NodePerms, XS_PERM.WRITE | XS_PERM.OWNER)) return "EACCES";
      this.specialPerms.set(raw, perms);
      return this.ok(req);
    }
    const path = this.nodePath(req, raw);
    if (path === undefined) return "EINVAL";
    return this.update(req, (s, o) => s.setPerms(path, perms, this.ctx(req, o))) ?? this.ok(req);
  }

  // ---- watches ----

  private opWatch(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length !== 2) return "EINVAL";
    const r = addWatch(req.conn.watches, strings[0] as string, strings[1] as string, req.acc, this.quota);
    if (!r.ok) return r.error;
    this.ok(req);
    // Fired once up front, after the reply (do_watch).
    this.sendEvent(req.conn, eventPath(r.watch, r.watch.path, domainPath(req.conn.domid)), r.watch.token);
    return undefined;
  }

  private opUnwatch(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length !== 2) return "EINVAL";
    return removeWatch(req.conn.watches, strings[0] as string, strings[1] as string, req.conn.domid) ? this.ok(req) : "ENOENT";
  }

  private opResetWatches(req: Req): XsErrorName | undefined {
    req.conn.watches.clear();
    req.conn.transactions.clear();
    return this.ok(req);
  }

  // ---- transactions ----

  private opTransactionStart(req: Req): XsErrorName | undefined {
    if (req.tx !== undefined) return "EBUSY";
    const over = quotaError(this.quota, "maxTransactions", req.acc, req.conn.transactions.size);
    if (over !== undefined) return over;
    const tx = req.conn.transactions.start(this.live, req.acc.privileged ? undefined : this.quota.maxTransactionNodes);
    return this.ok(req, joinStrings([String(tx.id)]));
  }

  private opTransactionEnd(req: Req): XsErrorName | undefined {
    const arg = oneArg(req.msg.payload);
    if (arg !== "T" && arg !== "F") return "EINVAL";
    if (req.tx === undefined) return "ENOENT";
    req.conn.transactions.end(req.tx.id);
    if (arg === "T") {
      const r = req.tx.commit(this.live);
      if (!r.ok) return r.error;
      this.live = r.store;
      this.fire(r.changes);
    }
    return this.ok(req);
  }

  // ---- domains ----

  private opIntroduce(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length < 3) return "EINVAL";
    const domid = parseUint(strings[0], DOMID_FIRST_RESERVED - 1);
    const mfn = parseInteger(strings[1]);
    const port = parseUint(strings[2], 0xffffffff);
    if (domid === undefined || domid === 0 || mfn === undefined || port === undefined || port === 0) return "EINVAL";
    try {
      this.hooks.introduce?.(domid, mfn, port);
    } catch (e) {
      this.log(`xenstored: introducing domain ${domid} failed: ${(e as Error).message}`);
      return "EIO";
    }
    const known = this.domains.get(domid);
    if (known === undefined) {
      this.domains.set(domid, { mfn, port });
      this.fireSpecial(SPECIAL_PATHS.introduceDomain);
    } else {
      known.mfn = mfn;
      known.port = port;
      for (const c of this.conns) {
        if (c.domid !== domid) continue;
        c.watches.clear();
        c.transactions.clear();
      }
    }
    return this.ok(req);
  }

  private opRelease(req: Req): XsErrorName | undefined {
    const domid = parseUint(oneArg(req.msg.payload), DOMID_FIRST_RESERVED - 1);
    if (domid === undefined || domid === 0) return "EINVAL";
    if (!this.domains.has(domid)) return "ENOENT";
    this.domains.delete(domid);
    for (const c of [...this.conns]) if (c.domid === domid) this.closeConnection(c, "released");
    const r = this.live.rm(domainPath(domid), { acc: { domid: 0, privileged: true }, quota: this.quota });
    if (r.ok) {
      this.live = r.store;
      this.fire(r.changes);
    }
    this.fireSpecial(SPECIAL_PATHS.releaseDomain);
    try {
      this.hooks.release?.(domid);
    } catch (e) {
      this.log(`xenstored: release hook for domain ${domid} failed: ${(e as Error).message}`);
    }
    return this.ok(req);
  }

  private opResume(req: Req): XsErrorName | undefined {
    const domid = parseUint(oneArg(req.msg.payload), DOMID_FIRST_RESERVED - 1);
    if (domid === undefined || domid === 0) return "EINVAL";
    return this.domains.has(domid) ? this.ok(req) : "ENOENT";
  }

  private opSetTarget(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    if (strings.length < 2) return "EINVAL";
    const domid = parseUint(strings[0], DOMID_FIRST_RESERVED - 1);
    const target = parseUint(strings[1], DOMID_FIRST_RESERVED - 1);
    if (domid === undefined || target === undefined) return "EINVAL";
    const rec = this.domains.get(domid);
    if (rec === undefined || !this.domains.has(target)) return "ENOENT";
    rec.target = target;
    return this.ok(req);
  }

  private opGetDomainPath(req: Req): XsErrorName | undefined {
    const domid = parseUint(oneArg(req.msg.payload), 0xffff);
    return domid === undefined ? "EINVAL" : this.ok(req, joinStrings([domainPath(domid)]));
  }

  private opIsDomainIntroduced(req: Req): XsErrorName | undefined {
    const domid = parseUint(oneArg(req.msg.payload), 0xffff);
    if (domid === undefined) return "EINVAL";
    return this.ok(req, joinStrings([domid === DOMID_SELF || this.domains.has(domid) ? "T" : "F"]));
  }

  // ---- CONTROL ----

  private static readonly CONTROL_HELP: readonly (readonly [string, string])[] = [
    ["check", ""],
    ["log", "on|off"],
    ["print", "<string>"],
    ["quota", "[<domid>]"],
    ["help", ""],
  ];

  private opControl(req: Req): XsErrorName | undefined {
    const { strings } = splitStrings(req.msg.payload);
    const [cmd, ...args] = strings;
    switch (cmd) {
      case "check": {
        if (args.length !== 0) return "EINVAL";
        const { problems, store } = this.live.check();
        for (const p of problems) this.log(`xenstored: check: ${p}`);
        this.live = store;
        return this.ok(req);
      }
      case "log":
        if (args.length !== 1 || (args[0] !== "on" && args[0] !== "off")) return "EINVAL";
        this.tracing = args[0] === "on";
        return this.ok(req);
      case "print":
        if (args.length !== 1) return "EINVAL";
        this.log(`control: ${args[0] as string}`);
        return this.ok(req);
      case "quota":
        return this.controlQuota(req, args);
      case "help":
        if (args.length !== 0) return "EINVAL";
        // Xen's help text has no terminating NUL.
        return this.ok(req, binaryToBytes(Xenstored.CONTROL_HELP.map(([c, p]) => `${c}\t${p}\n`).join("")));
      default:
        return "EINVAL";
    }
  }

  private controlQuota(req: Req, args: readonly string[]): XsErrorName | undefined {
    const line = (name: string, v: number): string => `${name.padEnd(16)}: ${String(v).padStart(8)}\n`;
    if (args.length === 0) {
      const q = this.quota;
      const text =
        "Quota settings:\n" +
        line("nodes", q.maxNodesPerDomain) +
        line("entry-size", q.maxEntrySize) +
        line("watches", q.maxWatches) +
        line("transactions", q.maxTransactions) +
        line("permissions", q.maxPermsPerNode) +
        line("transaction-nodes", q.maxTransactionNodes) +
        line("path-length", q.maxPathLength);
      return this.ok(req, joinStrings([text]));
    }
    if (args.length !== 1) return "EINVAL";
    const domid = parseUint(args[0], DOMID_FIRST_RESERVED - 1);
    if (domid === undefined) return "EINVAL";
    const conns = [...this.conns].filter((c) => c.domid === domid);
    if (!this.domains.has(domid) && conns.length === 0) return "ENOENT";
    const watches = conns.reduce((n, c) => n + c.watches.size, 0);
    const txs = conns.reduce((n, c) => n + c.transactions.size, 0);
    const text = `Domain ${domid}:\n` + line("nodes", this.live.nodesOwnedBy(domid)) + line("watches", watches) + line("transactions", txs);
    return this.ok(req, joinStrings([text]));
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
