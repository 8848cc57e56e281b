/**
 * The control socket end to end: a realtime host whose dom0 serves
 * control.sock, xenstored and the consoles from a temporary run directory,
 * and a client speaking the control protocol over node:net, as `xl` does.
 * Domains are the XenStore example's responder guest, which stays up,
 * honours `control/shutdown`, connects the devices hotplugged into it and
 * answers commands written to its `data/command` (here through xenstored's
 * socket).
 *
 * The dom0 and guest kernels load from the build (`tsc -b`), as on a host.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootHost, checkInvariants, type Engine, type Hypervisor } from "@pvkit/hypervisor";
import { MAX_CONTROL_LINE, type TopEntry, type BlockDeviceSummary, type CreateRequest, type DomainSummary, type NetworkDeviceSummary, type Reply } from "@pvkit/dom0";
import { connectXenstoreSocket } from "@pvkit/kernel/xenstore-socket";
import { examplesBuilt } from "../../examples/built.js";

const skip = !examplesBuilt && !process.env["CI"];

/** A control-protocol client: one connection, replies taken in order. */
class Client {
  private buffer = "";
  private readonly waiting: ((r: Reply) => void)[] = [];
  private nextId = 1;
  /** Set when the server closed the connection. */
  ended = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.buffer += text;
      for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiting.shift()?.(JSON.parse(line) as Reply);
      }
    });
    socket.on("end", () => (this.ended = true));
  }

  static connect(path: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path, () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }

  /** Sends a raw line; resolves with the next reply. */
  raw(line: string): Promise<Reply> {
    const reply = new Promise<Reply>((resolve) => this.waiting.push(resolve));
    this.socket.write(line);
    return reply;
  }

  /** Sends a request; resolves with its reply. */
  async call(op: string, args: object = {}): Promise<Reply> {
    const id = this.nextId++;
    const reply = await this.raw(`${JSON.stringify({ id, op, args })}\n`);
    expect(reply.id).toBe(id);
    return reply;
  }

  /** Sends a request that must succeed; its result. */
  async ok<T>(op: string, args: object = {}): Promise<T> {
    const reply = await this.call(op, args);
    if (!reply.ok) throw new Error(`${op} failed: ${reply.error}`);
    return reply.result as T;
  }

  /** Sends a request that must fail; its error. */
  async fails(op: string, args: object = {}): Promise<string> {
    const reply = await this.call(op, args);
    if (reply.ok) throw new Error(`${op} succeeded: ${JSON.stringify(reply.result)}`);
    return reply.error;
  }

  close(): void {
    this.socket.end();
  }
}

