import { afterEach, describe, expect, it } from "vitest";
import {
  DOMID,
  EVTCHNOP,
  EVTCHNSTAT,
  HYPERVISOR,
  NR,
  PAGE_SIZE,
  RUNSTATE,
  SHUTDOWN,
  VIRQ,
  XEN_ERRNO,
  decodeStruct,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_unmask,
  shared_info,
  vcpu_info,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import type { Domain, Hypervisor, Vcpu } from "@pvkit/hypervisor";
import { evtchnInvariants, localEventsPending, pollSatisfied, portState, portsInUse, sendVirq, virqIsGlobal } from "../src/event-channel.js";
import { bed, expectInvariants, makeDomain, type Bed } from "./bed.js";

const { EINVAL, ESRCH, EPERM, ENOENT, EEXIST, ENOSPC, EFAULT, ENOSYS, EBUSY } = XEN_ERRNO;

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

// ---------------------------------------------------------------------------
// Issuing EVTCHNOPs the way a guest does: a struct in its memory, its address in a register.

function op<L extends StructLayout>(b: Bed, d: Domain, cmd: number, layout: L, values: Partial<StructValue<L>>): { rc: number; out: StructValue<L> } {
  const a = b.args(d);
  const va = a.put(layout, values);
  const rc = b.call(d, HYPERVISOR.event_channel_op, cmd, va);
  return { rc, out: a.get(layout, va) };
}

function ok<L extends StructLayout>(b: Bed, d: Domain, cmd: number, layout: L, values: Partial<StructValue<L>>): StructValue<L> {
  const { rc, out } = op(b, d, cmd, layout, values);
  expect(rc).toBe(0);
  return out;
}

const allocUnbound = (b: Bed, d: Domain, remote: number, dom: number = DOMID.SELF) => ok(b, d, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom, remote_dom: remote }).port;
const bindInterdomain = (b: Bed, d: Domain, remoteDom: number, remotePort: number) =>
  ok(b, d, EVTCHNOP.bind_interdomain, evtchn_bind_interdomain, { remote_dom: remoteDom, remote_port: remotePort }).local_port;
const bindVirq = (b: Bed, d: Domain, virq: number, vcpu = 0) => ok(b, d, EVTCHNOP.bind_virq, evtchn_bind_virq, { virq, vcpu }).port;
const bindIpi = (b: Bed, d: Domain, vcpu = 0) => ok(b, d, EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu }).port;
const send = (b: Bed, d: Domain, port: number) => op(b, d, EVTCHNOP.send, evtchn_send, { port }).rc;
const close = (b: Bed, d: Domain, port: number) => op(b, d, EVTCHNOP.close, evtchn_close, { port }).rc;
const unmask = (b: Bed, d: Domain, port: number) => op(b, d, EVTCHNOP.unmask, evtchn_unmask, { port }).rc;
const bindVcpu = (b: Bed, d: Domain, port: number, vcpu: number) => op(b, d, EVTCHNOP.bind_vcpu, evtchn_bind_vcpu, { port, vcpu }).rc;
const status = (b: Bed, caller: Domain, dom: number, port: number) => op(b, caller, EVTCHNOP.status, evtchn_status, { dom, port });

/** `server` offers a port to `client`, which binds to it. The client's new port is left pending, as Xen leaves it. */
function connect(b: Bed, server: Domain, client: Domain): { serverPort: number; clientPort: number } {
  const serverPort = allocUnbound(b, server, client.domid);
  const clientPort = bindInterdomain(b, client, server.domid, serverPort);
  return { serverPort, clientPort };
}

/** Allocates unbound ports in `d` until the next free port is `port`. */
function fillTo(b: Bed, d: Domain, port: number): void {
  for (let p = portsInUse(b.hv, d).length + 1; p < port; p++) allocUnbound(b, d, DOMID.SELF);
}

// ---------------------------------------------------------------------------
// Reading a domain's shared_info page as the guest sees it.

const PENDING = shared_info.fields.evtchn_pending;
const MASK = shared_info.fields.evtchn_mask;
const VCPU_INFO = shared_info.fields.vcpu_info;
const SEL = vcpu_info.fields.evtchn_pending_sel;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending;
const UPCALL_MASK = vcpu_info.fields.evtchn_upcall_mask;

const sharedInfo = (hv: Hypervisor, d: Domain) => new DataView(hv.machine.buffer, d.sharedInfoMfn * PAGE_SIZE, PAGE_SIZE);
const pendingWord = (hv: Hypervisor, d: Domain, w: number) => PENDING.element.get(sharedInfo(hv, d), PENDING.at(0, w));
const sel = (hv: Hypervisor, d: Domain, vcpu: number) => SEL.get(sharedInfo(hv, d), VCPU_INFO.at(0, vcpu));
const upcall = (hv: Hypervisor, d: Domain, vcpu: number) => UPCALL_PENDING.get(sharedInfo(hv, d), VCPU_INFO.at(0, vcpu));

/** Every port whose bit is set in a bitmap (pending or mask). */
function bitsSet(hv: Hypervisor, d: Domain, field: typeof PENDING): number[] {
  const out: number[] = [];
  for (let w = 0; w < 64; w++) {
    const word = field.element.get(sharedInfo(hv, d), field.at(0, w));
    for (let bit = 0; bit < 64; bit++) if ((word >> BigInt(bit)) & 1n) out.push(w * 64 + bit);
  }
  return out;
}
const pendingPorts = (hv: Hypervisor, d: Domain) => bitsSet(hv, d, PENDING);

/** The guest masks a port by setting its bit in shared_info. */
function guestMask(hv: Hypervisor, d: Domain, port: number): void {
  const view = sharedInfo(hv, d);
  const at = MASK.at(0, port >> 6);
  MASK.element.set(view, at, MASK.element.get(view, at) | (1n << BigInt(port & 63)));
}

