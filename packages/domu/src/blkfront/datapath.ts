/**
 * blkfront's data path: a block device over one blkif ring, with a queue,
 * apart from the XenStore negotiation (`xenbus.ts`), which sets up the ring
 * and the channel and then {@link BlkfrontRing.open | opens} this with what
 * was agreed.
 *
 * ## The queue
 *
 * Guest code calls {@link BlkfrontRing.read}, {@link BlkfrontRing.write},
 * {@link BlkfrontRing.flush} and {@link BlkfrontRing.discard}; each returns a
 * promise of an `Either`. An operation is cut into requests
 * ({@link planTransfer}) that wait in a FIFO for a free ring slot and for
 * data pages, and are put on the ring as both come free. Two bounds give
 * back-pressure instead of unbounded buffering:
 *
 * - **the queue**: at most `queueDepth` operations are admitted at once;
 *   a caller beyond that waits (in order) until one completes;
 * - **the ring**: a request waits in the queue while the ring is full
 *   (`RING_FULL`), and goes out when a response frees a slot.
 *
 * ## Pages and grants
 *
 * Data moves through pages of the guest's own, granted to the back end: at
 * most `maxDataPages` of them, allocated as needed and reused. Without
 * persistent grants each use grants a page afresh — read-only for data the
 * back end only reads (a write's, and indirect descriptor pages), writable
 * for a read — and ends the grant when the response comes, as Mini-OS's
 * blkfront does. With persistent grants (`feature-persistent` on both ends)
 * a page is granted writable once and keeps its grant (blkif.h note 8), so
 * the back end can keep it mapped; the most recently freed page is reused
 * first (a LIFO, as the header recommends). A grant the back end still maps
 * when it should not cannot be ended: its page is set aside and retried
 * later, never reused while mapped.
 *
 * ## Responses
 *
 * The back end is not trusted: a response whose `id` names no request in
 * flight, or whose `operation` is not the request's, is a protocol error
 * ({@link BlkfrontRingOptions.onBroken}): every operation fails and the
 * device closes. `BLKIF_RSP_ERROR` fails the operation with `EIO`;
 * `BLKIF_RSP_EOPNOTSUPP` with `EOPNOTSUPP`, and a flush or discard refused so
 * is not tried again (as Linux blkfront turns the feature off).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_DISCARD, BLKIF_MAX, BLKIF_OP, BLKIF_RSP, XEN_ERRNO } from "@pvkit/abi";
import { FrontRing, RingProtocolError, type RingMemory } from "@pvkit/ring";
import type { XenError } from "@pvkit/kernel";
import {
  BLK_SECTOR_SIZE,
  blkifRequestCodec,
  blkifResponseCodec,
  indirectPagesFor,
  planTransfer,
  writeIndirectPage,
  BLK_SEGMENTS_PER_INDIRECT_PAGE,
  type BlkChunkPlan,
  type BlkGrantedSegment,
  type BlkRequest,
  type BlkResponse,
} from "./requests.js";

/** A page of the guest's, as the data path uses it. */
export interface BlkDataPage {
  /** Its 4096 bytes. */
  readonly bytes: Uint8Array;
  /** The machine frame behind it, which a grant names. */
  readonly frame: number;
}

/** The guest memory and grants the front end needs (granting to its back end's domain). */
export interface BlkfrontMemory {
  /** A free page, or undefined when there is none. */
  allocPage(): BlkDataPage | undefined;
  /** Gives a page back. */
  freePage(page: BlkDataPage): void;
  /** Grants the back end access to `page`; returns the grant reference. */
  grant(page: BlkDataPage, readonly: boolean): E.Either<XenError, number>;
  /** Ends access through `gref`; false (and the grant stays) while the back end still maps it. */
  endGrant(gref: number): boolean;
}

