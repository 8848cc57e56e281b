import { afterEach, describe, expect, it } from "vitest";
import {
  DOMID,
  EVTCHNOP,
  HYPERVISOR,
  PAGE_SIZE,
  RUNSTATE,
  SCHEDOP,
  SHUTDOWN,
  VCPUOP,
  VCPU_SSHOTTMR,
  VIRQ,
  XEN_ERRNO,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_virq,
  evtchn_send,
  sched_poll,
  sched_remote_shutdown,
  sched_shutdown,
  sched_watchdog,
  shared_info,
  vcpu_info,
  vcpu_runstate_info,
  vcpu_set_periodic_timer,
  vcpu_set_singleshot_timer,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import { NR_DOMAIN_WATCHDOG_TIMERS, POLL_MAX_PORTS, type Domain, type Hypervisor, type Vcpu } from "@pvkit/hypervisor";
import { BED_PAGES, bed, expectInvariants, type Bed } from "./bed.js";

const { EINVAL, EFAULT, ENOSYS, ESRCH, EPERM, ENOENT, ETIME, ENOSPC } = XEN_ERRNO;

const MS = 1_000_000;
const SECOND = 1_000_000_000;

/** A guest virtual address past the bed domains' RAM: nothing is mapped there. */
const UNMAPPED = BED_PAGES * PAGE_SIZE + 0x100;

// Every test builds its bed through setup(); the invariants are checked after each.
let current: Bed | undefined;
function setup(opts: Parameters<typeof bed>[0] = {}): Bed {
  current = bed(opts);
  return current;
}
afterEach(() => {
  if (current !== undefined) expectInvariants(current.hv);
  current = undefined;
});

/** Records the engine hooks the hypervisor calls. */
function spy(hv: Hypervisor): { woken: Vcpu[]; descheduled: Vcpu[] } {
  const seen = { woken: [] as Vcpu[], descheduled: [] as Vcpu[] };
  hv.hooks = { wake: (v) => seen.woken.push(v), deschedule: (v) => seen.descheduled.push(v) };
  return seen;
}

// ---------------------------------------------------------------------------
// Hypercalls the way a guest makes them: a struct in its memory, its address in a register.

/** `sched_op(cmd, &struct)` from vCPU 0 of `d`. */
function sched<L extends StructLayout>(b: Bed, d: Domain, cmd: number, layout: L, values: Partial<StructValue<L>>): number {
  return b.call(d, HYPERVISOR.sched_op, cmd, b.args(d).put(layout, values));
}

const shutdown = (b: Bed, d: Domain, reason: number) => sched(b, d, SCHEDOP.shutdown, sched_shutdown, { reason });
const remoteShutdown = (b: Bed, caller: Domain, domid: number, reason: number) => sched(b, caller, SCHEDOP.remote_shutdown, sched_remote_shutdown, { domain_id: domid, reason });
const watchdog = (b: Bed, d: Domain, id: number, timeout: number) => sched(b, d, SCHEDOP.watchdog, sched_watchdog, { id, timeout });

/** `SCHEDOP_poll` on `ports` (written as a guest array of u32) with an absolute `timeout` (0: none). */
function poll(b: Bed, d: Domain, ports: readonly number[], timeout = 0, nr = ports.length): number {
  const a = b.args(d);
  const list = a.alloc(Math.max(4, ports.length * 4));
  const bytes = new Uint8Array(Math.max(4, ports.length * 4));
  ports.forEach((p, i) => new DataView(bytes.buffer).setUint32(i * 4, p, true));
  a.write(list, bytes);
  return b.call(d, HYPERVISOR.sched_op, SCHEDOP.poll, a.put(sched_poll, { ports: BigInt(list), nr_ports: nr, timeout: BigInt(timeout) }));
}

/** `vcpu_op(cmd, vcpuid, &struct)` from vCPU `from` of `d`. */
function vcpuOp<L extends StructLayout>(b: Bed, d: Domain, cmd: number, vcpuid: number, layout?: L, values: Partial<StructValue<L>> = {}, from = 0): number {
  const va = layout === undefined ? 0 : b.args(d).put(layout, values);
  return b.hv.hypercall(d.vcpus[from]!, HYPERVISOR.vcpu_op, cmd, vcpuid, va);
}

const setTimer = (b: Bed, d: Domain, timeout: number, from = 0) => b.hv.hypercall(d.vcpus[from]!, HYPERVISOR.set_timer_op, timeout);

function evtchn<L extends StructLayout>(b: Bed, d: Domain, cmd: number, layout: L, values: Partial<StructValue<L>>): StructValue<L> {
  const a = b.args(d);
  const va = a.put(layout, values);
  expect(b.call(d, HYPERVISOR.event_channel_op, cmd, va)).toBe(0);
  return a.get(layout, va);
}

const bindVirq = (b: Bed, d: Domain, virq: number, vcpu = 0) => evtchn(b, d, EVTCHNOP.bind_virq, evtchn_bind_virq, { virq, vcpu }).port;
const bindIpi = (b: Bed, d: Domain, vcpu = 0) => evtchn(b, d, EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu }).port;
const send = (b: Bed, d: Domain, port: number) => evtchn(b, d, EVTCHNOP.send, evtchn_send, { port });

