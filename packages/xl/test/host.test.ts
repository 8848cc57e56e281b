/**
 * The run directory and the `pvkit` command's refusals, in-process: where
 * the run directory is, one live host per directory, stale pid files
 * cleared, socket paths the kernel cannot bind refused, and `pvkit up` /
 * `down` errors that say what to do. (Hosts actually running are the
 * end-to-end test's, in `test/e2e`.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import * as E from "fp-ts/lib/Either.js";
import { afterAll, describe, expect, it } from "vitest";
import { parseManifest } from "@pvkit/dom0";
import { Hypervisor } from "@pvkit/hypervisor";
import { claimRunDir, DEFAULT_RUN_DIR, hostManifest, hostPaths, hostStopPatienceMs, HOST_STOP_MARGIN_MS, HostError, livePid, pvkitMain, resolveRunDir, serveTrace, DEFAULT_HOST_CONFIG, type PvkitIo } from "@pvkit/xl";

const dir = mkdtempSync(join(tmpdir(), "pvkit-host-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pid that no process has any more. */
const deadPid = (): number => spawnSync("true").pid!;

async function pvkit(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  const io: PvkitIo = {
    stdout: { write: (c: string | Uint8Array) => ((stdout += String(c)), true) },
    stderr: { write: (c: string | Uint8Array) => ((stderr += String(c)), true) },
    stdin: new PassThrough(),
    env,
    cwd: dir,
    self: "/nonexistent/pvkit.js",
  };
  const code = await pvkitMain(argv, io);
  return { code, stdout, stderr };
}

describe("the run directory", () => {
  it("is --run-dir, else $PVKIT_RUN_DIR, else ./.pvkit/run, made absolute", () => {
    expect(resolveRunDir("r", { PVKIT_RUN_DIR: "/env" }, "/cwd")).toBe("/cwd/r");
    expect(resolveRunDir(undefined, { PVKIT_RUN_DIR: "/env" }, "/cwd")).toBe("/env");
    expect(resolveRunDir(undefined, { PVKIT_RUN_DIR: "" }, "/cwd")).toBe(`/cwd/${DEFAULT_RUN_DIR}`);
    expect(resolveRunDir(undefined, {}, "/cwd")).toBe("/cwd/.pvkit/run");
  });

  it("holds the sockets dom0 serves, which the boot manifest names", () => {
    const paths = hostPaths("/run/pv");
    expect(paths).toEqual({
      runDir: "/run/pv",
      pidFile: "/run/pv/pvkit.pid",
      logFile: "/run/pv/pvkit.log",
      controlSocket: "/run/pv/control.sock",
      xenstoredSocket: "/run/pv/xenstored/socket",
      consoleDir: "/run/pv/console",
      traceSocket: "/run/pv/trace.sock",
      configFile: "/run/pv/host.json",
    });
    expect(hostManifest(paths, DEFAULT_HOST_CONFIG)).toEqual({
      domains: [],
      bridges: [{ name: "xenbr0" }],
      xenstored: { socket: "/run/pv/xenstored/socket" },
      console: { socketDir: "/run/pv/console" },
      control: { socket: "/run/pv/control.sock" },
      shutdownTimeout: 30,
    });
    // dom0 reads it as a boot manifest.
    expect(E.isRight(parseManifest(new TextEncoder().encode(JSON.stringify(hostManifest(paths, DEFAULT_HOST_CONFIG)))))).toBe(true);
  });

  it("tells pvkit down how long the host may take to stop: its guests' shutdownTimeout, plus dom0's margin", () => {
    const paths = hostPaths(join(dir, "patience"));
    mkdirSync(paths.runDir, { recursive: true });
    expect(hostStopPatienceMs(paths)).toBe(DEFAULT_HOST_CONFIG.shutdownTimeout * 1000 + HOST_STOP_MARGIN_MS);
    writeFileSync(paths.configFile, JSON.stringify({ ...DEFAULT_HOST_CONFIG, shutdownTimeout: 600 }));
    expect(hostStopPatienceMs(paths)).toBe(600_000 + HOST_STOP_MARGIN_MS);
    writeFileSync(paths.configFile, "not json");
    expect(hostStopPatienceMs(paths)).toBe(DEFAULT_HOST_CONFIG.shutdownTimeout * 1000 + HOST_STOP_MARGIN_MS);
  });

  it("is claimed with a pid file; a stale one (its process gone) is cleared with the sockets it left", () => {
    const paths = hostPaths(join(dir, "stale"));
    mkdirSync(join(paths.runDir, "xenstored"), { recursive: true });
    writeFileSync(paths.pidFile, `${deadPid()}\n`);
    writeFileSync(paths.controlSocket, "");
    writeFileSync(paths.xenstoredSocket, "");
    expect(livePid(paths)).toBeUndefined();
    claimRunDir(paths, 4242);
    expect(readFileSync(paths.pidFile, "utf8")).toBe("4242\n");
    expect([existsSync(paths.controlSocket), existsSync(paths.xenstoredSocket)]).toEqual([false, false]);
  });

  it("is refused while a live host holds it", () => {
    const paths = hostPaths(join(dir, "live"));
    mkdirSync(paths.runDir, { recursive: true });
    writeFileSync(paths.pidFile, `${process.pid}\n`);
    writeFileSync(paths.controlSocket, "");
    expect(livePid(paths)).toBe(process.pid);
    expect(() => claimRunDir(paths, 4242)).toThrow(new HostError(`a pvkit host (pid ${process.pid}) is already running in ${paths.runDir} (stop it with \`pvkit down\`)`));
  });

  it("is refused when its sockets' paths are too long for a Unix socket", () => {
    const paths = hostPaths(join(dir, "x".repeat(100)));
    expect(() => claimRunDir(paths, 4242)).toThrow(/is too deep: its socket .*control\.sock is longer than the 107 bytes a Unix socket path may have/);
  });
});

