/**
 * The `pvkit` host: one process holding the hypervisor, the engine in
 * realtime mode, and dom0, whose toolstack `xl` reaches over a Unix socket
 * in the run directory, as real `xl` reaches libxl in dom0.
 *
 * The run directory (`--run-dir`, else `$PVKIT_RUN_DIR`, else
 * `./.pvkit/run`) holds what host programs need:
 *
 * | path | what |
 * | --- | --- |
 * | `pvkit.pid` | the host's pid, while it runs |
 * | `pvkit.log` | the host's output, when started with `--detach` |
 * | `control.sock` | dom0's toolstack (the control protocol) |
 * | `xenstored/socket` | xenstored, for Xen's `xenstore-*` clients (`XENSTORED_PATH`) |
 * | `console/<domid>`, `console/<name>` | each domain's console |
 *
 * One host holds a run directory at a time: {@link startHost} refuses a
 * directory whose pid file names a live host, and clears a stale one.
 *
 * The host boots as Xen does ({@link bootHost}): the hypervisor builds dom0
 * from its kernel and a boot manifest with no domains, and dom0 serves the
 * sockets. The host stops when dom0 powers off, which it does when asked
 * (the control operation `host-shutdown`, or `poweroff` written to
 * `/local/domain/0/control/shutdown`) once its domains are gone.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createConnection, createServer, type Server } from "node:net";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as E from "fp-ts/lib/Either.js";
import { bootHost, toChromeTrace, type Engine, type Hypervisor } from "@pvkit/hypervisor";
import { XsClient, type XsTransport } from "@pvkit/kernel";
import { ControlClient, ControlError } from "./control-client.js";
import { DEFAULT_HOST_CONFIG, type HostConfig } from "./host-config.js";

const require = createRequire(import.meta.url);

/** The run directory when neither `--run-dir` nor `$PVKIT_RUN_DIR` names one (relative to the working directory). */
export const DEFAULT_RUN_DIR = ".pvkit/run";

/** The environment variable naming the run directory. */
export const RUN_DIR_ENV = "PVKIT_RUN_DIR";

/** Pages in a MiB. */
const MIB_PAGES = 256;

/** Longest path a Unix socket may have (`sun_path` less its NUL). */
export const MAX_SOCKET_PATH = 107;

/** Where a host keeps what host programs use. */
export interface HostPaths {
  /** The run directory itself (absolute). */
  readonly runDir: string;
  /** `pvkit.pid`. */
  readonly pidFile: string;
  /** `pvkit.log`. */
  readonly logFile: string;
  /** `control.sock`: dom0's toolstack. */
  readonly controlSocket: string;
  /** `xenstored/socket`. */
  readonly xenstoredSocket: string;
  /** `console/`: the consoles' sockets. */
  readonly consoleDir: string;
  /** `trace.sock`: the hypervisor's trace, served by the host process (`xl trace`). */
  readonly traceSocket: string;
  /** `host.json`: the host's configuration as it runs, every default applied (what `pvkit down` reads its patience from). */
  readonly configFile: string;
}

/** The run directory: `explicit` (`--run-dir`), else `$PVKIT_RUN_DIR`, else {@link DEFAULT_RUN_DIR}; absolute, from `cwd`. */
export function resolveRunDir(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const fromEnv = env[RUN_DIR_ENV];
  return resolve(cwd, explicit ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_RUN_DIR));
}

/** The paths of the run directory `runDir`. */
export function hostPaths(runDir: string): HostPaths {
  const dir = resolve(runDir);
  return {
    runDir: dir,
    pidFile: join(dir, "pvkit.pid"),
    logFile: join(dir, "pvkit.log"),
    controlSocket: join(dir, "control.sock"),
    xenstoredSocket: join(dir, "xenstored", "socket"),
    consoleDir: join(dir, "console"),
    traceSocket: join(dir, "trace.sock"),
    configFile: join(dir, "host.json"),
  };
}

/** Why a host could not start or be reached; `message` is ready to print. */
export class HostError extends Error {
  /** Creates an error. */
  constructor(message: string) {
    super(message);
    this.name = "HostError";
  }
}

/** Whether process `pid` exists and is not a zombie (one that has exited and awaits its parent). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

/** Whether process `pid` looks like a pvkit host (on Linux, by its command line; elsewhere any live process counts). */
function looksLikeHost(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("pvkit");
  } catch {
    return true;
  }
}