/** `server` offers a port to `client`, which binds to it; returns both ends. */
function connect(b: Bed, server: Domain, client: Domain): { serverPort: number; clientPort: number } {
  const serverPort = evtchn(b, server, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom: DOMID.SELF, remote_dom: client.domid }).port;
  const clientPort = evtchn(b, client, EVTCHNOP.bind_interdomain, evtchn_bind_interdomain, { remote_dom: server.domid, remote_port: serverPort }).local_port;
  return { serverPort, clientPort };
}

// ---------------------------------------------------------------------------
// shared_info as the guest reads it.

const PENDING = shared_info.fields.evtchn_pending;
const MASK = shared_info.fields.evtchn_mask;
const VCPU_INFO = shared_info.fields.vcpu_info;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending;
const UPCALL_MASK = vcpu_info.fields.evtchn_upcall_mask;

const sharedInfo = (hv: Hypervisor, d: Domain) => new DataView(hv.machine.buffer, d.sharedInfoMfn * PAGE_SIZE, PAGE_SIZE);

function bit(hv: Hypervisor, d: Domain, field: typeof PENDING, port: number): boolean {
  return ((field.element.get(sharedInfo(hv, d), field.at(0, port >> 6)) >> BigInt(port & 63)) & 1n) === 1n;
}
const isPending = (hv: Hypervisor, d: Domain, port: number) => bit(hv, d, PENDING, port);

function setBit(hv: Hypervisor, d: Domain, field: typeof PENDING, port: number, on: boolean): void {
  const view = sharedInfo(hv, d);
  const at = field.at(0, port >> 6);
  const m = 1n << BigInt(port & 63);
  field.element.set(view, at, on ? field.element.get(view, at) | m : field.element.get(view, at) & ~m);
}
/** The guest masks `port`. */
const guestMask = (hv: Hypervisor, d: Domain, port: number) => setBit(hv, d, MASK, port, true);
/** The guest handles `port`: clears its pending bit. */
const consume = (hv: Hypervisor, d: Domain, port: number) => setBit(hv, d, PENDING, port, false);

const upcallMask = (hv: Hypervisor, v: Vcpu) => UPCALL_MASK.get(sharedInfo(hv, v.domain), VCPU_INFO.at(0, v.id));
const upcallPending = (hv: Hypervisor, v: Vcpu) => UPCALL_PENDING.get(sharedInfo(hv, v.domain), VCPU_INFO.at(0, v.id));
const enableUpcalls = (hv: Hypervisor, v: Vcpu) => UPCALL_MASK.set(sharedInfo(hv, v.domain), VCPU_INFO.at(0, v.id), 0);

// ---------------------------------------------------------------------------

describe("SCHEDOP_yield", () => {
  it("gives up the pCPU and stays runnable", () => {
    const b = setup();
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.yield)).toBe(0);
    expect(seen.descheduled).toEqual([v]);
    expect(seen.woken).toEqual([]);
    expect(v.runstate).toBe(RUNSTATE.runnable);
    expect(b.hv.runnable(v)).toBe(true);
  });
});

describe("SCHEDOP_block", () => {
  it("re-enables upcalls (evtchn_upcall_mask, byte 1 of vcpu_info) and blocks", () => {
    const b = setup();
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(upcallMask(b.hv, v)).toBe(1); // Xen starts a domain with upcalls masked
    expect(b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block)).toBe(0);
    expect(upcallMask(b.hv, v)).toBe(0);
    expect(sharedInfo(b.hv, b.domU).getUint8(1)).toBe(0);
    expect(v.runstate).toBe(RUNSTATE.blocked);
    expect(seen.descheduled).toEqual([v]);
    expect(b.hv.runnable(v)).toBe(false);
  });

  it("is woken by an event sent to it while blocked", () => {
    const b = setup();
    const { serverPort, clientPort } = connect(b, b.domU, b.dom0);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block);
    expect(v.runstate).toBe(RUNSTATE.blocked);
    send(b, b.dom0, clientPort);
    expect(isPending(b.hv, b.domU, serverPort)).toBe(true);
    expect(upcallPending(b.hv, v)).toBe(1);
    expect(seen.woken).toEqual([v]);
    expect(v.runstate).toBe(RUNSTATE.runnable);
  });

  it("returns at once, without blocking, when an event is already deliverable", () => {
    const b = setup();
    const { serverPort, clientPort } = connect(b, b.domU, b.dom0);
    send(b, b.dom0, clientPort); // pending with upcalls still masked: not yet deliverable
    expect(isPending(b.hv, b.domU, serverPort)).toBe(true);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block)).toBe(0);
    // Block unmasked upcalls, found the event deliverable, and did not sleep.
    expect(upcallMask(b.hv, v)).toBe(0);
    expect(v.runstate).toBe(RUNSTATE.runnable);
    expect(seen.descheduled).toEqual([]);
  });

  it("sleeps through an event on a masked port (no upcall is raised for it)", () => {
    const b = setup();
    const { serverPort, clientPort } = connect(b, b.domU, b.dom0);
    guestMask(b.hv, b.domU, serverPort);
    const v = b.domU.vcpus[0]!;
    b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block);
    const seen = spy(b.hv);
    send(b, b.dom0, clientPort);
    expect(isPending(b.hv, b.domU, serverPort)).toBe(true);
    expect(upcallPending(b.hv, v)).toBe(0);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.blocked, []]);
  });
});

