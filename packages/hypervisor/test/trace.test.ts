import { describe, expect, it } from "vitest";
import { HYPERVISOR, SCHEDOP } from "@pvkit/abi";
import { Engine, Hypervisor, PCPU_TRACE_PID, Trace, toChromeTrace } from "@pvkit/hypervisor";
import { expectInvariants, makeDomain } from "./bed.js";

describe("the trace", () => {
  it("records nothing when disabled, and serializes records as JSON lines", () => {
    const t = new Trace(false);
    t.record({ t: 1, kind: "console", domid: 0, text: "x" });
    expect(t.records).toEqual([]);
    t.enabled = true;
    t.record({ t: 1, kind: "console", domid: 0, text: "a" });
    t.record({ t: 2, kind: "domain", domid: 3, state: "paused" });
    expect(t.serialize()).toBe('{"t":1,"kind":"console","domid":0,"text":"a"}\n{"t":2,"kind":"domain","domid":3,"state":"paused"}');
  });

  it("exports Chrome trace events Perfetto reads: integer pids and tids, µs timestamps, slices with durations, named processes", async () => {
    const hv = new Hypervisor({ frames: 256, pcpus: 2 });
    const engine = new Engine(hv);
    const d = makeDomain(hv, 1, false, 24, 1);
    hv.log("a message from Xen itself"); // recorded as DOMID_XEN, the pCPUs' process
    engine.attachKernel(d, async (p) => {
      p.hypercall(HYPERVISOR.sched_op, SCHEDOP.yield);
      await p.descheduled();
      p.hypercall(99);
    }, 0);
    await engine.run();
    const { traceEvents, displayTimeUnit } = toChromeTrace(hv.trace.records);
    expect(displayTimeUnit).toBe("ns");
    for (const e of traceEvents) {
      expect(Number.isInteger(e["pid"])).toBe(true);
      expect(["X", "i", "M"]).toContain(e["ph"]);
      if (e["ph"] !== "M") expect(typeof e["ts"]).toBe("number");
    }
    const slices = traceEvents.filter((e) => e["ph"] === "X");
    expect(slices.length).toBeGreaterThanOrEqual(2);
    expect(slices.every((e) => e["pid"] === PCPU_TRACE_PID && (e["dur"] as number) > 0 && e["name"] === "d1v0")).toBe(true);
    const call = traceEvents.find((e) => e["cat"] === "hypercall" && e["name"] === "99");
    expect(call).toMatchObject({ pid: 1, tid: 0, args: { result: -38 } });
    const names = traceEvents.filter((e) => e["ph"] === "M").map((e) => [e["pid"], (e["args"] as { name: string }).name]);
    // Xen's process is named once, whatever Xen records under DOMID_XEN: never "domain 32754".
    expect(names.filter(([pid]) => pid === PCPU_TRACE_PID)).toEqual([[PCPU_TRACE_PID, "Xen"]]);
    expect(names).toContainEqual([1, "domain 1"]);
    expect(traceEvents.find((e) => e["cat"] === "console")).toMatchObject({ pid: PCPU_TRACE_PID, args: { text: "a message from Xen itself" } });
    // Slices are in microseconds: the first starts at 0 and lasts the slice cost (about a microsecond).
    expect(slices[0]!["ts"]).toBe(0);
    expect(slices[0]!["dur"]).toBeLessThan(10);
    expectInvariants(hv);
  });
});

describe("the realtime engine", () => {
  it("waits for the wall clock to reach each virtual deadline", async () => {
    const hv = new Hypervisor({ frames: 256 });
    const engine = new Engine(hv, { mode: "realtime" });
    const d = makeDomain(hv, 1, false, 24, 1);
    engine.attachKernel(d, async (p) => {
      const view = p.memory.page(20 * 4096);
      view.setBigUint64(0, BigInt(20 * 4096 + 64), true); // sched_poll.ports
      view.setUint32(8, 0, true); // nr_ports: none, only the timeout wakes it
      view.setBigUint64(16, 30_000_000n, true); // timeout: 30 ms of system time
      p.hypercall(HYPERVISOR.sched_op, SCHEDOP.poll, 20 * 4096);
      await p.descheduled();
    }, 0);
    const wall = performance.now();
    await engine.run({ until: 40_000_000 });
    // A lower bound only: realtime may run late on a loaded machine, never early.
    expect(performance.now() - wall).toBeGreaterThanOrEqual(29);
    expect(d.state).toBe("shutdown");
  });
});