/** The guest has handled everything: no pending bits, selectors or upcall flags. */
function consumeAll(hv: Hypervisor, d: Domain): void {
  const view = sharedInfo(hv, d);
  for (let w = 0; w < 64; w++) PENDING.element.set(view, PENDING.at(0, w), 0n);
  for (const v of d.vcpus) {
    SEL.set(view, VCPU_INFO.at(0, v.id), 0n);
    UPCALL_PENDING.set(view, VCPU_INFO.at(0, v.id), 0);
  }
}

/** The guest enables upcalls on `v` (the bed starts them masked, as Xen does). */
const enableUpcalls = (hv: Hypervisor, v: Vcpu) => UPCALL_MASK.set(sharedInfo(hv, v.domain), VCPU_INFO.at(0, v.id), 0);

/** Records the engine hooks. */
function hooks(hv: Hypervisor): { woken: Vcpu[]; descheduled: Vcpu[] } {
  const seen = { woken: [] as Vcpu[], descheduled: [] as Vcpu[] };
  hv.hooks = { wake: (v) => seen.woken.push(v), deschedule: (v) => seen.descheduled.push(v) };
  return seen;
}

// ---------------------------------------------------------------------------

describe("EVTCHNOP_alloc_unbound", () => {
  it("hands out the lowest free port from 1, unbound and offered to the named domain", () => {
    const b = setup();
    const [d1] = b.domUs;
    expect(allocUnbound(b, d1!, 2)).toBe(1);
    expect(allocUnbound(b, d1!, 0)).toBe(2);
    expect(portState(b.hv, d1!, 1)).toMatchObject({ status: EVTCHNSTAT.unbound, remoteDomid: 2, vcpu: 0, pending: false });
    expect(status(b, d1!, DOMID.SELF, 2).out).toMatchObject({ status: EVTCHNSTAT.unbound, unbound_dom: 0, vcpu: 0 });
    expect(portState(b.hv, d1!, 0)).toBeUndefined(); // port 0 is reserved
  });

  it("resolves a remote DOMID_SELF to the caller, even when allocating in another domain", () => {
    const b = setup();
    expect(allocUnbound(b, b.domU, DOMID.SELF)).toBe(1);
    expect(portState(b.hv, b.domU, 1)).toMatchObject({ remoteDomid: 1 });
    // dom0 allocates in domU 1 on its behalf: DOMID_SELF is dom0, the caller.
    expect(allocUnbound(b, b.dom0, DOMID.SELF, 1)).toBe(2);
    expect(portState(b.hv, b.domU, 2)).toMatchObject({ status: EVTCHNSTAT.unbound, remoteDomid: 0 });
    expect(portsInUse(b.hv, b.dom0)).toEqual([]);
  });

  it.each([
    ["a domain that does not exist", 9, -ESRCH],
    ["another domain, unprivileged", 2, -EPERM],
  ])("refuses to allocate in %s", (_what, dom, errno) => {
    const b = setup();
    expect(op(b, b.domU, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom, remote_dom: 0 }).rc).toBe(errno);
    for (const d of b.hv.domains.values()) expect(portsInUse(b.hv, d)).toEqual([]);
  });

  it("refuses a dying domain with -EINVAL (no new ports once dying)", () => {
    const b = setup();
    const d2 = b.domUs[1]!;
    d2.state = "dying";
    expect(op(b, b.dom0, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom: 2, remote_dom: 0 }).rc).toBe(-EINVAL);
    d2.state = "running";
    expect(portsInUse(b.hv, d2)).toEqual([]);
  });
});

describe("EVTCHNOP_bind_interdomain", () => {
  it("connects both ends symmetrically and leaves the new local port pending", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const serverPort = allocUnbound(b, d1, 2);
    const clientPort = bindInterdomain(b, d2, 1, serverPort);
    expect(clientPort).toBe(1);
    expect(status(b, d1, DOMID.SELF, serverPort).out).toMatchObject({ status: EVTCHNSTAT.interdomain, interdomain_dom: 2, interdomain_port: clientPort });
    expect(status(b, d2, DOMID.SELF, clientPort).out).toMatchObject({ status: EVTCHNSTAT.interdomain, interdomain_dom: 1, interdomain_port: serverPort });
    // Xen marks the binder's port pending in case a send on the unbound end was dropped.
    expect(pendingPorts(b.hv, d2)).toEqual([clientPort]);
    expect([sel(b.hv, d2, 0), upcall(b.hv, d2, 0)]).toEqual([1n, 1]);
    expect(pendingPorts(b.hv, d1)).toEqual([]);
  });

  it("connects a domain to itself (loopback) and signals each end from the other", () => {
    const b = setup();
    const a = allocUnbound(b, b.domU, DOMID.SELF);
    const c = bindInterdomain(b, b.domU, DOMID.SELF, a);
    expect([a, c]).toEqual([1, 2]);
    consumeAll(b.hv, b.domU);
    expect(send(b, b.domU, a)).toBe(0);
    expect(pendingPorts(b.hv, b.domU)).toEqual([c]);
    expect(send(b, b.domU, c)).toBe(0);
    expect(pendingPorts(b.hv, b.domU)).toEqual([a, c]);
    expect(close(b, b.domU, c)).toBe(0);
    expect(portState(b.hv, b.domU, a)).toMatchObject({ status: EVTCHNSTAT.unbound, remoteDomid: 1 });
  });

  it.each<[string, (b: Bed) => { dom: number; port: number }, number]>([
    ["a remote domain that does not exist", () => ({ dom: 9, port: 1 }), -ESRCH],
    ["a port offered to another domain", (b) => ({ dom: 1, port: allocUnbound(b, b.domU, 0) }), -EINVAL],
    ["a closed port", () => ({ dom: 1, port: 10 }), -EINVAL],
    ["reserved port 0", () => ({ dom: 1, port: 0 }), -EINVAL],
    ["a port past the valid range", () => ({ dom: 1, port: 5000 }), -EINVAL],
    ["a port past 2^31", () => ({ dom: 1, port: 0xffffffff }), -EINVAL],
    ["a virq port", (b) => ({ dom: 1, port: bindVirq(b, b.domU, VIRQ.TIMER) }), -EINVAL],
    ["a port already connected", (b) => ({ dom: 1, port: connect(b, b.domU, b.domUs[1]!).serverPort }), -EINVAL],
  ])("refuses %s, allocating nothing", (_what, target, errno) => {
    const b = setup();
    const d2 = b.domUs[1]!;
    const { dom, port } = target(b);
    const before = portsInUse(b.hv, d2).length;
    expect(op(b, d2, EVTCHNOP.bind_interdomain, evtchn_bind_interdomain, { remote_dom: dom, remote_port: port }).rc).toBe(errno);
    expect(portsInUse(b.hv, d2).length).toBe(before);
  });
});