describe("SCHEDOP_shutdown", () => {
  it.each(Object.entries(SHUTDOWN).filter(([k]) => k !== "MAX"))("records SHUTDOWN_%s and stops every vCPU", (_name, reason) => {
    const b = setup();
    const domExc = bindVirq(b, b.dom0, VIRQ.DOM_EXC);
    const seen = spy(b.hv);
    expect(shutdown(b, b.domU, reason)).toBe(0);
    expect(b.domU.state).toBe("shutdown");
    expect(b.domU.shutdownReason).toBe(reason);
    expect(seen.descheduled).toEqual(b.domU.vcpus);
    expect(b.hv.runnable(b.domU.vcpus[0]!)).toBe(false);
    // dom0's toolstack hears of it through VIRQ_DOM_EXC.
    expect(isPending(b.hv, b.dom0, domExc)).toBe(true);
    // Other domains carry on.
    expect(b.domUs[1]!.state).toBe("running");
  });

  it.each([
    ["a reason past SHUTDOWN_MAX", () => shutdown(current!, current!.domU, SHUTDOWN.MAX + 1), -EINVAL],
    ["a huge reason", () => shutdown(current!, current!.domU, 0xffffffff), -EINVAL],
    ["an unmapped argument", () => current!.call(current!.domU, HYPERVISOR.sched_op, SCHEDOP.shutdown, UNMAPPED), -EFAULT],
    ["an argument running off the end of RAM", () => current!.call(current!.domU, HYPERVISOR.sched_op, SCHEDOP.shutdown, BED_PAGES * PAGE_SIZE - 2), -EFAULT],
  ])("refuses %s and leaves the domain running", (_what, call, rc) => {
    const b = setup();
    const seen = spy(b.hv);
    expect(call()).toBe(rc);
    expect(b.domU.state).toBe("running");
    expect(b.domU.shutdownReason).toBeUndefined();
    expect(seen.descheduled).toEqual([]);
  });

  it("keeps the first reason when a shut-down domain's shutdown is repeated from dom0", () => {
    const b = setup();
    expect(shutdown(b, b.domU, SHUTDOWN.suspend)).toBe(0);
    expect(remoteShutdown(b, b.dom0, b.domU.domid, SHUTDOWN.crash)).toBe(0);
    expect(b.domU.shutdownReason).toBe(SHUTDOWN.suspend);
  });
});

describe("SCHEDOP_remote_shutdown", () => {
  it("lets dom0 shut a domU down with its reason", () => {
    const b = setup();
    const seen = spy(b.hv);
    expect(remoteShutdown(b, b.dom0, b.domU.domid, SHUTDOWN.reboot)).toBe(0);
    expect([b.domU.state, b.domU.shutdownReason]).toEqual(["shutdown", SHUTDOWN.reboot]);
    expect(seen.descheduled).toEqual(b.domU.vcpus);
    expect(b.dom0.state).toBe("running");
  });

  it.each([
    ["a domU on another domU", 1, 2, SHUTDOWN.poweroff, -EPERM],
    ["a domU on dom0", 1, 0, SHUTDOWN.poweroff, -EPERM],
    // Xen's xsm_schedop_shutdown is XSM_DM_PRIV: acting on itself earns a domU nothing.
    ["a domU on itself", 1, 1, SHUTDOWN.poweroff, -EPERM],
    ["an unknown domid", 0, 77, SHUTDOWN.poweroff, -ESRCH],
    // rcu_lock_domain_by_id does not resolve DOMID_SELF.
    ["DOMID_SELF", 0, DOMID.SELF, SHUTDOWN.poweroff, -ESRCH],
    ["a reason past SHUTDOWN_MAX", 0, 2, SHUTDOWN.MAX + 1, -EINVAL],
  ])("refuses %s", (_what, caller, target, reason, rc) => {
    const b = setup();
    const seen = spy(b.hv);
    const from = b.hv.domains.get(caller)!;
    expect(remoteShutdown(b, from, target, reason)).toBe(rc);
    for (const d of b.hv.domains.values()) expect(d.state).toBe("running");
    expect(seen.descheduled).toEqual([]);
  });

  it("answers -ESRCH for a domain that was destroyed", () => {
    const b = setup();
    const gone = b.domUs[1]!;
    expect(b.hv.destroyDomain(gone)).toBe(0);
    expect(remoteShutdown(b, b.dom0, gone.domid, SHUTDOWN.poweroff)).toBe(-ESRCH);
  });

  it("answers -EFAULT for an unreadable argument", () => {
    const b = setup();
    expect(b.call(b.dom0, HYPERVISOR.sched_op, SCHEDOP.remote_shutdown, UNMAPPED)).toBe(-EFAULT);
    expect(b.domU.state).toBe("running");
  });
});

