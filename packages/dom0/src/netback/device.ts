/**
 * Netback's xenbus side: one backend device per vif, negotiating over
 * `backend/vif/<frontend-domid>/<handle>` as Linux's
 * `drivers/net/xen-netback/xenbus.c` does, and handing the rings to the
 * data path (`datapath.ts`).
 *
 * Probe publishes what this netback offers:
 *
 * | key | value |
 * | --- | --- |
 * | `feature-sg` | 1: frames over several slots (`NETTXF_more_data`, `NETRXF_more_data`) |
 * | `feature-rx-copy` | 1: RX buffers are filled by grant copy |
 * | `feature-rx-flip` | 0: page flipping is not offered |
 * | `feature-split-event-channels` | 1: separate TX and RX event channels are accepted |
 * | `hotplug-status` | `connected`: the vif's bridge exists; else `error`, with `hotplug-error` saying why (what `vif-bridge` reports) |
 *
 * and the toolstack's `mac`, `handle` and `bridge` stay as written. On
 * connect it reads the frontend's `tx-ring-ref`, `rx-ring-ref` and
 * `event-channel` (or `event-channel-tx` and `event-channel-rx`), requires
 * `request-rx-copy` = 1 and `feature-rx-notify` = 1 (as Linux's netback
 * does), takes `feature-sg`, refuses more than one queue
 * (`multi-queue-num-queues`, not offered), maps both ring pages
 * (`GNTTABOP_map_grant_ref`), binds the event channel(s) and attaches the
 * vif to its bridge. Disconnecting undoes all of it, in reverse. A ring the
 * frontend breaks makes the device fatal: the error goes to
 * `error/backend/vif/<domid>/<handle>/error`, the device goes Closing and
 * the frontend follows; no other vif notices.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE, XEN_ERRNO } from "@pvkit/abi";
import { XenbusBackend, type DisconnectReason, type GrantMapping, type Kernel, type OtherEnd, type XenError, type XsClient } from "@pvkit/kernel";
import type { Bridge } from "./bridge.js";
import { VifDataPath } from "./datapath.js";
import type { GrantCopier } from "./grant-copy.js";

/** A netback error as a {@link XenError}: `op` failed with errno `name`, and why. */
export function netbackError(op: string, name: keyof typeof XEN_ERRNO, detail: string): XenError {
  return { op, code: -XEN_ERRNO[name], name, message: `${op}: ${detail}` };
}

/** What a netback device needs from the service that made it. */
export interface NetbackHost {
  /** The kernel the backend runs in. */
  readonly k: Kernel;
  /** Grant copies through the service's bounce pages. */
  readonly copier: GrantCopier;
  /** The bridge of that name, if it exists (or can be made). */
  bridge(name: string): Bridge | undefined;
  /** Logs a line (a fatal vif error). */
  log(line: string): void;
  /** Frames held per vif while its guest has too few RX buffers posted. */
  readonly rxQueueMax?: number;
  /** What the devices hold right now, all vifs together: ring pages mapped and event channels bound. */
  readonly held: { rings: number; ports: number };
}

/** What a connected vif holds: everything disconnect gives back. */
interface Connection {
  readonly maps: GrantMapping[];
  readonly ports: number[];
  vif: VifDataPath | undefined;
  bridge: Bridge | undefined;
}