describe.skipIf(skip)("xl's control socket on a realtime host", () => {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-control-"));
  const controlSock = join(dir, "control.sock");
  const consoleDir = join(dir, "console");
  let hv: Hypervisor;
  let engine: Engine;
  let running: Promise<string>;
  let xl: Client;
  let xs: Awaited<ReturnType<typeof connectXenstoreSocket>> | undefined;
  let guest: string;

  const config = (name: string, more: Partial<CreateRequest> = {}): CreateRequest => ({
    name,
    kernel: guest,
    memoryMiB: 1,
    maxMemMiB: 2,
    vcpus: 1,
    cmdline: "role=responder",
    weight: 256,
    cap: 0,
    onPoweroff: "destroy",
    onReboot: "restart",
    onCrash: "destroy",
    onWatchdog: "destroy",
    disks: [],
    vifs: [],
    ...more,
  });
  const list = () => xl.ok<DomainSummary[]>("list");
  const find = async (name: string) => (await list()).find((d) => d.name === name);
  /**
   * Polls `get` every 20 ms until `ok` holds of its result (within `ms`, generous for a loaded
   * machine); returns the last result.
   */
  const until = async <T>(get: () => Promise<T>, ok: (t: T) => boolean, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    let last = await get();
    while (!ok(last) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      last = await get();
    }
    return last;
  };
  const connected = (d: { state: number; backendState: number; eventChannel: number }) => d.state === 4 && d.backendState === 4 && d.eventChannel > 0;
  /** Writes a command to the responder's `data/command` and returns its reply. */
  const command = async (domid: number, cmd: string): Promise<string> => {
    await xs!.rm(`/local/domain/${domid}/data/reply`)();
    await xs!.write(`/local/domain/${domid}/data/command`, cmd)();
    const reply = await until(
      () => xs!.read(`/local/domain/${domid}/data/reply`)(),
      (r) => r._tag === "Right",
    );
    return reply._tag === "Right" ? reply.right : `no reply: ${reply.left.message}`;
  };
  const exists = async (path: string) => (await xs!.read(path)())._tag === "Right";

  beforeAll(async () => {
    const { kernelUrl } = await import("../../examples/dist/support.js");
    const { guestKernel } = await import("../../examples/dist/xenstore/main.js");
    guest = guestKernel();
    const manifest = { domains: [], control: { socket: controlSock }, xenstored: { socket: join(dir, "xenstored.sock") }, console: { socketDir: consoleDir }, shutdownTimeout: 2 };
    ({ hv, engine } = bootHost({ frames: 8192, pcpus: 2, mode: "realtime", dom0: { kernel: kernelUrl("@pvkit/dom0/kernel"), pages: 1024, module: new TextEncoder().encode(JSON.stringify(manifest)) } }));
    running = engine.run({ until: 300_000_000_000 });
    for (let i = 0; i < 200 && !existsSync(controlSock); i++) await new Promise((r) => setTimeout(r, 25));
    xl = await Client.connect(controlSock);
  }, 60_000);

  afterAll(() => {
    if (xs !== undefined && !xs.closed) xs.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists Domain-0", async () => {
    const [dom0, ...others] = await list();
    expect(others).toEqual([]);
    expect(dom0).toMatchObject({ domid: 0, name: "Domain-0", memKiB: 1024 * 4, vcpus: 1 });
    expect(dom0!.state).toMatch(/^[r-][b-]----$/);
    expect(dom0!.config).toBeUndefined();
  });

  it("answers a malformed line with an error naming what was wrong; the connection and others carry on", async () => {
    const other = await Client.connect(controlSock);
    expect(await xl.raw("this is not json\n")).toMatchObject({ id: 0, ok: false, error: expect.stringMatching(/not JSON/) });
    expect(await xl.raw('{"id":41,"op":"launch","args":{}}\n')).toMatchObject({ id: 41, ok: false, error: expect.stringMatching(/bad control request "launch"/) });
    expect(await xl.fails("destroy", {})).toMatch(/bad control request "destroy"/);
    expect((await other.ok<DomainSummary[]>("list")).map((d) => d.name)).toEqual(["Domain-0"]);
    expect((await list()).map((d) => d.name)).toEqual(["Domain-0"]);
    // A line past the limit closes that connection only.
    const flooder = await Client.connect(controlSock);
    const refused = await flooder.raw("x".repeat(MAX_CONTROL_LINE + 1));
    expect(refused).toMatchObject({ id: 0, ok: false, error: expect.stringMatching(/longer than/) });
    for (let i = 0; i < 100 && !flooder.ended; i++) await new Promise((r) => setTimeout(r, 10));
    expect(flooder.ended).toBe(true);
    expect((await other.ok<DomainSummary[]>("list")).map((d) => d.name)).toEqual(["Domain-0"]);
    other.close();
  });

  it("creates a domU; list shows it with its config; a second of that name is refused", async () => {
    const created = await xl.ok<{ domid: number; name: string }>("create", { config: config("web"), paused: false });
    expect(created).toEqual({ domid: 1, name: "web" });
    const web = await find("web");
    expect(web).toMatchObject({ domid: 1, memKiB: 1024, maxMemKiB: 1024, vcpus: 1, config: config("web") });
    expect(web!.state).not.toMatch(/p/);
    expect(await xl.fails("create", { config: config("web"), paused: false })).toMatch(/web: a domain of that name already exists/);
  });

  it("a failed create names its step and leaves nothing behind", async () => {
    expect(await xl.fails("create", { config: config("ghost", { kernel: "/no/such/kernel.js" }), paused: false })).toMatch(/creating ghost: kernel "\/no\/such\/kernel.js": no such file/);
    // More than the host has free: the builder's populate_physmap comes up short.
    expect(await xl.fails("create", { config: config("huge", { memoryMiB: 30, maxMemMiB: 30 }), paused: false })).toMatch(/creating huge: building: XENMEM_populate_physmap: only \d+ of 7680 pages/);
    // A disk image that is not there: refused before anything is built, as libxl stats it first.
    const missing = join(dir, "missing.img");
    expect(await xl.fails("create", { config: config("diskless", { disks: [{ target: missing, vdev: "xvda", mode: "w" }] }), paused: false })).toBe(`creating diskless: disk vdev=xvda failed to stat ${missing}: ENOENT`);
    expect((await list()).map((d) => d.name)).toEqual(["Domain-0", "web"]);
  });

  it("pause and unpause show in the state", async () => {
    await xl.ok("pause", { domain: "web" });
    expect((await find("web"))!.state).toMatch(/^..p/);
    await xl.ok("unpause", { domain: 1 });
    expect((await find("web"))!.state).toMatch(/^..-/);
    expect(await xl.fails("unpause", { domain: "web" })).toMatch(/unpause web: XEN_DOMCTL_unpausedomain: EINVAL/);
    expect(await xl.fails("pause", { domain: "nope" })).toBe("domain nope does not exist");
  });

  it("mem-max and mem-set keep target <= static-max, and set max_mem", async () => {
    expect(await xl.ok("mem-max", { domain: "web", memKiB: 3072 })).toEqual({ domid: 1, name: "web", targetKiB: 1024, staticMaxKiB: 3072 });
    expect(await xl.fails("mem-max", { domain: "web", memKiB: 512 })).toMatch(/memory_static_max must be greater than or equal to memory_dynamic_max/);
    expect(await xl.fails("mem-set", { domain: "web", memKiB: 4096 })).toMatch(/memory_dynamic_max must be less than or equal to memory_static_max \(3072 KiB\)/);
    expect(await xl.ok("mem-set", { domain: "web", memKiB: 2048 })).toEqual({ domid: 1, name: "web", targetKiB: 2048, staticMaxKiB: 3072 });
    expect((await find("web"))!.maxMemKiB).toBe(2048);
    expect(await xl.fails("mem-set", { domain: "Domain-0", memKiB: 2048 })).toMatch(/not possible on Domain-0/);
  });

  it("mem-set moves the guest's memory: its balloon driver follows memory/target", async () => {
    const settles = async (kib: number) => {
      for (let i = 0; i < 200 && (await find("web"))!.memKiB !== kib; i++) await new Promise((r) => setTimeout(r, 10));
      expect((await find("web"))!.memKiB).toBe(kib);
    };
    await settles(2048);
    await xl.ok("mem-set", { domain: "web", memKiB: 768 });
    await settles(768);
    expect((await find("web"))!.maxMemKiB).toBe(768);
    await xl.ok("mem-set", { domain: "web", memKiB: 1024 });
    await settles(1024);
  }, 30_000);

  it("sched-credit reads and sets weight and cap", async () => {
    expect(await xl.ok("sched-credit", { domain: "web" })).toEqual([{ domid: 1, name: "web", weight: 256, cap: 0 }]);
    expect(await xl.ok("sched-credit", { domain: "web", weight: 512, cap: 50 })).toEqual([{ domid: 1, name: "web", weight: 512, cap: 50 }]);
    expect(await xl.ok("sched-credit", { domain: "web", cap: 0 })).toEqual([{ domid: 1, name: "web", weight: 512, cap: 0 }]);
    expect(await xl.ok("sched-credit")).toEqual([
      { domid: 0, name: "Domain-0", weight: 256, cap: 0 },
      { domid: 1, name: "web", weight: 512, cap: 0 },
    ]);
    expect(await xl.fails("sched-credit", { weight: 3 })).toMatch(/needs a domain/);
    expect((await find("web"))!.config!.weight).toBe(512);
  });

  it("vcpu-list reports every vCPU", async () => {
    const web = await xl.ok<{ domid: number; vcpu: number; online: boolean; state: string; cpuNs: number }[]>("vcpu-list", { domain: "web" });
    expect(web).toHaveLength(1);
    expect(web[0]).toMatchObject({ domid: 1, name: "web", vcpu: 0, online: true, cpu: 0, affinity: "all" });
    expect(web[0]!.state).toMatch(/^[r-][b-]-$/);
    expect(web[0]!.cpuNs).toBeGreaterThan(0);
    const all = await xl.ok<{ domid: number }[]>("vcpu-list");
    expect(all.map((v) => v.domid)).toEqual([0, 1]);
  });

  it("info, dmesg, uptime and top describe the host", async () => {
    const info = await xl.ok<Record<string, unknown>>("info");
    expect(info).toMatchObject({ nr_cpus: 2, nr_nodes: 1, total_memory: 32, virt_caps: "pv gnttab-v1", xen_major: 4, xen_minor: 17, xen_scheduler: "credit", xen_pagesize: 4096, xend_config_format: 4 });
    expect(Object.keys(info).slice(0, 5)).toEqual(["host", "release", "version", "machine", "nr_cpus"]);
    expect(info["xen_version"]).toBe(`4.17${info["xen_extra"] as string}`);
    expect(info["free_memory"]).toBeLessThan(32);

    const dmesg = await xl.ok<{ text: string }>("dmesg");
    expect(dmesg.text).toContain("dom0: started web as domain 1\n");

    const up = await xl.ok<{ domid: number; name: string; uptimeNs: number }[]>("uptime");
    expect(up.map((u) => u.name)).toEqual(["Domain-0", "web"]);
    expect(up[0]!.uptimeNs).toBeGreaterThan(up[1]!.uptimeNs);
    expect(up[1]!.uptimeNs).toBeGreaterThan(0);

    const top = await xl.ok<{ name: string; vbds: number; vbd: object; net: object }[]>("top");
    expect(top.find((t) => t.name === "web")).toMatchObject({ domid: 1, vcpus: 1, vbds: 0, vifs: 0, vbd: { requests: 0, errors: 0 }, net: { txFrames: 0, rxFrames: 0 } });
  });

  it("console names the domain's console socket", async () => {
    const c = await xl.ok<{ socket: string }>("console", { domain: "web" });
    expect(c).toEqual({ domid: 1, name: "web", socket: join(consoleDir, "1") });
    expect(existsSync(c.socket)).toBe(true);
  });

  it("block-attach hotplugs a disk the guest connects and uses; block-detach closes it", async () => {
    xs = await connectXenstoreSocket(join(dir, "xenstored.sock"));
    expect(await xl.ok("block-attach", { domain: "web", disk: { target: "memory", vdev: "xvdb", mode: "w", size: 1 } })).toEqual({ domid: 1, name: "web", devid: 51728 });
    expect(await xl.fails("block-attach", { domain: "web", disk: { target: "memory", vdev: "xvdb", mode: "w", size: 1 } })).toMatch(/already has a disk xvdb/);
    // The guest's blkfront and dom0's blkback walk the xenbus handshake to Connected on both ends.
    const disks = await until(
      () => xl.ok<BlockDeviceSummary[]>("block-list", { domain: "web" }),
      (ds) => ds.length === 1 && connected(ds[0]!),
    );
    expect(disks).toEqual([expect.objectContaining({ devid: 51728, vdev: "xvdb", backendDomid: 0, state: 4, backendState: 4, backendPath: "/local/domain/0/backend/vbd/1/51728", target: "memory", mode: "w" })]);
    expect(disks[0]!.eventChannel).toBeGreaterThan(0);
    expect(disks[0]!.ringRef).toBeGreaterThanOrEqual(0);
    expect((await find("web"))!.config!.disks).toEqual([{ target: "memory", vdev: "xvdb", mode: "w", size: 1 }]);
    // The guest does I/O on it: writes sector 0 and reads it back.
    expect(await command(1, "disk")).toBe("xvdb: 1 MiB, wrote and read sector 0: ok");
    // blkback counted that I/O: xl top's VBD columns (the guest's probe reads may add to the reads).
    const web = (await xl.ok<TopEntry[]>("top")).find((t) => t.name === "web")!;
    expect(web).toMatchObject({ vbds: 1, vbd: { wrReq: 1, wrSect: 1, errors: 0 }, vbdDevices: [expect.objectContaining({ devid: 51728, wrReq: 1 })] });
    expect(web.vbd.rdReq).toBeGreaterThanOrEqual(1);

    // Detach: the back end closes, the front end follows, both directories go, well within libxl's 10 s timeout.
    const started = Date.now();
    await xl.ok("block-detach", { domain: "web", vdev: "xvdb" });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await xl.ok("block-list", { domain: "web" })).toEqual([]);
    expect((await find("web"))!.config!.disks).toEqual([]);
    expect(await exists("/local/domain/1/device/vbd/51728")).toBe(false);
    expect(await exists("/local/domain/0/backend/vbd/1/51728")).toBe(false);
    expect(await command(1, "disk")).toBe("no disks");
    // A file dom0 cannot stat is refused before anything is written, as libxl refuses it.
    expect(await xl.fails("block-attach", { domain: "web", disk: { target: join(dir, "no-such.img"), vdev: "xvdc", mode: "w" } })).toBe(`block-attach web: disk vdev=xvdc failed to stat ${join(dir, "no-such.img")}: ENOENT`);
    expect(await exists("/local/domain/1/device/vbd/51744")).toBe(false);
    expect(hv.console.some((l) => l.includes("web: xvdb connected, 1 MiB"))).toBe(true);
    expect(hv.console.some((l) => l.includes("web: vbd 51728 removed"))).toBe(true);

    // Attached again under the same name, it connects again.
    await xl.ok("block-attach", { domain: "web", disk: { target: "memory", vdev: "xvdb", mode: "w", size: 2 } });
    expect(connected((await until(() => xl.ok<BlockDeviceSummary[]>("block-list", { domain: "web" }), (ds) => ds.length === 1 && connected(ds[0]!)))[0]!)).toBe(true);
    expect(await command(1, "disk")).toBe("xvdb: 2 MiB, wrote and read sector 0: ok");
    await xl.ok("block-detach", { domain: "web", vdev: "xvdb" });
    expect(await xl.ok("block-list", { domain: "web" })).toEqual([]);
    xs!.close();
  }, 60_000);

  it("network-attach hotplugs vifs the guest connects; network-detach closes one", async () => {
    xs = await connectXenstoreSocket(join(dir, "xenstored.sock"));
    expect(await xl.ok("network-attach", { domain: "web", vif: {} })).toEqual({ domid: 1, name: "web", devid: 0 });
    expect(await xl.ok("network-attach", { domain: "web", vif: { mac: "00:16:3e:aa:bb:cc" } })).toEqual({ domid: 1, name: "web", devid: 1 });
    const vifs = await until(
      () => xl.ok<NetworkDeviceSummary[]>("network-list", { domain: "web" }),
      (vs) => vs.length === 2 && vs.every(connected),
    );
    expect(vifs.map((v) => [v.devid, v.mac, v.bridge, v.state, v.backendState])).toEqual([
      [0, "00:16:3e:00:01:00", "xenbr0", 4, 4],
      [1, "00:16:3e:aa:bb:cc", "xenbr0", 4, 4],
    ]);
    for (const v of vifs) {
      expect(v.eventChannel).toBeGreaterThan(0);
      expect(v.txRingRef).toBeGreaterThanOrEqual(0);
      expect(v.rxRingRef).toBeGreaterThanOrEqual(0);
    }
    const started = Date.now();
    await xl.ok("network-detach", { domain: "web", devid: 0 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await xl.ok<{ devid: number }[]>("network-list", { domain: "web" })).map((v) => v.devid)).toEqual([1]);
    expect(await exists("/local/domain/1/device/vif/0")).toBe(false);
    expect(await exists("/local/domain/0/backend/vif/1/0")).toBe(false);
    expect(await xl.fails("network-detach", { domain: "web", devid: 7 })).toMatch(/has no vif 7/);
    // A bridge netback does not have: its hotplug-status says so, and the vif goes again.
    expect(await xl.fails("network-attach", { domain: "web", vif: { bridge: "xenbr9" } })).toBe("network-attach web: vif 2: hotplug script failed: Could not find bridge device xenbr9");
    expect((await xl.ok<{ devid: number }[]>("network-list", { domain: "web" })).map((v) => v.devid)).toEqual([1]);
    expect(await exists("/local/domain/1/device/vif/2")).toBe(false);
    expect(await exists("/local/domain/0/backend/vif/1/2")).toBe(false);
    expect((await find("web"))!.config!.vifs).toHaveLength(1);
    expect(hv.console.some((l) => l.includes("web: vif 1 connected, mac 00:16:3e:aa:bb:cc"))).toBe(true);
    await until(async () => hv.console.some((l) => l.includes("web: vif 0 removed")), (ok) => ok);
    expect(hv.console.some((l) => l.includes("web: vif 0 removed"))).toBe(true);
    // vif 1 stays connected: the guest's shutdown below takes it down with the domain.
    xs!.close();
  }, 60_000);

  it("shutdown -w answers once the guest has powered off and been destroyed", async () => {
    expect(await xl.ok("shutdown", { domain: "web", wait: true })).toEqual({ domid: 1, name: "web", reason: "poweroff", action: "destroy" });
    expect((await list()).map((d) => d.name)).toEqual(["Domain-0"]);
    expect(hv.console).toContain("dom0: web (domain 1) shut down: poweroff; destroyed");
  }, 30_000);

  it("on_poweroff=restart builds the domain again under a new domid", async () => {
    const { domid } = await xl.ok<{ domid: number }>("create", { config: config("phoenix", { onPoweroff: "restart" }), paused: false });
    const r = await xl.ok<{ restartedAs: number }>("shutdown", { domain: "phoenix", wait: true });
    expect(r).toMatchObject({ domid, name: "phoenix", reason: "poweroff", action: "restart" });
    expect(r.restartedAs).not.toBe(domid);
    expect(await find("phoenix")).toMatchObject({ domid: r.restartedAs, config: config("phoenix", { onPoweroff: "restart" }) });
    expect(hv.console).toContain(`dom0: phoenix (domain ${domid}) shut down: poweroff; restarting`);
    await xl.ok("destroy", { domain: "phoenix" });
    expect(await find("phoenix")).toBeUndefined();
  }, 30_000);

  it("on_reboot=preserve leaves it shut down until destroyed; a paused create stays paused", async () => {
    const { domid } = await xl.ok<{ domid: number }>("create", { config: config("keeper", { onReboot: "preserve" }), paused: true });
    expect((await find("keeper"))!.state).toMatch(/^..p/);
    await xl.ok("unpause", { domain: "keeper" });
    expect(await xl.ok("reboot", { domain: "keeper", wait: true })).toEqual({ domid, name: "keeper", reason: "reboot", action: "preserve" });
    expect((await find("keeper"))!.state).toBe("---sr-");
    expect(await xl.fails("shutdown", { domain: "keeper", wait: false })).toMatch(/keeper has shut down/);
    expect(await xl.fails("destroy", { domain: 0 })).toBe("Not destroying domain 0");
    await xl.ok("destroy", { domain: domid });
    expect((await list()).map((d) => d.name)).toEqual(["Domain-0"]);
  }, 30_000);

  it("host-shutdown asks every domain to power off, destroys one that cannot after the timeout, and powers the host off", async () => {
    // on_poweroff=restart does not hold while the host stops.
    const { domid } = await xl.ok<{ domid: number }>("create", { config: config("last", { onPoweroff: "restart" }), paused: false });
    const { domid: stuck } = await xl.ok<{ domid: number }>("create", { config: config("stuck"), paused: true });
    expect(await xl.ok("host-shutdown")).toBeNull();
    expect(await running).toBe("idle");
    expect([...engine.guestErrors.values()]).toEqual([]);
    expect(hv.console).toContain(`dom0: last (domain ${domid}) shut down: poweroff; destroyed`);
    expect(hv.console).toContain("dom0: 1 domain(s) did not power off within 2 s; destroying them");
    expect(hv.console).toContain(`dom0: stuck (domain ${stuck}) destroyed on shutdown`);
    expect(hv.console.at(-1)).toBe("dom0: every domain has shut down");
    expect(checkInvariants(hv)).toEqual([]);
    expect(existsSync(join(consoleDir, String(domid)))).toBe(false);
    expect(existsSync(controlSock)).toBe(false);
  }, 30_000);
});