describe("SCHEDOP_poll", () => {
  it.each([
    ["more than 128 ports", () => poll(current!, current!.domU, Array.from({ length: POLL_MAX_PORTS + 1 }, (_, i) => i + 1)), -EINVAL],
    // The count is checked before the list is read, as Xen does.
    ["more than 128 ports at an unmapped list", () => poll(current!, current!.domU, [1], 0, 129), -EINVAL],
    ["port 4096", () => poll(current!, current!.domU, [bindIpi(current!, current!.domU), 4096]), -EINVAL],
    ["port 0xffffffff", () => poll(current!, current!.domU, [0xffffffff]), -EINVAL],
    // As Xen's evtchn_port_poll: a port must be valid and in use.
    ["a closed port after an open one", () => poll(current!, current!.domU, [bindIpi(current!, current!.domU), 5]), -EINVAL],
    ["the reserved port 0", () => poll(current!, current!.domU, [0]), -EINVAL],
    ["a port past the domain's valid ports", () => poll(current!, current!.domU, [bindIpi(current!, current!.domU), 100]), -EINVAL],
    [
      "an unreadable port list",
      () => current!.call(current!.domU, HYPERVISOR.sched_op, SCHEDOP.poll, current!.args(current!.domU).put(sched_poll, { ports: BigInt(UNMAPPED), nr_ports: 2, timeout: 0n })),
      -EFAULT,
    ],
    [
      "a port list running off the end of RAM",
      () =>
        current!.call(current!.domU, HYPERVISOR.sched_op, SCHEDOP.poll, current!.args(current!.domU).put(sched_poll, { ports: BigInt(BED_PAGES * PAGE_SIZE - 4), nr_ports: 2, timeout: 0n })),
      -EFAULT,
    ],
    ["an unreadable sched_poll", () => current!.call(current!.domU, HYPERVISOR.sched_op, SCHEDOP.poll, UNMAPPED), -EFAULT],
  ])("refuses %s without blocking", (_what, call, rc) => {
    const b = setup();
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(call()).toBe(rc);
    expect([v.runstate, v.poll, seen.descheduled]).toEqual([RUNSTATE.runnable, undefined, []]);
  });

  it("accepts exactly 128 ports, and port 4095 once it is in use", () => {
    const b = setup();
    const v = b.domU.vcpus[0]!;
    const ports = Array.from({ length: 4095 }, () => bindIpi(b, b.domU));
    expect(ports.at(-1)).toBe(4095);
    expect(poll(b, b.domU, ports.slice(-POLL_MAX_PORTS))).toBe(0);
    expect(v.runstate).toBe(RUNSTATE.blocked);
    expect(v.poll?.ports).toHaveLength(128);
  });

  it("returns at once when a polled port is already pending, masked or not", () => {
    const b = setup();
    const ipi = bindIpi(b, b.domU);
    guestMask(b.hv, b.domU, ipi);
    send(b, b.domU, ipi);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    // Xen stops at the first pending port, before looking at the closed port 5 after it.
    expect(poll(b, b.domU, [ipi, 5])).toBe(0);
    expect([v.runstate, v.poll, seen.descheduled]).toEqual([RUNSTATE.runnable, undefined, []]);
  });

  it("returns at once when an event is deliverable, even on a port it does not poll", () => {
    const b = setup();
    const ipi = bindIpi(b, b.domU);
    const v = b.domU.vcpus[0]!;
    enableUpcalls(b.hv, v);
    send(b, b.domU, ipi);
    const seen = spy(b.hv);
    expect(poll(b, b.domU, [ipi + 1])).toBe(0);
    expect([v.runstate, v.poll, seen.descheduled]).toEqual([RUNSTATE.runnable, undefined, []]);
  });

  it("blocks, then is woken by a send on a polled port even when that port is masked", () => {
    const b = setup();
    const { serverPort: polled, clientPort: toPolled } = connect(b, b.domU, b.dom0);
    const { serverPort: other, clientPort: toOther } = connect(b, b.domU, b.dom0);
    guestMask(b.hv, b.domU, polled);
    guestMask(b.hv, b.domU, other);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(poll(b, b.domU, [polled])).toBe(0);
    expect([v.runstate, seen.descheduled]).toEqual([RUNSTATE.blocked, [v]]);
    expect(v.poll).toEqual({ ports: [polled], deadline: undefined });
    expect(b.hv.nextDeadline()).toBeUndefined();
    // A port it does not poll does not wake it.
    send(b, b.dom0, toOther);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.blocked, []]);
    // The polled one does, masked as it is.
    send(b, b.dom0, toPolled);
    expect(isPending(b.hv, b.domU, polled)).toBe(true);
    expect(upcallPending(b.hv, v)).toBe(0); // masked: no upcall, only the poll ended
    expect([v.runstate, v.poll, seen.woken]).toEqual([RUNSTATE.runnable, undefined, [v]]);
  });

  it("wakes at its timeout when nothing arrives", () => {
    const b = setup();
    b.hv.advanceTo(2 * MS);
    const ipi = bindIpi(b, b.domU);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(poll(b, b.domU, [ipi], 7 * MS)).toBe(0);
    expect(v.runstate).toBe(RUNSTATE.blocked);
    expect(b.hv.nextDeadline()).toBe(7 * MS);
    b.hv.advanceTo(7 * MS - 1);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.blocked, []]);
    b.hv.advanceTo(7 * MS);
    expect([v.runstate, v.poll, seen.woken]).toEqual([RUNSTATE.runnable, undefined, [v]]);
    expect(isPending(b.hv, b.domU, ipi)).toBe(false);
    expect(b.hv.nextDeadline()).toBeUndefined();
  });

  it("with no ports, waits for the timeout alone", () => {
    const b = setup();
    const v = b.domU.vcpus[0]!;
    expect(poll(b, b.domU, [], 3 * MS)).toBe(0);
    expect(v.runstate).toBe(RUNSTATE.blocked);
    b.hv.advanceTo(3 * MS);
    expect(v.runstate).toBe(RUNSTATE.runnable);
  });

  it.each([
    ["already past", 4 * MS],
    ["exactly now", 5 * MS],
  ])("returns at once when the timeout is %s", (_what, timeout) => {
    const b = setup();
    b.hv.advanceTo(5 * MS);
    const ipi = bindIpi(b, b.domU);
    const seen = spy(b.hv);
    const v = b.domU.vcpus[0]!;
    expect(poll(b, b.domU, [ipi], timeout)).toBe(0);
    expect([v.runstate, v.poll, seen.descheduled]).toEqual([RUNSTATE.runnable, undefined, []]);
  });
});

