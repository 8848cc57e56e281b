import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/driver-domain", () => {
  it("two domUs ping each other through netback in an unprivileged driver domain", async () => {
    const { runDriverDomain } = await import("../dist/driver-domain/main.js");
    const { console: lines, trace } = await runDriverDomain();
    expect(lines).toContain("[netdd] netdd: netback serving bridge xenbr0");
    for (const [me, peer] of [
      ["alice", "192\\.168\\.7\\.2"],
      ["bob", "192\\.168\\.7\\.1"],
    ] as const) {
      for (const seq of [1, 2, 3]) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[${me}\\] ${me}: 64 bytes from ${peer}: icmp_seq=${seq} ttl=64 time=\\d+\\.\\d{3} ms$`)));
      expect(lines).toContain(`[${me}] ${me}: 3 packets transmitted, 3 received, 0% packet loss`);
    }
    expect(lines).toContainEqual(expect.stringMatching(/^\[netdd\] netdd: every vif is gone; served 2 vifs; xenbr0: \d+ frames.*; 0 rings still mapped, 0 ports still bound$/));
    expect(lines).toContain("[alice] alice: eth0 closed; every page and grant given back");
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
    // The guests' ring and buffer pages (grant references past the reserved ones, which hold
    // their console and XenStore pages for dom0) were mapped and copied by the driver domain alone.
    const ops = trace
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; op?: string; domid?: number; granter?: number; ref?: number; status?: number })
      .filter((r) => r.kind === "grant" && (r.op === "map" || r.op === "copy") && (r.granter === 2 || r.granter === 3) && (r.ref ?? 0) >= 8);
    expect(ops.filter((r) => r.op === "map")).toHaveLength(4); // two rings per vif
    expect(ops.filter((r) => r.op === "copy").length).toBeGreaterThan(20);
    expect(new Set(ops.map((r) => r.domid))).toEqual(new Set([1]));
    expect(ops.every((r) => r.status === 0)).toBe(true);
  });

  it("when the driver domain closes its vifs and goes away, the guests see their link go down", async () => {
    const { runDriverDomain } = await import("../dist/driver-domain/main.js");
    const { console: lines } = await runDriverDomain({ backendCloses: true });
    expect(lines).toContainEqual(expect.stringMatching(/^\[netdd\] netdd: time is up; served 2 vifs.*; 0 rings still mapped, 0 ports still bound$/));
    expect(lines).toContain("[bob] bob: eth0 closed; every page and grant given back");
    expect(lines).toContainEqual(expect.stringMatching(/^\[alice\] alice: eth0 is down/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[bob\] bob: eth0 is down/));
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("is deterministic per seed", async () => {
    const { runDriverDomain } = await import("../dist/driver-domain/main.js");
    const [a, b] = [await runDriverDomain({ seed: 5 }), await runDriverDomain({ seed: 5 })];
    expect(a.trace).toBe(b.trace);
  });
});