/** Reads a decimal key of the frontend: the number, or undefined if absent or malformed. */
function decimal(keys: ReadonlyMap<string, string>, key: string, max = 0xffff_ffff): number | undefined {
  const s = keys.get(key);
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

/** The backend device of one vif. */
export class NetbackDevice extends XenbusBackend {
  /** The vif's data path while connected. */
  datapath: VifDataPath | undefined;
  /** The bridge named by the `bridge` key. */
  bridgeName = "xenbr0";
  private conn: Connection | undefined;
  private pendingFatal: XenError | undefined;

  /**
   * @param host the netback service
   * @param xs the backend domain's XenStore connection
   * @param frontendId the frontend's domain
   * @param id the vif's handle
   */
  constructor(
    private readonly host: NetbackHost,
    xs: XsClient,
    frontendId: number,
    id: string,
  ) {
    super(xs, { type: "vif", frontendId, id });
  }

  /** The port name, as Linux names the backend interface: `vif<domid>.<handle>`. */
  get vifName(): string {
    return `vif${this.frontendId}.${this.id}`;
  }

  /** Publishes the features (see the module notes). */
  protected async probe(): Promise<E.Either<XenError, Readonly<Record<string, string>>>> {
    const bridge = await this.xs.read(`${this.nodename}/bridge`)();
    if (E.isRight(bridge) && bridge.right !== "") this.bridgeName = bridge.right;
    const features: Record<string, string> = {
      "feature-sg": "1",
      "feature-rx-copy": "1",
      "feature-rx-flip": "0",
      "feature-split-event-channels": "1",
    };
    // What vif-bridge reports: the bridge is there, or why the vif cannot join it.
    if (this.host.bridge(this.bridgeName) !== undefined) features["hotplug-status"] = "connected";
    else Object.assign(features, { "hotplug-status": "error", "hotplug-error": `Could not find bridge device ${this.bridgeName}` });
    return E.right(features);
  }

  /** Maps the frontend's rings, binds its event channel(s) and attaches the vif to its bridge. */
  protected async connect(front: OtherEnd): Promise<E.Either<XenError, void>> {
    const keys = front.keys;
    const op = `netback connect ${this.vifName}`;
    if (keys.get("request-rx-copy") !== "1") return E.left(netbackError(op, "EOPNOTSUPP", "the frontend must request rx-copy (page flipping is not supported)"));
    if (keys.get("feature-rx-notify") !== "1") return E.left(netbackError(op, "EOPNOTSUPP", "feature-rx-notify is mandatory"));
    const queues = keys.get("multi-queue-num-queues");
    if (queues !== undefined && queues !== "1") return E.left(netbackError(op, "EOPNOTSUPP", `${queues} queues asked, multi-queue is not offered`));
    const txRef = decimal(keys, "tx-ring-ref");
    const rxRef = decimal(keys, "rx-ring-ref");
    if (txRef === undefined || rxRef === undefined) return E.left(netbackError(op, "EINVAL", "tx-ring-ref or rx-ring-ref missing or malformed"));
    const split = keys.has("event-channel-tx") || keys.has("event-channel-rx");
    const txPort = decimal(keys, split ? "event-channel-tx" : "event-channel");
    const rxPort = split ? decimal(keys, "event-channel-rx") : txPort;
    if (txPort === undefined || rxPort === undefined) return E.left(netbackError(op, "EINVAL", "event channel missing or malformed"));
    const bridge = this.host.bridge(this.bridgeName);
    if (bridge === undefined) return E.left(netbackError(op, "ENODEV", `no bridge named ${this.bridgeName}`));

    const k = this.host.k;
    const conn: Connection = { maps: [], ports: [], vif: undefined, bridge: undefined };
    this.conn = conn;
    for (const ref of [txRef, rxRef]) {
      const m = k.grants.map(this.frontendId, ref);
      if (E.isLeft(m)) return E.left({ ...m.left, message: `${op}: mapping ring ref ${ref}: ${m.left.message}` });
      conn.maps.push(m.right);
      this.host.held.rings++;
    }
    for (const port of split ? [txPort, rxPort] : [txPort]) {
      const local = k.events.bindInterdomain(this.frontendId, port);
      if (E.isLeft(local)) return E.left({ ...local.left, message: `${op}: binding port ${port}: ${local.left.message}` });
      conn.ports.push(local.right);
      this.host.held.ports++;
    }
    const [localTx, localRx] = [conn.ports[0]!, conn.ports[conn.ports.length - 1]!];
    const ringPage = (m: GrantMapping) => {
      const v = k.memory.memory.page(m.va);
      return new Uint8Array(v.buffer, v.byteOffset, PAGE_SIZE);
    };
    const vif = new VifDataPath({
      name: this.vifName,
      txRing: ringPage(conn.maps[0]!),
      rxRing: ringPage(conn.maps[1]!),
      io: this.host.copier.io(this.frontendId),
      sg: keys.get("feature-sg") === "1",
      notifyTx: () => void k.events.notify(localTx),
      notifyRx: () => void k.events.notify(localRx),
      onBroken: (reason) => this.broken(reason),
      ...(this.host.rxQueueMax !== undefined && { rxQueueMax: this.host.rxQueueMax }),
    });
    vif.output = (frame) => bridge.input(vif, frame);
    conn.vif = vif;
    conn.bridge = bridge;
    this.datapath = vif;
    bridge.attach(vif);
    k.events.on(localTx, () => vif.event());
    if (localRx !== localTx) k.events.on(localRx, () => vif.event());
    // Whatever the frontend published before we were listening.
    vif.event();
    return E.right(undefined);
  }

  /** The ring is broken: stop at once, and close the device from the next pass. */
  private broken(reason: string): void {
    this.conn?.bridge?.detach(this.conn.vif!);
    this.host.log(`netback: ${this.vifName}: ${reason}; disconnecting`);
    this.pendingFatal = netbackError(`netback ${this.vifName}`, "EIO", `ring broken: ${reason}`);
    this.kick();
  }

  /** Runs a pending fatal error inside a pass, so it never races the state machine. */
  protected override async step(): Promise<void> {
    const fatal = this.pendingFatal;
    if (fatal !== undefined && this.status === "running") {
      this.pendingFatal = undefined;
      await this.fatal(fatal);
      return super.step();
    }
    return super.step();
  }

  /** Logs a failure that closes the device (a refused connect, a broken ring), then closes it as xenbus does. */
  protected override async fatal(err: XenError): Promise<void> {
    if (!err.message.includes("ring broken")) this.host.log(`netback: ${this.vifName}: ${err.message}`);
    return super.fatal(err);
  }

  /** Detaches from the bridge, closes the event channel(s) and unmaps the rings. */
  protected async disconnect(_reason: DisconnectReason): Promise<void> {
    const conn = this.conn;
    this.conn = undefined;
    this.datapath = undefined;
    if (conn === undefined) return;
    const k = this.host.k;
    if (conn.vif !== undefined) {
      conn.vif.stop();
      conn.bridge?.detach(conn.vif);
    }
    for (const port of conn.ports) {
      k.events.off(port);
      const closed = k.events.close(port);
      if (E.isLeft(closed)) this.host.log(`netback: ${this.vifName}: closing port ${port}: ${closed.left.message}`);
      else this.host.held.ports--;
    }
    for (const m of conn.maps) {
      const unmapped = k.grants.unmap(m);
      if (E.isLeft(unmapped)) this.host.log(`netback: ${this.vifName}: unmapping ring ref ${m.ref}: ${unmapped.left.message}`);
      else this.host.held.rings--;
    }
  }
}
