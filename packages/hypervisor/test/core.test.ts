import { describe, expect, it, vi } from "vitest";
import { CONSOLEIO, DOMID, HYPERVISOR, PAGE_SIZE, RUNSTATE, SHUTDOWN, XEN_ERRNO } from "@pvkit/abi";
import { FRAME_FREE, Hypervisor, MAX_PFN, MachineMemory, P2m, copyFromGuest, copyToGuest, checkInvariants, DomainGuestMemory, dummyPolicy, type Domain, type XsmDefault } from "@pvkit/hypervisor";
import { GuestFault } from "@pvkit/abi";
import { bed, expectInvariants, makeDomain } from "./bed.js";

describe("machine memory", () => {
  it("hands out low frames first, zeroed, with one reference, and takes them back", () => {
    const m = new MachineMemory(4);
    const a = m.alloc(7)!;
    m.frameBytes(a).fill(9);
    expect(a).toBe(0);
    expect([m.owner[a], m.refCount[a], m.ownedBy(7), m.freeFrames]).toEqual([7, 1, 1, 3]);
    m.get(a);
    expect(m.put(a)).toBe(false);
    expect(m.put(a)).toBe(true);
    expect([m.owner[a], m.refCount[a], m.ownedBy(7), m.freeFrames]).toEqual([FRAME_FREE, 0, 0, 4]);
    expect(m.alloc(7)).toBe(0);
    expect(m.frameBytes(0).every((b) => b === 0)).toBe(true);
  });

  it("counts a frame in its owner's RAM until it is freed, and a xenheap frame never", () => {
    const m = new MachineMemory(4);
    const ram = m.alloc(7)!;
    const xen = m.alloc(7, "xenheap")!;
    expect([m.ownedBy(7), m.ramOwnedBy(7), m.xenheap[ram], m.xenheap[xen]]).toEqual([2, 1, 0, 1]);
    m.get(ram); // a mapping of it
    expect(m.put(ram)).toBe(false); // its owner lets go: still allocated, still RAM of 7
    expect(m.ramOwnedBy(7)).toBe(1);
    expect(m.put(ram)).toBe(true);
    expect(m.put(xen)).toBe(true);
    expect([m.ownedBy(7), m.ramOwnedBy(7), m.xenheap[xen]]).toEqual([0, 0, 0]);
  });

  it("runs out cleanly and refuses double frees", () => {
    const m = new MachineMemory(2);
    expect([m.alloc(1), m.alloc(1), m.alloc(1)]).toEqual([0, 1, undefined]);
    m.put(0);
    expect(() => m.put(0)).toThrow(/already free/);
    expect(() => m.get(0)).toThrow(/is free/);
    expect(() => new MachineMemory(0)).toThrow(RangeError);
  });
});

describe("the P2M", () => {
  it("is sparse: a high pfn costs one leaf, and walks visit populated pfns in order", () => {
    const p = new P2m();
    p.set(0xfffffe, 7);
    expect([p.leafCount, p.count, p.get(0xfffffe), p.get(0xffffff), p.get(0), p.highest()]).toEqual([1, 1, 7, undefined, undefined, 0xfffffe]);
    p.set(3, 9);
    p.set(3, 10); // replacing an entry does not count twice
    const seen: [number, number][] = [];
    p.forEach((mfn, pfn) => seen.push([pfn, mfn]));
    expect([seen, p.count, p.leafCount]).toEqual([[[3, 10], [0xfffffe, 7]], 2, 2]);
    expect([p.delete(0xfffffe), p.delete(0xfffffe), p.delete(-1)]).toEqual([true, false, false]);
    expect([p.leafCount, p.count, p.highest()]).toEqual([1, 1, 3]); // the empty leaf is gone
    expect(() => p.set(MAX_PFN, 1)).toThrow(RangeError);
    expect(() => p.set(1, -1)).toThrow(RangeError);
    expect([p.get(-1), p.get(0.5), p.get(MAX_PFN)]).toEqual([undefined, undefined, undefined]);
    p.delete(3);
    expect([p.count, p.leafCount, p.highest()]).toEqual([0, 0, undefined]);
  });

  it("lets a domain populate its highest pfn for one leaf, and is destroyed a populated pfn at a time", () => {
    const hv = new Hypervisor({ frames: 64 });
    const d = hv.createDomain({ maxPages: 4, maxVcpus: 1, privileged: false }, 1) as Domain;
    expect(d.populate(MAX_PFN - 2)).toBeGreaterThanOrEqual(0);
    expect(d.populate(0)).toBeGreaterThanOrEqual(0);
    expect([d.p2m.leafCount, d.p2m.count, d.totPages]).toEqual([2, 2, 2]);
    expectInvariants(hv);
    const depopulate = vi.spyOn(d, "depopulate");
    expect(hv.destroyDomain(d)).toBe(0);
    expect(depopulate.mock.calls).toEqual([[0], [MAX_PFN - 2]]); // not a walk of the whole pseudo-physical space
    expect([d.state, d.p2m.count, d.p2m.leafCount, hv.machine.freeFrames]).toEqual(["destroyed", 0, 0, 64]);
    expectInvariants(hv);
  });
});

