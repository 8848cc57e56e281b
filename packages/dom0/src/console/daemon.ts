/**
 * The console daemon, in the role of Xen's `xenconsoled`: dom0 serves every
 * domU's console.
 *
 * For each domain the toolstack builds, {@link ConsoleDaemon.connect} maps
 * the guest's console page through the reserved grant
 * `GNTTAB_RESERVED_CONSOLE` and binds the guest's console event channel. On
 * each event from the guest the daemon takes what it wrote to `out` (one
 * ring's worth at most), tells it there is room again, and writes any typed
 * input that was waiting for room in `in`. The output is
 *
 * - cut into lines, each stamped with the virtual time (`k.clock.now()`)
 *   its first byte reached dom0, and passed to the sink;
 * - kept in a bounded per-domain history ({@link ConsoleDaemon.history});
 * - passed as it came, byte for byte, to whoever is attached
 *   ({@link ConsoleDaemon.attach}) — in particular host programs connected
 *   to the domain's Unix socket (see `sockets.ts`), who can also type.
 *
 * Isolation, as xenconsoled has it:
 *
 * - **Floods.** Each event moves at most one ring's worth, and a domain may
 *   have at most `rateLimit.events` events served per `rateLimit.periodNs`
 *   of virtual time (Xen's `RATE_LIMIT_ALLOWANCE` of 30 per
 *   `RATE_LIMIT_PERIOD` of 200 ms by default); past that its port is masked
 *   until the period ends, its ring fills and its writes wait. Other
 *   domains are served as before.
 * - **Broken rings.** A guest whose ring indexes are impossible
 *   (`RingProtocolError`) loses its console: the daemon stops reading it,
 *   passes on its last partial line and ends its attached clients. Nothing
 *   else is affected; {@link ConsoleDaemon.disconnect} still releases it.
 *
 * The page's data path is {@link ConsoleRing}, which knows nothing of this
 * file; the daemon reaches the kernel only through a {@link ConsoleEnv}, so
 * it runs in tests over plain pages and a fake clock.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { RingProtocolError } from "@pvkit/ring";
import type { Kernel, XenError } from "@pvkit/kernel";
import { kernelConsoleEnv, type ConsoleEndpoint, type ConsoleEnv } from "./env.js";
import { ConsoleHistory, LineAssembler, MAX_LINE, type ConsoleLine } from "./log.js";
import { ConsoleRing } from "./ring.js";
import { ConsoleSockets } from "./sockets.js";

/** Where complete lines go: the domain's name and id, the line, and the virtual time (ns) its first byte was read. */
export type ConsoleLineSink = (name: string, domid: number, line: string, tNs: number) => void;

/** How many guest events the daemon serves per domain in a period of virtual time. */
export interface ConsoleRateLimit {
  /** Events served per period (Xen: `RATE_LIMIT_ALLOWANCE`, 30). */
  readonly events: number;
  /** The period, in ns of virtual time (Xen: `RATE_LIMIT_PERIOD`, 200 ms). */
  readonly periodNs: number;
}

/** xenconsoled's limit: 30 events per 200 ms. */
export const DEFAULT_CONSOLE_RATE_LIMIT: ConsoleRateLimit = { events: 30, periodNs: 200_000_000 };

/** History kept per domain by default, in bytes of text. */
export const DEFAULT_HISTORY_BYTES = 64 * 1024;

/** Options of a {@link ConsoleDaemon}. */
export interface ConsoleDaemonOptions {
  /** Gets every complete line (and a last partial line on disconnect). */
  readonly sink?: ConsoleLineSink;
  /**
   * Serves each console on a Unix socket `<socketDir>/<domid>`, with a
   * symbolic link `<socketDir>/<name>` to it: a host program connecting
   * receives the history and then the live output, and what it writes is
   * typed at the console. The directory is created.
   */
  readonly socketDir?: string;
  /** Bytes of lines kept per domain (default {@link DEFAULT_HISTORY_BYTES}). */
  readonly historyBytes?: number;
  /** Longest line kept whole (default {@link MAX_LINE} code units); longer ones are cut. */
  readonly maxLine?: number;
  /** The flood limit (default {@link DEFAULT_CONSOLE_RATE_LIMIT}); `false` serves every event. */
  readonly rateLimit?: ConsoleRateLimit | false;
  /** The daemon's own notices: a console lost to a broken ring, a socket that failed. */
  readonly log?: (message: string) => void;
}

/** Someone attached to a console: gets its output as it comes, and is told when it ends. */
export interface ConsoleListener {
  /** Output bytes, exactly as the guest wrote them. */
  output(bytes: Uint8Array): void;
  /** The console is gone (the domain disconnected, or broke its ring). Called once; nothing follows. */
  end(): void;
  /** Typed input that was waiting has all reached the guest's ring. */
  drained?(): void;
}

/** An attachment made by {@link ConsoleDaemon.attach}. */
export interface ConsoleAttachment {
  /** What the console said before: the history as text lines, then the line in progress. */
  readonly replay: Uint8Array;
  /** False if the console is already lost: nothing live will follow the replay (and `end` was not called). */
  readonly live: boolean;
  /** Stops the output. */
  detach(): void;
}

