/**
 * `examples/balloon`: the host moves a domU's memory by writing its
 * `memory/target`, as `xl mem-set` does, and the guest's balloon follows.
 *
 * {@link startBalloonHost} boots a realtime host whose dom0 serves XenStore
 * on a Unix socket, with one 4 MiB domU running `guest.ts`, and connects to
 * the socket as a host program (acting as dom0, as the toolstack does).
 * Through it a caller writes targets, sends the guest commands, and watches
 * the domain's `tot_pages` in the hypervisor follow.
 *
 * Run directly, it shrinks the guest to 2 MiB, makes the guest hold pages
 * and asks for 1 MiB (the balloon gives back what is free and waits), lets
 * the guest release them, grows it back to 4 MiB, asks for 8 MiB (more than
 * `max_pages`: refused, reported) and shuts everything down.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as E from "fp-ts/lib/Either.js";
import { bootHost, checkInvariants, type Engine, type Hypervisor, type StopReason } from "@pvkit/hypervisor";
import type { XsClient } from "@pvkit/kernel";
import { kernelUrl } from "../support.js";

/**
 * `connectXenstoreSocket` from `@pvkit/kernel/xenstore-socket`, loaded by URL
 * as the examples load kernels: the tests' resolver maps `@pvkit/kernel` to
 * the package's index and knows none of its other entry points.
 */
async function socketConnector(): Promise<typeof import("@pvkit/kernel/xenstore-socket").connectXenstoreSocket> {
  const mod = (await import(kernelUrl("@pvkit/kernel/xenstore-socket"))) as typeof import("@pvkit/kernel/xenstore-socket");
  return mod.connectXenstoreSocket;
}

/** The guest kernel's URL. */
export const guestKernel = (): string => kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));

/** The guest's domid: the only domain the manifest builds. */
export const GUEST_DOMID = 1;

/** The guest's name in the manifest, and in dom0's console lines. */
export const GUEST_NAME = "balloon";

