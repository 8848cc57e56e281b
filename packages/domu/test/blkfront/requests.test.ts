/**
 * blkfront's request building: cutting transfers into requests and
 * segments, and the bytes each request layout puts in its slot.
 */
import { describe, expect, it } from "vitest";
import { BLKIF_DISCARD, BLKIF_OP, PAGE_SIZE, blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment, decodeStruct } from "@pvkit/abi";
import { BLK_SEGMENTS_PER_INDIRECT_PAGE, blkifRequestCodec, indirectPagesFor, planTransfer, writeIndirectPage, type BlkChunkPlan } from "@pvkit/domu";

describe("planTransfer", () => {
  const rows: [string, number, number, number, BlkChunkPlan[]][] = [
    ["one aligned page", 0, 8, 11, [{ sector: 0, sectors: 8, offset: 0, segments: [{ first: 0, last: 7 }] }]],
    ["one sector mid-page", 5, 1, 11, [{ sector: 5, sectors: 1, offset: 0, segments: [{ first: 5, last: 5 }] }]],
    [
      "unaligned start: the first segment starts at sector slot 3",
      3,
      10,
      11,
      [
        {
          sector: 3,
          sectors: 10,
          offset: 0,
          segments: [
            { first: 3, last: 7 },
            { first: 0, last: 4 },
          ],
        },
      ],
    ],
    [
      "100 sectors: 11 whole pages, then the rest",
      0,
      100,
      11,
      [
        { sector: 0, sectors: 88, offset: 0, segments: Array.from({ length: 11 }, () => ({ first: 0, last: 7 })) },
        {
          sector: 88,
          sectors: 12,
          offset: 88 * 512,
          segments: [
            { first: 0, last: 7 },
            { first: 0, last: 3 },
          ],
        },
      ],
    ],
    [
      "two segments a request, unaligned",
      6,
      20,
      2,
      [
        {
          sector: 6,
          sectors: 10,
          offset: 0,
          segments: [
            { first: 6, last: 7 },
            { first: 0, last: 7 },
          ],
        },
        {
          sector: 16,
          sectors: 10,
          offset: 10 * 512,
          segments: [
            { first: 0, last: 7 },
            { first: 0, last: 1 },
          ],
        },
      ],
    ],
  ];
  it.each(rows)("%s", (_, sector, count, max, expected) => {
    expect(planTransfer(sector, count, max)).toEqual(expected);
  });

  it("always covers the transfer exactly, contiguously, in bounded requests of in-page segments", () => {
    for (let sector = 0; sector < 40; sector += 3) {
      for (const count of [1, 7, 8, 9, 63, 64, 65, 500]) {
        for (const max of [1, 2, 11, 32, 256]) {
          const chunks = planTransfer(sector, count, max);
          let next = sector;
          let offset = 0;
          for (const c of chunks) {
            expect(c.sector).toBe(next);
            expect(c.offset).toBe(offset);
            expect(c.segments.length).toBeGreaterThan(0);
            expect(c.segments.length).toBeLessThanOrEqual(max);
            let s = c.sector;
            for (const seg of c.segments) {
              expect(seg.first).toBe(s % 8);
              expect(seg.last).toBeGreaterThanOrEqual(seg.first);
              expect(seg.last).toBeLessThanOrEqual(7);
              s += seg.last - seg.first + 1;
            }
            expect(s - c.sector).toBe(c.sectors);
            next += c.sectors;
            offset += c.sectors * 512;
          }
          expect(next).toBe(sector + count);
        }
      }
    }
  });

  it("refuses what is not a transfer", () => {
    expect(() => planTransfer(-1, 1, 11)).toThrow(RangeError);
    expect(() => planTransfer(0, 0, 11)).toThrow(RangeError);
    expect(() => planTransfer(0, 1.5, 11)).toThrow(RangeError);
    expect(() => planTransfer(0, 8, 0)).toThrow(RangeError);
  });

  it("needs ceil(n / 512) indirect pages", () => {
    expect([1, 512, 513, 1024, 4096].map(indirectPagesFor)).toEqual([1, 1, 2, 2, 8]);
    expect(BLK_SEGMENTS_PER_INDIRECT_PAGE).toBe(PAGE_SIZE / blkif_request_segment.size);
  });
});

