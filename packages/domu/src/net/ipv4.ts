/**
 * IPv4 (RFC 791): the 20-byte header (options are accepted on input and
 * never sent), its header checksum (RFC 1071), and addresses as unsigned
 * 32-bit numbers.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |Version|  IHL  |Type of Service|          Total Length         |
 * |         Identification        |Flags|      Fragment Offset    |
 * |  Time to Live |    Protocol   |         Header Checksum       |
 * |                       Source Address                          |
 * |                    Destination Address                        |
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { checksumValid, internetChecksum } from "./checksum.js";

/** Bytes of a header without options. */
export const IPV4_HLEN = 20;

/** IP protocol numbers (`IPPROTO_*`). */
export const IPPROTO = Object.freeze({
  /** Internet Control Message Protocol (RFC 792). */
  ICMP: 1,
  /** Transmission Control Protocol. */
  TCP: 6,
  /** User Datagram Protocol. */
  UDP: 17,
});

/** Bits of the flags field (the top three bits of the fragment word). */
export const IPV4_FLAG = Object.freeze({
  /** Don't Fragment. */
  DF: 0x4000,
  /** More Fragments. */
  MF: 0x2000,
});

/** An IPv4 address from dotted decimal, or undefined. */
export function parseIpv4(s: string): number | undefined {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((a, p) => a * 256 + Number(p), 0) >>> 0;
}

/** Dotted decimal of an address. */
export function formatIpv4(addr: number): string {
  return [addr >>> 24, (addr >>> 16) & 0xff, (addr >>> 8) & 0xff, addr & 0xff].join(".");
}

/** A decoded (or to-be-encoded) IPv4 packet. */
export interface Ipv4Packet {
  /** Type of service / DSCP+ECN byte. */
  readonly tos: number;
  /** Identification. */
  readonly id: number;
  /** Flags and fragment offset, as the 16-bit word (see {@link IPV4_FLAG}). */
  readonly fragment: number;
  /** Time to live. */
  readonly ttl: number;
  /** Protocol of the payload ({@link IPPROTO}). */
  readonly protocol: number;
  /** Source address. */
  readonly src: number;
  /** Destination address. */
  readonly dst: number;
  /** The payload, exactly as long as the total length says. */
  readonly payload: Uint8Array;
}

/** Builds a packet: a 20-byte header with its checksum computed, then the payload. */
export function encodeIpv4(p: Ipv4Packet): Uint8Array {
  const total = IPV4_HLEN + p.payload.length;
  if (total > 0xffff) throw new RangeError(`IPv4 packet of ${total} bytes exceeds 65535`);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint8(0, (4 << 4) | (IPV4_HLEN / 4));
  v.setUint8(1, p.tos);
  v.setUint16(2, total);
  v.setUint16(4, p.id & 0xffff);
  v.setUint16(6, p.fragment & 0xffff);
  v.setUint8(8, p.ttl);
  v.setUint8(9, p.protocol);
  v.setUint16(10, 0);
  v.setUint32(12, p.src >>> 0);
  v.setUint32(16, p.dst >>> 0);
  v.setUint16(10, internetChecksum(out, 0, IPV4_HLEN));
  out.set(p.payload, IPV4_HLEN);
  return out;
}

/**
 * Decodes a packet from `bytes` (an Ethernet payload, perhaps padded):
 * Left unless the version is 4, the header length is at least 5 words and
 * fits, the total length covers the header and fits, and the header
 * checksum is right. The payload is cut to the total length.
 */
export function decodeIpv4(bytes: Uint8Array): E.Either<string, Ipv4Packet> {
  if (bytes.length < IPV4_HLEN) return E.left(`IPv4 packet of ${bytes.length} bytes is shorter than a header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint8(0) >> 4;
  const hlen = (v.getUint8(0) & 0xf) * 4;
  const total = v.getUint16(2);
  if (version !== 4) return E.left(`IP version ${version}`);
  if (hlen < IPV4_HLEN || hlen > bytes.length) return E.left(`header length ${hlen}`);
  if (total < hlen || total > bytes.length) return E.left(`total length ${total} with ${bytes.length} bytes present`);
  if (!checksumValid(bytes, 0, hlen)) return E.left("bad header checksum");
  return E.right({
    tos: v.getUint8(1),
    id: v.getUint16(4),
    fragment: v.getUint16(6),
    ttl: v.getUint8(8),
    protocol: v.getUint8(9),
    src: v.getUint32(12),
    dst: v.getUint32(16),
    payload: bytes.subarray(hlen, total),
  });
}