describe("EVTCHNOP_bind_virq", () => {
  it("binds a per-vCPU virq once on each vCPU and a global one on vCPU 0", () => {
    const b = setup();
    const t0 = bindVirq(b, b.domU, VIRQ.TIMER, 0);
    const t1 = bindVirq(b, b.domU, VIRQ.TIMER, 1);
    const con = bindVirq(b, b.domU, VIRQ.CONSOLE, 0);
    const exc = bindVirq(b, b.dom0, VIRQ.DOM_EXC, 0);
    expect([t0, t1, con, exc]).toEqual([1, 2, 3, 1]);
    expect(status(b, b.domU, DOMID.SELF, t1).out).toMatchObject({ status: EVTCHNSTAT.virq, virq: VIRQ.TIMER, vcpu: 1 });
    expect(status(b, b.dom0, DOMID.SELF, exc).out).toMatchObject({ status: EVTCHNSTAT.virq, virq: VIRQ.DOM_EXC, vcpu: 0 });
  });

  it.each<[string, number, number, number, ((b: Bed) => void)?]>([
    ["virq NR_VIRQS", NR.VIRQS, 0, -EINVAL],
    ["virq 0xffffffff", 0xffffffff, 0, -EINVAL],
    ["a global virq on vCPU 1", VIRQ.CONSOLE, 1, -EINVAL],
    ["a global virq on a vCPU that does not exist", VIRQ.DOM_EXC, 7, -EINVAL],
    ["a per-vCPU virq on a vCPU that does not exist", VIRQ.TIMER, 2, -ENOENT],
    ["a per-vCPU virq on vCPU 0xffffffff", VIRQ.TIMER, 0xffffffff, -ENOENT],
    ["a per-vCPU virq bound twice on one vCPU", VIRQ.TIMER, 1, -EEXIST, (b) => bindVirq(b, b.domU, VIRQ.TIMER, 1)],
    ["a global virq bound twice", VIRQ.DOM_EXC, 0, -EEXIST, (b) => bindVirq(b, b.domU, VIRQ.DOM_EXC, 0)],
  ])("refuses %s", (_what, virq, vcpu, errno, before) => {
    const b = setup();
    before?.(b);
    const open = portsInUse(b.hv, b.domU).length;
    expect(op(b, b.domU, EVTCHNOP.bind_virq, evtchn_bind_virq, { virq, vcpu }).rc).toBe(errno);
    expect(portsInUse(b.hv, b.domU).length).toBe(open);
  });

  it.each([
    [VIRQ.TIMER, false],
    [VIRQ.DEBUG, false],
    [VIRQ.XENOPROF, false],
    [VIRQ.XENPMU, false],
    [VIRQ.CONSOLE, true],
    [VIRQ.DOM_EXC, true],
    [VIRQ.ARCH_0, true],
  ])("classifies virq %i as global: %s (Xen's virq_is_global on x86)", (virq, global) => {
    expect(virqIsGlobal(virq)).toBe(global);
  });
});

describe("EVTCHNOP_bind_ipi", () => {
  it("binds a port to a vCPU of the caller", () => {
    const b = setup();
    const p = bindIpi(b, b.domU, 1);
    expect(status(b, b.domU, DOMID.SELF, p).out).toMatchObject({ status: EVTCHNSTAT.ipi, vcpu: 1 });
  });

  it("refuses a vCPU that does not exist with -ENOENT", () => {
    const b = setup();
    expect(op(b, b.domU, EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu: 2 }).rc).toBe(-ENOENT);
    expect(portsInUse(b.hv, b.domU)).toEqual([]);
  });
});

