import { describe, expect, it } from "vitest";
import { SHUTDOWN, XENMEM } from "@pvkit/abi";
import { bootHost, checkInvariants, type Hypervisor } from "@pvkit/hypervisor";
import {
  BALLOON_BATCH,
  Balloon,
  INVALID_MFN,
  KIB_PER_PAGE,
  balloonStep,
  kernelMain,
  kibToPages,
  nextBackoff,
  pagesToKib,
  parseTargetKiB,
  type Kernel,
} from "@pvkit/kernel";

/** Boots an inline dom0 kernel running `body` (no XenStore: the balloon is driven with setTarget), and returns the host after it powered off. */
async function run(body: (k: Kernel, hv: Hypervisor) => Promise<void>, opts: { pages?: number; maxPages?: number } = {}) {
  const host = bootHost({ frames: 4096, dom0: { kernel: kernelMain((k) => body(k, host.hv)), pages: opts.pages ?? 64, maxPages: opts.maxPages ?? 72 } });
  expect(await host.engine.run()).toBe("idle");
  expect([...host.engine.guestErrors.values()]).toEqual([]);
  expect(host.dom0.shutdownReason).toBe(SHUTDOWN.poweroff);
  expect(checkInvariants(host.hv)).toEqual([]);
  return host;
}

/** pfns of RAM below `nrPages` with no frame behind them. */
const holes = (k: Kernel) => Array.from({ length: k.memory.nrPages }, (_, pfn) => pfn).filter((pfn) => k.memory.mfnOf(pfn) === INVALID_MFN);

describe("balloon target arithmetic", () => {
  it("converts memory/target KiB to pages, rounding down as Linux shifts", () => {
    expect(KIB_PER_PAGE).toBe(4);
    expect(kibToPages(4096)).toBe(1024);
    expect(kibToPages(4099)).toBe(1024);
    expect(kibToPages(3)).toBe(0);
    expect(pagesToKib(1024)).toBe(4096);
    expect(kibToPages(pagesToKib(777))).toBe(777);
  });

  it.each([
    ["2048", 2048],
    [" 8192\n", 8192],
    ["0", 0],
    ["", undefined],
    ["-4", undefined],
    ["1.5", undefined],
    ["0x10", undefined],
    ["4096k", undefined],
    ["99999999999999999999", undefined],
  ])("parses memory/target %j as %s KiB", (value, kib) => {
    expect(parseTargetKiB(value)).toBe(kib);
  });

  it("steps toward the target in batches", () => {
    expect(balloonStep(1024, 1024)).toEqual({ kind: "none" });
    expect(balloonStep(1024, 1000)).toEqual({ kind: "increase", pages: 24 });
    expect(balloonStep(2048, 1024)).toEqual({ kind: "increase", pages: BALLOON_BATCH });
    expect(balloonStep(256, 1024)).toEqual({ kind: "decrease", pages: BALLOON_BATCH });
    expect(balloonStep(1000, 1024)).toEqual({ kind: "decrease", pages: 24 });
    expect(balloonStep(0, 10, 4)).toEqual({ kind: "decrease", pages: 4 });
  });

  it("backs off by doubling up to the cap", () => {
    const delays = [1e9];
    while (delays.length < 8) delays.push(nextBackoff(delays.at(-1)!, 32e9));
    expect(delays).toEqual([1e9, 2e9, 4e9, 8e9, 16e9, 32e9, 32e9, 32e9]);
  });
});

