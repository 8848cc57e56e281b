/**
 * The `pvkit` command: starts and stops hosts.
 *
 * ```
 * pvkit up [--run-dir DIR] [--config host.json] [--detach]
 * pvkit down [--run-dir DIR] [--timeout SECONDS]
 * ```
 *
 * `up` runs a host in the foreground, Xen's console on standard output,
 * until dom0 powers off; Ctrl-C (SIGINT) or SIGTERM asks dom0 to shut the
 * host down (a second one stops it where it is). With `--detach` it starts
 * the host in the background, its output in `<run-dir>/pvkit.log`, waits
 * until the control socket answers `list`, prints the host's pid and exits.
 *
 * `down` asks the host of the run directory to shut down (`host-shutdown`
 * on its control socket; SIGTERM if that socket does not answer) and waits
 * for its process to exit.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { ControlClient, ControlError } from "../control-client.js";
import { DEFAULT_HOST_CONFIG, parseHostConfig, type HostConfig } from "../host-config.js";
import { clearStale, HostError, hostPaths, hostStopPatienceMs, livePid, readPidFile, resolveRunDir, startHost, waitForExit, type HostPaths, type RunningHost } from "../host.js";
import { getopt, hasOption, optionValue, type OptionSpec } from "./args.js";
import { CliError, usageError, type CliIo } from "./io.js";

/** What `pvkit` needs beyond a command's world: how to start itself again (for `--detach`). */
export interface PvkitIo extends CliIo {
  /** The script to run for `pvkit` (the path of `bin/pvkit.js`). */
  readonly self: string;
}

/** How long `up --detach` waits for the control socket to answer, ms. */
export const START_TIMEOUT_MS = 30_000;

const USAGE = `Usage: pvkit <command> [options]

Commands:
  up [--run-dir DIR] [--config FILE] [--detach]
                 Start a host: the hypervisor, the engine (realtime) and dom0.
                 --detach runs it in the background (output in DIR/pvkit.log)
                 and prints its pid once its control socket answers.
  down [--run-dir DIR] [--timeout SECONDS]
                 Shut down the host of the run directory and wait for it to
                 exit (default: the host's shutdownTimeout plus 30 s). dom0
                 first asks each guest to power off and destroys those still
                 running after the host config's shutdownTimeout (default 30 s).
  help           Print this help.

The run directory is --run-dir, else $PVKIT_RUN_DIR, else ./.pvkit/run.
xl (the domains' command line) finds the host through the same directory.
`;

const UP: OptionSpec = { short: "R:c:d", long: { "run-dir": { short: "R", arg: true }, config: { short: "c", arg: true }, detach: { short: "d", arg: false } } };
const DOWN: OptionSpec = { short: "R:t:", long: { "run-dir": { short: "R", arg: true }, timeout: { short: "t", arg: true } } };