describe("EVTCHNOP_send and 2-level delivery", () => {
  it("sets the port's bit, the word's selector bit and the upcall flag in the receiver's shared_info", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    fillTo(b, d2, 100);
    const { serverPort, clientPort } = connect(b, d2, d1);
    expect(serverPort).toBe(100); // word 1, bit 36
    consumeAll(b.hv, d1);
    expect(send(b, d1, clientPort)).toBe(0);
    const si = decodeStruct(shared_info, sharedInfo(b.hv, d2));
    expect(si.evtchn_pending).toEqual(Array.from({ length: 64 }, (_, w) => (w === 1 ? 1n << 36n : 0n)));
    expect(si.vcpu_info[0]!.evtchn_pending_sel).toBe(1n << 1n);
    expect(si.vcpu_info[0]!.evtchn_upcall_pending).toBe(1);
    expect(si.vcpu_info[1]!.evtchn_pending_sel).toBe(0n);
    expect(si.vcpu_info[1]!.evtchn_upcall_pending).toBe(0);
    // The same bit seen as 32-bit words: port 100 is bit 4 of word 3.
    expect(sharedInfo(b.hv, d2).getUint32(PENDING.offset + 3 * 4, true)).toBe(1 << 4);
    // Nothing landed in the sender's page.
    expect(pendingPorts(b.hv, d1)).toEqual([]);
  });

  it.each([1, 31, 32, 63, 64, 127, 4095])("puts port %i at bit p%%64 of word p/64 and selects word p/64", (port) => {
    const b = setup();
    fillTo(b, b.domU, port);
    expect(bindIpi(b, b.domU, 0)).toBe(port);
    expect(send(b, b.domU, port)).toBe(0);
    expect(pendingWord(b.hv, b.domU, port >> 6)).toBe(1n << BigInt(port & 63));
    expect(pendingPorts(b.hv, b.domU)).toEqual([port]);
    expect(sel(b.hv, b.domU, 0)).toBe(1n << BigInt(port >> 6));
    expect(sharedInfo(b.hv, b.domU).getUint32(PENDING.offset + (port >> 5) * 4, true)).toBe((1 << (port & 31)) >>> 0);
  });

  it("records the send and the delivery in the trace at the current time", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d2, d1);
    b.hv.advanceTo(1234);
    const from = b.hv.trace.records.length;
    send(b, d1, clientPort);
    const evtchn = b.hv.trace.records.slice(from).filter((r) => r.kind.startsWith("evtchn"));
    expect(evtchn).toEqual([
      { t: 1234, kind: "evtchn_send", domid: 1, port: clientPort, toDomid: 2, toPort: serverPort },
      { t: 1234, kind: "evtchn_pending", domid: 2, port: serverPort, vcpu: 0, upcall: true },
    ]);
  });

  it("does nothing more for a port already pending, and raises no second upcall within a selected word", () => {
    const b = setup();
    const seen = hooks(b.hv);
    const p1 = bindIpi(b, b.domU);
    const p2 = bindIpi(b, b.domU);
    send(b, b.domU, p1);
    const records = b.hv.trace.records.length;
    send(b, b.domU, p1);
    expect(b.hv.trace.records.slice(records).filter((r) => r.kind === "evtchn_pending")).toEqual([]);
    send(b, b.domU, p2);
    expect(b.hv.trace.records.at(-2)).toMatchObject({ kind: "evtchn_pending", port: p2, upcall: false });
    expect(pendingPorts(b.hv, b.domU)).toEqual([p1, p2]);
    expect(seen.woken).toEqual([]); // vCPU 0 was never blocked
  });

  it("leaves a masked port pending without selector or upcall; unmasking delivers it", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d2, d1);
    guestMask(b.hv, d2, serverPort);
    expect(send(b, d1, clientPort)).toBe(0);
    expect(pendingPorts(b.hv, d2)).toEqual([serverPort]);
    expect([sel(b.hv, d2, 0), upcall(b.hv, d2, 0)]).toEqual([0n, 0]);
    expect(b.hv.trace.records.at(-2)).toMatchObject({ kind: "evtchn_pending", domid: 2, port: serverPort, upcall: false });
    expect(unmask(b, d2, serverPort)).toBe(0);
    expect(bitsSet(b.hv, d2, MASK)).toEqual([]);
    expect([sel(b.hv, d2, 0), upcall(b.hv, d2, 0)]).toEqual([1n, 1]);
  });

  it("drops a send on an unbound port silently", () => {
    const b = setup();
    const p = allocUnbound(b, b.domU, 2);
    expect(send(b, b.domU, p)).toBe(0);
    for (const d of b.hv.domains.values()) expect(pendingPorts(b.hv, d)).toEqual([]);
  });

  it("delivers an IPI to the vCPU it was bound to", () => {
    const b = setup();
    const p = bindIpi(b, b.domU, 1);
    expect(send(b, b.domU, p)).toBe(0);
    expect(pendingPorts(b.hv, b.domU)).toEqual([p]);
    expect([sel(b.hv, b.domU, 1), upcall(b.hv, b.domU, 1)]).toEqual([1n, 1]);
    expect([sel(b.hv, b.domU, 0), upcall(b.hv, b.domU, 0)]).toEqual([0n, 0]);
  });

  it.each<[string, (b: Bed) => number]>([
    ["reserved port 0", () => 0],
    ["a closed port", () => 10],
    ["a port past the valid range", () => 64],
    ["port 4096", () => 4096],
    ["port 0xffffffff", () => 0xffffffff],
    ["a virq port", (b) => bindVirq(b, b.domU, VIRQ.TIMER)],
  ])("refuses to send on %s with -EINVAL", (_what, port) => {
    const b = setup();
    expect(send(b, b.domU, port(b))).toBe(-EINVAL);
    expect(pendingPorts(b.hv, b.domU)).toEqual([]);
  });

  it("lets a domain signal only its own ports: another domain's port number is not its own", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const p = bindIpi(b, d2);
    guestMask(b.hv, d2, p);
    expect(portState(b.hv, d1, p)).toBeUndefined();
    expect(send(b, d1, p)).toBe(-EINVAL);
    expect(close(b, d1, p)).toBe(-EINVAL);
    expect(unmask(b, d1, p)).toBe(0); // d1's own (closed) port p: nothing happens
    expect(pendingPorts(b.hv, d2)).toEqual([]);
    expect(bitsSet(b.hv, d2, MASK)).toEqual([p]);
    expect(portState(b.hv, d2, p)).toMatchObject({ status: EVTCHNSTAT.ipi });
  });
});

describe("EVTCHNOP_bind_vcpu", () => {
  it("moves an interdomain port's notifications to another vCPU", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d2, d1);
    expect(bindVcpu(b, d2, serverPort, 1)).toBe(0);
    send(b, d1, clientPort);
    expect([sel(b.hv, d2, 1), upcall(b.hv, d2, 1), sel(b.hv, d2, 0)]).toEqual([1n, 1, 0n]);
    expect(status(b, d2, DOMID.SELF, serverPort).out.vcpu).toBe(1);
  });

  it("resets the binding to vCPU 0 when the port is freed and reused", () => {
    const b = setup();
    const p = allocUnbound(b, b.domU, 2);
    expect(bindVcpu(b, b.domU, p, 1)).toBe(0);
    expect(close(b, b.domU, p)).toBe(0);
    expect(allocUnbound(b, b.domU, 2)).toBe(p);
    expect(portState(b.hv, b.domU, p)?.vcpu).toBe(0);
  });

  it.each<[string, (b: Bed) => number, number, number]>([
    ["a vCPU that does not exist (checked first)", () => 5000, 2, -ENOENT],
    ["a port past the valid range", () => 5000, 1, -EINVAL],
    ["a closed port", () => 7, 1, -EINVAL],
    ["reserved port 0", () => 0, 1, -EINVAL],
    ["an IPI port", (b) => bindIpi(b, b.domU, 0), 1, -EINVAL],
    ["a per-vCPU virq port", (b) => bindVirq(b, b.domU, VIRQ.TIMER, 0), 1, -EINVAL],
  ])("refuses %s", (_what, port, vcpu, errno) => {
    const b = setup();
    const p = port(b);
    expect(bindVcpu(b, b.domU, p, vcpu)).toBe(errno);
    expect(portState(b.hv, b.domU, p)?.vcpu ?? 0).toBe(0);
  });
});