/** The state of a domain's console. */
export type ConsoleState = "live" | "lost";

/** What the daemon knows of one connected console. */
export interface ConsoleInfo {
  /** The domain. */
  readonly domid: number;
  /** Its name, as the toolstack gave it. */
  readonly name: string;
  /** dom0's port of its console channel. */
  readonly port: number;
  /** Served, or lost to a broken ring. */
  readonly state: ConsoleState;
  /** Its Unix socket, if the daemon has a socket directory. */
  readonly socket?: string;
}

/** One connected console. */
class ServedConsole {
  readonly ring: ConsoleRing;
  readonly lines: LineAssembler;
  readonly history: ConsoleHistory;
  readonly listeners = new Set<ConsoleListener>();
  state: ConsoleState = "live";
  /** Virtual time the current rate-limit period ends. */
  periodEnd = 0;
  /** Events served in the current period. */
  events = 0;
  /** Masked until the period ends. */
  throttled = false;
  /** Input was waiting: tell listeners when it has all gone. */
  inputWaiting = false;

  constructor(
    readonly domid: number,
    readonly name: string,
    readonly endpoint: ConsoleEndpoint,
    historyBytes: number,
    maxLine: number,
  ) {
    this.ring = new ConsoleRing(endpoint.page, endpoint);
    this.lines = new LineAssembler(maxLine);
    this.history = new ConsoleHistory(historyBytes);
  }
}

/** The console daemon: every domU's console, served from dom0. See the module documentation. */
export class ConsoleDaemon {
  private readonly env: ConsoleEnv;
  private readonly consoles = new Map<number, ServedConsole>();
  private readonly sink: ConsoleLineSink;
  private readonly historyBytes: number;
  private readonly maxLine: number;
  private readonly rateLimit: ConsoleRateLimit | false;
  private readonly log: (message: string) => void;
  private readonly sockets: ConsoleSockets | undefined;

  /**
   * Starts the daemon in dom0's kernel `k` — or over any {@link ConsoleEnv},
   * as tests do. With `opts.socketDir` it takes a host interrupt line for the
   * sockets (only dom0's boot vCPU has them) and throws if it cannot.
   */
  constructor(k: Kernel | ConsoleEnv, opts: ConsoleDaemonOptions = {}) {
    this.env = isConsoleEnv(k) ? k : kernelConsoleEnv(k);
    this.sink = opts.sink ?? (() => {});
    this.historyBytes = opts.historyBytes ?? DEFAULT_HISTORY_BYTES;
    this.maxLine = opts.maxLine ?? MAX_LINE;
    this.rateLimit = opts.rateLimit ?? DEFAULT_CONSOLE_RATE_LIMIT;
    this.log = opts.log ?? (() => {});
    if (opts.socketDir !== undefined) {
      const line = this.env.hostLine();
      if (E.isLeft(line)) throw new Error(`console daemon: no host interrupt line for the sockets: ${line.left.message}`);
      this.sockets = new ConsoleSockets(this, line.right, opts.socketDir, this.log);
    }
  }

  /**
   * Connects to the console of `domid`, whose end of the console channel is
   * `remotePort` (`start_info.console.domU.evtchn`, which the builder
   * reports): maps its page, binds the channel, takes what the guest wrote
   * before, and opens its socket. Connecting a domain already connected
   * replaces the old connection.
   */
  connect(domid: number, name: string, remotePort: number): E.Either<XenError, ConsoleInfo> {
    if (this.consoles.has(domid)) this.disconnect(domid);
    const opened = this.env.open(domid, remotePort);
    if (E.isLeft(opened)) return opened;
    const c = new ServedConsole(domid, name, opened.right, this.historyBytes, this.maxLine);
    this.consoles.set(domid, c);
    c.endpoint.onEvent(() => this.onEvent(c));
    this.service(c); // output written before we connected
    this.sockets?.open(domid, name);
    return E.right(this.info(c));
  }

  /**
   * Disconnects `domid`'s console: takes what is left in the ring, passes on
   * a last unterminated line, closes the channel, unmaps the page, and ends
   * every attached client (socket clients get EOF). Unknown domains are
   * ignored.
   */
  disconnect(domid: number): void {
    const c = this.consoles.get(domid);
    if (c === undefined) return;
    if (c.state === "live") this.service(c);
    if (c.state === "live") this.finish(c);
    c.ring.discardInput();
    this.consoles.delete(domid);
    c.endpoint.close();
    this.sockets?.close(domid);
  }

  /**
   * Types `text` at `domid`'s console: it goes to the guest's `in` ring, and
   * what does not fit waits there until the guest makes room (it notifies
   * after reading). Returns false if the domain has no live console.
   */
  type(domid: number, text: string | Uint8Array): boolean {
    const c = this.consoles.get(domid);
    if (c === undefined || c.state !== "live") return false;
    const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
    try {
      c.ring.queueInput(bytes);
      if (c.ring.pendingInput > 0) c.inputWaiting = true;
    } catch (e) {
      this.lose(c, e);
    }
    return true;
  }

