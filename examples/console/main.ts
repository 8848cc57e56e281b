/**
 * `examples/console`: dom0 runs the console daemon (xenconsoled's role).
 *
 * - {@link runConsoleFlood}: a deterministic run where one domU floods its
 *   console, another breaks its console ring, and two more just say hello:
 *   every console is served, the flooder is throttled rather than starving
 *   the others, and the vandal loses its own console only.
 * - {@link startEchoHost}: a realtime host whose echo domU's console is on a
 *   Unix socket, for a host program to attach to, read and type.
 *
 * Run directly, it starts the echo host, attaches to the console socket as
 * `xl console` would, types two lines and `exit`, and prints what it saw.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bootHost, checkInvariants, type Engine, type Hypervisor, type StopReason } from "@pvkit/hypervisor";
import type { ConsoleExampleConfig } from "./dom0.js";
import { kernelUrl, type RunResult } from "../support.js";

/** The example's dom0 kernel. */
export const dom0Kernel = (): string => kernelUrl(fileURLToPath(new URL("./dom0.js", import.meta.url)));

/** The example's domU kernel. */
export const guestKernel = (): string => kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));

function boot(config: ConsoleExampleConfig, opts: { seed?: number; mode?: "deterministic" | "realtime" }) {
  return bootHost({
    frames: 8192,
    pcpus: 2,
    seed: opts.seed ?? 1,
    mode: opts.mode ?? "deterministic",
    dom0: { kernel: dom0Kernel(), pages: 1024, module: new TextEncoder().encode(JSON.stringify(config)) },
  });
}

/** Fails with the console if a guest crashed or resources leaked. */
function check(hv: Hypervisor, engine: Engine): void {
  const crashed = [...engine.guestErrors].map(([domid, e]) => `domain ${domid}: ${e instanceof Error ? e.stack : String(e)}`);
  if (crashed.length > 0) throw new Error(`guest kernels failed:\n${crashed.join("\n")}\n${hv.console.join("\n")}`);
  const broken = checkInvariants(hv);
  if (broken.length > 0) throw new Error(`invariants broken after the run:\n${broken.join("\n")}`);
}

/** Runs the flood example with `seed`: `lines` lines from the flooder, two hellos and a vandal. */
export async function runConsoleFlood(seed = 1, lines = 2000): Promise<RunResult> {
  const hello = kernelUrl("@pvkit/domu/hello");
  const { hv, engine } = boot(
    {
      domains: [
        { name: "flood", kernel: guestKernel(), pages: 256, cmdline: `role=flood lines=${lines}` },
        { name: "alice", kernel: hello, pages: 256, cmdline: "name=alice" },
        { name: "vandal", kernel: guestKernel(), pages: 256, cmdline: "role=vandal" },
        { name: "bob", kernel: hello, pages: 256, cmdline: "name=bob" },
      ],
    },
    { seed },
  );
  await engine.run();
  check(hv, engine);
  return { console: [...hv.console], trace: hv.trace.serialize(), ns: hv.now };
}

/** A running realtime host whose echo domU has its console on a socket. */
export interface EchoHost {
  /** The hypervisor. */
  readonly hv: Hypervisor;
  /** Its engine, running. */
  readonly engine: Engine;
  /** Settles when the engine stops: once the echo domain has gone, "idle". */
  readonly running: Promise<StopReason>;
  /** The echo domain's console socket, by name (`<socketDir>/echo`). */
  readonly socket: string;
  /** Checks the run once it has ended: no guest crashed, nothing leaked. */
  check(): void;
}

/** Boots a realtime host with one echo domU whose console is served under `socketDir`. */
export function startEchoHost(socketDir: string, maxNs = 120_000_000_000): EchoHost {
  const { hv, engine } = boot({ socketDir, domains: [{ name: "echo", kernel: guestKernel(), pages: 256, cmdline: "role=echo" }] }, { mode: "realtime" });
  const running = engine.run({ until: maxNs });
  return { hv, engine, running, socket: join(socketDir, "echo"), check: () => check(hv, engine) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-console-"));
  const host = startEchoHost(join(dir, "console"));
  console.log(`echo's console: ${host.socket} (try: socat - UNIX-CONNECT:${host.socket})`);
  // Attach as a host program would, once the socket is there.
  const socket = await (async () => {
    for (let i = 0; i < 200; i++) {
      const s = await new Promise<ReturnType<typeof createConnection> | undefined>((resolve) => {
        const c = createConnection(host.socket, () => resolve(c));
        c.once("error", () => resolve(undefined));
      });
      if (s !== undefined) return s;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("the console socket never appeared");
  })();
  let seen = "";
  const ended = new Promise((r) => socket.once("end", r));
  socket.on("data", (b: Buffer) => {
    seen += b.toString();
    process.stdout.write(b);
  });
  const waitFor = async (text: string) => {
    while (!seen.includes(text)) await new Promise((r) => setTimeout(r, 20));
  };
  await waitFor("ready");
  for (const line of ["hello, console", "typed from the host", "exit"]) {
    process.stdout.write(`(typing "${line}")\n`);
    socket.write(`${line}\n`);
    await waitFor(line === "exit" ? "bye" : `> ${line.toUpperCase()}`);
  }
  await ended;
  console.log(`(EOF; the engine stopped: ${await host.running})`);
  host.check();
  for (const line of host.hv.console) console.log(line);
  rmSync(dir, { recursive: true, force: true });
}
