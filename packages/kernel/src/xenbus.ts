/**
 * Xenbus: the XenStore negotiation of split drivers, apart from any data
 * path.
 *
 * ## Where things are
 *
 * The toolstack creates both directories of a device (libxl does so in one
 * transaction) and sets their permissions:
 *
 * ```
 * /local/domain/<F>/device/<type>/<id>/          frontend, owned by F, readable by B
 *     backend = /local/domain/<B>/backend/<type>/<F>/<id>
 *     backend-id = <B>
 *     state = 1 (Initialising)
 *     ring-ref, event-channel, …                 written by the frontend
 * /local/domain/<B>/backend/<type>/<F>/<id>/     backend, owned by B, readable by F
 *     frontend = /local/domain/<F>/device/<type>/<id>
 *     frontend-id = <F>
 *     online = 1
 *     state = 1 (Initialising)
 *     feature-*, …                               written by the backend
 * ```
 *
 * Relative to their own domain's home these are `device/<type>/<id>`
 * ({@link frontendDir}) and `backend/<type>/<F>/<id>` ({@link backendDir}).
 *
 * ## The state machine (`io/xenbus.h`)
 *
 * Each end writes its own `state` and watches the other's. The usual run,
 * as Linux's drivers walk it:
 *
 * | step | backend                                   | frontend                                         |
 * |------|-------------------------------------------|--------------------------------------------------|
 * | 1    | probe: publish `feature-*`, → InitWait    | Initialising                                     |
 * | 2    |                                           | sees InitWait: set up (grant ring, alloc port), publish `ring-ref`, `event-channel`, → Initialised |
 * | 3    | sees Initialised: map ring, bind port, → Connected |                                         |
 * | 4    |                                           | sees Connected: → Connected                       |
 *
 * Teardown: whichever end goes Closing first, the other disconnects its data
 * path; the frontend goes Closed when the backend is Closing or Closed, the
 * backend goes Closing when the frontend does and Closed when the frontend
 * is Closed (then stays, ready for a reconnect, while `online` is `1`).
 * The other end's directory disappearing (its domain died and the toolstack
 * cleaned up, or `@releaseDomain` fired and the domain is no longer
 * introduced) counts as Closed.
 *
 * Restarts:
 * - **Backend restart.** A backend that goes back to Initialising or
 *   InitWait while the frontend is Initialised or Connected has restarted:
 *   the frontend disconnects, goes Initialising and sets up again when the
 *   backend is in InitWait (as Linux's sound and display frontends do).
 * - **Frontend restart.** A frontend that goes back to Initialising makes a
 *   Connected backend disconnect and return to InitWait; a Closed backend
 *   returns to InitWait too (Linux's "prepare for reconnect").
 * - **Stale peer.** A frontend that starts while the backend still shows
 *   Connected first closes the old connection (Closing, Closed, then
 *   Initialising), as Linux's `xenbus_reset_state` does.
 *
 * Reconfiguring/Reconfigured are used only by drivers that opt in (by
 * defining the `reconfigure` hook): the initiating end goes Reconfiguring,
 * the other end reconfigures and goes Reconfigured, the initiator goes back
 * to Connected and so does the other end.
 *
 * ## Drivers
 *
 * A driver extends {@link XenbusFrontend} or {@link XenbusBackend} and
 * supplies hooks: the frontend's `connect` sets up its data path and
 * returns the keys to publish; the backend's `probe` returns its features
 * and its `connect` maps what the frontend published; both have a
 * `disconnect`. The base class runs the state machine: it serialises the
 * hooks, re-reads both states after every watch event (watch events may be
 * coalesced or spurious, so it acts on the current states, not on the
 * events) and writes `state` only while the device's directory exists, so a
 * removed device is never recreated. {@link FrontendBus} and
 * {@link BackendBus} create devices as the toolstack's directories appear.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { XenbusState, keyOf } from "@pvkit/abi";
import type { XenError } from "./hypercall.js";
import { xsError, type XsClient, type XsError, type XsWatch } from "./xenstore.js";

/** A xenbus state: a value of {@link XenbusState}. */
export type XenbusStateValue = (typeof XenbusState)[keyof typeof XenbusState];

/** The name of a state (`"Connected"`), or its number for values outside `enum xenbus_state`. */
export function xenbusStateName(state: number): string {
  return keyOf(XenbusState, state) ?? String(state);
}

/** The XenStore keys of the xenbus protocol, in a device's directory. */
export const XENBUS_KEY = Object.freeze({
  /** Both ends: the end's {@link XenbusState}, in decimal. */
  state: "state",
  /** Frontend: absolute path of the backend directory. */
  backend: "backend",
  /** Frontend: domid of the backend. */
  backendId: "backend-id",
  /** Backend: absolute path of the frontend directory. */
  frontend: "frontend",
  /** Backend: domid of the frontend. */
  frontendId: "frontend-id",
  /** Backend: `1` while the toolstack wants the device kept (the backend waits for a reconnect after Closed). */
  online: "online",
  /** Frontend: the grant reference of a single-page ring. */
  ringRef: "ring-ref",
  /** Frontend: the event channel port the backend binds to. */
  eventChannel: "event-channel",
});

