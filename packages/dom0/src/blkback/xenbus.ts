/**
 * blkback's XenStore negotiation (the part Linux keeps in
 * `xen-blkback/xenbus.c`), apart from its data path.
 *
 * ## Keys (`io/blkif.h`), in the order they are written
 *
 * The toolstack creates the backend directory
 * `backend/vbd/<frontend-domid>/<devid>` with `params`, `type`, `mode`
 * (and maybe `discard-enable`); then:
 *
 * | when | who | keys |
 * |------|-----|------|
 * | probe, before InitWait | back end | `feature-max-indirect-segments`, `max-ring-page-order` |
 * | InitWait seen | front end | `ring-ref` (one page) or `ring-page-order` + `ring-ref0`..`ring-refN`, `event-channel`, `protocol`, `feature-persistent`; then Initialised |
 * | Initialised seen | back end | maps the ring, binds the channel, opens the store, then in one transaction: `feature-flush-cache`, `feature-discard` (+ `discard-granularity`, `discard-alignment`, `discard-secure`), `feature-persistent`, `sectors`, `info`, `sector-size`, `physical-sector-size`; then Connected |
 * | Connected seen | front end | reads the disk's keys; Connected |
 *
 * `sectors` counts `sector-size` units; `sector-size` is 512 (no
 * `feature-large-sector-size` is negotiated). `info` has `VDISK_READONLY`
 * when `mode` has no `w`, `VDISK_CDROM` when the front end's `device-type`
 * is `cdrom`. Persistent grants are used when both ends publish
 * `feature-persistent` = 1. A `protocol` other than the native
 * `x86_64-abi` (say, `x86_32-abi`, whose structs differ) is refused, as is a
 * `ring-page-order` above the back end's `max-ring-page-order`: both are
 * fatal errors (`error/…/error`, then Closing).
 *
 * Teardown: the data path stops taking requests, waits for the I/O in flight,
 * unmaps its persistent grants; then the channel is closed, the ring
 * unmapped and the store closed.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { BLKIF_XENSTORE_KEYS as K, PAGE_SIZE, VDISK, XEN_ERRNO } from "@pvkit/abi";
import type { RingProtocolError } from "@pvkit/ring";
import { XenbusBackend, type DisconnectReason, type Kernel, type OtherEnd, type XenError, type XsClient } from "@pvkit/kernel";
import { BlkbackRing, type BlkGrantMapper, type BlkMappedPage } from "./datapath.js";
import { BLKIF_INDIRECT_SEGMENTS_LIMIT, BLKIF_SECTOR_SIZE } from "./request.js";
import { openBlockStore, parseStoreSpec, type BlkHostIo, type BlkStoreSpec, type BlockStore } from "./store.js";

/** Backend keys the toolstack writes that `io/blkif.h`'s table leaves to the back end's own use. */
export const BLKBACK_KEYS = {
  /** What to attach: a file path, or a memory disk's size in bytes. */
  params: "params",
  /** The backing store type: `file` or `memory`. */
  type: "type",
  /** `0` to keep discard from being offered. */
  discardEnable: "discard-enable",
  /** Bytes of a discard extent. */
  discardGranularity: "discard-granularity",
  /** Offset of the first discard extent. */
  discardAlignment: "discard-alignment",
  /** `1` if `BLKIF_DISCARD_SECURE` is honoured. */
  discardSecure: "discard-secure",
} as const;

/** The native ABI of the ring's structs (`XEN_IO_PROTO_ABI_X86_64`). */
export const BLKIF_PROTOCOL_NATIVE = "x86_64-abi";

/** The largest `max-ring-page-order` (`XENBUS_MAX_RING_GRANT_ORDER`): 16 pages. */
export const BLKIF_MAX_RING_PAGE_ORDER = 4;

/** What a back end offers; every field has Linux blkback's default. */
export interface BlkbackOptions {
  /** `max-ring-page-order` (default 4, at most 4). */
  readonly maxRingPageOrder?: number;
  /** `feature-max-indirect-segments` (default 256, Linux's `MAX_INDIRECT_SEGMENTS`; 0 offers no indirect requests). */
  readonly maxIndirectSegments?: number;
  /** Offer persistent grants (default true). */
  readonly persistent?: boolean;
  /** Most grants kept mapped per device with persistent grants (default 1056). */
  readonly maxPersistentGrants?: number;
}

/** What blkback needs of its kernel: grant maps, event channels, host I/O. */
export interface BlkbackPlatform {
  /** A grant mapper for the front end in `domid`. */
  grants(domid: number): BlkGrantMapper;
  /** Binds to `port` of `domid` (`EVTCHNOP_bind_interdomain`). */
  bindInterdomain(domid: number, port: number): E.Either<XenError, number>;
  /** Calls `handler` on every event on the local `port`. */
  onEvent(port: number, handler: () => void): void;
  /** Sends an event on the local `port`. */
  notify(port: number): void;
  /** Closes the local `port`. */
  closePort(port: number): void;
  /** Host I/O completed on the vCPU, for file-backed disks (absent in an unprivileged driver domain). */
  readonly hostIo: BlkHostIo | undefined;
}