/** An I/O operation that failed: `EIO` (`BLKIF_RSP_ERROR`), `EOPNOTSUPP`, `EINVAL`, `ENODEV` (not connected), `ENOMEM`. */
export interface BlkError extends XenError {
  /** `"read"`, `"write"`, `"flush"` or `"discard"`. */
  readonly op: string;
  /** The `BLKIF_RSP_*` status the back end answered, when it did. */
  readonly status?: number;
}

function blkError(op: string, name: keyof typeof XEN_ERRNO, detail: string, status?: number): BlkError {
  const e = { op, code: -XEN_ERRNO[name], name, message: `${op}: ${name} (${detail})` };
  return status === undefined ? e : { ...e, status };
}

/** The disk and the connection, as negotiated: what {@link BlkfrontRing.open} is given. */
export interface BlkDiskInfo {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  /** The back end's `sector-size`. */
  readonly sectorSize: number;
  /** The back end's `physical-sector-size`. */
  readonly physicalSectorSize: number;
  /** The back end's `info`: `VDISK_*` bits. */
  readonly vdisk: number;
  /** `VDISK_READONLY` is set: the back end will refuse writes. */
  readonly readOnly: boolean;
  /** How a flush is asked: `BLKIF_OP_FLUSH_DISKCACHE`, `BLKIF_OP_WRITE_BARRIER`, or not at all (the back end has no cache to flush). */
  readonly flush: "flush" | "barrier" | "none";
  /** `feature-discard`. */
  readonly discard: boolean;
  /** `discard-secure`. */
  readonly discardSecure: boolean;
  /** Persistent grants in use (both ends said `feature-persistent`). */
  readonly persistent: boolean;
  /** Most segments per request: 11, or the indirect limit agreed. */
  readonly maxSegments: number;
  /** Pages in the ring. */
  readonly ringPages: number;
}

/** What a {@link BlkfrontRing} is built from. */
export interface BlkfrontRingOptions {
  /** The ring's pages, in ring order; {@link BlkfrontRing} initialises them (`SHARED_RING_INIT`). */
  readonly ring: RingMemory;
  /** Pages and grants. */
  readonly memory: BlkfrontMemory;
  /** The `handle` of every request (the device id, as Linux sets it). */
  readonly handle: number;
  /** Operations admitted at once (default 64). */
  readonly queueDepth?: number;
  /** Data and indirect pages at most (default 64). */
  readonly maxDataPages?: number;
  /** Sends an event to the back end. */
  notify(): void;
  /** Called once when the back end breaks the protocol. */
  onBroken(error: RingProtocolError): void;
}

/** Counters of a {@link BlkfrontRing}. */
export interface BlkfrontStats {
  /** Requests put on the ring. */
  requests: number;
  /** Of those, indirect. */
  indirect: number;
  /** Times a request waited because the ring was full. */
  ringFull: number;
  /** Times a request waited for data pages. */
  pageWaits: number;
  /** Times a caller waited because the queue was full. */
  queueWaits: number;
  /** Grants made. */
  grants: number;
}

type Outcome = E.Either<BlkError, Uint8Array | undefined>;

interface Op {
  readonly name: string;
  readonly buffer: Uint8Array | undefined;
  left: number;
  error: BlkError | undefined;
  done: boolean;
  readonly resolve: (r: Outcome) => void;
}

interface Chunk {
  readonly op: Op;
  /** `BLKIF_OP_*` of the request (for indirect requests, the indirect op). */
  readonly operation: number;
  readonly plan: BlkChunkPlan | undefined;
  readonly discard?: { readonly sector: number; readonly sectors: number; readonly secure: boolean };
}

interface Pooled {
  readonly page: BlkDataPage;
  /** Its persistent grant, once made. */
  gref: number | undefined;
}

interface Shadow {
  readonly chunk: Chunk;
  readonly data: Pooled[];
  readonly indirect: Pooled[];
  /** Grants made for this request only (without persistent grants). */
  readonly grants: { readonly gref: number; readonly page: Pooled }[];
}

