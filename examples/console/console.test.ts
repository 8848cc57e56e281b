import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

/** The `[name +Tns] line` lines dom0 relayed, by domain name, in order. */
function relayed(lines: readonly string[]): Map<string, { t: number; line: string }[]> {
  const by = new Map<string, { t: number; line: string }[]>();
  for (const l of lines) {
    const m = /^\[(\S+) \+(\d+)ns\] (.*)$/.exec(l);
    if (m === null) continue;
    by.set(m[1]!, [...(by.get(m[1]!) ?? []), { t: Number(m[2]), line: m[3]! }]);
  }
  return by;
}

function expectNonDecreasing(ts: readonly number[]): void {
  for (let i = 1; i < ts.length; i++) expect(ts[i]!).toBeGreaterThanOrEqual(ts[i - 1]!);
}

describe.skipIf(skipUnbuilt)("examples/console", () => {
  it("serves every console: a flooder is throttled without starving the others, a vandal loses only its own", async () => {
    const { runConsoleFlood } = await import("../dist/console/main.js");
    const { console: lines, ns } = await runConsoleFlood(1, 2000);
    const by = relayed(lines);
    const flood = by.get("flood")!;
    expect(flood.map((l) => l.line)).toEqual(Array.from({ length: 2000 }, (_, i) => `flood ${String(i).padStart(6, "0")} ${"~".repeat(64)}`));
    // ~160 KB at 30 ring-fulls per 200 ms: the flooder ran into the limit...
    expect(flood.at(-1)!.t).toBeGreaterThan(200_000_000);
    // ...while the others were served at once.
    for (const name of ["alice", "bob"]) {
      expect(by.get(name)!.map((l) => l.line)[0]).toBe(`Hello from ${name}!`);
      expect(by.get(name)!.every((l) => l.t < 1_000_000)).toBe(true);
    }
    expect(by.get("vandal")!.map((l) => l.line)).toEqual(["vandal: breaking my console ring"]);
    expect(lines).toContainEqual(expect.stringMatching(/^dom0: console of vandal \(domain 3\) lost: console out ring: prod \d+ is 100000 bytes ahead/));
    for (const name of ["flood", "alice", "vandal", "bob"]) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^dom0: ${name} \\(domain \\d\\) shut down: poweroff$`)));
    for (const l of by.values()) {
      expectNonDecreasing(l.map((x) => x.t));
      expect(l.at(-1)!.t).toBeLessThan(ns + 1_000_000); // within the last slice
    }
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("is deterministic per seed", async () => {
    const { runConsoleFlood } = await import("../dist/console/main.js");
    const [a, b] = [await runConsoleFlood(4, 300), await runConsoleFlood(4, 300)];
    expect(a.trace).toBe(b.trace);
    expect(a.console).toEqual(b.console);
  });

  it("a host program attaches to a realtime guest's console socket, reads its greeting, types, and gets EOF", async () => {
    const { startEchoHost } = await import("../dist/console/main.js");
    const dir = mkdtempSync(join(tmpdir(), "pvkit-console-"));
    const host = startEchoHost(join(dir, "console"), 60_000_000_000);
    try {
      let socket: Socket | undefined;
      for (let i = 0; i < 200 && socket === undefined; i++) {
        socket = await new Promise<Socket | undefined>((resolve) => {
          const c = createConnection(host.socket, () => resolve(c));
          c.once("error", () => resolve(undefined));
        });
        if (socket === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      if (socket === undefined) throw new Error(`no console socket:\n${host.hv.console.join("\n")}`);
      let got = "";
      socket.on("data", (b: Buffer) => (got += b.toString()));
      const ended = new Promise<void>((resolve) => socket.once("end", resolve));
      const waitFor = async (text: string) => {
        for (let i = 0; i < 400 && !got.includes(text); i++) await new Promise((r) => setTimeout(r, 25));
        expect(got).toContain(text);
      };
      await waitFor('echo: ready; type a line ("exit" ends)\n');
      socket.write("hello from the host\n");
      await waitFor("> HELLO FROM THE HOST\n");
      socket.write("ex");
      socket.write("it\r\n"); // a line typed in two pieces, with a CR
      await waitFor("echo: bye\n");
      await ended;
      expect(got).toBe('echo: ready; type a line ("exit" ends)\n> HELLO FROM THE HOST\necho: bye\n');
      expect(await host.running).toBe("idle");
      host.check();
      const echo = relayed(host.hv.console).get("echo")!;
      expect(echo.map((l) => l.line)).toEqual(['echo: ready; type a line ("exit" ends)', "> HELLO FROM THE HOST", "echo: bye"]);
      expect(echo[0]!.t).toBeGreaterThan(0);
      expectNonDecreasing(echo.map((l) => l.t));
      expect(echo.at(-1)!.t).toBeLessThan(host.hv.now + 1_000_000); // virtual time, within the last slice
      expect(host.hv.console.at(-1)).toBe("dom0: every domain has shut down");
    } finally {
      host.engine.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