/** The frontend directory of device `id` of `type`, relative to the frontend domain's home: `device/<type>/<id>`. */
export function frontendDir(type: string, id: string | number): string {
  return `device/${type}/${id}`;
}

/** The backend directory of device `id` of `type` for `frontendDomid`, relative to the backend domain's home: `backend/<type>/<frontendDomid>/<id>`. */
export function backendDir(type: string, frontendDomid: number, id: string | number): string {
  return `backend/${type}/${frontendDomid}/${id}`;
}

/** What one end sees of the other when a hook runs. */
export interface OtherEnd {
  /** The other end's directory (absolute). */
  readonly path: string;
  /** The other end's domain. */
  readonly domid: number;
  /** Its state when the hook was called. */
  readonly state: XenbusStateValue;
  /** Its directory's keys and values, read when the hook was called (`feature-*`, `ring-ref`, …). */
  readonly keys: ReadonlyMap<string, string>;
  /** Reads a key of its directory now. */
  read(key: string): Promise<E.Either<XsError, string>>;
}

/** Why a device's `disconnect` hook runs. */
export type DisconnectReason =
  /** This end is closing (its `close()`, or a fatal error). */
  | "closing"
  /** The other end went Closing or Closed. */
  | "peer-closed"
  /** The other end's directory or domain is gone. */
  | "peer-gone"
  /** The other end went back to Initialising/InitWait: it restarted. */
  | "peer-restarted"
  /** This end's own directory was removed by the toolstack. */
  | "removed"
  /** The device was stopped (`stop()`), e.g. its driver is unloading. */
  | "stopped";

/** A listener of a device's state changes (own or other end's), and of it stopping. */
export type XenbusListener = (device: XenbusDevice) => void;

/** What every device is built from. */
export interface XenbusDeviceOptions {
  /** The device type, e.g. `"vbd"`, `"vif"`. */
  readonly type: string;
  /** The device id within its type (`"0"`, `"51712"`). */
  readonly id: string;
  /** The device's own directory, if not the conventional one. */
  readonly nodename?: string;
}

/** The other end's state when its directory (or domain) is gone: `Unknown`. */
const GONE = XenbusState.Unknown;

/** States of an end that has set up and may have a live data path. */
const ACTIVE: ReadonlySet<number> = new Set([XenbusState.Initialised, XenbusState.Connected, XenbusState.Reconfiguring, XenbusState.Reconfigured]);

/** Thrown inside a pass when the XenStore connection has closed: the pass ends quietly and the device stops. */
class ConnectionLost extends Error {}

function isDomid(s: string): boolean {
  return /^\d+$/.test(s) && Number(s) < 0x7ff0;
}

/**
 * What both ends share: watches on the own and the other end's `state`, a
 * serialised reconciliation pass after each event, state writes that never
 * recreate a removed directory, fatal errors, waiting and stopping.
 */
export abstract class XenbusDevice {
  /** The device type. */
  readonly type: string;
  /** The device id. */
  readonly id: string;
  /** The device's own directory. */
  readonly nodename: string;
  /** The other end's directory, once started. */
  otherPath = "";
  /** The other end's domain, once started. */
  otherId = -1;
  /** This end's state, as last written or read. */
  state: XenbusStateValue = XenbusState.Unknown;
  /** The other end's state, as last read (`Unknown` when gone or not yet read). */
  otherState: XenbusStateValue = XenbusState.Unknown;
  /** Whether the data path is set up (the driver's `connect` ran and `disconnect` has not). */
  live = false;
  /** The error that made the device close itself, if any. */
  error: XenError | undefined;
  /** `"new"` until started, `"running"`, `"stopping"` while {@link XenbusDevice.stop} runs, then `"stopped"` for good. */
  status: "new" | "running" | "stopping" | "stopped" = "new";
  /** How many times the driver's `connect` hook has run. */
  connects = 0;

  /** Set once this end wants to close: no reconnects after. */
  protected closeRequested = false;
  private readonly watches: XsWatch[] = [];
  private readonly listeners = new Set<XenbusListener>();
  private dirty = false;
  private loop: Promise<void> | undefined;
  private halted!: () => void;
  /** Resolves when the device has stopped (its watches removed). */
  readonly done: Promise<void>;
  private unwatched: Promise<unknown> = Promise.resolve();

  /**
   * @param xs the XenStore connection of this end's domain
   * @param options type, id and (optionally) the directory
   * @param defaultNodename the conventional directory for this end
   */
  protected constructor(
    readonly xs: XsClient,
    options: XenbusDeviceOptions,
    defaultNodename: string,
  ) {
    this.type = options.type;
    this.id = options.id;
    this.nodename = options.nodename ?? defaultNodename;
    this.done = new Promise((resolve) => (this.halted = resolve));
  }

  /** The keys naming the other end's directory and domain in this end's directory. */
  protected abstract readonly otherKeys: { readonly path: string; readonly id: string };

