/**
 * ARP (RFC 826) for IPv4 over Ethernet: the 28-byte packet, and the cache
 * with RFC 826's packet reception algorithm ("merge" the sender's mapping
 * if known; add it if the packet is for us; answer a request for our
 * address).
 *
 * ```
 * | hardware type (1) | protocol type (0x0800) | hlen (6) | plen (4) | op |
 * | sender MAC | sender IPv4 | target MAC | target IPv4 |
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { ETHERTYPE, ETH_ALEN } from "./ethernet.js";

/** Bytes of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;
/** ARP hardware type of Ethernet (`ARPHRD_ETHER`). */
export const ARP_HTYPE_ETHERNET = 1;

/** ARP opcodes. */
export const ARP_OP = Object.freeze({
  /** Who has `tpa`? Tell `spa`. */
  REQUEST: 1,
  /** `spa` is at `sha`. */
  REPLY: 2,
});

/** An Ethernet/IPv4 ARP packet. */
export interface ArpPacket {
  /** {@link ARP_OP}. */
  readonly op: number;
  /** Sender hardware address. */
  readonly sha: Uint8Array;
  /** Sender protocol address. */
  readonly spa: number;
  /** Target hardware address (zero in a request). */
  readonly tha: Uint8Array;
  /** Target protocol address. */
  readonly tpa: number;
}

/** Builds the 28-byte packet. */
export function encodeArp(p: ArpPacket): Uint8Array {
  const out = new Uint8Array(ARP_LEN);
  const v = new DataView(out.buffer);
  v.setUint16(0, ARP_HTYPE_ETHERNET);
  v.setUint16(2, ETHERTYPE.IPV4);
  v.setUint8(4, ETH_ALEN);
  v.setUint8(5, 4);
  v.setUint16(6, p.op);
  out.set(p.sha.subarray(0, ETH_ALEN), 8);
  v.setUint32(14, p.spa >>> 0);
  out.set(p.tha.subarray(0, ETH_ALEN), 18);
  v.setUint32(24, p.tpa >>> 0);
  return out;
}

/** Decodes a packet; Left unless it is Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4). */
export function decodeArp(bytes: Uint8Array): E.Either<string, ArpPacket> {
  if (bytes.length < ARP_LEN) return E.left(`ARP packet of ${bytes.length} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint16(0) !== ARP_HTYPE_ETHERNET || v.getUint16(2) !== ETHERTYPE.IPV4 || v.getUint8(4) !== ETH_ALEN || v.getUint8(5) !== 4) {
    return E.left("not an Ethernet/IPv4 ARP packet");
  }
  return E.right({ op: v.getUint16(6), sha: bytes.slice(8, 14), spa: v.getUint32(14), tha: bytes.slice(18, 24), tpa: v.getUint32(24) });
}

/** What {@link ArpCache.receive} decided about a packet. */
export interface ArpVerdict {
  /** The reply to send, if the packet was a request for our address. */
  readonly reply?: ArpPacket;
  /** Whether the sender's mapping was merged or added. */
  readonly learned: boolean;
}

/** The IPv4 → MAC cache of one interface. */
export class ArpCache {
  private readonly entries = new Map<number, Uint8Array>();

  /**
   * @param mac the interface's address
   * @param ip the interface's IPv4 address
   */
  constructor(
    readonly mac: Uint8Array,
    readonly ip: number,
  ) {}

  /** The MAC of `ip`, if known. */
  lookup(ip: number): Uint8Array | undefined {
    return this.entries.get(ip >>> 0);
  }

  /** Records `ip` → `mac`. */
  set(ip: number, mac: Uint8Array): void {
    this.entries.set(ip >>> 0, mac.slice(0, ETH_ALEN));
  }

  /** The entries, for display. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * RFC 826's reception algorithm: merge the sender's mapping if we have
   * one; if the packet is for our address, add it if new, and answer a
   * request with a reply.
   */
  receive(p: ArpPacket): ArpVerdict {
    let merged = false;
    if (this.entries.has(p.spa >>> 0)) {
      this.set(p.spa, p.sha);
      merged = true;
    }
    if (p.tpa >>> 0 !== this.ip >>> 0) return { learned: merged };
    if (!merged) this.set(p.spa, p.sha);
    if (p.op !== ARP_OP.REQUEST) return { learned: true };
    return { learned: true, reply: { op: ARP_OP.REPLY, sha: this.mac, spa: this.ip, tha: p.sha, tpa: p.spa } };
  }

  /** A request asking who has `target`. */
  request(target: number): ArpPacket {
    return { op: ARP_OP.REQUEST, sha: this.mac, spa: this.ip, tha: new Uint8Array(ETH_ALEN), tpa: target };
  }
}
