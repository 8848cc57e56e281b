/**
 * `io/xs_wire.h`: the XenStore wire protocol.
 *
 * Every message, in either direction and on either transport (a domain's ring
 * page or the daemon's Unix socket), is a 16-byte `xsd_sockmsg` header
 * followed by `len` bytes of payload, at most `XENSTORE_PAYLOAD_MAX`. Payloads
 * are NUL-separated strings; most requests end with a NUL, a `WRITE` carries
 * the path, a NUL and the raw value. The daemon echoes `req_id` and `tx_id`
 * in its reply, which has the request's type, or `XS_ERROR` with an error name
 * from {@link XSD_ERRORS} (e.g. `"ENOENT\0"`). Watch events arrive unasked as
 * `XS_WATCH_EVENT` with payload `path\0token\0`.
 *
 * The ring page ({@link xenstore_domain_interface}) holds two 1024-byte byte
 * rings: `req` (guest → daemon) and `rsp` (daemon → guest), each with free
 * running indexes masked by `XENSTORE_RING_SIZE - 1`.
 *
 * @module
 */
import { constants } from "../constants.js";
import { bytes, struct, u32 } from "../layout.js";

/** Message types (`enum xsd_sockmsg_type`, `XS_*`). */
export const XS = constants("io/xs_wire.h", "XS_", {
  CONTROL: 0,
  /** Alias of CONTROL. */
  DEBUG: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  /** Number of valid types. */
  TYPE_COUNT: 23,
  /** Guaranteed never to be a valid type. */
  INVALID: 0xffff,
});

/** Indexes of the strings in an `XS_WATCH_EVENT` payload (`enum xs_watch_type`). */
export const XS_WATCH = constants("io/xs_wire.h", "XS_WATCH_", {
  PATH: 0,
  TOKEN: 1,
});

/** Sizes and the ring page's feature, connection and error values (`XENSTORE_*`). */
export const XENSTORE = constants("io/xs_wire.h", "XENSTORE_", {
  /** Bytes in each of the ring page's two byte rings. */
  RING_SIZE: 1024,
  /** Largest payload of one message. */
  PAYLOAD_MAX: 4096,
  /** Longest absolute path. */
  ABS_PATH_MAX: 3072,
  /** Longest relative path. */
  REL_PATH_MAX: 2048,
  /** `server_features`: the daemon supports reconnection via `connection`. */
  SERVER_FEATURE_RECONNECTION: 1,
  /** `server_features`: the daemon reports errors in `error`. */
  SERVER_FEATURE_ERROR: 2,
  /** `connection`: the steady state. */
  CONNECTED: 0,
  /** `connection`: a reconnect is in progress. */
  RECONNECT: 1,
  ERROR_NONE: 0,
  /** `error`: communication problem. */
  ERROR_COMM: 1,
  /** `error`: an index was out of range. */
  ERROR_RINGIDX: 2,
  /** `error`: protocol violation (e.g. a payload too long). */
  ERROR_PROTO: 3,
});

const XSD_ERROR_TABLE: readonly (readonly [XsErrorName, number])[] = [
  ["EINVAL", 22],
  ["EACCES", 13],
  ["EEXIST", 17],
  ["EISDIR", 21],
  ["ENOENT", 2],
  ["ENOMEM", 12],
  ["ENOSPC", 28],
  ["EIO", 5],
  ["ENOTEMPTY", 39],
  ["ENOSYS", 38],
  ["EROFS", 30],
  ["EBUSY", 16],
  ["EAGAIN", 11],
  ["EISCONN", 106],
  ["E2BIG", 7],
  ["EPERM", 1],
];

/** An error name an `XS_ERROR` reply may carry: one of `xsd_errors[]`. */
export type XsErrorName =
  | "EINVAL"
  | "EACCES"
  | "EEXIST"
  | "EISDIR"
  | "ENOENT"
  | "ENOMEM"
  | "ENOSPC"
  | "EIO"
  | "ENOTEMPTY"
  | "ENOSYS"
  | "EROFS"
  | "EBUSY"
  | "EAGAIN"
  | "EISCONN"
  | "E2BIG"
  | "EPERM";

/**
 * The error names an `XS_ERROR` reply may carry, with their errno values, in
 * the order of `xsd_errors[]`. The reply's payload is the name and a NUL.
 */
export const XSD_ERRORS: readonly { readonly errnum: number; readonly errstring: XsErrorName }[] = Object.freeze(
  XSD_ERROR_TABLE.map(([errstring, errnum]) => Object.freeze({ errnum, errstring })),
);

/** Whether `name` is one of the error names of `xsd_errors[]`. */
export function isXsErrorName(name: string): name is XsErrorName {
  return XSD_ERRORS.some((e) => e.errstring === name);
}

/** The header of every XenStore message (`struct xsd_sockmsg`, 16 bytes). */
export const xsd_sockmsg = struct("struct xsd_sockmsg", 16, {
  /** An {@link XS} type. */
  type: u32(0),
  /** Chosen by the requester, echoed in the reply. */
  req_id: u32(4),
  /** Transaction id, 0 outside a transaction. */
  tx_id: u32(8),
  /** Bytes of payload that follow. */
  len: u32(12),
});

/** One XenStore message: the {@link xsd_sockmsg} header's fields and the payload. */
export interface XsMessage {
  /** An {@link XS} type. */
  readonly type: number;
  /** Chosen by the requester, echoed in the reply; 0 in watch events. */
  readonly reqId: number;
  /** The transaction, 0 outside one. */
  readonly txId: number;
  /** The payload (`len` bytes), at most `XENSTORE_PAYLOAD_MAX`. */
  readonly payload: Uint8Array;
}

/** The XenStore ring page of a domain (`struct xenstore_domain_interface`). */
export const xenstore_domain_interface = struct("struct xenstore_domain_interface", 2076, {
  /** Requests to the daemon. */
  req: bytes(0, 1024),
  /** Replies and watch events from the daemon. */
  rsp: bytes(1024, 1024),
  req_cons: u32(2048),
  req_prod: u32(2052),
  rsp_cons: u32(2056),
  rsp_prod: u32(2060),
  /** `XENSTORE_SERVER_FEATURE_*` bits the daemon supports. */
  server_features: u32(2064),
  /** `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`. */
  connection: u32(2068),
  /** `XENSTORE_ERROR_*`. */
  error: u32(2072),
});
