/**
 * blkback's request checks as a table: (request bytes, disk) → the request
 * it becomes, or the response it is refused with. Every malformed request
 * has its row, with the status Linux blkback answers.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_DISCARD, BLKIF_OP, BLKIF_RSP, blkif_request } from "@pvkit/abi";
import { BLKIF_SEGMENTS_PER_INDIRECT_PAGE, checkIndirectSegments, checkRequest, checkTransfer, type BlkDiskLimits } from "@pvkit/dom0";
import { discard, indirect, indirectPage, rw, type Seg } from "./mock.js";

const DISK: BlkDiskLimits = { sectors: 2048n, readOnly: false, maxIndirectSegments: 256, discard: true, discardSecure: false };
const RO: BlkDiskLimits = { ...DISK, readOnly: true };
const whole = (gref: number): Seg => ({ gref, first: 0, last: 7 });
const segs = (n: number) => Array.from({ length: n }, (_, i) => whole(100 + i));

describe("checkRequest: requests that pass", () => {
  const rows: [string, Uint8Array, BlkDiskLimits, Record<string, unknown>][] = [
    ["a one-page read", rw(BLKIF_OP.READ, 1n, 0n, [whole(9)]), DISK, { kind: "read", sectors: 8n, sector: 0n }],
    ["a write of 11 segments, the inline maximum", rw(BLKIF_OP.WRITE, 2n, 100n, segs(11)), DISK, { kind: "write", sectors: 88n }],
    ["partial segments: sectors 3..7, then 0..1", rw(BLKIF_OP.WRITE, 3n, 5n, [{ gref: 9, first: 3, last: 7 }, { gref: 10, first: 0, last: 1 }]), DISK, { kind: "write", sectors: 7n }],
    ["a read that ends on the last sector", rw(BLKIF_OP.READ, 4n, 2040n, [whole(9)]), DISK, { kind: "read", sectors: 8n }],
    ["a flush without data", rw(BLKIF_OP.FLUSH_DISKCACHE, 5n, 0n, []), DISK, { kind: "flush", sectors: 0n }],
    ["a flush carrying a write", rw(BLKIF_OP.FLUSH_DISKCACHE, 6n, 8n, segs(2)), DISK, { kind: "flush", sectors: 16n }],
    ["a read on a read-only disk", rw(BLKIF_OP.READ, 7n, 0n, [whole(9)]), RO, { kind: "read" }],
    ["a discard", discard(8n, 16n, 64n), DISK, { kind: "discard", sectors: 64n, secure: false }],
    ["a discard of nothing, anywhere (no range to check)", discard(9n, 1n << 62n, 0n), DISK, { kind: "discard", sectors: 0n }],
    ["an indirect read of 200 segments: one page", indirect(BLKIF_OP.READ, 10n, 0n, 200, [50]), DISK, { kind: "indirect", nrSegments: 200, grefs: [50], write: false }],
    ["an indirect write of 600 segments: two pages", indirect(BLKIF_OP.WRITE, 11n, 0n, 600, [50, 51, 52]), { ...DISK, maxIndirectSegments: 1024 }, { kind: "indirect", grefs: [50, 51], write: true }],
    ["an indirect request of 5 segments (fewer than 11 is fine)", indirect(BLKIF_OP.READ, 12n, 0n, 5, [50]), DISK, { kind: "indirect", nrSegments: 5 }],
  ];
  it.each(rows)("%s", (_, bytes, limits, expected) => {
    const r = checkRequest(bytes, limits);
    expect(E.isRight(r), E.isLeft(r) ? r.left.reason : "").toBe(true);
    if (E.isRight(r)) expect(r.right).toMatchObject(expected);
  });

  it("echoes the id, whatever its 64 bits", () => {
    const r = checkRequest(rw(BLKIF_OP.READ, 0xfedc_ba98_7654_3210n, 0n, [whole(9)]), DISK);
    expect(E.isRight(r) && r.right.id).toBe(0xfedc_ba98_7654_3210n);
  });
});

describe("checkRequest: every malformed request is refused with the status Linux answers", () => {
  const ERROR = BLKIF_RSP.ERROR;
  const NOTSUP = BLKIF_RSP.EOPNOTSUPP;
  const rows: [string, Uint8Array, BlkDiskLimits, number, number][] = [
    // [name, bytes, disk, status, operation echoed]
    ["a read with no segments", rw(BLKIF_OP.READ, 21n, 0n, []), DISK, ERROR, BLKIF_OP.READ],
    ["a write with no segments", rw(BLKIF_OP.WRITE, 22n, 0n, []), DISK, ERROR, BLKIF_OP.WRITE],
    ["12 inline segments", rw(BLKIF_OP.WRITE, 23n, 0n, segs(11), 12), DISK, ERROR, BLKIF_OP.WRITE],
    ["255 inline segments", rw(BLKIF_OP.READ, 24n, 0n, segs(11), 255), DISK, ERROR, BLKIF_OP.READ],
    ["last_sect 8 (past the page)", rw(BLKIF_OP.READ, 25n, 0n, [{ gref: 9, first: 0, last: 8 }]), DISK, ERROR, BLKIF_OP.READ],
    ["last_sect 255", rw(BLKIF_OP.WRITE, 26n, 0n, [{ gref: 9, first: 200, last: 255 }]), DISK, ERROR, BLKIF_OP.WRITE],
    ["first_sect after last_sect", rw(BLKIF_OP.READ, 27n, 0n, [{ gref: 9, first: 5, last: 4 }]), DISK, ERROR, BLKIF_OP.READ],
    ["a bad segment after good ones", rw(BLKIF_OP.READ, 28n, 0n, [whole(9), whole(10), { gref: 11, first: 7, last: 6 }]), DISK, ERROR, BLKIF_OP.READ],
    ["a read running past the end", rw(BLKIF_OP.READ, 29n, 2041n, [whole(9)]), DISK, ERROR, BLKIF_OP.READ],
    ["a write starting past the end", rw(BLKIF_OP.WRITE, 30n, 5000n, [whole(9)]), DISK, ERROR, BLKIF_OP.WRITE],
    ["sectors wrapping past 2^64", rw(BLKIF_OP.READ, 31n, (1n << 64n) - 4n, [whole(9)]), DISK, ERROR, BLKIF_OP.READ],
    ["a write to a read-only disk", rw(BLKIF_OP.WRITE, 32n, 0n, [whole(9)]), RO, ERROR, BLKIF_OP.WRITE],
    ["a flush of a read-only disk", rw(BLKIF_OP.FLUSH_DISKCACHE, 33n, 0n, []), RO, ERROR, BLKIF_OP.FLUSH_DISKCACHE],
    ["a discard on a read-only disk", discard(34n, 0n, 8n), RO, ERROR, BLKIF_OP.DISCARD],
    ["a discard running past the end", discard(35n, 2000n, 100n), DISK, ERROR, BLKIF_OP.DISCARD],
    ["a discard wrapping past 2^64", discard(36n, 1n << 63n, 1n << 63n), DISK, ERROR, BLKIF_OP.DISCARD],
    ["a discard not offered", discard(37n, 0n, 8n), { ...DISK, discard: false }, NOTSUP, BLKIF_OP.DISCARD],
    ["a secure discard not offered", discard(38n, 0n, 8n, BLKIF_DISCARD.SECURE), DISK, NOTSUP, BLKIF_OP.DISCARD],
    ["an indirect flush (indirect_op must be READ or WRITE)", indirect(BLKIF_OP.FLUSH_DISKCACHE, 39n, 0n, 1, [50]), DISK, ERROR, BLKIF_OP.FLUSH_DISKCACHE],
    ["an indirect discard", indirect(BLKIF_OP.DISCARD, 40n, 0n, 1, [50]), DISK, ERROR, BLKIF_OP.DISCARD],
    ["an indirect indirect", indirect(BLKIF_OP.INDIRECT, 41n, 0n, 1, [50]), DISK, ERROR, BLKIF_OP.INDIRECT],
    ["an indirect request with no segments", indirect(BLKIF_OP.READ, 42n, 0n, 0, [50]), DISK, ERROR, BLKIF_OP.READ],
    ["an indirect request over the offered maximum", indirect(BLKIF_OP.READ, 43n, 0n, 257, [50]), DISK, ERROR, BLKIF_OP.READ],
    ["an indirect request when none were offered", indirect(BLKIF_OP.READ, 44n, 0n, 8, [50]), { ...DISK, maxIndirectSegments: 0 }, ERROR, BLKIF_OP.READ],
    ["an indirect write to a read-only disk", indirect(BLKIF_OP.WRITE, 45n, 0n, 8, [50]), RO, ERROR, BLKIF_OP.WRITE],
    ["a write barrier (not offered)", rw(BLKIF_OP.WRITE_BARRIER, 46n, 0n, [whole(9)]), DISK, NOTSUP, BLKIF_OP.WRITE_BARRIER],
    ["the reserved operation 4", rw(BLKIF_OP.RESERVED_1, 47n, 0n, [whole(9)]), DISK, NOTSUP, BLKIF_OP.RESERVED_1],
    ["an unknown operation 7", rw(7, 48n, 0n, [whole(9)]), DISK, NOTSUP, 7],
    ["an unknown operation 255", rw(255, 49n, 0n, []), DISK, NOTSUP, 255],
  ];
  it.each(rows)("%s", (_, bytes, limits, status, operation) => {
    const r = checkRequest(bytes, limits);
    expect(E.isLeft(r)).toBe(true);
    if (E.isLeft(r)) {
      expect(r.left.status).toBe(status);
      expect(r.left.operation).toBe(operation);
      expect(r.left.id).toBe(BigInt(new DataView(bytes.buffer).getBigUint64(8, true)));
      expect(r.left.reason).not.toBe("");
    }
  });
});

describe("segment math", () => {
  it("counts each segment's last - first + 1 sectors", () => {
    const r = checkTransfer(1n, BLKIF_OP.READ, 0n, [{ gref: 1, first: 0, last: 0 }, { gref: 2, first: 7, last: 7 }, { gref: 3, first: 2, last: 6 }, whole(4)], false, DISK);
    expect(r).toEqual(E.right(1n + 1n + 5n + 8n));
  });

  it("checks the range with the sectors the segments add up to, not their count", () => {
    const one = [{ gref: 1, first: 7, last: 7 }];
    expect(E.isRight(checkTransfer(1n, BLKIF_OP.READ, 2047n, one, false, DISK))).toBe(true);
    expect(E.isLeft(checkTransfer(1n, BLKIF_OP.READ, 2047n, [whole(1)], false, DISK))).toBe(true);
  });

  it("a slot is 112 bytes, segments 8 apart from offset 24, indirect pages hold 512", () => {
    expect(blkif_request.size).toBe(112);
    expect(blkif_request.fields.seg.offset).toBe(24);
    expect(BLKIF_SEGMENTS_PER_INDIRECT_PAGE).toBe(512);
  });
});

describe("checkIndirectSegments", () => {
  const req = (n: number, write = false) => {
    const r = checkRequest(indirect(write ? BLKIF_OP.WRITE : BLKIF_OP.READ, 60n, 16n, n, n > 512 ? [1, 2] : [1]), { ...DISK, maxIndirectSegments: 1024 });
    if (E.isLeft(r) || r.right.kind !== "indirect") throw new Error("setup");
    return r.right;
  };

  it("reads the descriptors from the pages, in order, across pages", () => {
    const first = segs(512);
    const second = [{ gref: 9000, first: 2, last: 3 }];
    const r = checkIndirectSegments(req(513), [indirectPage(first), indirectPage(second)], { ...DISK, sectors: 1n << 20n });
    expect(E.isRight(r)).toBe(true);
    if (E.isRight(r)) {
      expect(r.right.segments).toHaveLength(513);
      expect(r.right.segments[0]).toEqual(whole(100));
      expect(r.right.segments[512]).toEqual({ gref: 9000, first: 2, last: 3 });
      expect(r.right.sectors).toBe(512n * 8n + 2n);
    }
  });

  it("refuses a bad descriptor, a range past the end, and missing pages", () => {
    expect(E.isLeft(checkIndirectSegments(req(2), [indirectPage([whole(1), { gref: 2, first: 3, last: 9 }])], DISK))).toBe(true);
    expect(E.isLeft(checkIndirectSegments(req(256), [indirectPage(segs(256))], DISK))).toBe(true); // 2048 sectors from 16
    expect(E.isLeft(checkIndirectSegments(req(513), [indirectPage(segs(512))], DISK))).toBe(true);
  });
});
