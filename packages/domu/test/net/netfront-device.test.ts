/**
 * Netfront's xenbus side over the real xenstored, the backend played by
 * writes to its directory: what the frontend publishes, what it refuses,
 * and that closing gives back every grant, page and event channel — even
 * the pages a backend still maps, once it lets go. The kernel is a fake
 * that records pages, grants and ports.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { XenbusState } from "@pvkit/abi";
import { Netfront } from "@pvkit/domu";
import { Xenstored } from "@pvkit/dom0";
import { client, fakeKernel } from "./fake-kernel.js";

const FE = 1;
const FRONT = `/local/domain/${FE}/device/vif/0`;
const BACK = `/local/domain/0/backend/vif/${FE}/0`;

async function setUp(backendFeatures: Record<string, string>, mac = "00:16:3e:00:00:01") {
  const daemon = new Xenstored();
  const dom0 = client(daemon, 0);
  const w = async (path: string, v: string) => {
    const r = await dom0.write(path, v)();
    if (E.isLeft(r)) throw new Error(r.left.message);
  };
  const introduced = await dom0.introduce(FE, 0x1000, 3)();
  if (E.isLeft(introduced)) throw new Error(introduced.left.message);
  // As the toolstack does: the frontend's directory owned by its domain, the backend's readable by it.
  const perms = async (path: string, owner: number, reader: number) => {
    const r = await dom0.mkdir(path)();
    const p = await dom0.setPerms(path, { owner, others: "n", entries: [{ domid: reader, access: "r" }] })();
    if (E.isLeft(r) || E.isLeft(p)) throw new Error(`perms of ${path}`);
  };
  await perms(`/local/domain/${FE}`, 0, FE);
  await perms(FRONT, FE, 0);
  await perms(`/local/domain/${FE}/error`, FE, 0);
  await perms(BACK, 0, FE);
  for (const [k, v] of Object.entries({ backend: BACK, "backend-id": "0", state: "1", mac, handle: "0" })) await w(`${FRONT}/${k}`, v);
  for (const [k, v] of Object.entries({ frontend: FRONT, "frontend-id": String(FE), online: "1", ...backendFeatures, state: "2" })) await w(`${BACK}/${k}`, v);
  const read = (path: string) => {
    const v = daemon.read(path);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  };
  const fake = fakeKernel();
  return { daemon, xs: client(daemon, FE), w, read, ...fake };
}

const until = async (ok: () => boolean, what: string) => {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 2));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
};

const FEATURES = { "feature-rx-copy": "1", "feature-sg": "1", "feature-split-event-channels": "1" };

describe("netfront's xenbus device", () => {
  it("publishes its rings, channel and requests, connects, and gives everything back on close", async () => {
    const h = await setUp(FEATURES);
    const opening = Netfront.open(h.k, h.xs, { id: "0", rxBuffers: 4, txBuffers: 2 });
    await until(() => h.read(`${FRONT}/state`) === String(XenbusState.Initialised), "frontend Initialised");
    const keys = Object.fromEntries(
      ["tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy", "feature-rx-notify", "feature-sg", "feature-no-csum-offload"].map((k) => [k, h.read(`${FRONT}/${k}`)]),
    );
    expect(keys).toEqual({ "tx-ring-ref": "8", "rx-ring-ref": "9", "event-channel": "10", "request-rx-copy": "1", "feature-rx-notify": "1", "feature-sg": "1", "feature-no-csum-offload": "1" });
    // Two rings and 2 TX buffers (read-only) and 4 RX buffers (writable), all granted to the backend's domain.
    expect([...h.grants.values()].map((g) => [g.domid, g.readonly])).toEqual([
      [0, false],
      [0, false],
      [0, true],
      [0, true],
      [0, false],
      [0, false],
      [0, false],
      [0, false],
    ]);
    await h.w(`${BACK}/state`, String(XenbusState.Connected));
    const nic = await opening;
    if (E.isLeft(nic)) throw new Error(nic.left.message);
    expect(nic.right.up).toBe(true);
    expect(nic.right.sg).toBe(true);
    expect([...nic.right.mac]).toEqual([0, 0x16, 0x3e, 0, 0, 1]);

    // The backend still maps the rings when the frontend disconnects: those two are retried until it lets go.
    h.stillMapped.add(8).add(9);
    const closing = nic.right.close();
    await until(() => h.read(`${FRONT}/state`) === String(XenbusState.Closing), "frontend Closing");
    await h.w(`${BACK}/state`, String(XenbusState.Closing));
    await until(() => h.read(`${FRONT}/state`) === String(XenbusState.Closed), "frontend Closed");
    expect(h.ports.size).toBe(0);
    expect([...h.grants.keys()]).toEqual([8, 9]);
    expect(nic.right.lingering).toBe(2);
    h.stillMapped.clear();
    await h.w(`${BACK}/state`, String(XenbusState.Closed));
    await closing;
    await until(() => h.grants.size === 0 && h.pages.size === 0, "every grant ended and page freed");
    expect(nic.right.lingering).toBe(0);
  });

  it("uses separate channels when asked and offered", async () => {
    const h = await setUp(FEATURES);
    const opening = Netfront.open(h.k, h.xs, { splitEventChannels: true });
    await until(() => h.read(`${FRONT}/state`) === String(XenbusState.Initialised), "frontend Initialised");
    expect([h.read(`${FRONT}/event-channel`), h.read(`${FRONT}/event-channel-tx`), h.read(`${FRONT}/event-channel-rx`)]).toEqual([undefined, "10", "11"]);
    await h.w(`${BACK}/state`, String(XenbusState.Connected));
    const nic = await opening;
    expect(E.isRight(nic) && nic.right.split).toBe(true);
  });

  it("refuses a backend without feature-rx-copy, and holds nothing", async () => {
    const h = await setUp({ "feature-sg": "1" });
    const nic = await Netfront.open(h.k, h.xs);
    expect(E.isLeft(nic) && nic.left.message).toMatch(/does not offer feature-rx-copy/);
    expect(h.read(`/local/domain/${FE}/error/device/vif/0/error`)).toMatch(/feature-rx-copy/);
    expect(h.grants.size + h.pages.size + h.ports.size).toBe(0);
  });

  it("refuses a malformed mac", async () => {
    const h = await setUp(FEATURES, "00:16:3e:00:01");
    const nic = await Netfront.open(h.k, h.xs);
    expect(E.isLeft(nic) && nic.left.message).toMatch(/not a MAC address/);
  });
});