  /** Called once the other end is known, before the watches: a backend probes and goes InitWait here. */
  protected abstract begin(): Promise<E.Either<XenError, void>>;

  /** One reconciliation pass: act on the current states. */
  protected abstract step(): Promise<void>;

  /** The driver's data path teardown. */
  protected abstract disconnect(reason: DisconnectReason): Promise<void>;

  /** Opt-in: reconfigure because the other end went Reconfiguring; then this end goes Reconfigured. */
  protected reconfigure?(other: OtherEnd): Promise<E.Either<XenError, void>>;

  /** Opt-in: the other end finished a reconfiguration this end asked for; then this end goes back to Connected. */
  protected reconfigured?(other: OtherEnd): Promise<E.Either<XenError, void>>;

  /**
   * Reads the other end's path and domid from this end's directory, lets the
   * end begin, sets the watches and runs the first pass. Fails if the
   * directory is incomplete or malformed.
   */
  async start(): Promise<E.Either<XenError, void>> {
    if (this.status !== "new") return E.left(xsError("xenbus start", "EINVAL", this.nodename, `device is ${this.status}`));
    const path = await this.xs.read(`${this.nodename}/${this.otherKeys.path}`)();
    if (E.isLeft(path)) return path;
    const id = await this.xs.read(`${this.nodename}/${this.otherKeys.id}`)();
    if (E.isLeft(id)) return id;
    if (!path.right.startsWith("/")) return E.left(xsError("xenbus start", "EINVAL", `${this.nodename}/${this.otherKeys.path}`, `not an absolute path: "${path.right}"`));
    if (!isDomid(id.right)) return E.left(xsError("xenbus start", "EINVAL", `${this.nodename}/${this.otherKeys.id}`, `not a domid: "${id.right}"`));
    this.otherPath = path.right;
    this.otherId = Number(id.right);
    this.status = "running";
    let began: E.Either<XenError, void>;
    try {
      began = await this.begin();
    } catch (e) {
      if (!(e instanceof ConnectionLost)) throw e;
      began = E.left(xsError("xenbus start", "EIO", this.nodename, e.message));
    }
    if (E.isLeft(began)) {
      this.halt();
      return began;
    }
    for (const { path, required } of this.watchedPaths()) this.follow(this.xs.watch(path), required);
    this.kick();
    return E.right(undefined);
  }

  /**
   * The paths this end watches: its own and the other end's `state`. A
   * required watch that the daemon refuses is fatal; another is done without.
   */
  protected watchedPaths(): { readonly path: string; readonly required: boolean }[] {
    return [
      { path: `${this.nodename}/${XENBUS_KEY.state}`, required: true },
      { path: `${this.otherPath}/${XENBUS_KEY.state}`, required: true },
    ];
  }

  /** Runs a pass after every event of `w` (so `kick` is level-triggered). */
  protected follow(w: XsWatch, required: boolean): void {
    this.watches.push(w);
    void (async () => {
      try {
        for await (const ev of w) this.onWatchEvent(ev.path);
      } catch (e) {
        const xs = (e as { xs?: XsError }).xs;
        if (required && !this.xs.closed && this.status === "running") this.fail(xs ?? xsError("xenbus watch", "EIO", w.path, String(e)));
      }
      // The iteration ends when the watch is removed or the connection closed;
      // without a connection (the domain is going away) the device stops.
      if (this.xs.closed && this.status === "running") void this.stop();
    })();
  }

  /** Called for every watch event; schedules a pass. */
  protected onWatchEvent(_path: string): void {
    this.kick();
  }

  /** Schedules a reconciliation pass (one runs at a time; events during it cause one more). */
  protected kick(): void {
    if (this.status !== "running") return;
    this.dirty = true;
    if (this.loop !== undefined) return;
    this.loop = (async () => {
      try {
        while (this.dirty && this.status === "running") {
          this.dirty = false;
          try {
            await this.step();
          } catch (e) {
            if (e instanceof ConnectionLost || this.xs.closed) break;
            await this.fatal(xsError("xenbus", "EIO", this.nodename, e instanceof Error ? e.message : String(e)));
          }
        }
      } finally {
        this.loop = undefined;
      }
    })();
  }

  /** Reads `<path>/state`: its value, or `Unknown` if the node (or access to it) is gone. */
  protected async readState(path: string): Promise<XenbusStateValue | "gone"> {
    const r = await this.xs.read(`${path}/${XENBUS_KEY.state}`)();
    if (E.isLeft(r)) {
      if (this.xs.closed) throw new ConnectionLost(r.left.message);
      return r.left.name === "ENOENT" || r.left.name === "EACCES" ? "gone" : GONE;
    }
    const n = Number(r.right);
    return /^\d+$/.test(r.right) && n <= XenbusState.Reconfigured ? (n as XenbusStateValue) : GONE;
  }

