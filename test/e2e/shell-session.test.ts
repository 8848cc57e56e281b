/**
 * End to end: the shell session of the README, run with the real commands
 * as subprocesses (`node packages/xl/dist/bin/pvkit.js`, `.../xl.js`), a
 * run directory in a temporary directory (`PVKIT_RUN_DIR`), and the built
 * examples' kernels:
 *
 * ```sh
 * pvkit up --detach                 # prints the host's pid
 * xl create guest.cfg               # the XenStore example's responder
 * xl list                           # Domain-0 and guest
 * xl mem-set guest 1m               # its balloon gives pages back
 * xl trace -o trace.json -t 0.5 & xl block-attach guest disk.img,raw,xvdb,w
 * xl block-list guest               # until state 4 (Connected)
 * xenstore-write /local/domain/1/data/command disk   # the guest writes and reads sector 0
 * xl block-detach guest xvdb
 * xl network-attach guest bridge=xenbr0; xl network-list guest; xl network-detach guest 0
 * xl create echo.cfg; xl console echo   # type a line, read it back, Ctrl-]
 * xl destroy guest
 * pvkit down
 * ```
 *
 * Then a host in the foreground stopped by SIGTERM, as Ctrl-C stops one.
 * It needs the build (`npm test` builds first); without it the test is
 * skipped, except under CI.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { processAlive } from "@pvkit/xl";
import { connectXenstoreSocket } from "@pvkit/kernel/xenstore-socket";

const root = fileURLToPath(new URL("../..", import.meta.url));
const PVKIT = join(root, "packages/xl/dist/bin/pvkit.js");
const XL = join(root, "packages/xl/dist/bin/xl.js");
const XENSTORE_GUEST = join(root, "examples/dist/xenstore/guest.js");
const CONSOLE_GUEST = join(root, "examples/dist/console/guest.js");
const built = [PVKIT, XL, XENSTORE_GUEST, CONSOLE_GUEST, join(root, "packages/dom0/dist/kernel.js")].every((f) => existsSync(f));
const skip = !built && !process.env["CI"];

const dir = mkdtempSync(join(tmpdir(), "pvkit-e2e-"));
const runDir = join(dir, "run");
const env = { ...process.env, PVKIT_RUN_DIR: runDir };

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node script args` in the session's directory and environment. */
function run(script: string, args: readonly string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...args], { cwd: dir, env, timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === "number" ? ((error as { code: number }).code) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}
const pvkit = (...args: string[]) => run(PVKIT, args);
const xl = (...args: string[]) => run(XL, args);

/** Polls `check` until it holds or `ms` pass. */
async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Whether process `pid` is gone (a zombie waiting for a parent that will not reap it counts as gone). */
const gone = (pid: number) => !processAlive(pid);

/** The pid of the host this test started, read when it printed it. */
let hostPid: number | undefined;