/** The pid in the run directory's pid file, if there is one that parses. */
export function readPidFile(paths: HostPaths): number | undefined {
  try {
    const pid = Number(readFileSync(paths.pidFile, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid of the live host holding the run directory, if one does. A pid
 * file naming a dead process is stale; so is one naming a live process that
 * is no pvkit host (its pid was reused) when no control socket is left.
 */
export function livePid(paths: HostPaths): number | undefined {
  const pid = readPidFile(paths);
  return pid !== undefined && processAlive(pid) && (looksLikeHost(pid) || existsSync(paths.controlSocket)) ? pid : undefined;
}

/** Removes what a host that is gone left in its run directory: pid file and sockets. The log stays. */
export function clearStale(paths: HostPaths): void {
  for (const p of [paths.pidFile, paths.controlSocket, paths.configFile]) rmSync(p, { force: true });
  for (const d of [dirname(paths.xenstoredSocket), paths.consoleDir]) rmSync(d, { recursive: true, force: true });
}

/** Refuses socket paths the kernel cannot bind (`sun_path` is 108 bytes). */
function checkSocketPaths(paths: HostPaths): void {
  // Console sockets are `<dir>/<domid>` and `<dir>/<name>`: leave room for a five-digit domid.
  for (const p of [paths.controlSocket, paths.xenstoredSocket, join(paths.consoleDir, "32767")]) {
    if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
      throw new HostError(`the run directory ${paths.runDir} is too deep: its socket ${p} is longer than the ${MAX_SOCKET_PATH} bytes a Unix socket path may have (use a shorter --run-dir)`);
    }
  }
}

/**
 * Takes the run directory for this process: creates it, refuses it if a
 * live host holds it, clears what a dead one left, and writes the pid file
 * (exclusively, so two hosts starting at once cannot both win).
 */
export function claimRunDir(paths: HostPaths, pid: number = process.pid): void {
  checkSocketPaths(paths);
  mkdirSync(paths.runDir, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    const holder = livePid(paths);
    if (holder !== undefined) throw new HostError(`a pvkit host (pid ${holder}) is already running in ${paths.runDir} (stop it with \`pvkit down\`)`);
    clearStale(paths);
    try {
      writeFileSync(paths.pidFile, `${pid}\n`, { flag: "wx" });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new HostError(`cannot write ${paths.pidFile}: ${(e as Error).message}`);
    }
  }
  throw new HostError(`another pvkit host is starting in ${paths.runDir}`);
}

/** The boot manifest dom0 gets: no domains (xl creates them), the host's bridges, where to serve its sockets, and how long to wait for guests to power off. */
export function hostManifest(paths: HostPaths, config: HostConfig): object {
  return {
    domains: [],
    bridges: config.bridges.map((b) => ({ ...b })),
    xenstored: { socket: paths.xenstoredSocket },
    console: { socketDir: paths.consoleDir },
    control: { socket: paths.controlSocket },
    shutdownTimeout: config.shutdownTimeout,
  };
}

/** The URL of dom0's kernel: the configured one (a path, URL or package specifier), else `@pvkit/dom0/kernel`. */
export function dom0KernelUrl(config: HostConfig): string {
  const k = config.dom0.kernel ?? "@pvkit/dom0/kernel";
  if (/^[a-z][a-z0-9+.-]*:/i.test(k) && !/^[a-z]:[\\/]/i.test(k)) return k;
  if (k.startsWith("/") || k.startsWith("./") || k.startsWith("../")) return pathToFileURL(resolve(k)).href;
  try {
    return pathToFileURL(require.resolve(k)).href;
  } catch {
    throw new HostError(`dom0 kernel ${k}: cannot find the module (is it built? run \`npm run build\`)`);
  }
}

/** How a host ended. */
export interface HostExit {
  /** The exit status for the process: 0 when dom0 powered off cleanly. */
  readonly code: number;
  /** What happened, for a person. */
  readonly reason: string;
}

/** A running host. */
export interface RunningHost {
  /** Its run directory. */
  readonly paths: HostPaths;
  /** The hypervisor. */
  readonly hv: Hypervisor;
  /** The engine, running. */
  readonly engine: Engine;
  /** Settles when the host has stopped and its run directory is cleared. */
  readonly exited: Promise<HostExit>;
  /**
   * Asks dom0 to shut the host down (`host-shutdown` on the control socket;
   * if that socket does not answer, `poweroff` through XenStore) and waits
   * for it; after `timeoutMs` (default: the config's `shutdownTimeout` for
   * the guests, plus {@link HOST_STOP_MARGIN_MS} for dom0) the engine is
   * stopped where it is. Calling it again while it waits stops the engine
   * at once.
   */
  shutdown(timeoutMs?: number): Promise<HostExit>;
}

/** Options of {@link startHost}. */
export interface HostOptions {
  /** The run directory (created). */
  readonly runDir: string;
  /** The machine and dom0. */
  readonly config: HostConfig;
  /** Where Xen's console goes, a line at a time (dom0's messages and what it relays); default: nowhere. */
  readonly output?: (line: string) => void;
  /** Keep the hypervisor's trace (default false: a long-running host would grow it without bound). */
  readonly trace?: boolean;
}

/** A minimal {@link XsTransport} over a Unix socket, for one request to xenstored. */
function connectXenstored(path: string): Promise<XsClient> {
  return new Promise((resolvePromise, reject) => {
    const socket = createConnection(path);
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      let onClose: ((reason?: Error) => void) | undefined;
      socket.on("error", () => socket.destroy());
      socket.on("close", () => onClose?.());
      const transport: XsTransport = {
        send: (bytes) => void socket.write(bytes),
        onData: (handler) => {
          socket.removeAllListeners("data");
          socket.on("data", (b: Buffer) => handler(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)));
        },
        close: () => socket.destroy(),
        onClose: (handler) => (onClose = handler),
      };
      resolvePromise(new XsClient(transport));
    });
  });
}