/** A {@link BlkbackPlatform} over a booted kernel's grant table and event channels. */
export function kernelBlkbackPlatform(k: Kernel, hostIo: BlkHostIo | undefined): BlkbackPlatform {
  return {
    grants: (domid) => {
      const mappings = new Map<BlkMappedPage, Parameters<Kernel["grants"]["unmap"]>[0]>();
      return {
        map: (gref, writable) =>
          E.map((m: Parameters<Kernel["grants"]["unmap"]>[0]) => {
            const view = k.memory.memory.page(m.va, writable ? "rw" : "r");
            const page: BlkMappedPage = { gref, writable, bytes: new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE) };
            mappings.set(page, m);
            return page;
          })(k.grants.map(domid, gref, !writable)),
        unmap: (page) => {
          const m = mappings.get(page);
          if (m === undefined) return E.left({ op: "GNTTABOP_unmap_grant_ref", code: -XEN_ERRNO.EINVAL, name: "EINVAL", message: `GNTTABOP_unmap_grant_ref: gref ${page.gref} is not mapped here` });
          const r = k.grants.unmap(m);
          if (E.isRight(r)) mappings.delete(page);
          return r;
        },
      };
    },
    bindInterdomain: (domid, port) => k.events.bindInterdomain(domid, port),
    onEvent: (port, handler) => k.events.on(port, handler),
    notify: (port) => void k.events.notify(port),
    closePort: (port) => void k.events.close(port),
    hostIo,
  };
}

function fail(op: string, name: keyof typeof XEN_ERRNO, message: string): E.Either<XenError, never> {
  return E.left({ op, code: -XEN_ERRNO[name], name, message: `${op}: ${message}` });
}

/** A decimal u32 from a XenStore value, or undefined. */
function u32(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffff_ffff ? n : undefined;
}

/** The parts of a connection, filled in as `connect` goes, so `disconnect` can undo a half-made one. */
interface Connection {
  store?: BlockStore;
  ringPages: BlkMappedPage[];
  grants: BlkGrantMapper;
  port?: number;
  ring?: BlkbackRing;
}

/** One virtual block device's back end: `backend/vbd/<frontend-domid>/<devid>`. */
export class BlkbackDevice extends XenbusBackend {
  private spec: E.Either<string, BlkStoreSpec> = E.left("not probed");
  private discardEnabled = true;
  private conn: Connection | undefined;
  private readonly maxOrder: number;
  private readonly maxIndirect: number;
  private readonly persistentOffered: boolean;

  /**
   * @param xs dom0's (or the driver domain's) XenStore connection
   * @param platform grants, event channels and host I/O
   * @param frontendId the front end's domain
   * @param id the device id (the virtual-device number)
   * @param options what to offer
   */
  constructor(
    xs: XsClient,
    private readonly platform: BlkbackPlatform,
    frontendId: number,
    id: string,
    private readonly options: BlkbackOptions = {},
  ) {
    super(xs, { type: "vbd", frontendId, id });
    this.maxOrder = Math.min(Math.max(0, options.maxRingPageOrder ?? BLKIF_MAX_RING_PAGE_ORDER), BLKIF_MAX_RING_PAGE_ORDER);
    this.maxIndirect = Math.min(Math.max(0, options.maxIndirectSegments ?? 256), BLKIF_INDIRECT_SEGMENTS_LIMIT);
    this.persistentOffered = options.persistent ?? true;
  }

  /** The data path while connected. */
  get ring(): BlkbackRing | undefined {
    return this.conn?.ring;
  }

  /** The backing store while connected. */
  get store(): BlockStore | undefined {
    return this.conn?.store;
  }

  private async readOwn(key: string): Promise<string | undefined> {
    const r = await this.xs.read(`${this.nodename}/${key}`)();
    return E.isRight(r) ? r.right : undefined;
  }

  /** Reads what the toolstack wrote and publishes the transport parameters. */
  protected async probe(): Promise<E.Either<XenError, Readonly<Record<string, string>>>> {
    this.spec = parseStoreSpec(await this.readOwn(BLKBACK_KEYS.type), await this.readOwn(BLKBACK_KEYS.params), await this.readOwn(K.mode));
    this.discardEnabled = (await this.readOwn(BLKBACK_KEYS.discardEnable)) !== "0";
    const keys: Record<string, string> = { [K.maxRingPageOrder]: String(this.maxOrder) };
    if (this.maxIndirect > 0) keys[K.featureMaxIndirectSegments] = String(this.maxIndirect);
    return E.right(keys);
  }