  /**
   * Re-reads this end's state: adopts a value the toolstack wrote; `false`
   * if the directory is gone, or was replaced: Initialising, which only the
   * toolstack writes when it makes a device, under an end that had moved on
   * means the toolstack removed this device and made another under its id.
   */
  protected async refreshOwnState(): Promise<boolean> {
    const s = await this.readState(this.nodename);
    if (s === "gone") return false;
    if (s === XenbusState.Initialising && this.state !== XenbusState.Initialising) return false;
    if (s !== this.state && s !== GONE) this.setState(s);
    return true;
  }

  /** Re-reads the other end's state (`Unknown` when gone). */
  protected async refreshOtherState(): Promise<XenbusStateValue> {
    const s = await this.readState(this.otherPath);
    const v = s === "gone" ? GONE : s;
    if (v !== this.otherState) {
      this.otherState = v;
      this.emit();
    }
    return v;
  }

  private setState(s: XenbusStateValue): void {
    this.state = s;
    this.emit();
  }

  /**
   * Writes this end's `state` and `keys` (relative to its directory) in one
   * transaction, only if the directory still exists (as Linux's
   * `xenbus_switch_state` does). `Left(ENOENT)` when it is gone.
   */
  protected async switchState(state: XenbusStateValue, keys: Readonly<Record<string, string>> = {}): Promise<E.Either<XsError, void>> {
    const r = await this.xs.transaction((tx) =>
      TE.chain(() =>
        TE.sequenceSeqArray([
          ...Object.entries(keys).map(([k, v]) => this.xs.write(`${this.nodename}/${k}`, v, tx)),
          this.xs.write(`${this.nodename}/${XENBUS_KEY.state}`, String(state), tx),
        ]),
      )(this.xs.read(`${this.nodename}/${XENBUS_KEY.state}`, tx)),
    )();
    if (E.isRight(r)) this.setState(state);
    return E.map(() => undefined)(r);
  }

  /** Switches state, treating failure as fatal (or as removal when the directory is gone). Returns whether it worked. */
  protected async moveTo(state: XenbusStateValue, keys: Readonly<Record<string, string>> = {}): Promise<boolean> {
    const r = await this.switchState(state, keys);
    if (E.isRight(r)) return true;
    if (this.xs.closed) throw new ConnectionLost(r.left.message);
    if (r.left.name === "ENOENT") await this.finish("removed");
    else if (state !== XenbusState.Closing && state !== XenbusState.Closed) await this.fatal(r.left);
    else await this.finish("stopped");
    return false;
  }

  /** A snapshot of the other end for a hook. */
  protected async otherEnd(): Promise<OtherEnd> {
    const keys = new Map<string, string>();
    const names = await this.xs.directory(this.otherPath)();
    if (E.isRight(names)) {
      for (const name of names.right) {
        const v = await this.xs.read(`${this.otherPath}/${name}`)();
        if (E.isRight(v)) keys.set(name, v.right);
      }
    }
    return {
      path: this.otherPath,
      domid: this.otherId,
      state: this.otherState,
      keys,
      read: (key) => this.xs.read(`${this.otherPath}/${key}`)(),
    };
  }

  /** Runs the driver's `disconnect` if the data path is live. */
  protected async release(reason: DisconnectReason): Promise<void> {
    if (!this.live) return;
    this.live = false;
    await this.disconnect(reason);
  }

  /**
   * A failure this end cannot recover from (a hook's error, a state write
   * refused): record it under `error/<nodename>/error` (for a relative
   * nodename, as Linux's `xenbus_dev_fatal` does), disconnect and go
   * Closing, so the other end closes too.
   */
  protected async fatal(err: XenError): Promise<void> {
    this.error = err;
    this.closeRequested = true;
    if (!this.nodename.startsWith("/")) await this.xs.write(`error/${this.nodename}/error`, `${-err.code} ${err.message}`)();
    await this.release("closing");
    if (this.state !== XenbusState.Closing && this.state !== XenbusState.Closed) {
      const r = await this.switchState(XenbusState.Closing);
      if (E.isLeft(r)) await this.finish(r.left.name === "ENOENT" ? "removed" : "stopped");
    }
  }

  /** Records a failure seen outside a pass (a watch that could not be set) and closes. */
  private fail(err: XenError): void {
    void this.fatal(err).then(() => this.kick());
  }

  /** Ends the device from inside a pass: disconnect if live, remove the watches, stop. */
  protected async finish(reason: DisconnectReason): Promise<void> {
    await this.release(reason);
    this.halt();
  }

  private halt(): void {
    if (this.status === "stopped") return;
    this.status = "stopped";
    this.unwatched = Promise.all(this.watches.splice(0).map((w) => w.close()));
    void this.unwatched.then(() => this.halted());
    this.emit();
  }

  /**
   * Stops at once without changing `state` (the driver unloads, or its
   * domain is going away): waits for a pass in progress, disconnects the
   * data path and removes the watches. The other end sees nothing until it
   * looks.
   */
  async stop(): Promise<void> {
    if (this.status === "stopped") return this.done;
    if (this.status === "new") {
      this.halt();
      return this.done;
    }
    this.status = "stopping";
    while (this.loop !== undefined) await this.loop;
    await this.release("stopped");
    this.halt();
    return this.done;
  }

