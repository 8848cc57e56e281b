/**
 * blkfront's XenStore negotiation (Unikraft's `blkfront_xs.c`, the
 * `talk_to_blkback`/`blkfront_connect` half of Linux's `xen-blkfront.c`),
 * apart from its data path.
 *
 * ## Keys (`io/blkif.h`)
 *
 * | when | reads (back end's directory) | writes (own directory) |
 * |------|------------------------------|------------------------|
 * | back end in InitWait | `max-ring-page-order` | `ring-ref` for a one-page ring, else `ring-page-order` and `ring-ref0`..`ring-refN`; `event-channel`; `protocol` = `x86_64-abi`; `feature-persistent`; then Initialised |
 * | back end Connected | `sectors`, `sector-size`, `physical-sector-size`, `info`, `feature-flush-cache`, `feature-barrier`, `feature-discard`, `discard-secure`, `feature-persistent`, `feature-max-indirect-segments` | Connected |
 *
 * The ring has `2^min(wanted order, max-ring-page-order)` pages, each
 * granted writable to the back end; the front end allocates an unbound
 * event channel port for the back end (`EVTCHNOP_alloc_unbound`).
 * Persistent grants are used when both ends publish `feature-persistent` = 1;
 * indirect requests when the back end publishes
 * `feature-max-indirect-segments`, up to the smaller of its limit and ours.
 *
 * The toolstack writes `virtual-device` and `device-type` in the front end's
 * directory; the device id is its name under `device/vbd`.
 *
 * ## Teardown
 *
 * On disconnect (the back end closing, a restart, this end closing, the
 * back end gone) the data path fails what is outstanding, the channel is
 * closed and every grant ended. A grant the back end still maps — it
 * closes after us when the toolstack removes the device — is kept, with its
 * page, and ended on a later state change, once the back end has let go.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { BLKIF_MAX, BLKIF_XENSTORE_KEYS as K, PAGE_SIZE, VDISK, XEN_ERRNO, XenbusState } from "@pvkit/abi";
import { XenbusFrontend, type DisconnectReason, type Kernel, type OtherEnd, type XenError, type XsClient } from "@pvkit/kernel";
import { BlkGrantReclaim, BlkfrontRing, type BlkDataPage, type BlkDiskInfo, type BlkError, type BlkfrontMemory } from "./datapath.js";
import { BLK_SECTOR_SIZE } from "./requests.js";

/** The native ABI of the ring's structs (`XEN_IO_PROTO_ABI_X86_64`). */
export const BLKFRONT_PROTOCOL = "x86_64-abi";

/** The largest ring this front end will use: 2^4 pages (`XENBUS_MAX_RING_GRANT_ORDER`). */
export const BLKFRONT_MAX_RING_PAGE_ORDER = 4;

/** What the front end asks for; every field has Linux blkfront's default where it has one. */
export interface BlkfrontOptions {
  /** log2 of the ring pages wanted (default 0; capped by the back end's `max-ring-page-order` and by 4). */
  readonly ringPageOrder?: number;
  /** Offer persistent grants (default true). */
  readonly persistent?: boolean;
  /** Most segments per indirect request (default 32; 0 or up to 11: no indirect requests). */
  readonly maxIndirectSegments?: number;
  /** Operations admitted at once before callers wait (default 64). */
  readonly queueDepth?: number;
  /** Data and indirect pages at most (default 64). */
  readonly maxDataPages?: number;
}

/** Guest memory, grants to one domain and event channels: what blkfront needs of its kernel. */
export interface BlkfrontPlatform {
  /** Memory and grants towards the back end's domain `domid`. */
  memory(domid: number): BlkfrontMemory;
  /** A port for `domid` to bind (`EVTCHNOP_alloc_unbound`). */
  allocUnbound(domid: number): E.Either<XenError, number>;
  /** Calls `handler` on every event on `port`. */
  onEvent(port: number, handler: () => void): void;
  /** Sends an event on `port`. */
  notify(port: number): void;
  /** Closes `port`. */
  closePort(port: number): void;
}

