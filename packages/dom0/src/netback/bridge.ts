/**
 * A learning Ethernet bridge, in the role of Linux's `xenbr0` in dom0:
 * every vif is a port; a frame that enters on one port leaves on the port
 * behind which its destination was last seen, or on every other port when
 * the destination is unknown (flooding) or a group address (broadcast and
 * multicast).
 *
 * - **Learning.** The source MAC of each frame is remembered with the port
 *   it came in on and the time. A frame with a group or all-zero source
 *   address is invalid and dropped, as Linux's bridge drops it.
 * - **Aging.** An entry not refreshed for `agingNs` (default 300 s, Linux's
 *   `ageing_time`) is forgotten, so a station that moved is flooded to
 *   until it is heard from again.
 * - **Filtering.** A frame whose destination is behind the port it came in
 *   on is not sent back.
 * - **Capture.** Every valid frame that enters the bridge is written, once,
 *   to its {@link PacketSink} (a pcap file).
 *
 * A port's `deliver` receives the bridge's frame: it must copy what it
 * keeps and never change it (the same bytes go to every port of a flood).
 *
 * @module
 */
import type { PacketSink } from "./pcap.js";

/** A port of a bridge: a vif, or a test's tap. */
export interface BridgePort {
  /** The port's name (`vif1.0`). */
  readonly name: string;
  /** Takes a frame leaving the bridge on this port; must not modify it. */
  deliver(frame: Uint8Array): void;
}

/** How a bridge is built. */
export interface BridgeOptions {
  /** The clock for learning, aging and capture timestamps, in ns (default: always 0). */
  readonly now?: () => number;
  /** Where to capture what crosses the bridge. */
  readonly capture?: PacketSink;
  /** Forget a learned address after this long without a frame from it, in ns (default 300 s). */
  readonly agingNs?: number;
  /**
   * Most addresses learned at once (default 4096): a guest sending from
   * ever new source addresses pushes out the stalest, rather than growing
   * dom0's memory without end. (Linux's `fdb_max_learned` instead stops
   * learning at its limit; evicting keeps a newly started guest reachable.)
   */
  readonly maxLearned?: number;
}

/** A learned address. */
export interface FdbEntry {
  /** The port it was seen behind. */
  readonly port: BridgePort;
  /** When it was last seen, in ns. */
  readonly seen: number;
}

/** Counters of a bridge. */
export interface BridgeStats {
  /** Valid frames that entered. */
  frames: number;
  /** Frames sent to the one port their destination was learned behind. */
  forwarded: number;
  /** Frames flooded because their destination was unknown. */
  flooded: number;
  /** Frames sent to every port because their destination is a group address. */
  broadcast: number;
  /** Frames not sent back to the port their destination is behind. */
  filtered: number;
  /** Frames dropped as invalid (too short, bad source address, unknown port). */
  dropped: number;
  /** Learned addresses forgotten, still fresh, to make room for a new one. */
  evicted: number;
}

/** Bytes of an Ethernet header. */
const ETH_HLEN = 14;
/** The default aging time: Linux's 300 s. */
export const BRIDGE_AGING_NS_DEFAULT = 300_000_000_000;
/** The default most addresses a bridge learns. */
export const BRIDGE_MAX_LEARNED_DEFAULT = 4096;

/** `aa:bb:cc:dd:ee:ff` of six bytes at `at`. */
export function macAt(frame: Uint8Array, at: number): string {
  let s = "";
  for (let i = 0; i < 6; i++) s += (i > 0 ? ":" : "") + frame[at + i]!.toString(16).padStart(2, "0");
  return s;
}

/** A learning bridge. */
export class Bridge {
  /** Counters. */
  readonly stats: BridgeStats = { frames: 0, forwarded: 0, flooded: 0, broadcast: 0, filtered: 0, dropped: 0, evicted: 0 };
  private readonly ports: BridgePort[] = [];
  private readonly fdb = new Map<string, FdbEntry>();
  private readonly now: () => number;
  private readonly agingNs: number;
  private readonly maxLearned: number;
  private capture: PacketSink | undefined;