describe("SCHEDOP_watchdog", () => {
  it("allocates ids 1 and 2, then answers -ENOSPC", () => {
    const b = setup();
    b.hv.advanceTo(SECOND);
    expect(NR_DOMAIN_WATCHDOG_TIMERS).toBe(2);
    expect(watchdog(b, b.domU, 0, 10)).toBe(1);
    expect(watchdog(b, b.domU, 0, 20)).toBe(2);
    expect(watchdog(b, b.domU, 0, 30)).toBe(-ENOSPC);
    expect(b.domU.watchdogs).toEqual([11 * SECOND, 21 * SECOND]);
    // Each domain has its own.
    expect(watchdog(b, b.domUs[1]!, 0, 5)).toBe(1);
    expect(b.hv.nextDeadline()).toBe(6 * SECOND);
  });

  it("re-arms a watchdog from now, and frees it with timeout 0", () => {
    const b = setup();
    expect(watchdog(b, b.domU, 0, 10)).toBe(1);
    b.hv.advanceTo(4 * SECOND);
    expect(watchdog(b, b.domU, 1, 10)).toBe(0);
    expect(b.domU.watchdogs[0]).toBe(14 * SECOND);
    expect(watchdog(b, b.domU, 1, 0)).toBe(0);
    expect(b.domU.watchdogs[0]).toBeUndefined();
    expect(b.hv.nextDeadline()).toBeUndefined();
    // A freed id is unknown, and the next allocation takes it again.
    expect(watchdog(b, b.domU, 1, 10)).toBe(-EINVAL);
    expect(watchdog(b, b.domU, 0, 10)).toBe(1);
  });

  it.each([
    ["id 3 (past NR_DOMAIN_WATCHDOG_TIMERS)", 3, 10, -EINVAL],
    ["a huge id", 0xffffffff, 10, -EINVAL],
    ["id 1, never allocated", 1, 10, -EINVAL],
    ["id 2, never allocated", 2, 0, -EINVAL],
  ])("refuses %s", (_what, id, timeout, rc) => {
    const b = setup();
    expect(watchdog(b, b.domU, id, timeout)).toBe(rc);
    expect(b.domU.watchdogs).toEqual([undefined, undefined]);
  });

  it("answers -EFAULT for an unreadable argument", () => {
    const b = setup();
    expect(b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.watchdog, UNMAPPED)).toBe(-EFAULT);
    expect(b.domU.watchdogs).toEqual([undefined, undefined]);
  });

  it("shuts the domain down with SHUTDOWN_watchdog when it expires", () => {
    const b = setup();
    const domExc = bindVirq(b, b.dom0, VIRQ.DOM_EXC);
    expect(watchdog(b, b.domU, 0, 2)).toBe(1);
    b.hv.advanceTo(2 * SECOND - 1);
    expect(b.domU.state).toBe("running");
    b.hv.advanceTo(2 * SECOND);
    expect([b.domU.state, b.domU.shutdownReason]).toEqual(["shutdown", SHUTDOWN.watchdog]);
    expect(b.hv.console.some((line) => line.includes("watchdog") && line.includes(String(b.domU.domid)))).toBe(true);
    expect(isPending(b.hv, b.dom0, domExc)).toBe(true);
    expect(b.domUs[1]!.state).toBe("running");
    expect(b.hv.nextDeadline()).toBeUndefined();
  });

  it("does not fire when re-armed in time, and fires once the re-armed time passes", () => {
    const b = setup();
    expect(watchdog(b, b.domU, 0, 2)).toBe(1);
    b.hv.advanceTo(SECOND);
    expect(watchdog(b, b.domU, 1, 2)).toBe(0);
    b.hv.advanceTo(2 * SECOND);
    expect(b.domU.state).toBe("running");
    b.hv.advanceTo(3 * SECOND);
    expect([b.domU.state, b.domU.shutdownReason]).toEqual(["shutdown", SHUTDOWN.watchdog]);
  });

  it("does not fire once freed", () => {
    const b = setup();
    expect(watchdog(b, b.domU, 0, 1)).toBe(1);
    expect(watchdog(b, b.domU, 1, 0)).toBe(0);
    b.hv.advanceTo(10 * SECOND);
    expect(b.domU.state).toBe("running");
  });
});

describe("sched_op commands pvkit does not know", () => {
  it.each([99, 0xffff])("answers -ENOSYS for command %i", (cmd) => {
    const b = setup();
    const seen = spy(b.hv);
    expect(b.call(b.domU, HYPERVISOR.sched_op, cmd, 0)).toBe(-ENOSYS);
    expect([b.domU.state, seen.descheduled]).toEqual(["running", []]);
  });
});