/** A {@link BlkfrontPlatform} over a booted kernel: its page allocator, grant table and event channels. */
export function kernelBlkfrontPlatform(k: Kernel): BlkfrontPlatform {
  const pfnOf = new Map<BlkDataPage, number>();
  return {
    memory: (domid) => ({
      allocPage: () => {
        const pfn = k.memory.allocPage();
        if (pfn === undefined) return undefined;
        const view = k.memory.memory.page(pfn * PAGE_SIZE);
        const page: BlkDataPage = { bytes: new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE), frame: k.memory.mfnOf(pfn) };
        pfnOf.set(page, pfn);
        return page;
      },
      freePage: (page) => {
        const pfn = pfnOf.get(page);
        if (pfn === undefined) return;
        pfnOf.delete(page);
        k.memory.freePage(pfn);
      },
      grant: (page, readonly) => k.grants.grantAccess(domid, page.frame, readonly),
      endGrant: (gref) => E.isRight(k.grants.endAccess(gref)),
    }),
    allocUnbound: (domid) => k.events.allocUnbound(domid),
    onEvent: (port, handler) => k.events.on(port, handler),
    notify: (port) => void k.events.notify(port),
    closePort: (port) => void k.events.close(port),
  };
}

/** A block device: what guest code reads and writes. */
export interface BlockDevice {
  /** The disk, while connected. */
  readonly info: BlkDiskInfo | undefined;
  /** Reads `count` 512-byte sectors from `sector`. */
  read(sector: number, count: number): Promise<E.Either<BlkError, Uint8Array>>;
  /** Writes whole sectors from `sector`. */
  write(sector: number, data: Uint8Array): Promise<E.Either<BlkError, void>>;
  /** Makes completed writes durable. */
  flush(): Promise<E.Either<BlkError, void>>;
  /** Discards `count` sectors from `sector`. */
  discard(sector: number, count: number, secure?: boolean): Promise<E.Either<BlkError, void>>;
  /** Closes the device (Closing, then Closed once the back end has let go). */
  close(): Promise<void>;
}

function fail(op: string, name: keyof typeof XEN_ERRNO, message: string): E.Either<XenError, never> {
  return E.left({ op, code: -XEN_ERRNO[name], name, message: `${op}: ${message}` });
}

function num(s: string | undefined): number | undefined {
  return s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined;
}

/** What a connection holds, filled in as `connect` goes. */
interface Connection {
  readonly memory: BlkfrontMemory;
  readonly ringPages: BlkDataPage[];
  readonly ringGrants: number[];
  port?: number;
  ring?: BlkfrontRing;
  persistentOffered: boolean;
}

/** One virtual block device's front end: `device/vbd/<devid>`. */
export class BlkfrontDevice extends XenbusFrontend implements BlockDevice {
  private conn: Connection | undefined;
  /** Why the data path was last torn down, if it has been. */
  lastDisconnect: DisconnectReason | undefined;
  /** Grants and pages of past connections the back end had not let go of yet. */
  private readonly leftovers: BlkGrantReclaim[] = [];

  /**
   * @param xs the guest's XenStore connection
   * @param platform pages, grants and event channels
   * @param id the device id under `device/vbd`
   * @param options what to ask for
   */
  constructor(
    xs: XsClient,
    private readonly platform: BlkfrontPlatform,
    id: string,
    private readonly options: BlkfrontOptions = {},
  ) {
    super(xs, { type: "vbd", id });
    this.onChange(() => this.retryLeftovers());
  }

  /** The data path while connected. */
  get ring(): BlkfrontRing | undefined {
    return this.conn?.ring;
  }

  /** {@inheritDoc BlockDevice.info} */
  get info(): BlkDiskInfo | undefined {
    return this.conn?.ring?.info;
  }

  /** Grants of closed connections still waiting for the back end to unmap them. */
  get grantsHeld(): number {
    return this.leftovers.reduce((n, r) => n + r.pending, 0);
  }

