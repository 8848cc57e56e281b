/**
 * Interop: Debian's real XenStore clients (`xenstore-utils`) against pvkit's
 * xenstored, which runs in dom0 of a realtime host and listens on the Unix
 * socket named by `XENSTORED_PATH`. A guest, served over its XenStore ring,
 * answers a command written by `xenstore-write`, and `xenstore-watch` sees
 * its change.
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootHost, checkInvariants, type Engine, type Hypervisor } from "@pvkit/hypervisor";
import { examplesBuilt } from "../../examples/built.js";

const run = promisify(execFile);
const haveClients = spawnSync("xenstore-read", ["--help"], { stdio: "ignore" }).error === undefined;
const skip = (!haveClients || !examplesBuilt) && !process.env["CI"];

describe.skipIf(skip)("Debian's xenstore-* clients against pvkit's xenstored", () => {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-xs-"));
  const socket = join(dir, "xenstored", "socket");
  const env = { ...process.env, XENSTORED_PATH: socket };
  const xs = async (cmd: string, ...args: string[]) => {
    const r = await run(cmd, args, { env, timeout: 10_000 }).catch((e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }));
    return { code: "code" in r ? r.code : 0, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
  };
  let hv: Hypervisor;
  let engine: Engine;
  let running: Promise<string>;

  beforeAll(async () => {
    if (!haveClients) throw new Error("CI must run the XenStore interop test: install xenstore-utils");
    const { kernelUrl } = await import("../../examples/dist/support.js");
    const { guestKernel } = await import("../../examples/dist/xenstore/main.js");
    const manifest = { domains: [{ name: "guest", kernel: guestKernel(), memory: 1, cmdline: "role=responder" }], xenstored: { socket } };
    ({ hv, engine } = bootHost({ frames: 4096, mode: "realtime", dom0: { kernel: kernelUrl("@pvkit/dom0/kernel"), pages: 1024, module: new TextEncoder().encode(JSON.stringify(manifest)) } }));
    running = engine.run({ until: 120_000_000_000 });
    // The host is up once the guest has announced itself in XenStore.
    for (let i = 0; i < 200; i++) {
      if ((await xs("xenstore-read", "/local/domain/1/data/ready")).stdout === "1") return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the host did not come up:\n${hv.console.join("\n")}`);
  }, 60_000);

  afterAll(async () => {
    await xs("xenstore-write", "/local/domain/0/control/shutdown", "poweroff");
    expect(await running).toBe("idle");
    expect([...engine.guestErrors.values()]).toEqual([]);
    expect(hv.console).toContain("dom0: every domain has shut down");
    expect(checkInvariants(hv)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("reads what the toolstack published for the guest", async () => {
    expect((await xs("xenstore-read", "/local/domain/1/name")).stdout).toBe("guest");
    expect((await xs("xenstore-read", "/local/domain/1/memory/target")).stdout).toBe("1024");
    expect(Number((await xs("xenstore-read", "/local/domain/1/store/port")).stdout)).toBeGreaterThan(0);
    expect((await xs("xenstore-list", "/local/domain")).stdout.split("\n")).toEqual(["0", "1"]);
  });

  it("writes, reads, lists, checks existence, changes permissions and removes", async () => {
    expect((await xs("xenstore-write", "/tool/pvkit-test/a", "hello", "/tool/pvkit-test/b", "world")).code).toBe(0);
    expect((await xs("xenstore-read", "/tool/pvkit-test/a")).stdout).toBe("hello");
    expect((await xs("xenstore-ls", "/tool/pvkit-test")).stdout.split("\n")).toEqual(['a = "hello"', 'b = "world"']);
    expect((await xs("xenstore-exists", "/tool/pvkit-test/a")).code).toBe(0);
    expect((await xs("xenstore-chmod", "/tool/pvkit-test/a", "n0", "r1")).code).toBe(0);
    expect((await xs("xenstore-ls", "-p", "/tool/pvkit-test")).stdout).toMatch(/a = "hello"[ .]*\(n0,r1\)/);
    expect((await xs("xenstore-rm", "/tool/pvkit-test")).code).toBe(0);
    const gone = await xs("xenstore-exists", "/tool/pvkit-test/a");
    expect(gone.code).not.toBe(0);
    const missing = await xs("xenstore-read", "/no/such/node");
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/couldn't read path \/no\/such\/node/);
  });

  it("xenstore-watch sees a change the guest makes, answering a command written from the host", async () => {
    const watcher = spawn("xenstore-watch", ["-n", "2", "/local/domain/1/data/reply"], { env });
    let out = "";
    watcher.stdout.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => watcher.on("exit", resolve));
    await new Promise((r) => setTimeout(r, 300)); // let the watch register (its first event fires then)
    expect((await xs("xenstore-write", "/local/domain/1/data/command", "greet")).code).toBe(0);
    const timer = setTimeout(() => watcher.kill(), 10_000);
    expect(await exited).toBe(0);
    clearTimeout(timer);
    // One event on registration, one when the guest wrote its reply.
    expect(out.trim().split("\n")).toEqual(["/local/domain/1/data/reply", "/local/domain/1/data/reply"]);
    expect((await xs("xenstore-read", "/local/domain/1/data/reply")).stdout).toBe("hello from guest");
  });

  it("a guest honours control/shutdown written from the host, as xl shutdown asks PV guests", async () => {
    expect((await xs("xenstore-write", "/local/domain/1/control/shutdown", "poweroff")).code).toBe(0);
    for (let i = 0; i < 100 && !hv.console.includes("dom0: guest (domain 1) shut down: poweroff; destroyed"); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hv.console).toContain("dom0: guest (domain 1) shut down: poweroff; destroyed");
    expect((await xs("xenstore-list", "/local/domain")).stdout.split("\n")).toEqual(["0"]);
  });
});

describe.skipIf(skip)("hostile socket clients", () => {
  it("a header claiming more than XENSTORE_PAYLOAD_MAX closes that connection only; the daemon keeps serving", async () => {
    const { createConnection } = await import("node:net");
    const dir = mkdtempSync(join(tmpdir(), "pvkit-xs-"));
    const socket = join(dir, "xenstored", "socket");
    const env = { ...process.env, XENSTORED_PATH: socket };
    const { kernelUrl } = await import("../../examples/dist/support.js");
    const manifest = { domains: [], xenstored: { socket } };
    const host = bootHost({ frames: 2048, mode: "realtime", dom0: { kernel: kernelUrl("@pvkit/dom0/kernel"), pages: 512, module: new TextEncoder().encode(JSON.stringify(manifest)) } });
    const running = host.engine.run({ until: 60_000_000_000 });
    const read = async (path: string) => (await run("xenstore-read", [path], { env }).catch(() => ({ stdout: "" }))).stdout.trim();
    for (let i = 0; i < 100 && (await read("/local/domain/0/name")) !== "Domain-0"; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await read("/local/domain/0/name")).toBe("Domain-0");

    const closed = await new Promise<boolean>((resolve) => {
      const c = createConnection(socket, () => {
        const header = Buffer.alloc(16);
        header.writeUInt32LE(2, 0); // XS_READ
        header.writeUInt32LE(4097, 12); // len > XENSTORE_PAYLOAD_MAX
        c.write(header);
      });
      c.on("close", () => resolve(true));
      setTimeout(() => resolve(false), 5000);
    });
    expect(closed).toBe(true);
    // Other clients are served as before.
    expect(await read("/local/domain/0/name")).toBe("Domain-0");
    await run("xenstore-write", ["/local/domain/0/control/shutdown", "poweroff"], { env });
    expect(await running).toBe("idle");
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
});
