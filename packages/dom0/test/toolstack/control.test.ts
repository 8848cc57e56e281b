/**
 * The control protocol's server side without a host: request lines decoded
 * and dispatched to a fake domain manager, as tables of (line, expected
 * reply); and the domain manager's pure helpers.
 */
import * as E from "fp-ts/lib/Either.js";
import { fileURLToPath } from "node:url";
import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { SHUTDOWN, XEN_DOMINF } from "@pvkit/abi";
import { actionFor, checkConfig, checkDiskTarget, defaultMac, dispatch, domainStateString, handleLine, resolveKernel, vbdDevice, vifDevice, type ControlOps, type CreateRequest } from "@pvkit/dom0";

const CONFIG: CreateRequest = {
  name: "web",
  kernel: "file:///k.js",
  memoryMiB: 1,
  maxMemMiB: 2,
  vcpus: 1,
  cmdline: "role=responder",
  weight: 256,
  cap: 0,
  onPoweroff: "destroy",
  onReboot: "restart",
  onCrash: "preserve",
  onWatchdog: "destroy",
  disks: [{ target: "memory", vdev: "xvda", mode: "w", size: 4 }],
  vifs: [{ bridge: "xenbr0" }],
};

/** A fake domain manager: every operation records its arguments and answers with them. */
function fakeOps(overrides: Partial<ControlOps> = {}): { ops: ControlOps; calls: [string, unknown[]][] } {
  const calls: [string, unknown[]][] = [];
  const op =
    (name: string) =>
    async (...args: unknown[]) => {
      calls.push([name, args]);
      return E.right({ op: name, args });
    };
  const names = ["list", "create", "destroy", "pause", "unpause", "shutdown", "info", "dmesg", "uptime", "top", "memSet", "memMax", "vcpuList", "schedCredit", "console", "blockAttach", "blockDetach", "blockList", "networkAttach", "networkDetach", "networkList", "hostShutdown"] as const;
  const ops = Object.fromEntries(names.map((n) => [n, op(n)])) as unknown as ControlOps;
  return { ops: { ...ops, ...overrides }, calls };
}

describe("request lines: decoded and dispatched to the domain manager", () => {
  const rows: [string, object, [string, unknown[]]][] = [
    ["list", { id: 1, op: "list", args: {} }, ["list", []]],
    ["create", { id: 2, op: "create", args: { config: CONFIG, paused: true } }, ["create", [CONFIG, { paused: true }]]],
    ["destroy by name", { id: 3, op: "destroy", args: { domain: "web" } }, ["destroy", ["web"]]],
    ["destroy by domid", { id: 4, op: "destroy", args: { domain: 7 } }, ["destroy", [7]]],
    ["pause", { id: 5, op: "pause", args: { domain: "web" } }, ["pause", ["web"]]],
    ["unpause", { id: 6, op: "unpause", args: { domain: 3 } }, ["unpause", [3]]],
    ["shutdown -w", { id: 7, op: "shutdown", args: { domain: "web", wait: true } }, ["shutdown", ["web", "poweroff", true]]],
    ["reboot", { id: 8, op: "reboot", args: { domain: "web", wait: false } }, ["shutdown", ["web", "reboot", false]]],
    ["info", { id: 9, op: "info", args: {} }, ["info", []]],
    ["dmesg", { id: 10, op: "dmesg", args: {} }, ["dmesg", [false]]],
    ["dmesg -c", { id: 11, op: "dmesg", args: { clear: true } }, ["dmesg", [true]]],
    ["uptime", { id: 12, op: "uptime", args: {} }, ["uptime", []]],
    ["top", { id: 13, op: "top", args: {} }, ["top", []]],
    ["mem-set", { id: 14, op: "mem-set", args: { domain: "web", memKiB: 2048 } }, ["memSet", ["web", 2048]]],
    ["mem-max", { id: 15, op: "mem-max", args: { domain: "web", memKiB: 4096 } }, ["memMax", ["web", 4096]]],
    ["vcpu-list (all)", { id: 16, op: "vcpu-list", args: {} }, ["vcpuList", [undefined]]],
    ["vcpu-list web", { id: 17, op: "vcpu-list", args: { domain: "web" } }, ["vcpuList", ["web"]]],
    ["sched-credit set", { id: 18, op: "sched-credit", args: { domain: "web", weight: 512, cap: 50 } }, ["schedCredit", [{ domain: "web", weight: 512, cap: 50 }]]],
    ["console", { id: 19, op: "console", args: { domain: "web" } }, ["console", ["web"]]],
    ["block-attach", { id: 20, op: "block-attach", args: { domain: "web", disk: { target: "/tmp/d.img", vdev: "xvdb", mode: "r" } } }, ["blockAttach", ["web", { target: "/tmp/d.img", vdev: "xvdb", mode: "r" }]]],
    ["block-detach", { id: 21, op: "block-detach", args: { domain: "web", vdev: "xvdb" } }, ["blockDetach", ["web", "xvdb"]]],
    ["block-list", { id: 22, op: "block-list", args: { domain: "web" } }, ["blockList", ["web"]]],
    ["network-attach", { id: 23, op: "network-attach", args: { domain: "web", vif: { bridge: "xenbr1" } } }, ["networkAttach", ["web", { bridge: "xenbr1" }]]],
    ["network-detach", { id: 24, op: "network-detach", args: { domain: "web", devid: 1 } }, ["networkDetach", ["web", 1]]],
    ["network-list", { id: 25, op: "network-list", args: { domain: 2 } }, ["networkList", [2]]],
    ["host-shutdown", { id: 26, op: "host-shutdown", args: {} }, ["hostShutdown", []]],
  ];

  it.each(rows)("%s", async (_what, request, [name, args]) => {
    const { ops, calls } = fakeOps();
    const reply = await handleLine(ops, JSON.stringify(request));
    expect(calls).toEqual([[name, args]]);
    expect(reply).toEqual({ id: (request as { id: number }).id, ok: true, result: { op: name, args } });
  });
});

