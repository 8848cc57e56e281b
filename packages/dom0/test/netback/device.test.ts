/**
 * Netback's xenbus side over the real xenstored: what probe publishes, the
 * frontend keys connect insists on, and that every ring mapping and event
 * channel it took is given back — when the frontend closes, and when a
 * connect fails half-way. The kernel is a fake that records the grant and
 * event channel operations (the data path itself is tested apart).
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { GNTST, PAGE_SIZE, XenbusState } from "@pvkit/abi";
import { XsClient, grantError, type Kernel, type XsTransport } from "@pvkit/kernel";
import { Bridge, NetbackDevice, Xenstored, type GrantCopier, type NetbackHost } from "@pvkit/dom0";

const FE = 1;
const FRONT = `/local/domain/${FE}/device/vif/0`;
const BACK = `/local/domain/0/backend/vif/${FE}/0`;

function client(daemon: Xenstored, domid: number): XsClient {
  let deliver: (b: Uint8Array) => void = () => {};
  const conn = daemon.connect(domid, (bytes) => {
    const copy = bytes.slice();
    queueMicrotask(() => deliver(copy));
  });
  const transport: XsTransport = { send: (b) => conn.receive(b), onData: (h) => (deliver = h), close: () => conn.close() };
  return new XsClient(transport);
}

function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

/** A kernel that has the frontend's ring pages at refs 8 and 9 and records what is mapped and bound. */
function fakeKernel() {
  const pages = new Map([8, 9].map((ref) => [ref, new Uint8Array(PAGE_SIZE)] as const));
  const held = { maps: new Set<number>(), ports: new Set<number>() };
  const k = {
    grants: {
      map: (domid: number, ref: number) => {
        if (!pages.has(ref)) return E.left(grantError("GNTTABOP_map_grant_ref", GNTST.bad_gntref));
        held.maps.add(ref);
        return E.right({ va: ref * PAGE_SIZE, handle: ref, domid, ref });
      },
      unmap: (m: { ref: number }) => (held.maps.delete(m.ref) ? E.right(undefined) : E.left(grantError("GNTTABOP_unmap_grant_ref", GNTST.bad_handle))),
    },
    events: {
      bindInterdomain: (_d: number, port: number) => {
        held.ports.add(100 + port);
        return E.right(100 + port);
      },
      close: (port: number) => (held.ports.delete(port) ? E.right(0) : E.left(grantError("EVTCHNOP_close", -22))),
      on: () => {},
      off: () => {},
      notify: () => E.right(0),
    },
    memory: { memory: { page: (va: number) => new DataView(pages.get(va / PAGE_SIZE)!.buffer) } },
    clock: { now: () => 0 },
    print: async () => {},
  };
  return { k: k as unknown as Kernel, held };
}

async function setUp(backendKeys: Record<string, string> = {}) {
  const daemon = new Xenstored();
  const xs = client(daemon, 0);
  const w = async (path: string, v: string) => {
    const r = await xs.write(path, v)();
    if (E.isLeft(r)) throw new Error(r.left.message);
  };
  // The frontend's domain exists (the backend watches @releaseDomain for it).
  const introduced = await xs.introduce(FE, 0x1000, 3)();
  if (E.isLeft(introduced)) throw new Error(introduced.left.message);
  for (const [k, v] of Object.entries({ backend: BACK, "backend-id": "0", state: "1", mac: "00:16:3e:00:00:01", handle: "0" })) await w(`${FRONT}/${k}`, v);
  for (const [k, v] of Object.entries({ frontend: FRONT, "frontend-id": String(FE), online: "1", state: "1", mac: "00:16:3e:00:00:01", handle: "0", bridge: "xenbr0", ...backendKeys })) await w(`${BACK}/${k}`, v);
  const { k, held } = fakeKernel();
  const bridge = new Bridge("xenbr0");
  const logs: string[] = [];
  const host: NetbackHost = {
    k,
    copier: { io: () => ({ readFrontend: () => [], writeFrontend: () => [] }) } as unknown as GrantCopier,
    bridge: (name) => (name === "xenbr0" ? bridge : undefined),
    log: (l) => logs.push(l),
    held: { rings: 0, ports: 0 },
  };
  const dev = new NetbackDevice(host, xs, FE, "0");
  const started = await dev.start();
  if (E.isLeft(started)) throw new Error(started.left.message);
  await within(dev.waitFor((d) => d.state === XenbusState.InitWait), "InitWait");
  const read = (path: string) => {
    const v = daemon.read(path);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  };
  /** Plays the frontend: publishes `keys` and goes to `state`. */
  const front = async (keys: Record<string, string>, state: number) => {
    for (const [key, v] of Object.entries(keys)) await w(`${FRONT}/${key}`, v);
    await w(`${FRONT}/state`, String(state));
  };
  return { dev, read, front, held, host, bridge, logs };
}

