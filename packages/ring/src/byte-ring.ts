/**
 * Byte rings: the console page (`io/console.h`) and the XenStore page
 * (`io/xs_wire.h`).
 *
 * Each is a power-of-two array of bytes with a free-running consumer and
 * producer index; byte `i` lives at `data[i & (size - 1)]`
 * (`MASK_XENCONS_IDX`, `MASK_XENSTORE_IDX`). The producer copies bytes in and
 * then advances `prod`; the consumer copies bytes out and then advances
 * `cons`. After either, the caller notifies the peer through the page's event
 * channel if anything moved: the calls here return how much moved and never
 * notify.
 *
 * The indexes come from the other domain, so `prod - cons` greater than the
 * ring's size raises {@link RingProtocolError}.
 *
 * @module
 */
import { xencons_interface, xenstore_domain_interface } from "@pvkit/abi";
import { indexWords } from "./pages.js";
import { RingProtocolError } from "./shared-ring.js";

/** One direction of a byte ring: its data bytes and where its two indexes live. */
abstract class ByteRing {
  /** Bytes the ring holds. */
  readonly size: number;
  /** Names the ring in error messages, e.g. "console out". */
  readonly name: string;
  protected readonly data: Uint8Array;
  /** `[cons, prod]`: both headers put a ring's producer index right after its consumer index. */
  private readonly idx: Uint32Array;

  /**
   * @param page the shared page
   * @param dataOffset where the ring's bytes start
   * @param size their number, a power of two
   * @param consOffset where the consumer index is
   * @param name names the ring in error messages
   */
  constructor(page: Uint8Array, dataOffset: number, size: number, consOffset: number, name: string) {
    this.size = size;
    this.name = name;
    this.data = page.subarray(dataOffset, dataOffset + size);
    this.idx = indexWords(page, consOffset, 2);
  }

  /** The consumer index as published. */
  get cons(): number {
    return Atomics.load(this.idx, 0);
  }

  /** The producer index as published. */
  get prod(): number {
    return Atomics.load(this.idx, 1);
  }

  /** Publishes a new consumer index. */
  protected setCons(v: number): void {
    Atomics.store(this.idx, 0, v >>> 0);
  }

  /** Publishes a new producer index. */
  protected setProd(v: number): void {
    Atomics.store(this.idx, 1, v >>> 0);
  }

  /**
   * Bytes produced and not yet consumed.
   * @throws {@link RingProtocolError} if the indexes claim more than the ring holds.
   */
  queued(): number {
    const cons = this.cons;
    const prod = this.prod;
    const n = (prod - cons) >>> 0;
    if (n > this.size) throw new RingProtocolError(`${this.name} ring: prod ${prod} is ${n} bytes ahead of cons ${cons}, but the ring holds ${this.size}`);
    return n;
  }
}

/** The producing side of a byte ring. */
export class ByteRingProducer extends ByteRing {
  /** Bytes that can be written now. */
  free(): number {
    return this.size - this.queued();
  }

  /**
   * Copies as much of `src` as fits, then publishes it.
   * @returns the number of bytes written; the peer should be notified if it is not 0.
   */
  write(src: Uint8Array): number {
    const n = Math.min(src.byteLength, this.free());
    let prod = this.prod;
    for (let done = 0; done < n; ) {
      const at = prod & (this.size - 1);
      const chunk = Math.min(n - done, this.size - at);
      this.data.set(src.subarray(done, done + chunk), at);
      done += chunk;
      prod += chunk;
    }
    this.setProd(prod);
    return n;
  }
}

/** The consuming side of a byte ring. */
export class ByteRingConsumer extends ByteRing {
  /**
   * Copies up to `dst.byteLength` queued bytes into `dst`, then releases them.
   * @returns the number of bytes read; the peer should be notified if it is not 0.
   */
  readInto(dst: Uint8Array): number {
    const n = Math.min(dst.byteLength, this.queued());
    let cons = this.cons;
    for (let done = 0; done < n; ) {
      const at = cons & (this.size - 1);
      const chunk = Math.min(n - done, this.size - at);
      dst.set(this.data.subarray(at, at + chunk), done);
      done += chunk;
      cons += chunk;
    }
    this.setCons(cons);
    return n;
  }

  /** Reads every queued byte (up to `max`) into a new array. */
  read(max = this.size): Uint8Array {
    const out = new Uint8Array(Math.min(max, this.queued()));
    return out.subarray(0, this.readInto(out));
  }

  /** Copies up to `dst.byteLength` queued bytes without consuming them (to look at a header). */
  peek(dst: Uint8Array): number {
    const n = Math.min(dst.byteLength, this.queued());
    const cons = this.cons;
    for (let i = 0; i < n; i++) dst[i] = this.data[(cons + i) & (this.size - 1)]!;
    return n;
  }
}

/** Both directions of one shared page, from one side's point of view. */
export interface ByteRingPair {
  /** What this side writes. */
  readonly tx: ByteRingProducer;
  /** What this side reads. */
  readonly rx: ByteRingConsumer;
}

const cons = xencons_interface.fields;
const xs = xenstore_domain_interface.fields;

/** The guest's side of its console page: it writes `out` and reads `in`. */
export function consoleGuest(page: Uint8Array): ByteRingPair {
  return {
    tx: new ByteRingProducer(page, cons.out.offset, cons.out.size, cons.out_cons.offset, "console out"),
    rx: new ByteRingConsumer(page, cons.in.offset, cons.in.size, cons.in_cons.offset, "console in"),
  };
}

/** The console daemon's side of a guest's console page: it reads `out` and writes `in`. */
export function consoleBackend(page: Uint8Array): ByteRingPair {
  return {
    tx: new ByteRingProducer(page, cons.in.offset, cons.in.size, cons.in_cons.offset, "console in"),
    rx: new ByteRingConsumer(page, cons.out.offset, cons.out.size, cons.out_cons.offset, "console out"),
  };
}

/** The guest's side of its XenStore page: it writes requests to `req` and reads replies from `rsp`. */
export function xenstoreGuest(page: Uint8Array): ByteRingPair {
  return {
    tx: new ByteRingProducer(page, xs.req.offset, xs.req.size, xs.req_cons.offset, "xenstore req"),
    rx: new ByteRingConsumer(page, xs.rsp.offset, xs.rsp.size, xs.rsp_cons.offset, "xenstore rsp"),
  };
}

/** xenstored's side of a guest's XenStore page: it reads `req` and writes `rsp`. */
export function xenstoreDaemon(page: Uint8Array): ByteRingPair {
  return {
    tx: new ByteRingProducer(page, xs.rsp.offset, xs.rsp.size, xs.rsp_cons.offset, "xenstore rsp"),
    rx: new ByteRingConsumer(page, xs.req.offset, xs.req.size, xs.req_cons.offset, "xenstore req"),
  };
}
