import { afterEach, describe, expect, it } from "vitest";
import { HYPERVISOR, RUNSTATE, SCHEDOP, SHUTDOWN, XEN_ERRNO, sched_poll, sched_shutdown, type KernelEntry, type Platform } from "@pvkit/abi";
import { Engine, Hypervisor, checkInvariants, seededRandom, type Domain } from "@pvkit/hypervisor";
import { makeDomain } from "./bed.js";

// Every hypervisor a test makes is checked by the invariant checker afterwards.
const made: Hypervisor[] = [];
afterEach(() => {
  for (const hv of made.splice(0)) expect(checkInvariants(hv)).toEqual([]);
});
function hypervisor(config: ConstructorParameters<typeof Hypervisor>[0]): Hypervisor {
  const hv = new Hypervisor(config);
  made.push(hv);
  return hv;
}

/** A kernel that never blocks: it yields and lets others run, forever. */
const spinner: KernelEntry = async (p) => {
  for (;;) {
    p.hypercall(HYPERVISOR.sched_op, SCHEDOP.yield);
    await p.descheduled();
  }
};

/** Writes a shutdown struct at a fixed scratch address and shuts down with `reason`. */
function shutdownWith(p: Platform, reason: number): number {
  const view = p.memory.page(20 * 4096);
  sched_shutdown.fields.reason.set(view, 0, reason);
  return p.hypercall(HYPERVISOR.sched_op, SCHEDOP.shutdown, 20 * 4096);
}

function running(d: Domain, hv: Hypervisor): number {
  const v = d.vcpus[0]!;
  return v.runstateTime[RUNSTATE.running]! + (v.runstate === RUNSTATE.running ? hv.now - v.runstateEntered : 0);
}

function topology(pcpus: number, weights: readonly number[], caps: readonly number[] = []) {
  const hv = hypervisor({ frames: 512, pcpus, trace: false });
  const engine = new Engine(hv, { seed: 7 });
  const doms = weights.map((w, i) => {
    const d = makeDomain(hv, i + 1, false, 24, 1);
    d.sched.weight = w;
    d.sched.cap = caps[i] ?? 0;
    engine.attachKernel(d, spinner, 0);
    return d;
  });
  return { hv, engine, doms };
}

describe("the credit scheduler under the engine", () => {
  it("shares one pCPU between busy domains in proportion to their weights", async () => {
    const { hv, engine, doms } = topology(1, [256, 512]);
    // Measure over whole accounting periods, after a warm-up in which both start from no credit.
    expect(await engine.run({ until: 90_000_000 })).toBe("until");
    const before = doms.map((d) => running(d, hv));
    await engine.run({ until: 240_000_000 });
    const [a, b] = doms.map((d, i) => running(d, hv) - before[i]!);
    expect(b! / a!).toBeGreaterThan(1.8);
    expect(b! / a!).toBeLessThan(2.2);
    expect(a! + b!).toBeGreaterThan(0.95 * 150_000_000); // and the pCPU never idles
    expect(checkInvariants(hv)).toEqual([]);
  });

  it("gives equal weights equal time, and uses both pCPUs when there are two", async () => {
    const { hv, engine, doms } = topology(2, [256, 256]);
    await engine.run({ until: 60_000_000 });
    const [a, b] = doms.map((d) => running(d, hv));
    // Two pCPUs, two busy domains: each runs nearly all the time.
    expect(a! / 60_000_000).toBeGreaterThan(0.9);
    expect(b! / 60_000_000).toBeGreaterThan(0.9);
  });

  it("holds a capped domain to its cap even when the pCPU is otherwise idle", async () => {
    const { hv, engine, doms } = topology(1, [256], [25]);
    await engine.run({ until: 150_000_000 });
    const share = running(doms[0]!, hv) / 150_000_000;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.3);
  });
});

