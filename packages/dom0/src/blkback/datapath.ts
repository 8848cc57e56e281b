/**
 * blkback's data path: requests off the shared ring, I/O on the backing
 * store, responses back. It knows nothing of XenStore; the xenbus side
 * (`xenbus.ts`) negotiates, maps the ring and binds the event channel, then
 * hands this class the mapped pages and calls {@link BlkbackRing.kick} on
 * every event.
 *
 * ## A request's life (as Linux's `do_block_io_op` and `dispatch_rw_block_io`)
 *
 * 1. **Copy and check.** `takeRequest` copies the 112-byte slot out of the
 *    ring once; {@link checkRequest} decodes and checks the copy (operation,
 *    segment count, `first_sect`/`last_sect`, read-only disk, sector range).
 *    A refused request is answered at once with `BLKIF_RSP_ERROR` or
 *    `BLKIF_RSP_EOPNOTSUPP`.
 * 2. **Indirect pages.** An indirect request's descriptor pages are mapped
 *    read-only, copied out and unmapped; its segments are then checked like
 *    inline ones.
 * 3. **Map.** Each segment's page is mapped by grant
 *    (`GNTTABOP_map_grant_ref`): read-only for a write, writable for a read.
 *    With persistent grants (`feature-persistent` on both ends) a page is
 *    mapped writable the first time its grant ref is seen and kept mapped
 *    for the life of the connection (blkif.h note 8), up to
 *    {@link BlkbackRingOptions.maxPersistentGrants}; beyond that, pages are
 *    mapped per request. A grant that does not map fails the request.
 * 4. **I/O.** A write's data is gathered from the pages into one buffer and
 *    its per-request mappings are dropped; a read's pages stay mapped until
 *    the data comes back and is scattered into them. A flush with segments
 *    writes them, then flushes.
 * 5. **Respond.** The response (`id`, `operation` — an indirect request's
 *    `indirect_op` — and status) is pushed, and the front end notified if
 *    its `rsp_event` asks for it.
 *
 * A front end that breaks the ring (a `req_prod` claiming more requests
 * than the ring holds) raises `RingProtocolError`; this ring stops taking
 * requests and reports it through {@link BlkbackRingOptions.onBroken}. The
 * device disconnects; other devices are untouched.
 *
 * Everything here runs on the kernel's vCPU: from the event handler, and
 * from store completions (which the store delivers there). Calls may nest
 * (a hypercall made here can deliver an upcall that kicks the ring again),
 * so {@link BlkbackRing.kick} runs one loop at a time and re-runs it for
 * work that arrived meanwhile.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_RSP } from "@pvkit/abi";
import { BackRing, RingProtocolError, type RingMemory } from "@pvkit/ring";
import type { XenError } from "@pvkit/kernel";
import {
  BLKIF_SECTOR_SIZE,
  blkifRequestBytes,
  blkifResponseCodec,
  checkIndirectSegments,
  checkRequest,
  type BlkDiskLimits,
  type BlkifResponse,
  type BlkSegment,
  type BlkValidRequest,
} from "./request.js";
import type { BlockStore } from "./store.js";

/** A page of the front end's, mapped here by grant. */
export interface BlkMappedPage {
  /** The grant reference it was mapped through. */
  readonly gref: number;
  /** The page's 4096 bytes (aliasing the frame: writes are seen by the front end). */
  readonly bytes: Uint8Array;
  /** Whether it was mapped writable. */
  readonly writable: boolean;
}

/** Maps the front end's grants (one front-end domain's). */
export interface BlkGrantMapper {
  /** Maps grant `gref` (`GNTTABOP_map_grant_ref`), writable or not. */
  map(gref: number, writable: boolean): E.Either<XenError, BlkMappedPage>;
  /** Unmaps a page {@link BlkGrantMapper.map} mapped. */
  unmap(page: BlkMappedPage): E.Either<XenError, void>;
}