describe("blkifRequestCodec: the bytes in the slot", () => {
  const slot = () => {
    const bytes = new Uint8Array(blkif_request.size).fill(0xcc); // an earlier request's leftovers
    return { bytes, view: new DataView(bytes.buffer) };
  };

  it("a read with inline segments is a blkif_request, the rest of the slot zeroed", () => {
    const { bytes, view } = slot();
    blkifRequestCodec.write(view, 0, { kind: "rw", operation: BLKIF_OP.READ, handle: 51712, id: 0x1_0000_0007n, sector: 1234567890123n, segments: [{ gref: 77, first: 3, last: 7 }, { gref: 78, first: 0, last: 4 }] });
    const d = decodeStruct(blkif_request, view);
    expect(d).toMatchObject({ operation: BLKIF_OP.READ, nr_segments: 2, handle: 51712, id: 0x1_0000_0007n, sector_number: 1234567890123n });
    expect(d.seg.slice(0, 3)).toEqual([
      { gref: 77, first_sect: 3, last_sect: 7 },
      { gref: 78, first_sect: 0, last_sect: 4 },
      { gref: 0, first_sect: 0, last_sect: 0 },
    ]);
    expect(bytes.subarray(24 + 2 * 8).every((b) => b === 0)).toBe(true);
    expect(bytes[4]).toBe(0); // padding before id
  });

  it("a discard is a blkif_request_discard", () => {
    const { bytes, view } = slot();
    blkifRequestCodec.write(view, 0, { kind: "discard", flag: BLKIF_DISCARD.SECURE, handle: 1, id: 9n, sector: 16n, sectors: 1n << 40n });
    expect(decodeStruct(blkif_request_discard, view)).toEqual({ operation: BLKIF_OP.DISCARD, flag: 1, handle: 1, id: 9n, sector_number: 16n, nr_sectors: 1n << 40n });
    expect(bytes.subarray(blkif_request_discard.size).every((b) => b === 0)).toBe(true);
  });

  it("an indirect request is a blkif_request_indirect: u16 nr_segments, handle at 24, grefs at 28", () => {
    const { view } = slot();
    blkifRequestCodec.write(view, 0, { kind: "indirect", indirectOp: BLKIF_OP.WRITE, handle: 51728, id: 3n, sector: 8n, nrSegments: 600, indirectGrefs: [1000, 1001] });
    const d = decodeStruct(blkif_request_indirect, view);
    expect(d).toMatchObject({ operation: BLKIF_OP.INDIRECT, indirect_op: BLKIF_OP.WRITE, nr_segments: 600, id: 3n, sector_number: 8n, handle: 51728 });
    expect(d.indirect_grefs).toEqual([1000, 1001, 0, 0, 0, 0, 0, 0]);
    expect(view.getUint16(24, true)).toBe(51728);
    expect(view.getUint32(28, true)).toBe(1000);
  });

  it("refuses more than 11 inline segments or 8 indirect pages", () => {
    const { view } = slot();
    const seg = { gref: 1, first: 0, last: 7 };
    expect(() => blkifRequestCodec.write(view, 0, { kind: "rw", operation: 0, handle: 0, id: 0n, sector: 0n, segments: Array(12).fill(seg) })).toThrow(RangeError);
    expect(() => blkifRequestCodec.write(view, 0, { kind: "indirect", indirectOp: 0, handle: 0, id: 0n, sector: 0n, nrSegments: 1, indirectGrefs: Array(9).fill(1) })).toThrow(RangeError);
  });

  it("an indirect page is an array of blkif_request_segment", () => {
    const page = new Uint8Array(PAGE_SIZE).fill(0xff);
    writeIndirectPage(page, [
      { gref: 5, first: 1, last: 6 },
      { gref: 0xdeadbeef, first: 0, last: 7 },
    ]);
    const v = new DataView(page.buffer);
    expect(decodeStruct(blkif_request_segment, v, 0)).toEqual({ gref: 5, first_sect: 1, last_sect: 6 });
    expect(decodeStruct(blkif_request_segment, v, 8)).toEqual({ gref: 0xdeadbeef, first_sect: 0, last_sect: 7 });
    expect(page.subarray(6, 8)).toEqual(new Uint8Array([0, 0]));
  });
});
