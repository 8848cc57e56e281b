/**
 * The xl commands, run in-process against a fake dom0 on a real Unix
 * socket: each request xl sends must decode with dom0's own
 * `decodeRequest` (the protocol's codec), and the fake answers with the
 * protocol's result shapes. Checked: the request each command line makes,
 * what is printed, exit statuses, and the messages of usage errors and
 * refusals.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as E from "fp-ts/lib/Either.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeRequest, type Request } from "@pvkit/dom0";
import { xlMain, type CliIo } from "@pvkit/xl";

type Answer = { ok: true; result: unknown } | { ok: false; error: string };

/** A dom0 that answers from a table and records what it was asked. */
class FakeDom0 {
  readonly requests: { op: string; args: unknown }[] = [];
  readonly answers = new Map<string, (args: Record<string, unknown>) => Answer>();
  private server: Server | undefined;

  listen(path: string): Promise<void> {
    this.server = createServer((socket) => {
      let buffered = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const r = decodeRequest(line);
          if (E.isLeft(r)) {
            socket.write(`${JSON.stringify({ id: r.left.id, ok: false, error: r.left.error })}\n`);
            continue;
          }
          const req: Request = r.right;
          this.requests.push({ op: req.op, args: req.args });
          const answer = this.answers.get(req.op)?.(req.args as Record<string, unknown>) ?? { ok: false, error: `fake dom0: no answer for ${req.op}` };
          socket.write(`${JSON.stringify({ id: req.id, ...answer })}\n`);
        }
      });
      socket.on("error", () => {});
    });
    return new Promise((resolve) => this.server!.listen(path, resolve));
  }

  close(): void {
    this.server?.close();
  }

  ops(): string[] {
    return this.requests.map((r) => r.op);
  }
}

const ok = (result: unknown): Answer => ({ ok: true, result });

const dir = mkdtempSync(join(tmpdir(), "pvkit-xl-cmd-"));
const runDir = join(dir, "run");
const dom0 = new FakeDom0();

const DOMAINS = [
  { domid: 0, name: "Domain-0", memKiB: 16384, maxMemKiB: 16384, vcpus: 1, state: "r-----", cpuNs: 2_500_000_000 },
  { domid: 1, name: "web", memKiB: 65536, maxMemKiB: 131072, vcpus: 2, state: "-b----", cpuNs: 100_000_000 },
];

/** Runs xl with `argv` in the test's directory; `stdin` is fed by the caller. */
async function xl(argv: string[], options: { env?: NodeJS.ProcessEnv; stdin?: PassThrough; onOutput?: (text: string) => void } = {}) {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: { write: (c: string | Uint8Array) => ((stdout += typeof c === "string" ? c : Buffer.from(c).toString()), options.onOutput?.(stdout), true) },
    stderr: { write: (c: string | Uint8Array) => ((stderr += typeof c === "string" ? c : Buffer.from(c).toString()), true) },
    stdin: options.stdin ?? new PassThrough(),
    env: options.env ?? { PVKIT_RUN_DIR: runDir },
    cwd: dir,
  };
  const code = await xlMain(argv, io);
  return { code, stdout, stderr };
}