  /**
   * @param name the bridge's name (`xenbr0`)
   * @param options clock, capture and aging
   */
  constructor(
    readonly name: string,
    options: BridgeOptions = {},
  ) {
    this.now = options.now ?? (() => 0);
    this.agingNs = options.agingNs ?? BRIDGE_AGING_NS_DEFAULT;
    this.maxLearned = options.maxLearned ?? BRIDGE_MAX_LEARNED_DEFAULT;
    this.capture = options.capture;
  }

  /** The ports attached, in the order they were attached. */
  get portList(): readonly BridgePort[] {
    return this.ports;
  }

  /** Adds a port (again: no effect). */
  attach(port: BridgePort): void {
    if (!this.ports.includes(port)) this.ports.push(port);
  }

  /** Removes a port and forgets every address learned behind it. */
  detach(port: BridgePort): void {
    const i = this.ports.indexOf(port);
    if (i >= 0) this.ports.splice(i, 1);
    for (const [mac, e] of [...this.fdb]) if (e.port === port) this.fdb.delete(mac);
  }

  /** The port `mac` (`aa:bb:…`) was learned behind, unless it has aged out. */
  lookup(mac: string): BridgePort | undefined {
    const e = this.fdb.get(mac);
    if (e === undefined) return undefined;
    if (this.now() - e.seen > this.agingNs) {
      this.fdb.delete(mac);
      return undefined;
    }
    return e.port;
  }

  /** Forgets the aged addresses, stalest first, or failing any, the stalest one. */
  private makeRoom(now: number): void {
    for (const [mac, e] of this.fdb) {
      if (now - e.seen <= this.agingNs) break;
      this.fdb.delete(mac);
    }
    if (this.fdb.size < this.maxLearned) return;
    const stalest = this.fdb.keys().next();
    if (stalest.done !== true) {
      this.fdb.delete(stalest.value);
      this.stats.evicted++;
    }
  }

  /** The forwarding database: learned addresses, oldest first. */
  entries(): [string, FdbEntry][] {
    return [...this.fdb];
  }

  /**
   * A frame entering on `from`: capture it, learn its source, and send it
   * on. Returns the ports it was delivered to.
   */
  input(from: BridgePort, frame: Uint8Array): BridgePort[] {
    if (frame.length < ETH_HLEN || !this.ports.includes(from)) {
      this.stats.dropped++;
      return [];
    }
    const srcGroup = (frame[6]! & 1) === 1;
    const srcZero = frame.subarray(6, 12).every((b) => b === 0);
    if (srcGroup || srcZero) {
      this.stats.dropped++;
      return [];
    }
    this.stats.frames++;
    const now = this.now();
    this.capture?.write(now, frame);
    const src = macAt(frame, 6);
    const learned = this.fdb.get(src);
    if (learned === undefined || learned.port !== from || learned.seen !== now) {
      // Re-insert so the map stays in order of last refresh.
      this.fdb.delete(src);
      if (this.fdb.size >= this.maxLearned) this.makeRoom(now);
      this.fdb.set(src, { port: from, seen: now });
    }
    let out: BridgePort[];
    if ((frame[0]! & 1) === 1) {
      this.stats.broadcast++;
      out = this.ports.filter((p) => p !== from);
    } else {
      const to = this.lookup(macAt(frame, 0));
      if (to === from) {
        this.stats.filtered++;
        return [];
      }
      if (to !== undefined) {
        this.stats.forwarded++;
        out = [to];
      } else {
        this.stats.flooded++;
        out = this.ports.filter((p) => p !== from);
      }
    }
    for (const p of out) p.deliver(frame);
    return out;
  }

  /** Stops capturing and closes the capture. */
  close(): void {
    this.capture?.close();
    this.capture = undefined;
  }
}