const GOOD = { "tx-ring-ref": "8", "rx-ring-ref": "9", "event-channel": "5", "request-rx-copy": "1", "feature-rx-notify": "1", "feature-sg": "1" };

describe("netback's xenbus device", () => {
  it("probes: publishes its features and hotplug-status, and waits in InitWait", async () => {
    const { read } = await setUp();
    expect(
      Object.fromEntries(["feature-sg", "feature-rx-copy", "feature-rx-flip", "feature-split-event-channels", "hotplug-status", "state"].map((k) => [k, read(`${BACK}/${k}`)])),
    ).toEqual({ "feature-sg": "1", "feature-rx-copy": "1", "feature-rx-flip": "0", "feature-split-event-channels": "1", "hotplug-status": "connected", state: "2" });
  });

  it("connects, attaching the vif to its bridge; gives everything back when the frontend closes", async () => {
    const { dev, front, held, host, bridge } = await setUp();
    await front(GOOD, XenbusState.Initialised);
    await within(dev.waitFor((d) => d.state === XenbusState.Connected), "Connected");
    expect([...held.maps].sort()).toEqual([8, 9]);
    expect([...held.ports]).toEqual([105]);
    expect(host.held).toEqual({ rings: 2, ports: 1 });
    expect(bridge.portList.map((p) => p.name)).toEqual(["vif1.0"]);
    expect(dev.datapath?.name).toBe("vif1.0");
    await front({}, XenbusState.Closing);
    await within(dev.waitFor((d) => d.state === XenbusState.Closing), "backend Closing");
    expect(held.maps.size + held.ports.size).toBe(0);
    expect(host.held).toEqual({ rings: 0, ports: 0 });
    expect(bridge.portList).toEqual([]);
    await front({}, XenbusState.Closed);
    await within(dev.waitFor((d) => d.state === XenbusState.Closed), "backend Closed");
    await dev.stop();
  });

  it("binds both channels of a frontend using feature-split-event-channels", async () => {
    const { dev, front, held } = await setUp();
    const { "event-channel": _, ...rest } = GOOD;
    await front({ ...rest, "event-channel-tx": "6", "event-channel-rx": "7" }, XenbusState.Connected);
    await within(dev.waitFor((d) => d.state === XenbusState.Connected), "Connected");
    expect([...held.ports].sort()).toEqual([106, 107]);
    await dev.stop();
    expect(held.ports.size + held.maps.size).toBe(0);
  });

  it.each<{ name: string; keys: Record<string, string>; backend?: Record<string, string>; why: RegExp }>([
    { name: "no request-rx-copy", keys: { ...GOOD, "request-rx-copy": "0" }, why: /must request rx-copy/ },
    { name: "no feature-rx-notify", keys: { ...GOOD, "feature-rx-notify": "0" }, why: /feature-rx-notify is mandatory/ },
    { name: "two queues", keys: { ...GOOD, "multi-queue-num-queues": "2" }, why: /multi-queue is not offered/ },
    { name: "a malformed tx-ring-ref", keys: { ...GOOD, "tx-ring-ref": "8x" }, why: /tx-ring-ref or rx-ring-ref/ },
    { name: "a missing event channel", keys: { ...GOOD, "event-channel": "" }, why: /event channel missing/ },
    { name: "a bridge that does not exist", keys: GOOD, backend: { bridge: "xenbr9" }, why: /no bridge named xenbr9/ },
    { name: "an RX ring reference it cannot map (after mapping the TX ring)", keys: { ...GOOD, "rx-ring-ref": "77" }, why: /mapping ring ref 77: GNTTABOP_map_grant_ref: GNTST_bad_gntref/ },
  ])("refuses a frontend with $name: error node, Closing, nothing held", async ({ keys, backend, why }) => {
    const { dev, front, held, host, read, logs } = await setUp(backend);
    await front(keys, XenbusState.Initialised);
    await within(dev.waitFor((d) => d.state === XenbusState.Closing), "Closing");
    expect(read(`/local/domain/0/error/backend/vif/${FE}/0/error`)).toMatch(why);
    expect(logs.join("\n")).toMatch(why);
    expect(held.maps.size + held.ports.size).toBe(0);
    expect(host.held).toEqual({ rings: 0, ports: 0 });
    if (backend?.["bridge"] === "xenbr9") {
      expect(read(`${BACK}/hotplug-status`)).toBe("error");
      expect(read(`${BACK}/hotplug-error`)).toBe("Could not find bridge device xenbr9");
    }
    await dev.stop();
  });
});
