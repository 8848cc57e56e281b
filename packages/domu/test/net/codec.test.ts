/**
 * The stack's wire formats: tables of (bytes, meaning) for the Internet
 * checksum (RFC 1071), Ethernet, ARP (RFC 826), IPv4 headers (RFC 791) and
 * ICMP echo (RFC 792).
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import {
  ARP_OP,
  ArpCache,
  BROADCAST_MAC,
  ETHERTYPE,
  ETH_ZLEN,
  ICMP_TYPE,
  IPPROTO,
  IPV4_FLAG,
  checksumValid,
  decodeArp,
  decodeEthernet,
  decodeIcmpEcho,
  decodeIpv4,
  encodeArp,
  encodeEthernet,
  encodeIcmpEcho,
  encodeIpv4,
  formatIpv4,
  formatMac,
  internetChecksum,
  isMulticastMac,
  onesComplementSum,
  parseIpv4,
  parseMac,
} from "@pvkit/domu";

const hex = (s: string) => new Uint8Array((s.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));
const right = <A>(e: E.Either<string, A>): A => {
  if (E.isLeft(e)) throw new Error(e.left);
  return e.right;
};
const left = <A>(e: E.Either<string, A>): string => {
  if (E.isRight(e)) throw new Error("expected Left");
  return e.left;
};

describe("the Internet checksum (RFC 1071)", () => {
  it.each([
    // RFC 1071 §3's example: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with the end-around carry).
    { bytes: "0001f203f4f5f6f7", sum: 0xddf2, checksum: 0x220d },
    { bytes: "", sum: 0, checksum: 0xffff },
    // An odd byte is padded with zero on the right.
    { bytes: "01", sum: 0x0100, checksum: 0xfeff },
    { bytes: "ffff", sum: 0xffff, checksum: 0 },
    // Carries fold back in: ffff + ffff + 0001 = 0x1ffff -> 0xffff + 1 = 0x10000 -> 0x0000 + 1.
    { bytes: "ffffffff0001", sum: 0x0001, checksum: 0xfffe },
    // A well-known IPv4 header (the checksum field, b861, included): it sums to ffff.
    { bytes: "450000730000400040 11 b861 c0a80001 c0a800c7", sum: 0xffff, checksum: 0 },
  ])("$bytes sums to $sum", ({ bytes, sum, checksum }) => {
    const b = hex(bytes);
    expect(onesComplementSum(b)).toBe(sum);
    expect(internetChecksum(b)).toBe(checksum);
  });

  it("is the same computed over any split point once summed on even boundaries", () => {
    const b = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
    expect(internetChecksum(b)).toBe(0xb861);
    expect(~onesComplementSum(b, 10, 20, onesComplementSum(b, 0, 10)) & 0xffff).toBe(0xb861);
  });
});

describe("Ethernet", () => {
  it.each([
    { s: "00:16:3e:00:01:02", ok: true },
    { s: "00-16-3E-00-01-02", ok: true },
    { s: "00:16:3e:00:01", ok: false },
    { s: "00:16:3e:00:01:2", ok: false },
    { s: "zz:16:3e:00:01:02", ok: false },
  ])("parses MAC $s: $ok", ({ s, ok }) => {
    const mac = parseMac(s);
    expect(mac !== undefined).toBe(ok);
    if (mac) expect(formatMac(mac)).toBe(s.toLowerCase().replace(/-/g, ":"));
  });

  it("pads short frames to 60 bytes and decodes what it encodes", () => {
    const f = encodeEthernet({ dst: BROADCAST_MAC, src: parseMac("00:16:3e:00:00:01")!, type: ETHERTYPE.ARP, payload: new Uint8Array(28).fill(7) });
    expect(f.length).toBe(ETH_ZLEN);
    expect([...f.subarray(0, 14)]).toEqual([...hex("ffffffffffff 00163e000001 0806")]);
    expect(f.subarray(42).every((b) => b === 0)).toBe(true);
    const d = right(decodeEthernet(f));
    expect(d.type).toBe(ETHERTYPE.ARP);
    expect(formatMac(d.src)).toBe("00:16:3e:00:00:01");
    expect(isMulticastMac(d.dst)).toBe(true);
  });

  it.each([
    { frame: "ffffffffffff00163e000001", why: /shorter/ },
    { frame: "ffffffffffff00163e000001 05dc", why: /802\.3 length/ },
  ])("refuses $frame", ({ frame, why }) => {
    expect(left(decodeEthernet(hex(frame)))).toMatch(why);
  });
});

describe("IPv4 (RFC 791)", () => {
  const packet = { tos: 0, id: 0x1c46, fragment: IPV4_FLAG.DF, ttl: 64, protocol: IPPROTO.ICMP, src: parseIpv4("172.16.10.99")!, dst: parseIpv4("172.16.10.12")!, payload: new Uint8Array(8) };

  it("writes a 20-byte header with a checksum that verifies", () => {
    const b = encodeIpv4(packet);
    expect(b.length).toBe(28);
    expect([...b.subarray(0, 10)]).toEqual([...hex("4500 001c 1c46 4000 4001")]);
    expect(checksumValid(b, 0, 20)).toBe(true);
    // The checksum, recomputed with the field zeroed, is what was written.
    const zeroed = b.slice(0, 20);
    zeroed[10] = zeroed[11] = 0;
    expect((b[10]! << 8) | b[11]!).toBe(internetChecksum(zeroed));
    expect(right(decodeIpv4(b))).toEqual({ ...packet, payload: new Uint8Array(8) });
  });

  it("cuts the payload to the total length (Ethernet padding) and accepts options", () => {
    const b = encodeIpv4(packet);
    const padded = new Uint8Array(46);
    padded.set(b);
    expect(right(decodeIpv4(padded)).payload.length).toBe(8);
    // IHL 6: one word of options (a NOP-filled word), checksum recomputed.
    const withOpt = new Uint8Array(32);
    withOpt.set(b.subarray(0, 20));
    withOpt[0] = 0x46;
    withOpt[3] = 32;
    withOpt.fill(1, 20, 24);
    withOpt[10] = withOpt[11] = 0;
    const c = internetChecksum(withOpt, 0, 24);
    withOpt[10] = c >> 8;
    withOpt[11] = c & 0xff;
    expect(right(decodeIpv4(withOpt)).payload.length).toBe(8);
  });

  const corrupt = (f: (b: Uint8Array) => void) => {
    const b = encodeIpv4(packet);
    f(b);
    return b;
  };
  it.each([
    { name: "a short packet", bytes: () => new Uint8Array(19), why: /shorter/ },
    { name: "version 6", bytes: () => corrupt((b) => (b[0] = 0x65)), why: /version 6/ },
    { name: "IHL 4", bytes: () => corrupt((b) => (b[0] = 0x44)), why: /header length 16/ },
    { name: "IHL past the data", bytes: () => corrupt((b) => (b[0] = 0x4f)), why: /header length 60/ },
    { name: "total length past the data", bytes: () => corrupt((b) => (b[3] = 200)), why: /total length/ },
    { name: "total length inside the header", bytes: () => corrupt((b) => (b[3] = 10)), why: /total length/ },
    { name: "a flipped TTL bit", bytes: () => corrupt((b) => (b[8]! ^= 1)), why: /checksum/ },
    { name: "a flipped address bit", bytes: () => corrupt((b) => (b[19]! ^= 0x80)), why: /checksum/ },
  ])("refuses $name", ({ bytes, why }) => {
    expect(left(decodeIpv4(bytes()))).toMatch(why);
  });

  it.each([
    ["10.0.0.1", 0x0a000001],
    ["255.255.255.255", 0xffffffff],
    ["0.0.0.0", 0],
    ["256.0.0.1", undefined],
    ["10.0.0", undefined],
    ["a.b.c.d", undefined],
  ] as const)("parses %s", (s, n) => {
    expect(parseIpv4(s)).toBe(n);
    if (n !== undefined) expect(formatIpv4(n)).toBe(s);
  });
});

describe("ICMP echo (RFC 792)", () => {
  it("writes type, code, checksum, identifier, sequence and data", () => {
    const m = encodeIcmpEcho({ type: ICMP_TYPE.ECHO_REQUEST, code: 0, id: 0x0001, seq: 0x0002, data: hex("6162636465") });
    // Words 0800 0000 0001 0002 6162 6364 6500 sum to 0x131c9 -> 0x31ca; checksum 0xce35.
    expect([...m]).toEqual([...hex("0800 ce35 0001 0002 6162636465")]);
    expect(checksumValid(m)).toBe(true);
    expect(right(decodeIcmpEcho(m))).toEqual({ type: 8, code: 0, id: 1, seq: 2, data: hex("6162636465") });
  });

  it("a reply to a request differs only in the type and the checksum", () => {
    const req = encodeIcmpEcho({ type: ICMP_TYPE.ECHO_REQUEST, code: 0, id: 7, seq: 9, data: new Uint8Array(56).fill(0x42) });
    const rep = encodeIcmpEcho({ type: ICMP_TYPE.ECHO_REPLY, code: 0, id: 7, seq: 9, data: new Uint8Array(56).fill(0x42) });
    expect(rep.subarray(4)).toEqual(req.subarray(4));
    // Changing 0x08 to 0x00 in the high byte of the first word adds 0x0800 to the checksum.
    expect(((rep[2]! << 8) | rep[3]!) - ((req[2]! << 8) | req[3]!)).toBe(0x0800);
  });

  it.each([
    { name: "short", bytes: hex("0800ced1"), why: /4 bytes/ },
    { name: "bad checksum", bytes: hex("0800ce36 0001 0002 6162636465"), why: /checksum/ },
    { name: "not echo", bytes: encodeIcmpEcho({ type: ICMP_TYPE.DEST_UNREACH, code: 1, id: 0, seq: 0, data: new Uint8Array(0) }), why: /not echo/ },
  ])("refuses $name", ({ bytes, why }) => {
    expect(left(decodeIcmpEcho(bytes))).toMatch(why);
  });
});

describe("ARP (RFC 826)", () => {
  const macA = parseMac("00:16:3e:00:00:0a")!;
  const macB = parseMac("00:16:3e:00:00:0b")!;
  const ipA = parseIpv4("10.0.0.10")!;
  const ipB = parseIpv4("10.0.0.11")!;
  const ipC = parseIpv4("10.0.0.12")!;

  it("encodes the 28-byte Ethernet/IPv4 packet", () => {
    const p = encodeArp({ op: ARP_OP.REQUEST, sha: macA, spa: ipA, tha: new Uint8Array(6), tpa: ipB });
    expect([...p]).toEqual([...hex("0001 0800 06 04 0001 00163e00000a 0a00000a 000000000000 0a00000b")]);
    expect(right(decodeArp(p))).toEqual({ op: 1, sha: macA, spa: ipA, tha: new Uint8Array(6), tpa: ipB });
  });

  it.each([
    { name: "short", bytes: new Uint8Array(27), why: /27 bytes/ },
    { name: "htype 6", bytes: hex("0006 0800 06 04 0001" + "00".repeat(20)), why: /not an Ethernet/ },
    { name: "ptype IPv6", bytes: hex("0001 86dd 06 04 0001" + "00".repeat(20)), why: /not an Ethernet/ },
    { name: "plen 16", bytes: hex("0001 0800 06 10 0001" + "00".repeat(20)), why: /not an Ethernet/ },
  ])("refuses $name", ({ bytes, why }) => {
    expect(left(decodeArp(bytes))).toMatch(why);
  });

  it.each([
    { name: "a request for us: add the sender, reply", op: ARP_OP.REQUEST, spa: ipB, tpa: ipA, known: false, reply: true, learned: true, cached: true },
    { name: "a reply for us: add the sender, no reply", op: ARP_OP.REPLY, spa: ipB, tpa: ipA, known: false, reply: false, learned: true, cached: true },
    { name: "a request for someone else from a stranger: nothing", op: ARP_OP.REQUEST, spa: ipB, tpa: ipC, known: false, reply: false, learned: false, cached: false },
    { name: "a request for someone else from a known host: merge", op: ARP_OP.REQUEST, spa: ipB, tpa: ipC, known: true, reply: false, learned: true, cached: true },
  ])("$name", ({ op, spa, tpa, known, reply, learned, cached }) => {
    const cache = new ArpCache(macA, ipA);
    if (known) cache.set(spa, parseMac("00:00:00:00:00:01")!);
    const v = cache.receive({ op, sha: macB, spa, tha: new Uint8Array(6), tpa });
    expect(v.learned).toBe(learned);
    expect(v.reply !== undefined).toBe(reply);
    if (v.reply) expect(v.reply).toEqual({ op: ARP_OP.REPLY, sha: macA, spa: ipA, tha: macB, tpa: spa });
    expect(cache.lookup(spa) !== undefined && formatMac(cache.lookup(spa)!) === formatMac(macB)).toBe(cached);
  });
});
