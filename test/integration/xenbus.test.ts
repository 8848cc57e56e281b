/**
 * The xenbus framework against the real daemon: XsClients for dom0 (the
 * toolstack and a backend) and a domU (a frontend), each over its own
 * in-process connection to one Xenstored, walking a test device ("vtest")
 * through connect, backend restart, frontend close and restart, domain
 * death, toolstack removal, reconfiguration and a failing hook.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { XS, XenbusState } from "@pvkit/abi";
import {
  BackendBus,
  XenbusBackend,
  XenbusFrontend,
  XsClient,
  XsDecoder,
  backendDir,
  frontendDir,
  xenbusStateName,
  type DisconnectReason,
  type OtherEnd,
  type XenError,
  type XsError,
  type XsTransport,
  type XsTx,
} from "@pvkit/kernel";
import { Xenstored } from "../../packages/dom0/src/xenstore/index.js";

const FRONT_DOMID = 1;
const TYPE = "vtest";
const DEVID = "0";
const FRONT = `/local/domain/${FRONT_DOMID}/${frontendDir(TYPE, DEVID)}`;
const BACK = `/local/domain/0/${backendDir(TYPE, FRONT_DOMID, DEVID)}`;

/** A client of `daemon` as `domid`, recording the watch events its connection receives. */
function connect(daemon: Xenstored, domid: number) {
  let deliver: (b: Uint8Array) => void = () => {};
  const decoder = new XsDecoder();
  const events: { path: string; token: string }[] = [];
  const conn = daemon.connect(domid, (bytes) => {
    const copy = bytes.slice();
    queueMicrotask(() => {
      for (const m of decoder.push(copy)) {
        if (m.type !== XS.WATCH_EVENT) continue;
        const [path, token] = new TextDecoder().decode(m.payload).split("\0");
        events.push({ path: path!, token: token! });
      }
      deliver(copy);
    });
  });
  const transport: XsTransport = { send: (b) => conn.receive(b), onData: (h) => (deliver = h), close: () => conn.close() };
  return { xs: new XsClient(transport), conn, events };
}

function ok<T>(e: E.Either<XenError, T>): T {
  if (E.isLeft(e)) throw new Error(e.left.message);
  return e.right;
}

/** Rejects with `what` if `p` does not settle within `ms` of wall time. */
function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
};

function stateIn(daemon: Xenstored, dir: string): string {
  const v = daemon.read(`${dir}/state`);
  return v === undefined ? "gone" : xenbusStateName(Number(new TextDecoder().decode(v)));
}

/** The test frontend: publishes made-up ring-ref/event-channel numbers. */
class VtestFront extends XenbusFrontend {
  readonly teardowns: DisconnectReason[] = [];
  features: ReadonlyMap<string, string> | undefined;
  backendSawConnected = 0;

  constructor(xs: XsClient) {
    super(xs, { type: TYPE, id: DEVID });
  }

  protected async connect(backend: OtherEnd): Promise<E.Either<XenError, Record<string, string>>> {
    this.features = backend.keys;
    if (backend.keys.get("feature-foo") !== "1") return E.left({ op: "vtest connect", code: -95, name: "EOPNOTSUPP", message: "backend lacks feature-foo" });
    return E.right({ "ring-ref": String(100 + this.connects), "event-channel": String(7 + this.connects) });
  }

  protected override async connected(): Promise<E.Either<XenError, void>> {
    this.backendSawConnected++;
    return E.right(undefined);
  }

  protected async disconnect(reason: DisconnectReason): Promise<void> {
    this.teardowns.push(reason);
  }
}

/** The test backend: publishes feature-foo and "maps" what the frontend published. */
class VtestBack extends XenbusBackend {
  readonly teardowns: DisconnectReason[] = [];
  mapped: { ringRef: number; port: number } | undefined;
  failConnect = false;

  constructor(xs: XsClient, frontendId: number, id: string) {
    super(xs, { type: TYPE, frontendId, id });
  }

