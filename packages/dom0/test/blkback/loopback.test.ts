/**
 * blkfront and blkback together, without a hypervisor: both xenbus halves
 * negotiate through the real xenstored (in-process connections for dom0
 * and the domU), and a mock grant table and event channels join their data
 * paths. Checks the keys each end publishes, I/O over what they agreed,
 * and that every grant, mapping, port and page comes back on teardown.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PAGE_SIZE, VDISK, XenbusState, blkif_sring } from "@pvkit/abi";
import { XsClient, type XenError, type XsTransport } from "@pvkit/kernel";
import { BackendBus } from "@pvkit/kernel";
import { BlkbackDevice, Xenstored, addDevice, devicePaths, forgetDevice, removeDevice, type BlkbackOptions, type BlkbackPlatform, type BlkHostIo, type DeviceSpec } from "@pvkit/dom0";
import { BlkfrontDevice, type BlkDataPage, type BlkfrontOptions, type BlkfrontPlatform } from "@pvkit/domu";

const DOMU = 1;

function ok<T>(e: E.Either<{ message: string }, T>): T {
  if (E.isLeft(e)) throw new Error(e.left.message);
  return e.right;
}

function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

const settle = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

function client(daemon: Xenstored, domid: number): XsClient {
  let deliver: (b: Uint8Array) => void = () => {};
  const conn = daemon.connect(domid, (bytes) => {
    const copy = bytes.slice();
    queueMicrotask(() => deliver(copy));
  });
  const transport: XsTransport = { send: (b) => conn.receive(b), onData: (h) => (deliver = h), close: () => conn.close() };
  return new XsClient(transport);
}

/** Grant tables and event channels of two domains, kept honest: maps respect grantee and read-only, ends fail while mapped. */
class MockHv {
  readonly grants = new Map<string, { bytes: Uint8Array; grantee: number; readonly: boolean; mapped: number }>();
  readonly ports = new Map<string, { remote?: { domid: number; port: number }; unboundFor?: number; handler?: () => void }>();
  private nextRef = new Map<number, number>();
  private nextPort = new Map<number, number>();
  pages = 0;
  events = 0;

  private newPort(domid: number) {
    const p = this.nextPort.get(domid) ?? 5;
    this.nextPort.set(domid, p + 1);
    return p;
  }

  private send(domid: number, port: number) {
    const remote = this.ports.get(`${domid}:${port}`)?.remote;
    if (remote === undefined) return;
    this.events++;
    queueMicrotask(() => this.ports.get(`${remote.domid}:${remote.port}`)?.handler?.());
  }

  private close(domid: number, port: number) {
    const p = this.ports.get(`${domid}:${port}`);
    this.ports.delete(`${domid}:${port}`);
    if (p?.remote) {
      const r = this.ports.get(`${p.remote.domid}:${p.remote.port}`);
      if (r) delete r.remote;
    }
  }

  front(domid: number): BlkfrontPlatform {
    return {
      memory: (backend) => ({
        allocPage: (): BlkDataPage => {
          this.pages++;
          return { bytes: new Uint8Array(new SharedArrayBuffer(PAGE_SIZE)), frame: 1000 + this.pages };
        },
        freePage: () => void this.pages--,
        grant: (page, readonly) => {
          const ref = this.nextRef.get(domid) ?? 8;
          this.nextRef.set(domid, ref + 1);
          this.grants.set(`${domid}:${ref}`, { bytes: page.bytes, grantee: backend, readonly, mapped: 0 });
          return E.right(ref);
        },
        endGrant: (gref) => {
          const g = this.grants.get(`${domid}:${gref}`);
          if (g === undefined || g.mapped > 0) return false;
          this.grants.delete(`${domid}:${gref}`);
          return true;
        },
      }),
      allocUnbound: (remote) => {
        const port = this.newPort(domid);
        this.ports.set(`${domid}:${port}`, { unboundFor: remote });
        return E.right(port);
      },
      onEvent: (port, handler) => {
        const p = this.ports.get(`${domid}:${port}`);
        if (p) p.handler = handler;
      },
      notify: (port) => this.send(domid, port),
      closePort: (port) => this.close(domid, port),
    };
  }

