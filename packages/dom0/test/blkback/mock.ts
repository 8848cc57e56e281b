/**
 * A driver-side mock for blkback's tests: builds raw request slots with
 * Xen's layouts (including malformed ones), owns a front ring over plain
 * pages, and stands in for the grant table (pages by reference, read-only
 * grants, mapping counts) so the back end's data path runs without a
 * hypervisor.
 */
import * as E from "fp-ts/lib/Either.js";
import {
  BLKIF_OP,
  GNTST,
  PAGE_SIZE,
  blkif_request,
  blkif_request_discard,
  blkif_request_indirect,
  blkif_request_segment,
  encodeStruct,
} from "@pvkit/abi";
import { FrontRing, type Codec } from "@pvkit/ring";
import { blkifResponseCodec, type BlkGrantMapper, type BlkMappedPage, type BlkifResponse } from "@pvkit/dom0";
import type { XenError } from "@pvkit/kernel";

/** A segment as the mock writes it. */
export interface Seg {
  gref: number;
  first: number;
  last: number;
}

/** A `blkif_request` (read, write, flush, or any operation byte). */
export function rw(op: number, id: bigint, sector: bigint, segs: readonly Seg[], nrSegments = segs.length): Uint8Array {
  const bytes = new Uint8Array(blkif_request.size);
  const view = new DataView(bytes.buffer);
  encodeStruct(blkif_request, view, 0, {
    operation: op,
    nr_segments: nrSegments,
    handle: 0xca00,
    id,
    sector_number: sector,
    seg: segs.slice(0, 11).map((s) => ({ gref: s.gref, first_sect: s.first, last_sect: s.last })),
  });
  return bytes;
}

/** A `blkif_request_discard`. */
export function discard(id: bigint, sector: bigint, sectors: bigint, flag = 0): Uint8Array {
  const bytes = new Uint8Array(blkif_request.size);
  encodeStruct(blkif_request_discard, new DataView(bytes.buffer), 0, { operation: BLKIF_OP.DISCARD, flag, handle: 0, id, sector_number: sector, nr_sectors: sectors });
  return bytes;
}

/** A `blkif_request_indirect`. */
export function indirect(indirectOp: number, id: bigint, sector: bigint, nrSegments: number, grefs: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(blkif_request.size);
  encodeStruct(blkif_request_indirect, new DataView(bytes.buffer), 0, { operation: BLKIF_OP.INDIRECT, indirect_op: indirectOp, nr_segments: nrSegments, id, sector_number: sector, handle: 0, indirect_grefs: [...grefs] });
  return bytes;
}

/** Fills an indirect page with segment descriptors. */
export function indirectPage(segs: readonly Seg[]): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const view = new DataView(page.buffer);
  segs.forEach((s, i) => encodeStruct(blkif_request_segment, view, i * 8, { gref: s.gref, first_sect: s.first, last_sect: s.last }));
  return page;
}

const raw: Codec<Uint8Array> = {
  size: blkif_request.size,
  read: (v, o) => new Uint8Array(v.buffer, v.byteOffset + o, blkif_request.size).slice(),
  write: (v, o, x) => new Uint8Array(v.buffer, v.byteOffset + o, blkif_request.size).set(x),
};

/** The grant table of a mock front end: pages it granted, and who maps them. */
export class MockGrants implements BlkGrantMapper {
  readonly pages = new Map<number, { bytes: Uint8Array; readonly: boolean; maps: number }>();
  private next = 8;
  maps = 0;
  unmaps = 0;

  /** Grants `bytes` (a page); returns its ref. */
  grant(bytes: Uint8Array = new Uint8Array(PAGE_SIZE), readonly = false): number {
    const ref = this.next++;
    this.pages.set(ref, { bytes, readonly, maps: 0 });
    return ref;
  }

  /** Mappings still held, over every page. */
  get mapped(): number {
    let n = 0;
    for (const p of this.pages.values()) n += p.maps;
    return n;
  }

  map(gref: number, writable: boolean): E.Either<XenError, BlkMappedPage> {
    const p = this.pages.get(gref);
    if (p === undefined) return E.left({ op: "GNTTABOP_map_grant_ref", code: GNTST.bad_gntref, name: "GNTST_bad_gntref", message: `GNTTABOP_map_grant_ref: GNTST_bad_gntref (${gref})` });
    if (writable && p.readonly) return E.left({ op: "GNTTABOP_map_grant_ref", code: GNTST.permission_denied, name: "GNTST_permission_denied", message: "GNTTABOP_map_grant_ref: GNTST_permission_denied" });
    p.maps++;
    this.maps++;
    return E.right({ gref, bytes: p.bytes, writable });
  }

  unmap(page: BlkMappedPage): E.Either<XenError, void> {
    const p = this.pages.get(page.gref);
    if (p === undefined || p.maps === 0) return E.left({ op: "GNTTABOP_unmap_grant_ref", code: GNTST.bad_handle, name: "GNTST_bad_handle", message: "GNTTABOP_unmap_grant_ref: GNTST_bad_handle" });
    p.maps--;
    this.unmaps++;
    return E.right(undefined);
  }
}

/** A front ring of raw slots over `pages` pages, for putting hand-made requests. */
export class MockFront {
  readonly pages: Uint8Array[];
  readonly ring: FrontRing<Uint8Array, BlkifResponse>;
  readonly responses: BlkifResponse[] = [];
  notified = 0;

  constructor(pages = 1) {
    this.pages = Array.from({ length: pages }, () => new Uint8Array(new SharedArrayBuffer(PAGE_SIZE)));
    this.ring = FrontRing.init(this.pages, { request: raw, response: blkifResponseCodec });
  }

  /** Puts and publishes requests. */
  send(...reqs: Uint8Array[]): void {
    for (const r of reqs) this.ring.putRequest(r);
    this.ring.pushRequests();
  }

  /** Takes every response published so far. */
  take(): BlkifResponse[] {
    const got: BlkifResponse[] = [];
    do {
      for (let r; (r = this.ring.takeResponse()) !== undefined; ) got.push(r);
    } while (this.ring.finalCheckForResponses());
    this.responses.push(...got);
    return got;
  }
}