/** What a {@link BlkbackRing} is built from. */
export interface BlkbackRingOptions {
  /** The ring's pages, mapped, in ring order. */
  readonly ring: RingMemory;
  /** Maps the front end's data pages. */
  readonly grants: BlkGrantMapper;
  /** The disk. */
  readonly store: BlockStore;
  /** The disk as the checks see it. */
  readonly limits: BlkDiskLimits;
  /** Whether both ends agreed on persistent grants. */
  readonly persistent: boolean;
  /** Most grants kept mapped with persistent grants (Linux's default: 1056). */
  readonly maxPersistentGrants?: number;
  /** Sends an event to the front end. */
  notify(): void;
  /** Called once when the front end breaks the ring. */
  onBroken(error: RingProtocolError): void;
}

/** Counters of a {@link BlkbackRing}, for tests and logs. */
export interface BlkbackStats {
  /** Requests taken off the ring. */
  requests: number;
  /** Answered with `BLKIF_RSP_OKAY`. */
  okay: number;
  /** Answered with `BLKIF_RSP_ERROR`. */
  errors: number;
  /** Answered with `BLKIF_RSP_EOPNOTSUPP`. */
  unsupported: number;
  /** Well-formed reads taken (Linux blkback's `rd_req`, xentop's VBD_RD). */
  rdReq: number;
  /** Well-formed writes taken (`wr_req`, VBD_WR). */
  wrReq: number;
  /** Cache flushes taken (`f_req`). */
  fReq: number;
  /** Discards taken (`ds_req`). */
  dsReq: number;
  /** Sectors those reads asked for (`rd_sect`, VBD_RSECT). */
  rdSect: number;
  /** Sectors the writes and flushes carried (`wr_sect`, VBD_WSECT). */
  wrSect: number;
  /** Grant maps made (data and indirect pages; not the ring). */
  maps: number;
  /** Grant unmaps made. */
  unmaps: number;
  /** Segments served from a persistent mapping. */
  persistentHits: number;
  /** The reasons of the last few refusals, newest last. */
  refusals: string[];
}

const MAX_REFUSALS_KEPT = 16;

/** A page held for a request, and whether it is a persistent mapping (kept after the request). */
interface Held {
  readonly page: BlkMappedPage;
  readonly keep: boolean;
}

/** A request whose store operation is running. */
interface InFlight {
  readonly id: bigint;
  readonly operation: number;
  /** Pages to scatter a read into; empty for writes (their pages were released at submission). */
  readonly pages: readonly Held[];
  readonly segments: readonly BlkSegment[];
}

/** The back end of one blkif ring. */
export class BlkbackRing {
  private readonly ring: BackRing<Uint8Array, BlkifResponse>;
  private readonly persistentMaps = new Map<number, BlkMappedPage>();
  private readonly completions: { readonly req: InFlight; readonly result: E.Either<Error, Uint8Array | undefined> }[] = [];
  private running = false;
  private again = false;
  private drained: (() => void) | undefined;
  private inFlightCount = 0;
  /** `open`, `stopping` (taking no more requests), `broken` (the front end broke the ring), or `closed`. */
  state: "open" | "stopping" | "broken" | "closed" = "open";
  /** Counters. */
  readonly stats: BlkbackStats = { requests: 0, okay: 0, errors: 0, unsupported: 0, rdReq: 0, wrReq: 0, fReq: 0, dsReq: 0, rdSect: 0, wrSect: 0, maps: 0, unmaps: 0, persistentHits: 0, refusals: [] };

  /** Attaches to the front end's ring (`BACK_RING_INIT`). */
  constructor(private readonly o: BlkbackRingOptions) {
    this.ring = BackRing.attach(o.ring, { request: blkifRequestBytes, response: blkifResponseCodec });
  }

  /** Slots in the ring. */
  get size(): number {
    return this.ring.size;
  }

  /** Requests whose store operation has not completed. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Grants kept mapped (persistent grants). */
  get persistentGrants(): number {
    return this.persistentMaps.size;
  }

