import { describe, expect, it } from "vitest";
import { EVTCHNOP, EVTCHNSTAT, HYPERVISOR, RUNSTATE, SCHEDOP, XEN_ERRNO, evtchn_bind_pirq, evtchn_close, evtchn_status } from "@pvkit/abi";
import { Engine, Hypervisor, bootHost, portState, raisePirq } from "@pvkit/hypervisor";
import { bed } from "./bed.js";

describe("host interrupt lines (EVTCHNOP_bind_pirq)", () => {
  it("dom0 binds an allocated line; raising it marks the port pending and wakes dom0", () => {
    const b = bed();
    const pirq = b.hv.allocHostIrq();
    expect(pirq).toBe(16);
    const a = b.args(b.dom0);
    const va = a.put(evtchn_bind_pirq, { pirq, flags: 0 });
    expect(b.call(b.dom0, HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va)).toBe(0);
    const port = a.get(evtchn_bind_pirq, va).port;
    expect(portState(b.hv, b.dom0, port)).toMatchObject({ status: EVTCHNSTAT.pirq, pirq, pending: false });
    const woken: number[] = [];
    b.hv.hooks = { wake: (v) => woken.push(v.domain.domid), deschedule: () => {} };
    b.hv.vcpuInfoView(b.dom0.vcpus[0]!)!.setUint8(1, 0);
    b.hv.block(b.dom0.vcpus[0]!);
    expect(raisePirq(b.hv, pirq)).toBe(true);
    expect(portState(b.hv, b.dom0, port)?.pending).toBe(true);
    expect(woken).toEqual([0]);
    const st = a.put(evtchn_status, { dom: 0x7ff0, port });
    expect(b.call(b.dom0, HYPERVISOR.event_channel_op, EVTCHNOP.status, st)).toBe(0);
    expect(a.get(evtchn_status, st)).toMatchObject({ status: EVTCHNSTAT.pirq, pirq });
  });

  it.each([
    ["a line never allocated", (hv: Hypervisor) => hv.allocHostIrq() + 1, 0, -XEN_ERRNO.EINVAL],
    ["an unprivileged caller", (hv: Hypervisor) => hv.allocHostIrq(), 1, -XEN_ERRNO.EPERM],
  ])("refuses %s", (_what, line, domid, errno) => {
    const b = bed();
    const d = domid === 0 ? b.dom0 : b.domU;
    const pirq = line(b.hv);
    const va = b.args(d).put(evtchn_bind_pirq, { pirq, flags: 0 });
    expect(b.call(d, HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va)).toBe(errno);
    expect(raisePirq(b.hv, pirq)).toBe(false);
  });

  it("refuses a second binding of a line, and frees it on close", () => {
    const b = bed();
    const pirq = b.hv.allocHostIrq();
    const a = b.args(b.dom0);
    const bind = () => b.call(b.dom0, HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, a.put(evtchn_bind_pirq, { pirq, flags: 0 }));
    expect(bind()).toBe(0);
    expect(bind()).toBe(-XEN_ERRNO.EEXIST);
    const port = portState(b.hv, b.dom0, 1)!.port;
    expect(b.call(b.dom0, HYPERVISOR.event_channel_op, EVTCHNOP.close, a.put(evtchn_close, { port }))).toBe(0);
    expect(raisePirq(b.hv, pirq)).toBe(false);
    expect(bind()).toBe(0);
  });

  it("reaches a realtime dom0 blocked waiting for host I/O, from a host timer callback", async () => {
    let line = -1;
    let woke = false;
    const { hv, engine } = bootHost({
      frames: 1024,
      mode: "realtime",
      dom0: {
        pages: 64,
        kernel: async (p) => {
          const hostIrqs = p.hostIrqs!;
          line = hostIrqs.alloc();
          const view = p.memory.page(40 * 4096);
          view.setUint32(0, line, true); // evtchn_bind_pirq.pirq
          expect(p.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, 40 * 4096)).toBe(0);
          setTimeout(() => hostIrqs.raise(line), 20); // "the socket has data"
          p.hypercall(HYPERVISOR.sched_op, SCHEDOP.block);
          await p.descheduled();
          woke = true;
        },
      },
    });
    // dom0 powers off once woken, and a realtime engine with no domain left that could run stops;
    // without the interrupt it would have waited for input until the deadline instead.
    expect(await engine.run({ until: 2_000_000_000 })).toBe("idle");
    expect(woke).toBe(true);
    expect(hv.now).toBeLessThan(2_000_000_000);
    expect(hv.domains.get(0)!.vcpus[0]!.runstate).not.toBe(RUNSTATE.running);
  });

  it.each([1, 2])("wakes a realtime dom0 on %i pCPU(s) at the interrupt, not at the far timer it armed before blocking", async (pcpus) => {
    let line = -1;
    let wokeAt: number | undefined;
    const TIMER = 10_000_000_000;
    const { hv, engine } = bootHost({
      frames: 1024,
      pcpus,
      mode: "realtime",
      dom0: {
        pages: 64,
        kernel: async (p) => {
          const hostIrqs = p.hostIrqs!;
          line = hostIrqs.alloc();
          p.memory.page(40 * 4096).setUint32(0, line, true);
          expect(p.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, 40 * 4096)).toBe(0);
          expect(p.hypercall(HYPERVISOR.set_timer_op, TIMER)).toBe(0); // a timeout, as libxl's device wait arms
          setTimeout(() => hostIrqs.raise(line), 20);
          p.hypercall(HYPERVISOR.sched_op, SCHEDOP.block);
          await p.descheduled();
          wokeAt = hv.now;
          expect(p.hypercall(HYPERVISOR.set_timer_op, 0)).toBe(0);
        },
      },
    });
    await engine.run({ until: 2 * TIMER });
    // Virtual time follows the wall clock: woken around 20 ms in, far from the timer's 10 s.
    expect(wokeAt).toBeDefined();
    expect(wokeAt!).toBeLessThan(TIMER / 2);
  });
});
