/**
 * Framing of the XenStore wire protocol (`io/xs_wire.h`) over any byte
 * stream, and the payload helpers every request handler uses.
 *
 * ## The protocol
 *
 * Each message, in either direction, is a 16-byte `struct xsd_sockmsg`
 * header (four little-endian `uint32_t`: `type`, `req_id`, `tx_id`, `len`)
 * followed by `len` bytes of payload. `len` is at most
 * `XENSTORE_PAYLOAD_MAX` (4096) in both directions; a client that announces
 * more has its connection dropped by xenstored (`handle_input` in
 * `xenstored_core.c` jumps to `bad_client`), because the stream can no
 * longer be trusted to be in sync. {@link MessageReader} reports that case
 * as an {@link XsProtocolError}; the transport then closes the connection.
 *
 * Payloads are strings each terminated by a NUL (`<path>|<token>|`), except
 * that a `WRITE` carries `<path>|<value|>`: the value is raw bytes that may
 * contain NULs and has no terminator, and a `READ` reply is the raw value.
 * Replies echo the request's `req_id` and `tx_id` and have the request's
 * type, or `XS_ERROR` with the name of an errno from `xsd_errors[]` and a
 * NUL (`"ENOENT\0"`). Watch events are unsolicited `XS_WATCH_EVENT`
 * messages with `req_id` and `tx_id` 0 and payload `<epath>|<token>|`.
 *
 * Strings are handled here as "binary strings": one JavaScript character per
 * byte (ISO-8859-1), so tokens and values survive a round trip unchanged
 * whatever their bytes.
 *
 * @module
 */
import { XENSTORE, XS, XSD_ERRORS, isXsErrorName, type XsErrorName, xsd_sockmsg, type XsMessage } from "@pvkit/abi";

/** Bytes in a `struct xsd_sockmsg` header. */
export const XS_HEADER_SIZE = xsd_sockmsg.size;


/**
 * The stream broke the protocol in a way that loses framing (a header
 * announcing more than `XENSTORE_PAYLOAD_MAX` bytes). The connection must be
 * closed; nothing read after this point can be trusted.
 */
export class XsProtocolError extends Error {
  /**
   * Describes the violation. `messages` are the complete messages that
   * preceded it in the bytes of the failing `feed`: they were well framed
   * and may still be handled before the connection is closed.
   */
  constructor(
    message: string,
    /** Messages completed before the violation by the same `feed`. */
    readonly messages: readonly XsMessage[] = [],
  ) {
    super(message);
    this.name = "XsProtocolError";
  }
}

/**
 * Reassembles messages from a byte stream delivered in arbitrary pieces.
 *
 * `feed` accepts any number of bytes, including a partial header or a
 * partial payload, and returns every message completed by them, in order.
 * A header whose `len` exceeds `XENSTORE_PAYLOAD_MAX` throws
 * {@link XsProtocolError} (carrying the messages completed before it); the
 * reader then stays failed and throws on every later `feed`.
 */
export class MessageReader {
  private readonly header = new Uint8Array(XS_HEADER_SIZE);
  private headerUsed = 0;
  private pending: { type: number; reqId: number; txId: number; payload: Uint8Array } | undefined;
  private payloadUsed = 0;
  private failure: XsProtocolError | undefined;

  /** True once a protocol violation was seen. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** True when a message has been started but not completed. */
  get partial(): boolean {
    return this.headerUsed > 0 || this.pending !== undefined;
  }

  /** Consumes `bytes`; returns the messages they complete. */
  feed(bytes: Uint8Array): XsMessage[] {
    if (this.failure !== undefined) throw this.failure;
    const out: XsMessage[] = [];
    let at = 0;
    while (at < bytes.length) {
      if (this.pending === undefined) {
        const take = Math.min(XS_HEADER_SIZE - this.headerUsed, bytes.length - at);
        this.header.set(bytes.subarray(at, at + take), this.headerUsed);
        this.headerUsed += take;
        at += take;
        if (this.headerUsed < XS_HEADER_SIZE) break;
        const view = new DataView(this.header.buffer);
        const len = view.getUint32(12, true);
        if (len > XENSTORE.PAYLOAD_MAX) {
          const what = `payload length ${len} exceeds XENSTORE_PAYLOAD_MAX (${XENSTORE.PAYLOAD_MAX})`;
          this.failure = new XsProtocolError(what);
          throw new XsProtocolError(what, out);
        }
        this.pending = { type: view.getUint32(0, true), reqId: view.getUint32(4, true), txId: view.getUint32(8, true), payload: new Uint8Array(len) };
        this.headerUsed = 0;
        this.payloadUsed = 0;
      }
      const msg = this.pending;
      const take = Math.min(msg.payload.length - this.payloadUsed, bytes.length - at);
      msg.payload.set(bytes.subarray(at, at + take), this.payloadUsed);
      this.payloadUsed += take;
      at += take;
      if (this.payloadUsed === msg.payload.length) {
        out.push(msg);
        this.pending = undefined;
      }
    }
    return out;
  }
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`xsd_sockmsg.${name} out of range: ${v}`);
}