describe("EVTCHNOP_close", () => {
  it("returns an interdomain peer to unbound, offered back to the closer, who may bind again", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d1, d2);
    expect(pendingPorts(b.hv, d2)).toEqual([clientPort]);
    expect(close(b, d2, clientPort)).toBe(0);
    expect(portState(b.hv, d2, clientPort)).toBeUndefined();
    expect(pendingPorts(b.hv, d2)).toEqual([]); // freeing a port clears its pending bit
    expect(status(b, d1, DOMID.SELF, serverPort).out).toMatchObject({ status: EVTCHNSTAT.unbound, unbound_dom: 2 });
    expect(send(b, d1, serverPort)).toBe(0); // dropped: nobody is connected
    expect(bindInterdomain(b, d2, 1, serverPort)).toBe(clientPort);
    expect(portState(b.hv, d1, serverPort)).toMatchObject({ status: EVTCHNSTAT.interdomain, remoteDomid: 2, remotePort: clientPort });
  });

  it("frees a virq port and its vCPU's table entry, so the virq can be bound again", () => {
    const b = setup();
    const p = bindVirq(b, b.domU, VIRQ.TIMER, 1);
    expect(close(b, b.domU, p)).toBe(0);
    expect(bindVirq(b, b.domU, VIRQ.TIMER, 1)).toBe(p);
  });

  it.each([
    ["reserved port 0", 0],
    ["a closed port", 63],
    ["a port past the valid range", 64],
    ["port 4096", 4096],
  ])("refuses %s with -EINVAL", (_what, port) => {
    const b = setup();
    allocUnbound(b, b.domU, 2);
    expect(close(b, b.domU, port)).toBe(-EINVAL);
    expect(portsInUse(b.hv, b.domU).map((s) => s.port)).toEqual([1]);
  });

  it("refuses a second close of the same port", () => {
    const b = setup();
    const p = bindIpi(b, b.domU);
    expect(close(b, b.domU, p)).toBe(0);
    expect(close(b, b.domU, p)).toBe(-EINVAL);
  });
});

describe("EVTCHNOP_status", () => {
  it("reports a closed port inside the valid range, and refuses one past it", () => {
    const b = setup();
    expect(status(b, b.domU, DOMID.SELF, 63)).toMatchObject({ rc: 0, out: { status: EVTCHNSTAT.closed, vcpu: 0 } });
    expect(status(b, b.domU, DOMID.SELF, 64).rc).toBe(-EINVAL);
    fillTo(b, b.domU, 65); // ports 1..64: the second bucket of 64 becomes valid
    expect(status(b, b.domU, DOMID.SELF, 127)).toMatchObject({ rc: 0, out: { status: EVTCHNSTAT.closed } });
    expect(status(b, b.domU, DOMID.SELF, 128).rc).toBe(-EINVAL);
  });

  it("lets a privileged domain ask about any domain, and a domain about itself by domid", () => {
    const b = setup();
    const p = bindIpi(b, b.domU, 1);
    expect(status(b, b.dom0, 1, p).out).toMatchObject({ status: EVTCHNSTAT.ipi, vcpu: 1 });
    expect(status(b, b.domU, 1, p).out).toMatchObject({ status: EVTCHNSTAT.ipi, vcpu: 1 });
  });

  it.each([
    ["a domain that does not exist", 9, 1, -ESRCH],
    ["another domain, unprivileged", 2, 1, -EPERM],
    ["a port past the valid range", DOMID.SELF, 4096, -EINVAL],
  ])("refuses %s", (_what, dom, port, errno) => {
    const b = setup();
    bindIpi(b, b.domUs[1]!);
    expect(status(b, b.domU, dom, port).rc).toBe(errno);
  });
});

describe("EVTCHNOP_unmask", () => {
  it("clears the mask of a port not pending without raising anything", () => {
    const b = setup();
    const p = bindIpi(b, b.domU);
    guestMask(b.hv, b.domU, p);
    expect(unmask(b, b.domU, p)).toBe(0);
    expect(bitsSet(b.hv, b.domU, MASK)).toEqual([]);
    expect([sel(b.hv, b.domU, 0), upcall(b.hv, b.domU, 0)]).toEqual([0n, 0]);
  });

  it("re-delivers only when it clears a mask (Xen's test_and_clear_bit)", () => {
    const b = setup();
    const p = bindIpi(b, b.domU);
    send(b, b.domU, p);
    consumeAll(b.hv, b.domU);
    send(b, b.domU, p); // pending, selected
    const view = sharedInfo(b.hv, b.domU);
    SEL.set(view, VCPU_INFO.at(0, 0), 0n);
    UPCALL_PENDING.set(view, VCPU_INFO.at(0, 0), 0);
    expect(unmask(b, b.domU, p)).toBe(0); // the port was not masked
    expect([sel(b.hv, b.domU, 0), upcall(b.hv, b.domU, 0)]).toEqual([0n, 0]);
  });

  it("delivers a pending port to its notify vCPU", () => {
    const b = setup();
    const p = bindIpi(b, b.domU, 1);
    guestMask(b.hv, b.domU, p);
    send(b, b.domU, p);
    expect(sel(b.hv, b.domU, 1)).toBe(0n);
    expect(unmask(b, b.domU, p)).toBe(0);
    expect([sel(b.hv, b.domU, 1), upcall(b.hv, b.domU, 1)]).toEqual([1n, 1]);
  });

  it("leaves a closed port's mask alone, and refuses a port past the valid range", () => {
    const b = setup();
    guestMask(b.hv, b.domU, 5);
    expect(unmask(b, b.domU, 5)).toBe(0);
    expect(bitsSet(b.hv, b.domU, MASK)).toEqual([5]);
    expect(unmask(b, b.domU, 64)).toBe(-EINVAL);
  });
});