  back(domid: number, hostIo?: BlkHostIo): BlkbackPlatform {
    const denied = (message: string): E.Either<XenError, never> => E.left({ op: "GNTTABOP_map_grant_ref", code: -1, name: "GNTST_general_error", message });
    return {
      grants: (front) => ({
        map: (gref, writable) => {
          const g = this.grants.get(`${front}:${gref}`);
          if (g === undefined || g.grantee !== domid) return denied(`no grant ${gref}`);
          if (writable && g.readonly) return denied(`grant ${gref} is read-only`);
          g.mapped++;
          return E.right({ gref, bytes: g.bytes, writable });
        },
        unmap: (page) => {
          const g = this.grants.get(`${front}:${page.gref}`);
          if (g === undefined || g.mapped === 0) return denied("not mapped");
          g.mapped--;
          return E.right(undefined);
        },
      }),
      bindInterdomain: (remote, rport) => {
        const r = this.ports.get(`${remote}:${rport}`);
        if (r === undefined || r.unboundFor !== domid) return E.left({ op: "EVTCHNOP_bind_interdomain", code: -22, name: "EINVAL", message: "EVTCHNOP_bind_interdomain: EINVAL" });
        const port = this.newPort(domid);
        delete r.unboundFor;
        r.remote = { domid, port };
        this.ports.set(`${domid}:${port}`, { remote: { domid: remote, port: rport } });
        return E.right(port);
      },
      onEvent: (port, handler) => {
        const p = this.ports.get(`${domid}:${port}`);
        if (p) p.handler = handler;
      },
      notify: (port) => this.send(domid, port),
      closePort: (port) => this.close(domid, port),
      hostIo,
    };
  }

  /** Everything still held: grants, mappings, ports, pages. */
  held() {
    let mapped = 0;
    for (const g of this.grants.values()) mapped += g.mapped;
    return { grants: this.grants.size, mapped, ports: this.ports.size, pages: this.pages };
  }
}

const vbd = (devid: number, backend: Record<string, string>): DeviceSpec => ({
  type: "vbd",
  devid,
  frontendDomid: DOMU,
  backendDomid: 0,
  frontend: { "virtual-device": String(devid), "device-type": "disk" },
  backend: { "device-type": "disk", ...backend },
});