afterAll(() => {
  // A host the session left behind (a failed step) is killed: it is this test's own process.
  if (hostPid !== undefined && !gone(hostPid)) process.kill(hostPid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip)("the README's shell session, with the real commands", () => {
  it("pvkit up --detach; xl create, list, mem-set, block-attach, console, destroy; pvkit down", async () => {
    if (!built) throw new Error("CI must run the end-to-end test: build first (npm run build)");
    writeFileSync(join(dir, "host.json"), JSON.stringify({ memory: 128, pcpus: 2, dom0: { memory: 16 }, seed: 1 }));
    writeFileSync(join(dir, "guest.cfg"), `name = "guest"\nkernel = "${XENSTORE_GUEST}"\nextra = "role=responder"\nmemory = 2\n`);
    writeFileSync(join(dir, "echo.cfg"), `name = "echo"\nkernel = "${CONSOLE_GUEST}"\nextra = "role=echo"\nmemory = 1\n`);
    writeFileSync(join(dir, "disk.img"), "");
    truncateSync(join(dir, "disk.img"), 4 << 20);

    // pvkit up --detach: prints the pid once the control socket answers.
    const up = await pvkit("up", "--detach", "--config", "host.json");
    expect(up.stderr).toBe("");
    expect(up).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\n$/) });
    hostPid = Number(up.stdout);
    expect(readFileSync(join(runDir, "pvkit.pid"), "utf8")).toBe(`${hostPid}\n`);
    expect(existsSync(join(runDir, "control.sock"))).toBe(true);

    // A second host in the same run directory is refused.
    expect(await pvkit("up", "--detach")).toMatchObject({ code: 1, stderr: `pvkit up: a pvkit host (pid ${hostPid}) is already running in ${runDir} (stop it with \`pvkit down\`)\n` });

    // xl create
    expect(await xl("create", "guest.cfg")).toEqual({ code: 0, stdout: "", stderr: "Parsing config from guest.cfg\n" });

    // xl list: Domain-0 and the guest, in xl's columns.
    const list = await xl("list");
    expect(list.code).toBe(0);
    const rows = list.stdout.split("\n");
    expect(rows[0]).toBe("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    expect(rows[1]).toMatch(/^Domain-0 {32} {5}0 {4}16 {5}1 {5}[r-][b-]-{4} +\d+\.\d$/);
    expect(rows[2]).toMatch(/^guest {35} {5}1 {5}2 {5}1 {5}[r-][b-]-{4} +\d+\.\d$/);

    // xl mem-set: the guest's balloon driver gives pages back until it is at its target.
    expect(await xl("mem-set", "guest", "1m")).toEqual({ code: 0, stdout: "", stderr: "" });
    await eventually(async () => / {5}1 {5}1 {5}1 {5}/.test((await xl("list", "guest")).stdout), 10_000, "the guest to balloon down to 1 MiB");

    // xl trace over a window with activity in it: the guest's blkfront connecting the disk attached meanwhile.
    const tracing = xl("trace", "-o", "trace.json", "-t", "0.5");
    await new Promise((r) => setTimeout(r, 100));
    // xl block-attach: the guest's hotplug watch opens a blkfront, which connects with blkback (xvdb: 202 << 8 | 16).
    expect(await xl("block-attach", "guest", `${join(dir, "disk.img")},raw,xvdb,w`)).toEqual({ code: 0, stdout: "", stderr: "" });
    const traced = await tracing;
    expect(traced.code).toBe(0);
    expect(traced.stderr).toMatch(/^Wrote \d+ trace events to trace.json\n$/);
    const events = (JSON.parse(readFileSync(join(dir, "trace.json"), "utf8")) as { traceEvents: { ph: string; cat?: string; name?: string }[] }).traceEvents;
    expect(events.some((e) => e.ph === "M")).toBe(true); // the process names Perfetto shows
    expect(events.filter((e) => e.ph !== "M").length).toBeGreaterThan(0); // and what happened: hypercalls, events, schedules

    // xl block-list, until the xenbus handshake is done: state 4 (Connected), a real event channel and ring ref.
    let blockRow: string[] = [];
    await eventually(
      async () => {
        const blocks = await xl("block-list", "guest");
        expect(blocks.code).toBe(0);
        expect(blocks.stdout.split("\n")[0]).toBe("Vdev  BE  handle state evt-ch ring-ref BE-path                       ");
        blockRow = (blocks.stdout.split("\n")[1] ?? "").trim().split(/\s+/);
        return blockRow[3] === "4";
      },
      20_000,
      "xvdb to connect",
    );
    expect(blockRow).toEqual(["51728", "0", "1", "4", expect.stringMatching(/^\d+$/), expect.stringMatching(/^\d+$/), "/local/domain/0/backend/vbd/1/51728"]);
    expect(Number(blockRow[4])).toBeGreaterThan(0);

    // The guest does I/O on it: asked through XenStore, it writes sector 0 and reads it back.
    const xs = await connectXenstoreSocket(join(runDir, "xenstored", "socket"));
    const ask = async (cmd: string): Promise<string> => {
      await xs.rm("/local/domain/1/data/reply")();
      await xs.write("/local/domain/1/data/command", cmd)();
      let reply = "";
      await eventually(
        async () => {
          const r = await xs.read("/local/domain/1/data/reply")();
          if (r._tag === "Right") reply = r.right;
          return r._tag === "Right";
        },
        20_000,
        `the guest to answer "${cmd}"`,
      );
      return reply;
    };
    try {
      expect(await ask("disk")).toBe("xvdb: 4 MiB, wrote and read sector 0: ok");
      expect(readFileSync(join(dir, "disk.img")).subarray(0, 512).some((b) => b !== 0)).toBe(true); // it reached the image file

      // xl block-detach: both ends close, the device is gone.
      expect(await xl("block-detach", "guest", "xvdb")).toEqual({ code: 0, stdout: "", stderr: "" });
      expect((await xl("block-list", "guest")).stdout).toBe("Vdev  BE  handle state evt-ch ring-ref BE-path                       \n");
      expect(await ask("disk")).toBe("no disks");

      // xl network-attach: the guest's netfront connects with netback; network-list shows state 4; network-detach removes it.
      expect(await xl("network-attach", "guest", "bridge=xenbr0")).toEqual({ code: 0, stdout: "", stderr: "" });
      let nicRow: string[] = [];
      await eventually(
        async () => {
          const nics = await xl("network-list", "guest");
          expect(nics.code).toBe(0);
          nicRow = (nics.stdout.split("\n")[1] ?? "").trim().split(/\s+/);
          return nicRow[4] === "4";
        },
        20_000,
        "the vif to connect",
      );
      expect(nicRow).toEqual(["0", "0", expect.stringMatching(/^00:16:3e:/), "0", "4", expect.stringMatching(/^\d+$/), expect.stringMatching(/^\d+\/\d+$/), "/local/domain/0/backend/vif/1/0"]);
      expect(Number(nicRow[5])).toBeGreaterThan(0);
      expect(await xl("network-detach", "guest", "0")).toEqual({ code: 0, stdout: "", stderr: "" });
      expect((await xl("network-list", "guest")).stdout.split("\n").filter((l) => l !== "")).toHaveLength(1); // the header only
    } finally {
      xs.close();
    }

    // xl console, piped: read the guest's greeting, type a line, read the answer, detach with Ctrl-].
    expect((await xl("create", "echo.cfg")).code).toBe(0);
    const consoleRun = await new Promise<Run>((resolve, reject) => {
      const child: ChildProcess = spawn(process.execPath, [XL, "console", "echo"], { cwd: dir, env, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      let typed = false;
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`xl console did not finish; it printed:\n${stdout}\n${stderr}`));
      }, 20_000);
      child.stdout!.on("data", (b: Buffer) => {
        stdout += b.toString();
        if (!typed && stdout.includes("echo: ready")) {
          typed = true;
          child.stdin!.write("hello, console\n");
        }
        if (stdout.includes("> HELLO, CONSOLE")) child.stdin!.write("\x1d");
      });
      child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 1, stdout, stderr });
      });
    });
    expect(consoleRun).toEqual({ code: 0, stdout: 'echo: ready; type a line ("exit" ends)\n> HELLO, CONSOLE\n', stderr: "" });

    // xl destroy: the guest is gone from the list.
    expect(await xl("destroy", "guest")).toEqual({ code: 0, stdout: "", stderr: "" });
    await eventually(async () => !(await xl("list")).stdout.includes("\nguest "), 10_000, "the guest to be gone");

    // pvkit down: dom0 shuts the rest down, the host exits, its run directory is cleared.
    const down = await pvkit("down");
    expect(down).toEqual({ code: 0, stdout: "", stderr: `Shutting down the pvkit host (pid ${hostPid}) in ${runDir}\n` });
    expect(gone(hostPid)).toBe(true);
    expect(existsSync(join(runDir, "pvkit.pid"))).toBe(false);
    expect(existsSync(join(runDir, "control.sock"))).toBe(false);
    const log = readFileSync(join(runDir, "pvkit.log"), "utf8");
    expect(log).toContain("dom0: started guest as domain 1");
    expect(log).toContain("[echo] > HELLO, CONSOLE");
    expect(log).toContain("[guest] guest: xvdb connected, 4 MiB");
    expect(log).toContain("[guest] guest: vbd 51728 removed");
    expect(log).toContain("[guest] guest: vif 0 removed");
    expect(log).toContain("pvkit: host stopped: dom0 powered off");

    // And now no host answers.
    expect(await xl("list")).toMatchObject({ code: 1, stderr: expect.stringMatching(/^no pvkit host is running: there is no control socket at /) });
    expect(await pvkit("down")).toMatchObject({ code: 1, stderr: `pvkit down: no pvkit host is running in ${runDir}\n` });
  }, 180_000);

  it("a host in the foreground shuts down cleanly on SIGTERM, as on Ctrl-C", async () => {
    const child = spawn(process.execPath, [PVKIT, "up", "--run-dir", "fg"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    try {
      const fgEnv = { ...env, PVKIT_RUN_DIR: join(dir, "fg") };
      await eventually(
        () =>
          new Promise<boolean>((resolve) => execFile(process.execPath, [XL, "list"], { cwd: dir, env: fgEnv }, (error) => resolve(error === null))),
        20_000,
        "the foreground host to answer",
      );
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(stdout).toMatch(/^pvkit: host up, pid \d+: 256 MiB, 2 pCPU\(s\), dom0 16 MiB; control socket .*\/fg\/control\.sock\n/);
      expect(stdout).toContain("pvkit: SIGTERM: shutting the host down\n");
      expect(stdout).toContain("pvkit: host stopped: dom0 powered off\n");
      expect(existsSync(join(dir, "fg", "pvkit.pid"))).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 60_000);
});