describe("EVTCHNOP_reset and domain destruction", () => {
  /** domU 1 with one port of each kind, the interdomain one connected to domU 2. */
  function populated(b: Bed) {
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d2, d1);
    allocUnbound(b, d1, 0);
    bindVirq(b, d1, VIRQ.TIMER, 1);
    bindIpi(b, d1, 0);
    expect(portsInUse(b.hv, d1).map((s) => s.status)).toEqual([EVTCHNSTAT.interdomain, EVTCHNSTAT.unbound, EVTCHNSTAT.virq, EVTCHNSTAT.ipi]);
    return { d1, d2, serverPort, clientPort };
  }

  it("closes every port of the caller, sending interdomain peers back to unbound", () => {
    const b = setup();
    const { d1, d2, serverPort } = populated(b);
    ok(b, d1, EVTCHNOP.reset, evtchn_reset, { dom: DOMID.SELF });
    expect(portsInUse(b.hv, d1)).toEqual([]);
    expect(pendingPorts(b.hv, d1)).toEqual([]);
    expect(portState(b.hv, d2, serverPort)).toMatchObject({ status: EVTCHNSTAT.unbound, remoteDomid: 1 });
    expect(bindVirq(b, d1, VIRQ.TIMER, 1)).toBe(1); // the virq table was emptied too
  });

  it("lets a privileged domain reset another domain while it is paused", () => {
    const b = setup();
    const { d1 } = populated(b);
    expect(op(b, b.dom0, EVTCHNOP.reset, evtchn_reset, { dom: 1 }).rc).toBe(-EINVAL); // running
    expect(portsInUse(b.hv, d1)).toHaveLength(4);
    b.hv.pause(d1);
    expect(op(b, b.dom0, EVTCHNOP.reset, evtchn_reset, { dom: 1 }).rc).toBe(0);
    expect(portsInUse(b.hv, d1)).toEqual([]);
  });

  it.each([
    ["a domain that does not exist", EVTCHNOP.reset, 9, -ESRCH],
    ["another domain, unprivileged", EVTCHNOP.reset, 0, -EPERM],
    ["a continuation with no reset in progress (EVTCHNOP_reset_cont)", 14, DOMID.SELF, -EBUSY],
  ])("refuses %s", (_what, cmd, dom, errno) => {
    const b = setup();
    const p = bindIpi(b, b.dom0);
    expect(op(b, b.domU, cmd, evtchn_reset, { dom }).rc).toBe(errno);
    expect(portState(b.hv, b.dom0, p)).toBeDefined();
  });

  it("closes a destroyed domain's ports; its peers stay unbound, offered to its domid, as on Xen", () => {
    const b = setup();
    const { d1, d2, serverPort } = populated(b);
    const exc = bindVirq(b, b.dom0, VIRQ.DOM_EXC);
    expect(b.hv.destroyDomain(d1)).toBe(0);
    expect(b.hv.domains.has(1)).toBe(false);
    expect(portState(b.hv, d2, serverPort)).toMatchObject({ status: EVTCHNSTAT.unbound, remoteDomid: 1 });
    expect(pendingPorts(b.hv, b.dom0)).toContain(exc); // dom0 heard of it through VIRQ_DOM_EXC
    // A new domain that reuses domid 1 may take the stale offer.
    const again = makeDomain(b.hv, 1, false);
    expect(bindInterdomain(b, again, 2, serverPort)).toBe(1);
  });
});

describe("port exhaustion", () => {
  it("hands out ports 1..4095, then answers -ENOSPC to every allocating command; a freed port is reused first", () => {
    const b = setup();
    const offered = allocUnbound(b, b.dom0, 1);
    for (let p = 1; p < 4096; p++) expect(op(b, b.domU, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom: DOMID.SELF, remote_dom: 0 }).out.port).toBe(p);
    expect(op(b, b.domU, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom: DOMID.SELF, remote_dom: 0 }).rc).toBe(-ENOSPC);
    expect(op(b, b.dom0, EVTCHNOP.alloc_unbound, evtchn_alloc_unbound, { dom: 1, remote_dom: 0 }).rc).toBe(-ENOSPC);
    expect(op(b, b.domU, EVTCHNOP.bind_virq, evtchn_bind_virq, { virq: VIRQ.TIMER, vcpu: 0 }).rc).toBe(-ENOSPC);
    expect(op(b, b.domU, EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu: 0 }).rc).toBe(-ENOSPC);
    expect(op(b, b.domU, EVTCHNOP.bind_interdomain, evtchn_bind_interdomain, { remote_dom: 0, remote_port: offered }).rc).toBe(-ENOSPC);
    expect(portState(b.hv, b.dom0, offered)).toMatchObject({ status: EVTCHNSTAT.unbound });
    expect(status(b, b.domU, DOMID.SELF, 4095).out.status).toBe(EVTCHNSTAT.unbound);
    expect(close(b, b.domU, 2345)).toBe(0);
    expect(close(b, b.domU, 1234)).toBe(0);
    expect(bindIpi(b, b.domU)).toBe(1234);
    expect(bindIpi(b, b.domU)).toBe(2345);
    expect(op(b, b.domU, EVTCHNOP.bind_ipi, evtchn_bind_ipi, { vcpu: 0 }).rc).toBe(-ENOSPC);
  });
});

