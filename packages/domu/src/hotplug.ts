/**
 * Hotplug: open a front end for every device the toolstack gives the
 * domain, at boot and after (`xl block-attach`, `xl network-attach`), as
 * Linux's xenbus probes `device/<type>` on watch events.
 *
 * ```ts
 * const devices = watchDevices(k, xs, {
 *   vbd: (disk) => k.print(`${disk.nodename}: ${disk.info!.sectors} sectors`),
 *   vif: (nic) => nic.onReceive((frame) => stack.input(frame)),
 * });
 * // ... later
 * await devices.stop();
 * ```
 *
 * ## How
 *
 * One watch per handled type on `device/<type>` ({@link followDirectory}:
 * its registration event covers what is there at boot). After every event
 * the directory is listed;
 * for each new id the type's opener ({@link openBlkfront},
 * {@link Netfront.open}) starts the front end and waits for it to connect,
 * then the handler gets the connected device.
 *
 * This is a plain watch rather than the kernel's `FrontendBus`: the bus
 * makes its devices synchronously from an id, but a netfront needs its
 * `mac` read first (and its constructor is private to `Netfront.open`), and
 * the openers already wait for Connected, which is what a handler wants.
 * The semantics are the bus's: a device is opened once per appearance of its
 * directory; one that failed or stopped is not reopened until its directory
 * is removed and made again.
 *
 * ## Teardown
 *
 * Detaching is the xenbus state machine's business, which every front end
 * runs: the toolstack sets the back end's `online` to 0 and its state to
 * Closing; the front end disconnects its data path and goes Closed; the back
 * end follows to Closed; the toolstack removes both directories and the
 * front end, seeing its own directory gone, stops. The device then leaves
 * {@link DeviceWatcher.devices} and `gone` is called.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { XenbusState } from "@pvkit/abi";
import { followDirectory, type DirectoryFollower, type Kernel, type XenError, type XenbusFrontend, type XsClient } from "@pvkit/kernel";
import { openBlkfront, type BlkfrontDevice, type BlkfrontOptions } from "./blkfront/xenbus.js";
import { Netfront, type NetfrontOptions } from "./netfront/device.js";

/** What to do with devices as they come and go. A handler may be async; its errors go to `error`. */
export interface HotplugHandlers {
  /** A virtual block device (`device/vbd/<id>`) has connected. */
  readonly vbd?: (disk: BlkfrontDevice) => unknown;
  /** A network interface (`device/vif/<id>`) has connected. */
  readonly vif?: (nic: Netfront) => unknown;
  /** A device opened earlier has stopped (its directory was removed, it closed, or {@link DeviceWatcher.stop} stopped it). */
  readonly gone?: (type: HotplugType, id: string, device: XenbusFrontend) => unknown;
  /** A device could not be opened, or a handler failed. */
  readonly error?: (type: HotplugType, id: string, err: XenError | Error) => unknown;
}

/** The device types {@link watchDevices} opens. */
export type HotplugType = "vbd" | "vif";

/** How devices are opened. */
export interface HotplugOptions {
  /** Options of every blkfront. */
  readonly blkfront?: BlkfrontOptions;
  /** Options of every netfront (the id is the device's). */
  readonly netfront?: Omit<NetfrontOptions, "id">;
}

/** The running watcher: see {@link watchDevices}. */
export interface DeviceWatcher {
  /** The connected (or reconnecting) devices, by `<type>/<id>`. */
  readonly devices: ReadonlyMap<string, XenbusFrontend>;
  /** Stops watching and stops every device without changing its state (the domain is going away); opens still waiting for their back end stop when they finish. */
  stop(): Promise<void>;
}

/**
 * Watches `device/vbd` and `device/vif` (those types with a handler) and
 * opens a front end for every device directory there now and every one that
 * appears later; see the module's documentation.
 */