/**
 * Asks the host of `paths` to shut down: `host-shutdown` on its control
 * socket, else `poweroff` written to `/local/domain/0/control/shutdown`
 * through its xenstored socket (what dom0 watches). Resolves with the way
 * that was taken; rejects with a {@link HostError} if neither answered, or
 * with dom0's refusal.
 */
export async function requestHostShutdown(paths: HostPaths, timeoutMs = 5000): Promise<"control" | "xenstore"> {
  let controlProblem: string;
  try {
    const client = await ControlClient.connect(paths.controlSocket, { timeoutMs });
    try {
      await client.request("host-shutdown", {}, { timeoutMs });
      return "control";
    } catch (e) {
      // dom0 may close the connection on its way down before answering: the request got there.
      if (e instanceof ControlError && e.kind === "closed") return "control";
      if (e instanceof ControlError && e.kind === "refused") throw new HostError(`dom0 refused to shut the host down: ${e.message}`);
      throw e;
    } finally {
      client.close();
    }
  } catch (e) {
    if (e instanceof HostError) throw e;
    controlProblem = e instanceof Error ? e.message : String(e);
  }
  try {
    const xs = await connectXenstored(paths.xenstoredSocket);
    try {
      const written = await xs.write("/local/domain/0/control/shutdown", "poweroff")();
      if (E.isLeft(written)) throw new Error(written.left.message);
      return "xenstore";
    } finally {
      xs.close();
    }
  } catch (e) {
    throw new HostError(`cannot ask the host to shut down: ${controlProblem}; and through XenStore: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Starts a host in this process: claims the run directory, boots the
 * hypervisor and dom0 (realtime engine), and relays Xen's console to
 * `output`. Throws a {@link HostError} if the directory is held by a live
 * host, or the machine cannot hold dom0.
 */
export function startHost(options: HostOptions): RunningHost {
  const paths = hostPaths(options.runDir);
  const { config } = options;
  const output = options.output ?? (() => {});
  claimRunDir(paths);
  writeFileSync(paths.configFile, `${JSON.stringify(config, null, 2)}\n`);
  let hv: Hypervisor;
  let engine: Engine;
  try {
    const kernel = dom0KernelUrl(config);
    ({ hv, engine } = bootHost({
      frames: config.memory * MIB_PAGES,
      pcpus: config.pcpus,
      seed: config.seed,
      mode: "realtime",
      dom0: { kernel, pages: config.dom0.memory * MIB_PAGES, module: new TextEncoder().encode(JSON.stringify(hostManifest(paths, config))) },
    }));
  } catch (e) {
    rmSync(paths.pidFile, { force: true });
    throw e instanceof HostError ? e : new HostError(`cannot boot the host: ${e instanceof Error ? e.message : String(e)}`);
  }
  hv.trace.enabled = options.trace ?? false;
  // Without its trace socket the host runs on; xl trace then says it cannot reach it.
  const traceServer = serveTrace(hv, paths.traceSocket, options.trace ?? false, (e) => output(`pvkit: trace socket ${paths.traceSocket}: ${e.message}; xl trace is unavailable`));

  let shown = 0;
  const relay = () => {
    while (shown < hv.console.length) output(hv.console[shown++]!);
  };
  const relayTimer = setInterval(relay, 50);

  const exited: Promise<HostExit> = engine
    .run()
    .then(
      (stop): HostExit => {
        const dom0Error = engine.guestErrors.get(0);
        if (dom0Error !== undefined) return { code: 1, reason: `dom0 crashed: ${dom0Error instanceof Error ? dom0Error.message : String(dom0Error)}` };
        if (stop === "stopped") return { code: 1, reason: "the engine was stopped before dom0 powered off" };
        const d0 = hv.domains.get(0);
        if (d0 !== undefined && d0.state !== "shutdown" && !d0.dead) return { code: 1, reason: "the engine stopped with dom0 still running" };
        return { code: 0, reason: "dom0 powered off" };
      },
      (e: unknown): HostExit => ({ code: 1, reason: `the engine failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` }),
    )
    .then((exit) => {
      traceServer.close();
      rmSync(paths.traceSocket, { force: true });
      clearInterval(relayTimer);
      relay();
      for (const [domid, e] of engine.guestErrors) if (domid !== 0) output(`pvkit: domain ${domid} crashed: ${e instanceof Error ? e.message : String(e)}`);
      if (readPidFile(paths) === process.pid) clearStale(paths);
      return exit;
    });

  let asked: Promise<HostExit> | undefined;
  const shutdown = (timeoutMs = config.shutdownTimeout * 1000 + HOST_STOP_MARGIN_MS): Promise<HostExit> => {
    if (asked !== undefined) {
      engine.stop();
      return asked;
    }
    asked = (async () => {
      try {
        // dom0 answers host-shutdown once its guests are gone: as long as they may take.
        await requestHostShutdown(paths, timeoutMs);
      } catch (e) {
        output(`pvkit: ${e instanceof Error ? e.message : String(e)}; stopping the engine`);
        engine.stop();
      }
      const timer = setTimeout(() => {
        output(`pvkit: dom0 did not power off within ${timeoutMs / 1000} s; stopping the engine`);
        engine.stop();
      }, timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    })();
    return asked;
  };
  return { paths, hv, engine, exited, shutdown };
}

/** Time a stopping dom0 has, beyond its guests' `shutdownTimeout`, to tear down and power off. */
export const HOST_STOP_MARGIN_MS = 30_000;

/**
 * How long stopping the host of `paths` may take: its guests'
 * `shutdownTimeout` (from the run directory's `host.json`, else the
 * default) plus {@link HOST_STOP_MARGIN_MS}.
 */
export function hostStopPatienceMs(paths: HostPaths): number {
  let seconds = DEFAULT_HOST_CONFIG.shutdownTimeout;
  try {
    const running = JSON.parse(readFileSync(paths.configFile, "utf8")) as { shutdownTimeout?: unknown };
    if (typeof running.shutdownTimeout === "number" && running.shutdownTimeout >= 0) seconds = running.shutdownTimeout;
  } catch {
    // no file (a host from an older pvkit) or not JSON: the default
  }
  return seconds * 1000 + HOST_STOP_MARGIN_MS;
}

/** Longest trace window `xl trace` may ask for, in seconds. */
export const MAX_TRACE_SECONDS = 3600;

/**
 * Serves the hypervisor's trace on `path`, as `xentrace` reads Xen's trace
 * buffers straight from the hypervisor rather than through the toolstack.
 * A client sends one line `{"seconds": N}`; the host records for N seconds
 * (the host runs in realtime, so that is N seconds of virtual time too) and
 * answers one line: the window's records as Chrome trace JSON. One window at
 * a time; a bad request gets `{"error": "..."}`. Outside a window the trace
 * stays as the host was started (`keep`), so it cannot grow without bound.
 * A failure of the socket itself (it cannot listen) goes to `onError`.
 */
export function serveTrace(hv: Hypervisor, path: string, keep: boolean, onError: (e: Error) => void): Server {
  let recording = false;
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    let line = "";
    socket.on("data", function onData(chunk: Buffer) {
      line += chunk.toString();
      if (!line.includes("\n")) {
        if (line.length > 4096) socket.end(`${JSON.stringify({ error: "trace request too long" })}\n`);
        return;
      }
      // One request per connection: what follows its line is not read.
      socket.off("data", onData);
      let seconds: unknown;
      try {
        seconds = (JSON.parse(line.slice(0, line.indexOf("\n"))) as { seconds?: unknown }).seconds;
      } catch {
        seconds = undefined;
      }
      if (typeof seconds !== "number" || !(seconds > 0 && seconds <= MAX_TRACE_SECONDS)) {
        socket.end(`${JSON.stringify({ error: `trace request needs "seconds", a number from 0 to ${MAX_TRACE_SECONDS}` })}\n`);
        return;
      }
      if (recording) {
        socket.end(`${JSON.stringify({ error: "a trace is already being recorded" })}\n`);
        return;
      }
      recording = true;
      const from = hv.trace.records.length;
      hv.trace.enabled = true;
      setTimeout(() => {
        const records = hv.trace.records.slice(from);
        if (!keep) hv.trace.records.length = 0;
        hv.trace.enabled = keep;
        recording = false;
        if (!socket.destroyed) socket.end(`${JSON.stringify(toChromeTrace(records))}\n`);
      }, seconds * 1000);
    });
    socket.on("error", () => socket.destroy());
  });
  server.on("error", onError);
  server.listen(path);
  return server;
}

/** Waits until process `pid` has exited (polling); true if it did within `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