describe("domains", () => {
  it("are created paused with a shared_info frame and a grant frame, run when unpaused, and return every frame when destroyed", () => {
    const hv = new Hypervisor({ frames: 64 });
    const d = hv.createDomain({ maxPages: 8, maxVcpus: 2, privileged: false }, 3);
    if (typeof d === "number") throw new Error(String(d));
    expect([d.state, d.pauseCount, hv.machine.ownedBy(3)]).toEqual(["paused", 1, 2]);
    for (let pfn = 0; pfn < 8; pfn++) expect(d.populate(pfn)).toBeGreaterThanOrEqual(0);
    expect(d.populate(8)).toBe(-XEN_ERRNO.ENOMEM); // at max_pages
    expect(d.populate(0)).toBe(-XEN_ERRNO.EEXIST);
    expect(d.populate(-1)).toBe(-XEN_ERRNO.EINVAL);
    expect(hv.unpause(d)).toBe(true);
    expect(d.state).toBe("running");
    expect(hv.unpause(d)).toBe(false);
    expectInvariants(hv);
    expect(hv.destroyDomain(d)).toBe(0);
    expect(d.state).toBe("destroyed");
    expect(hv.machine.freeFrames).toBe(64);
    expect(hv.domains.has(3)).toBe(false);
    expect(hv.destroyDomain(d)).toBe(-XEN_ERRNO.EINVAL);
    expectInvariants(hv);
  });

  it.each([
    ["a domid in use", { maxPages: 1, maxVcpus: 1, privileged: false }, 0, -XEN_ERRNO.EEXIST],
    ["a reserved domid", { maxPages: 1, maxVcpus: 1, privileged: false }, DOMID.SELF, -XEN_ERRNO.EINVAL],
    ["no vCPUs", { maxPages: 1, maxVcpus: 0, privileged: false }, undefined, -XEN_ERRNO.EINVAL],
    ["33 vCPUs", { maxPages: 1, maxVcpus: 33, privileged: false }, undefined, -XEN_ERRNO.EINVAL],
    ["negative memory", { maxPages: -1, maxVcpus: 1, privileged: false }, undefined, -XEN_ERRNO.EINVAL],
  ])("creation refuses %s", (_what, config, domid, errno) => {
    const hv = new Hypervisor({ frames: 16 });
    makeDomain(hv, 0, true, 2);
    expect(hv.createDomain(config, domid)).toBe(errno);
    expectInvariants(hv);
  });

  it("shutdown records Xen's reason and stops the vCPUs", () => {
    const b = bed();
    b.hv.shutdown(b.domU, SHUTDOWN.crash);
    expect([b.domU.state, b.domU.shutdownReason, b.domU.vcpus[0]!.runstate]).toEqual(["shutdown", SHUTDOWN.crash, RUNSTATE.blocked]);
    expect(b.hv.trace.records.some((r) => r.kind === "domain" && r.domid === 1 && r.state === "shutdown" && r.detail === "crash")).toBe(true);
  });
});

