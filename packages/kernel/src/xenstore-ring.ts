/**
 * A guest's XenStore connection: the ring page shared with xenstored.
 *
 * The domain builder gives every domU one page for XenStore
 * (`start_info.store_mfn`) and one event channel (`start_info.store_evtchn`).
 * The port is allocated in the guest with dom0 as its remote end, and
 * xenstored binds to it when the toolstack introduces the domain
 * (`XS_INTRODUCE domid mfn port`), so the guest uses it as it is: no bind.
 *
 * The page ({@link xenstore_domain_interface}) holds two byte rings: the
 * guest writes requests into `req` and reads replies and watch events from
 * `rsp`. After producing into `req` the guest notifies the port; after
 * consuming from `rsp` it notifies too, since xenstored may be waiting for
 * room. When `req` is full the guest waits for an event (xenstored notifies
 * after consuming) and writes the rest.
 *
 * @module
 */
import { PAGE_SIZE } from "@pvkit/abi";
import { RingProtocolError, xenstoreGuest, type ByteRingPair } from "@pvkit/ring";
import type { Events } from "./events.js";
import type { Kernel } from "./kernel.js";
import { XsClient, type XsTransport } from "./xenstore.js";

/** The guest's end of its XenStore ring page, as an {@link XsTransport}. */
export class RingXsTransport implements XsTransport {
  private readonly rings: ByteRingPair;
  private handler: ((bytes: Uint8Array) => void) | undefined;
  private closeHandler: ((reason?: Error) => void) | undefined;
  /** Writes in order: each send waits for the ones before it. */
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  /**
   * @param page the XenStore page (at least the 2076 bytes of `xenstore_domain_interface`)
   * @param port the store event channel, already connected to xenstored's end
   * @param events the kernel's event channels
   */
  constructor(
    page: Uint8Array,
    private readonly port: number,
    private readonly events: Events,
  ) {
    this.rings = xenstoreGuest(page);
    events.on(port, () => this.drain());
  }

  /** Queues the bytes of one message; resolves once all of them are in `req`. */
  send(bytes: Uint8Array): Promise<void> {
    const done = this.tail.then(() => this.writeAll(bytes));
    this.tail = done.catch(() => undefined);
    return done;
  }

  private async writeAll(bytes: Uint8Array): Promise<void> {
    let rest = bytes;
    for (;;) {
      if (this.closed) throw new Error("xenstore ring closed");
      const n = this.rings.tx.write(rest);
      if (n > 0) this.events.notify(this.port);
      rest = rest.subarray(n);
      if (rest.byteLength === 0) return;
      await this.events.wait(this.port); // xenstored notifies once it has consumed
    }
  }

  /** {@inheritDoc XsTransport.onData} */
  onData(handler: (bytes: Uint8Array) => void): void {
    this.handler = handler;
    this.drain(); // replies or events already waiting
  }

  /** {@inheritDoc XsTransport.onClose} */
  onClose(handler: (reason?: Error) => void): void {
    this.closeHandler = handler;
  }

  /** Takes everything in `rsp`, hands it on and tells xenstored there is room. */
  private drain(): void {
    if (this.closed || this.handler === undefined) return;
    let moved = false;
    let bytes: Uint8Array;
    try {
      while ((bytes = this.rings.rx.read()).byteLength > 0) {
        moved = true;
        this.handler(bytes);
      }
    } catch (e) {
      if (!(e instanceof RingProtocolError)) throw e;
      // The indexes are xenstored's to write; nonsense in them ends the connection.
      this.shutdown(e);
    } finally {
      if (moved) this.events.notify(this.port);
    }
  }

  private shutdown(reason?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.events.off(this.port);
    this.closeHandler?.(reason);
  }

  /** Stops serving the page. The port stays open: it belongs to the domain's XenStore connection, not to this object. */
  close(): void {
    this.shutdown();
  }
}

/** The XenStore page and port of a domU, as `start_info` names them; throws if the builder gave none. */
export function xenstoreRingOf(k: Kernel): { page: Uint8Array; port: number } {
  const mfn = Number(k.startInfo.store_mfn);
  if (mfn === 0) throw new Error("start_info names no XenStore page (store_mfn 0): this domain reaches xenstored another way");
  const pfn = k.memory.pfnOf(mfn);
  if (pfn === undefined) throw new Error(`start_info names XenStore frame ${mfn}, which is not in this domain's P2M`);
  const view = k.memory.memory.page(pfn * PAGE_SIZE);
  return { page: new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE), port: k.startInfo.store_evtchn };
}

/**
 * Opens a domU's XenStore connection: a {@link XsClient} over its ring page
 * and store event channel; later calls return the same client, since a ring
 * carries one connection. Throws if `start_info` names no XenStore page
 * (dom0, whose xenstored runs in-process).
 *
 * ```ts
 * export default kernelMain(async (k) => {
 *   const xs = openXenstore(k);
 *   const name = await xs.read("name")();
 * });
 * ```
 */
export function openXenstore(k: Kernel): XsClient {
  // One ring, one client: every caller of a kernel shares the same connection.
  let xs = clients.get(k);
  if (xs === undefined) {
    const { page, port } = xenstoreRingOf(k);
    clients.set(k, (xs = new XsClient(new RingXsTransport(page, port, k.events))));
  }
  return xs;
}

const clients = new WeakMap<Kernel, XsClient>();