  private notConnected<T>(op: string): Promise<E.Either<BlkError, T>> {
    return Promise.resolve(E.left({ op, code: -XEN_ERRNO.ENODEV, name: "ENODEV", message: `${op}: ENODEV (the device is not connected)` }));
  }

  /** {@inheritDoc BlockDevice.read} */
  read(sector: number, count: number): Promise<E.Either<BlkError, Uint8Array>> {
    return this.conn?.ring?.read(sector, count) ?? this.notConnected("read");
  }

  /** {@inheritDoc BlockDevice.write} */
  write(sector: number, data: Uint8Array): Promise<E.Either<BlkError, void>> {
    return this.conn?.ring?.write(sector, data) ?? this.notConnected("write");
  }

  /** {@inheritDoc BlockDevice.flush} */
  flush(): Promise<E.Either<BlkError, void>> {
    return this.conn?.ring?.flush() ?? this.notConnected("flush");
  }

  /** {@inheritDoc BlockDevice.discard} */
  discard(sector: number, count: number, secure = false): Promise<E.Either<BlkError, void>> {
    return this.conn?.ring?.discard(sector, count, secure) ?? this.notConnected("discard");
  }

  private retryLeftovers(): void {
    for (let i = this.leftovers.length - 1; i >= 0; i--) if (this.leftovers[i]!.retry() === 0) this.leftovers.splice(i, 1);
  }

  /** The back end is in InitWait: make the ring and the channel, and say where they are. */
  protected async connect(backend: OtherEnd): Promise<E.Either<XenError, Readonly<Record<string, string>>>> {
    const op = `blkfront ${this.nodename}`;
    const backMax = num(backend.keys.get(K.maxRingPageOrder)) ?? 0;
    const order = Math.max(0, Math.min(this.options.ringPageOrder ?? 0, backMax, BLKFRONT_MAX_RING_PAGE_ORDER));
    const memory = this.platform.memory(backend.domid);
    const persistentOffered = this.options.persistent ?? true;
    const conn: Connection = { memory, ringPages: [], ringGrants: [], persistentOffered };
    this.conn = conn;
    for (let i = 0; i < 1 << order; i++) {
      const page = memory.allocPage();
      if (page === undefined) return fail(op, "ENOMEM", "no page for the ring");
      conn.ringPages.push(page);
    }
    let port: number | undefined;
    const ring = new BlkfrontRing({
      ring: conn.ringPages.map((p) => p.bytes),
      memory,
      handle: Number(this.id) & 0xffff,
      ...(this.options.queueDepth !== undefined && { queueDepth: this.options.queueDepth }),
      ...(this.options.maxDataPages !== undefined && { maxDataPages: this.options.maxDataPages }),
      notify: () => {
        if (port !== undefined) this.platform.notify(port);
      },
      onBroken: (e) => void this.fatal({ op: "blkif ring", code: -XEN_ERRNO.EIO, name: "EIO", message: `blkif ring: ${e.message}` }).then(() => this.kick()),
    });
    conn.ring = ring;
    for (const page of conn.ringPages) {
      const g = memory.grant(page, false);
      if (E.isLeft(g)) return g;
      conn.ringGrants.push(g.right);
    }
    const unbound = this.platform.allocUnbound(backend.domid);
    if (E.isLeft(unbound)) return unbound;
    port = unbound.right;
    conn.port = port;
    this.platform.onEvent(port, () => ring.kick());

    const keys: Record<string, string> = {};
    if (order === 0) keys[K.ringRef] = String(conn.ringGrants[0]);
    else {
      keys[K.ringPageOrder] = String(order);
      conn.ringGrants.forEach((g, i) => (keys[`${K.ringRef}${i}`] = String(g)));
    }
    keys[K.eventChannel] = String(port);
    keys[K.protocol] = BLKFRONT_PROTOCOL;
    keys[K.featurePersistent] = persistentOffered ? "1" : "0";
    return E.right(keys);
  }