/**
 * Encodes a message as its header and payload. Throws `RangeError` if a
 * field does not fit a `uint32_t` or the payload exceeds
 * `XENSTORE_PAYLOAD_MAX`.
 */
export function encodeMessage(m: XsMessage): Uint8Array {
  checkU32("type", m.type);
  checkU32("req_id", m.reqId);
  checkU32("tx_id", m.txId);
  if (m.payload.length > XENSTORE.PAYLOAD_MAX) throw new RangeError(`payload of ${m.payload.length} bytes exceeds XENSTORE_PAYLOAD_MAX`);
  const out = new Uint8Array(XS_HEADER_SIZE + m.payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, m.type, true);
  view.setUint32(4, m.reqId, true);
  view.setUint32(8, m.txId, true);
  view.setUint32(12, m.payload.length, true);
  out.set(m.payload, XS_HEADER_SIZE);
  return out;
}

/** Bytes as a binary string: one character (U+0000..U+00FF) per byte. */
export function bytesToBinary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return s;
}

/**
 * A binary string back to bytes. Characters above U+00FF are not bytes;
 * they throw `RangeError`.
 */
export function binaryToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`character U+${c.toString(16)} at ${i} is not a byte`);
    out[i] = c;
  }
  return out;
}

/**
 * A payload split at its NULs: `strings` are the NUL-terminated strings, in
 * order, and `rest` the bytes after the last NUL (empty when the payload
 * ends with one). `strings.length` is the number of NULs, which is what
 * xenstored's `xs_count_strings` and `get_strings` count.
 */
export interface SplitPayload {
  /** Every NUL-terminated string, as binary strings. */
  readonly strings: readonly string[];
  /** Trailing bytes not terminated by a NUL. */
  readonly rest: Uint8Array;
}

/** Splits a payload at its NULs (see {@link SplitPayload}). */
export function splitStrings(payload: Uint8Array): SplitPayload {
  const strings: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      strings.push(bytesToBinary(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return { strings, rest: payload.subarray(start) };
}

/** Joins strings into a payload, each followed by a NUL: `["a","b"]` → `"a\0b\0"`. */
export function joinStrings(strings: readonly string[]): Uint8Array {
  return binaryToBytes(strings.map((s) => s + "\0").join(""));
}

/**
 * The single argument of a request whose payload must be exactly one string
 * and its NUL (xenstored's `onearg`), or undefined if the payload is empty,
 * lacks the NUL or has anything after it.
 */
export function oneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return undefined;
  return bytesToBinary(payload.subarray(0, payload.length - 1));
}

/** The payload of an `XS_ERROR` reply: the error's name and a NUL. */
export function errorPayload(name: XsErrorName): Uint8Array {
  return joinStrings([name]);
}

/** The `XS_ERROR` reply to `req` carrying `name`. */
export function errorReply(req: Pick<XsMessage, "reqId" | "txId">, name: XsErrorName): XsMessage {
  return { type: XS.ERROR, reqId: req.reqId, txId: req.txId, payload: errorPayload(name) };
}

/** The success reply to `req`: its own type with `payload`. */
export function reply(req: Pick<XsMessage, "type" | "reqId" | "txId">, payload: Uint8Array): XsMessage {
  return { type: req.type, reqId: req.reqId, txId: req.txId, payload };
}

/** The payload `"OK\0"` of requests that need no other answer. */
export const OK_PAYLOAD: Uint8Array = joinStrings(["OK"]);

/** An `XS_WATCH_EVENT` for `path` and `token` (`req_id` and `tx_id` 0). */
export function watchEvent(path: string, token: string): XsMessage {
  return { type: XS.WATCH_EVENT, reqId: 0, txId: 0, payload: joinStrings([path, token]) };
}

/** The name of a message type for logs: `"WRITE"`, or the number if unknown. */
export function messageTypeName(type: number): string {
  if (type === XS.TYPE_COUNT || type === XS.INVALID) return String(type);
  for (const [k, v] of Object.entries(XS)) if (v === type) return k;
  return String(type);
}

export { isXsErrorName, type XsErrorName };

export type { XsMessage };