beforeAll(async () => {
  mkdirSync(runDir, { recursive: true });
  await dom0.listen(join(runDir, "control.sock"));
  writeFileSync(join(dir, "guest.js"), "export default async () => {};\n");
  writeFileSync(join(dir, "web.cfg"), ['name = "web"', 'kernel = "./guest.js"', 'extra = "role=web"', "memory = 64", "maxmem = 128", 'disk = [ "disk.img,raw,xvda,w" ]', 'vif = [ "mac=00:16:3e:00:00:01,bridge=xenbr0" ]', ""].join("\n"));
  dom0.answers.set("list", () => ok(DOMAINS));
  dom0.answers.set("create", (a) => ok({ domid: 5, name: (a["config"] as { name: string }).name }));
  for (const op of ["destroy", "pause", "unpause", "block-detach", "network-detach"]) dom0.answers.set(op, () => ok({ domid: 1, name: "web" }));
  dom0.answers.set("mem-set", (a) => ok({ domid: 1, name: "web", targetKiB: a["memKiB"], staticMaxKiB: 131072 }));
  dom0.answers.set("mem-max", (a) => ok({ domid: 1, name: "web", targetKiB: 65536, staticMaxKiB: a["memKiB"] }));
  dom0.answers.set("shutdown", (a) => ok(a["wait"] ? { domid: 1, name: "web", reason: "poweroff", action: "destroy" } : { domid: 1, name: "web" }));
  dom0.answers.set("block-attach", () => ok({ domid: 1, name: "web", devid: 51728 }));
  dom0.answers.set("network-attach", () => ok({ domid: 1, name: "web", devid: 1 }));
  dom0.answers.set("block-list", () =>
    ok([{ devid: 51728, backendDomid: 0, state: 4, backendState: 4, eventChannel: 9, backendPath: "/local/domain/0/backend/vbd/1/51728", vdev: "xvdb", ringRef: 8, target: "/srv/b.img", mode: "w" }]),
  );
  dom0.answers.set("network-list", () =>
    ok([{ devid: 3, backendDomid: 0, state: 4, backendState: 4, eventChannel: 10, backendPath: "/local/domain/0/backend/vif/1/3", mac: "00:16:3e:00:00:01", bridge: "xenbr0", txRingRef: 11, rxRingRef: 12 }]),
  );
  dom0.answers.set("sched-credit", (a) => ok(a["domain"] === undefined ? [{ domid: 0, name: "Domain-0", weight: 256, cap: 0 }, { domid: 1, name: "web", weight: 512, cap: 50 }] : [{ domid: 1, name: "web", weight: 512, cap: 50 }]));
  dom0.answers.set("vcpu-list", () => ok([{ domid: 1, name: "web", vcpu: 0, cpu: 0, state: "-b-", online: true, blocked: true, running: false, cpuNs: 1e8, affinity: "all" }]));
  dom0.answers.set("uptime", () => ok([{ domid: 0, name: "Domain-0", uptimeNs: 3_723e9 }, { domid: 1, name: "web", uptimeNs: 61e9 }]));
  dom0.answers.set("dmesg", (a) => ok({ text: a["clear"] ? "(cleared)\n" : "(XEN) Xen version 4.17\ndom0: started web as domain 1\n" }));
  dom0.answers.set("info", () => ok({ host: "pvkit", nr_cpus: 2, total_memory: 256, free_memory: 200, cpu_mhz: "1000.000", xen_major: 4, xen_minor: 17, xen_extra: ".0", xen_version: "4.17.0", xend_config_format: 4 }));
  dom0.answers.set("top", () =>
    ok(
      DOMAINS.map((d) => {
        const xvda = { devid: 51712, requests: 16, errors: 1, ooReq: 0, rdReq: 12, wrReq: 3, rdSect: 96, wrSect: 24 };
        const vbdDevices = d.domid === 1 ? [xvda] : [];
        const { devid: _, ...vbd } = vbdDevices[0] ?? { devid: 0, requests: 0, errors: 0, ooReq: 0, rdReq: 0, wrReq: 0, rdSect: 0, wrSect: 0 };
        return { ...d, vbds: vbdDevices.length, vifs: 0, vbd, vbdDevices, net: { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0 } };
      }),
    ),
  );
});

afterEach(() => {
  dom0.requests.length = 0;
});

