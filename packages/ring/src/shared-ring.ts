/**
 * The `io/ring.h` request/response protocol.
 *
 * A front end produces requests and consumes responses; a back end does the
 * reverse. Each keeps a private producer index (`req_prod_pvt`,
 * `rsp_prod_pvt`) and publishes it to the shared header with a push. All
 * indexes are free-running unsigned 32-bit counters, compared by subtraction
 * modulo 2^32, so they wrap without ceremony.
 *
 * Notification hold-off: a consumer that has run out of work writes
 * `*_event = cons + 1` ("wake me at the next item") and checks once more, so
 * an item that arrived in between is not missed; a producer notifies only when
 * its push moves the producer index past the consumer's event index. Neither
 * side here notifies anybody: a push returns `true` when the caller must send
 * the event, and the caller does.
 *
 * Everything read from the shared header is untrusted: the other end may be
 * broken or hostile. A producer index that claims more entries than the ring
 * holds raises {@link RingProtocolError}; no call loops on it or touches
 * memory outside the ring.
 *
 * @module
 */
import { ringSize, SRING_HEADER_SIZE } from "@pvkit/abi";
import { Pages, indexWords, type Codec, type RingMemory } from "./pages.js";

const REQ_PROD = 0;
const REQ_EVENT = 1;
const RSP_PROD = 2;
const RSP_EVENT = 3;

/** The other end broke the ring protocol; the ring should be disconnected. */
export class RingProtocolError extends Error {
  /** Creates the error with a message saying which index was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "RingProtocolError";
  }
}

/** The requests a front ring can no longer accept until responses are consumed. */
export class RingFullError extends Error {
  /** Creates the error for a ring of `size` slots. */
  constructor(size: number) {
    super(`ring full: all ${size} slots hold requests awaiting responses`);
    this.name = "RingFullError";
  }
}

/** Request and response codecs of one protocol, e.g. blkif's. */
export interface RingCodecs<Req, Rsp> {
  /** Requests, written by the front end. */
  readonly request: Codec<Req>;
  /** Responses, written by the back end. */
  readonly response: Codec<Rsp>;
}

/** What both ends share: the pages, the header words and the slot geometry. */
abstract class RingEnd<Req, Rsp> {
  /** Number of slots (a power of two). */
  readonly size: number;
  /** Bytes per slot: the larger of request and response. */
  readonly entrySize: number;
  protected readonly pages: Pages;
  protected readonly idx: Uint32Array;
  protected readonly codecs: RingCodecs<Req, Rsp>;

  protected constructor(memory: RingMemory, codecs: RingCodecs<Req, Rsp>) {
    this.codecs = codecs;
    this.entrySize = Math.max(codecs.request.size, codecs.response.size);
    this.pages = new Pages(memory, this.entrySize);
    this.size = ringSize(this.pages.byteLength, this.entrySize);
    this.idx = indexWords(this.pages.first, 0, 4);
  }

  /** Byte offset of the slot that index `i` selects. */
  protected slot(i: number): number {
    return SRING_HEADER_SIZE + (i & (this.size - 1)) * this.entrySize;
  }

  /** Publishes `next` in header word `prod` and says whether the peer's event index asks for a notification. */
  protected push(prod: number, event: number, next: number): boolean {
    const old = Atomics.load(this.idx, prod);
    Atomics.store(this.idx, prod, next);
    const ev = Atomics.load(this.idx, event);
    return ((next - ev) >>> 0) < ((next - old) >>> 0);
  }
}

/**
 * The front end of a shared ring: puts requests, takes responses.
 *
 * ```ts
 * const front = FrontRing.init(page, codecs);
 * front.putRequest(req);
 * if (front.pushRequests()) notify(port);
 * // on the event:
 * do {
 *   for (let rsp; (rsp = front.takeResponse()) !== undefined; ) handle(rsp);
 * } while (front.finalCheckForResponses());
 * ```
 */
export class FrontRing<Req, Rsp> extends RingEnd<Req, Rsp> {
  /** Requests written but not yet pushed stop here (`req_prod_pvt`). */
  reqProdPvt: number;
  /** Next response to take (`rsp_cons`). */
  rspCons: number;

  private constructor(memory: RingMemory, codecs: RingCodecs<Req, Rsp>, start: number) {
    super(memory, codecs);
    this.reqProdPvt = start >>> 0;
    this.rspCons = start >>> 0;
  }

  /**
   * Initialises the shared header (`SHARED_RING_INIT`: producers 0, events 1,
   * padding zeroed) and attaches a front ring to it (`FRONT_RING_INIT`).
   * The front end owns the ring pages and does this before granting them.
   */
  static init<Req, Rsp>(memory: RingMemory, codecs: RingCodecs<Req, Rsp>): FrontRing<Req, Rsp> {
    const ring = new FrontRing(memory, codecs, 0);
    ring.pages.first.fill(0, 0, SRING_HEADER_SIZE);
    Atomics.store(ring.idx, REQ_EVENT, 1);
    Atomics.store(ring.idx, RSP_EVENT, 1);
    return ring;
  }

  /** Attaches to a ring already in use, with both private indexes at `start` (`FRONT_RING_ATTACH`). */
  static attach<Req, Rsp>(memory: RingMemory, codecs: RingCodecs<Req, Rsp>, start: number): FrontRing<Req, Rsp> {
    return new FrontRing(memory, codecs, start);
  }

  /** Slots free for new requests (`RING_FREE_REQUESTS`). */
  get freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** True when every slot holds a request awaiting its response (`RING_FULL`). */
  get full(): boolean {
    return this.freeRequests === 0;
  }

