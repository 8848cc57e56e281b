/**
 * Netback: the backend of Xen's network split driver, the bridges its vifs
 * are ports of, and packet capture.
 *
 * {@link startNetback} runs in the backend's domain — dom0, or a driver
 * domain (see `driver-domain.ts`) — and serves every
 * `backend/vif/<frontend-domid>/<handle>` directory the toolstack creates
 * in that domain's home. Each vif is negotiated by a {@link NetbackDevice}
 * (xenbus) and served by a {@link VifDataPath} (the TX and RX rings of
 * `io/netif.h`), which copies frames with `GNTTABOP_copy` through the
 * service's bounce pages ({@link GrantCopier}) and hands them to the
 * {@link Bridge} its `bridge` key names. A bridge given a `pcap` path writes
 * every frame that crosses it to that file ({@link PcapFile}).
 *
 * @module
 */
import { BackendBus, type Kernel, type XsClient } from "@pvkit/kernel";
import type { Backends } from "../backends.js";
import { Bridge } from "./bridge.js";
import { NetbackDevice, type NetbackHost } from "./device.js";
import { GrantCopier } from "./grant-copy.js";
import { PcapFile } from "./pcap.js";

export * from "./bridge.js";
export * from "./datapath.js";
export * from "./device.js";
export * from "./grant-copy.js";
export * from "./pcap.js";

/** A bridge to create: its name, and optionally a pcap file to capture what crosses it. */
export interface BridgeSpec {
  /** The bridge's name, as vifs' `bridge` key names it (`xenbr0`). */
  readonly name: string;
  /** A host path to write a libpcap capture of every frame that crosses the bridge. */
  readonly pcap?: string;
}

/** How netback is started. */
export interface NetbackOptions {
  /** The bridges to create. */
  readonly bridges: readonly BridgeSpec[];
  /** Create a bridge (without capture) when a vif names one not listed, instead of failing the vif (default false). */
  readonly createBridges?: boolean;
  /** Where log lines go (default: the kernel's console). */
  readonly log?: (line: string) => void;
  /** Frames held per vif while its guest has too few RX buffers posted. */
  readonly rxQueueMax?: number;
}

/** The running network backend of one domain. */
export class Netback implements Backends, NetbackHost {
  /** The bridges, by name. */
  readonly bridges = new Map<string, Bridge>();
  /** Grant copies through the bounce pages. */
  readonly copier: GrantCopier;
  /** Frames held per vif while its guest has too few RX buffers posted. */
  readonly rxQueueMax?: number;
  /** Vifs served so far (devices that started). */
  served = 0;
  /** Ring pages mapped and event channels bound by all vifs now: both 0 once every vif has disconnected. */
  readonly held = { rings: 0, ports: 0 };
  private readonly bus: BackendBus<NetbackDevice>;
  private readonly createBridges: boolean;
  private readonly logLine: (line: string) => void;
  private readonly idleWaiters: (() => void)[] = [];
  private live = 0;
  private stopped = false;

  /**
   * Creates the bridges (opening their capture files), takes the bounce
   * pages and starts watching `backend/vif`.
   */
  constructor(
    readonly k: Kernel,
    readonly xs: XsClient,
    opts: NetbackOptions,
  ) {
    this.createBridges = opts.createBridges ?? false;
    this.logLine = opts.log ?? ((line) => void k.print(line));
    if (opts.rxQueueMax !== undefined) this.rxQueueMax = opts.rxQueueMax;
    for (const spec of opts.bridges) this.addBridge(spec);
    this.copier = new GrantCopier(k);
    this.bus = new BackendBus(xs, "vif", (frontendId, id) => this.track(new NetbackDevice(this, xs, frontendId, id)));
    this.bus.start();
  }

  /** Creates a bridge; a capture file that cannot be opened is logged and the bridge runs without it. */
  addBridge(spec: BridgeSpec): Bridge {
    const existing = this.bridges.get(spec.name);
    if (existing !== undefined) return existing;
    let capture: PcapFile | undefined;
    if (spec.pcap !== undefined) {
      try {
        capture = PcapFile.create(spec.pcap);
      } catch (e) {
        this.log(`netback: ${spec.name}: cannot write ${spec.pcap}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const bridge = new Bridge(spec.name, { now: () => this.k.clock.now(), ...(capture !== undefined && { capture }) });
    this.bridges.set(spec.name, bridge);
    return bridge;
  }

  /** {@inheritDoc NetbackHost.bridge} */
  bridge(name: string): Bridge | undefined {
    return this.bridges.get(name) ?? (this.createBridges && !this.stopped ? this.addBridge({ name }) : undefined);
  }

  /** {@inheritDoc NetbackHost.log} */
  log(line: string): void {
    this.logLine(line);
  }

  /** The devices being served, by backend directory. */
  get devices(): ReadonlyMap<string, NetbackDevice> {
    return this.bus.devices;
  }

  /** Counts a device as served once it has started (published its features), and as gone when it stops. */
  private track(d: NetbackDevice): NetbackDevice {
    let counted = false;
    const off = d.onChange(() => {
      if (counted || d.status !== "running") return;
      counted = true;
      this.served++;
      this.live++;
    });
    void d.done.then(() => {
      off();
      if (!counted) return;
      this.live--;
      if (this.live === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
    return d;
  }

  /** Resolves once netback has served at least one vif and serves none any more. */
  idle(): Promise<void> {
    if (this.served > 0 && this.live === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Disconnects every vif, stops watching, closes the captures and gives the bounce pages back. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.bus.stop();
    for (const b of this.bridges.values()) b.close();
    this.copier.release();
  }
}

/**
 * Starts netback in the kernel `k`, with `xs` its XenStore connection:
 * creates the bridges and serves every vif whose backend directory appears
 * under `backend/vif` in this domain's home.
 */
export function startNetback(k: Kernel, xs: XsClient, opts: NetbackOptions): Netback {
  return new Netback(k, xs, opts);
}
