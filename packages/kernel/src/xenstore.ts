/**
 * The XenStore client: `xs_wire` requests over any byte transport.
 *
 * ## The wire protocol (`io/xs_wire.h`, `docs/misc/xenstore.txt`)
 *
 * Every message in either direction is a 16-byte little-endian header
 * ({@link xsd_sockmsg}: `type`, `req_id`, `tx_id`, `len`) followed by `len`
 * bytes of payload, at most `XENSTORE_PAYLOAD_MAX` (4096). The daemon answers
 * each request with a reply of the same `type`, `req_id` and `tx_id`, or with
 * `XS_ERROR` whose payload is an errno name and a NUL (`"ENOENT\0"`). Watch
 * events arrive unasked as `XS_WATCH_EVENT` (`req_id` 0) with payload
 * `path\0token\0`, possibly between a request and its reply.
 *
 * Request and reply payloads, `|` standing for a NUL:
 *
 * | request               | payload sent                   | reply payload             |
 * |-----------------------|--------------------------------|---------------------------|
 * | `READ`                | `path\|`                       | the value, raw, no NUL    |
 * | `WRITE`               | `path\|value` (no NUL at end)  | `OK\|`                    |
 * | `MKDIR`, `RM`         | `path\|`                       | `OK\|`                    |
 * | `DIRECTORY`           | `path\|`                       | `child\|`* (leaf names)   |
 * | `DIRECTORY_PART`      | `path\|offset\|`               | `gencnt\|child\|`* …      |
 * | `GET_PERMS`           | `path\|`                       | `perm\|`+                 |
 * | `SET_PERMS`           | `path\|perm\|`+                | `OK\|`                    |
 * | `WATCH`, `UNWATCH`    | `path\|token\|`                | `OK\|`                    |
 * | `TRANSACTION_START`   | `\|`                           | `txid\|` (decimal)        |
 * | `TRANSACTION_END`     | `T\|` (commit) or `F\|` (abort) | `OK\|`, or `EAGAIN`      |
 * | `INTRODUCE`           | `domid\|mfn\|port\|`           | `OK\|`                    |
 * | `RELEASE`             | `domid\|`                      | `OK\|`                    |
 * | `GET_DOMAIN_PATH`     | `domid\|`                      | `path\|`                  |
 * | `IS_DOMAIN_INTRODUCED`| `domid\|`                      | `T\|` or `F\|`            |
 * | `RESET_WATCHES`       | `\|`                           | `OK\|`                    |
 *
 * A permission string is an access letter and a domid: `n` none, `r` read,
 * `w` write, `b` both. The first entry names the node's owner, and its letter
 * is the access of every domain not listed after it.
 *
 * A path not starting with `/` is relative to the connection's domain home,
 * `/local/domain/<domid>`; watch events on a relative watch are relative too.
 *
 * ## This client
 *
 * {@link XsClient} gives every request a fresh `req_id` and matches replies
 * by it, so any number of requests may be in flight; it reassembles messages
 * from whatever chunks the transport delivers. Operations return fp-ts
 * `TaskEither`s (lazy: nothing is sent until the task runs) failing with an
 * {@link XsError} named after the daemon's errno name, in the shape of the
 * kernel's {@link XenError}.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { XENSTORE, XS, XSD_ERRORS, keyOf, type XsErrorName, xsd_sockmsg, type XsMessage } from "@pvkit/abi";
import type { XenError } from "./hypercall.js";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------


/**
 * A XenStore request that failed: the daemon's `XS_ERROR`, or a failure on
 * this side (`EIO` for a closed or broken connection, `E2BIG` for a request
 * longer than `XENSTORE_PAYLOAD_MAX`), in the shape of {@link XenError}.
 */