describe("set_timer_op", () => {
  it("raises VIRQ_TIMER at the deadline, waking the blocked vCPU", () => {
    const b = setup();
    const port = bindVirq(b, b.domU, VIRQ.TIMER);
    const v = b.domU.vcpus[0]!;
    expect(setTimer(b, b.domU, 3 * MS)).toBe(0);
    expect(v.singleshotDeadline).toBe(3 * MS);
    expect(b.hv.nextDeadline()).toBe(3 * MS);
    b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block);
    const seen = spy(b.hv);
    b.hv.advanceTo(3 * MS - 1);
    expect(isPending(b.hv, b.domU, port)).toBe(false);
    b.hv.advanceTo(3 * MS);
    expect(isPending(b.hv, b.domU, port)).toBe(true);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.runnable, [v]]);
    // Single-shot: it does not fire again.
    expect(v.singleshotDeadline).toBeUndefined();
    consume(b.hv, b.domU, port);
    b.hv.advanceTo(10 * MS);
    expect(isPending(b.hv, b.domU, port)).toBe(false);
  });

  it("replaces an earlier deadline", () => {
    const b = setup();
    const port = bindVirq(b, b.domU, VIRQ.TIMER);
    setTimer(b, b.domU, 3 * MS);
    setTimer(b, b.domU, 6 * MS);
    b.hv.advanceTo(5 * MS);
    expect(isPending(b.hv, b.domU, port)).toBe(false);
    b.hv.advanceTo(6 * MS);
    expect(isPending(b.hv, b.domU, port)).toBe(true);
  });

  it("cancels the timer with 0", () => {
    const b = setup();
    const port = bindVirq(b, b.domU, VIRQ.TIMER);
    setTimer(b, b.domU, 3 * MS);
    expect(setTimer(b, b.domU, 0)).toBe(0);
    expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
    expect(b.hv.nextDeadline()).toBeUndefined();
    b.hv.advanceTo(10 * MS);
    expect(isPending(b.hv, b.domU, port)).toBe(false);
  });

  it.each([
    ["past", 2 * MS],
    ["now", 4 * MS],
  ])("raises VIRQ_TIMER at once for a deadline already %s", (_what, deadline) => {
    const b = setup();
    const port = bindVirq(b, b.domU, VIRQ.TIMER);
    b.hv.advanceTo(4 * MS);
    expect(setTimer(b, b.domU, deadline)).toBe(0);
    expect(isPending(b.hv, b.domU, port)).toBe(true);
    expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
  });

  it("raises it on the calling vCPU's own VIRQ_TIMER port", () => {
    const b = setup();
    const p0 = bindVirq(b, b.domU, VIRQ.TIMER, 0);
    const p1 = bindVirq(b, b.domU, VIRQ.TIMER, 1);
    expect(setTimer(b, b.domU, 2 * MS, 1)).toBe(0);
    expect(b.domU.vcpus[1]!.singleshotDeadline).toBe(2 * MS);
    expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
    b.hv.advanceTo(2 * MS);
    expect([isPending(b.hv, b.domU, p0), isPending(b.hv, b.domU, p1)]).toEqual([false, true]);
  });

  it("fires harmlessly when VIRQ_TIMER is not bound", () => {
    const b = setup();
    expect(setTimer(b, b.domU, MS)).toBe(0);
    b.hv.advanceTo(2 * MS);
    expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
    expect(b.domU.state).toBe("running");
  });

  it.each([
    ["negative", -1],
    ["not an integer", 1.5],
    ["NaN", Number.NaN],
  ])("refuses a timeout that is %s with -EINVAL", (_what, timeout) => {
    const b = setup();
    setTimer(b, b.domU, 5 * MS);
    expect(setTimer(b, b.domU, timeout)).toBe(-EINVAL);
    expect(b.domU.vcpus[0]!.singleshotDeadline).toBe(5 * MS); // unchanged
  });
});