  protected async probe(): Promise<E.Either<XenError, Record<string, string>>> {
    return E.right({ "feature-foo": "1" });
  }

  protected async connect(front: OtherEnd): Promise<E.Either<XenError, void>> {
    const ringRef = Number(front.keys.get("ring-ref"));
    const port = Number(front.keys.get("event-channel"));
    if (this.failConnect || !Number.isInteger(ringRef) || !Number.isInteger(port)) return E.left({ op: "vtest map", code: -22, name: "EINVAL", message: "vtest map: bad ring-ref" });
    this.mapped = { ringRef, port };
    return E.right(undefined);
  }

  protected async disconnect(reason: DisconnectReason): Promise<void> {
    this.mapped = undefined;
    this.teardowns.push(reason);
  }
}

/** A reconfigurable pair: either end may ask, the other answers. */
class ReFront extends VtestFront {
  reconfigs = 0;
  protected override async reconfigure(): Promise<E.Either<XenError, void>> {
    this.reconfigs++;
    return E.right(undefined);
  }
}

class ReBack extends VtestBack {
  reconfigs = 0;
  protected override async reconfigure(): Promise<E.Either<XenError, void>> {
    this.reconfigs++;
    return E.right(undefined);
  }
}

/**
 * What libxl does to build a domain's XenStore entries and add a device:
 * the domain's home readable by it, the frontend directory owned by the
 * domU and readable by the backend's domain, the backend directory owned by
 * dom0 and readable by the domU, all in one transaction.
 */
function toolstack(xs: XsClient) {
  const w = (tx: XsTx, path: string, v: string) => xs.write(path, v, tx);
  const roFor = (owner: number, reader: number) => ({ owner, others: "n" as const, entries: [{ domid: reader, access: "r" as const }] });
  const setAll = (tx: XsTx, dir: string, keys: Record<string, string>, owner: number, reader: number) =>
    pipe(
      xs.mkdir(dir, tx),
      TE.chain(() => xs.setPerms(dir, roFor(owner, reader), tx)),
      TE.chain(() => TE.sequenceSeqArray(Object.entries(keys).map(([k, v]) => pipe(w(tx, `${dir}/${k}`, v), TE.chain(() => xs.setPerms(`${dir}/${k}`, roFor(owner, reader), tx)))))),
    );
  return {
    async createDomain(domid: number) {
      ok(await xs.introduce(domid, 0x1000 + domid, 3)());
      const home = ok(await xs.getDomainPath(domid)());
      ok(
        await xs.transaction((tx) =>
          pipe(
            xs.mkdir(home, tx),
            TE.chain(() => xs.setPerms(home, { owner: 0, others: "n", entries: [{ domid, access: "r" }] }, tx)),
            TE.chain(() => xs.write(`${home}/name`, `guest${domid}`, tx)),
            TE.chain(() => xs.mkdir(`${home}/device`, tx)),
            TE.chain(() => xs.setPerms(`${home}/device`, { owner: domid, others: "n", entries: [] }, tx)),
          ),
        )(),
      );
    },
    async addDevice(online = "1") {
      ok(
        await xs.transaction((tx) =>
          pipe(
            setAll(tx, FRONT, { backend: BACK, "backend-id": "0", state: String(XenbusState.Initialising) }, FRONT_DOMID, 0),
            TE.chain(() => setAll(tx, BACK, { frontend: FRONT, "frontend-id": String(FRONT_DOMID), online, state: String(XenbusState.Initialising) }, 0, FRONT_DOMID)),
          ),
        )(),
      );
    },
    /** libxl's device removal: rm both directories. */
    async removeDevice() {
      ok(await xs.transaction((tx) => pipe(xs.rm(FRONT, tx), TE.chain(() => xs.rm(BACK, tx))))());
    },
  };
}

async function setUp() {
  const daemon = new Xenstored();
  const dom0 = connect(daemon, 0);
  const ts = toolstack(dom0.xs);
  await ts.createDomain(FRONT_DOMID);
  await ts.addDevice();
  const domU = connect(daemon, FRONT_DOMID);
  return { daemon, dom0, domU, ts };
}

