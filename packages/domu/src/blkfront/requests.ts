/**
 * Building blkif requests: how a transfer is cut into requests and
 * segments, and how each request is laid out in its ring slot.
 *
 * ## Segments
 *
 * A request moves sectors between the disk and granted 4 KiB pages, a
 * segment per page; a segment names the first and last 512-byte sector it
 * uses in its page (`first_sect ≤ last_sect ≤ 7`). Disk sector `s` sits at
 * sector slot `s % 8` of its page, as it would in a page cache: so a transfer
 * that starts mid-page has a first segment with `first_sect = s % 8`, its
 * middle segments are whole pages (0..7), and its last may end early. A
 * request takes at most 11 segments inline (`BLKIF_MAX_SEGMENTS_PER_REQUEST`);
 * with the back end's `feature-max-indirect-segments`, it may instead take
 * up to that many through `BLKIF_OP_INDIRECT`, whose segment descriptors
 * fill pages of 512 each (at most 8 pages), granted like data.
 *
 * ## Slots
 *
 * The three request layouts share a 112-byte slot. {@link blkifRequestCodec}
 * writes one, zeroing the whole slot first so nothing of an earlier request
 * is left in it.
 *
 * @module
 */
import { BLKIF_MAX, BLKIF_OP, PAGE_SIZE, blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment, blkif_response, type StructValue } from "@pvkit/abi";
import { structCodec, type Codec } from "@pvkit/ring";

/** Bytes per blkif sector (`sector_number`, `first_sect`, `last_sect` count these). */
export const BLK_SECTOR_SIZE = 512;

/** Sectors per 4 KiB page. */
export const BLK_SECTORS_PER_PAGE = PAGE_SIZE / BLK_SECTOR_SIZE;

/** Segment descriptors per indirect page. */
export const BLK_SEGMENTS_PER_INDIRECT_PAGE = PAGE_SIZE / blkif_request_segment.size;

/** The sectors of one page a segment uses. */
export interface BlkSegmentPlan {
  /** First sector used (0..7). */
  readonly first: number;
  /** Last sector used (first..7). */
  readonly last: number;
}

/** One request's share of a transfer. */
export interface BlkChunkPlan {
  /** First disk sector. */
  readonly sector: number;
  /** Sectors moved. */
  readonly sectors: number;
  /** Where its data starts in the transfer's buffer, in bytes. */
  readonly offset: number;
  /** A segment per page. */
  readonly segments: readonly BlkSegmentPlan[];
}

/**
 * Cuts a transfer of `sectors` sectors from `sector` into requests of at
 * most `maxSegments` segments each, every sector at page slot `sector % 8`.
 */
export function planTransfer(sector: number, sectors: number, maxSegments: number): BlkChunkPlan[] {
  if (!Number.isSafeInteger(sector) || sector < 0) throw new RangeError(`sector ${sector} is not a disk address`);
  if (!Number.isSafeInteger(sectors) || sectors <= 0) throw new RangeError(`a transfer of ${sectors} sectors`);
  if (!Number.isInteger(maxSegments) || maxSegments < 1) throw new RangeError(`at most ${maxSegments} segments per request`);
  const chunks: BlkChunkPlan[] = [];
  let s = sector;
  let left = sectors;
  let offset = 0;
  while (left > 0) {
    const start = s;
    const segments: BlkSegmentPlan[] = [];
    while (left > 0 && segments.length < maxSegments) {
      const first = s % BLK_SECTORS_PER_PAGE;
      const n = Math.min(BLK_SECTORS_PER_PAGE - first, left);
      segments.push({ first, last: first + n - 1 });
      s += n;
      left -= n;
    }
    chunks.push({ sector: start, sectors: s - start, offset, segments });
    offset += (s - start) * BLK_SECTOR_SIZE;
  }
  return chunks;
}

/** Indirect pages needed for `segments` descriptors (`INDIRECT_PAGES`). */
export function indirectPagesFor(segments: number): number {
  return Math.ceil(segments / BLK_SEGMENTS_PER_INDIRECT_PAGE);
}

/** A segment with its grant. */
export interface BlkGrantedSegment extends BlkSegmentPlan {
  /** The grant reference of the page. */
  readonly gref: number;
}

