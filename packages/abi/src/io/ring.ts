/**
 * `io/ring.h`: the layout of a shared request/response ring.
 *
 * A shared ring ("sring") is one or more contiguous pages: a 64-byte header
 * holding the four free-running indexes, then an array of entries, each a
 * union of one request and one response. Indexes are `RING_IDX` (unsigned 32
 * bit) and wrap freely; an index selects slot `idx & (RING_SIZE - 1)`.
 *
 * ```
 * offset 0   req_prod   written by the front end: requests produced
 *        4   req_event  written by the back end: notify me when req_prod passes this
 *        8   rsp_prod   written by the back end: responses produced
 *       12   rsp_event  written by the front end: notify me when rsp_prod passes this
 *       16   pvt        4 private bytes (netif smartpoll), then 44 bytes of padding
 *       64   ring[]     RING_SIZE entries
 * ```
 *
 * The protocol itself (push, notify hold-off, final checks) is in
 * `@pvkit/ring`; this module only fixes the bytes.
 *
 * @module
 */
import { array, bytes, nested, struct, u32, u8, type StructLayout } from "../layout.js";

/** Byte offset of `ring[0]` in every shared ring: the header is 64 bytes. */
export const SRING_HEADER_SIZE = 64;

/**
 * The shared ring layout for one protocol, as `DEFINE_RING_TYPES(name, req, rsp)`
 * declares it: `cType` is the C struct (`struct blkif_sring`) and `entry` the
 * request/response union. `ring` is declared with one element, as in C; the
 * real number of entries is {@link ringSize}.
 */
export function sring<E extends StructLayout>(cType: string, entry: E) {
  return struct(cType, SRING_HEADER_SIZE + entry.size, {
    req_prod: u32(0),
    req_event: u32(4),
    rsp_prod: u32(8),
    rsp_event: u32(12),
    pvt_netif_smartpoll_active: u8(16, "pvt.netif.smartpoll_active"),
    pvt_pad: bytes(16, 4, "pvt.pvt_pad"),
    __pad: bytes(20, 44),
    ring: array(SRING_HEADER_SIZE, 1, nested(0, entry)),
  });
}

/**
 * Entries that fit a shared ring of `ringBytes` bytes with entries of
 * `entrySize` bytes, rounded down to a power of two (`__RING_SIZE`, which
 * rounds with `__RD32`). A one-page blkif ring holds 32 entries.
 */
export function ringSize(ringBytes: number, entrySize: number): number {
  const fit = Math.floor((ringBytes - SRING_HEADER_SIZE) / entrySize);
  if (fit < 1) throw new RangeError(`a ${ringBytes}-byte ring has no room for a ${entrySize}-byte entry`);
  return 2 ** Math.floor(Math.log2(Math.min(fit, 0xffffffff)));
}