describe("bad request lines get an error reply naming what was wrong, and reach nothing", () => {
  const rows: [string, string, number, RegExp | string][] = [
    ["not JSON", "garbage", 0, /^control request is not JSON/],
    ["a JSON value that is not a request", "[1,2,3]", 0, "bad control request: expected an object { id, op, args }, got [1,2,3]"],
    ["an unknown operation", '{"id":3,"op":"frobnicate","args":{}}', 3, 'bad control request "frobnicate": unknown operation'],
    ["an operation that is no name", '{"id":3,"op":7,"args":{}}', 3, "bad control request: op: expected an operation name, got 7"],
    ["a missing argument", '{"id":4,"op":"destroy","args":{}}', 4, 'bad control request "destroy": args.domain: missing'],
    ["an argument of the wrong type", '{"id":5,"op":"mem-set","args":{"domain":"web","memKiB":-1}}', 5, 'bad control request "mem-set": args.memKiB: expected PositiveInteger, got -1'],
    ["a domain that is neither name nor domid", '{"id":5,"op":"pause","args":{"domain":true}}', 5, 'bad control request "pause": args.domain: expected (string | NonNegativeInteger), got true'],
    ["a create without a config", '{"id":6,"op":"create","args":{"paused":false}}', 6, 'bad control request "create": args.config: missing'],
    ["a config with a bad field", JSON.stringify({ id: 7, op: "create", args: { config: { ...CONFIG, onCrash: "explode" }, paused: false } }), 7, 'bad control request "create": args.config.onCrash: expected "destroy" | "restart" | "preserve", got "explode"'],
    ["two problems: the first, and how many more", '{"id":8,"op":"block-attach","args":{"domain":"web","disk":{"target":"x"}}}', 8, 'bad control request "block-attach": args.disk.vdev: missing (and 1 more)'],
    ["a long value, cut short", JSON.stringify({ id: 9, op: "o".repeat(5000), args: {} }), 9, `bad control request "${"o".repeat(40)}…": unknown operation`],
    ["a bad id (echoed, so the client can match it)", '{"id":-2,"op":"list","args":{}}', -2, 'bad control request "list": id: expected NonNegativeInteger, got -2'],
  ];

  it.each(rows)("%s", async (_what, line, id, error) => {
    const { ops, calls } = fakeOps();
    const reply = await handleLine(ops, line);
    expect(reply).toMatchObject({ id, ok: false });
    if (typeof error === "string") expect((reply as { error: string }).error).toBe(error);
    else expect((reply as { error: string }).error).toMatch(error);
    expect(calls).toEqual([]);
  });
});

describe("the domain manager's answers become replies", () => {
  const list = { id: 1, op: "list" as const, args: {} };

  it("a Left is an error reply carrying its message", async () => {
    const { ops } = fakeOps({ destroy: async () => E.left("domain web does not exist") });
    expect(await dispatch(ops, { id: 2, op: "destroy", args: { domain: "web" } })).toEqual({ id: 2, ok: false, error: "domain web does not exist" });
  });

  it("an exception is an internal error, not a crash", async () => {
    const { ops } = fakeOps({
      list: async () => {
        throw new Error("boom");
      },
    });
    expect(await dispatch(ops, list)).toEqual({ id: 1, ok: false, error: "internal error in list: boom" });
  });

  it("an undefined result is sent as null", async () => {
    const { ops } = fakeOps({ list: async () => E.right(undefined as never) });
    expect(await dispatch(ops, list)).toEqual({ id: 1, ok: true, result: null });
  });
});