describe("the balloon", () => {
  it("gives free pages back, re-populates the same pfns, and stops at max_pages with a report", async () => {
    const reports: string[] = [];
    const seen: Record<string, unknown> = {};
    await run(async (k, hv) => {
      const dom = hv.domains.get(0)!;
      const b = new Balloon(k, { report: (l) => reports.push(l) });
      const free0 = k.memory.freePages;
      const tot0 = dom.totPages;
      seen.start = [b.currentKiB, b.targetKiB, await b.settled()];

      b.setTargetKiB(pagesToKib(48));
      seen.shrunk = [await b.settled(), b.currentPages, dom.totPages - tot0, k.memory.freePages - free0, b.balloonedPages];
      const given = holes(k);
      seen.holes = given.length;

      b.setTarget(64);
      seen.regrown = [await b.settled(), b.currentPages, dom.totPages - tot0, k.memory.freePages - free0, b.balloonedPages, holes(k)];
      // The pages came back usable, at the pfns given back.
      const pfn = given[0]!;
      expect(k.memory.mfnOf(pfn)).toBe(dom.pfnToMfn(pfn));

      b.setTarget(80);
      seen.limited = [await b.settled(), b.currentPages, dom.totPages, b.lastError];
      b.setTarget(70);
      seen.after = [await b.settled(), b.currentPages, dom.totPages, b.lastError];
    });
    expect(seen.start).toEqual([256, 256, "balanced"]);
    expect(seen.shrunk).toEqual(["balanced", 48, -16, -16, 16]);
    expect(seen.holes).toBe(16);
    expect(seen.regrown).toEqual(["balanced", 64, 0, 0, 0, []]);
    expect(seen.limited).toEqual(["limited", 72, 72, "Xen gave 8 of 16 pages asked for"]);
    expect(seen.after).toEqual(["balanced", 70, 70, undefined]);
    expect(reports).toEqual(["balloon: Xen gave 8 of 16 pages asked for; holding at 288 KiB of a 320 KiB target"]);
  });

  it("moves in batches of at most 256 pages per hypercall", async () => {
    const host = await run(
      async (k, hv) => {
        const b = new Balloon(k);
        b.setTarget(100);
        expect(await b.settled()).toBe("balanced");
        expect(hv.domains.get(0)!.totPages).toBe(100);
        b.setTarget(1024);
        expect(await b.settled()).toBe("balanced");
        expect(hv.domains.get(0)!.totPages).toBe(1024);
      },
      { pages: 1024, maxPages: 1024 },
    );
    const memops = (cmd: number) => host.hv.trace.records.flatMap((r) => (r.kind === "hypercall" && r.op === "memory_op" && r.args[0] === cmd ? [r.result] : []));
    expect(memops(XENMEM.decrease_reservation)).toEqual([256, 256, 256, 156]);
    expect(memops(XENMEM.populate_physmap)).toEqual([256, 256, 256, 156]);
  });

  it("never takes pages in use: it gives back what is free and finishes when kicked after pages are freed", async () => {
    const seen: Record<string, unknown> = {};
    await run(async (k, hv) => {
      const dom = hv.domains.get(0)!;
      const b = new Balloon(k, { report: () => undefined });
      const held: number[] = [];
      while (k.memory.freePages > 5) held.push(k.memory.allocPage()!);
      b.setTarget(44);
      seen.short = [await b.settled(), b.currentPages, dom.totPages, k.memory.freePages, b.lastError];
      // Nothing in use went: the argument stack and every page held still have their frames.
      const inUse = [k.memory.firstFreePfn, k.memory.firstFreePfn + 1, k.memory.firstFreePfn + 2, k.memory.firstFreePfn + 3, ...held];
      seen.inUseBacked = inUse.every((pfn) => k.memory.mfnOf(pfn) !== INVALID_MFN && dom.pfnToMfn(pfn) === k.memory.mfnOf(pfn));
      for (const pfn of held) k.memory.freePage(pfn);
      b.kick();
      seen.done = [await b.settled(), b.currentPages, dom.totPages];
    });
    expect(seen.short).toEqual(["retrying", 59, 59, 0, "15 more pages are in use"]);
    expect(seen.inUseBacked).toBe(true);
    expect(seen.done).toEqual(["balanced", 44, 44]);
  });

  it("retries after a back-off, and gives up after maxRetries so that no timer stays armed", async () => {
    const reports: string[] = [];
    const seen: Record<string, unknown> = {};
    await run(async (k) => {
      const b = new Balloon(k, { maxRetries: 3, report: (l) => reports.push(l) });
      const held: number[] = [];
      while (k.memory.freePages > 0) held.push(k.memory.allocPage()!);
      const t0 = k.clock.now();
      b.setTarget(60);
      seen.first = [await b.settled(), b.currentPages, b.retryCount];
      k.memory.freePage(held.pop()!);
      k.memory.freePage(held.pop()!);
      await k.sleep(500_000_000);
      seen.beforeRetry = b.currentPages;
      await k.sleep(1_000_000_000); // the first retry is due 1 s after the first try
      seen.afterRetry = [b.status, b.currentPages, b.retryCount];
      await k.sleep(10_000_000_000); // retries at +3 s and +7 s find nothing free
      seen.end = [b.status, b.currentPages, b.retryCount, k.clock.now() - t0 > 7_000_000_000];
    });
    expect(seen.first).toEqual(["retrying", 64, 1]);
    expect(seen.beforeRetry).toBe(64);
    expect(seen.afterRetry).toEqual(["retrying", 62, 2]);
    expect(seen.end).toEqual(["stalled", 62, 0, true]);
    expect(reports).toEqual(["balloon: giving up after 3 retries (no free pages to give back); holding at 248 KiB of a 240 KiB target"]);
  });

  it("refuses a target that is not a number of pages", async () => {
    await run(async (k) => {
      const b = new Balloon(k);
      expect(() => b.setTarget(-1)).toThrow(RangeError);
      expect(() => b.setTarget(1.5)).toThrow(RangeError);
      expect(b.targetPages).toBe(64);
    });
  });
});
