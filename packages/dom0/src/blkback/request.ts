/**
 * Reading a blkif request the way a back end must: copied out of the shared
 * ring once, then checked field by field before anything is done with it.
 *
 * ## The request slot (`io/blkif.h`)
 *
 * Every slot of the blkif ring is 112 bytes. Its first byte, `operation`,
 * says which of three layouts the rest follows:
 *
 * | operation                                     | layout                   | what it carries |
 * |-----------------------------------------------|--------------------------|-----------------|
 * | `READ`, `WRITE`, `FLUSH_DISKCACHE`, `WRITE_BARRIER` | `blkif_request`      | `nr_segments` (≤ 11) segments inline |
 * | `DISCARD`                                     | `blkif_request_discard`  | `sector_number`, `nr_sectors`, `flag` |
 * | `INDIRECT`                                    | `blkif_request_indirect` | `indirect_op` (read or write), `nr_segments` (u16), up to 8 grant refs of pages full of segments |
 *
 * `id` is at offset 8 in all three and comes back in the response. A segment
 * (`blkif_request_segment`, 8 bytes) is a grant ref and the first and last
 * 512-byte sector used within that 4 KiB page: `first_sect ≤ last_sect ≤ 7`.
 * An indirect page holds 512 segments.
 *
 * ## The checks, in Linux blkback's order (`dispatch_rw_block_io`, `xen_vbd_translate`)
 *
 * 1. an indirect request's `indirect_op` must be READ or WRITE;
 * 2. the segment count: at least 1 (0 only for a flush), at most 11 inline,
 *    at most the negotiated `feature-max-indirect-segments` indirect;
 * 3. every segment: `last_sect ≤ 7` and `first_sect ≤ last_sect`;
 * 4. the disk: no write, flush or discard on a read-only disk, and the
 *    sector range must end within the disk (and not wrap 2^64);
 * 5. then, when the data path maps them, every grant ref must map.
 *
 * Every failure is answered with `BLKIF_RSP_ERROR`; an operation the back end
 * does not do (`WRITE_BARRIER`, which it does not advertise, the reserved op 4,
 * an unknown op, or a discard it did not offer) with `BLKIF_RSP_EOPNOTSUPP`, as
 * Linux's `dispatch_other_io` and `dispatch_discard_io` answer.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_DISCARD, BLKIF_MAX, BLKIF_OP, BLKIF_RSP, PAGE_SIZE, blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment, blkif_response, type StructValue } from "@pvkit/abi";
import { structCodec, type Codec } from "@pvkit/ring";

/** Bytes in a blkif sector: `sector_number`, `first_sect` and `last_sect` always count 512-byte units. */
export const BLKIF_SECTOR_SIZE = 512;

/** 512-byte sectors in one 4 KiB page: the exclusive bound of `last_sect`. */
export const BLKIF_SECTORS_PER_PAGE = PAGE_SIZE / BLKIF_SECTOR_SIZE;

/** Segment descriptors one indirect page holds (`PAGE_SIZE / sizeof(struct blkif_request_segment)`). */
export const BLKIF_SEGMENTS_PER_INDIRECT_PAGE = PAGE_SIZE / blkif_request_segment.size;

/** The most segments an indirect request can describe at all: 8 pages of 512 descriptors. */
export const BLKIF_INDIRECT_SEGMENTS_LIMIT = BLKIF_MAX.INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGMENTS_PER_INDIRECT_PAGE;

const U64_MAX = (1n << 64n) - 1n;

/**
 * The ring codec of the back end's requests: `read` copies the 112 bytes of
 * the slot out of the shared page (the one and only read of it), `write`
 * puts raw bytes back (for tests and mock front ends).
 */
export const blkifRequestBytes: Codec<Uint8Array> = {
  size: blkif_request.size,
  read: (view, offset) => new Uint8Array(view.buffer, view.byteOffset + offset, blkif_request.size).slice(),
  write: (view, offset, value) => new Uint8Array(view.buffer, view.byteOffset + offset, blkif_request.size).set(value.subarray(0, blkif_request.size)),
};

/** A `blkif_response`: the request's `id` and `operation`, and a `BLKIF_RSP_*` status. */
export type BlkifResponse = StructValue<typeof blkif_response>;

/** The ring codec of responses. */
export const blkifResponseCodec: Codec<BlkifResponse> = structCodec(blkif_response);

/** One segment: a granted page and the inclusive 512-byte sectors used within it. */
export interface BlkSegment {
  /** The grant reference of the page. */
  readonly gref: number;
  /** First sector used in the page (0..7). */
  readonly first: number;
  /** Last sector used in the page (first..7). */
  readonly last: number;
}