  /**
   * Closes the device in order: this end goes Closing, the other end
   * follows, both reach Closed and this end stops. Resolves when stopped.
   * A peer that never answers leaves it waiting: race it with a timer and
   * {@link XenbusDevice.stop} if need be.
   */
  async close(): Promise<void> {
    if (this.status !== "running") return this.stop();
    this.closeRequested = true;
    this.kick();
    return this.done;
  }

  /**
   * Starts a reconfiguration from Connected (for drivers that define the
   * `reconfigure` hook): this end goes Reconfiguring, the other end answers
   * Reconfigured, then both return to Connected. Resolves when this end is
   * Connected again (or has stopped).
   */
  async requestReconfigure(): Promise<E.Either<XenError, void>> {
    if (this.reconfigure === undefined) return E.left(xsError("xenbus reconfigure", "ENOSYS", this.nodename, "the driver does not reconfigure"));
    if (this.state !== XenbusState.Connected) return E.left(xsError("xenbus reconfigure", "EINVAL", this.nodename, `state is ${xenbusStateName(this.state)}`));
    const r = await this.switchState(XenbusState.Reconfiguring);
    if (E.isLeft(r)) return r;
    await this.waitFor((d) => d.state === XenbusState.Connected || d.status === "stopped");
    return this.status === "stopped" ? E.left(xsError("xenbus reconfigure", "EIO", this.nodename, "device stopped")) : E.right(undefined);
  }

  /** The reconfiguration steps both ends share; returns true if it handled the other end's state. */
  protected async reconfigureStep(other: XenbusStateValue): Promise<boolean> {
    if (this.reconfigure === undefined) return false;
    if (other === XenbusState.Reconfiguring && this.state === XenbusState.Connected) {
      const r = await this.reconfigure(await this.otherEnd());
      if (E.isLeft(r)) await this.fatal(r.left);
      else await this.moveTo(XenbusState.Reconfigured);
      return true;
    }
    if (other === XenbusState.Reconfigured && this.state === XenbusState.Reconfiguring) {
      const r = this.reconfigured !== undefined ? await this.reconfigured(await this.otherEnd()) : E.right(undefined);
      if (E.isLeft(r)) await this.fatal(r.left);
      else await this.moveTo(XenbusState.Connected);
      return true;
    }
    if (other === XenbusState.Connected && this.state === XenbusState.Reconfigured) {
      await this.moveTo(XenbusState.Connected);
      return true;
    }
    return false;
  }

  /** Calls `listener` after every change of either state and when the device stops; returns the unsubscribe. */
  onChange(listener: XenbusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once `ready(this)` holds (checked now and after every change). */
  waitFor(ready: (d: this) => boolean): Promise<void> {
    if (ready(this)) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onChange(() => {
        if (ready(this)) {
          off();
          resolve();
        }
      });
    });
  }

  private emit(): void {
    for (const l of [...this.listeners]) l(this);
  }
}

/** Options of a frontend device. */
export interface XenbusFrontendOptions extends XenbusDeviceOptions {
  /** Go straight to Connected once set up (as netfront does) instead of Initialised then Connected. */
  readonly connectAtInitWait?: boolean;
}

/**
 * A frontend device: `device/<type>/<id>` in its domain's home.
 *
 * A driver implements `connect` (the backend is in InitWait: set up the
 * data path with the backend's features and return the keys to publish,
 * typically `ring-ref` and `event-channel`), optionally `connected` (the
 * backend is Connected: read its final details) and `disconnect` (tear the
 * data path down; it must cope with a `connect` that failed half-way).
 */
export abstract class XenbusFrontend extends XenbusDevice {
  /** Backend path and domid keys. */
  protected readonly otherKeys = { path: XENBUS_KEY.backend, id: XENBUS_KEY.backendId } as const;
  private readonly connectAtInitWait: boolean;
  /** Closing an old connection before starting a new one (`xenbus_reset_state`). */
  private resetting = false;

  /** A device of this end over `xs`. */
  constructor(xs: XsClient, options: XenbusFrontendOptions) {
    super(xs, options, frontendDir(options.type, options.id));
    this.connectAtInitWait = options.connectAtInitWait ?? false;
  }

  /** The backend's directory (once started). */
  get backendPath(): string {
    return this.otherPath;
  }

  /** The backend's domain (once started). */
  get backendId(): number {
    return this.otherId;
  }

  /** Sets up the data path for a backend in InitWait; returns the keys to publish in the frontend directory. */
  protected abstract connect(backend: OtherEnd): Promise<E.Either<XenError, Readonly<Record<string, string>>>>;

  /** The backend is Connected: a last look at its details before this end goes Connected. */
  protected connected?(backend: OtherEnd): Promise<E.Either<XenError, void>>;

