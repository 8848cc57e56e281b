/**
 * The console daemon over fake guests: plain pages, direct events, a clock
 * the test moves. No hypervisor.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { xencons_interface } from "@pvkit/abi";
import { CONSOLE_OUT_SIZE, ConsoleDaemon, type ConsoleListener, type ConsoleDaemonOptions } from "@pvkit/dom0";
import { FakeEnv } from "./fake.js";

type Line = [name: string, domid: number, line: string, tNs: number];

function setup(opts: Omit<ConsoleDaemonOptions, "sink"> = {}) {
  const env = new FakeEnv();
  const lines: Line[] = [];
  const notices: string[] = [];
  const daemon = new ConsoleDaemon(env, { log: (m) => notices.push(m), ...opts, sink: (...l) => lines.push(l) });
  return { env, daemon, lines, notices };
}

function recorder(): ConsoleListener & { got: string; ended: number; drainedCount: number } {
  const r = {
    got: "",
    ended: 0,
    drainedCount: 0,
    output: (b: Uint8Array) => void (r.got += new TextDecoder().decode(b)),
    end: () => void r.ended++,
    drained: () => void r.drainedCount++,
  };
  return r;
}

describe("ConsoleDaemon", () => {
  it("connects, takes what the guest wrote before, and passes lines with their virtual time", () => {
    const { env, daemon, lines } = setup();
    const g = env.guest(1);
    g.rings.tx.write(new TextEncoder().encode("early\n"));
    const info = daemon.connect(1, "alice", 7);
    expect(E.isRight(info) && info.right).toMatchObject({ domid: 1, name: "alice", state: "live" });
    expect(lines).toEqual([["alice", 1, "early", 1_000]]);
    expect(g.notified).toBe(1);
    env.advance(500);
    g.write("second li");
    env.advance(500);
    g.write("ne\nthird\n");
    expect(lines.slice(1)).toEqual([
      ["alice", 1, "second line", 1_500],
      ["alice", 1, "third", 2_000],
    ]);
    expect(daemon.history(1)).toEqual([
      { tNs: 1_000, line: "early" },
      { tNs: 1_500, line: "second line" },
      { tNs: 2_000, line: "third" },
    ]);
    expect(daemon.list().map((c) => c.domid)).toEqual([1]);
  });

  it("reports a failed connection and keeps nothing", () => {
    const { daemon } = setup();
    const r = daemon.connect(9, "ghost", 3);
    expect(E.isLeft(r) && r.left.name).toBe("ESRCH");
    expect(daemon.console(9)).toBeUndefined();
    expect(daemon.type(9, "x")).toBe(false);
    expect(daemon.history(9)).toEqual([]);
  });

  it("disconnect drains the ring, passes a last partial line, closes the channel and ends listeners", () => {
    const { env, daemon, lines } = setup();
    const g = env.guest(2);
    daemon.connect(2, "bob", 7);
    const r = recorder();
    daemon.attach(2, r);
    g.write("a\nunfinished");
    g.masked = true; // the last write's event never arrived
    g.rings.tx.write(new TextEncoder().encode(" business"));
    daemon.disconnect(2);
    expect(lines.map((l) => l[2])).toEqual(["a", "unfinished business"]);
    expect(r.got).toBe("a\nunfinished business");
    expect(r.ended).toBe(1);
    expect(g.closed).toBe(true);
    expect(daemon.console(2)).toBeUndefined();
    daemon.disconnect(2); // twice is harmless
  });

  it("types into the guest's in ring, queueing what does not fit until the guest reads and notifies", () => {
    const { env, daemon } = setup();
    const g = env.guest(1);
    daemon.connect(1, "alice", 7);
    const r = recorder();
    daemon.attach(1, r);
    const text = "0123456789".repeat(250); // 2500 bytes; the ring holds 1024
    expect(daemon.type(1, text)).toBe(true);
    expect(daemon.pendingInput(1)).toBe(2500 - 1024);
    let got = "";
    for (let i = 0; i < 5 && got.length < text.length; i++) got += g.read(); // each read notifies; the daemon flushes
    expect(got).toBe(text);
    expect(daemon.pendingInput(1)).toBe(0);
    expect(r.drainedCount).toBe(1);
  });

  it("attach replays the history and the line in progress, then passes live bytes as they came", () => {
    const { env, daemon } = setup();
    const g = env.guest(1);
    daemon.connect(1, "alice", 7);
    g.write("one\r\ntwo\nthr");
    const r = recorder();
    const a = daemon.attach(1, r)!;
    expect(new TextDecoder().decode(a.replay)).toBe("one\ntwo\nthr");
    expect(a.live).toBe(true);
    g.write("ee\r\n");
    expect(r.got).toBe("ee\r\n");
    a.detach();
    g.write("gone\n");
    expect(r.got).toBe("ee\r\n");
    expect(daemon.attach(5, recorder())).toBeUndefined();
  });

  it("keeps a bounded history", () => {
    const { env, daemon } = setup({ historyBytes: 100, rateLimit: false });
    const g = env.guest(1);
    daemon.connect(1, "alice", 7);
    for (let i = 0; i < 200; i++) g.write(`line ${String(i).padStart(4, "0")}\n`); // 10 bytes each
    expect(daemon.history(1).map((l) => l.line)).toEqual(Array.from({ length: 10 }, (_, i) => `line ${String(190 + i).padStart(4, "0")}`));
  });

  it("throttles a flooding guest past its allowance of events per period, while others are served", () => {
    const { env, daemon, lines } = setup({ rateLimit: { events: 5, periodNs: 1_000_000 } });
    const flood = env.guest(1);
    const quiet = env.guest(2);
    daemon.connect(1, "flood", 7);
    daemon.connect(2, "quiet", 8);
    const line = new TextEncoder().encode(`${"x".repeat(99)}\n`);
    let off = 0;
    // The flooder writes as fast as the ring lets it; the quiet one says something now and then.
    for (let round = 0; round < 50; round++) {
      for (let n; (n = flood.write(line.subarray(off))) > 0; ) off = (off + n) % line.byteLength;
      if (round % 10 === 0) quiet.write(`quiet ${round}\n`);
      env.advance(1_000);
    }
    // Only 5 events of the flooder were served in this first period; it is masked, its ring full.
    expect(flood.delivered).toBe(5);
    expect(flood.masked).toBe(true);
    expect(flood.rings.tx.free()).toBeLessThan(100);
    expect(lines.filter((l) => l[0] === "quiet").map((l) => l[2])).toEqual(["quiet 0", "quiet 10", "quiet 20", "quiet 30", "quiet 40"]);
    const before = lines.filter((l) => l[0] === "flood").length;
    expect(before).toBeLessThanOrEqual((5 * CONSOLE_OUT_SIZE) / 100 + 1);
    // The period ends: unmasked, the waiting output is taken.
    env.advance(1_000_000);
    expect(flood.masked).toBe(false);
    expect(lines.filter((l) => l[0] === "flood").length).toBeGreaterThan(before);
    expect(lines.filter((l) => l[0] === "flood").every((l) => l[2] === "x".repeat(99))).toBe(true);
  });

  it("a guest that corrupts its ring indexes loses its console, and only it", () => {
    const { env, daemon, lines, notices } = setup();
    const bad = env.guest(1);
    const good = env.guest(2);
    daemon.connect(1, "vandal", 7);
    daemon.connect(2, "good", 8);
    const r = recorder();
    daemon.attach(1, r);
    bad.write("partial");
    const view = new DataView(bad.page.buffer);
    const f = xencons_interface.fields;
    f.out_prod.set(view, 0, f.out_cons.get(view, 0) + 100_000);
    bad.notify();
    expect(daemon.console(1)?.state).toBe("lost");
    expect(notices).toEqual([expect.stringMatching(/^console of vandal \(domain 1\) lost: console out ring: prod \d+ is 100000 bytes ahead/)]);
    expect(lines).toEqual([["vandal", 1, "partial", 1_000]]);
    expect(r.ended).toBe(1);
    expect(bad.masked).toBe(true);
    expect(daemon.type(1, "hello")).toBe(false);
    // A late attach gets the history and no live stream.
    const late = daemon.attach(1, recorder())!;
    expect(late.live).toBe(false);
    expect(new TextDecoder().decode(late.replay)).toBe("partial\n");
    // The other guest is served as before.
    good.write("still here\n");
    expect(lines.at(-1)).toEqual(["good", 2, "still here", 1_000]);
    daemon.disconnect(1);
    expect(bad.closed).toBe(true);
    expect(r.ended).toBe(1);
  });

  it("a corrupt in ring found while typing loses the console too", () => {
    const { env, daemon } = setup();
    const g = env.guest(1);
    daemon.connect(1, "vandal", 7);
    const view = new DataView(g.page.buffer);
    xencons_interface.fields.in_prod.set(view, 0, 50_000);
    expect(daemon.type(1, "hi")).toBe(true);
    expect(daemon.console(1)?.state).toBe("lost");
  });

  it("close disconnects everything", () => {
    const { env, daemon } = setup();
    env.guest(1);
    env.guest(2);
    daemon.connect(1, "a", 7);
    daemon.connect(2, "b", 8);
    daemon.close();
    expect(daemon.list()).toEqual([]);
    expect([...env.guests.values()].every((g) => g.closed)).toBe(true);
  });
});
