import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";
import type { BalloonHost } from "../dist/balloon/main.js";

/** The guest's `status` answer, parsed. */
async function status(host: BalloonHost): Promise<Record<string, string>> {
  return Object.fromEntries((await host.ask("status")).split(" ").map((kv) => kv.split("=") as [string, string]));
}

describe.skipIf(skipUnbuilt)("examples/balloon: the host writes memory/target, the guest's balloon follows", () => {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-balloon-"));
  let host: BalloonHost;
  let started = false;

  beforeAll(async () => {
    const { startBalloonHost } = await import("../dist/balloon/main.js");
    host = await startBalloonHost(dir, { memory: 4 });
    started = true;
  }, 60_000);

  afterAll(async () => {
    try {
      if (!started) return; // it never started: beforeAll has said why
      expect(await host.shutdown()).toBe("idle");
      host.check();
      expect(host.hv.console).toContain("dom0: balloon (domain 1) shut down: poweroff; destroyed");
      expect(host.hv.console.at(-1)).toBe("dom0: every domain has shut down");
    } finally {
      if (started) host.engine.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it("starts balanced at the size the toolstack published, with max_pages the boot size", async () => {
    expect(await host.xs.read("/local/domain/1/memory/target")()).toEqual(E.right("4096"));
    expect(host.totPages()).toBe(1024);
    expect(host.maxPages()).toBe(1024);
    expect(await status(host)).toMatchObject({ current: "4096", target: "4096", status: "balanced" });
  });

  it("gives pages back when the target drops, and tot_pages follows", async () => {
    await host.setTargetKiB(2048);
    await host.waitFor("tot_pages 512", () => host.totPages() === 512);
    expect(await status(host)).toMatchObject({ current: "2048", target: "2048", status: "balanced" });
  });

  it("never gives back pages in use: it gives what is free, waits, and finishes once they are released", async () => {
    expect(await host.ask("hold 400")).toBe("held 400 (400 in all)");
    await host.setTargetKiB(1024);
    let s: Record<string, string> = {};
    await host.waitFor("the balloon to run short", async () => (s = await status(host)).status === "retrying");
    expect(s).toMatchObject({ target: "1024", free: "0" });
    const short = Number(s.current) / 4;
    expect(short).toBeGreaterThan(400); // the 400 pages held kept it above the target
    expect(short).toBeLessThan(512); // but it gave back every page that was free
    expect(host.totPages()).toBe(short);
    expect(await host.ask("release")).toBe("released 400");
    await host.waitFor("tot_pages 256", () => host.totPages() === 256);
    expect(await status(host)).toMatchObject({ current: "1024", target: "1024", status: "balanced" });
  });

  it("grows back when the target rises, up to max_pages, and reports the refusal past it", async () => {
    await host.setTargetKiB(4096);
    await host.waitFor("tot_pages 1024", () => host.totPages() === 1024);
    expect(await status(host)).toMatchObject({ current: "4096", target: "4096", status: "balanced" });

    await host.setTargetKiB(8192);
    let s: Record<string, string> = {};
    await host.waitFor("the refusal", async () => (s = await status(host)).status === "limited");
    expect(s).toMatchObject({ current: "4096", target: "8192" });
    expect(host.totPages()).toBe(1024);
    await host.waitFor("the report", () => host.hv.console.some((l) => l.startsWith("[balloon] balloon: Xen refused")));
    expect(host.hv.console).toContain("[balloon] balloon: Xen refused more pages (XENMEM_populate_physmap: ENOMEM); holding at 4096 KiB of a 8192 KiB target");

    await host.setTargetKiB(3072);
    await host.waitFor("tot_pages 768", () => host.totPages() === 768);
    expect(await status(host)).toMatchObject({ current: "3072", target: "3072", status: "balanced" });
  });

  it("ignores a target that is not a number of KiB", async () => {
    await host.xs.write("/local/domain/1/memory/target", "lots")();
    await host.waitFor("the complaint", () => host.hv.console.includes('[balloon] balloon: ignoring memory/target "lots": not a number of KiB'));
    expect(await status(host)).toMatchObject({ current: "3072", target: "3072", status: "balanced" });
    expect(host.totPages()).toBe(768);
  });
});