afterAll(() => {
  dom0.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("xl list", () => {
  it("prints xl's table", async () => {
    const r = await xl(["list"]);
    expect(r).toEqual({
      code: 0,
      stderr: "",
      stdout: [
        "Name                                        ID   Mem VCPUs\tState\tTime(s)",
        "Domain-0                                     0    16     1     r-----       2.5",
        "web                                          1    64     2     -b----       0.1",
        "",
      ].join("\n"),
    });
    expect(dom0.requests).toEqual([{ op: "list", args: {} }]);
  });

  it("shows one domain by name or domid, and says when there is none", async () => {
    expect((await xl(["list", "1"])).stdout.split("\n")[1]).toMatch(/^web /);
    expect(await xl(["list", "nosuch"])).toEqual({ code: 1, stdout: "", stderr: "Error: Domain 'nosuch' does not exist.\n" });
  });

  it("-l prints JSON (dom0, whose config the toolstack does not keep, is left out)", async () => {
    const r = await xl(["list", "-l"]);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});

describe("xl create", () => {
  it("parses the config, resolves the kernel from the config's directory and disks from the working directory, and sends create", async () => {
    const r = await xl(["create", "web.cfg"]);
    expect(r).toEqual({ code: 0, stdout: "", stderr: "Parsing config from web.cfg\n" });
    expect(dom0.requests).toEqual([
      {
        op: "create",
        args: {
          paused: false,
          config: {
            name: "web",
            kernel: pathToFileURL(join(dir, "guest.js")).href,
            memoryMiB: 64,
            maxMemMiB: 128,
            vcpus: 1,
            cmdline: "role=web",
            weight: 256,
            cap: 0,
            onPoweroff: "destroy",
            onReboot: "restart",
            onCrash: "destroy",
            onWatchdog: "destroy",
            disks: [{ target: join(dir, "disk.img"), vdev: "xvda", mode: "w" }],
            vifs: [{ mac: "00:16:3e:00:00:01", bridge: "xenbr0" }],
          },
        },
      },
    ]);
  });

  it("takes KEY=VALUE overrides, -p, -q and options after the file", async () => {
    expect(await xl(["create", "web.cfg", "-q", "memory=96", "-p", 'name="web2"'])).toEqual({ code: 0, stdout: "", stderr: "" });
    const args = dom0.requests[0]!.args as { paused: boolean; config: { name: string; memoryMiB: number } };
    expect([args.paused, args.config.name, args.config.memoryMiB]).toEqual([true, "web2", 96]);
  });

  it("-n prints libxl's JSON and asks no host, even of a Linux kernel", async () => {
    writeFileSync(join(dir, "linux.cfg"), 'name = "linux"\nkernel = "/boot/vmlinuz"\nmemory = 128\n');
    const r = await xl(["create", "-n", "linux.cfg"], { env: { PVKIT_RUN_DIR: join(dir, "no-host") } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ c_info: { type: "pv", name: "linux" }, b_info: { max_memkb: 131072, target_memkb: 131072, kernel: "/boot/vmlinuz" } });
    expect(r.stderr).toMatch(/^Parsing config from linux.cfg\nwarning: linux.cfg:2:10: kernel: \/boot\/vmlinuz is not a pvkit kernel module/);
    expect((await xl(["-N", "create", "linux.cfg"], { env: {} })).code).toBe(0);
    for (const long of ["--dryrun", "--dry-run"]) expect(await xl(["create", long, "linux.cfg"], { env: {} })).toMatchObject({ code: 0, stdout: r.stdout });
    expect(dom0.requests).toEqual([]);
  });

  it("resolves a package specifier to the built module's file URL", async () => {
    const hello = fileURLToPath(new URL("../../domu/dist/hello.js", import.meta.url));
    if (!existsSync(hello)) return;
    expect((await xl(["create", "/dev/null", 'name="h"', 'kernel="@pvkit/domu/hello"'])).code).toBe(0);
    expect((dom0.requests[0]!.args as { config: { kernel: string } }).config.kernel).toBe(pathToFileURL(hello).href);
  });

  it.each<[string, string[], number, RegExp]>([
    ["a missing kernel file", ["create", "/dev/null", 'name="x"', 'kernel="./nope.js"'], 1, /^kernel: .*\/nope\.js: no such file\n$/],
    ["a missing package", ["create", "/dev/null", 'name="x"', 'kernel="@pvkit/nope/kernel"'], 1, /^kernel: cannot find @pvkit\/nope\/kernel: /],
    ["a config error, with its place", ["create", "/dev/null", 'name="x"', 'kernel="./guest.js"', 'type="hvm"'], 1, /^command-line override "type=\\"hvm\\"":1:6: type: "hvm" is refused: pvkit runs PV guests only/],
    ["a missing file", ["create", "nope.cfg"], 1, /^Failed to read config file: nope.cfg: No such file or directory\n$/],
    ["no file", ["create"], 2, /^xl create: no config file given/],
    ["two files", ["create", "a.cfg", "b.cfg"], 2, /^xl create: unexpected argument "b.cfg"/],
    ["a qcow2 disk", ["create", "/dev/null", 'name="x"', 'kernel="./guest.js"', 'disk=["d.qcow2,qcow2,xvda,w"]'], 1, /format qcow2 is not supported by pvkit/],
    ["a disk name blkback cannot serve", ["create", "/dev/null", 'name="x"', 'kernel="./guest.js"', 'disk=["d.img,raw,xvdaa,w"]'], 1, /^disk\[0\]: vdev xvdaa: pvkit's blkback serves xvdX, hdX and sdX disks/],
    ["VNC", ["create", "-V", "web.cfg"], 1, /^xl create: -V\/-A: pvkit domains have no VNC display/],
  ])("refuses %s and sends nothing", async (_, argv, code, message) => {
    const r = await xl(argv);
    expect(r.code).toBe(code);
    expect(r.stderr.replace(/^Parsing config from .*\n/, "")).toMatch(message);
    expect(dom0.ops()).not.toContain("create");
  });
});

describe("domain commands", () => {
  it.each<[string[], { op: string; args: unknown }]>([
    [["destroy", "web"], { op: "destroy", args: { domain: "web" } }],
    [["destroy", "1"], { op: "destroy", args: { domain: 1 } }],
    [["destroy", "-f", "0"], { op: "destroy", args: { domain: 0 } }],
    [["pause", "web"], { op: "pause", args: { domain: "web" } }],
    [["unpause", "1"], { op: "unpause", args: { domain: 1 } }],
    [["mem-set", "web", "512"], { op: "mem-set", args: { domain: "web", memKiB: 524288 } }],
    [["mem-set", "web", "64k"], { op: "mem-set", args: { domain: "web", memKiB: 64 } }],
    [["mem-max", "web", "1g"], { op: "mem-max", args: { domain: "web", memKiB: 1048576 } }],
    [["sched-credit", "-d", "web", "-w", "512"], { op: "sched-credit", args: { domain: "web", weight: 512 } }],
    [["sched-credit", "--domain=web", "--cap=50"], { op: "sched-credit", args: { domain: "web", cap: 50 } }],
    [["block-attach", "web", "disk2.img,raw,xvdb,r"], { op: "block-attach", args: { domain: "web", disk: { target: join(dir, "disk2.img"), vdev: "xvdb", mode: "r" } } }],
    [["block-attach", "web", "format=raw", "vdev=xvdc", "target=/srv/c.img"], { op: "block-attach", args: { domain: "web", disk: { target: "/srv/c.img", vdev: "xvdc", mode: "w" } } }],
    [["block-detach", "web", "xvdb"], { op: "block-detach", args: { domain: "web", vdev: "xvdb" } }],
    [["network-attach", "web", "mac=00:16:3E:00:00:09", "bridge=lan"], { op: "network-attach", args: { domain: "web", vif: { mac: "00:16:3e:00:00:09", bridge: "lan" } } }],
    [["network-attach", "web"], { op: "network-attach", args: { domain: "web", vif: {} } }],
    [["network-detach", "web", "3"], { op: "network-detach", args: { domain: "web", devid: 3 } }],
    [["dmesg", "-c"], { op: "dmesg", args: { clear: true } }],
  ])("%j sends %j", async (argv, request) => {
    const r = await xl(argv);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(dom0.requests.at(-1)).toEqual(request);
  });

  it("block-detach by devid and network-detach by MAC look the device up first", async () => {
    expect((await xl(["block-detach", "web", "51728"])).code).toBe(0);
    expect(dom0.requests.map((r) => r.op)).toEqual(["block-list", "block-detach"]);
    expect(dom0.requests[1]!.args).toEqual({ domain: "web", vdev: "xvdb" });
    dom0.requests.length = 0;
    expect((await xl(["network-detach", "web", "00:16:3E:00:00:01"])).code).toBe(0);
    expect(dom0.requests[1]).toEqual({ op: "network-detach", args: { domain: "web", devid: 3 } });
    expect(await xl(["block-detach", "web", "9"])).toMatchObject({ code: 1, stderr: "Error: Device 9 not connected.\n" });
    expect(await xl(["network-detach", "web", "00:16:3e:99:99:99"])).toMatchObject({ code: 1, stderr: "Unknown device 00:16:3e:99:99:99.\n" });
  });

  it("shutdown says which domain, and -w waits and says how it went", async () => {
    expect(await xl(["shutdown", "web"])).toEqual({ code: 0, stdout: "", stderr: "Shutting down domain 1\n" });
    expect(dom0.requests.at(-1)).toEqual({ op: "shutdown", args: { domain: 1, wait: false } });
    expect(await xl(["shutdown", "-w", "web"])).toEqual({ code: 0, stdout: "", stderr: "Shutting down domain 1\nWaiting for 1 domains\nDomain 1 has been shut down, reason: poweroff; action: destroy\n" });
    expect((await xl(["shutdown", "-a"])).stderr).toBe("Shutting down domain 1\n");
    expect(await xl(["shutdown"])).toMatchObject({ code: 1, stderr: "You must specify -a or a domain id.\n" });
  });

  it("passes dom0's refusal on, and exits 1", async () => {
    dom0.answers.set("pause", () => ({ ok: false, error: "domain nosuch does not exist" }));
    expect(await xl(["pause", "nosuch"])).toEqual({ code: 1, stdout: "", stderr: "domain nosuch does not exist\n" });
    dom0.answers.set("pause", () => ok({ domid: 1, name: "web" }));
  });

  it.each<[string[], number, string]>([
    [["destroy", "0"], 1, "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n"],
    [["destroy", "Domain-0"], 1, "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n"],
    [["destroy"], 2, "'xl destroy' requires at least 1 argument.\n\n"],
    [["mem-set", "web", "lots"], 1, "invalid memory size: lots\n"],
    [["mem-set", "web"], 2, "'xl mem-set' requires at least 2 arguments.\n\n"],
    [["sched-credit", "-w", "512"], 1, "Must specify a domain.\n"],
    [["sched-credit", "-d", "web", "-w", "0"], 2, 'xl sched-credit: -w: "0" is not a number from 1 to 65535\n'],
    [["sched-credit", "-s", "-d", "web"], 1, "Specifying a cpupool or schedparam is not allowed with domain options.\n"],
    [["sched-credit", "-p", "Pool-1"], 1, "unknown cpupool 'Pool-1'\n"],
    [["block-attach", "web", "d.img,qcow2,xvdb"], 1, "xl block-attach: format qcow2 is not supported by pvkit (raw images only)\n"],
    [["network-detach", "web", "eth0"], 2, 'xl network-detach: "eth0" is neither a device number nor a MAC address\n'],
    [["console", "-t", "serial", "web"], 1, "xl console: -t serial: pvkit domains are PV guests, which have a PV console only\n"],
    [["list", "-x"], 2, "option `x' not supported.\n"],
    [["frobnicate"], 1, 'command "frobnicate" not implemented (xl help lists the commands)\n'],
    [["-N", "list"], 1, "command does not implement -N (dryrun) option\n"],
    [["trace"], 2, "xl trace: -o FILE is required: where to write the trace\n"],
    [["trace", "-o", "t.json", "-t", "soon"], 2, 'xl trace: -t: "soon" is not a number of seconds from 0 to 3600\n'],
  ])("%j exits %i: %j", async (argv, code, message) => {
    const r = await xl(argv);
    expect(r.code).toBe(code);
    expect(r.stderr.startsWith(message)).toBe(true);
    expect(dom0.ops().filter((op) => op !== "list" && op !== "block-list" && op !== "network-list")).toEqual([]);
  });

  it("block-attach -N prints libxl's disk JSON and asks no host", async () => {
    const r = await xl(["-N", "block-attach", "web", "/srv/d.img,raw,xvdd,w"], { env: {} });
    expect(r).toEqual({ code: 0, stderr: "", stdout: 'disk: {\n    "pdev_path": "/srv/d.img",\n    "vdev": "xvdd",\n    "format": "raw",\n    "readwrite": 1\n}\n\n' });
  });
});

describe("reading commands", () => {
  it("block-list and network-list", async () => {
    expect((await xl(["block-list", "web"])).stdout).toBe(
      "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n51728 0   1      4     9      8        /local/domain/0/backend/vbd/1/51728\n",
    );
    expect((await xl(["network-list", "web"])).stdout).toBe(
      "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n3   0  00:16:3e:00:00:01     3     4     10    11/12          /local/domain/0/backend/vif/1/3\n",
    );
  });

  it("sched-credit lists the pool line, header and domains; -d the one domain", async () => {
    expect((await xl(["sched-credit"])).stdout).toBe(
      "Cpupool Pool-0: [sched params unavailable]\nName                                ID Weight  Cap\nDomain-0                             0    256    0\nweb                                  1    512   50\n",
    );
    expect((await xl(["sched-credit", "-d", "web"])).stdout).toBe("Name                                ID Weight  Cap\nweb                                  1    512   50\n");
    expect(dom0.requests.at(-1)).toEqual({ op: "sched-credit", args: { domain: "web" } });
  });

  it("vcpu-list, uptime, dmesg, info", async () => {
    expect((await xl(["vcpu-list", "web"])).stdout).toBe(
      "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)\nweb                                  1     0    0   -b-       0.1  all / all\n",
    );
    expect(dom0.requests.at(-1)).toEqual({ op: "vcpu-list", args: { domain: "web" } });
    expect((await xl(["uptime", "web"])).stdout).toBe(`${"Name".padEnd(33)}   ID Uptime\n${"web".padEnd(33)}    1  0:01:01\n`);
    expect((await xl(["dmesg"])).stdout).toBe("(XEN) Xen version 4.17\ndom0: started web as domain 1\n");
    expect((await xl(["info", "total_memory"])).stdout).toBe("256\n");
    // xl takes release, version and machine from uname when dom0 does not say.
    expect((await xl(["info"])).stdout).toMatch(/^host {19}: pvkit\nrelease {16}: .*\nversion {16}: .*\nmachine {16}: .*\nnr_cpus {16}: 2\n/);
  });

  it("domid and domname", async () => {
    expect((await xl(["domid", "web"])).stdout).toBe("1\n");
    expect((await xl(["domname", "0"])).stdout).toBe("Domain-0\n");
    expect(await xl(["domid", "nosuch"])).toMatchObject({ code: 1, stderr: "Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n" });
  });

  it("top -b -i 2 prints xentop's batch screens", async () => {
    const r = await xl(["top", "-b", "-i", "2", "-d", "1"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(6);
    expect(lines[0]).toBe(lines[3]);
    expect(lines[0]).toMatch(/^ {6}NAME {2}STATE {3}CPU\(sec\) CPU\(%\) {5}MEM\(k\) MEM\(%\) {2}MAXMEM\(k\) MAXMEM\(%\) VCPUS NETS NETTX\(k\) NETRX\(k\) VBDS/);
    expect(lines[1]).toMatch(/^ {2}Domain-0 -----r {10}2 {4}0\.0 {6}16384 {4}6\.2 {6}16384 {7}6\.2 {5}1 {4}0/);
    expect(dom0.ops()).toEqual(["top", "info", "top", "info"]);
  });

  it("top -x shows blkback's counters: the VBD columns summed, a line per disk", async () => {
    const r = await xl(["top", "-b", "-i", "1", "-x"]);
    expect(r.code).toBe(0);
    const web = r.stdout.split("\n").find((l) => /^ +web /.test(l))!;
    expect(web).toMatch(/ 1 +0 +12 +3 +96 +24 +\d/);
    expect(r.stdout).toContain("VBD BlkBack 51712 [ca: 0]  OO:        0   RD:       12   WR:        3   RSECT:         96   WSECT:         24\n");
  });

  it("trace: with no host serving the trace socket, says which socket it could not reach", async () => {
    const r = await xl(["trace", "-o", "t.json"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xl trace: no pvkit host is running: cannot reach .*trace\.sock/);
  });
});

describe("xl console", () => {
  it("shows what the console says, types what it reads, and detaches on Ctrl-]", async () => {
    const sock = join(dir, "console-web");
    const consoleServer = createServer((s) => {
      s.write("web: ready\n");
      s.on("data", (b: Buffer) => s.write(`> ${b.toString().trim().toUpperCase()}\n`));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => consoleServer.listen(sock, r));
    dom0.answers.set("console", () => ok({ domid: 1, name: "web", socket: sock }));
    const stdin = new PassThrough();
    let typed = false;
    const r = await xl(["console", "web"], {
      stdin,
      onOutput: (text) => {
        if (text.includes("ready") && !typed) {
          typed = true;
          stdin.write("hello\n");
        }
        if (text.includes("> HELLO")) stdin.write("\x1d");
      },
    });
    consoleServer.close();
    expect(r).toEqual({ code: 0, stdout: "web: ready\n> HELLO\n", stderr: "" });
    expect(dom0.requests).toEqual([{ op: "console", args: { domain: "web" } }]);
  });

  it("ends when the console goes", async () => {
    const sock = join(dir, "console-gone");
    const consoleServer = createServer((s) => s.end("bye\n"));
    await new Promise<void>((r) => consoleServer.listen(sock, r));
    dom0.answers.set("console", () => ok({ domid: 1, name: "web", socket: sock }));
    expect(await xl(["console", "1"])).toEqual({ code: 0, stdout: "bye\n", stderr: "" });
    consoleServer.close();
  });
});

describe("no host", () => {
  it("says no host is running, and where xl looked", async () => {
    const r = await xl(["list"], { env: { PVKIT_RUN_DIR: join(dir, "empty") } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`no pvkit host is running: there is no control socket at ${join(dir, "empty", "control.sock")} (start a host with \`pvkit up\`, or set PVKIT_RUN_DIR to its run directory)\n`);
  });

  it("the run directory defaults to ./.pvkit/run", async () => {
    const r = await xl(["list"], { env: {} });
    expect(r.stderr).toContain(join(dir, ".pvkit", "run", "control.sock"));
  });

  it("help lists the commands; a command's -h its usage", async () => {
    const help = await xl(["help"]);
    expect(help.stdout).toMatch(/^Usage xl \[-vfNtT\] <subcommand> \[args\]\n\nxl full list of subcommands:\n\n create {14}Create a domain from config file <filename>\n/);
    expect((await xl(["mem-set", "-h"])).stdout).toMatch(/^Usage: xl \[-v\] mem-set <Domain> <MemKB/);
    expect((await xl(["create", "-h"])).stdout).toMatch(/^Usage: xl \[-vN\] create <ConfigFile> \[options\] \[vars\]/);
  });
});