  /** Starts from Initialising; a leftover state from an earlier instance is reset first. */
  protected async begin(): Promise<E.Either<XenError, void>> {
    const s = await this.readState(this.nodename);
    if (s === "gone") return E.left(xsError("xenbus start", "ENOENT", `${this.nodename}/${XENBUS_KEY.state}`));
    this.state = s;
    if (s === XenbusState.Initialising) return E.right(undefined);
    if (s === XenbusState.Closed || s === GONE || s === XenbusState.InitWait) return this.switchState(XenbusState.Initialising);
    this.resetting = true;
    return this.switchState(XenbusState.Closing);
  }

  /** One pass of the frontend's side of the state machine. */
  protected async step(): Promise<void> {
    if (!(await this.refreshOwnState())) return this.finish("removed");
    const lastB = this.otherState;
    const B = await this.refreshOtherState();
    const F = (): XenbusStateValue => this.state;

    if (this.closeRequested && !this.resetting && F() !== XenbusState.Closing && F() !== XenbusState.Closed) {
      if (!(await this.moveTo(XenbusState.Closing))) return;
    }
    if (await this.reconfigureStep(B)) return;

    switch (B) {
      case XenbusState.Unknown: // the backend's directory is gone (or not there yet)
        if (F() === XenbusState.Initialising && !this.closeRequested) return;
        await this.release("peer-gone");
        if (F() !== XenbusState.Closed && !(await this.moveTo(XenbusState.Closed))) return;
        if (this.closeRequested) return this.finish("stopped");
        if (this.resetting) {
          this.resetting = false;
          await this.moveTo(XenbusState.Initialising);
        }
        return;

      case XenbusState.Initialising:
      case XenbusState.InitWait: {
        // An active frontend sees a restart when the backend went back to Initialising, or to InitWait
        // after having been further on. A backend still in the InitWait a frontend connected at (as
        // netfront does, going straight to Connected) has simply not caught up yet.
        const active = this.state === XenbusState.Connected || this.state === XenbusState.Reconfiguring || this.state === XenbusState.Reconfigured || F() === XenbusState.Initialised;
        const restarted = active && (B === XenbusState.Initialising || !(lastB === XenbusState.InitWait || lastB === XenbusState.Initialising));
        if (restarted && !this.closeRequested) {
          await this.release("peer-restarted");
          if (!(await this.moveTo(XenbusState.Initialising))) return;
        } else if (F() === XenbusState.Closed && !this.closeRequested) {
          if (!(await this.moveTo(XenbusState.Initialising))) return;
        }
        if (B === XenbusState.InitWait && F() === XenbusState.Initialising && !this.closeRequested) await this.setUp();
        return;
      }

      case XenbusState.Initialised:
        return;

      case XenbusState.Connected:
        if (F() === XenbusState.Initialised) {
          const r = this.connected !== undefined ? await this.connected(await this.otherEnd()) : E.right(undefined);
          if (E.isLeft(r)) return this.fatal(r.left);
          await this.moveTo(XenbusState.Connected);
        } else if ((F() === XenbusState.Initialising || F() === XenbusState.Closed) && !this.closeRequested) {
          // A backend still connected to an earlier instance of this frontend: close that first.
          this.resetting = true;
          await this.moveTo(XenbusState.Closing);
        }
        return;

      case XenbusState.Closing:
      case XenbusState.Closed:
        await this.release(this.closeRequested ? "closing" : "peer-closed");
        if (F() !== XenbusState.Closed && !(await this.moveTo(XenbusState.Closed))) return;
        if (B === XenbusState.Closed) {
          if (this.closeRequested) return this.finish("stopped");
          if (this.resetting) {
            this.resetting = false;
            await this.moveTo(XenbusState.Initialising);
          }
        }
        return;

      default:
        return; // Reconfiguring/Reconfigured without the hook: not for this driver
    }
  }

  /** The backend is in InitWait and this end Initialising: run `connect` and publish. */
  private async setUp(): Promise<void> {
    this.live = true;
    this.connects++;
    const r = await this.connect(await this.otherEnd());
    if (E.isLeft(r)) return this.fatal(r.left);
    await this.moveTo(this.connectAtInitWait ? XenbusState.Connected : XenbusState.Initialised, r.right);
  }
}

/** Options of a backend device. */
export interface XenbusBackendOptions extends XenbusDeviceOptions {
  /** The frontend's domain (names the conventional directory `backend/<type>/<frontendId>/<id>`). */
  readonly frontendId: number;
  /**
   * Watch `@releaseDomain` and treat the frontend as gone once its domain is
   * no longer introduced (needs a privileged connection); default true.
   */
  readonly watchReleaseDomain?: boolean;
}

/**
 * A backend device: `backend/<type>/<frontend-domid>/<id>` in its domain's
 * home.
 *
 * A driver implements `probe` (return the features to publish, e.g.
 * `{ "feature-barrier": "1" }`), `connect` (the frontend is Initialised or
 * Connected: map its ring, bind its event channel) and `disconnect`.
 */
export abstract class XenbusBackend extends XenbusDevice {
  /** Frontend path and domid keys. */
  protected readonly otherKeys = { path: XENBUS_KEY.frontend, id: XENBUS_KEY.frontendId } as const;
  private readonly watchRelease: boolean;
  private seenPeer = false;
  private peerReleased = false;