/** What the back end knows of its disk when it checks a request. */
export interface BlkDiskLimits {
  /** Size of the disk in 512-byte sectors. */
  readonly sectors: bigint;
  /** Mode "r": writes, flushes and discards are refused. */
  readonly readOnly: boolean;
  /** The `feature-max-indirect-segments` published (0: indirect requests are not offered). */
  readonly maxIndirectSegments: number;
  /** Whether `feature-discard` was published. */
  readonly discard: boolean;
  /** Whether `discard-secure` was published. */
  readonly discardSecure: boolean;
}

/** A request that passed every check that needs no grant mapping. */
export type BlkValidRequest =
  /** A read or write with its segments inline. */
  | { readonly kind: "read" | "write"; readonly id: bigint; readonly operation: number; readonly sector: bigint; readonly segments: readonly BlkSegment[]; readonly sectors: bigint }
  /** A flush, with the data of a write to do first when it has segments. */
  | { readonly kind: "flush"; readonly id: bigint; readonly operation: number; readonly sector: bigint; readonly segments: readonly BlkSegment[]; readonly sectors: bigint }
  /** A discard of `sectors` sectors from `sector` (0 sectors is a no-op that succeeds). */
  | { readonly kind: "discard"; readonly id: bigint; readonly operation: number; readonly sector: bigint; readonly sectors: bigint; readonly secure: boolean }
  /** An indirect read or write: its segments are still in the pages named by `grefs`. */
  | { readonly kind: "indirect"; readonly id: bigint; readonly operation: number; readonly write: boolean; readonly sector: bigint; readonly nrSegments: number; readonly grefs: readonly number[] };

/** A request refused before any I/O: what to answer and why. */
export interface BlkRefusal {
  /** The request's `id`, echoed. */
  readonly id: bigint;
  /** The `operation` to echo (an indirect request's `indirect_op`). */
  readonly operation: number;
  /** `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`. */
  readonly status: number;
  /** Why, for logs and tests. */
  readonly reason: string;
}

function refuse(id: bigint, operation: number, reason: string, status: number = BLKIF_RSP.ERROR): E.Either<BlkRefusal, never> {
  return E.left({ id, operation, status, reason });
}

/** Reads `n` segments from `view` starting at byte `base`, 8 bytes apart. */
function segmentsAt(view: DataView, base: number, n: number): BlkSegment[] {
  const f = blkif_request_segment.fields;
  const out: BlkSegment[] = [];
  for (let i = 0; i < n; i++) {
    const at = base + i * blkif_request_segment.size;
    out.push({ gref: f.gref.get(view, at), first: f.first_sect.get(view, at), last: f.last_sect.get(view, at) });
  }
  return out;
}

/**
 * Checks a transfer's segments and its sector range against the disk
 * (steps 3 and 4 above). Returns the number of sectors moved.
 */
export function checkTransfer(id: bigint, operation: number, sector: bigint, segments: readonly BlkSegment[], write: boolean, limits: BlkDiskLimits): E.Either<BlkRefusal, bigint> {
  let sectors = 0n;
  for (const [i, s] of segments.entries()) {
    if (s.last >= BLKIF_SECTORS_PER_PAGE || s.last < s.first) return refuse(id, operation, `segment ${i}: first_sect ${s.first}, last_sect ${s.last} is not a range within a page`);
    sectors += BigInt(s.last - s.first + 1);
  }
  return E.map(() => sectors)(checkRange(id, operation, sector, sectors, write, limits));
}

/** Step 4 alone: access mode and the sector range `[sector, sector + sectors)`. */
export function checkRange(id: bigint, operation: number, sector: bigint, sectors: bigint, write: boolean, limits: BlkDiskLimits): E.Either<BlkRefusal, void> {
  if (write && limits.readOnly) return refuse(id, operation, "the disk is read-only");
  if (sectors === 0n) return E.right(undefined);
  const end = sector + sectors;
  if (end > U64_MAX) return refuse(id, operation, `sectors ${sector}+${sectors} wrap past 2^64`);
  if (end > limits.sectors) return refuse(id, operation, `sectors ${sector}..${end - 1n} run past the end of the disk (${limits.sectors} sectors)`);
  return E.right(undefined);
}

/**
 * Decodes and checks a request copied out of the ring (steps 1 to 4; an
 * indirect request's segments are checked with {@link checkIndirectSegments}
 * once its pages are mapped).
 */