/** A running realtime host with the balloon guest, and a XenStore connection to drive it. */
export interface BalloonHost {
  /** The hypervisor. */
  readonly hv: Hypervisor;
  /** Its engine, running. */
  readonly engine: Engine;
  /** Settles when the engine stops: "idle" once dom0 has powered off. */
  readonly running: Promise<StopReason>;
  /** A connection to xenstored's socket, acting as dom0. */
  readonly xs: XsClient;
  /** The guest's `tot_pages`, as Xen counts it (what `xl list` shows). */
  totPages(): number;
  /** The guest's `max_pages`. */
  maxPages(): number;
  /** Writes the guest's `memory/target` (KiB), as `xl mem-set` does. */
  setTargetKiB(kib: number): Promise<void>;
  /** Sends the guest a command (`hold N`, `release`, `status`, `exit`) and returns its answer. */
  ask(command: string): Promise<string>;
  /** Polls until `ready()` holds, failing with `what` and the console after `ms`. */
  waitFor(what: string, ready: () => boolean | Promise<boolean>, ms?: number): Promise<void>;
  /** Shuts the guest down through `control/shutdown`, then dom0, and waits for the engine to stop. */
  shutdown(): Promise<StopReason>;
  /** Checks the run once it has ended: no guest crashed, nothing leaked. */
  check(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function must<A>(task: () => Promise<E.Either<{ readonly message: string }, A>>): Promise<A> {
  const r = await task();
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
}

/**
 * Boots the host with its XenStore socket under `dir`, connects, and waits
 * until the guest is up. `memory` is the guest's size in MiB (its
 * `max_pages` too: the toolstack sets `max_mem` to the boot size).
 */
export async function startBalloonHost(dir: string, opts: { memory?: number; maxNs?: number } = {}): Promise<BalloonHost> {
  const socket = join(dir, "xenstored", "socket");
  const manifest = { domains: [{ name: GUEST_NAME, kernel: guestKernel(), memory: opts.memory ?? 4 }], xenstored: { socket } };
  const { hv, engine } = bootHost({
    frames: 8192,
    pcpus: 2,
    mode: "realtime",
    dom0: { kernel: kernelUrl("@pvkit/dom0/kernel"), pages: 1024, module: new TextEncoder().encode(JSON.stringify(manifest)) },
  });
  const running = engine.run({ until: opts.maxNs ?? 120_000_000_000 });
  const home = `/local/domain/${GUEST_DOMID}`;

  const waitFor = async (what: string, ready: () => boolean | Promise<boolean>, ms = 10_000) => {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) if (await ready()) return;
    throw new Error(`timed out waiting for ${what}\n${hv.console.join("\n")}`);
  };

  const connectXenstoreSocket = await socketConnector();
  let xs: XsClient | undefined;
  // dom0's kernel module loads first, which a loaded machine can make slow.
  await waitFor("xenstored's socket", async () => (xs = await connectXenstoreSocket(socket).catch(() => undefined)) !== undefined, 45_000);
  const client = xs!;
  await waitFor("the guest", async () => E.isRight(await client.read(`${home}/data/ready`)()));

  let commands = 0;
  const ask = async (command: string) => {
    const id = String(++commands);
    await must(client.write(`${home}/data/command`, `${id} ${command}`));
    let reply = "";
    await waitFor(`the answer to "${command}"`, async () => {
      const r = await client.read(`${home}/data/reply`)();
      reply = E.isRight(r) ? r.right : "";
      return reply.startsWith(`${id} `);
    });
    return reply.slice(id.length + 1);
  };

  const domain = () => hv.domains.get(GUEST_DOMID);
  return {
    hv,
    engine,
    running,
    xs: client,
    totPages: () => domain()?.totPages ?? 0,
    maxPages: () => domain()?.maxPages ?? 0,
    setTargetKiB: (kib) => must(client.write(`${home}/memory/target`, String(kib))),
    ask,
    waitFor,
    async shutdown() {
      if (domain() !== undefined) {
        await must(client.write(`${home}/control/shutdown`, "poweroff"));
        await waitFor("the guest to go", () => domain() === undefined);
      }
      await must(client.write("/local/domain/0/control/shutdown", "poweroff"));
      const stopped = await running;
      client.close();
      return stopped;
    },
    check() {
      const crashed = [...engine.guestErrors].map(([domid, e]) => `domain ${domid}: ${e instanceof Error ? e.stack : String(e)}`);
      if (crashed.length > 0) throw new Error(`guest kernels failed:\n${crashed.join("\n")}\n${hv.console.join("\n")}`);
      const broken = checkInvariants(hv);
      if (broken.length > 0) throw new Error(`invariants broken after the run:\n${broken.join("\n")}`);
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-balloon-"));
  const host = await startBalloonHost(dir);
  const show = async (what: string) => console.log(`${what.padEnd(44)} tot_pages ${host.totPages()} (${host.totPages() * 4} KiB); guest: ${await host.ask("status")}`);
  try {
    await show("booted with 4 MiB (max_pages = boot size)");
    await host.setTargetKiB(2048);
    await host.waitFor("2 MiB", () => host.totPages() === 512);
    await show("memory/target 2048");
    console.log(`guest: ${await host.ask("hold 400")}`);
    await host.setTargetKiB(1024);
    await host.waitFor("the balloon to run short", async () => (await host.ask("status")).includes("status=retrying"));
    await show("memory/target 1024, 400 pages in use");
    console.log(`guest: ${await host.ask("release")}`);
    await host.waitFor("1 MiB", () => host.totPages() === 256);
    await show("after the guest released them");
    await host.setTargetKiB(4096);
    await host.waitFor("4 MiB", () => host.totPages() === 1024);
    await show("memory/target 4096");
    await host.setTargetKiB(8192);
    await host.waitFor("the refusal", async () => (await host.ask("status")).includes("status=limited"));
    await show("memory/target 8192 (above max_pages)");
    console.log(`(the engine stopped: ${await host.shutdown()})`);
    host.check();
    for (const line of host.hv.console) console.log(line);
  } finally {
    host.engine.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