  /**
   * Writes `req` into the next free slot, unpublished until
   * {@link FrontRing.pushRequests}. @throws {@link RingFullError}
   */
  putRequest(req: Req): void {
    if (this.full) throw new RingFullError(this.size);
    this.pages.write(this.codecs.request, this.slot(this.reqProdPvt), req);
    this.reqProdPvt = (this.reqProdPvt + 1) >>> 0;
  }

  /**
   * Publishes the requests put so far (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
   * @returns whether the back end must be notified.
   */
  pushRequests(): boolean {
    return this.push(REQ_PROD, REQ_EVENT, this.reqProdPvt);
  }

  /**
   * Responses published and not yet taken (`RING_HAS_UNCONSUMED_RESPONSES`).
   * @throws {@link RingProtocolError} if the back end claims more responses than requests outstanding.
   */
  unconsumedResponses(): number {
    const prod = Atomics.load(this.idx, RSP_PROD);
    const n = (prod - this.rspCons) >>> 0;
    if (n > ((this.reqProdPvt - this.rspCons) >>> 0)) {
      throw new RingProtocolError(`back end published rsp_prod ${prod}: ${n} responses, but only ${(this.reqProdPvt - this.rspCons) >>> 0} requests are outstanding`);
    }
    return n;
  }

  /** Copies out the next response and consumes it, or returns undefined when there is none. */
  takeResponse(): Rsp | undefined {
    if (this.unconsumedResponses() === 0) return undefined;
    const rsp = this.pages.read(this.codecs.response, this.slot(this.rspCons));
    this.rspCons = (this.rspCons + 1) >>> 0;
    return rsp;
  }

  /**
   * Call when out of responses (`RING_FINAL_CHECK_FOR_RESPONSES`): re-arms
   * `rsp_event` so the next response notifies, then checks once more.
   * @returns true if responses arrived meanwhile and must be taken now.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    Atomics.store(this.idx, RSP_EVENT, (this.rspCons + 1) >>> 0);
    return this.unconsumedResponses() > 0;
  }
}

/**
 * The back end of a shared ring: takes requests, puts responses.
 *
 * ```ts
 * const back = BackRing.attach(mappedPage, codecs, 0);
 * // on the event:
 * do {
 *   for (let req; (req = back.takeRequest()) !== undefined; ) back.putResponse(serve(req));
 *   if (back.pushResponses()) notify(port);
 * } while (back.finalCheckForRequests());
 * ```
 */
export class BackRing<Req, Rsp> extends RingEnd<Req, Rsp> {
  /** Responses written but not yet pushed stop here (`rsp_prod_pvt`). */
  rspProdPvt: number;
  /** Next request to take (`req_cons`). */
  reqCons: number;

  private constructor(memory: RingMemory, codecs: RingCodecs<Req, Rsp>, start: number) {
    super(memory, codecs);
    this.rspProdPvt = start >>> 0;
    this.reqCons = start >>> 0;
  }

  /** Attaches to the front end's ring with both private indexes at `start` (`BACK_RING_ATTACH`; 0 is `BACK_RING_INIT`). */
  static attach<Req, Rsp>(memory: RingMemory, codecs: RingCodecs<Req, Rsp>, start = 0): BackRing<Req, Rsp> {
    return new BackRing(memory, codecs, start);
  }

  /**
   * Requests published and not yet taken, limited by the free response slots
   * (`RING_HAS_UNCONSUMED_REQUESTS`).
   * @throws {@link RingProtocolError} if the front end claims more requests
   * than the ring holds (`RING_REQUEST_PROD_OVERFLOW`).
   */
  unconsumedRequests(): number {
    const prod = Atomics.load(this.idx, REQ_PROD);
    if (((prod - this.rspProdPvt) >>> 0) > this.size) {
      throw new RingProtocolError(
        `front end published req_prod ${prod}: ${(prod - this.rspProdPvt) >>> 0} requests in flight, but the ring holds ${this.size}`,
      );
    }
    const req = (prod - this.reqCons) >>> 0;
    const rsp = this.size - ((this.reqCons - this.rspProdPvt) >>> 0);
    return Math.min(req, rsp);
  }

  /** Copies out the next request and consumes it, or returns undefined when there is none. */
  takeRequest(): Req | undefined {
    if (this.unconsumedRequests() === 0) return undefined;
    const req = this.pages.read(this.codecs.request, this.slot(this.reqCons));
    this.reqCons = (this.reqCons + 1) >>> 0;
    return req;
  }

  /**
   * Writes `rsp` into the next response slot, unpublished until
   * {@link BackRing.pushResponses}. A back end answers only requests it took,
   * so a response without a request is a bug in the caller.
   */
  putResponse(rsp: Rsp): void {
    if (this.rspProdPvt === this.reqCons) throw new Error("putResponse: every request taken has been answered");
    this.pages.write(this.codecs.response, this.slot(this.rspProdPvt), rsp);
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
  }

  /**
   * Publishes the responses put so far (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
   * @returns whether the front end must be notified.
   */
  pushResponses(): boolean {
    return this.push(RSP_PROD, RSP_EVENT, this.rspProdPvt);
  }

  /**
   * Call when out of requests (`RING_FINAL_CHECK_FOR_REQUESTS`): re-arms
   * `req_event`, then checks once more.
   * @returns true if requests arrived meanwhile and must be taken now.
   */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    Atomics.store(this.idx, REQ_EVENT, (this.reqCons + 1) >>> 0);
    return this.unconsumedRequests() > 0;
  }
}
