/**
 * Hotplug (`watchDevices`) over the real xenstored, with vifs: dom0's
 * client plays the toolstack (`addDevice`, `removeDevice`, `forgetDevice`)
 * and the back end (writing its features and states). Covers devices there
 * at boot and attached later, detach (`gone`, and the front end giving back
 * its grants, pages and ports), a device detached and attached again under
 * the same id before the watcher looks, a malformed device, and `stop()`.
 * The kernel is a fake that records pages, grants and ports.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { XenbusState } from "@pvkit/abi";
import { type XsClient, type XenError, type XenbusFrontend, type XsError } from "@pvkit/kernel";
import { Netfront, watchDevices, type HotplugType } from "@pvkit/domu";
import { client, fakeKernel } from "./net/fake-kernel.js";
import { Xenstored, addDevice, devicePaths, forgetDevice, removeDevice, writeDevice, type DeviceSpec } from "@pvkit/dom0";

const FE = 1;
const S = (s: number) => String(s);

/** Per vif with 2 TX and 2 RX buffers: two rings and four buffers granted, one port. */
const NETFRONT = { rxBuffers: 2, txBuffers: 2 };
const GRANTS_PER_VIF = 6;

const vif = (devid: number, frontend: Record<string, string> = {}): DeviceSpec => ({
  type: "vif",
  devid,
  frontendDomid: FE,
  backendDomid: 0,
  frontend: { mac: `00:16:3e:00:00:0${devid}`, ...frontend },
});

async function setUp() {
  const daemon = new Xenstored();
  const dom0 = client(daemon, 0);
  const ok = async <A>(what: string, t: TE.TaskEither<XsError, A>) => {
    const r = await t();
    if (E.isLeft(r)) throw new Error(`${what}: ${r.left.message}`);
    return r.right;
  };
  await ok("introduce", dom0.introduce(FE, 0x1000, 3));
  await ok("mkdir", dom0.mkdir(`/local/domain/${FE}`));
  await ok("perms", dom0.setPerms(`/local/domain/${FE}`, { owner: 0, others: "n", entries: [{ domid: FE, access: "r" }] }));
  await ok("mkdir", dom0.mkdir(`/local/domain/${FE}/error`));
  await ok("perms", dom0.setPerms(`/local/domain/${FE}/error`, { owner: FE, others: "n", entries: [{ domid: 0, access: "r" }] }));
  const read = (path: string) => {
    const v = daemon.read(path);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  };
  const w = (path: string, v: string) => ok(`write ${path}`, dom0.write(path, v));
  const fake = fakeKernel({ sleep: () => new Promise<void>(() => {}) }); // nothing here should wait on time
  const xs = client(daemon, FE);

  const handled: Netfront[] = [];
  const upWhenHandled: boolean[] = [];
  const gone: [HotplugType, string, XenbusFrontend][] = [];
  const errors: [HotplugType, string, XenError | Error][] = [];
  const handlers = {
    vif: (nic: Netfront) => {
      handled.push(nic);
      upWhenHandled.push(nic.up);
    },
    gone: (type: HotplugType, id: string, dev: XenbusFrontend) => void gone.push([type, id, dev]),
    error: (type: HotplugType, id: string, err: XenError | Error) => void errors.push([type, id, err]),
  };
  const opens = vi.spyOn(Netfront, "open");
  const opensOf = (id: string) => opens.mock.calls.filter(([, , o]) => o?.id === id).length;

  const paths = (devid: number) => devicePaths(vif(devid));
  const frontState = (devid: number) => read(`${paths(devid).frontend}/state`);
  return {
    daemon,
    dom0,
    xs,
    read,
    w,
    ok,
    ...fake,
    handled,
    upWhenHandled,
    gone,
    errors,
    handlers,
    opensOf,
    paths,
    frontState,
    /** The toolstack attaches a device (both directories, Initialising). */
    attach: (d: DeviceSpec) => ok("addDevice", addDevice(dom0, d)),
    /** The back end probes: publishes its features and goes InitWait. */
    probe: async (devid: number) => {
      await w(`${paths(devid).backend}/feature-rx-copy`, "1");
      await w(`${paths(devid).backend}/state`, S(XenbusState.InitWait));
    },
    /** The back end, once the front end has published (Initialised), goes Connected. */
    connect: async (devid: number) => {
      await until(() => frontState(devid) === S(XenbusState.Initialised), `vif ${devid} front end Initialised`);
      await w(`${paths(devid).backend}/state`, S(XenbusState.Connected));
    },
  };
}