describe("the hypercall table", () => {
  it.each([[99], [HYPERVISOR.set_trap_table], [HYPERVISOR.arch_7], [-1]])("answers unknown hypercall %i with -ENOSYS", (op) => {
    const b = bed();
    expect(b.call(b.domU, op)).toBe(-XEN_ERRNO.ENOSYS);
  });

  it("traces each hypercall with its arguments and result", () => {
    const b = bed();
    b.call(b.domU, 99, 1, 2, 3, 4, 5);
    expect(b.hv.trace.records.at(-1)).toEqual({ t: 0, kind: "hypercall", domid: 1, vcpu: 0, op: "99", args: [1, 2, 3, 4, 5], result: -XEN_ERRNO.ENOSYS });
  });

  const big = (n: bigint) => n as unknown as number;
  it.each<[string, number, number[]]>([
    ["a BigInt count to console_io", HYPERVISOR.console_io, [CONSOLEIO.write, big(5n), 20 * PAGE_SIZE]],
    ["a BigInt count to multicall", HYPERVISOR.multicall, [20 * PAGE_SIZE, big(1n)]],
    ["a string argument", HYPERVISOR.console_io, [CONSOLEIO.write, "5" as unknown as number, 20 * PAGE_SIZE]],
    ["a NaN argument", HYPERVISOR.console_io, [CONSOLEIO.write, Number.NaN, 20 * PAGE_SIZE]],
    ["an infinite argument", HYPERVISOR.console_io, [CONSOLEIO.write, 5, Number.POSITIVE_INFINITY]],
    ["a fractional hypercall number", HYPERVISOR.console_io + 0.5, [CONSOLEIO.write, 5, 20 * PAGE_SIZE]],
    ["a BigInt hypercall number", big(BigInt(HYPERVISOR.console_io)), [CONSOLEIO.write, 5, 20 * PAGE_SIZE]],
  ])("answers %s with -EINVAL, running no handler", (_what, op, args) => {
    const b = bed();
    const allows = vi.fn(() => true);
    b.hv.policy = { allows };
    b.args(b.dom0).write(20 * PAGE_SIZE, new TextEncoder().encode("hello"));
    expect(b.call(b.dom0, op, ...args)).toBe(-XEN_ERRNO.EINVAL);
    expect([allows.mock.calls, b.hv.console]).toEqual([[], []]);
    expect(b.hv.trace.records.at(-1)).toMatchObject({ kind: "hypercall", op: Number.isInteger(op) ? expect.any(String) : "invalid", result: -XEN_ERRNO.EINVAL });
    expect(() => b.hv.trace.serialize()).not.toThrow();
  });

  it("contains a handler that throws: logs it on Xen's console, crashes the caller and answers -EFAULT", () => {
    const b = bed();
    b.hv.policy = {
      allows: () => {
        throw new Error("policy bug");
      },
    };
    expect(b.call(b.domU, HYPERVISOR.console_io, CONSOLEIO.write, 1, 20 * PAGE_SIZE)).toBe(-XEN_ERRNO.EFAULT);
    expect([b.domU.state, b.domU.shutdownReason]).toEqual(["shutdown", SHUTDOWN.crash]);
    expect(b.hv.console).toEqual(["hypervisor bug in console_io from d1v0: policy bug; crashing domain 1"]);
    expect(b.hv.trace.records.at(-1)).toMatchObject({ kind: "hypercall", domid: 1, op: "console_io", result: -XEN_ERRNO.EFAULT });
    expect([b.dom0.state, b.domUs[1]!.state]).toEqual(["running", "running"]);
  });
});

describe("the dummy policy", () => {
  it.each<[XsmDefault, boolean, boolean, boolean, boolean]>([
    // class      domU on itself, domU on another, dom0 on a domU, XenStore domain on another
    ["hook", true, true, true, true],
    ["target", true, false, true, false],
    ["xs_priv", false, false, true, true],
    ["dm_priv", false, false, true, false],
    ["priv", false, false, true, false],
  ])("decides %s as Xen's xsm_default_action", (xsm, self, other, dom0, xenstore) => {
    const b = bed();
    const xs = b.hv.createDomain({ maxPages: 0, maxVcpus: 1, privileged: false, xenstore: true }) as Domain;
    const allows = (caller: Domain, target: Domain) => dummyPolicy.allows(caller, "test:action", xsm, target);
    expect([allows(b.domU, b.domU), allows(b.domU, b.domUs[1]!), allows(b.dom0, b.domU), allows(xs, b.domU)]).toEqual([self, other, dom0, xenstore]);
  });
});