describe("VCPUOP", () => {
  it.each([
    ["vCPU 2 of a 2-vCPU domain", 2],
    ["a negative id", -1],
    ["a fractional id", 0.5],
    ["a huge id", 0xffffffff],
  ])("answers -ENOENT for %s, whatever the command", (_what, vcpuid) => {
    const b = setup();
    for (const cmd of [VCPUOP.up, VCPUOP.down, VCPUOP.is_up, VCPUOP.get_runstate_info, VCPUOP.stop_periodic_timer, 99]) {
      expect(b.call(b.domU, HYPERVISOR.vcpu_op, cmd, vcpuid, b.args(b.domU).alloc(64))).toBe(-ENOENT);
    }
  });

  it("brings a vCPU up and down, and reports it with is_up", () => {
    const b = setup();
    const seen = spy(b.hv);
    const v1 = b.domU.vcpus[1]!;
    expect(vcpuOp(b, b.domU, VCPUOP.is_up, 0)).toBe(1);
    expect(vcpuOp(b, b.domU, VCPUOP.is_up, 1)).toBe(0);
    expect(vcpuOp(b, b.domU, VCPUOP.up, 1)).toBe(0);
    expect([v1.runstate, seen.woken]).toEqual([RUNSTATE.runnable, [v1]]);
    expect(vcpuOp(b, b.domU, VCPUOP.is_up, 1)).toBe(1);
    // Up again: nothing changes.
    expect(vcpuOp(b, b.domU, VCPUOP.up, 1)).toBe(0);
    expect(seen.woken).toEqual([v1]);
    expect(vcpuOp(b, b.domU, VCPUOP.down, 1)).toBe(0);
    expect([v1.runstate, seen.descheduled]).toEqual([RUNSTATE.offline, [v1]]);
    expect(vcpuOp(b, b.domU, VCPUOP.is_up, 1)).toBe(0);
    // Down again: nothing changes.
    expect(vcpuOp(b, b.domU, VCPUOP.down, 1)).toBe(0);
    expect(seen.descheduled).toEqual([v1]);
    expect(b.domU.state).toBe("running");
  });

  it("does not schedule a vCPU brought up in a paused domain", () => {
    const b = setup();
    b.hv.pause(b.domU);
    const seen = spy(b.hv);
    expect(vcpuOp(b, b.domU, VCPUOP.up, 1)).toBe(0);
    expect(b.domU.vcpus[1]!.runstate).toBe(RUNSTATE.runnable);
    expect(seen.woken).toEqual([]);
    b.hv.unpause(b.domU);
    expect(seen.woken).toContain(b.domU.vcpus[1]);
  });

  it("lets vCPU 1 take vCPU 0 down while vCPU 1 is up", () => {
    const b = setup();
    vcpuOp(b, b.domU, VCPUOP.up, 1);
    expect(vcpuOp(b, b.domU, VCPUOP.down, 0, undefined, {}, 1)).toBe(0);
    expect(b.domU.vcpus[0]!.runstate).toBe(RUNSTATE.offline);
    expect(b.domU.state).toBe("running");
  });

  it("powers the domain off when its last vCPU that is up goes down, as Xen does", () => {
    const b = setup();
    const seen = spy(b.hv);
    expect(vcpuOp(b, b.domU, VCPUOP.down, 0)).toBe(0);
    expect([b.domU.state, b.domU.shutdownReason]).toEqual(["shutdown", SHUTDOWN.poweroff]);
    expect(seen.descheduled).toContain(b.domU.vcpus[0]);
  });

  it("reports the runstate and the time spent in each state", () => {
    const b = setup();
    const a = b.args(b.domU);
    const va = a.alloc(vcpu_runstate_info.size);
    b.hv.advanceTo(MS);
    b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block);
    b.hv.advanceTo(3 * MS);
    expect(b.call(b.domU, HYPERVISOR.vcpu_op, VCPUOP.get_runstate_info, 0, va)).toBe(0);
    const r0 = a.get(vcpu_runstate_info, va);
    expect(r0.state).toBe(RUNSTATE.blocked);
    expect(r0.state_entry_time).toBe(BigInt(MS));
    expect(r0.time).toEqual([0n, BigInt(MS), BigInt(2 * MS), 0n]); // running, runnable, blocked, offline
    // vCPU 1 has been offline since the domain was created.
    expect(b.call(b.domU, HYPERVISOR.vcpu_op, VCPUOP.get_runstate_info, 1, va)).toBe(0);
    const r1 = a.get(vcpu_runstate_info, va);
    expect([r1.state, r1.state_entry_time, r1.time]).toEqual([RUNSTATE.offline, 0n, [0n, 0n, 0n, BigInt(3 * MS)]]);
  });

  it.each([
    ["unmapped", UNMAPPED],
    ["running off the end of RAM", BED_PAGES * PAGE_SIZE - 8],
  ])("answers -EFAULT for a runstate buffer %s", (_what, va) => {
    const b = setup();
    expect(b.call(b.domU, HYPERVISOR.vcpu_op, VCPUOP.get_runstate_info, 0, va)).toBe(-EFAULT);
  });

  describe("periodic timer", () => {
    it("raises VIRQ_TIMER every period until stopped", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      const v = b.domU.vcpus[0]!;
      expect(vcpuOp(b, b.domU, VCPUOP.set_periodic_timer, 0, vcpu_set_periodic_timer, { period_ns: BigInt(MS) })).toBe(0);
      expect([v.periodicPeriod, v.periodicNext, b.hv.nextDeadline()]).toEqual([MS, MS, MS]);
      for (let i = 1; i <= 4; i++) {
        b.hv.advanceTo(i * MS - MS / 2);
        expect(isPending(b.hv, b.domU, port)).toBe(false);
        b.hv.advanceTo(i * MS);
        expect(isPending(b.hv, b.domU, port)).toBe(true);
        consume(b.hv, b.domU, port);
      }
      expect(vcpuOp(b, b.domU, VCPUOP.stop_periodic_timer, 0)).toBe(0);
      expect(v.periodicPeriod).toBeUndefined();
      expect(b.hv.nextDeadline()).toBeUndefined();
      b.hv.advanceTo(10 * MS);
      expect(isPending(b.hv, b.domU, port)).toBe(false);
    });

    it("wakes a blocked vCPU at each tick", () => {
      const b = setup();
      bindVirq(b, b.domU, VIRQ.TIMER);
      const v = b.domU.vcpus[0]!;
      vcpuOp(b, b.domU, VCPUOP.set_periodic_timer, 0, vcpu_set_periodic_timer, { period_ns: BigInt(2 * MS) });
      const seen = spy(b.hv);
      for (let i = 1; i <= 3; i++) {
        b.call(b.domU, HYPERVISOR.sched_op, SCHEDOP.block);
        expect(v.runstate).toBe(RUNSTATE.blocked);
        b.hv.advanceTo(i * 2 * MS);
        expect(v.runstate).toBe(RUNSTATE.runnable);
        // The guest's upcall handles the event.
        UPCALL_PENDING.set(sharedInfo(b.hv, b.domU), VCPU_INFO.at(0, 0), 0);
        vcpu_info.fields.evtchn_pending_sel.set(sharedInfo(b.hv, b.domU), VCPU_INFO.at(0, 0), 0n);
        for (let w = 0; w < 64; w++) PENDING.element.set(sharedInfo(b.hv, b.domU), PENDING.at(0, w), 0n);
      }
      expect(seen.woken).toEqual([v, v, v]);
    });

    it("may be set on another vCPU, which hears it on its own port", () => {
      const b = setup();
      const p0 = bindVirq(b, b.domU, VIRQ.TIMER, 0);
      const p1 = bindVirq(b, b.domU, VIRQ.TIMER, 1);
      expect(vcpuOp(b, b.domU, VCPUOP.set_periodic_timer, 1, vcpu_set_periodic_timer, { period_ns: BigInt(MS) })).toBe(0);
      b.hv.advanceTo(MS);
      expect([isPending(b.hv, b.domU, p0), isPending(b.hv, b.domU, p1)]).toEqual([false, true]);
    });

    it.each([
      ["0", 0n, -EINVAL],
      ["just under 1 ms", BigInt(MS - 1), -EINVAL],
    ])("refuses a period of %s", (_what, period, rc) => {
      const b = setup();
      expect(vcpuOp(b, b.domU, VCPUOP.set_periodic_timer, 0, vcpu_set_periodic_timer, { period_ns: period })).toBe(rc);
      expect(b.domU.vcpus[0]!.periodicPeriod).toBeUndefined();
    });

    it("answers -EFAULT for an unreadable argument", () => {
      const b = setup();
      expect(b.call(b.domU, HYPERVISOR.vcpu_op, VCPUOP.set_periodic_timer, 0, UNMAPPED)).toBe(-EFAULT);
      expect(b.domU.vcpus[0]!.periodicPeriod).toBeUndefined();
    });
  });

  describe("single-shot timer", () => {
    const set = (b: Bed, at: number, flags = 0, target = 0, from = 0) =>
      vcpuOp(b, b.domU, VCPUOP.set_singleshot_timer, target, vcpu_set_singleshot_timer, { timeout_abs_ns: BigInt(at), flags }, from);

    it("raises VIRQ_TIMER at the deadline", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      expect(set(b, 4 * MS, VCPU_SSHOTTMR.future)).toBe(0);
      expect(b.domU.vcpus[0]!.singleshotDeadline).toBe(4 * MS);
      b.hv.advanceTo(4 * MS - 1);
      expect(isPending(b.hv, b.domU, port)).toBe(false);
      b.hv.advanceTo(4 * MS);
      expect(isPending(b.hv, b.domU, port)).toBe(true);
    });

    it("refuses another vCPU's timer with -EINVAL", () => {
      const b = setup();
      vcpuOp(b, b.domU, VCPUOP.up, 1);
      expect(set(b, 4 * MS, 0, 1, 0)).toBe(-EINVAL);
      expect(vcpuOp(b, b.domU, VCPUOP.stop_singleshot_timer, 1)).toBe(-EINVAL);
      expect(b.domU.vcpus[1]!.singleshotDeadline).toBeUndefined();
      // From vCPU 1 itself it is allowed.
      expect(set(b, 4 * MS, 0, 1, 1)).toBe(0);
      expect(b.domU.vcpus[1]!.singleshotDeadline).toBe(4 * MS);
    });

    it("answers -ETIME for a past time with VCPU_SSHOTTMR_future, raising nothing", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      b.hv.advanceTo(5 * MS);
      expect(set(b, 5 * MS - 1, VCPU_SSHOTTMR.future)).toBe(-ETIME);
      expect(isPending(b.hv, b.domU, port)).toBe(false);
      expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
    });

    it("raises VIRQ_TIMER at once for a past time without the flag, cancelling an armed timer", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      b.hv.advanceTo(5 * MS);
      set(b, 9 * MS);
      expect(set(b, MS)).toBe(0);
      expect(isPending(b.hv, b.domU, port)).toBe(true);
      expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
      consume(b.hv, b.domU, port);
      b.hv.advanceTo(10 * MS);
      expect(isPending(b.hv, b.domU, port)).toBe(false);
    });

    it("accepts the current time with VCPU_SSHOTTMR_future (it is not in the past)", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      b.hv.advanceTo(5 * MS);
      expect(set(b, 5 * MS, VCPU_SSHOTTMR.future)).toBe(0);
      b.hv.advanceTo(5 * MS);
      expect(isPending(b.hv, b.domU, port)).toBe(true);
    });

    it("is cancelled by VCPUOP_stop_singleshot_timer", () => {
      const b = setup();
      const port = bindVirq(b, b.domU, VIRQ.TIMER);
      set(b, 2 * MS);
      expect(vcpuOp(b, b.domU, VCPUOP.stop_singleshot_timer, 0)).toBe(0);
      expect(b.domU.vcpus[0]!.singleshotDeadline).toBeUndefined();
      b.hv.advanceTo(3 * MS);
      expect(isPending(b.hv, b.domU, port)).toBe(false);
    });

    it("answers -EFAULT for an unreadable argument", () => {
      const b = setup();
      expect(b.call(b.domU, HYPERVISOR.vcpu_op, VCPUOP.set_singleshot_timer, 0, UNMAPPED)).toBe(-EFAULT);
    });
  });

  it.each([99, VCPUOP.register_vcpu_info + 100])("answers -ENOSYS for unknown command %i", (cmd) => {
    const b = setup();
    expect(b.call(b.domU, HYPERVISOR.vcpu_op, cmd, 0, 0)).toBe(-ENOSYS);
  });
});