describe("the engine", () => {
  it("jumps virtual time to the next timer when everyone is blocked, and stops when nothing can happen", async () => {
    const hv = hypervisor({ frames: 256 });
    const engine = new Engine(hv);
    const d = makeDomain(hv, 1, false, 24, 1);
    const woke: number[] = [];
    engine.attachKernel(d, async (p) => {
      // SCHEDOP_poll on no ports with a timeout: only the timeout can wake it.
      const view = p.memory.page(20 * 4096);
      for (const t of [5_000_000, 1_000_000_000]) {
        sched_poll.fields.ports.set(view, 0, BigInt(20 * 4096 + 64));
        sched_poll.fields.nr_ports.set(view, 0, 0);
        sched_poll.fields.timeout.set(view, 0, BigInt(t));
        expect(p.hypercall(HYPERVISOR.sched_op, SCHEDOP.poll, 20 * 4096)).toBe(0);
        await p.descheduled();
        woke.push(hv.now);
      }
    }, 0);
    expect(await engine.run()).toBe("idle");
    expect(woke).toEqual([5_000_000, 1_000_000_000]);
    expect(d.state).toBe("shutdown");
    expect(d.shutdownReason).toBe(SHUTDOWN.poweroff);
    expect(hv.now).toBeGreaterThanOrEqual(1_000_000_000);
  });

  it("powers a domain off when its kernel returns, and crashes it when the kernel throws", async () => {
    const hv = hypervisor({ frames: 256 });
    const engine = new Engine(hv);
    const ok = makeDomain(hv, 1, false, 24, 1);
    const bad = makeDomain(hv, 2, false, 24, 1);
    engine.attachKernel(ok, async () => {}, 0);
    engine.attachKernel(bad, async () => {
      throw new Error("kernel panic: nothing to do");
    }, 0);
    await engine.run();
    expect([ok.state, ok.shutdownReason]).toEqual(["shutdown", SHUTDOWN.poweroff]);
    expect([bad.state, bad.shutdownReason]).toEqual(["shutdown", SHUTDOWN.crash]);
    expect(hv.console).toContain("domain 2 crashed: kernel panic: nothing to do");
    expect(engine.guestErrors.get(2)).toBeInstanceOf(Error);
  });

  it("lets a kernel shut its domain down with SCHEDOP_shutdown and Xen's reason", async () => {
    const hv = hypervisor({ frames: 256 });
    const engine = new Engine(hv);
    const d = makeDomain(hv, 1, false, 24, 1);
    let rc: number | undefined;
    engine.attachKernel(d, async (p) => {
      rc = shutdownWith(p, SHUTDOWN.reboot);
      await p.descheduled();
      throw new Error("never resumed after shutdown");
    }, 0);
    await engine.run();
    expect(rc).toBe(0);
    expect([d.state, d.shutdownReason]).toEqual(["shutdown", SHUTDOWN.reboot]);
    expect(engine.guestErrors.size).toBe(0);
  });

  it("crashes a domain whose vCPU context points at no kernel image", async () => {
    const hv = hypervisor({ frames: 256 });
    const engine = new Engine(hv);
    const d = makeDomain(hv, 1, false, 24, 1);
    d.vcpus[0]!.context = { rip: 4096, rsi: 0 }; // page 1 is zeroed RAM: no magic
    await engine.run();
    expect(d.shutdownReason).toBe(SHUTDOWN.crash);
    expect(hv.console.at(-1)).toMatch(/domain 1 failed to boot: not a pvkit kernel image/);
  });

  it("answers a refused shutdown reason without stopping the domain", async () => {
    const hv = hypervisor({ frames: 256 });
    const engine = new Engine(hv);
    const d = makeDomain(hv, 1, false, 24, 1);
    let rc: number | undefined;
    engine.attachKernel(d, async (p) => {
      rc = shutdownWith(p, 99);
    }, 0);
    await engine.run();
    expect(rc).toBe(-XEN_ERRNO.EINVAL);
    expect(d.shutdownReason).toBe(SHUTDOWN.poweroff); // from returning, not from the bad call
  });

  it("gives the same trace for the same seed, and the generator differs across seeds", async () => {
    const trace = async (seed: number) => {
      const hv = hypervisor({ frames: 512, pcpus: 2 });
      const engine = new Engine(hv, { seed });
      for (let i = 1; i <= 3; i++) engine.attachKernel(makeDomain(hv, i, false, 24, 1), spinner, 0);
      await engine.run({ until: 200_000 });
      return hv.trace.serialize();
    };
    expect(await trace(3)).toBe(await trace(3));
    expect(await trace(3)).not.toBe(await trace(4));
    const a = seededRandom(1);
    const b = seededRandom(1);
    expect([a(), a(), a()]).toEqual([b(), b(), b()]);
  });
});
