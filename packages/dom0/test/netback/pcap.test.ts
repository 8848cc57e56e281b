/**
 * pcap encoding, byte for byte: the global header and records as libpcap
 * writes them on a little-endian host, virtual timestamps, snaplen, and a
 * file written synchronously that equals the in-memory capture.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { LINKTYPE_ETHERNET, PcapBuffer, PcapFile, parsePcap, pcapHeader, pcapRecord } from "@pvkit/dom0";

const hex = (s: string) => new Uint8Array((s.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));

describe("pcap", () => {
  it("writes the global header: magic a1b2c3d4 little-endian, 2.4, zone 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET", () => {
    expect([...pcapHeader()]).toEqual([...hex("d4c3b2a1 0200 0400 00000000 00000000 ffff0000 01000000")]);
    expect([...pcapHeader(262144, LINKTYPE_ETHERNET)]).toEqual([...hex("d4c3b2a1 0200 0400 00000000 00000000 00000400 01000000")]);
  });

  it.each([
    { ns: 0, head: "00000000 00000000" },
    { ns: 999, head: "00000000 00000000" },
    { ns: 1_000, head: "00000000 01000000" },
    { ns: 1_234_567_890, head: "01000000 47940300" }, // 1 s, 234567 µs
    { ns: 4_000_000_000_500, head: "a00f0000 00000000" }, // 4000 s; 500 ns rounds down
  ])("stamps a record at $ns ns as seconds and microseconds", ({ ns, head }) => {
    const rec = pcapRecord(ns, hex("0102030405"));
    expect([...rec]).toEqual([...hex(`${head} 05000000 05000000 0102030405`)]);
  });

  it("cuts a record to the snapshot length but keeps the original length", () => {
    const rec = pcapRecord(0, new Uint8Array(100).fill(9), 64);
    expect(rec.length).toBe(16 + 64);
    expect([...rec.subarray(8, 16)]).toEqual([...hex("40000000 64000000")]);
  });

  it("reads back what it writes, in either byte order", () => {
    const cap = new PcapBuffer();
    cap.write(5_000, hex("aa"));
    cap.write(2_000_000_000, new Uint8Array(70).fill(1));
    const r = parsePcap(cap.bytes());
    if (E.isLeft(r)) throw new Error(r.left);
    expect(r.right.version).toEqual({ major: 2, minor: 4 });
    expect(r.right.linktype).toBe(1);
    expect(r.right.snaplen).toBe(65535);
    expect(r.right.packets.map((p) => [p.tsSec, p.tsUsec, p.origLen, p.data.length])).toEqual([
      [0, 5, 1, 1],
      [2, 0, 70, 70],
    ]);
    const be = hex("a1b2c3d4 0002 0004 00000000 00000000 0000ffff 00000001 00000003 00000007 00000002 00000002 beef");
    const b = parsePcap(be);
    if (E.isLeft(b)) throw new Error(b.left);
    expect(b.right.packets[0]).toMatchObject({ tsSec: 3, tsUsec: 7, origLen: 2 });
    expect(E.isLeft(parsePcap(hex("00112233")))).toBe(true);
    expect(E.isLeft(parsePcap(new Uint8Array(30)))).toBe(true);
    expect(E.isLeft(parsePcap(cap.bytes().subarray(0, 50)))).toBe(true);
  });

  it("a capture file holds exactly the bytes of the in-memory capture", () => {
    const dir = mkdtempSync(join(tmpdir(), "pvkit-pcap-"));
    try {
      const path = join(dir, "x.pcap");
      const file = PcapFile.create(path);
      const mem = new PcapBuffer();
      for (const [t, f] of [
        [10, hex("ffffffffffff00163e0000010806")],
        [20_000, new Uint8Array(1514).fill(3)],
      ] as const) {
        file.write(t, f);
        mem.write(t, f);
      }
      file.close();
      file.write(30, hex("00")); // after close: ignored
      expect(new Uint8Array(readFileSync(path))).toEqual(mem.bytes());
      expect(file.records).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
