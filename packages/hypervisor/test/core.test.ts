import { describe, expect, it } from "vitest";
import { DOMID, HYPERVISOR, PAGE_SIZE, RUNSTATE, SHUTDOWN, XEN_ERRNO } from "@pvkit/abi";
import { FRAME_FREE, Hypervisor, MachineMemory, copyFromGuest, copyToGuest, checkInvariants, DomainGuestMemory } from "@pvkit/hypervisor";
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

  it("runs out cleanly and refuses double frees", () => {
    const m = new MachineMemory(2);
    expect([m.alloc(1), m.alloc(1), m.alloc(1)]).toEqual([0, 1, undefined]);
    m.put(0);
    expect(() => m.put(0)).toThrow(/already free/);
    expect(() => m.get(0)).toThrow(/is free/);
    expect(() => new MachineMemory(0)).toThrow(RangeError);
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
    b.hv.machine.get(b.domU.p2m[0]!);
    expect(checkInvariants(b.hv)).toContainEqual(expect.stringMatching(/2 references, but 1 holders/));
    const orphan = b.hv.machine.alloc(77)!;
    expect(checkInvariants(b.hv)).toContainEqual(`frame ${orphan}: owned by 77, which no longer exists`);
    // Undo the damage, so the bed's own check after the test passes.
    b.hv.machine.put(b.domU.p2m[0]!);
    b.hv.machine.put(orphan);
    expect(checkInvariants(b.hv)).toEqual([]);
  });

  it("finds tot_pages out of step with the P2M", () => {
    const b = bed();
    b.domU.totPages++;
    expect(checkInvariants(b.hv)).toContain("domain 1: tot_pages 33 but 32 pfns populated");
    b.domU.totPages--;
  });
});