/** A request as the front end puts it in a slot. */
export type BlkRequest =
  /** `blkif_request`: a read, write or flush with inline segments (`operation` a `BLKIF_OP_*`). */
  | { readonly kind: "rw"; readonly operation: number; readonly handle: number; readonly id: bigint; readonly sector: bigint; readonly segments: readonly BlkGrantedSegment[] }
  /** `blkif_request_discard`. */
  | { readonly kind: "discard"; readonly flag: number; readonly handle: number; readonly id: bigint; readonly sector: bigint; readonly sectors: bigint }
  /** `blkif_request_indirect`: `nrSegments` segments described in the pages `indirectGrefs` grant. */
  | { readonly kind: "indirect"; readonly indirectOp: number; readonly handle: number; readonly id: bigint; readonly sector: bigint; readonly nrSegments: number; readonly indirectGrefs: readonly number[] };

/** The ring codec of requests: encodes a {@link BlkRequest} in its layout (reading is a back end's business). */
export const blkifRequestCodec: Codec<BlkRequest> = {
  size: blkif_request.size,
  read: () => {
    throw new Error("blkfront does not read requests back");
  },
  write: (view, offset, r) => {
    new Uint8Array(view.buffer, view.byteOffset + offset, blkif_request.size).fill(0);
    switch (r.kind) {
      case "rw": {
        if (r.segments.length > BLKIF_MAX.SEGMENTS_PER_REQUEST) throw new RangeError(`${r.segments.length} inline segments`);
        const f = blkif_request.fields;
        f.operation.set(view, offset, r.operation);
        f.nr_segments.set(view, offset, r.segments.length);
        f.handle.set(view, offset, r.handle);
        f.id.set(view, offset, r.id);
        f.sector_number.set(view, offset, r.sector);
        const s = blkif_request_segment.fields;
        r.segments.forEach((seg, i) => {
          const at = f.seg.at(offset, i);
          s.gref.set(view, at, seg.gref);
          s.first_sect.set(view, at, seg.first);
          s.last_sect.set(view, at, seg.last);
        });
        return;
      }
      case "discard": {
        const f = blkif_request_discard.fields;
        f.operation.set(view, offset, BLKIF_OP.DISCARD);
        f.flag.set(view, offset, r.flag);
        f.handle.set(view, offset, r.handle);
        f.id.set(view, offset, r.id);
        f.sector_number.set(view, offset, r.sector);
        f.nr_sectors.set(view, offset, r.sectors);
        return;
      }
      case "indirect": {
        if (r.indirectGrefs.length > BLKIF_MAX.INDIRECT_PAGES_PER_REQUEST) throw new RangeError(`${r.indirectGrefs.length} indirect pages`);
        const f = blkif_request_indirect.fields;
        f.operation.set(view, offset, BLKIF_OP.INDIRECT);
        f.indirect_op.set(view, offset, r.indirectOp);
        f.nr_segments.set(view, offset, r.nrSegments);
        f.id.set(view, offset, r.id);
        f.sector_number.set(view, offset, r.sector);
        f.handle.set(view, offset, r.handle);
        r.indirectGrefs.forEach((g, i) => f.indirect_grefs.element.set(view, f.indirect_grefs.at(offset, i), g));
        return;
      }
    }
  },
};

/** Writes segment descriptors `segments` into indirect page `page`, 8 bytes each from the start. */
export function writeIndirectPage(page: Uint8Array, segments: readonly BlkGrantedSegment[]): void {
  if (segments.length > BLK_SEGMENTS_PER_INDIRECT_PAGE) throw new RangeError(`${segments.length} descriptors do not fit a page`);
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const s = blkif_request_segment.fields;
  page.fill(0, 0, segments.length * blkif_request_segment.size);
  segments.forEach((seg, i) => {
    const at = i * blkif_request_segment.size;
    s.gref.set(view, at, seg.gref);
    s.first_sect.set(view, at, seg.first);
    s.last_sect.set(view, at, seg.last);
  });
}

/** A `blkif_response` as read from the ring. */
export type BlkResponse = StructValue<typeof blkif_response>;

/** The ring codec of responses. */
export const blkifResponseCodec: Codec<BlkResponse> = structCodec(blkif_response);