async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000 && !ok(); i++) await new Promise<void>((r) => setImmediate(r));
  if (!ok()) throw new Error(`never happened: ${what}`);
}

/** Lets everything in flight run out (all of it is microtasks and immediates). */
async function settle(): Promise<void> {
  for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
}

/** The toolstack's detach (`online` 0, back end Closing) and the back end following the front end to Closed; the directories stay. */
async function detach(h: Awaited<ReturnType<typeof setUp>>, devid: number): Promise<void> {
  await h.ok("removeDevice", removeDevice(h.dom0, vif(devid)));
  await until(() => h.frontState(devid) === S(XenbusState.Closed), `vif ${devid} front end Closed`);
  await h.w(`${h.paths(devid).backend}/state`, S(XenbusState.Closed));
}

/** Both directories removed and made again (Initialising) in one transaction: any watcher sees only the result. */
function replaceDevice(xs: XsClient, d: DeviceSpec): TE.TaskEither<XsError, void> {
  const { frontend, backend } = devicePaths(d);
  return xs.transaction((tx) =>
    pipe(
      xs.rm(frontend, tx),
      TE.chain(() => xs.rm(backend, tx)),
      TE.chain(() => writeDevice(xs, d, tx)),
    ),
  );
}

/** Holds tasks back until opened: `hold` delays sending the request, `holdAnswer` sends it now and delays its answer. */
function gate() {
  let release!: () => void;
  const opened = new Promise<void>((r) => (release = r));
  let held = 0;
  let isOpen = false;
  return {
    hold: <A>(task: () => Promise<A>) => (isOpen ? task : async () => (held++, await opened, task())),
    holdAnswer:
      <A>(task: () => Promise<A>) =>
      async () => {
        const answer = task();
        if (!isOpen) (held++, await opened);
        return answer;
      },
    waiting: () => held,
    open: () => ((isOpen = true), release()),
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("watchDevices", () => {
  it("hands a vif there at boot and one attached later to the handler once each, once connected", async () => {
    const h = await setUp();
    await h.attach(vif(0));
    await h.probe(0);
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });

    await h.connect(0);
    await until(() => h.handled.length === 1, "vif 0 handled");
    await h.attach(vif(1));
    await h.probe(1);
    await h.connect(1);
    await until(() => h.handled.length === 2, "vif 1 handled");
    await settle();

    const [nic0, nic1] = h.handled;
    expect(h.handled.map((n) => n.id)).toEqual(["0", "1"]);
    expect(h.upWhenHandled).toEqual([true, true]);
    expect([...nic1!.mac]).toEqual([0, 0x16, 0x3e, 0, 0, 1]);
    expect([...watcher.devices]).toEqual([
      ["vif/0", nic0],
      ["vif/1", nic1],
    ]);
    // Every event under device/vif (the front ends' own state writes among them) made a pass: none opened a device twice.
    expect([h.opensOf("0"), h.opensOf("1")]).toEqual([1, 1]);
    expect(h.grants.size).toBe(2 * GRANTS_PER_VIF);
    expect(h.gone).toEqual([]);
    expect(h.errors).toEqual([]);
    await watcher.stop();
  });

  it("on detach, calls gone once, drops the device, and the front end gives back its grants, pages and port", async () => {
    const h = await setUp();
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    for (const devid of [0, 1]) {
      await h.attach(vif(devid));
      await h.probe(devid);
      await h.connect(devid);
    }
    await until(() => h.handled.length === 2, "both vifs handled");
    const nic0 = h.handled.find((n) => n.id === "0")!;
    const nic1 = h.handled.find((n) => n.id === "1")!;
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([2 * GRANTS_PER_VIF, 2 * GRANTS_PER_VIF, 2]);

    await detach(h, 0);
    // Closed: the data path is torn down; vif 1's resources are untouched.
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([GRANTS_PER_VIF, GRANTS_PER_VIF, 1]);
    expect(nic0.up).toBe(false);
    // Still there until the toolstack removes the directories.
    expect(watcher.devices.get("vif/0")).toBe(nic0);
    expect(h.gone).toEqual([]);

    await h.ok("forgetDevice", forgetDevice(h.dom0, vif(0)));
    await until(() => h.gone.length === 1, "gone for vif 0");
    await settle();
    expect(h.gone).toEqual([["vif", "0", nic0]]);
    expect(nic0.status).toBe("stopped");
    expect([...watcher.devices]).toEqual([["vif/1", nic1]]);
    expect(nic1.up).toBe(true);
    // Removing the directories neither reopened the vif nor asked the handler again.
    expect(h.opensOf("0")).toBe(1);
    expect(h.handled).toEqual([nic0, nic1]);
    expect(h.errors).toEqual([]);
    await watcher.stop();
  });

  it("opens a vif detached, removed and attached again at once under the same id", async () => {
    const h = await setUp();
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    await h.attach(vif(0));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 1, "first vif 0 handled");
    const old = h.handled[0]!;

    await detach(h, 0);
    // Removed and attached again straight away (a new MAC tells the devices apart).
    await h.ok("forgetDevice", forgetDevice(h.dom0, vif(0)));
    await h.attach(vif(0, { mac: "00:16:3e:00:00:aa" }));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 2, "second vif 0 handled");
    await until(() => h.gone.length === 1, "gone for the first vif 0");
    await settle();

    const renewed = h.handled[1]!;
    expect(renewed).not.toBe(old);
    expect(h.upWhenHandled).toEqual([true, true]);
    expect(renewed.mac[5]).toBe(0xaa);
    expect(old.status).toBe("stopped");
    expect(h.gone).toEqual([["vif", "0", old]]);
    expect(watcher.devices.get("vif/0")).toBe(renewed);
    expect(h.opensOf("0")).toBe(2);
    // Only the new connection holds anything.
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([GRANTS_PER_VIF, GRANTS_PER_VIF, 1]);
    expect(h.errors).toEqual([]);
    await watcher.stop();
  });

  it("opens a vif whose directory the watcher only sees after it was removed and made again, and a late gone of the old one leaves the new one", async () => {
    const h = await setUp();
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    await h.attach(vif(0));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 1, "first vif 0 handled");
    const old = h.handled[0]!;

    // Hold back the watcher's listings of device/vif (so its passes see only the end result) and the
    // old device's unwatches (so its `done`, and thus its `gone`, come after the new device is up).
    const listings = gate();
    const unwatches = gate();
    const directory = h.xs.directory.bind(h.xs);
    const unwatch = h.xs.unwatch.bind(h.xs);
    vi.spyOn(h.xs, "directory").mockImplementation((path, tx) => (path === "device/vif" ? listings.hold(directory(path, tx)) : directory(path, tx)));
    vi.spyOn(h.xs, "unwatch").mockImplementation((path, token) => unwatches.hold(unwatch(path, token)));

    await detach(h, 0);
    await h.ok("forgetDevice", forgetDevice(h.dom0, vif(0)));
    await until(() => old.status === "stopped", "the old vif 0 stopped on its directory's removal");
    await h.attach(vif(0, { mac: "00:16:3e:00:00:aa" }));
    await h.probe(0);
    await settle();
    expect(listings.waiting()).toBeGreaterThan(0); // a pass is waiting on its listing
    expect(h.opensOf("0")).toBe(1);

    listings.open();
    await h.connect(0);
    await until(() => h.handled.length === 2, "second vif 0 handled");
    const renewed = h.handled[1]!;
    expect(renewed).not.toBe(old);
    expect(renewed.up).toBe(true);
    expect(renewed.mac[5]).toBe(0xaa);
    expect(watcher.devices.get("vif/0")).toBe(renewed);
    expect(h.gone).toEqual([]);

    unwatches.open();
    await until(() => h.gone.length === 1, "gone for the first vif 0");
    await settle();
    expect(h.gone).toEqual([["vif", "0", old]]);
    expect(watcher.devices.get("vif/0")).toBe(renewed);
    expect(h.opensOf("0")).toBe(2);
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([GRANTS_PER_VIF, GRANTS_PER_VIF, 1]);
    expect(h.errors).toEqual([]);
    await watcher.stop();
  });

  it("looks again when the old device stops, if the watcher listed the new directory while the old device was still running", async () => {
    const h = await setUp();
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    await h.attach(vif(0));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 1, "first vif 0 handled");
    const old = h.handled[0]!;
    await detach(h, 0);

    // The watcher lists only once the new directory is there; the old device learns that its
    // directory was removed (its state read answers ENOENT) only after that pass.
    const listings = gate();
    const stateReads = gate();
    const directory = h.xs.directory.bind(h.xs);
    const read = h.xs.read.bind(h.xs);
    vi.spyOn(h.xs, "directory").mockImplementation((path, tx) => (path === "device/vif" ? listings.hold(directory(path, tx)) : directory(path, tx)));
    vi.spyOn(h.xs, "read").mockImplementation((path, tx) => (path === "device/vif/0/state" ? stateReads.holdAnswer(read(path, tx)) : read(path, tx)));

    await h.ok("forgetDevice", forgetDevice(h.dom0, vif(0)));
    await until(() => stateReads.waiting() > 0, "the old vif 0 reading its state");
    await h.attach(vif(0, { mac: "00:16:3e:00:00:aa" }));
    await h.probe(0);
    listings.open();
    await settle();
    // The pass saw vif 0 still running: nothing opened.
    expect(old.status).toBe("running");
    expect(h.opensOf("0")).toBe(1);

    stateReads.open();
    await until(() => old.status === "stopped", "the old vif 0 stopped");
    await h.connect(0);
    await until(() => h.handled.length === 2, "second vif 0 handled");
    await until(() => h.gone.length === 1, "gone for the first vif 0");
    await settle();
    const renewed = h.handled[1]!;
    expect(renewed.mac[5]).toBe(0xaa);
    expect(renewed.up).toBe(true);
    expect(watcher.devices.get("vif/0")).toBe(renewed);
    expect(h.gone).toEqual([["vif", "0", old]]);
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([GRANTS_PER_VIF, GRANTS_PER_VIF, 1]);
    await watcher.stop();
  });

  // A Netfront that next reads its state after the toolstack has made its directory again must see the
  // new directory's Initialising as its own removal (refreshOwnState), not adopt it and connect again
  // over its old data path.
  it("opens a connected vif whose directories were replaced in one transaction as a new device", async () => {
    const h = await setUp();
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    await h.attach(vif(0));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 1, "first vif 0 handled");
    const old = h.handled[0]!;

    await h.ok("replace", replaceDevice(h.dom0, vif(0, { mac: "00:16:3e:00:00:aa" })));
    await h.probe(0);
    await h.connect(0);
    await until(() => h.handled.length === 2, "second vif 0 handled");
    await until(() => h.gone.length === 1, "gone for the first vif 0");
    await settle();

    const renewed = h.handled[1]!;
    expect(renewed).not.toBe(old);
    expect(renewed.mac[5]).toBe(0xaa);
    expect(old.status).toBe("stopped");
    expect(h.gone).toEqual([["vif", "0", old]]);
    expect(watcher.devices.get("vif/0")).toBe(renewed);
    expect([h.grants.size, h.pages.size, h.ports.size]).toEqual([GRANTS_PER_VIF, GRANTS_PER_VIF, 1]);
    await watcher.stop();
  });

  it("reports a malformed vif once, without retrying it on unrelated events; stop() ends the watch and every device", async () => {
    const h = await setUp();
    await h.attach(vif(0, { "backend-id": "dom0" }));
    const watcher = watchDevices(h.k, h.xs, h.handlers, { netfront: NETFRONT });
    await until(() => h.errors.length === 1, "vif 0 reported");
    expect(h.errors[0]!.slice(0, 2)).toEqual(["vif", "0"]);
    expect(h.errors[0]![2].message).toMatch(/backend-id.*not a domid/);

    // Unrelated events: another vif attached and connecting, and a key written in the broken vif's directory.
    await h.attach(vif(1));
    await h.probe(1);
    await h.connect(1);
    await until(() => h.handled.length === 1, "vif 1 handled");
    await h.w(`${h.paths(0).frontend}/unrelated`, "1");
    await settle();
    expect(h.opensOf("0")).toBe(1);
    expect(h.errors).toHaveLength(1);
    expect(h.handled.map((n) => n.id)).toEqual(["1"]);
    expect([...watcher.devices.keys()]).toEqual(["vif/1"]);
    expect(h.xs.activeWatches().map((w) => w.token)).toContain("hotplug-vif");

    const nic1 = h.handled[0]!;
    await watcher.stop();
    expect(nic1.status).toBe("stopped");
    // Stopped without changing state (the domain is going away), and nothing is watched any more.
    expect(h.frontState(1)).toBe(S(XenbusState.Connected));
    expect(h.xs.activeWatches()).toEqual([]);
    await h.attach(vif(2));
    await h.probe(2);
    await settle();
    expect(h.opensOf("2")).toBe(0);
    expect(h.frontState(2)).toBe(S(XenbusState.Initialising));
    expect(h.handled).toEqual([nic1]);
  });
});
