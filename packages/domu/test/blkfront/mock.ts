/**
 * Test doubles for blkfront: guest memory with a grant table (pages, who
 * maps them, read-only grants), and a scripted back end over the same ring
 * that decodes requests with Xen's layouts and answers when told to.
 */
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_OP, BLKIF_RSP, PAGE_SIZE, blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment, decodeStruct } from "@pvkit/abi";
import { BackRing, structCodec, type Codec } from "@pvkit/ring";
import { blkif_response } from "@pvkit/abi";
import type { BlkDataPage, BlkfrontMemory, BlkResponse } from "@pvkit/domu";
import type { XenError } from "@pvkit/kernel";

/** Pages and grants of a mock guest. */
export class MockMemory implements BlkfrontMemory {
  readonly grants = new Map<number, { page: BlkDataPage; readonly: boolean; mapped: number }>();
  private nextRef = 8;
  private nextFrame = 100;
  allocated = 0;
  granted = 0;
  ended = 0;

  constructor(private readonly limit = Infinity) {}

  allocPage(): BlkDataPage | undefined {
    if (this.allocated >= this.limit) return undefined;
    this.allocated++;
    return { bytes: new Uint8Array(new SharedArrayBuffer(PAGE_SIZE)), frame: this.nextFrame++ };
  }

  freePage(): void {
    this.allocated--;
  }

  grant(page: BlkDataPage, readonly: boolean): E.Either<XenError, number> {
    const ref = this.nextRef++;
    this.grants.set(ref, { page, readonly, mapped: 0 });
    this.granted++;
    return E.right(ref);
  }

  endGrant(gref: number): boolean {
    const g = this.grants.get(gref);
    if (g === undefined) return false;
    if (g.mapped > 0) return false;
    this.grants.delete(gref);
    this.ended++;
    return true;
  }

  /** Ring pages for a front ring. */
  ringPages(n = 1): Uint8Array[] {
    return Array.from({ length: n }, () => new Uint8Array(new SharedArrayBuffer(PAGE_SIZE)));
  }
}

/** A request as the mock back end decoded it. */
export interface Decoded {
  operation: number;
  id: bigint;
  sector: bigint;
  indirect: boolean;
  segments: { gref: number; first: number; last: number }[];
  indirectGrefs: number[];
  nrSectors?: bigint;
  flag?: number;
}

const raw: Codec<Uint8Array> = {
  size: blkif_request.size,
  read: (v, o) => new Uint8Array(v.buffer, v.byteOffset + o, blkif_request.size).slice(),
  write: () => {},
};

/** A back end driven by the test: takes requests, answers them when and how it is told. */
export class MockBack {
  readonly ring: BackRing<Uint8Array, BlkResponse>;
  readonly disk: Uint8Array;
  notified = 0;

  constructor(
    pages: Uint8Array[],
    private readonly mem: MockMemory,
    sectors = 2048,
  ) {
    this.ring = BackRing.attach(pages, { request: raw, response: structCodec(blkif_response) });
    this.disk = new Uint8Array(sectors * 512);
  }

  /** Takes every request published. */
  take(): Decoded[] {
    const out: Decoded[] = [];
    for (let r; (r = this.ring.takeRequest()) !== undefined; ) out.push(this.decode(r));
    return out;
  }

  private decode(bytes: Uint8Array): Decoded {
    const view = new DataView(bytes.buffer);
    const op = bytes[0]!;
    if (op === BLKIF_OP.DISCARD) {
      const d = decodeStruct(blkif_request_discard, view);
      return { operation: op, id: d.id, sector: d.sector_number, indirect: false, segments: [], indirectGrefs: [], nrSectors: d.nr_sectors, flag: d.flag };
    }
    if (op === BLKIF_OP.INDIRECT) {
      const d = decodeStruct(blkif_request_indirect, view);
      const pages = Math.ceil(d.nr_segments / 512);
      const grefs = d.indirect_grefs.slice(0, pages);
      const segments: Decoded["segments"] = [];
      for (const g of grefs) {
        const page = this.mem.grants.get(g)!.page.bytes;
        const pv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
        for (let i = 0; i < 512 && segments.length < d.nr_segments; i++) {
          const s = decodeStruct(blkif_request_segment, pv, i * 8);
          segments.push({ gref: s.gref, first: s.first_sect, last: s.last_sect });
        }
      }
      return { operation: d.indirect_op, id: d.id, sector: d.sector_number, indirect: true, segments, indirectGrefs: grefs };
    }
    const d = decodeStruct(blkif_request, view);
    return { operation: op, id: d.id, sector: d.sector_number, indirect: false, segments: d.seg.slice(0, d.nr_segments).map((s) => ({ gref: s.gref, first: s.first_sect, last: s.last_sect })), indirectGrefs: [] };
  }

  /** Does `req`'s I/O on the disk (checking grant modes) and answers `status` (default: OK unless a grant is wrong). */
  serve(req: Decoded, status?: number, operation = req.indirect ? req.operation : req.operation): void {
    let st = status ?? BLKIF_RSP.OKAY;
    if (status === undefined) {
      let at = Number(req.sector) * 512;
      for (const s of req.segments) {
        const g = this.mem.grants.get(s.gref);
        const n = (s.last - s.first + 1) * 512;
        if (g === undefined || (req.operation === BLKIF_OP.READ && g.readonly)) {
          st = BLKIF_RSP.ERROR;
          break;
        }
        if (req.operation === BLKIF_OP.READ) g.page.bytes.set(this.disk.subarray(at, at + n), s.first * 512);
        else if (req.operation === BLKIF_OP.WRITE || req.operation === BLKIF_OP.FLUSH_DISKCACHE) this.disk.set(g.page.bytes.subarray(s.first * 512, (s.last + 1) * 512), at);
        at += n;
      }
      if (req.operation === BLKIF_OP.DISCARD) this.disk.fill(0, Number(req.sector) * 512, Number(req.sector + req.nrSectors!) * 512);
    }
    this.respond(req.id, req.operation === BLKIF_OP.DISCARD ? BLKIF_OP.DISCARD : operation, st);
  }

  /** Puts a response (any response) and pushes it. */
  respond(id: bigint, operation: number, status: number): void {
    this.ring.putResponse({ id, operation, status });
    if (this.ring.pushResponses()) this.notified++;
  }

  /** Takes and serves everything, `rounds` times. */
  auto(): number {
    let n = 0;
    for (const r of this.take()) {
      this.serve(r);
      n++;
    }
    return n;
  }
}