/** Reads and checks the host configuration file (every problem at once), or the defaults when there is none. */
export function loadHostConfig(file: string | undefined, cwd: string): HostConfig {
  if (file === undefined) return DEFAULT_HOST_CONFIG;
  const path = resolve(cwd, file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CliError(`pvkit up: cannot read ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  const parsed = parseHostConfig(text, file, resolve(path, ".."));
  if (E.isLeft(parsed)) throw new CliError(parsed.left.join("\n"));
  return parsed.right;
}

/** The last `lines` lines of a file, or nothing. */
function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

async function answersList(paths: HostPaths): Promise<boolean> {
  let client: ControlClient | undefined;
  try {
    client = await ControlClient.connect(paths.controlSocket, { timeoutMs: 1000 });
    await client.request("list", {}, { timeoutMs: 2000 });
    return true;
  } catch {
    return false;
  } finally {
    client?.close();
  }
}

/** `pvkit up --detach`: start the host in the background and wait until it answers. */
async function upDetached(io: PvkitIo, paths: HostPaths, configFile: string | undefined): Promise<number> {
  const holder = livePid(paths);
  if (holder !== undefined) throw new CliError(`pvkit up: a pvkit host (pid ${holder}) is already running in ${paths.runDir} (stop it with \`pvkit down\`)`);
  mkdirSync(paths.runDir, { recursive: true });
  const log = openSync(paths.logFile, "a");
  const child = spawn(process.execPath, [...process.execArgv, io.self, "up", "--run-dir", paths.runDir, ...(configFile === undefined ? [] : ["--config", resolve(io.cwd, configFile)])], {
    cwd: io.cwd,
    env: io.env,
    detached: true,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  let exited: number | null | undefined;
  child.on("exit", (code, signal) => (exited = code ?? (signal === null ? 1 : 128)));
  child.on("error", () => (exited = 1));
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      const last = tail(paths.logFile, 20);
      throw new CliError(`pvkit up: the host exited while starting (status ${exited})${last === "" ? "" : `; the end of ${paths.logFile}:\n${last}`}`);
    }
    if (await answersList(paths)) {
      io.stdout.write(`${child.pid}\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid !== undefined && exited === undefined) process.kill(child.pid, "SIGTERM");
  const last = tail(paths.logFile, 20);
  throw new CliError(
    `pvkit up: the host (pid ${child.pid}) started, but its control socket ${paths.controlSocket} did not answer \`list\` within ${START_TIMEOUT_MS / 1000} s; it has been asked to stop${last === "" ? "" : `. The end of ${paths.logFile}:\n${last}`}`,
  );
}

/** `pvkit up` in the foreground: run the host until dom0 powers off. */
async function upForeground(io: PvkitIo, paths: HostPaths, config: HostConfig): Promise<number> {
  let host: RunningHost;
  try {
    host = startHost({ runDir: paths.runDir, config, output: (line) => void io.stdout.write(`${line}\n`) });
  } catch (e) {
    if (e instanceof HostError) throw new CliError(`pvkit up: ${e.message}`);
    throw e;
  }
  io.stdout.write(`pvkit: host up, pid ${process.pid}: ${config.memory} MiB, ${config.pcpus} pCPU(s), dom0 ${config.dom0.memory} MiB; control socket ${paths.controlSocket}\n`);
  const onSignal = (signal: NodeJS.Signals) => {
    io.stdout.write(`pvkit: ${signal}: shutting the host down\n`);
    void host.shutdown();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const exit = await host.exited;
    io.stdout.write(`pvkit: host stopped: ${exit.reason}\n`);
    return exit.code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** `pvkit down`: shut the host down and wait for its process to go. */
async function down(io: PvkitIo, paths: HostPaths, timeoutMs: number): Promise<number> {
  const pid = livePid(paths);
  if (pid === undefined) {
    const stale = readPidFile(paths);
    if (stale !== undefined) clearStale(paths);
    throw new CliError(`pvkit down: no pvkit host is running in ${paths.runDir}${stale === undefined ? "" : ` (removed the stale pid file of process ${stale})`}`);
  }
  io.stderr.write(`Shutting down the pvkit host (pid ${pid}) in ${paths.runDir}\n`);
  const deadline = Date.now() + timeoutMs;
  let client: ControlClient | undefined;
  try {
    client = await ControlClient.connect(paths.controlSocket, { timeoutMs: 5000 });
    await client.request("host-shutdown", {}, { timeoutMs });
  } catch (e) {
    if (e instanceof ControlError && e.kind === "refused") throw new CliError(`pvkit down: dom0 refused: ${e.message}`);
    // dom0 has the request (it closed on its way down, or is still waiting for its guests): wait for the process.
    if (!(e instanceof ControlError && (e.kind === "closed" || e.kind === "timeout"))) {
      // No control socket to ask: the host shuts itself down on SIGTERM.
      io.stderr.write(`pvkit down: ${e instanceof Error ? e.message : String(e)}; sending SIGTERM to pid ${pid}\n`);
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // it has gone already
      }
    }
  } finally {
    client?.close();
  }
  if (!(await waitForExit(pid, Math.max(0, deadline - Date.now())))) throw new CliError(`pvkit down: the host (pid ${pid}) did not exit within ${timeoutMs / 1000} s`);
  return 0;
}

/**
 * Runs `pvkit` with `argv` (the arguments after `pvkit`). Resolves with the
 * exit status; what went wrong is on `io.stderr`.
 */
export async function pvkitMain(argv: readonly string[], io: PvkitIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "up": {
        const parsed = getopt(rest, UP);
        if (E.isLeft(parsed)) throw usageError(`pvkit up: ${parsed.left}`);
        if (parsed.right.operands.length > 0) throw usageError(`pvkit up: unexpected argument "${parsed.right.operands[0]}"`);
        const paths = hostPaths(resolveRunDir(optionValue(parsed.right, "R"), io.env, io.cwd));
        const configFile = optionValue(parsed.right, "c");
        const config = loadHostConfig(configFile, io.cwd);
        return hasOption(parsed.right, "d") ? await upDetached(io, paths, configFile) : await upForeground(io, paths, config);
      }
      case "down": {
        const parsed = getopt(rest, DOWN);
        if (E.isLeft(parsed)) throw usageError(`pvkit down: ${parsed.left}`);
        if (parsed.right.operands.length > 0) throw usageError(`pvkit down: unexpected argument "${parsed.right.operands[0]}"`);
        const t = optionValue(parsed.right, "t");
        if (t !== undefined && (!/^\d+$/.test(t) || Number(t) === 0)) throw usageError(`pvkit down: --timeout: "${t}" is not a whole number of seconds`);
        const paths = hostPaths(resolveRunDir(optionValue(parsed.right, "R"), io.env, io.cwd));
        return await down(io, paths, t === undefined ? hostStopPatienceMs(paths) : Number(t) * 1000);
      }
      case undefined:
        io.stderr.write(USAGE);
        return 2;
      case "help":
      case "-h":
      case "--help":
        io.stdout.write(USAGE);
        return 0;
      default:
        throw usageError(`pvkit: unknown command "${command}" (pvkit help lists them)`);
    }
  } catch (e) {
    if (e instanceof CliError) {
      io.stderr.write(`${e.message}\n`);
      return e.code;
    }
    io.stderr.write(`pvkit: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