describe("the domain manager's rules", () => {
  const { running, blocked, paused, shutdown, dying, shutdownshift } = XEN_DOMINF;
  it.each([
    [0, "------"],
    [running, "r-----"],
    [blocked | paused, "-bp---"],
    [shutdown | (SHUTDOWN.poweroff << shutdownshift), "---s--"],
    [shutdown | (SHUTDOWN.reboot << shutdownshift), "---sr-"],
    [shutdown | (SHUTDOWN.crash << shutdownshift), "---sc-"],
    [shutdown | (SHUTDOWN.watchdog << shutdownshift), "---sw-"],
    [shutdown | (SHUTDOWN.soft_reset << shutdownshift), "---sS-"],
    [dying | shutdown | (SHUTDOWN.crash << shutdownshift), "---scd"],
  ])("flags %i are xl's state %s", (flags, state) => {
    expect(domainStateString(flags)).toBe(state);
  });

  it("takes the on_* action for each shutdown reason; suspend and soft reset preserve", () => {
    expect([SHUTDOWN.poweroff, SHUTDOWN.reboot, SHUTDOWN.crash, SHUTDOWN.watchdog, SHUTDOWN.suspend, SHUTDOWN.soft_reset].map((r) => actionFor(CONFIG, r))).toEqual(["destroy", "restart", "preserve", "destroy", "preserve", "preserve"]);
  });

  it.each([
    ["a good config", CONFIG, []],
    ["an all-digit name", { ...CONFIG, name: "42" }, [/name "42"/]],
    ["dom0's name", { ...CONFIG, name: "Domain-0" }, [/dom0's/]],
    ["maxmem below memory", { ...CONFIG, memoryMiB: 4, maxMemMiB: 2 }, [/maxMemMiB \(2\) must be at least memoryMiB \(4\)/]],
    ["a weight too big", { ...CONFIG, weight: 70000 }, [/weight 70000/]],
    ["a bad vdev", { ...CONFIG, disks: [{ target: "/d", vdev: "vda", mode: "w" as const }] }, [/vdev "vda"/]],
    ["a vdev used twice", { ...CONFIG, disks: [CONFIG.disks[0]!, CONFIG.disks[0]!] }, [/used twice/]],
    ["a memory disk without a size", { ...CONFIG, disks: [{ target: "memory", vdev: "xvda", mode: "w" as const }] }, [/needs a size/]],
    ["a bad mac", { ...CONFIG, vifs: [{ mac: "00:16:3e" }] }, [/mac "00:16:3e"/]],
  ] as [string, CreateRequest, RegExp[]][])("checks %s", (_what, config, problems) => {
    const found = checkConfig(config);
    expect(found).toHaveLength(problems.length);
    problems.forEach((p, i) => expect(found[i]).toMatch(p));
  });

  it("resolves kernels: file: URLs as given, absolute paths as file: URLs; refuses other URLs, relative paths and missing files", () => {
    const here = fileURLToPath(import.meta.url);
    expect(resolveKernel(here)).toEqual(E.right(`file://${here}`));
    expect(resolveKernel(`file://${here}`)).toEqual(E.right(`file://${here}`));
    expect(resolveKernel("./guest.js")).toEqual(E.left('kernel "./guest.js" is a relative path: give an absolute path or a file: URL'));
    expect(E.isLeft(resolveKernel("/no/such/kernel.js"))).toBe(true);
    expect(E.isLeft(resolveKernel("@pvkit/no-such-package/kernel"))).toBe(true);
    for (const url of ["https://example.com/kernel.js", "data:text/javascript,export default 1", "node:fs"]) {
      expect(resolveKernel(url)).toEqual(E.left(`kernel "${url}": only file: URLs, absolute paths and package specifiers are loaded`));
    }
  });

  it("checks a disk's target as libxl stats it: memory, a regular file, not a directory", () => {
    const here = fileURLToPath(import.meta.url);
    const disk = (target: string) => ({ target, vdev: "xvdb", mode: "w" as const });
    expect(checkDiskTarget({ ...disk("memory"), size: 1 })).toEqual(E.right(undefined));
    expect(checkDiskTarget(disk(here))).toEqual(E.right(undefined));
    expect(checkDiskTarget(disk("/no/such/disk.img"))).toEqual(E.left("disk vdev=xvdb failed to stat /no/such/disk.img: ENOENT"));
    expect(checkDiskTarget(disk(dirname(here)))).toEqual(E.left(`disk vdev=xvdb: ${dirname(here)} is not a regular file (blkback serves raw image files)`));
  });

  it("makes devices as libxl does: vbds served by dom0, vifs with a MAC in Xen's OUI", () => {
    expect(vbdDevice(3, { target: "memory", vdev: "xvdb", mode: "r", size: 2 })).toEqual({
      type: "vbd",
      devid: 51728,
      frontendDomid: 3,
      backendDomid: 0,
      frontend: { "virtual-device": "51728", "device-type": "disk" },
      backend: { dev: "xvdb", type: "memory", params: String(2 * 1024 * 1024), mode: "r", "device-type": "disk" },
    });
    expect(defaultMac(0x102, 1)).toBe("00:16:3e:01:02:01");
    expect(vifDevice(3, 1, {}, 2)).toMatchObject({ type: "vif", devid: 1, backendDomid: 2, frontend: { mac: "00:16:3e:00:03:01", handle: "1" }, backend: { bridge: "xenbr0", script: "vif-bridge" } });
  });
});