  /** The front end is Initialised: open the store, map the ring, bind the channel, publish the disk. */
  protected async connect(front: OtherEnd): Promise<E.Either<XenError, void>> {
    const op = `blkback ${this.nodename}`;
    if (E.isLeft(this.spec)) return fail(op, "EINVAL", this.spec.left);
    const spec = this.spec.right;
    const protocol = front.keys.get(K.protocol);
    if (protocol !== undefined && protocol !== BLKIF_PROTOCOL_NATIVE) return fail(op, "ENOSYS", `front end protocol "${protocol}" is not supported`);
    const evtchn = u32(front.keys.get(K.eventChannel));
    if (evtchn === undefined) return fail(op, "EINVAL", `reading ${front.path}/${K.eventChannel}`);
    let refs: number[];
    const orderKey = front.keys.get(K.ringPageOrder);
    if (orderKey === undefined) {
      const ref = u32(front.keys.get(K.ringRef));
      if (ref === undefined) return fail(op, "EINVAL", `reading ${front.path}/${K.ringRef}`);
      refs = [ref];
    } else {
      const order = u32(orderKey);
      if (order === undefined || order > this.maxOrder) return fail(op, "EINVAL", `ring-page-order ${orderKey} exceeds max-ring-page-order ${this.maxOrder}`);
      refs = [];
      for (let i = 0; i < 1 << order; i++) {
        const ref = u32(front.keys.get(`${K.ringRef}${i}`));
        if (ref === undefined) return fail(op, "EINVAL", `reading ${front.path}/${K.ringRef}${i}`);
        refs.push(ref);
      }
    }
    const persistent = this.persistentOffered && front.keys.get(K.featurePersistent) === "1";
    const cdrom = front.keys.get(K.deviceType) === "cdrom";

    const conn: Connection = { ringPages: [], grants: this.platform.grants(front.domid) };
    this.conn = conn;
    const store = await new Promise<E.Either<Error, BlockStore>>((resolve) => openBlockStore(spec, this.platform.hostIo, resolve));
    if (E.isLeft(store)) return fail(op, "EIO", `opening ${spec.type} "${spec.params}": ${store.left.message}`);
    conn.store = store.right;

    for (const ref of refs) {
      const page = conn.grants.map(ref, true);
      if (E.isLeft(page)) return fail(op, "EINVAL", `mapping ring-ref ${ref}: ${page.left.message}`);
      conn.ringPages.push(page.right);
    }
    const sectors = BigInt(store.right.size / BLKIF_SECTOR_SIZE);
    const discard = this.discardEnabled && store.right.canDiscard;
    let port: number | undefined;
    const ring = new BlkbackRing({
      ring: conn.ringPages.map((p) => p.bytes),
      grants: conn.grants,
      store: store.right,
      limits: { sectors, readOnly: spec.readOnly, maxIndirectSegments: this.maxIndirect, discard, discardSecure: false },
      persistent,
      ...(this.options.maxPersistentGrants !== undefined && { maxPersistentGrants: this.options.maxPersistentGrants }),
      notify: () => {
        if (port !== undefined) this.platform.notify(port);
      },
      onBroken: (e) => this.broken(e),
    });
    conn.ring = ring;
    const bound = this.platform.bindInterdomain(front.domid, evtchn);
    if (E.isLeft(bound)) return bound;
    port = bound.right;
    conn.port = port;
    this.platform.onEvent(port, () => ring.kick());

    const info = (spec.readOnly ? VDISK.READONLY : 0) | (cdrom ? VDISK.CDROM : 0);
    const keys: [string, string][] = [
      [K.featureFlushCache, "1"],
      [K.featureDiscard, discard ? "1" : "0"],
      ...(discard
        ? ([
            [BLKBACK_KEYS.discardGranularity, String(BLKIF_SECTOR_SIZE)],
            [BLKBACK_KEYS.discardAlignment, "0"],
            [BLKBACK_KEYS.discardSecure, "0"],
          ] as [string, string][])
        : []),
      [K.featurePersistent, this.persistentOffered ? "1" : "0"],
      [K.sectors, String(sectors)],
      [K.info, String(info)],
      [K.sectorSize, String(BLKIF_SECTOR_SIZE)],
      [K.physicalSectorSize, String(BLKIF_SECTOR_SIZE)],
    ];
    const written = await this.xs.transaction((tx) => TE.sequenceSeqArray(keys.map(([k, v]) => this.xs.write(`${this.nodename}/${k}`, v, tx))))();
    if (E.isLeft(written)) return written;
    ring.kick(); // requests the front end put before we looked
    return E.right(undefined);
  }

  /** The front end broke the ring: this device closes, with the reason under `error/`. */
  private broken(e: RingProtocolError): void {
    void this.fatal({ op: "blkif ring", code: -XEN_ERRNO.EIO, name: "EIO", message: `blkif ring: ${e.message}` }).then(() => this.kick());
  }

  /** Waits for the I/O in flight, then unmaps and closes everything the connection holds. */
  protected async disconnect(_reason: DisconnectReason): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    if (c === undefined) return;
    if (c.ring !== undefined) await c.ring.shutdown();
    if (c.port !== undefined) this.platform.closePort(c.port);
    for (const p of c.ringPages.splice(0)) c.grants.unmap(p);
    const store = c.store;
    if (store !== undefined) await new Promise<void>((resolve) => store.close(() => resolve()));
  }
}