  /** A device of this end over `xs`. */
  constructor(xs: XsClient, options: XenbusBackendOptions) {
    super(xs, options, backendDir(options.type, options.frontendId, options.id));
    this.watchRelease = options.watchReleaseDomain ?? true;
  }

  /** The frontend's directory (once started). */
  get frontendPath(): string {
    return this.otherPath;
  }

  /** The frontend's domain (once started). */
  get frontendId(): number {
    return this.otherId;
  }

  /** Returns the features to publish (keys relative to the backend directory) before going InitWait. */
  protected abstract probe(): Promise<E.Either<XenError, Readonly<Record<string, string>>>>;

  /** The frontend has published its details (`ring-ref`, `event-channel`, …): connect the data path. */
  protected abstract connect(frontend: OtherEnd): Promise<E.Either<XenError, void>>;

  /** Probes and publishes the features with state InitWait, in one transaction. */
  protected async begin(): Promise<E.Either<XenError, void>> {
    const s = await this.readState(this.nodename);
    if (s === "gone") return E.left(xsError("xenbus start", "ENOENT", `${this.nodename}/${XENBUS_KEY.state}`));
    this.state = s;
    const features = await this.probe();
    if (E.isLeft(features)) return features;
    return this.switchState(XenbusState.InitWait, features.right);
  }

  /** Also watches `@releaseDomain`, when asked to (not required: an unprivileged driver domain may be refused). */
  protected override watchedPaths(): { readonly path: string; readonly required: boolean }[] {
    return this.watchRelease ? [...super.watchedPaths(), { path: "@releaseDomain", required: false }] : super.watchedPaths();
  }

  /** A `@releaseDomain` event: check whether the frontend's domain is still there before the pass. */
  protected override onWatchEvent(path: string): void {
    if (path !== "@releaseDomain" || this.peerReleased) return this.kick();
    void this.xs
      .isDomainIntroduced(this.otherId)()
      .then((r) => {
        if (E.isRight(r) && !r.right) this.peerReleased = true;
        this.kick();
      });
  }

  /** Whether the toolstack wants the device kept after Closed (`online` is `1`). */
  private async online(): Promise<boolean> {
    const r = await this.xs.read(`${this.nodename}/${XENBUS_KEY.online}`)();
    return E.isRight(r) && r.right === "1";
  }

  /** One pass of the backend's side of the state machine. */
  protected async step(): Promise<void> {
    if (!(await this.refreshOwnState())) return this.finish("removed");
    const read = await this.refreshOtherState();
    const F = this.peerReleased ? GONE : read;
    if (this.peerReleased && this.otherState !== GONE) this.otherState = GONE;
    if (F !== GONE) this.seenPeer = true;
    const B = (): XenbusStateValue => this.state;

    if (this.closeRequested && B() !== XenbusState.Closing && B() !== XenbusState.Closed) {
      if (!(await this.moveTo(XenbusState.Closing))) return;
    }
    if (await this.reconfigureStep(F)) return;

    switch (F) {
      case XenbusState.Unknown: // the frontend is gone (or not there yet)
        if (!this.seenPeer && !this.peerReleased && !this.closeRequested) return;
        await this.release("peer-gone");
        if (B() !== XenbusState.Closed && !(await this.moveTo(XenbusState.Closed))) return;
        return this.finish("stopped");

      case XenbusState.Initialising:
        if (this.closeRequested) return;
        if (this.live || ACTIVE.has(B())) await this.release("peer-restarted");
        if (B() !== XenbusState.InitWait) await this.moveTo(XenbusState.InitWait);
        return;

      case XenbusState.Initialised:
      case XenbusState.Connected:
        if (B() === XenbusState.InitWait && !this.closeRequested) {
          this.live = true;
          this.connects++;
          const r = await this.connect(await this.otherEnd());
          if (E.isLeft(r)) return this.fatal(r.left);
          await this.moveTo(XenbusState.Connected);
        }
        return;

      case XenbusState.Closing:
        await this.release(this.closeRequested ? "closing" : "peer-closed");
        if (B() !== XenbusState.Closing && B() !== XenbusState.Closed) await this.moveTo(XenbusState.Closing);
        return;

      case XenbusState.Closed:
        await this.release(this.closeRequested ? "closing" : "peer-closed");
        if (B() !== XenbusState.Closed && !(await this.moveTo(XenbusState.Closed))) return;
        if (this.closeRequested || !(await this.online())) return this.finish("stopped");
        return;

      default:
        return;
    }
  }
}

/** A directory being followed: see {@link followDirectory}. */
export interface DirectoryFollower {
  /** Asks for another pass, as an event would. */
  rescan(): void;
  /** Stops following: unwatches, and waits for a pass in progress to end. */
  stop(): Promise<void>;
}

/**
 * Follows a XenStore directory the way Linux's xenbus probes one: a watch
 * on `path` (whose registration event makes the first pass), and `pass`
 * run after every event, one pass at a time; events during a pass make one
 * more pass after it, not one each. A refused watch ends the following; a
 * pass that throws goes to `onError` and the following goes on.
 */