/** Grants that could not be ended yet, and their pages, retried until the back end lets go. */
export class BlkGrantReclaim {
  private readonly waiting: { readonly gref: number; readonly page: BlkDataPage }[] = [];

  /** Over the memory that made the grants. */
  constructor(private readonly memory: BlkfrontMemory) {}

  /** Ends `gref` and frees `page` now if it can, or later. */
  release(gref: number, page: BlkDataPage): void {
    if (this.memory.endGrant(gref)) this.memory.freePage(page);
    else this.waiting.push({ gref, page });
  }

  /** Tries the waiting grants again; returns how many still wait. */
  retry(): number {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i]!;
      if (this.memory.endGrant(w.gref)) {
        this.memory.freePage(w.page);
        this.waiting.splice(i, 1);
      }
    }
    return this.waiting.length;
  }

  /** Grants still waiting. */
  get pending(): number {
    return this.waiting.length;
  }
}

/** The front end of one blkif ring: a block device with a queue. */
export class BlkfrontRing {
  private readonly ring: FrontRing<BlkRequest, BlkResponse>;
  private readonly shadows: (Shadow | undefined)[];
  private readonly freeIds: number[] = [];
  private readonly pending: Chunk[] = [];
  private readonly waiters: ((admitted: boolean) => void)[] = [];
  private readonly ops = new Set<Op>();
  private readonly pool: Pooled[] = [];
  private pagesOwned = 0;
  private admitted = 0;
  private running = false;
  private again = false;
  private readonly queueDepth: number;
  private readonly maxPages: number;
  private disk: BlkDiskInfo | undefined;
  private flushOp: number | undefined;
  private discardOn = false;
  /** `new` until opened, `open`, `broken` (the back end broke the protocol) or `closed`. */
  state: "new" | "open" | "broken" | "closed" = "new";
  /** Grants waiting to be ended. */
  readonly reclaim: BlkGrantReclaim;
  /** Counters. */
  readonly stats: BlkfrontStats = { requests: 0, indirect: 0, ringFull: 0, pageWaits: 0, queueWaits: 0, grants: 0 };

  /** Initialises the shared ring in `options.ring` (`SHARED_RING_INIT`, `FRONT_RING_INIT`). */
  constructor(private readonly o: BlkfrontRingOptions) {
    this.ring = FrontRing.init(o.ring, { request: blkifRequestCodec, response: blkifResponseCodec });
    this.shadows = new Array<Shadow | undefined>(this.ring.size).fill(undefined);
    for (let id = this.ring.size - 1; id >= 0; id--) this.freeIds.push(id);
    this.queueDepth = Math.max(1, o.queueDepth ?? 64);
    this.maxPages = Math.max(2, o.maxDataPages ?? 64);
    this.reclaim = new BlkGrantReclaim(o.memory);
  }

  /** Slots in the ring. */
  get size(): number {
    return this.ring.size;
  }

  /** The disk, once open. */
  get info(): BlkDiskInfo | undefined {
    return this.disk;
  }

  /** Requests on the ring awaiting their response. */
  get inFlight(): number {
    return this.ring.size - this.freeIds.length;
  }

  /** Requests waiting for a slot or pages. */
  get queued(): number {
    return this.pending.length;
  }

  /** Data pages allocated (in use or free in the pool). */
  get pages(): number {
    return this.pagesOwned;
  }

  /** Starts serving I/O with what was negotiated. */
  open(info: BlkDiskInfo): void {
    if (this.state !== "new") return;
    this.disk = info;
    this.flushOp = info.flush === "flush" ? BLKIF_OP.FLUSH_DISKCACHE : info.flush === "barrier" ? BLKIF_OP.WRITE_BARRIER : undefined;
    this.discardOn = info.discard;
    this.state = "open";
  }

  /** Most segments one request may carry, given the agreed limit and the page budget. */
  private get maxSegments(): number {
    let m = Math.min(this.disk?.maxSegments ?? BLKIF_MAX.SEGMENTS_PER_REQUEST, this.maxPages);
    while (m > 1 && m + (m > BLKIF_MAX.SEGMENTS_PER_REQUEST ? indirectPagesFor(m) : 0) > this.maxPages) m--;
    return m;
  }

