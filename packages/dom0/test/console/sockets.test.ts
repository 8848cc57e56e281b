/**
 * Host attach over real Unix sockets, with the daemon on fake guests: the
 * host line's handler runs a turn of the event loop after the socket
 * callback raised it, as dom0's vCPU would serve it later.
 */
import { existsSync, lstatSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { xencons_interface } from "@pvkit/abi";
import { ConsoleDaemon } from "@pvkit/dom0";
import { FakeEnv } from "./fake.js";

/** A host program attached to a console socket. */
interface Client {
  readonly socket: Socket;
  got: string;
  ended: boolean;
}

async function attach(path: string): Promise<Client> {
  const socket = createConnection(path);
  const c: Client = { socket, got: "", ended: false };
  socket.on("data", (b: Buffer) => (c.got += b.toString()));
  socket.on("end", () => (c.ended = true));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return c;
}

async function until(what: string, ready: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("console sockets", () => {
  let dir: string;
  let env: FakeEnv;
  let daemon: ConsoleDaemon;
  const clients: Client[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "pvkit-cons-"));
    env = new FakeEnv();
    daemon = new ConsoleDaemon(env, { socketDir: join(dir, "console") });
  });

  afterEach(() => {
    daemon.close();
    for (const c of clients.splice(0)) c.socket.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = async (path: string) => {
    const c = await attach(path);
    clients.push(c);
    return c;
  };

  it("serves <dir>/<domid>, linked from <dir>/<name>: history, then live output; typing reaches the guest", async () => {
    const g = env.guest(3);
    daemon.connect(3, "alice", 7);
    const path = join(dir, "console", "3");
    expect(daemon.console(3)?.socket).toBe(path);
    expect(lstatSync(join(dir, "console", "alice")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, "console", "alice"))).toBe("3");
    g.write("booted\nready> ");
    const c = await open(join(dir, "console", "alice"));
    await until("the history", () => c.got === "booted\nready> ");
    g.write("more output\r\n");
    await until("live output", () => c.got.endsWith("more output\r\n"));
    c.socket.write("ls -l\n");
    let typed = "";
    await until("the typed line in the guest's ring", () => (typed += g.read()) === "ls -l\n");
    // The host line is what woke the daemon: the socket callback did no ring work itself.
    expect(env.lines[0]!.raised).toBeGreaterThan(0);
  });

  it("gives every attached client the output, and EOF when the domain disconnects; the socket goes", async () => {
    const g = env.guest(1);
    daemon.connect(1, "bob", 7);
    const path = join(dir, "console", "1");
    const [a, b] = [await open(path), await open(path)];
    await until("both attached", () => env.lines[0]!.raised >= 2);
    await new Promise((r) => setImmediate(r));
    g.write("hello both\nbye");
    await until("output to both", () => a.got === "hello both\nbye" && b.got === "hello both\nbye");
    daemon.disconnect(1);
    await until("EOF on both", () => a.ended && b.ended);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(join(dir, "console", "bob"))).toBe(false);
  });

  it("passes typing larger than the ring in order, pausing the client until the guest has read", async () => {
    const g = env.guest(1);
    daemon.connect(1, "typist", 7);
    const c = await open(join(dir, "console", "typist"));
    const text = Array.from({ length: 3000 }, (_, i) => `line ${i}\n`).join(""); // ~30 KiB, 30 rings' worth
    c.socket.write(text);
    let got = "";
    await until("all the input", () => {
      got += g.read();
      return got.length >= text.length;
    }, 10_000);
    expect(got).toBe(text);
    expect(daemon.pendingInput(1)).toBe(0);
  });

  it("a lost console sends its history and EOF; a disconnected domain's socket refuses", async () => {
    const g = env.guest(1);
    daemon.connect(1, "vandal", 7);
    g.write("last words\n");
    const view = new DataView(g.page.buffer);
    xencons_interface.fields.out_prod.set(view, 0, 1_000_000);
    g.notify();
    expect(daemon.console(1)?.state).toBe("lost");
    const c = await open(join(dir, "console", "1"));
    await until("EOF", () => c.ended);
    expect(c.got).toBe("last words\n");
    daemon.disconnect(1);
    await expect(attach(join(dir, "console", "1"))).rejects.toThrow(/ENOENT|ECONNREFUSED/);
  });

  it("a socket directory that cannot be made is reported, and the console is served without a socket", () => {
    writeFileSync(join(dir, "file"), "");
    const notices: string[] = [];
    const d = new ConsoleDaemon(env, { socketDir: join(dir, "file", "console"), log: (m) => notices.push(m) });
    const g = env.guest(1);
    d.connect(1, "alice", 7);
    expect(d.failure?.message).toMatch(/ENOTDIR/);
    expect(notices).toEqual([expect.stringMatching(/^console socket: ENOTDIR/)]);
    expect(d.console(1)?.socket).toBeUndefined();
    g.write("still served\n");
    expect(d.history(1).map((l) => l.line)).toEqual(["still served"]);
    d.close();
  });
});