describe("pvkit", () => {
  it("up refuses a bad host config, naming the key, before starting anything", async () => {
    writeFileSync(join(dir, "host.json"), JSON.stringify({ memory: "lots", dom0: { memory: 0 } }));
    const r = await pvkit(["up", "--run-dir", "cfg", "--config", "host.json"]);
    expect(r).toEqual({ code: 1, stdout: "", stderr: 'host.json: memory: expected a positive integer (MiB), at most 16384, got "lots"\nhost.json: dom0.memory: expected a positive integer (MiB), got 0\n' });
    expect(existsSync(join(dir, "cfg"))).toBe(false);
  });

  it("up refuses a run directory a live host holds", async () => {
    for (const detach of [[], ["--detach"]]) {
      const r = await pvkit(["up", "--run-dir", "live", ...detach]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`pvkit up: a pvkit host (pid ${process.pid}) is already running in ${join(dir, "live")} (stop it with \`pvkit down\`)\n`);
    }
  });

  it("down says when no host is running, and clears a stale pid file", async () => {
    expect(await pvkit(["down"], { PVKIT_RUN_DIR: join(dir, "none") })).toEqual({ code: 1, stdout: "", stderr: `pvkit down: no pvkit host is running in ${join(dir, "none")}\n` });
    const paths = hostPaths(join(dir, "gone"));
    mkdirSync(paths.runDir, { recursive: true });
    const pid = deadPid();
    writeFileSync(paths.pidFile, `${pid}\n`);
    expect((await pvkit(["down", "--run-dir", "gone"])).stderr).toBe(`pvkit down: no pvkit host is running in ${paths.runDir} (removed the stale pid file of process ${pid})\n`);
    expect(existsSync(paths.pidFile)).toBe(false);
  });

  it.each<[string[], number, string]>([
    [["frobnicate"], 2, 'pvkit: unknown command "frobnicate" (pvkit help lists them)\n'],
    [["up", "--detatch"], 2, "pvkit up: option `--detatch' not supported.\n"],
    [["up", "extra"], 2, 'pvkit up: unexpected argument "extra"\n'],
    [["down", "--timeout", "soon"], 2, 'pvkit down: --timeout: "soon" is not a whole number of seconds\n'],
    [["up", "--config", "nope.json"], 1, "pvkit up: cannot read nope.json: no such file\n"],
  ])("%j exits %i: %j", async (argv, code, stderr) => {
    expect(await pvkit(argv)).toEqual({ code, stdout: "", stderr });
  });

  it("help prints the usage", async () => {
    expect((await pvkit(["help"])).stdout).toMatch(/^Usage: pvkit <command> \[options\]\n/);
    expect((await pvkit([])).code).toBe(2);
  });
});

describe("the trace socket", () => {
  /** Sends `text` on a connection to `path` (then `later`, 30 ms on) and collects what comes back until the host closes it. */
  const ask = (path: string, text: string, later?: string) =>
    new Promise<string>((resolve, reject) => {
      let got = "";
      const socket = connect(path, () => {
        socket.write(text);
        if (later !== undefined) setTimeout(() => socket.writable && socket.write(later), 30);
      });
      socket.on("data", (d) => (got += d.toString()));
      socket.on("end", () => resolve(got));
      socket.on("error", reject);
    });

  it("answers a window of the trace as Chrome trace JSON, one request per connection; a bad request gets an error naming it", async () => {
    const hv = new Hypervisor({ frames: 256 });
    const path = join(dir, "trace.sock");
    const server = serveTrace(hv, path, false, (e) => {
      throw e;
    });
    try {
      await new Promise((r) => server.once("listening", r));
      // A second line, sent while the window records, is not read: it would otherwise be refused as a second recording.
      const window = ask(path, '{"seconds": 0.2}\n', '{"seconds": 1}\n');
      await new Promise((r) => setTimeout(r, 50));
      hv.log("inside the window");
      const answer = JSON.parse(await window) as { traceEvents: { cat?: string; args?: { text?: string } }[] };
      expect(answer.traceEvents.some((e) => e.args?.text?.includes("inside the window"))).toBe(true);
      // Outside a window nothing is kept (the host was started without --trace).
      hv.log("after the window");
      expect(hv.trace.records).toEqual([]);
      expect(JSON.parse(await ask(path, '{"seconds": 0}\n'))).toEqual({ error: 'trace request needs "seconds", a number from 0 to 3600' });
      expect(JSON.parse(await ask(path, "x".repeat(5000)))).toEqual({ error: "trace request too long" });
    } finally {
      server.close();
    }
  });

  it("reports a socket it cannot listen on to onError instead of crashing the host", async () => {
    const failed = await new Promise<Error>((resolve) => serveTrace(new Hypervisor({ frames: 256 }), join(dir, "no", "such", "dir", "trace.sock"), false, resolve));
    expect(failed.message).toMatch(/^listen E[A-Z]+: .*no\/such\/dir\/trace\.sock$/);
  });
});