describe("guest memory", () => {
  it("copies to and from guest virtual addresses across page boundaries", () => {
    const b = bed();
    const data = Uint8Array.from({ length: 100 }, (_, i) => i);
    expect(copyToGuest(b.hv.machine, b.domU, PAGE_SIZE - 50, data)).toBe(true);
    expect(copyFromGuest(b.hv.machine, b.domU, PAGE_SIZE - 50, 100)).toEqual(data);
    // dom0 does not see domU's bytes at the same address: separate address spaces.
    expect(copyFromGuest(b.hv.machine, b.dom0, PAGE_SIZE - 50, 100)).not.toEqual(data);
  });

  it.each([
    ["past the end of RAM", 32 * PAGE_SIZE - 10, 20],
    ["a negative address", -4, 8],
    ["a fractional address", 0.5, 1],
    ["far away", 2 ** 40, 1],
  ])("fails on %s, and a failed copy out writes nothing", (_what, va, n) => {
    const b = bed();
    expect(copyFromGuest(b.hv.machine, b.domU, va, n)).toBeUndefined();
    const before = Buffer.from(b.hv.machine.bytes.slice());
    expect(copyToGuest(b.hv.machine, b.domU, va, new Uint8Array(n).fill(0xee))).toBe(false);
    expect(Buffer.from(b.hv.machine.bytes).equals(before)).toBe(true);
  });

  it("gives the kernel page views that alias machine frames, and faults where nothing is mapped", () => {
    const b = bed();
    const mem = new DomainGuestMemory(b.hv.machine, b.domU);
    mem.page(3 * PAGE_SIZE + 5).setUint32(8, 0xdeadbeef, true);
    expect(mem.read(3 * PAGE_SIZE + 8, 4)).toEqual(new Uint8Array([0xef, 0xbe, 0xad, 0xde]));
    expect(() => mem.page(100 * PAGE_SIZE)).toThrow(GuestFault);
    expect(() => mem.write(32 * PAGE_SIZE - 2, new Uint8Array(4))).toThrow(GuestFault);
  });
});

describe("the invariant checker", () => {
  it("finds a leaked reference and a frame owned by a domain that does not exist", () => {
    const b = bed();
    expect(checkInvariants(b.hv)).toEqual([]);
    b.hv.machine.get(b.domU.pfnToMfn(0)!);
    expect(checkInvariants(b.hv)).toContainEqual(expect.stringMatching(/2 references, but 1 holders/));
    const orphan = b.hv.machine.alloc(77)!;
    expect(checkInvariants(b.hv)).toContainEqual(`frame ${orphan}: owned by 77, which no longer exists`);
    // Undo the damage, so the bed's own check after the test passes.
    b.hv.machine.put(b.domU.pfnToMfn(0)!);
    b.hv.machine.put(orphan);
    expect(checkInvariants(b.hv)).toEqual([]);
  });

  it("finds tot_pages out of step with the RAM a domain owns, and RAM and xenheap frames in each other's places", () => {
    const b = bed();
    const mfn = b.domU.pfnToMfn(0)!;
    b.hv.machine.xenheap[mfn] = 1; // the RAM counter still counts it
    expect(checkInvariants(b.hv)).toEqual(
      expect.arrayContaining(["domain 1: tot_pages 32 but it owns 31 RAM frames", `domain 1: pfn 0 is frame ${mfn}, which is a xenheap page, not RAM`]),
    );
    b.hv.machine.xenheap[mfn] = 0;
    b.hv.machine.xenheap[b.domU.sharedInfoMfn] = 0;
    expect(checkInvariants(b.hv)).toContain(`domain 1: shared_info is frame ${b.domU.sharedInfoMfn}, which is RAM, not a xenheap page`);
    b.hv.machine.xenheap[b.domU.sharedInfoMfn] = 1;
  });
});
