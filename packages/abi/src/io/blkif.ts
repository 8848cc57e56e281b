/**
 * `io/blkif.h`: the block device protocol between blkfront and blkback.
 *
 * The front end grants the pages of each I/O and puts a request on the shared
 * ring naming the sector and up to {@link BLKIF_MAX}`.SEGMENTS_PER_REQUEST`
 * segments (a grant ref and the first and last 512-byte sector used within the
 * page). Larger I/O uses `BLKIF_OP_INDIRECT`: the request names up to 8 pages
 * of segment descriptors instead. The back end answers with the request's `id`
 * and a `BLKIF_RSP_*` status.
 *
 * Sectors are always 512 bytes in `sector_number`, `first_sect` and
 * `last_sect`, whatever the disk's `sector-size`.
 *
 * The XenStore keys of the handshake are in {@link BLKIF_XENSTORE_KEYS}.
 *
 * @module
 */
import { constants } from "../constants.js";
import { array, nested, struct, u16, u32, u64, u8, i16 } from "../layout.js";
import { sring } from "./ring.js";

/** Request operations (`blkif_request.operation`, `BLKIF_OP_*`). */
export const BLKIF_OP = constants("io/blkif.h", "BLKIF_OP_", {
  /** Read sectors into the granted pages. */
  READ: 0,
  /** Write sectors from the granted pages. */
  WRITE: 1,
  /** Write with a barrier (deprecated; `feature-barrier`). */
  WRITE_BARRIER: 2,
  /** Flush the disk's write cache (`feature-flush-cache`); no segments. */
  FLUSH_DISKCACHE: 3,
  /** Reserved: was `BLKIF_OP_WRITE_BARRIER` in some old front ends. */
  RESERVED_1: 4,
  /** Discard a sector range (`feature-discard`); uses `blkif_request_discard`. */
  DISCARD: 5,
  /** Read or write through indirect segment pages (`feature-max-indirect-segments`). */
  INDIRECT: 6,
});

/** Response statuses (`blkif_response.status`, `BLKIF_RSP_*`). */
export const BLKIF_RSP = constants("io/blkif.h", "BLKIF_RSP_", {
  /** The operation is not supported (e.g. a flush the back end cannot do). */
  EOPNOTSUPP: -2,
  /** The request failed (bad segment, I/O error, write to a read-only disk). */
  ERROR: -1,
  /** The request completed. */
  OKAY: 0,
});

/** Protocol limits (`BLKIF_MAX_*`). */
export const BLKIF_MAX = constants("io/blkif.h", "BLKIF_MAX_", {
  /** Segments carried directly in one request. */
  SEGMENTS_PER_REQUEST: 11,
  /** Pages of segment descriptors one indirect request may name. */
  INDIRECT_PAGES_PER_REQUEST: 8,
});

/** `blkif_request_discard.flag` bits. */
export const BLKIF_DISCARD = constants("io/blkif.h", "BLKIF_DISCARD_", {
  /** Erase securely (only if the back end publishes `discard-secure`). */
  SECURE: 1 << 0,
});

/** Bits of the `info` key the back end publishes (`VDISK_*`). */
export const VDISK = constants("io/blkif.h", "VDISK_", {
  CDROM: 0x1,
  REMOVABLE: 0x2,
  READONLY: 0x4,
});

/**
 * One segment: a granted page and the inclusive range of 512-byte sectors
 * used within it (`first_sect` ≤ `last_sect` ≤ 7 for 4 KiB pages).
 */
export const blkif_request_segment = struct("struct blkif_request_segment", 8, {
  gref: u32(0),
  first_sect: u8(4),
  last_sect: u8(5),
});

/** A read, write or flush request (112 bytes). `id` is echoed in the response. */
export const blkif_request = struct("struct blkif_request", 112, {
  operation: u8(0),
  nr_segments: u8(1),
  handle: u16(2),
  id: u64(8),
  sector_number: u64(16),
  seg: array(24, 11, nested(0, blkif_request_segment)),
});

/** A discard request: `nr_sectors` sectors from `sector_number`. */
export const blkif_request_discard = struct("struct blkif_request_discard", 32, {
  operation: u8(0),
  flag: u8(1),
  handle: u16(2),
  id: u64(8),
  sector_number: u64(16),
  nr_sectors: u64(24),
});

/**
 * An indirect request: `indirect_op` (read or write) over `nr_segments`
 * segments whose descriptors fill the pages named by `indirect_grefs`, 512
 * descriptors per page.
 */
export const blkif_request_indirect = struct("struct blkif_request_indirect", 64, {
  operation: u8(0),
  indirect_op: u8(1),
  nr_segments: u16(2),
  id: u64(8),
  sector_number: u64(16),
  handle: u16(24),
  indirect_grefs: array(28, 8, u32(0)),
});

/** The back end's answer: the request's `id` and `operation`, and a status. */
export const blkif_response = struct("struct blkif_response", 16, {
  id: u64(0),
  operation: u8(8),
  status: i16(10),
});

/** One slot of the blkif ring: a request or a response. */
export const blkif_sring_entry = struct("union blkif_sring_entry", 112, {
  req: nested(0, blkif_request),
  rsp: nested(0, blkif_response),
});

/** The blkif shared ring (`struct blkif_sring`). */
export const blkif_sring = sring("struct blkif_sring", blkif_sring_entry);

/**
 * XenStore keys of the blkif handshake, as `io/blkif.h` documents them. The
 * back end writes its keys under `backend/vbd/<domid>/<devid>`, the front end
 * under `device/vbd/<devid>`.
 */
export const BLKIF_XENSTORE_KEYS = {
  /** Backend: size of the disk in units of `sector-size`. */
  sectors: "sectors",
  /** Backend: logical sector size in bytes. */
  sectorSize: "sector-size",
  /** Backend: physical sector size in bytes. */
  physicalSectorSize: "physical-sector-size",
  /** Backend: `VDISK_*` bits. */
  info: "info",
  /** Backend: "r" or "w". */
  mode: "mode",
  /** Backend: 1 if `BLKIF_OP_FLUSH_DISKCACHE` is supported. */
  featureFlushCache: "feature-flush-cache",
  /** Backend: 1 if `BLKIF_OP_WRITE_BARRIER` is supported. */
  featureBarrier: "feature-barrier",
  /** Backend: 1 if `BLKIF_OP_DISCARD` is supported. */
  featureDiscard: "feature-discard",
  /** Both: 1 if grants are kept mapped and reused across requests. */
  featurePersistent: "feature-persistent",
  /** Backend: most segments an indirect request may carry. */
  featureMaxIndirectSegments: "feature-max-indirect-segments",
  /** Backend: log2 of the most ring pages it accepts. */
  maxRingPageOrder: "max-ring-page-order",
  /** Frontend: log2 of the ring pages it uses (then `ring-ref0`..`ring-refN`). */
  ringPageOrder: "ring-page-order",
  /** Frontend: grant ref of a single-page ring. */
  ringRef: "ring-ref",
  /** Frontend: the event channel port. */
  eventChannel: "event-channel",
  /** Frontend: ABI of the ring's structs ("x86_64-abi"). */
  protocol: "protocol",
  /** Frontend: device type ("disk", "cdrom"). */
  deviceType: "device-type",
  /** Frontend: virtual device number. */
  virtualDevice: "virtual-device",
} as const;
