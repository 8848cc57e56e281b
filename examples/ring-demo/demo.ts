/**
 * The ring demo: a blkif front end and back end exchanging block requests
 * over one shared page, exactly as blkfront and blkback do, with the event
 * channel between them reduced to a counter.
 *
 * What real Xen adds around this (grant tables to share the data pages, an
 * event channel to carry the notifications, XenStore to find each other) is
 * stood in for by the smallest honest stand-ins: the data pages are a list
 * indexed by "grant ref", and a notification is a function call that is
 * counted. The ring page itself is byte-for-byte what Xen's C back end reads
 * (see test/interop/ring-blkif.test.ts).
 *
 * @module
 */
import { BLKIF_OP, BLKIF_RSP, PAGE_SIZE, blkif_request, blkif_response, blkif_sring, cName, type StructValue } from "@pvkit/abi";
import { BackRing, FrontRing, RingProtocolError, structCodec } from "@pvkit/ring";

const SECTOR = 512;
const SECTORS_PER_PAGE = PAGE_SIZE / SECTOR;
const codecs = { request: structCodec(blkif_request), response: structCodec(blkif_response) };
type Req = StructValue<typeof blkif_request>;
type Rsp = StructValue<typeof blkif_response>;

/** What the demo measured, for its test. */
export interface RingDemoResult {
  /** Slots in the one-page ring. */
  readonly ringSlots: number;
  /** Bytes written to the disk and read back. */
  readonly bytesVerified: number;
  /** Notifications each way, and pushes that needed none. */
  readonly events: { readonly frontToBack: number; readonly backToFront: number; readonly suppressed: number };
  /** Status of the flush. */
  readonly flushStatus: number;
  /** Status of the write past the end of the disk. */
  readonly outOfRangeStatus: number;
  /** The back end's report on a front end that lied about its producer index. */
  readonly hostileError: string;
}

/** A disk in memory, served by the back end. */
class MemoryDisk {
  readonly bytes: Uint8Array;
  constructor(readonly sectors: number) {
    this.bytes = new Uint8Array(sectors * SECTOR);
  }
}

/**
 * Serves one request: copies between the disk and the "granted" data pages.
 * Like blkback, it checks the request it copied out of the ring before use.
 */
function serve(disk: MemoryDisk, grants: readonly Uint8Array[], req: Req): number {
  if (req.operation === BLKIF_OP.FLUSH_DISKCACHE) return BLKIF_RSP.OKAY;
  if (req.operation !== BLKIF_OP.READ && req.operation !== BLKIF_OP.WRITE) return BLKIF_RSP.EOPNOTSUPP;
  if (req.nr_segments < 1 || req.nr_segments > req.seg.length) return BLKIF_RSP.ERROR;
  let sector = Number(req.sector_number);
  for (const seg of req.seg.slice(0, req.nr_segments)) {
    const page = grants[seg.gref];
    const count = seg.last_sect - seg.first_sect + 1;
    if (page === undefined || seg.last_sect >= SECTORS_PER_PAGE || count < 1 || sector + count > disk.sectors) return BLKIF_RSP.ERROR;
    const onDisk = disk.bytes.subarray(sector * SECTOR, (sector + count) * SECTOR);
    const inPage = page.subarray(seg.first_sect * SECTOR, (seg.last_sect + 1) * SECTOR);
    if (req.operation === BLKIF_OP.WRITE) onDisk.set(inPage);
    else inPage.set(onDisk);
    sector += count;
  }
  return BLKIF_RSP.OKAY;
}