describe("guest memory faults and other commands", () => {
  const layouts: [string, number, StructLayout][] = [
    ["alloc_unbound", EVTCHNOP.alloc_unbound, evtchn_alloc_unbound],
    ["bind_interdomain", EVTCHNOP.bind_interdomain, evtchn_bind_interdomain],
    ["bind_virq", EVTCHNOP.bind_virq, evtchn_bind_virq],
    ["bind_pirq", EVTCHNOP.bind_pirq, evtchn_bind_pirq],
    ["close", EVTCHNOP.close, evtchn_close],
    ["send", EVTCHNOP.send, evtchn_send],
    ["status", EVTCHNOP.status, evtchn_status],
    ["bind_ipi", EVTCHNOP.bind_ipi, evtchn_bind_ipi],
    ["bind_vcpu", EVTCHNOP.bind_vcpu, evtchn_bind_vcpu],
    ["unmask", EVTCHNOP.unmask, evtchn_unmask],
    ["reset", EVTCHNOP.reset, evtchn_reset],
    ["init_control", EVTCHNOP.init_control, evtchn_init_control],
    ["expand_array", EVTCHNOP.expand_array, evtchn_expand_array],
    ["set_priority", EVTCHNOP.set_priority, evtchn_set_priority],
  ];

  it.each(layouts)("%s answers -EFAULT for an argument it cannot read", (_name, cmd, layout) => {
    const b = setup();
    expect(b.call(b.domU, HYPERVISOR.event_channel_op, cmd, 100 * PAGE_SIZE)).toBe(-EFAULT);
    // A struct straddling the end of RAM faults too.
    expect(b.call(b.domU, HYPERVISOR.event_channel_op, cmd, 32 * PAGE_SIZE - layout.size + 1)).toBe(-EFAULT);
    expect(portsInUse(b.hv, b.domU)).toEqual([]);
  });

  it("answers -EFAULT when the result cannot be written back, keeping the port (as Xen does)", () => {
    const b = setup();
    const d = b.domU;
    const mfn = d.pfnToMfn(5)!;
    b.hv.machine.get(mfn);
    d.mappings.set(200, { mfn, writable: false, kind: "grant" }); // pfn 5 again, read-only, at page 200
    b.args(d).put(evtchn_bind_ipi, { vcpu: 1 }, 5 * PAGE_SIZE);
    expect(b.call(d, HYPERVISOR.event_channel_op, EVTCHNOP.bind_ipi, 200 * PAGE_SIZE)).toBe(-EFAULT);
    expect(portsInUse(b.hv, d).map((s) => [s.port, s.status, s.vcpu])).toEqual([[1, EVTCHNSTAT.ipi, 1]]);
    // A command with no result reads through the read-only mapping fine.
    b.args(d).put(evtchn_send, { port: 1 }, 5 * PAGE_SIZE);
    expect(b.call(d, HYPERVISOR.event_channel_op, EVTCHNOP.send, 200 * PAGE_SIZE)).toBe(0);
    expect(pendingPorts(b.hv, d)).toEqual([1]);
    d.mappings.delete(200);
    b.hv.machine.put(mfn);
  });

  it.each<[string, number, StructLayout, Record<string, number>, number]>([
    ["bind_pirq (no physical IRQs)", EVTCHNOP.bind_pirq, evtchn_bind_pirq, { pirq: 3 }, -EINVAL],
    ["init_control (no FIFO ABI)", EVTCHNOP.init_control, evtchn_init_control, { vcpu: 0 }, -ENOSYS],
    ["expand_array (no FIFO ABI)", EVTCHNOP.expand_array, evtchn_expand_array, {}, -ENOSYS],
    ["set_priority on a valid port (2-level has no priorities)", EVTCHNOP.set_priority, evtchn_set_priority, { port: 1, priority: 0 }, -ENOSYS],
    ["set_priority on an invalid port", EVTCHNOP.set_priority, evtchn_set_priority, { port: 4096, priority: 0 }, -EINVAL],
    ["command 15", 15, evtchn_send, {}, -ENOSYS],
    ["command 99", 99, evtchn_send, {}, -ENOSYS],
  ])("answers %s as Xen does", (_what, cmd, layout, values, errno) => {
    const b = setup();
    const va = b.args(b.domU).put(layout, values);
    expect(b.call(b.domU, HYPERVISOR.event_channel_op, cmd, va)).toBe(errno);
    expect(portsInUse(b.hv, b.domU)).toEqual([]);
  });
});

describe("virtual IRQs raised by the hypervisor", () => {
  it("raises VIRQ_TIMER on the vCPU whose single-shot timer fires", () => {
    const b = setup();
    const t0 = bindVirq(b, b.domU, VIRQ.TIMER, 0);
    const t1 = bindVirq(b, b.domU, VIRQ.TIMER, 1);
    const v1 = b.domU.vcpus[1]!;
    v1.singleshotDeadline = 5000;
    b.hv.advanceTo(4999);
    expect(pendingPorts(b.hv, b.domU)).toEqual([]);
    b.hv.advanceTo(5000);
    expect(pendingPorts(b.hv, b.domU)).toEqual([t1]);
    expect([sel(b.hv, b.domU, 1), upcall(b.hv, b.domU, 1), sel(b.hv, b.domU, 0)]).toEqual([1n, 1, 0n]);
    expect(v1.singleshotDeadline).toBeUndefined();
    expect(b.hv.trace.records.at(-1)).toEqual({ t: 5000, kind: "evtchn_pending", domid: 1, port: t1, vcpu: 1, upcall: true });
    expect(t0).not.toBe(t1);
  });

  it("raises VIRQ_TIMER from a periodic timer, and nothing when the virq is not bound", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const t0 = bindVirq(b, d1, VIRQ.TIMER, 0);
    for (const d of [d1, d2]) {
      d.vcpus[0]!.periodicPeriod = 1000;
      d.vcpus[0]!.periodicNext = 1000;
    }
    b.hv.advanceTo(3500);
    expect(pendingPorts(b.hv, d1)).toEqual([t0]);
    expect(pendingPorts(b.hv, d2)).toEqual([]);
    expect([sel(b.hv, d2, 0), upcall(b.hv, d2, 0)]).toEqual([0n, 0]);
  });

  it("raises VIRQ_DOM_EXC in dom0 when a domain shuts down, on the vCPU bind_vcpu chose", () => {
    const b = setup();
    const exc = bindVirq(b, b.dom0, VIRQ.DOM_EXC);
    expect(bindVcpu(b, b.dom0, exc, 1)).toBe(0);
    b.hv.shutdown(b.domU, SHUTDOWN.poweroff);
    expect(pendingPorts(b.hv, b.dom0)).toEqual([exc]);
    expect([sel(b.hv, b.dom0, 1), upcall(b.hv, b.dom0, 1), sel(b.hv, b.dom0, 0)]).toEqual([1n, 1, 0n]);
    // The global virq stays in vCPU 0's table: closing frees it there.
    expect(close(b, b.dom0, exc)).toBe(0);
    expect(bindVirq(b, b.dom0, VIRQ.DOM_EXC, 0)).toBe(exc);
  });

  it("ignores virqs nobody bound, virqs out of range and vCPUs that do not exist", () => {
    const b = setup();
    bindVirq(b, b.domU, VIRQ.TIMER, 0);
    sendVirq(b.hv, b.domU, VIRQ.CONSOLE, 0);
    sendVirq(b.hv, b.domU, VIRQ.TIMER, 1);
    sendVirq(b.hv, b.domU, VIRQ.TIMER, 5);
    sendVirq(b.hv, b.domU, NR.VIRQS, 0);
    sendVirq(b.hv, b.domU, -1, 0);
    expect(pendingPorts(b.hv, b.domU)).toEqual([]);
  });
});

