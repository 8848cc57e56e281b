import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, SHUTDOWN } from "@pvkit/abi";
import { bootHost, checkInvariants, type Hypervisor } from "@pvkit/hypervisor";
import { INVALID_MFN, kernelMain, orThrow, type Kernel } from "@pvkit/kernel";

/** Boots an inline dom0 kernel running `body`, and returns the host after it powered off. */
async function run(body: (k: Kernel, hv: Hypervisor) => Promise<void>, opts: { pages?: number; maxPages?: number; vcpus?: number } = {}) {
  const host = bootHost({ frames: 2048, dom0: { kernel: kernelMain((k) => body(k, host.hv)), pages: opts.pages ?? 64, maxPages: opts.maxPages ?? 72, vcpus: opts.vcpus ?? 1 } });
  expect(await host.engine.run()).toBe("idle");
  expect([...host.engine.guestErrors.values()]).toEqual([]);
  expect(host.dom0.shutdownReason).toBe(SHUTDOWN.poweroff);
  expect(checkInvariants(host.hv)).toEqual([]);
  return host;
}

describe("the kernel's reservation", () => {
  it("grows with populate_physmap past its RAM, up to max_pages, and the new pages are usable", async () => {
    let grown: number[] = [];
    let partial: number[] = [];
    let refused = "";
    let wrote = "";
    const { dom0 } = await run(async (k, hv) => {
      grown = orThrow(k.increaseReservation(4));
      const pfn = k.memory.allocPage()!;
      k.memory.memory.write(pfn * PAGE_SIZE, new TextEncoder().encode("new page"));
      wrote = new TextDecoder().decode(k.memory.memory.read(pfn * PAGE_SIZE, 8));
      expect(k.memory.mfnOf(grown[0]!)).toBe(hv.domains.get(0)!.pfnToMfn(grown[0]!));
      partial = orThrow(k.increaseReservation(10)); // only 4 more fit under max_pages 72
      const none = k.increaseReservation(1);
      refused = E.isLeft(none) ? none.left.name : "granted";
    });
    expect(grown).toEqual([64, 65, 66, 67]);
    expect(wrote).toBe("new page");
    expect(partial).toEqual([68, 69, 70, 71]);
    expect(refused).toBe("ENOMEM");
    expect(dom0.maxPages).toBe(72);
  });

  it("gives free pages back with decrease_reservation, and refuses pages in use", async () => {
    let before = 0;
    let after = 0;
    let inUse = "";
    let mfnAfter = 0;
    let given: number | undefined;
    await run(async (k, hv) => {
      const pfns = orThrow(k.increaseReservation(3));
      before = hv.domains.get(0)!.totPages;
      given = orThrow(k.decreaseReservation(pfns.slice(0, 2)));
      after = hv.domains.get(0)!.totPages;
      mfnAfter = k.memory.mfnOf(pfns[0]!);
      const busy = k.memory.allocPage()!;
      const r = k.decreaseReservation([busy]);
      inUse = E.isLeft(r) ? r.left.message : "taken";
    });
    expect(given).toBe(2);
    expect(before - after).toBe(2);
    expect(mfnAfter).toBe(INVALID_MFN);
    expect(inUse).toMatch(/in use/);
  });

  it("reports Xen's version, brings vCPUs up and down, yields and polls with a timeout", async () => {
    const seen: unknown[] = [];
    await run(
      async (k) => {
        seen.push(k.xenVersion());
        seen.push(orThrow(k.vcpuIsUp(1)));
        orThrow(k.vcpu(1, true));
        seen.push(orThrow(k.vcpuIsUp(1)));
        orThrow(k.vcpu(1, false));
        const t0 = k.clock.now();
        await k.yield();
        const port = orThrow(k.events.bindIpi(0));
        k.events.mask(port); // a masked, idle port: only the timeout can end the poll
        seen.push(E.isRight(await k.poll([port], 2_000_000)));
        seen.push(k.clock.now() - t0 >= 2_000_000);
        const bad = await k.poll([9999], 1);
        seen.push(E.isLeft(bad) ? bad.left.name : "ok");
      },
      { vcpus: 2 },
    );
    expect(seen).toEqual([{ major: 4, minor: 17 }, false, true, true, true, "EINVAL"]);
  });
});