export function checkRequest(bytes: Uint8Array, limits: BlkDiskLimits): E.Either<BlkRefusal, BlkValidRequest> {
  if (bytes.byteLength < blkif_request.size) throw new RangeError(`a blkif request is ${blkif_request.size} bytes, not ${bytes.byteLength}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, blkif_request.size);
  const rw = blkif_request.fields;
  const operation = rw.operation.get(view, 0);
  const id = rw.id.get(view, 0);
  switch (operation) {
    case BLKIF_OP.READ:
    case BLKIF_OP.WRITE:
    case BLKIF_OP.FLUSH_DISKCACHE: {
      const n = rw.nr_segments.get(view, 0);
      const flush = operation === BLKIF_OP.FLUSH_DISKCACHE;
      if (n === 0 && !flush) return refuse(id, operation, "a read or write with no segments");
      if (n > BLKIF_MAX.SEGMENTS_PER_REQUEST) return refuse(id, operation, `${n} segments: more than ${BLKIF_MAX.SEGMENTS_PER_REQUEST} inline`);
      const segments = segmentsAt(view, rw.seg.offset, n);
      const sector = rw.sector_number.get(view, 0);
      const write = operation !== BLKIF_OP.READ;
      return E.map((sectors: bigint): BlkValidRequest => ({ kind: flush ? "flush" : write ? "write" : "read", id, operation, sector, segments, sectors }))(
        checkTransfer(id, operation, sector, segments, write, limits),
      );
    }
    case BLKIF_OP.INDIRECT: {
      const f = blkif_request_indirect.fields;
      const op = f.indirect_op.get(view, 0);
      if (op !== BLKIF_OP.READ && op !== BLKIF_OP.WRITE) return refuse(id, op, `indirect_op ${op} is neither READ nor WRITE`);
      if (limits.maxIndirectSegments === 0) return refuse(id, op, "indirect requests were not offered");
      const n = f.nr_segments.get(view, 0);
      if (n === 0) return refuse(id, op, "an indirect request with no segments");
      if (n > limits.maxIndirectSegments) return refuse(id, op, `${n} indirect segments: more than the ${limits.maxIndirectSegments} offered`);
      const pages = Math.ceil(n / BLKIF_SEGMENTS_PER_INDIRECT_PAGE);
      const grefs: number[] = [];
      for (let i = 0; i < pages; i++) grefs.push(f.indirect_grefs.element.get(view, f.indirect_grefs.at(0, i)));
      const write = op === BLKIF_OP.WRITE;
      if (write && limits.readOnly) return refuse(id, op, "the disk is read-only");
      return E.right({ kind: "indirect", id, operation: op, write, sector: f.sector_number.get(view, 0), nrSegments: n, grefs });
    }
    case BLKIF_OP.DISCARD: {
      const f = blkif_request_discard.fields;
      if (!limits.discard) return refuse(id, operation, "discard was not offered", BLKIF_RSP.EOPNOTSUPP);
      const secure = (f.flag.get(view, 0) & BLKIF_DISCARD.SECURE) !== 0;
      if (secure && !limits.discardSecure) return refuse(id, operation, "secure discard was not offered", BLKIF_RSP.EOPNOTSUPP);
      const sector = f.sector_number.get(view, 0);
      const sectors = f.nr_sectors.get(view, 0);
      return E.map((): BlkValidRequest => ({ kind: "discard", id, operation, sector, sectors, secure }))(checkRange(id, operation, sector, sectors, true, limits));
    }
    default:
      return refuse(id, operation, `operation ${operation} is not supported`, BLKIF_RSP.EOPNOTSUPP);
  }
}

/**
 * Reads an indirect request's segments from its descriptor pages (copied
 * out once) and checks them and its range (steps 3 and 4).
 */
export function checkIndirectSegments(req: Extract<BlkValidRequest, { kind: "indirect" }>, pages: readonly Uint8Array[], limits: BlkDiskLimits): E.Either<BlkRefusal, { readonly segments: BlkSegment[]; readonly sectors: bigint }> {
  const segments: BlkSegment[] = [];
  for (let p = 0; p < pages.length && segments.length < req.nrSegments; p++) {
    const n = Math.min(BLKIF_SEGMENTS_PER_INDIRECT_PAGE, req.nrSegments - segments.length);
    const copy = pages[p]!.slice(0, n * blkif_request_segment.size);
    segments.push(...segmentsAt(new DataView(copy.buffer), 0, n));
  }
  if (segments.length !== req.nrSegments) return refuse(req.id, req.operation, `${req.nrSegments} segments need ${req.grefs.length} indirect pages, ${pages.length} given`);
  return E.map((sectors: bigint) => ({ segments, sectors }))(checkTransfer(req.id, req.operation, req.sector, segments, req.write, limits));
}