  /** Typed bytes of `domid` still waiting for room in its ring (0 for unknown domains). */
  pendingInput(domid: number): number {
    return this.consoles.get(domid)?.ring.pendingInput ?? 0;
  }

  /** The lines `domid` wrote, oldest first, as many as the history keeps (empty for unknown domains). */
  history(domid: number): readonly ConsoleLine[] {
    return this.consoles.get(domid)?.history.toArray() ?? [];
  }

  /** What the daemon knows of `domid`'s console, if connected. */
  console(domid: number): ConsoleInfo | undefined {
    const c = this.consoles.get(domid);
    return c === undefined ? undefined : this.info(c);
  }

  /** Every connected console. */
  list(): ConsoleInfo[] {
    return [...this.consoles.values()].map((c) => this.info(c));
  }

  /**
   * Attaches `listener` to `domid`'s console: the result's `replay` holds
   * what the console said so far (as the history keeps it), and from then on
   * the listener gets every byte of output until the console ends.
   * Undefined if the domain is not connected.
   */
  attach(domid: number, listener: ConsoleListener): ConsoleAttachment | undefined {
    const c = this.consoles.get(domid);
    if (c === undefined) return undefined;
    const text = c.history.toArray().map((l) => `${l.line}\n`).join("") + c.lines.pending;
    const live = c.state === "live";
    if (live) c.listeners.add(listener);
    return { replay: new TextEncoder().encode(text), live, detach: () => void c.listeners.delete(listener) };
  }

  /** An error a console socket hit (say, an unusable path), if any. */
  get failure(): Error | undefined {
    return this.sockets?.failure;
  }

  /** Disconnects every console and stops serving sockets. */
  close(): void {
    for (const domid of [...this.consoles.keys()]) this.disconnect(domid);
    this.sockets?.closeAll();
  }

  private info(c: ServedConsole): ConsoleInfo {
    const socket = this.sockets?.pathOf(c.domid);
    return { domid: c.domid, name: c.name, port: c.endpoint.port, state: c.state, ...(socket !== undefined && { socket }) };
  }

  /** An event from the guest: serve it, unless its allowance for this period is spent. */
  private onEvent(c: ServedConsole): void {
    if (c.state !== "live" || c.throttled || this.consoles.get(c.domid) !== c) return;
    this.service(c);
    if (this.rateLimit === false || c.state !== "live") return;
    const now = this.env.now();
    if (now >= c.periodEnd) {
      c.periodEnd = now + this.rateLimit.periodNs;
      c.events = 0;
    }
    if (++c.events < this.rateLimit.events) return;
    // Allowance spent: leave further events pending, masked, until the period ends.
    c.throttled = true;
    c.endpoint.mask();
    this.env.at(c.periodEnd, () => {
      if (this.consoles.get(c.domid) !== c || c.state !== "live") return;
      c.throttled = false;
      c.events = 0;
      c.periodEnd = this.env.now() + (this.rateLimit === false ? 0 : this.rateLimit.periodNs);
      c.endpoint.unmask();
      this.service(c); // what arrived while masked
    });
  }

  /** Takes the guest's output and flushes waiting input; a broken ring loses the console. */
  private service(c: ServedConsole): void {
    let out: Uint8Array;
    try {
      out = c.ring.readOutput();
      c.ring.flushInput();
    } catch (e) {
      this.lose(c, e);
      return;
    }
    if (c.inputWaiting && c.ring.pendingInput === 0) {
      c.inputWaiting = false;
      for (const l of [...c.listeners]) l.drained?.();
    }
    if (out.byteLength === 0) return;
    const t = this.env.now();
    for (const l of [...c.listeners]) l.output(out);
    for (const line of c.lines.push(out, t)) this.emit(c, line);
  }

  private emit(c: ServedConsole, line: ConsoleLine): void {
    c.history.add(line);
    this.sink(c.name, c.domid, line.line, line.tNs);
  }

  /** Passes on the last partial line and ends the listeners. */
  private finish(c: ServedConsole): void {
    const last = c.lines.end();
    if (last !== undefined) this.emit(c, last);
    const listeners = [...c.listeners];
    c.listeners.clear();
    for (const l of listeners) l.end();
  }

  /** The guest broke its ring: stop serving it (its port stays masked until disconnect releases it). */
  private lose(c: ServedConsole, e: unknown): void {
    if (!(e instanceof RingProtocolError)) throw e;
    c.state = "lost";
    c.endpoint.mask();
    c.ring.discardInput();
    this.finish(c);
    this.log(`console of ${c.name} (domain ${c.domid}) lost: ${e.message}`);
  }
}

function isConsoleEnv(k: Kernel | ConsoleEnv): k is ConsoleEnv {
  return typeof (k as Partial<ConsoleEnv>).open === "function" && typeof (k as Partial<ConsoleEnv>).hostLine === "function";
}