export interface XsError extends XenError {
  /** The request type, e.g. `"XS_READ"`. */
  readonly op: string;
  /** The error's name. */
  readonly name: XsErrorName;
  /** `-errno`, with the errno of `name` from {@link XSD_ERRORS}. */
  readonly code: number;
  /** The path the request was about, when it had one. */
  readonly path?: string;
  /** `"<op> <path>: <name>"`, plus any detail. */
  readonly message: string;
}

const ERRNO = new Map<string, number>(XSD_ERRORS.map((e) => [e.errstring, e.errnum]));

/**
 * Makes an {@link XsError}. An unknown `name` becomes `EINVAL`, as `xs.c`'s
 * `get_error` does, and the name received goes into the message.
 */
export function xsError(op: string, name: string, path?: string, detail?: string): XsError {
  const known = ERRNO.has(name);
  const n = (known ? name : "EINVAL") as XsErrorName;
  const extra = [known ? undefined : `unknown error "${name}"`, detail].filter((s) => s !== undefined).join("; ");
  const message = `${op}${path !== undefined ? ` ${path}` : ""}: ${n}${extra !== "" ? ` (${extra})` : ""}`;
  return path !== undefined ? { op, name: n, code: -(ERRNO.get(n) ?? 22), path, message } : { op, name: n, code: -(ERRNO.get(n) ?? 22), message };
}

/** True if `e` is an {@link XsError} (named `name`, when given). */
export function isXsError(e: unknown, name?: XsErrorName): e is XsError {
  if (typeof e !== "object" || e === null) return false;
  const x = e as Partial<XsError>;
  return typeof x.op === "string" && typeof x.name === "string" && ERRNO.has(x.name) && typeof x.code === "number" && (name === undefined || x.name === name);
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/** Bytes in a `struct xsd_sockmsg` header. */
export const XS_HEADER_SIZE = xsd_sockmsg.size;

/** Encodes a message: the little-endian header, then the payload. */
export function encodeXsMessage(m: XsMessage): Uint8Array {
  const out = new Uint8Array(XS_HEADER_SIZE + m.payload.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, m.type >>> 0, true);
  v.setUint32(4, m.reqId >>> 0, true);
  v.setUint32(8, m.txId >>> 0, true);
  v.setUint32(12, m.payload.byteLength, true);
  out.set(m.payload, XS_HEADER_SIZE);
  return out;
}

/** Thrown by {@link XsDecoder.push} when a header announces more than `XENSTORE_PAYLOAD_MAX` bytes. */
export class XsFramingError extends Error {
  /** @param message what was wrong */
  constructor(message: string) {
    super(message);
    this.name = "XsFramingError";
  }
}

/**
 * Reassembles messages from a byte stream cut anywhere: push chunks as they
 * come, get every message they complete. A length over
 * `XENSTORE_PAYLOAD_MAX` is a protocol violation (the stream cannot be
 * resynchronised) and throws {@link XsFramingError}.
 */
export class XsDecoder {
  private buf = new Uint8Array(256);
  private have = 0;

  /** Appends `chunk`; returns the messages now complete, in order. */
  push(chunk: Uint8Array): XsMessage[] {
    if (this.have + chunk.byteLength > this.buf.byteLength) {
      let size = this.buf.byteLength;
      while (size < this.have + chunk.byteLength) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.have));
      this.buf = grown;
    }
    this.buf.set(chunk, this.have);
    this.have += chunk.byteLength;

    const out: XsMessage[] = [];
    let at = 0;
    while (this.have - at >= XS_HEADER_SIZE) {
      const v = new DataView(this.buf.buffer, this.buf.byteOffset + at, XS_HEADER_SIZE);
      const len = v.getUint32(12, true);
      if (len > XENSTORE.PAYLOAD_MAX) throw new XsFramingError(`message of ${len} bytes exceeds XENSTORE_PAYLOAD_MAX (${XENSTORE.PAYLOAD_MAX})`);
      if (this.have - at < XS_HEADER_SIZE + len) break;
      out.push({
        type: v.getUint32(0, true),
        reqId: v.getUint32(4, true),
        txId: v.getUint32(8, true),
        payload: this.buf.slice(at + XS_HEADER_SIZE, at + XS_HEADER_SIZE + len),
      });
      at += XS_HEADER_SIZE + len;
    }
    if (at > 0) {
      this.buf.copyWithin(0, at, this.have);
      this.have -= at;
    }
    return out;
  }

  /** Bytes received that do not yet make a whole message. */
  get buffered(): number {
    return this.have;
  }
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Joins strings as `s1\0s2\0…`: each followed by a NUL. */
export function nulTerminated(...parts: readonly string[]): Uint8Array {
  return utf8.encode(parts.map((p) => `${p}\0`).join(""));
}

