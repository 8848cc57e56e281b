/**
 * Ethernet II framing (IEEE 802.3 with an EtherType): a 14-byte header of
 * destination MAC, source MAC and EtherType, then the payload. A frame
 * shorter than the 60-byte minimum (64 on the wire with the FCS, which
 * virtual NICs neither add nor see) is padded with zeros, as a NIC pads it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/** Bytes of the Ethernet header (Linux's `ETH_HLEN`). */
export const ETH_HLEN = 14;
/** Smallest frame without the FCS (Linux's `ETH_ZLEN`); shorter frames are padded. */
export const ETH_ZLEN = 60;
/** Bytes of a MAC address (`ETH_ALEN`). */
export const ETH_ALEN = 6;

/** EtherTypes the stack knows. */
export const ETHERTYPE = Object.freeze({
  /** Internet Protocol version 4 (RFC 791). */
  IPV4: 0x0800,
  /** Address Resolution Protocol (RFC 826). */
  ARP: 0x0806,
});

/** The broadcast address ff:ff:ff:ff:ff:ff. */
export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** A MAC address from `aa:bb:cc:dd:ee:ff` (or with `-`), or undefined if malformed. */
export function parseMac(s: string): Uint8Array | undefined {
  const parts = s.split(/[:-]/);
  if (parts.length !== ETH_ALEN || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return undefined;
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}

/** `aa:bb:cc:dd:ee:ff`, lower case. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, ETH_ALEN), (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** Whether two MAC addresses are equal. */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < ETH_ALEN; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `mac` is a group address (the I/G bit, multicast or broadcast). */
export function isMulticastMac(mac: Uint8Array): boolean {
  return (mac[0]! & 1) === 1;
}

/** Whether `mac` is ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(mac: Uint8Array): boolean {
  return macEquals(mac, BROADCAST_MAC);
}

/** A decoded Ethernet II frame. */
export interface EthernetFrame {
  /** Destination MAC. */
  readonly dst: Uint8Array;
  /** Source MAC. */
  readonly src: Uint8Array;
  /** EtherType of the payload. */
  readonly type: number;
  /** The payload, padding included (the upper protocol knows its own length). */
  readonly payload: Uint8Array;
}

/** Builds a frame, padded to {@link ETH_ZLEN} bytes. */
export function encodeEthernet(f: EthernetFrame): Uint8Array {
  const out = new Uint8Array(Math.max(ETH_ZLEN, ETH_HLEN + f.payload.length));
  out.set(f.dst.subarray(0, ETH_ALEN), 0);
  out.set(f.src.subarray(0, ETH_ALEN), ETH_ALEN);
  out[12] = f.type >> 8;
  out[13] = f.type & 0xff;
  out.set(f.payload, ETH_HLEN);
  return out;
}

/** Decodes a frame; Left if it is shorter than a header or names a length (802.3) rather than an EtherType. */
export function decodeEthernet(bytes: Uint8Array): E.Either<string, EthernetFrame> {
  if (bytes.length < ETH_HLEN) return E.left(`frame of ${bytes.length} bytes is shorter than an Ethernet header`);
  const type = (bytes[12]! << 8) | bytes[13]!;
  if (type < 0x0600) return E.left(`802.3 length field ${type}, not an EtherType`);
  return E.right({ dst: bytes.slice(0, 6), src: bytes.slice(6, 12), type, payload: bytes.subarray(ETH_HLEN) });
}