export function followDirectory(xs: XsClient, path: string, pass: () => Promise<void>, opts: { readonly token?: string; readonly onError?: (e: unknown) => void } = {}): DirectoryFollower {
  const watch = xs.watch(path, opts.token);
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const rescan = () => {
    again = true;
    if (running !== undefined || stopped) return;
    running = (async () => {
      while (again && !stopped) {
        again = false;
        try {
          await pass();
        } catch (e) {
          opts.onError?.(e);
        }
      }
      running = undefined;
    })();
  };
  void (async () => {
    try {
      for await (const _ of watch) rescan();
    } catch {
      // the watch was refused or the connection closed: nothing more to follow
    }
  })();
  return {
    rescan,
    stop: async () => {
      stopped = true;
      await watch.close();
      while (running !== undefined) await running;
    },
  };
}

/**
 * Creates a device for every directory that appears under a root
 * (`device/<type>` for frontends, `backend/<type>` for backends), as Linux's
 * xenbus probes on watch events. A device stays known while its directory
 * exists, so one that stopped is not made again until its directory is
 * removed and recreated.
 */
export abstract class DeviceBus<D extends XenbusDevice> {
  /** The devices made and not yet stopped, by directory. */
  readonly devices = new Map<string, D>();
  /** Directories seen: the device made for each, or `"skipped"`. */
  private readonly known = new Map<string, D | "skipped">();
  private follower: DirectoryFollower | undefined;
  private stopped = false;

  /**
   * @param xs the connection of the domain the devices are in
   * @param root the directory whose subdirectories are devices
   */
  constructor(
    readonly xs: XsClient,
    readonly root: string,
  ) {}

  /** The device directories under the root, relative to it. */
  protected abstract list(): Promise<E.Either<XsError, string[]>>;

  /** Makes the device for `rel`, or undefined to skip it. */
  protected abstract create(rel: string): D | undefined;

  /** Watches the root and makes devices for what is there and what appears. */
  start(): void {
    this.follower = followDirectory(this.xs, this.root, () => this.scan());
  }

  private async scan(): Promise<void> {
    const rels = await this.list();
    const present = new Set(E.isRight(rels) ? rels.right : []);
    for (const rel of [...this.known.keys()]) if (!present.has(rel)) this.known.delete(rel);
    for (const rel of present) {
      if (this.known.has(rel) || this.stopped) continue;
      const device = this.create(rel);
      if (device === undefined) {
        this.known.set(rel, "skipped");
        continue;
      }
      this.known.set(rel, device);
      const started = await device.start();
      if (E.isLeft(started)) {
        // Perhaps not fully written yet: try again on the next event.
        this.known.delete(rel);
        continue;
      }
      this.devices.set(device.nodename, device);
      void device.done.then(() => this.devices.delete(device.nodename));
    }
  }

  /** Stops watching and stops every device (without changing their states). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.follower?.stop();
    await Promise.all([...this.devices.values()].map((d) => d.stop()));
  }
}

/** Makes frontend devices for `device/<type>/<id>` as they appear. */
export class FrontendBus<D extends XenbusFrontend> extends DeviceBus<D> {
  /**
   * @param xs the frontend domain's connection
   * @param type the device type
   * @param make makes the device for an id
   */
  constructor(
    xs: XsClient,
    readonly type: string,
    private readonly make: (id: string) => D,
  ) {
    super(xs, `device/${type}`);
  }

  /** {@inheritDoc DeviceBus.list} */
  protected list(): Promise<E.Either<XsError, string[]>> {
    return this.xs.directory(this.root)();
  }

  /** {@inheritDoc DeviceBus.create} */
  protected create(rel: string): D | undefined {
    return this.make(rel);
  }
}

/** Makes backend devices for `backend/<type>/<frontend-domid>/<id>` as they appear. */
export class BackendBus<D extends XenbusBackend> extends DeviceBus<D> {
  /**
   * @param xs the backend domain's connection
   * @param type the device type
   * @param make makes the device for a frontend domid and id
   */
  constructor(
    xs: XsClient,
    readonly type: string,
    private readonly make: (frontendId: number, id: string) => D,
  ) {
    super(xs, `backend/${type}`);
  }

  /** {@inheritDoc DeviceBus.list} */
  protected async list(): Promise<E.Either<XsError, string[]>> {
    const domids = await this.xs.directory(this.root)();
    if (E.isLeft(domids)) return domids;
    const out: string[] = [];
    for (const domid of domids.right) {
      if (!isDomid(domid)) continue;
      const ids = await this.xs.directory(`${this.root}/${domid}`)();
      if (E.isRight(ids)) for (const id of ids.right) out.push(`${domid}/${id}`);
    }
    return E.right(out);
  }

  /** {@inheritDoc DeviceBus.create} */
  protected create(rel: string): D | undefined {
    const [domid, id] = rel.split("/");
    return domid !== undefined && id !== undefined ? this.make(Number(domid), id) : undefined;
  }
}