export function watchDevices(k: Kernel, xs: XsClient, handlers: HotplugHandlers, options: HotplugOptions = {}): DeviceWatcher {
  const devices = new Map<string, XenbusFrontend>();
  const types: TypeWatcher[] = [];
  const report = (type: HotplugType, id: string, err: XenError | Error) => {
    void Promise.resolve()
      .then(() => handlers.error?.(type, id, err))
      .catch(() => undefined);
  };
  const onGone = (type: HotplugType, id: string, dev: XenbusFrontend) => {
    // A device attached again under the same id may already have taken the entry.
    if (devices.get(`${type}/${id}`) === dev) devices.delete(`${type}/${id}`);
    void Promise.resolve()
      .then(() => handlers.gone?.(type, id, dev))
      .catch((e: unknown) => report(type, id, e instanceof Error ? e : new Error(String(e))));
  };
  const add = <D extends XenbusFrontend>(type: HotplugType, open: (id: string) => Promise<E.Either<XenError, D>>, handler: (d: D) => unknown) => {
    types.push(
      new TypeWatcher(xs, type, open, {
        up: async (id, dev) => {
          devices.set(`${type}/${id}`, dev);
          void dev.done.then(() => onGone(type, id, dev));
          try {
            await handler(dev as D); // made by `open`, so a D
          } catch (e) {
            report(type, id, e instanceof Error ? e : new Error(String(e)));
          }
        },
        failed: (id, err) => report(type, id, err),
      }),
    );
  };
  if (handlers.vbd !== undefined) add("vbd", (id) => openBlkfront(k, xs, id, options.blkfront), handlers.vbd);
  if (handlers.vif !== undefined) add("vif", (id) => Netfront.open(k, xs, { ...options.netfront, id }), handlers.vif);
  for (const t of types) t.start();
  return {
    devices,
    stop: async () => {
      await Promise.all(types.map((t) => t.stop()));
      await Promise.all([...devices.values()].map((d) => d.stop()));
    },
  };
}

/** One type's watch: lists `device/<type>` after every event and opens what is new. */
class TypeWatcher {
  /** Ids seen and not yet removed: the device opened for each, or whether it is still opening or failed to. */
  private readonly known = new Map<string, XenbusFrontend | "opening" | "failed">();
  private follower: DirectoryFollower | undefined;
  private stopped = false;

  constructor(
    private readonly xs: XsClient,
    private readonly type: HotplugType,
    private readonly open: (id: string) => Promise<E.Either<XenError, XenbusFrontend>>,
    private readonly on: { readonly up: (id: string, dev: XenbusFrontend) => Promise<void>; readonly failed: (id: string, err: XenError) => void },
  ) {}

  start(): void {
    this.follower = followDirectory(this.xs, `device/${this.type}`, () => this.scan(), { token: `hotplug-${this.type}` });
  }

  /**
   * Forgets ids whose directories are gone and starts opening new ones (each
   * open runs on its own). A directory removed and made again between two
   * passes looks unchanged, but its device has stopped and the toolstack's
   * new directory says Initialising: that is a new device too.
   */
  private async scan(): Promise<void> {
    const ids = await this.xs.directory(`device/${this.type}`)();
    const present = new Set(E.isRight(ids) ? ids.right : []);
    for (const id of [...this.known.keys()]) if (!present.has(id)) this.known.delete(id);
    for (const id of present) {
      if (this.stopped) return;
      const known = this.known.get(id);
      if (known !== undefined && !(typeof known === "object" && known.status === "stopped" && (await this.initialising(id)))) continue;
      this.known.set(id, "opening");
      void this.openOne(id);
    }
  }

  private async initialising(id: string): Promise<boolean> {
    const state = await this.xs.read(`device/${this.type}/${id}/state`)();
    return E.isRight(state) && Number(state.right) === XenbusState.Initialising;
  }

  private async openOne(id: string): Promise<void> {
    const r = await this.open(id);
    if (E.isLeft(r)) {
      // Not written yet (or removed meanwhile): try again on the next event. Otherwise wait for a new directory.
      if (r.left.name === "ENOENT") this.known.delete(id);
      else {
        if (this.known.has(id)) this.known.set(id, "failed");
        this.on.failed(id, r.left);
      }
      return;
    }
    if (this.stopped) return r.right.stop(); // an open that finished after stop()
    if (this.known.has(id)) this.known.set(id, r.right);
    // Once it stops, look again: its directory may already be a new device's.
    void r.right.done.then(() => this.follower?.rescan());
    await this.on.up(id, r.right);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.follower?.stop();
  }
}