/** Runs the demo, reporting each step through `log`. */
export function runRingDemo(log: (line: string) => void): RingDemoResult {
  const sharedPage = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
  const disk = new MemoryDisk(2048); // 1 MiB
  const grants = Array.from({ length: 64 }, () => new Uint8Array(PAGE_SIZE));
  const events = { frontToBack: 0, backToFront: 0, suppressed: 0 };

  const front = FrontRing.init(sharedPage, codecs);
  const back = BackRing.attach<Req, Rsp>(sharedPage, codecs);
  log(`pvkit ring demo: blkfront and blkback over one shared page (io/ring.h, io/blkif.h)`);
  log(`ring: ${PAGE_SIZE}-byte page, ${blkif_request.size}-byte slots, ${front.size} slots; disk: ${disk.sectors} sectors`);

  /** The back end's event handler: Xen's do { take all; push } while (final check) loop. */
  const backEndEvent = (): string => {
    let served = 0;
    do {
      for (let req; (req = back.takeRequest()) !== undefined; served++) {
        back.putResponse({ id: req.id, operation: req.operation, status: serve(disk, grants, req) });
      }
      if (back.pushResponses()) events.backToFront++;
      else events.suppressed++;
    } while (back.finalCheckForRequests());
    return `back:  served ${served} request(s), pushed responses, rsp_prod=${back.rspProdPvt}`;
  };

  /**
   * Puts and pushes each batch in turn, "notifies" the back end if any push
   * asked for it, and collects the answers. Two batches pushed before the back
   * end runs show the hold-off: the second push needs no event.
   */
  const submit = (what: string, ...batches: (readonly Partial<Req>[])[]): Rsp[] => {
    let notified = false;
    for (const batch of batches) {
      for (const r of batch) front.putRequest(r as Req);
      const notify = front.pushRequests();
      log(`front: ${what}: ${batch.length} request(s), req_prod=${front.reqProdPvt}, ${notify ? "notify back end" : "no notification needed: back end not yet re-armed"}`);
      if (notify) events.frontToBack++;
      else events.suppressed++;
      notified ||= notify;
    }
    if (notified) log(backEndEvent());
    const rsps: Rsp[] = [];
    do for (let r; (r = front.takeResponse()) !== undefined; ) rsps.push(r);
    while (front.finalCheckForResponses());
    const statuses = [...new Set(rsps.map((r) => cName(BLKIF_RSP, r.status)))].join(", ");
    log(`front: ${rsps.length} response(s): ${statuses}`);
    return rsps;
  };

  // Write a pattern over the first 256 KiB: 8 requests of 8 full pages each.
  const pattern = (i: number) => (i * 31 + (i >>> 9)) & 0xff;
  const bytesPerRequest = 8 * PAGE_SIZE;
  const rw = (operation: number, n: number): Partial<Req> => ({
    operation,
    nr_segments: 8,
    id: BigInt(n),
    sector_number: BigInt((n * bytesPerRequest) / SECTOR),
    seg: Array.from({ length: 8 }, (_, s) => ({ gref: (n % 8) * 8 + s, first_sect: 0, last_sect: 7 })),
  });
  const requests = 8;
  for (let n = 0; n < requests; n++) {
    for (let s = 0; s < 8; s++) {
      const page = grants[(n % 8) * 8 + s]!;
      for (let b = 0; b < PAGE_SIZE; b++) page[b] = pattern(n * bytesPerRequest + s * PAGE_SIZE + b);
    }
  }
  submit("WRITE 256 KiB", Array.from({ length: requests }, (_, n) => rw(BLKIF_OP.WRITE, n)));
  const flush = submit("FLUSH_DISKCACHE", [{ operation: BLKIF_OP.FLUSH_DISKCACHE, nr_segments: 0, id: 100n }]);

  for (const g of grants) g.fill(0);
  const reads = Array.from({ length: requests }, (_, n) => rw(BLKIF_OP.READ, n));
  submit("READ 256 KiB back", reads.slice(0, requests / 2), reads.slice(requests / 2));
  let mismatches = 0;
  for (let n = 0; n < requests; n++) {
    for (let s = 0; s < 8; s++) {
      const page = grants[(n % 8) * 8 + s]!;
      for (let b = 0; b < PAGE_SIZE; b++) if (page[b] !== pattern(n * bytesPerRequest + s * PAGE_SIZE + b)) mismatches++;
    }
  }
  if (mismatches > 0) throw new Error(`${mismatches} bytes read back differ from what was written`);
  log(`verify: all ${requests * bytesPerRequest} bytes read back match the pattern written`);

  const outOfRange = submit("WRITE past the end of the disk", [
    { operation: BLKIF_OP.WRITE, nr_segments: 1, id: 101n, sector_number: BigInt(disk.sectors - 4), seg: [{ gref: 0, first_sect: 0, last_sect: 7 }] },
  ]);

  // A broken or hostile front end claims far more requests than the ring holds.
  blkif_sring.fields.req_prod.set(new DataView(sharedPage.buffer), 0, (front.reqProdPvt + 1000) >>> 0);
  let hostileError = "";
  try {
    back.takeRequest();
  } catch (e) {
    if (!(e instanceof RingProtocolError)) throw e;
    hostileError = e.message;
  }
  log(`hostile front end: req_prod set 1000 past the ring; back end refuses: ${hostileError}`);
  log(`events: front→back ${events.frontToBack}, back→front ${events.backToFront}, pushes that needed no notification ${events.suppressed}`);

  return {
    ringSlots: front.size,
    bytesVerified: requests * bytesPerRequest,
    events,
    flushStatus: flush[0]!.status,
    outOfRangeStatus: outOfRange[0]!.status,
    hostileError,
  };
}
