/**
 * A tiny guest network stack for the examples: Ethernet II, ARP
 * (RFC 826), IPv4 with header checksums (RFC 791, RFC 1071) and ICMPv4 echo
 * (RFC 792) — enough for one domU to ping another over netfront.
 *
 * @module
 */
export * from "./checksum.js";
export * from "./ethernet.js";
export * from "./arp.js";
export * from "./ipv4.js";
export * from "./icmp.js";
export * from "./stack.js";