  /** Reads `count` sectors from `sector`. */
  read(sector: number, count: number): Promise<E.Either<BlkError, Uint8Array>> {
    const bad = this.checkRange("read", sector, count);
    if (bad) return Promise.resolve(E.left(bad));
    const buffer = new Uint8Array(count * BLK_SECTOR_SIZE);
    return this.run("read", buffer, () => planTransfer(sector, count, this.maxSegments).map((plan) => ({ operation: BLKIF_OP.READ, plan }))) as Promise<E.Either<BlkError, Uint8Array>>;
  }

  /** Writes `data` (whole sectors) from `sector`. */
  write(sector: number, data: Uint8Array): Promise<E.Either<BlkError, void>> {
    if (data.byteLength === 0 || data.byteLength % BLK_SECTOR_SIZE !== 0) return Promise.resolve(E.left(blkError("write", "EINVAL", `${data.byteLength} bytes is not a whole number of sectors`)));
    const count = data.byteLength / BLK_SECTOR_SIZE;
    const bad = this.checkRange("write", sector, count);
    if (bad) return Promise.resolve(E.left(bad));
    const buffer = data.slice();
    return this.voided(this.run("write", buffer, () => planTransfer(sector, count, this.maxSegments).map((plan) => ({ operation: BLKIF_OP.WRITE, plan }))));
  }

  /** Makes completed writes durable (`BLKIF_OP_FLUSH_DISKCACHE`); nothing to do when the back end has no cache to flush. */
  flush(): Promise<E.Either<BlkError, void>> {
    if (this.state === "open" && this.flushOp === undefined) return Promise.resolve(E.right(undefined));
    return this.voided(this.run("flush", undefined, () => [{ operation: this.flushOp ?? BLKIF_OP.FLUSH_DISKCACHE, plan: undefined }]));
  }

  /** Tells the back end `count` sectors from `sector` are no longer needed (`BLKIF_OP_DISCARD`). */
  discard(sector: number, count: number, secure = false): Promise<E.Either<BlkError, void>> {
    const bad = this.checkRange("discard", sector, count);
    if (bad) return Promise.resolve(E.left(bad));
    if (this.state === "open" && !this.discardOn) return Promise.resolve(E.left(blkError("discard", "EOPNOTSUPP", "the back end does not discard")));
    if (secure && !this.disk?.discardSecure) return Promise.resolve(E.left(blkError("discard", "EOPNOTSUPP", "the back end does not discard securely")));
    return this.voided(this.run("discard", undefined, () => [{ operation: BLKIF_OP.DISCARD, plan: undefined, discard: { sector, sectors: count, secure } }]));
  }

  private voided(p: Promise<Outcome>): Promise<E.Either<BlkError, void>> {
    return p.then(E.map(() => undefined));
  }