/** Splits `a\0b\0` into `["a", "b"]` (a final unterminated piece counts too). */
export function splitNul(payload: Uint8Array): string[] {
  if (payload.byteLength === 0) return [];
  const parts = fromUtf8.decode(payload).split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** The first NUL-terminated string of `payload` (all of it if there is no NUL). */
function firstString(payload: Uint8Array): string {
  const end = payload.indexOf(0);
  return fromUtf8.decode(end < 0 ? payload : payload.subarray(0, end));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

// ---------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------

/** Access in a permission entry: `n` none, `r` read, `w` write, `b` both. */
export type XsAccess = "n" | "r" | "w" | "b";

/** One permission entry: `domid` gets `access`. */
export interface XsPermEntry {
  /** The domain. */
  readonly domid: number;
  /** What it may do. */
  readonly access: XsAccess;
}

/**
 * A node's permissions as `GET_PERMS` returns them and `SET_PERMS` takes
 * them: the owner (who may always read, write and set permissions), the
 * access of every domain not listed, and the listed domains.
 */
export interface XsPerms {
  /** The owning domain: the first entry's domid. */
  readonly owner: number;
  /** Access of every domain not in `entries`: the first entry's letter. */
  readonly others: XsAccess;
  /** Further entries, in order. */
  readonly entries: readonly XsPermEntry[];
}

/** Formats one entry as the wire does: `"r1"`. */
export function formatPerm(e: XsPermEntry): string {
  return `${e.access}${e.domid}`;
}

/** Parses `"b0"` into an entry, or undefined if it is not one. */
export function parsePerm(s: string): XsPermEntry | undefined {
  const m = /^([nrwb])(\d+)$/.exec(s);
  if (m === null) return undefined;
  const domid = Number(m[2]);
  return domid <= 0xffff ? { access: m[1] as XsAccess, domid } : undefined;
}

/** The wire strings of `perms`: the owner entry first. */
export function formatPerms(perms: XsPerms): string[] {
  return [formatPerm({ domid: perms.owner, access: perms.others }), ...perms.entries.map(formatPerm)];
}

/** Parses `GET_PERMS` strings; undefined if any is malformed or there are none. */
export function parsePerms(strings: readonly string[]): XsPerms | undefined {
  const entries = strings.map(parsePerm);
  const [first, ...rest] = entries;
  if (first === undefined || rest.some((e) => e === undefined)) return undefined;
  return { owner: first.domid, others: first.access, entries: rest as XsPermEntry[] };
}

// ---------------------------------------------------------------------------
// Transport and client
// ---------------------------------------------------------------------------

/**
 * Where the client's bytes go and come from: a guest's XenStore ring page,
 * the daemon's Unix socket, or an in-process connection.
 *
 * The client hands `send` whole messages, one call per message, in order; a
 * transport must deliver them in that order (queueing if it cannot write at
 * once). It hands received bytes, cut anywhere, to the `onData` handler.
 */
export interface XsTransport {
  /** Sends the bytes of one message; may resolve once they are on their way. */
  send(bytes: Uint8Array): void | Promise<void>;
  /** Registers the handler of received bytes (one handler; a later call replaces it). */
  onData(handler: (bytes: Uint8Array) => void): void;
  /** Closes the transport. */
  close?(): void;
  /** Registers a handler called once if the transport closes from the other side or fails. */
  onClose?(handler: (reason?: Error) => void): void;
}

/** A transaction, as the requests in it name it: the daemon's `tx_id`. */
export interface XsTx {
  /** The `tx_id` `TRANSACTION_START` returned. */
  readonly id: number;
}

/** A watch event: the path that changed (a child of the watched path) and the watch's token. */
export interface XsWatchEvent {
  /** The changed path (relative if the watch was). */
  readonly path: string;
  /** The token the watch was set with. */
  readonly token: string;
}

/**
 * A registered watch, as an async iterator of its events. Its first event is
 * the one the daemon fires when a watch is set. Leaving a `for await` loop
 * (or calling `return()` or {@link XsWatch.close}) sends `UNWATCH`. If the
 * daemon refused the watch, iterating throws an `Error` carrying the
 * {@link XsError} as `xs`; if the connection closes, iteration ends.
 */
export interface XsWatch extends AsyncIterableIterator<XsWatchEvent> {
  /** The watched path. */
  readonly path: string;
  /** The token events carry. */
  readonly token: string;
  /** Resolves when the daemon has answered `WATCH`: `Right` if the watch is set. */
  readonly registered: Promise<E.Either<XsError, void>>;
  /** Events received and not yet taken. */
  readonly pending: number;
  /** Sends `UNWATCH` (once) and ends the iteration; resolves with the daemon's answer. */
  close(): Promise<E.Either<XsError, void>>;
}

/** Options of {@link XsClient.transaction}. */
export interface XsTransactionOptions {
  /** How many times to run the body again after a conflict (`EAGAIN`) before giving up; default 16. */
  readonly maxRetries?: number;
}

/** The default of {@link XsTransactionOptions.maxRetries}. */
export const XS_DEFAULT_MAX_RETRIES = 16;

interface Pending {
  /** Takes the reply. */
  readonly reply: (m: XsMessage) => void;
  /** Fails the request with `EIO` without a reply (the connection closed, for the reason given). */
  readonly fail: (why: string) => void;
}

/** One watch's state inside the client. */
class WatchState implements XsWatch {
  readonly queue: XsWatchEvent[] = [];
  private readonly waiters: ((r: IteratorResult<XsWatchEvent>) => void)[] = [];
  private readonly failWaiters: ((e: Error) => void)[] = [];
  ended = false;
  failure: XsError | undefined;
  private closing: Promise<E.Either<XsError, void>> | undefined;
  registered: Promise<E.Either<XsError, void>>;

  constructor(
    readonly path: string,
    readonly token: string,
    private readonly unwatch: () => Promise<E.Either<XsError, void>>,
  ) {
    this.registered = Promise.resolve(E.right(undefined));
  }

  get pending(): number {
    return this.queue.length;
  }

  deliver(ev: XsWatchEvent): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    this.failWaiters.shift();
    if (w !== undefined) w({ value: ev, done: false });
    else this.queue.push(ev);
  }

  /** Ends the iteration (the connection closed, or the watch was removed). */
  end(): void {
    this.ended = true;
    this.queue.length = 0;
    this.failWaiters.length = 0;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }

  fail(err: XsError): void {
    this.failure = err;
    this.ended = true;
    this.waiters.length = 0;
    for (const f of this.failWaiters.splice(0)) f(watchFailure(err));
  }

  next(): Promise<IteratorResult<XsWatchEvent>> {
    const ev = this.queue.shift();
    if (ev !== undefined) return Promise.resolve({ value: ev, done: false });
    if (this.failure !== undefined) return Promise.reject(watchFailure(this.failure));
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      this.failWaiters.push(reject);
    });
  }

  async return(): Promise<IteratorResult<XsWatchEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  close(): Promise<E.Either<XsError, void>> {
    if (this.closing === undefined) {
      this.end();
      this.closing = this.failure !== undefined ? Promise.resolve(E.right(undefined)) : this.unwatch();
    }
    return this.closing;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

function watchFailure(err: XsError): Error {
  return Object.assign(new Error(err.message), { xs: err });
}

/**
 * A XenStore client over an {@link XsTransport}.
 *
 * ```ts
 * const xs = new XsClient(transport);
 * const name = await xs.read("name")();            // Either<XsError, string>
 * for await (const ev of xs.watch("device")) { … } // break to unwatch
 * ```
 */
export class XsClient {
  private readonly decoder = new XsDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, WatchState>();
  private nextReqId = 1;
  private nextToken = 1;
  private closedWith: XsError | undefined;

  /** Speaks over `transport`, taking over its `onData` (and `onClose`) handler. */
  constructor(private readonly transport: XsTransport) {
    transport.onData((bytes) => this.receive(bytes));
    transport.onClose?.((reason) => this.shutdown(reason?.message ?? "connection closed by the daemon"));
  }

  /** True once the connection closed (by {@link XsClient.close}, the transport, or a protocol error). */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Paths and tokens of the watches set and not removed. */
  activeWatches(): { readonly path: string; readonly token: string }[] {
    return [...this.watches.values()].map((w) => ({ path: w.path, token: w.token }));
  }

  /** Closes the connection: requests in flight fail with `EIO`, watch iterations end. */
  close(): void {
    if (this.closedWith !== undefined) return;
    this.shutdown("connection closed");
    this.transport.close?.();
  }

  private shutdown(why: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = xsError("connection", "EIO", undefined, why);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.fail(why);
    for (const w of this.watches.values()) w.end();
    this.watches.clear();
  }

  /** Bytes from the transport. */
  private receive(bytes: Uint8Array): void {
    if (this.closedWith !== undefined) return;
    let msgs: XsMessage[];
    try {
      msgs = this.decoder.push(bytes);
    } catch (e) {
      if (!(e instanceof XsFramingError)) throw e;
      this.shutdown(e.message);
      this.transport.close?.();
      return;
    }
    for (const m of msgs) this.dispatch(m);
  }

  private dispatch(m: XsMessage): void {
    if (m.type === XS.WATCH_EVENT) {
      const [path, token] = splitNul(m.payload);
      if (path === undefined || token === undefined) return; // malformed: nothing to deliver
      this.watches.get(token)?.deliver({ path, token });
      return;
    }
    const p = this.pending.get(m.reqId);
    if (p === undefined) return; // a reply to nothing we asked: ignore
    this.pending.delete(m.reqId);
    p.reply(m);
  }

  private allocReqId(): number {
    for (;;) {
      const id = this.nextReqId;
      this.nextReqId = this.nextReqId >= 0xffff_ffff ? 1 : this.nextReqId + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  /**
   * Sends one request and resolves with its reply payload, or the
   * {@link XsError} of an `XS_ERROR` reply, a reply of another type, an
   * oversize payload or a closed connection. The building block of every
   * operation; `path` only names the request in errors.
   */
  request(type: number, payload: Uint8Array, tx?: XsTx, path?: string): TE.TaskEither<XsError, Uint8Array> {
    const op = `XS_${keyOf(XS, type) ?? type}`;
    return () => {
      if (this.closedWith !== undefined) return Promise.resolve(E.left(xsError(op, "EIO", path, "connection closed")));
      if (payload.byteLength > XENSTORE.PAYLOAD_MAX) return Promise.resolve(E.left(xsError(op, "E2BIG", path, `payload of ${payload.byteLength} bytes`)));
      const reqId = this.allocReqId();
      return new Promise<E.Either<XsError, Uint8Array>>((resolve) => {
        this.pending.set(reqId, {
          fail: (why) => resolve(E.left(xsError(op, "EIO", path, why))),
          reply: (m) => {
            if (m.type === XS.ERROR) resolve(E.left(xsError(op, firstString(m.payload), path)));
            else if (m.type !== type) resolve(E.left(xsError(op, "EIO", path, `reply of type ${keyOf(XS, m.type) ?? m.type}`)));
            else resolve(E.right(m.payload));
          },
        });
        const failSend = (e: unknown) => {
          if (this.pending.delete(reqId)) resolve(E.left(xsError(op, "EIO", path, `send failed: ${e instanceof Error ? e.message : String(e)}`)));
        };
        try {
          const sent = this.transport.send(encodeXsMessage({ type, reqId, txId: tx?.id ?? 0, payload }));
          if (sent instanceof Promise) sent.catch(failSend);
        } catch (e) {
          failSend(e);
        }
      });
    };
  }

  private ok(type: number, payload: Uint8Array, tx?: XsTx, path?: string): TE.TaskEither<XsError, void> {
    return TE.map(() => undefined)(this.request(type, payload, tx, path));
  }

  /** The value at `path` as raw bytes (`XS_READ`). */
  readBytes(path: string, tx?: XsTx): TE.TaskEither<XsError, Uint8Array> {
    return this.request(XS.READ, nulTerminated(path), tx, path);
  }

  /** The value at `path` as UTF-8 text (`XS_READ`). */
  read(path: string, tx?: XsTx): TE.TaskEither<XsError, string> {
    return TE.map((b: Uint8Array) => fromUtf8.decode(b))(this.readBytes(path, tx));
  }

  /** Writes `value` (text as UTF-8, or raw bytes) at `path`, creating missing parents (`XS_WRITE`). */
  write(path: string, value: string | Uint8Array, tx?: XsTx): TE.TaskEither<XsError, void> {
    const bytes = typeof value === "string" ? utf8.encode(value) : value;
    return this.ok(XS.WRITE, concat(nulTerminated(path), bytes), tx, path);
  }

  /** Makes sure `path` and its parents exist, leaving existing values alone (`XS_MKDIR`). */
  mkdir(path: string, tx?: XsTx): TE.TaskEither<XsError, void> {
    return this.ok(XS.MKDIR, nulTerminated(path), tx, path);
  }

  /** Removes `path` and everything under it; not an error if it is already gone (`XS_RM`). */
  rm(path: string, tx?: XsTx): TE.TaskEither<XsError, void> {
    return this.ok(XS.RM, nulTerminated(path), tx, path);
  }

  /**
   * The leaf names of `path`'s children (`XS_DIRECTORY`). A list too long
   * for one reply (`E2BIG`) is fetched in parts with `XS_DIRECTORY_PART`,
   * restarting if the node's generation count changes in between, as `xs.c`
   * does.
   */
  directory(path: string, tx?: XsTx): TE.TaskEither<XsError, string[]> {
    return async () => {
      const whole = await this.request(XS.DIRECTORY, nulTerminated(path), tx, path)();
      if (E.isRight(whole)) return E.right(splitNul(whole.right));
      if (whole.left.name !== "E2BIG") return whole;
      return this.directoryParts(path, tx);
    };
  }

  private async directoryParts(path: string, tx: XsTx | undefined): Promise<E.Either<XsError, string[]>> {
    let gen: string | undefined;
    let strings: Uint8Array = new Uint8Array(0);
    for (let restarts = 0; restarts < 64; ) {
      const reply = await this.request(XS.DIRECTORY_PART, nulTerminated(path, String(strings.byteLength)), tx, path)();
      if (E.isLeft(reply)) return reply.left.name === "ENOSYS" ? E.left(xsError("XS_DIRECTORY", "E2BIG", path)) : reply;
      const body = reply.right;
      const nul = body.indexOf(0);
      if (nul < 0) return E.left(xsError("XS_DIRECTORY_PART", "EIO", path, "reply without a generation count"));
      const g = fromUtf8.decode(body.subarray(0, nul));
      if (gen !== undefined && g !== gen) {
        gen = undefined; // changed under us: start again
        strings = new Uint8Array(0);
        restarts++;
        continue;
      }
      gen = g;
      strings = concat(strings, body.subarray(nul + 1));
      // The last part ends with an empty string: a double NUL (or nothing at all).
      const n = strings.byteLength;
      if (n <= 1 || strings[n - 2] === 0) return E.right(splitNul(strings.subarray(0, n <= 1 ? 0 : n - 1)));
      if (body.byteLength === nul + 1) return E.left(xsError("XS_DIRECTORY_PART", "EIO", path, "empty part before the end of the list"));
    }
    return E.left(xsError("XS_DIRECTORY_PART", "EAGAIN", path, "directory kept changing"));
  }

  /** The permissions of `path` (`XS_GET_PERMS`). */
  getPerms(path: string, tx?: XsTx): TE.TaskEither<XsError, XsPerms> {
    return TE.chain((b: Uint8Array) => {
      const perms = parsePerms(splitNul(b));
      return perms !== undefined ? TE.right(perms) : TE.left(xsError("XS_GET_PERMS", "EIO", path, `malformed permissions "${fromUtf8.decode(b)}"`));
    })(this.request(XS.GET_PERMS, nulTerminated(path), tx, path));
  }

  /** Sets the permissions of `path` (`XS_SET_PERMS`); only its owner (or a privileged domain) may. */
  setPerms(path: string, perms: XsPerms, tx?: XsTx): TE.TaskEither<XsError, void> {
    return this.ok(XS.SET_PERMS, nulTerminated(path, ...formatPerms(perms)), tx, path);
  }

  /** The home directory of `domid`, `/local/domain/<domid>` (`XS_GET_DOMAIN_PATH`). */
  getDomainPath(domid: number): TE.TaskEither<XsError, string> {
    return TE.map(firstString)(this.request(XS.GET_DOMAIN_PATH, nulTerminated(String(domid))));
  }

  /**
   * Tells the daemon to serve `domid` through its ring page at machine frame
   * `mfn` and its unbound store event channel `port` (`XS_INTRODUCE`;
   * dom0 only).
   */
  introduce(domid: number, mfn: number, port: number): TE.TaskEither<XsError, void> {
    return this.ok(XS.INTRODUCE, nulTerminated(String(domid), String(mfn), String(port)));
  }

  /** Tells the daemon to stop serving `domid`, firing `@releaseDomain` (`XS_RELEASE`; dom0 only). */
  release(domid: number): TE.TaskEither<XsError, void> {
    return this.ok(XS.RELEASE, nulTerminated(String(domid)));
  }

  /** Whether the daemon serves `domid` (`XS_IS_DOMAIN_INTRODUCED`; dom0 only). */
  isDomainIntroduced(domid: number): TE.TaskEither<XsError, boolean> {
    return TE.chain((b: Uint8Array) => {
      const s = firstString(b);
      return s === "T" || s === "F" ? TE.right(s === "T") : TE.left(xsError("XS_IS_DOMAIN_INTRODUCED", "EIO", undefined, `reply "${s}"`));
    })(this.request(XS.IS_DOMAIN_INTRODUCED, nulTerminated(String(domid))));
  }

  /**
   * Removes every watch and transaction of this connection on the daemon's
   * side (`XS_RESET_WATCHES`); the local watch iterators end.
   */
  resetWatches(): TE.TaskEither<XsError, void> {
    return TE.map(() => {
      for (const w of this.watches.values()) w.end();
      this.watches.clear();
    })(this.request(XS.RESET_WATCHES, nulTerminated("")));
  }

  /**
   * Sets a watch on `path` and everything under it (`XS_WATCH`), sent at
   * once; see {@link XsWatch}. Special paths `@introduceDomain` and
   * `@releaseDomain` watch the daemon's domain events. `token` defaults to
   * a fresh one; a token this client already uses fails the watch with
   * `EEXIST` (events are told apart by token).
   */
  watch(path: string, token?: string): XsWatch {
    const tok = token ?? `pvkit-w${this.nextToken++}`;
    const w = new WatchState(path, tok, () => this.unwatch(path, tok)());
    if (this.watches.has(tok)) {
      const err = xsError("XS_WATCH", "EEXIST", path, `token "${tok}" is in use`);
      w.fail(err);
      w.registered = Promise.resolve(E.left(err));
      return w;
    }
    this.watches.set(tok, w);
    w.registered = this.ok(XS.WATCH, nulTerminated(path, tok), undefined, path)().then((r) => {
      if (E.isLeft(r)) {
        if (this.watches.get(tok) === w) this.watches.delete(tok);
        w.fail(r.left);
      }
      return r;
    });
    return w;
  }

  /** Removes the watch of `path` with `token` (`XS_UNWATCH`); its iterator, if any, ends. */
  unwatch(path: string, token: string): TE.TaskEither<XsError, void> {
    const send = this.ok(XS.UNWATCH, nulTerminated(path, token), undefined, path);
    return () => {
      const w = this.watches.get(token);
      if (w !== undefined && w.path === path) {
        this.watches.delete(token);
        w.end();
      }
      return send();
    };
  }

  /** Starts a transaction (`XS_TRANSACTION_START`). */
  transactionStart(): TE.TaskEither<XsError, XsTx> {
    return TE.chain((b: Uint8Array) => {
      const s = firstString(b);
      return /^\d+$/.test(s) && Number(s) <= 0xffff_ffff ? TE.right({ id: Number(s) }) : TE.left(xsError("XS_TRANSACTION_START", "EIO", undefined, `transaction id "${s}"`));
    })(this.request(XS.TRANSACTION_START, nulTerminated("")));
  }

  /** Commits (`commit`) or aborts a transaction (`XS_TRANSACTION_END`); a conflicting commit fails with `EAGAIN`. */
  transactionEnd(tx: XsTx, commit: boolean): TE.TaskEither<XsError, void> {
    return this.ok(XS.TRANSACTION_END, nulTerminated(commit ? "T" : "F"), tx);
  }

  /**
   * Runs `body` in a transaction and commits it. When the commit (or a
   * request in the body) fails with `EAGAIN` — another writer got there
   * first — the whole body runs again in a new transaction, up to
   * `maxRetries` more times; after that the `EAGAIN` is returned. When the
   * body fails (or throws) the transaction is aborted and its error returned
   * (or rethrown).
   *
   * ```ts
   * xs.transaction((tx) => pipe(xs.read("a", tx), TE.chain((a) => xs.write("b", a, tx))));
   * ```
   */
  transaction<A, Err = XsError>(body: (tx: XsTx) => TE.TaskEither<Err, A>, options: XsTransactionOptions = {}): TE.TaskEither<Err | XsError, A> {
    const maxRetries = options.maxRetries ?? XS_DEFAULT_MAX_RETRIES;
    return async () => {
      for (let attempt = 0; ; attempt++) {
        const tx = await this.transactionStart()();
        if (E.isLeft(tx)) return tx;
        let result: E.Either<Err, A>;
        try {
          result = await body(tx.right)();
        } catch (e) {
          await this.transactionEnd(tx.right, false)();
          throw e;
        }
        let failure: Err | XsError;
        if (E.isLeft(result)) {
          await this.transactionEnd(tx.right, false)();
          failure = result.left;
        } else {
          const end = await this.transactionEnd(tx.right, true)();
          if (E.isRight(end)) return E.right(result.right);
          failure = end.left;
        }
        if (!isXsError(failure, "EAGAIN") || attempt >= maxRetries) return E.left(failure);
      }
    };
  }
}

export type { XsErrorName };

export type { XsMessage };