  /** The back end is Connected: read the disk and open the data path. */
  protected override async connected(backend: OtherEnd): Promise<E.Either<XenError, void>> {
    const op = `blkfront ${this.nodename}`;
    const c = this.conn;
    if (c?.ring === undefined) return fail(op, "EINVAL", "connected without a ring");
    const get = (key: string) => backend.keys.get(key);
    const sectors = num(get(K.sectors));
    if (sectors === undefined) return fail(op, "EINVAL", `reading ${backend.path}/${K.sectors}: "${get(K.sectors)}"`);
    const sectorSize = num(get(K.sectorSize)) ?? BLK_SECTOR_SIZE;
    if (sectorSize < BLK_SECTOR_SIZE || (sectorSize & (sectorSize - 1)) !== 0) return fail(op, "EINVAL", `sector-size ${sectorSize} is not a power of two of at least 512`);
    const vdisk = num(get(K.info)) ?? 0;
    const backIndirect = num(get(K.featureMaxIndirectSegments)) ?? 0;
    const wantIndirect = this.options.maxIndirectSegments ?? 32;
    const indirect = Math.min(backIndirect, wantIndirect);
    const info: BlkDiskInfo = {
      sectors: (sectors * sectorSize) / BLK_SECTOR_SIZE,
      sectorSize,
      physicalSectorSize: num(get(K.physicalSectorSize)) ?? sectorSize,
      vdisk,
      readOnly: (vdisk & VDISK.READONLY) !== 0,
      flush: get(K.featureFlushCache) === "1" ? "flush" : get(K.featureBarrier) === "1" ? "barrier" : "none",
      discard: get(K.featureDiscard) === "1",
      discardSecure: get("discard-secure") === "1",
      persistent: c.persistentOffered && get(K.featurePersistent) === "1",
      maxSegments: indirect > BLKIF_MAX.SEGMENTS_PER_REQUEST ? indirect : BLKIF_MAX.SEGMENTS_PER_REQUEST,
      ringPages: c.ringPages.length,
    };
    c.ring.open(info);
    return E.right(undefined);
  }

  /** Fails what is outstanding, closes the channel, ends the grants (later, for those still mapped) and frees the pages. */
  protected async disconnect(reason: DisconnectReason): Promise<void> {
    this.lastDisconnect = reason;
    const c = this.conn;
    this.conn = undefined;
    if (c === undefined) return;
    c.ring?.close();
    if (c.port !== undefined) this.platform.closePort(c.port);
    const reclaim = c.ring?.reclaim ?? new BlkGrantReclaim(c.memory);
    c.ringPages.forEach((page, i) => {
      const g = c.ringGrants[i];
      if (g === undefined) c.memory.freePage(page);
      else reclaim.release(g, page);
    });
    if (reclaim.retry() > 0) this.leftovers.push(reclaim);
  }
}

/**
 * Opens the virtual block device `id` (a name under `device/vbd`, the
 * virtual-device number): starts its front end and waits until it is
 * Connected. Fails if the device is not there, or closes before connecting.
 */
export async function openBlkfront(k: Kernel, xs: XsClient, id: string, options: BlkfrontOptions = {}): Promise<E.Either<XenError, BlkfrontDevice>> {
  const dev = new BlkfrontDevice(xs, kernelBlkfrontPlatform(k), id, options);
  const started = await dev.start();
  if (E.isLeft(started)) return started;
  await dev.waitFor((d) => (d.state === XenbusState.Connected && d.info !== undefined) || d.status === "stopped" || d.error !== undefined || d.lastDisconnect !== undefined);
  if (dev.state === XenbusState.Connected && dev.info !== undefined) return E.right(dev);
  await dev.stop();
  return E.left(dev.error ?? { op: "blkfront", code: -XEN_ERRNO.ENODEV, name: "ENODEV", message: `blkfront ${dev.nodename}: the device closed before connecting` });
}

/** The ids of the virtual block devices the toolstack gave this domain (`device/vbd/*`), in order. */
export async function listVbds(xs: XsClient): Promise<string[]> {
  const r = await xs.directory("device/vbd")();
  return E.isRight(r) ? [...r.right].sort((a, b) => Number(a) - Number(b)) : [];
}