  private checkRange(op: string, sector: number, count: number): BlkError | undefined {
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count <= 0) return blkError(op, "EINVAL", `sectors ${sector}+${count}`);
    if (this.disk !== undefined && sector + count > this.disk.sectors) return blkError(op, "EINVAL", `sectors ${sector}..${sector + count - 1} are past the end of the disk (${this.disk.sectors} sectors)`);
    return undefined;
  }

  /** Admits an operation (waiting while the queue is full), queues its requests and starts them. */
  private async run(name: string, buffer: Uint8Array | undefined, chunks: () => Omit<Chunk, "op">[]): Promise<Outcome> {
    if (this.state !== "open") return E.left(blkError(name, "ENODEV", "the device is not connected"));
    if (!(await this.admit())) return E.left(blkError(name, "ENODEV", "the device disconnected"));
    const parts = chunks();
    return new Promise<Outcome>((resolve) => {
      const op: Op = { name, buffer, left: parts.length, error: undefined, done: false, resolve };
      this.ops.add(op);
      for (const p of parts) this.pending.push({ ...p, op });
      this.kick();
    });
  }

  private admit(): Promise<boolean> {
    if (this.admitted < this.queueDepth && this.waiters.length === 0) {
      this.admitted++;
      return Promise.resolve(true);
    }
    this.stats.queueWaits++;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** An operation finished: its queue slot goes to the first waiter, if any. */
  private releaseSlot(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next(true);
    else this.admitted--;
  }

  private finish(op: Op, outcome: Outcome): void {
    if (op.done) return;
    op.done = true;
    this.ops.delete(op);
    this.releaseSlot();
    op.resolve(outcome);
  }

  /** Does the work there is: take responses, retry held grants, put queued requests. Call on every event from the back end. */
  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        if (this.state === "open") this.takeResponses();
        this.reclaim.retry();
        if (this.state === "open") this.putRequests();
      } while (this.again);
    } catch (e) {
      if (!(e instanceof RingProtocolError)) throw e;
      this.broken(e);
    } finally {
      this.running = false;
    }
  }

  private takeResponses(): void {
    do {
      for (let rsp; (rsp = this.ring.takeResponse()) !== undefined; ) this.complete(rsp);
    } while (this.ring.finalCheckForResponses());
  }

  private putRequests(): void {
    let put = false;
    while (this.pending.length > 0) {
      if (this.ring.full) {
        this.stats.ringFull++;
        break;
      }
      const chunk = this.pending[0]!;
      if (chunk.op.done) {
        this.pending.shift();
        continue;
      }
      const r = this.start(chunk);
      if (r === "wait") {
        this.stats.pageWaits++;
        break;
      }
      this.pending.shift();
      if (r === "put") put = true;
    }
    if (put && this.ring.pushRequests()) this.o.notify();
  }

  /** Takes `n` pages from the pool, allocating up to the budget; undefined to wait for some, `"nomem"` if they can never come. */
  private takePages(n: number): Pooled[] | undefined | "nomem" {
    if (n === 0) return [];
    const got: Pooled[] = [];
    while (got.length < n && this.pool.length > 0) got.push(this.pool.pop()!);
    while (got.length < n && this.pagesOwned < this.maxPages) {
      const page = this.o.memory.allocPage();
      if (page === undefined) break;
      this.pagesOwned++;
      got.push({ page, gref: undefined });
    }
    if (got.length === n) return got;
    this.pool.push(...got.reverse());
    const inUse = this.pagesOwned - this.pool.length;
    return inUse === 0 ? "nomem" : undefined;
  }

  /** Returns pages to the pool (LIFO: the last one back is the next one out). */
  private givePages(pages: readonly Pooled[]): void {
    for (const p of pages) this.pool.push(p);
  }

  /** A grant of `p` for a request: its persistent grant (made on first use), or one for this request only. */
  private grantFor(p: Pooled, readonly: boolean, oneOff: Shadow["grants"]): E.Either<XenError, number> {
    if (this.disk?.persistent) {
      if (p.gref !== undefined) return E.right(p.gref);
      const g = this.o.memory.grant(p.page, false);
      if (E.isRight(g)) {
        this.stats.grants++;
        p.gref = g.right;
      }
      return g;
    }
    const g = this.o.memory.grant(p.page, readonly);
    if (E.isRight(g)) {
      this.stats.grants++;
      oneOff.push({ gref: g.right, page: p });
    }
    return g;
  }

  /** Ends a request's one-off grants; a page whose grant the back end still holds leaves the pool for the reclaim list. */
  private endGrants(s: Shadow): Pooled[] {
    const held = new Set<Pooled>();
    for (const g of s.grants) {
      if (!this.o.memory.endGrant(g.gref)) {
        held.add(g.page);
        this.pagesOwned--;
        this.reclaim.release(g.gref, g.page.page);
      }
    }
    return [...s.data, ...s.indirect].filter((p) => !held.has(p));
  }

  /** Puts one request on the ring: `"put"`, `"wait"` (no pages yet), or `"failed"` (its operation has the error). */
  private start(chunk: Chunk): "put" | "wait" | "failed" {
    const segs = chunk.plan?.segments ?? [];
    const indirect = segs.length > BLKIF_MAX.SEGMENTS_PER_REQUEST;
    const pages = this.takePages(segs.length + (indirect ? indirectPagesFor(segs.length) : 0));
    if (pages === undefined) return "wait";
    const name = chunk.op.name;
    if (pages === "nomem") {
      this.fail(chunk.op, blkError(name, "ENOMEM", "no page for the request's data"));
      return "failed";
    }
    const shadow: Shadow = { chunk, data: pages.slice(0, segs.length), indirect: pages.slice(segs.length), grants: [] };
    const write = chunk.operation !== BLKIF_OP.READ;
    const granted: BlkGrantedSegment[] = [];
    for (const [i, seg] of segs.entries()) {
      const g = this.grantFor(shadow.data[i]!, write, shadow.grants);
      if (E.isLeft(g)) return this.abandon(shadow, blkError(name, "ENOMEM", `granting a data page: ${g.left.message}`));
      granted.push({ ...seg, gref: g.right });
    }
    if (chunk.operation === BLKIF_OP.WRITE || (chunk.operation === this.flushOp && segs.length > 0)) this.copyIn(chunk, shadow.data);
    const id = this.freeIds.pop()!;
    const handle = this.o.handle;
    let req: BlkRequest;
    if (chunk.discard !== undefined) {
      const d = chunk.discard;
      req = { kind: "discard", flag: d.secure ? BLKIF_DISCARD.SECURE : 0, handle, id: BigInt(id), sector: BigInt(d.sector), sectors: BigInt(d.sectors) };
    } else if (indirect) {
      const grefs: number[] = [];
      for (const [p, page] of shadow.indirect.entries()) {
        writeIndirectPage(page.page.bytes, granted.slice(p * BLK_SEGMENTS_PER_INDIRECT_PAGE, (p + 1) * BLK_SEGMENTS_PER_INDIRECT_PAGE));
        const g = this.grantFor(page, true, shadow.grants);
        if (E.isLeft(g)) {
          this.freeIds.push(id);
          return this.abandon(shadow, blkError(name, "ENOMEM", `granting an indirect page: ${g.left.message}`));
        }
        grefs.push(g.right);
      }
      req = { kind: "indirect", indirectOp: chunk.operation, handle, id: BigInt(id), sector: BigInt(chunk.plan!.sector), nrSegments: segs.length, indirectGrefs: grefs };
      this.stats.indirect++;
    } else {
      req = { kind: "rw", operation: chunk.operation, handle, id: BigInt(id), sector: BigInt(chunk.plan?.sector ?? 0), segments: granted };
    }
    this.shadows[id] = shadow;
    this.ring.putRequest(req);
    this.stats.requests++;
    return "put";
  }

  /** A request that could not be put: its grants ended, its pages back, its operation failed. */
  private abandon(shadow: Shadow, error: BlkError): "failed" {
    this.givePages(this.endGrants(shadow));
    this.fail(shadow.chunk.op, error);
    return "failed";
  }

  private fail(op: Op, error: BlkError): void {
    op.error ??= error;
    op.left--;
    if (op.left === 0) this.finish(op, E.left(op.error));
  }

  /** Copies a write's data from the operation's buffer into the request's pages. */
  private copyIn(chunk: Chunk, pages: readonly Pooled[]): void {
    const plan = chunk.plan!;
    let at = plan.offset;
    plan.segments.forEach((s, i) => {
      const n = (s.last - s.first + 1) * BLK_SECTOR_SIZE;
      pages[i]!.page.bytes.set(chunk.op.buffer!.subarray(at, at + n), s.first * BLK_SECTOR_SIZE);
      at += n;
    });
  }

  /** Copies a read's data from the request's pages into the operation's buffer. */
  private copyOut(chunk: Chunk, pages: readonly Pooled[]): void {
    const plan = chunk.plan!;
    let at = plan.offset;
    plan.segments.forEach((s, i) => {
      const n = (s.last - s.first + 1) * BLK_SECTOR_SIZE;
      chunk.op.buffer!.set(pages[i]!.page.bytes.subarray(s.first * BLK_SECTOR_SIZE, (s.last + 1) * BLK_SECTOR_SIZE), at);
      at += n;
    });
  }

  /** One response: checked against the request in flight, then its operation advanced. */
  private complete(rsp: BlkResponse): void {
    const id = rsp.id < BigInt(this.shadows.length) ? Number(rsp.id) : -1;
    const shadow = id >= 0 ? this.shadows[id] : undefined;
    if (shadow === undefined) throw new RingProtocolError(`response id ${rsp.id} names no request in flight`);
    const expected = shadow.chunk.discard !== undefined ? BLKIF_OP.DISCARD : shadow.chunk.operation;
    if (rsp.operation !== expected) throw new RingProtocolError(`response to request ${id} has operation ${rsp.operation}, not ${expected}`);
    this.shadows[id] = undefined;
    this.freeIds.push(id);
    const chunk = shadow.chunk;
    const op = chunk.op;
    if (rsp.status === BLKIF_RSP.OKAY) {
      if (chunk.operation === BLKIF_OP.READ && !op.done) this.copyOut(chunk, shadow.data);
    } else if (rsp.status === BLKIF_RSP.EOPNOTSUPP) {
      if (chunk.discard !== undefined) this.discardOn = false;
      else if (chunk.operation === this.flushOp) this.flushOp = undefined;
      op.error ??= blkError(op.name, "EOPNOTSUPP", "the back end does not support it", rsp.status);
    } else {
      op.error ??= blkError(op.name, "EIO", rsp.status === BLKIF_RSP.ERROR ? "BLKIF_RSP_ERROR" : `status ${rsp.status}`, rsp.status);
    }
    this.givePages(this.endGrants(shadow));
    op.left--;
    if (op.left === 0) this.finish(op, op.error !== undefined ? E.left(op.error) : E.right(op.buffer));
  }

  /** The back end broke the protocol: fail everything and stop; the owner disconnects. */
  private broken(e: RingProtocolError): void {
    if (this.state !== "open") return;
    this.state = "broken";
    this.failAll(blkError("blkif", "EIO", `the back end broke the ring: ${e.message}`));
    this.o.onBroken(e);
  }

  private failAll(error: BlkError): void {
    for (const op of [...this.ops]) this.finish(op, E.left({ ...error, op: op.name }));
    for (const w of this.waiters.splice(0)) w(false);
  }

  /**
   * Stops: responses already pushed are taken (unless the ring is broken),
   * every other operation fails with `ENODEV`, and every grant is ended and
   * page freed — or, for a grant the back end still maps, set aside in
   * {@link BlkfrontRing.reclaim} until it lets go. The ring pages themselves
   * are the owner's.
   */
  close(): void {
    if (this.state === "closed") return;
    if (this.state === "open") {
      try {
        this.takeResponses();
      } catch (e) {
        if (!(e instanceof RingProtocolError)) throw e;
      }
    }
    this.state = "closed";
    this.failAll(blkError("blkif", "ENODEV", "the device disconnected"));
    this.pending.length = 0;
    for (const [id, s] of this.shadows.entries()) {
      if (s === undefined) continue;
      this.shadows[id] = undefined;
      this.freeIds.push(id);
      this.givePages(this.endGrants(s));
    }
    for (const p of this.pool.splice(0)) {
      this.pagesOwned--;
      if (p.gref !== undefined) this.reclaim.release(p.gref, p.page);
      else this.o.memory.freePage(p.page);
    }
  }
}