  /** Does the work there is: finished I/O answered, new requests taken. Call on every event from the front end. */
  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        this.finishCompleted();
        if (this.state === "open") this.takeRequests();
      } while (this.again);
    } catch (e) {
      if (!(e instanceof RingProtocolError)) throw e;
      this.state = "broken";
      this.o.onBroken(e);
    } finally {
      this.running = false;
    }
    if (this.inFlightCount === 0 && this.drained !== undefined) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
  }

  /**
   * Stops taking requests, waits for the I/O in flight to complete (its
   * responses are still sent, unless the ring is broken), then unmaps the
   * persistent grants. The caller then unmaps the ring and closes the port.
   */
  async shutdown(): Promise<void> {
    if (this.state === "closed") return;
    if (this.state === "open") this.state = "stopping";
    if (this.inFlightCount > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    for (const page of this.persistentMaps.values()) this.unmap(page);
    this.persistentMaps.clear();
    this.state = "closed";
  }

  private takeRequests(): void {
    do {
      for (let raw; this.state === "open" && (raw = this.ring.takeRequest()) !== undefined; ) {
        this.stats.requests++;
        this.dispatch(raw);
      }
    } while (this.state === "open" && this.ring.finalCheckForRequests());
  }

  private respond(id: bigint, operation: number, status: number): void {
    if (status === BLKIF_RSP.OKAY) this.stats.okay++;
    else if (status === BLKIF_RSP.EOPNOTSUPP) this.stats.unsupported++;
    else this.stats.errors++;
    if (this.state === "broken" || this.state === "closed") return;
    this.ring.putResponse({ id, operation, status });
    if (this.ring.pushResponses()) this.o.notify();
  }

  private refuse(id: bigint, operation: number, status: number, reason: string): void {
    this.stats.refusals.push(reason);
    if (this.stats.refusals.length > MAX_REFUSALS_KEPT) this.stats.refusals.shift();
    this.respond(id, operation, status);
  }

  private dispatch(raw: Uint8Array): void {
    const checked = checkRequest(raw, this.o.limits);
    if (E.isLeft(checked)) return this.refuse(checked.left.id, checked.left.operation, checked.left.status, checked.left.reason);
    const req = checked.right;
    switch (req.kind) {
      case "discard":
        this.stats.dsReq++;
        if (req.sectors === 0n) return this.respond(req.id, req.operation, BLKIF_RSP.OKAY);
        return this.submit({ id: req.id, operation: req.operation, pages: [], segments: [] }, (done) =>
          this.o.store.discard(Number(req.sector) * BLKIF_SECTOR_SIZE, Number(req.sectors) * BLKIF_SECTOR_SIZE, done),
        );
      case "indirect": {
        const segs = this.readIndirect(req);
        if (E.isLeft(segs)) return this.refuse(req.id, req.operation, BLKIF_RSP.ERROR, segs.left);
        return this.transfer(req.write ? "write" : "read", req.id, req.operation, req.sector, segs.right);
      }
      default:
        return this.transfer(req.kind, req.id, req.operation, req.sector, req.segments);
    }
  }

  /** Maps an indirect request's descriptor pages, copies the segments out, unmaps, and checks them. */
  private readIndirect(req: Extract<BlkValidRequest, { kind: "indirect" }>): E.Either<string, readonly BlkSegment[]> {
    const held: Held[] = [];
    for (const gref of req.grefs) {
      const h = this.acquire(gref, false);
      if (E.isLeft(h)) {
        this.release(held);
        return E.left(`indirect page gref ${gref}: ${h.left.message}`);
      }
      held.push(h.right);
    }
    const checked = checkIndirectSegments(
      req,
      held.map((h) => h.page.bytes),
      this.o.limits,
    );
    this.release(held);
    return E.bimap(
      (r: { reason: string }) => r.reason,
      (ok: { segments: BlkSegment[] }) => ok.segments,
    )(checked);
  }

  /** Steps 3 to 5 for a read, a write or a flush. */
  private transfer(kind: "read" | "write" | "flush", id: bigint, operation: number, sector: bigint, segments: readonly BlkSegment[]): void {
    // Counted as Linux's blkback counts them: when taken, whatever their outcome.
    const sectors = segments.reduce((n, s) => n + s.last - s.first + 1, 0);
    if (kind === "read") {
      this.stats.rdReq++;
      this.stats.rdSect += sectors;
    } else {
      if (kind === "write") this.stats.wrReq++;
      else this.stats.fReq++;
      this.stats.wrSect += sectors;
    }
    const held: Held[] = [];
    for (const s of segments) {
      const h = this.acquire(s.gref, kind === "read");
      if (E.isLeft(h)) {
        this.release(held);
        return this.refuse(id, operation, BLKIF_RSP.ERROR, `gref ${s.gref}: ${h.left.message}`);
      }
      held.push(h.right);
    }
    const offset = Number(sector) * BLKIF_SECTOR_SIZE;
    const store = this.o.store;
    if (kind === "read") {
      return this.submit({ id, operation, pages: held, segments }, (done) => store.read(offset, sectors * BLKIF_SECTOR_SIZE, done));
    }
    const data = gather(held, segments);
    this.release(held);
    if (kind === "write") return this.submit({ id, operation, pages: [], segments: [] }, (done) => store.write(offset, data, done));
    if (segments.length === 0) return this.submit({ id, operation, pages: [], segments: [] }, (done) => store.flush(done));
    return this.submit({ id, operation, pages: [], segments: [] }, (done) =>
      store.write(offset, data, (w) => (E.isLeft(w) ? done(w) : store.flush(done))),
    );
  }

  /** Starts a store operation; its completion is queued and handled by the next {@link BlkbackRing.kick} loop. */
  private submit<T extends Uint8Array | void>(req: InFlight, start: (done: (r: E.Either<Error, T>) => void) => void): void {
    this.inFlightCount++;
    let called = false;
    start((result) => {
      if (called) return;
      called = true;
      this.completions.push({ req, result: result as E.Either<Error, Uint8Array | undefined> });
      this.kick();
    });
  }

  /** Answers every request whose store operation completed: scatter a read's data, release its pages, respond. */
  private finishCompleted(): void {
    for (let c; (c = this.completions.shift()) !== undefined; ) {
      const { req, result } = c;
      if (E.isRight(result) && result.right !== undefined && req.pages.length > 0) scatter(result.right, req.pages, req.segments);
      this.release(req.pages);
      this.inFlightCount--;
      this.respond(req.id, req.operation, E.isRight(result) ? BLKIF_RSP.OKAY : BLKIF_RSP.ERROR);
    }
  }

  /** A mapping of `gref`: the persistent one, a new persistent one, or one for this request only. */
  private acquire(gref: number, writable: boolean): E.Either<XenError, Held> {
    if (this.o.persistent) {
      const kept = this.persistentMaps.get(gref);
      if (kept !== undefined) {
        this.stats.persistentHits++;
        return E.right({ page: kept, keep: true });
      }
      if (this.persistentMaps.size < (this.o.maxPersistentGrants ?? 1056)) {
        // Persistent grants are mapped writable whatever this request does (blkif.h note 8).
        const m = this.map(gref, true);
        if (E.isRight(m)) this.persistentMaps.set(gref, m.right);
        return E.map((page: BlkMappedPage) => ({ page, keep: true }))(m);
      }
    }
    return E.map((page: BlkMappedPage) => ({ page, keep: false }))(this.map(gref, writable));
  }

  private map(gref: number, writable: boolean): E.Either<XenError, BlkMappedPage> {
    const m = this.o.grants.map(gref, writable);
    if (E.isRight(m)) this.stats.maps++;
    return m;
  }

  private unmap(page: BlkMappedPage): void {
    if (E.isRight(this.o.grants.unmap(page))) this.stats.unmaps++;
  }

  private release(held: readonly Held[]): void {
    for (const h of held) if (!h.keep) this.unmap(h.page);
  }
}

/** Copies a write's data out of its pages into one buffer. */
function gather(held: readonly Held[], segments: readonly BlkSegment[]): Uint8Array {
  const total = segments.reduce((n, s) => n + (s.last - s.first + 1) * BLKIF_SECTOR_SIZE, 0);
  const out = new Uint8Array(total);
  let at = 0;
  segments.forEach((s, i) => {
    const from = s.first * BLKIF_SECTOR_SIZE;
    const to = (s.last + 1) * BLKIF_SECTOR_SIZE;
    out.set(held[i]!.page.bytes.subarray(from, to), at);
    at += to - from;
  });
  return out;
}

/** Copies a read's data into its pages, segment by segment. */
function scatter(data: Uint8Array, held: readonly Held[], segments: readonly BlkSegment[]): void {
  let at = 0;
  segments.forEach((s, i) => {
    const n = (s.last - s.first + 1) * BLKIF_SECTOR_SIZE;
    held[i]!.page.bytes.set(data.subarray(at, at + n), s.first * BLKIF_SECTOR_SIZE);
    at += n;
  });
}