const both = (front: VtestFront, back: VtestBack, s: number) => Promise.all([front.waitFor((d) => d.state === s), back.waitFor((d) => d.state === s)]);

describe("xenbus over the real xenstored", () => {
  it("connects, survives a backend restart, closes, reconnects after a frontend restart, and tears down when the domain dies", async () => {
    const { daemon, dom0, domU } = await setUp();

    // --- 1. Connect: backend probes (feature-foo) and waits; frontend publishes; both Connected.
    const backs: VtestBack[] = [];
    const bus = new BackendBus(dom0.xs, TYPE, (fid, id) => {
      const b = new VtestBack(dom0.xs, fid, id);
      backs.push(b);
      return b;
    });
    bus.start();
    await within(settle().then(() => backs[0]!.waitFor((d) => d.state === XenbusState.InitWait)), "backend InitWait");
    const back1 = backs[0]!;
    expect(back1.nodename).toBe(backendDir(TYPE, FRONT_DOMID, DEVID));
    expect(stateIn(daemon, BACK)).toBe("InitWait");
    expect(new TextDecoder().decode(daemon.read(`${BACK}/feature-foo`))).toBe("1");

    const front = new VtestFront(domU.xs);
    ok(await front.start());
    expect(front.backendPath).toBe(BACK);
    expect(front.backendId).toBe(0);
    await within(both(front, back1, XenbusState.Connected), "both Connected");
    expect(front.features?.get("feature-foo")).toBe("1");
    expect(back1.mapped).toEqual({ ringRef: 101, port: 8 });
    expect(front.backendSawConnected).toBe(1);
    expect(stateIn(daemon, FRONT)).toBe("Connected");
    expect(stateIn(daemon, BACK)).toBe("Connected");
    // What the frontend wrote is readable by dom0 and owned by the domU.
    expect(ok(await dom0.xs.read(`${FRONT}/ring-ref`)())).toBe("101");
    expect(ok(await dom0.xs.getPerms(`${FRONT}/ring-ref`)()).owner).toBe(FRONT_DOMID);
    // The domU cannot write the backend's directory.
    const denied = await domU.xs.write(`${BACK}/state`, "6")();
    expect(E.isLeft(denied) && denied.left.name).toBe("EACCES");

    // --- 2. Backend restart: the driver goes away without a word; the toolstack resets its
    // directory (state Initialising, features gone); a new instance probes (InitWait) and the
    // pair reconnects with the frontend's setup redone.
    await bus.stop();
    expect(back1.teardowns).toEqual(["stopped"]);
    expect(back1.status).toBe("stopped");
    ok(await dom0.xs.transaction((tx) => pipe(dom0.xs.rm(`${BACK}/feature-foo`, tx), TE.chain(() => dom0.xs.write(`${BACK}/state`, String(XenbusState.Initialising), tx))))());
    await within(front.waitFor((d) => d.state === XenbusState.Initialising), "frontend back to Initialising");
    expect(front.teardowns).toEqual(["peer-restarted"]);

    const bus2 = new BackendBus(dom0.xs, TYPE, (fid, id) => {
      const b = new VtestBack(dom0.xs, fid, id);
      backs.push(b);
      return b;
    });
    bus2.start();
    await within(settle().then(() => (backs[1] ? both(front, backs[1], XenbusState.Connected) : Promise.reject(new Error("no second backend")))), "reconnect after backend restart");
    const back2 = backs[1]!;
    expect(front.connects).toBe(2);
    expect(back2.mapped).toEqual({ ringRef: 102, port: 9 });
    expect(back1.mapped).toBeUndefined();

    // --- 3. The frontend closes: Closing → backend Closing → frontend Closed → backend Closed.
    const domUEventsBefore = domU.events.length;
    await within(front.close(), "frontend close");
    await within(back2.waitFor((d) => d.state === XenbusState.Closed), "backend Closed");
    expect(stateIn(daemon, FRONT)).toBe("Closed");
    expect(stateIn(daemon, BACK)).toBe("Closed");
    expect(front.status).toBe("stopped");
    expect(front.teardowns).toEqual(["peer-restarted", "closing"]);
    expect(back2.teardowns).toEqual(["peer-closed"]);
    expect(back2.mapped).toBeUndefined();
    // The frontend's watches are gone, locally and in the daemon: a change to the backend's
    // state reaches the domU no more.
    expect(domU.xs.activeWatches()).toEqual([]);
    await settle();
    const seen = domU.events.length;
    ok(await dom0.xs.write(`${BACK}/state`, String(XenbusState.Closed))());
    ok(await domU.xs.write(`${frontendDir(TYPE, DEVID)}/state`, String(XenbusState.Closed))());
    await settle();
    expect(domU.events.length).toBe(seen);
    expect(seen).toBeGreaterThan(domUEventsBefore);
    // The backend (online = 1) stays, Closed, ready for the frontend to come back.
    expect(back2.status).toBe("running");

    // --- 4. A new frontend instance (the domU's driver reloaded): Closed → Initialising;
    // the backend prepares for reconnect (InitWait) and the pair connects again.
    const front2 = new VtestFront(domU.xs);
    ok(await front2.start());
    await within(both(front2, back2, XenbusState.Connected), "reconnect after frontend restart");
    expect(back2.mapped).toEqual({ ringRef: 101, port: 8 });
    expect(back2.connects).toBe(2);

    // --- 5. The domain dies: its connection closes and dom0 releases it (which fires
    // @releaseDomain and removes its home). The backend disconnects, goes Closed and stops.
    domU.xs.close();
    ok(await dom0.xs.release(FRONT_DOMID)());
    await within(back2.done, "backend teardown after the domain died");
    expect(back2.teardowns).toEqual(["peer-closed", "peer-gone"]);
    expect(back2.mapped).toBeUndefined();
    expect(stateIn(daemon, BACK)).toBe("Closed");
    expect(stateIn(daemon, FRONT)).toBe("gone");
    expect(ok(await dom0.xs.isDomainIntroduced(FRONT_DOMID)())).toBe(false);
    await within(front2.done, "frontend stops with its connection");
    expect(front2.teardowns).toEqual(["stopped"]);
    // dom0 is left with the bus's watch only; the toolstack removes the backend directory
    // (the frontend's went with the domain's home).
    expect(dom0.xs.activeWatches().map((w) => w.path)).toEqual([`backend/${TYPE}`]);
    ok(await dom0.xs.rm(BACK)());
    await bus2.stop();
    expect(dom0.xs.activeWatches()).toEqual([]);
  });

  it("toolstack removal while connected (online 0, backend Closing): both Closed, then the directories go", async () => {
    const { daemon, dom0, domU, ts } = await setUp();
    const back = new VtestBack(dom0.xs, FRONT_DOMID, DEVID);
    ok(await back.start());
    const front = new VtestFront(domU.xs);
    ok(await front.start());
    await within(both(front, back, XenbusState.Connected), "Connected");

    // libxl__initiate_device_generic_remove: online = 0 and state = Closing in the backend dir.
    ok(await dom0.xs.transaction((tx) => pipe(dom0.xs.write(`${BACK}/online`, "0", tx), TE.chain(() => dom0.xs.write(`${BACK}/state`, String(XenbusState.Closing), tx))))());
    await within(back.done, "backend stops (not online)");
    expect(stateIn(daemon, BACK)).toBe("Closed");
    await within(front.waitFor((d) => d.state === XenbusState.Closed), "frontend Closed");
    expect(front.teardowns).toEqual(["peer-closed"]);
    expect(back.teardowns).toEqual(["peer-closed"]);
    // The toolstack removes both directories; the frontend, its directory gone, stops too.
    await ts.removeDevice();
    await within(front.done, "frontend stops when its directory goes");
    expect(stateIn(daemon, FRONT)).toBe("gone");
    expect(domU.xs.activeWatches()).toEqual([]);
    expect(dom0.xs.activeWatches()).toEqual([]);
  });

  it("a frontend that starts while the backend is still Connected to an earlier instance resets it first", async () => {
    const { daemon, dom0, domU } = await setUp();
    const back = new VtestBack(dom0.xs, FRONT_DOMID, DEVID);
    ok(await back.start());
    const old = new VtestFront(domU.xs);
    ok(await old.start());
    await within(both(old, back, XenbusState.Connected), "Connected");
    await old.stop(); // the guest's driver vanishes, leaving state Connected behind
    expect(stateIn(daemon, FRONT)).toBe("Connected");

    const fresh = new VtestFront(domU.xs);
    ok(await fresh.start());
    await within(both(fresh, back, XenbusState.Connected), "Connected again");
    expect(back.teardowns).toEqual(["peer-closed"]);
    expect(back.connects).toBe(2);
    expect(fresh.connects).toBe(1);
  });

  it("reconfiguration, for drivers that opt in, from either end", async () => {
    const { dom0, domU } = await setUp();
    const back = new ReBack(dom0.xs, FRONT_DOMID, DEVID);
    ok(await back.start());
    const front = new ReFront(domU.xs);
    ok(await front.start());
    await within(both(front, back, XenbusState.Connected), "Connected");

    const states: string[] = [];
    back.onChange((d) => states.push(`back ${xenbusStateName(d.state)}`));
    ok(await within(front.requestReconfigure(), "frontend-initiated reconfiguration"));
    await within(back.waitFor((d) => d.state === XenbusState.Connected && d.otherState === XenbusState.Connected), "backend Connected");
    expect(back.reconfigs).toBe(1);
    expect(states).toContain("back Reconfigured");

    ok(await within(back.requestReconfigure(), "backend-initiated reconfiguration"));
    await within(front.waitFor((d) => d.state === XenbusState.Connected), "frontend Connected");
    expect(front.reconfigs).toBe(1);
    // A driver without the hook refuses.
    const plain = new VtestFront(domU.xs);
    const refused = await plain.requestReconfigure();
    expect(E.isLeft(refused) && refused.left.name).toBe("ENOSYS");
  });

  it("a backend whose connect fails records the error and closes the device", async () => {
    const { daemon, dom0, domU } = await setUp();
    const back = new VtestBack(dom0.xs, FRONT_DOMID, DEVID);
    back.failConnect = true;
    ok(await back.start());
    const front = new VtestFront(domU.xs);
    ok(await front.start());
    await within(back.done, "backend closes");
    expect(back.error?.message).toContain("bad ring-ref");
    expect(stateIn(daemon, BACK)).toBe("Closed");
    expect(new TextDecoder().decode(daemon.read(`/local/domain/0/error/${backendDir(TYPE, FRONT_DOMID, DEVID)}/error`))).toBe("22 vtest map: bad ring-ref");
    await within(front.waitFor((d) => d.state === XenbusState.Closed), "frontend Closed");
    expect(front.teardowns).toEqual(["peer-closed"]);
    expect(front.status).toBe("running"); // it stays, waiting for a backend to come back
  });

  it("start fails cleanly on an incomplete or malformed directory", async () => {
    const daemon = new Xenstored();
    const dom0 = connect(daemon, 0);
    const missing = new VtestBack(dom0.xs, 5, "0");
    const r = await missing.start();
    expect(E.isLeft(r) && (r.left as XsError).name).toBe("ENOENT");
    ok(await dom0.xs.write(`${backendDir(TYPE, 5, "1")}/frontend`, "relative/path")());
    ok(await dom0.xs.write(`${backendDir(TYPE, 5, "1")}/frontend-id`, "5")());
    const bad = new VtestBack(dom0.xs, 5, "1");
    const r2 = await bad.start();
    expect(E.isLeft(r2) && r2.left.name).toBe("EINVAL");
    expect(dom0.xs.activeWatches()).toEqual([]);
  });
});