describe("waking vCPUs", () => {
  it("wakes a blocked vCPU when an event raises its upcall", () => {
    const b = setup();
    const seen = hooks(b.hv);
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { clientPort } = connect(b, d2, d1);
    const v = d2.vcpus[0]!;
    enableUpcalls(b.hv, v);
    expect(localEventsPending(b.hv, v)).toBe(false);
    b.hv.block(v);
    expect([v.runstate, seen.descheduled]).toEqual([RUNSTATE.blocked, [v]]);
    send(b, d1, clientPort);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.runnable, [v]]);
    expect(localEventsPending(b.hv, v)).toBe(true);
    // With an upcall waiting, block returns at once.
    b.hv.block(v);
    expect(v.runstate).toBe(RUNSTATE.runnable);
  });

  it("does not wake a blocked vCPU for a masked port", () => {
    const b = setup();
    const seen = hooks(b.hv);
    const p = bindIpi(b, b.domU, 1);
    const v = b.domU.vcpus[1]!;
    b.hv.setRunstate(v, RUNSTATE.running);
    b.hv.block(v);
    guestMask(b.hv, b.domU, p);
    send(b, b.domU, p);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.blocked, []]);
    expect(unmask(b, b.domU, p)).toBe(0);
    expect([v.runstate, seen.woken]).toEqual([RUNSTATE.runnable, [v]]);
  });

  it("wakes a vCPU polling a port when it becomes pending, even masked, and not for other ports", () => {
    const b = setup();
    const seen = hooks(b.hv);
    const p = bindIpi(b, b.domU, 0);
    const q = bindIpi(b, b.domU, 0);
    const r = bindIpi(b, b.domU, 0);
    const [v0, v1] = b.domU.vcpus as [Vcpu, Vcpu];
    b.hv.setRunstate(v1, RUNSTATE.running);
    for (const [v, ports] of [[v0, [p, 4000]], [v1, [r]]] as const) {
      v.poll = { ports, deadline: undefined };
      b.hv.block(v);
      guestMask(b.hv, b.domU, ports[0]);
    }
    expect(pollSatisfied(b.hv, v0)).toBe(false);
    send(b, b.domU, q); // nobody polls q; vCPU 0 gets its selector but stays polling
    expect([v0.runstate, v1.runstate, seen.woken]).toEqual([RUNSTATE.blocked, RUNSTATE.blocked, []]);
    send(b, b.domU, p);
    expect([v0.runstate, v0.poll, seen.woken]).toEqual([RUNSTATE.runnable, undefined, [v0]]);
    expect(v1.runstate).toBe(RUNSTATE.blocked);
    expect(pollSatisfied(b.hv, v1)).toBe(false);
    v0.poll = { ports: [4000, p], deadline: undefined };
    expect(pollSatisfied(b.hv, v0)).toBe(true);
    v0.poll = undefined;
  });
});

describe("queries and the invariant checker", () => {
  it("lists the open ports with what they are bound to and their bits", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d2, d1);
    const t = bindVirq(b, d2, VIRQ.TIMER, 1);
    guestMask(b.hv, d2, t);
    send(b, d1, clientPort);
    expect(portsInUse(b.hv, d2)).toEqual([
      { port: serverPort, vcpu: 0, pending: true, masked: false, status: EVTCHNSTAT.interdomain, remoteDomid: 1, remotePort: clientPort },
      { port: t, vcpu: 1, pending: false, masked: true, status: EVTCHNSTAT.virq, virq: VIRQ.TIMER },
    ]);
    expect(portState(b.hv, d2, 4096)).toBeUndefined();
  });

  it("finds broken symmetry, a miscounted table and a lost virq binding", () => {
    const b = setup();
    const [d1, d2] = b.domUs as [Domain, Domain];
    const { serverPort, clientPort } = connect(b, d1, d2);
    const t = bindVirq(b, d1, VIRQ.TIMER, 1);
    const ec = b.hv.evtchn.get(d1)!;
    expect(evtchnInvariants(b.hv)).toEqual([]);
    ec.remotePort[serverPort] = 77;
    ec.inUse++;
    ec.virqToPort[1]![VIRQ.TIMER] = 0;
    expect(evtchnInvariants(b.hv)).toEqual([
      `domain 1 port ${serverPort} is connected to domain 2 port 77, which is not connected back to it`,
      `domain 1 port ${t} is bound to virq ${VIRQ.TIMER}, but vCPU 1's table does not name it`,
      "domain 1: 3 ports counted in use, but 2 are open",
      `domain 2 port ${clientPort} is connected to domain 1 port ${serverPort}, which is not connected back to it`,
    ]);
    ec.remotePort[serverPort] = clientPort;
    ec.inUse--;
    ec.virqToPort[1]![VIRQ.TIMER] = t;
  });
});