async function host(opts: { backend?: BlkbackOptions; hostIo?: BlkHostIo } = {}) {
  const daemon = new Xenstored();
  const xs0 = client(daemon, 0);
  const xsU = client(daemon, DOMU);
  ok(await xs0.introduce(DOMU, 0x1234, 3)());
  const home = `/local/domain/${DOMU}`;
  ok(
    await xs0.transaction((tx) =>
      pipe(
        xs0.mkdir(home, tx),
        TE.chain(() => xs0.setPerms(home, { owner: 0, others: "n", entries: [{ domid: DOMU, access: "r" }] }, tx)),
        TE.chain(() => xs0.mkdir(`${home}/device`, tx)),
        TE.chain(() => xs0.setPerms(`${home}/device`, { owner: DOMU, others: "n", entries: [] }, tx)),
        TE.chain(() => xs0.mkdir(`${home}/error`, tx)),
        TE.chain(() => xs0.setPerms(`${home}/error`, { owner: DOMU, others: "n", entries: [] }, tx)),
      ),
    )(),
  );
  const hv = new MockHv();
  const backs: BlkbackDevice[] = [];
  const bus = new BackendBus(xs0, "vbd", (fid, id) => {
    const b = new BlkbackDevice(xs0, hv.back(0, opts.hostIo), fid, id, opts.backend);
    backs.push(b);
    return b;
  });
  bus.start();
  const read = (path: string) => {
    const v = daemon.read(path);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  };
  const front = async (spec: DeviceSpec, options: BlkfrontOptions = {}) => {
    ok(await addDevice(xs0, spec)());
    const f = new BlkfrontDevice(xsU, hv.front(DOMU), String(spec.devid), options);
    ok(await f.start());
    await within(f.waitFor((d) => (d.state === XenbusState.Connected && d.info !== undefined) || d.lastDisconnect !== undefined), `vbd ${spec.devid} Connected`);
    return f;
  };
  return { daemon, xs0, xsU, hv, bus, backs, read, front };
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe("blkfront ↔ blkback over xenstored", () => {
  it("negotiates a four-page ring, persistent grants and indirect segments, publishes the disk, and moves data", async () => {
    const { hv, read, front, backs } = await host();
    const spec = vbd(51712, { type: "memory", params: String(1 << 20), mode: "w" });
    const dev = await front(spec, { ringPageOrder: 2, maxIndirectSegments: 64 });
    const { frontend: F, backend: B } = devicePaths(spec);
    expect(read(`${B}/state`)).toBe(String(XenbusState.Connected));
    expect(read(`${F}/state`)).toBe(String(XenbusState.Connected));
    expect({
      sectors: read(`${B}/sectors`),
      sectorSize: read(`${B}/sector-size`),
      physical: read(`${B}/physical-sector-size`),
      info: read(`${B}/info`),
      flush: read(`${B}/feature-flush-cache`),
      discard: read(`${B}/feature-discard`),
      persistent: read(`${B}/feature-persistent`),
      indirect: read(`${B}/feature-max-indirect-segments`),
      order: read(`${B}/max-ring-page-order`),
    }).toEqual({ sectors: "2048", sectorSize: "512", physical: "512", info: "0", flush: "1", discard: "1", persistent: "1", indirect: "256", order: "4" });
    expect(read(`${F}/ring-page-order`)).toBe("2");
    expect(read(`${F}/ring-ref`)).toBeUndefined();
    expect([0, 1, 2, 3].map((i) => read(`${F}/ring-ref${i}`) !== undefined)).toEqual([true, true, true, true]);
    expect(read(`${F}/event-channel`)).toMatch(/^\d+$/);
    expect(read(`${F}/protocol`)).toBe("x86_64-abi");
    expect(read(`${F}/feature-persistent`)).toBe("1");
    expect(dev.info).toMatchObject({ sectors: 2048, ringPages: 4, persistent: true, maxSegments: 64, readOnly: false, flush: "flush", discard: true });
    expect(dev.ring!.size).toBe(128);

    const data = pattern(300 * 512, 9);
    expect(await within(dev.write(3, data), "write")).toEqual(E.right(undefined));
    expect(await within(dev.flush(), "flush")).toEqual(E.right(undefined));
    expect(await within(dev.read(3, 300), "read")).toEqual(E.right(data));
    expect(await within(dev.discard(8, 16), "discard")).toEqual(E.right(undefined));
    const after = ok(await within(dev.read(0, 32), "read after discard"));
    expect(after.subarray(8 * 512, 24 * 512).every((x) => x === 0)).toBe(true);
    expect(after.subarray(3 * 512, 8 * 512)).toEqual(data.subarray(0, 5 * 512));
    const back = backs[0]!;
    expect(back.ring!.stats.persistentHits).toBeGreaterThan(0);
    expect(dev.ring!.stats.indirect).toBeGreaterThan(0);

    // The front end closes: both Closed; every grant, mapping, port and page is returned.
    await within(dev.close(), "front end close");
    await within(back.waitFor((d) => d.state === XenbusState.Closed), "back end Closed");
    expect(hv.held()).toEqual({ grants: 0, mapped: 0, ports: 0, pages: 0 });
  });

  it("a read-only disk: info has VDISK_READONLY, reads work, writes are refused with BLKIF_RSP_ERROR", async () => {
    const { read, front } = await host();
    const spec = vbd(51728, { type: "memory", params: "65536", mode: "r" });
    const dev = await front(spec, { persistent: false });
    const { frontend: F, backend: B } = devicePaths(spec);
    expect(read(`${B}/info`)).toBe(String(VDISK.READONLY));
    expect(read(`${F}/ring-ref`)).toMatch(/^\d+$/);
    expect(read(`${F}/ring-page-order`)).toBeUndefined();
    expect(dev.info).toMatchObject({ readOnly: true, persistent: false, ringPages: 1, sectors: 128 });
    expect(E.isRight(await within(dev.read(0, 8), "read"))).toBe(true);
    expect(await within(dev.write(0, new Uint8Array(512)), "write")).toMatchObject({ left: { name: "EIO", status: -1 } });
    expect(await within(dev.discard(0, 8), "discard")).toMatchObject({ left: { name: "EIO", status: -1 } });
  });

  it("the toolstack removes the device: both ends close and every grant, mapping and port comes back", async () => {
    const { hv, xs0, read, front, backs } = await host();
    const spec = vbd(51712, { type: "memory", params: String(1 << 20), mode: "w" });
    const dev = await front(spec, { persistent: false, ringPageOrder: 1 });
    expect(E.isRight(await within(dev.write(0, pattern(64 * 512, 1)), "write"))).toBe(true);
    const back = backs[0]!;
    ok(await removeDevice(xs0, spec)());
    await within(back.done, "back end stops (offline)");
    await within(dev.waitFor((d) => d.state === XenbusState.Closed), "front end Closed");
    await settle();
    expect(read(`${devicePaths(spec).backend}/state`)).toBe(String(XenbusState.Closed));
    expect(await dev.read(0, 1)).toMatchObject({ left: { name: "ENODEV" } });
    ok(await forgetDevice(xs0, spec)());
    await settle();
    expect(dev.grantsHeld).toBe(0);
    expect(hv.held()).toEqual({ grants: 0, mapped: 0, ports: 0, pages: 0 });
  });

  it("the front end's domain dies mid-I/O: the back end lets go of everything", async () => {
    const { hv, xs0, xsU, front, backs } = await host();
    const spec = vbd(51712, { type: "memory", params: String(1 << 20), mode: "w" });
    const dev = await front(spec, { persistent: true });
    expect(E.isRight(await within(dev.write(0, pattern(32 * 512, 2)), "write"))).toBe(true);
    void dev.write(0, pattern(64 * 512, 3)); // never awaited: the domain is gone first
    xsU.close();
    ok(await xs0.release(DOMU)());
    await within(backs[0]!.done, "back end teardown");
    expect(hv.held().mapped).toBe(0);
    expect([...hv.ports.keys()].filter((k) => k.startsWith("0:"))).toEqual([]);
  });

  it("a front end that breaks its ring closes only its own device", async () => {
    const { hv, front, backs, read } = await host();
    const a = await front(vbd(51712, { type: "memory", params: "65536", mode: "w" }));
    const b = await front(vbd(51728, { type: "memory", params: "65536", mode: "w" }));
    // Corrupt a's ring: req_prod far past anything the ring holds, then ring the back end.
    const ringPage = [...hv.grants.entries()].find(([k]) => k === `${DOMU}:${read(`/local/domain/${DOMU}/device/vbd/51712/ring-ref`)}`)![1].bytes;
    blkif_sring.fields.req_prod.set(new DataView(ringPage.buffer), 0, 5000);
    hv.front(DOMU).notify(Number(read(`/local/domain/${DOMU}/device/vbd/51712/event-channel`)));
    const backA = backs.find((x) => x.id === "51712")!;
    await within(backA.waitFor((d) => d.state === XenbusState.Closing || d.state === XenbusState.Closed), "the broken device closes");
    expect(read("/local/domain/0/error/backend/vbd/1/51712/error")).toMatch(/blkif ring/);
    await within(a.waitFor((d) => d.state === XenbusState.Closed), "its front end closes");
    // The other device carries on.
    expect(E.isRight(await within(b.write(0, new Uint8Array(4096).fill(1)), "write to the other device"))).toBe(true);
    expect(await within(b.read(0, 8), "read")).toEqual(E.right(new Uint8Array(4096).fill(1)));
  });

  it("refuses a ring-page-order above its maximum and a foreign protocol: the device fails, with the reason under error/", async () => {
    for (const [keys, reason] of [
      [{ "ring-page-order": "5", "ring-ref0": "8", "event-channel": "5" }, /ring-page-order 5 exceeds/],
      [{ "ring-ref": "8", "event-channel": "5", protocol: "x86_32-abi" }, /protocol "x86_32-abi"/],
      [{ "ring-ref": "8" }, /event-channel/],
    ] as const) {
      const { xs0, xsU, read, backs } = await host();
      const spec = vbd(51712, { type: "memory", params: "65536", mode: "w" });
      ok(await addDevice(xs0, spec)());
      await within(
        (async () => {
          while (backs[0]?.state !== XenbusState.InitWait) await settle(1);
        })(),
        "InitWait",
      );
      const F = "device/vbd/51712";
      for (const [k, v] of Object.entries(keys)) ok(await xsU.write(`${F}/${k}`, v)());
      ok(await xsU.write(`${F}/state`, String(XenbusState.Initialised))());
      await within(backs[0]!.waitFor((d) => d.state === XenbusState.Closing), "back end Closing");
      expect(read("/local/domain/0/error/backend/vbd/1/51712/error")).toMatch(reason);
    }
  });

  it("a file-backed disk: I/O reaches the image on the host", async () => {
    const dir = mkdtempSync(join(tmpdir(), "blk-loop-"));
    try {
      const path = join(dir, "disk.img");
      writeFileSync(path, new Uint8Array(256 * 1024));
      const io: BlkHostIo = { submit: (task, done) => void task().then((v) => setImmediate(() => done(E.right(v))), (e: Error) => setImmediate(() => done(E.left(e)))) };
      const { hv, front, backs } = await host({ hostIo: io });
      const dev = await front(vbd(51712, { type: "file", params: path, mode: "w" }), { ringPageOrder: 1 });
      expect(dev.info?.sectors).toBe(512);
      const data = pattern(100 * 512, 4);
      expect(await within(dev.write(17, data), "write")).toEqual(E.right(undefined));
      expect(await within(dev.flush(), "flush")).toEqual(E.right(undefined));
      expect(await within(dev.read(17, 100), "read")).toEqual(E.right(data));
      expect(readFileSync(path).subarray(17 * 512, 117 * 512)).toEqual(Buffer.from(data));
      await within(dev.close(), "close");
      await within(backs[0]!.waitFor((d) => d.state === XenbusState.Closed), "back end Closed");
      expect(hv.held()).toEqual({ grants: 0, mapped: 0, ports: 0, pages: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a missing image file fails the device at connect, and the front end sees it close", async () => {
    const io: BlkHostIo = { submit: (task, done) => void task().then((v) => done(E.right(v)), (e: Error) => done(E.left(e))) };
    const { front, read } = await host({ hostIo: io });
    const dev = await front(vbd(51712, { type: "file", params: "/nonexistent/pvkit.img", mode: "w" }));
    expect(dev.info).toBeUndefined();
    expect(dev.lastDisconnect).toBe("peer-closed");
    expect(read("/local/domain/0/error/backend/vbd/1/51712/error")).toMatch(/opening file/);
  });
});
