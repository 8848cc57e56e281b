import { afterEach, describe, expect, it } from "vitest";
import {
  DOMID,
  GNTMAP,
  GNTST,
  GNTTABOP,
  GTF,
  HYPERVISOR,
  PAGE_SIZE,
  XENMAPSPACE,
  XENMEM,
  XENMEMF,
  XEN_ERRNO,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  vcpu_info,
  xen_add_to_physmap,
  xen_add_to_physmap_batch,
  xen_memory_domain,
  xen_memory_reservation,
  xen_remove_from_physmap,
} from "@pvkit/abi";
import { DomainGuestMemory, type Domain } from "@pvkit/hypervisor";
import { grantFrame } from "../src/grant-table.js";
import { UNMAPPED, bed, expectInvariants, type Bed } from "./bed.js";

const E = XEN_ERRNO;


function u64s(values: readonly (number | bigint)[]): Uint8Array {
  const out = new Uint8Array(8 * values.length);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setBigUint64(8 * i, BigInt.asUintN(64, BigInt(x)), true));
  return out;
}

function readU64s(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 8 }, (_, i) => Number(v.getBigUint64(8 * i, true)));
}

interface ReservationCall {
  /** Extent list (pfns); null for a null handle. */
  readonly pfns: readonly number[] | null;
  readonly count?: number;
  readonly domid?: number;
  readonly order?: number;
  readonly memFlags?: number;
  readonly extentStart?: number;
  readonly argVa?: number;
  readonly cmdHigh?: number;
}

/** Makes a reservation call from `caller`; returns the result and the extent list afterwards. */
function reserve(b: Bed, caller: Domain, op: number, call: ReservationCall): { rc: number; list: number[] } {
  const a = b.args(caller);
  const pfns = call.pfns ?? [];
  const list = a.alloc(8 * Math.max(1, pfns.length));
  a.write(list, u64s(pfns));
  const va = a.put(xen_memory_reservation, {
    extent_start: BigInt(call.pfns === null ? 0 : (call.extentStart ?? list)),
    nr_extents: BigInt(call.count ?? pfns.length),
    extent_order: call.order ?? 0,
    mem_flags: call.memFlags ?? 0,
    domid: call.domid ?? DOMID.SELF,
  });
  const rc = b.call(caller, HYPERVISOR.memory_op, op | ((call.cmdHigh ?? 0) << 6), call.argVa ?? va);
  return { rc, list: readU64s(a.read(list, 8 * pfns.length)) };
}

function askAbout(b: Bed, caller: Domain, op: number, domid: number, argVa?: number): number {
  const va = b.args(caller).put(xen_memory_domain, { domid });
  return b.call(caller, HYPERVISOR.memory_op, op, argVa ?? va);
}

function addToPhysmap(b: Bed, caller: Domain, values: { domid?: number; space: number; idx?: number | bigint; gpfn: number | bigint }, argVa?: number): number {
  const va = b.args(caller).put(xen_add_to_physmap, {
    domid: values.domid ?? DOMID.SELF,
    space: values.space,
    idx: BigInt(values.idx ?? 0),
    gpfn: BigInt(values.gpfn),
  });
  return b.call(caller, HYPERVISOR.memory_op, XENMEM.add_to_physmap, argVa ?? va);
}

function removeFromPhysmap(b: Bed, caller: Domain, gpfn: number, domid: number = DOMID.SELF, argVa?: number): number {
  const va = b.args(caller).put(xen_remove_from_physmap, { domid, gpfn: BigInt(gpfn) });
  return b.call(caller, HYPERVISOR.memory_op, XENMEM.remove_from_physmap, argVa ?? va);
}

interface BatchCall {
  readonly domid?: number;
  readonly space?: number;
  readonly foreign: number;
  readonly idxs: readonly number[];
  readonly gpfns: readonly number[];
  readonly errsVa?: number;
}

/** `add_to_physmap_batch` from `caller`; returns the result and the errs array. */
function batch(b: Bed, caller: Domain, call: BatchCall): { rc: number; errs: number[] } {
  const a = b.args(caller);
  const idxs = a.alloc(8 * call.idxs.length);
  a.write(idxs, u64s(call.idxs));
  const gpfns = a.alloc(8 * call.gpfns.length);
  a.write(gpfns, u64s(call.gpfns));
  const errs = a.alloc(4 * call.idxs.length);
  a.write(errs, new Uint8Array(4 * call.idxs.length).fill(0x55));
  const va = a.put(xen_add_to_physmap_batch, {
    domid: call.domid ?? DOMID.SELF,
    space: call.space ?? XENMAPSPACE.gmfn_foreign,
    size: call.idxs.length,
    foreign_domid: call.foreign,
    idxs: BigInt(idxs),
    gpfns: BigInt(gpfns),
    errs: BigInt(call.errsVa ?? errs),
  });
  const rc = b.call(caller, HYPERVISOR.memory_op, XENMEM.add_to_physmap_batch, va);
  const bytes = a.read(errs, 4 * call.idxs.length);
  const v = new DataView(bytes.buffer);
  return { rc, errs: call.idxs.map((_, i) => v.getInt32(4 * i, true)) };
}

describe("XENMEM_populate_physmap", () => {
  it("populates the pfns asked for and hands back their machine frames", () => {
    const b = bed();
    const { rc, list } = reserve(b, b.domU, XENMEM.populate_physmap, { pfns: [40, 41] });
    expect(rc).toBe(2);
    expect(list).toEqual([b.domU.pfnToMfn(40), b.domU.pfnToMfn(41)]);
    expect(b.domU.totPages).toBe(34);
    expect(b.hv.machine.owner[list[0]!]).toBe(b.domU.domid);
    expectInvariants(b.hv);
  });

  it("lets dom0 populate another domain, the frames coming back into dom0's own list", () => {
    const b = bed();
    const { rc, list } = reserve(b, b.dom0, XENMEM.populate_physmap, { pfns: [50], domid: b.domU.domid });
    expect(rc).toBe(1);
    expect(list).toEqual([b.domU.pfnToMfn(50)]);
    expect(b.dom0.pfnToMfn(50)).toBeUndefined();
    expectInvariants(b.hv);
  });

  it("stops at max_pages and returns the extents done so far", () => {
    const b = bed();
    b.domU.maxPages = 33;
    const { rc, list } = reserve(b, b.domU, XENMEM.populate_physmap, { pfns: [40, 41, 42] });
    expect(rc).toBe(1);
    expect(list.slice(1)).toEqual([41, 42]); // untouched
    expect([b.domU.totPages, b.domU.pfnToMfn(41)]).toEqual([33, undefined]);
    expectInvariants(b.hv);
  });

  it("resumes at the extent a continuation names in the upper bits of cmd", () => {
    const b = bed();
    const { rc } = reserve(b, b.domU, XENMEM.populate_physmap, { pfns: [40, 41, 42], cmdHigh: 2 });
    expect(rc).toBe(3);
    expect([40, 41, 42].map((p) => b.domU.pfnToMfn(p) !== undefined)).toEqual([false, false, true]);
    expectInvariants(b.hv);
  });

  // Like Xen, a refused reservation call is never an errno: it did 0 extents.
  it.each<[string, ReservationCall, (b: Bed) => void]>([
    ["an extent order above 0", { pfns: [40], order: 1 }, () => {}],
    ["a pfn already populated", { pfns: [5, 40] }, () => {}],
    ["a pfn outside the pseudo-physical space", { pfns: [2 ** 24] }, () => {}],
    ["populate-on-demand", { pfns: [40], memFlags: XENMEMF.populate_on_demand }, () => {}],
    ["an address width of one page", { pfns: [40], memFlags: 12 }, () => {}],
    ["another domain, without privilege", { pfns: [40], domid: 2 }, () => {}],
    ["a domain that does not exist", { pfns: [40], domid: 77 }, () => {}],
    ["an unreadable argument", { pfns: [40], argVa: UNMAPPED }, () => {}],
    ["an unreadable extent list", { pfns: [40], extentStart: UNMAPPED }, () => {}],
    ["more extents than a continuation can encode", { pfns: [40], count: 2 ** 26 }, () => {}],
    ["a domain with no room", { pfns: [40] }, (b) => (b.domU.maxPages = 32)],
    ["a machine with no free frame", { pfns: [40] }, (b) => { while (b.hv.machine.alloc(999) !== undefined); }],
  ])("does nothing for %s", (_what, call, setup) => {
    const b = bed({ frames: 256 });
    setup(b);
    const before = b.hv.machine.freeFrames;
    const { rc } = reserve(b, b.domU, XENMEM.populate_physmap, call);
    expect(rc).toBe(0);
    expect([b.domU.totPages, b.domUs[1]!.totPages, b.domU.pfnToMfn(40), b.hv.machine.freeFrames]).toEqual([32, 32, undefined, before]);
    if (b.hv.machine.ownedBy(999) > 0) for (const mfn of b.hv.machine.framesOf(999)) b.hv.machine.put(mfn);
    expectInvariants(b.hv);
  });

  it("stops at a pfn where a mapping sits", () => {
    const b = bed();
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(0);
    expect(reserve(b, b.domU, XENMEM.populate_physmap, { pfns: [40] }).rc).toBe(0);
    expectInvariants(b.hv);
  });
});

describe("XENMEM_increase_reservation", () => {
  it("puts new frames at the lowest free pfns (skipping mappings) and reports their mfns", () => {
    const b = bed();
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 32 })).toBe(0);
    const { rc, list } = reserve(b, b.domU, XENMEM.increase_reservation, { pfns: [0, 0] });
    expect(rc).toBe(2);
    expect(list).toEqual([b.domU.pfnToMfn(33), b.domU.pfnToMfn(34)]);
    expect(b.domU.totPages).toBe(34);
    expectInvariants(b.hv);
  });

  it("with a null extent list still allocates, reporting nothing", () => {
    const b = bed();
    const { rc } = reserve(b, b.domU, XENMEM.increase_reservation, { pfns: null, count: 3 });
    expect(rc).toBe(3);
    expect(b.domU.totPages).toBe(35);
    expectInvariants(b.hv);
  });

  it.each([
    ["max_pages", { pfns: [0, 0, 0] }, 1],
    ["an extent list it cannot write", { pfns: [0], extentStart: UNMAPPED }, 0],
    ["another domain, without privilege", { pfns: [0], domid: 2 }, 0],
  ] as const)("stops at %s", (_what, call, done) => {
    const b = bed();
    b.domU.maxPages = 33;
    expect(reserve(b, b.domU, XENMEM.increase_reservation, call).rc).toBe(done);
    expect(b.domU.totPages).toBe(32 + done);
    expectInvariants(b.hv);
  });
});

describe("XENMEM_decrease_reservation", () => {
  it("releases the pfns named and frees their frames", () => {
    const b = bed();
    const free = b.hv.machine.freeFrames;
    expect(reserve(b, b.domU, XENMEM.decrease_reservation, { pfns: [3, 4] }).rc).toBe(2);
    expect([b.domU.pfnToMfn(3), b.domU.pfnToMfn(4), b.domU.totPages, b.hv.machine.freeFrames]).toEqual([undefined, undefined, 30, free + 2]);
    expectInvariants(b.hv);
  });

  it.each([
    ["a pfn the domain has no page at", [5, 99, 6], DOMID.SELF, 1],
    ["a pfn given twice", [5, 5], DOMID.SELF, 1],
    ["another domain, without privilege", [5], 2, 0],
    ["a domain that does not exist", [5], 77, 0],
  ] as const)("stops at %s", (_what, pfns, domid, done) => {
    const b = bed();
    expect(reserve(b, b.domU, XENMEM.decrease_reservation, { pfns, domid }).rc).toBe(done);
    expect(b.domU.totPages).toBe(32 - done);
    expect(b.domUs[1]!.totPages).toBe(32);
    expectInvariants(b.hv);
  });

  it("lets a page another domain maps leave the P2M, counting it in tot_pages until the mapping goes and frees it", () => {
    const b = bed();
    const mfn = b.domU.pfnToMfn(6)!;
    expect(batch(b, b.dom0, { foreign: 1, idxs: [6], gpfns: [100] })).toEqual({ rc: 0, errs: [0] });
    expect(reserve(b, b.domU, XENMEM.decrease_reservation, { pfns: [6] }).rc).toBe(1);
    expect([b.domU.pfnToMfn(6), b.domU.totPages, b.hv.machine.owner[mfn], b.hv.machine.refCount[mfn]]).toEqual([undefined, 32, 1, 1]);
    expect(askAbout(b, b.domU, XENMEM.current_reservation, DOMID.SELF)).toBe(32);
    expectInvariants(b.hv);
    expect(removeFromPhysmap(b, b.dom0, 100)).toBe(0);
    expect([b.hv.machine.refCount[mfn], b.domU.totPages]).toEqual([0, 31]);
    expectInvariants(b.hv);
  });

  it("cannot be used to pass max_pages by granting a page to oneself, mapping it, giving it back and asking again", () => {
    const b = bed();
    const d = b.domU; // 32 pages of RAM, max_pages 64
    const gt = b.hv.grants.get(d)!;
    const view = new DataView(b.hv.machine.buffer);
    const PFN = 5;
    const handles: number[] = [];
    const granted: number[] = [];
    for (let i = 0; ; i++) {
      // Grant the page at pfn 5 to itself (entry 10 + i) and map it above its RAM.
      const mfn = d.pfnToMfn(PFN)!;
      const at = gt.entryOffset(10 + i)!;
      view.setUint16(at + 2, d.domid, true);
      view.setUint32(at + 4, mfn, true);
      view.setUint16(at, GTF.permit_access, true);
      const a = b.args(d);
      const op = a.put(gnttab_map_grant_ref, { host_addr: BigInt((100 + i) * PAGE_SIZE), flags: GNTMAP.host_map, ref: 10 + i, dom: d.domid });
      expect(b.call(d, HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, op, 1)).toBe(0);
      expect(a.get(gnttab_map_grant_ref, op).status).toBe(GNTST.okay);
      handles.push(a.get(gnttab_map_grant_ref, op).handle);
      // Give the page back: it leaves the P2M, but its mapping keeps it allocated, and counted.
      expect(reserve(b, d, XENMEM.decrease_reservation, { pfns: [PFN] }).rc).toBe(1);
      expect([d.pfnToMfn(PFN), b.hv.machine.owner[mfn]]).toEqual([undefined, d.domid]);
      // Ask for a page again: granted only while under max_pages.
      const more = reserve(b, d, XENMEM.increase_reservation, { pfns: [0, 0, 0] }).rc;
      granted.push(more);
      if (more < 3) break;
    }
    // 32 pages more, three at a time, the last request stopping short at max_pages (ENOMEM), and then none.
    expect(granted).toEqual([...Array<number>(10).fill(3), 2]);
    expect(reserve(b, d, XENMEM.increase_reservation, { pfns: [0] }).rc).toBe(0);
    expect([d.totPages, d.maxPages, d.p2m.count, handles.length]).toEqual([64, 64, 53, 11]);
    expect(b.hv.machine.ramOwnedBy(d.domid)).toBe(64);
    expect(b.hv.machine.framesOf(d.domid)).toHaveLength(64 + 2); // and its shared_info and grant frame
    expect(askAbout(b, d, XENMEM.current_reservation, DOMID.SELF)).toBe(64);
    expectInvariants(b.hv);
    // Unmapping frees the pages given back, and only then do they leave tot_pages.
    const a = b.args(d);
    handles.forEach((handle, i) => {
      const op = a.put(gnttab_unmap_grant_ref, { host_addr: BigInt((100 + i) * PAGE_SIZE), handle });
      expect(b.call(d, HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, op, 1)).toBe(0);
    });
    expect([d.totPages, d.p2m.count, b.hv.machine.framesOf(d.domid).length]).toEqual([53, 53, 55]);
    expectInvariants(b.hv);
  });
});

describe("reservation queries", () => {
  it.each([
    ["current_reservation of itself", XENMEM.current_reservation, "domU", DOMID.SELF, 32],
    ["maximum_reservation of itself", XENMEM.maximum_reservation, "domU", DOMID.SELF, 64],
    ["maximum_gpfn of itself", XENMEM.maximum_gpfn, "domU", DOMID.SELF, 31],
    ["current_reservation of a domU, from dom0", XENMEM.current_reservation, "dom0", 1, 32],
    ["current_reservation of another domU", XENMEM.current_reservation, "domU", 2, -E.EPERM],
    ["maximum_reservation of a domain that does not exist", XENMEM.maximum_reservation, "dom0", 77, -E.ESRCH],
  ] as const)("%s", (_what, op, who, domid, expected) => {
    const b = bed();
    expect(askAbout(b, who === "dom0" ? b.dom0 : b.domU, op, domid)).toBe(expected);
    expectInvariants(b.hv);
  });

  it("faults on an unreadable domid and refuses continuation bits", () => {
    const b = bed();
    expect(askAbout(b, b.domU, XENMEM.current_reservation, DOMID.SELF, UNMAPPED)).toBe(-E.EFAULT);
    expect(askAbout(b, b.domU, XENMEM.current_reservation | (1 << 6), DOMID.SELF)).toBe(-E.EINVAL);
  });

  it("maximum_ram_page is one past the last machine frame, for anyone", () => {
    const b = bed({ frames: 512 });
    expect(b.call(b.domU, HYPERVISOR.memory_op, XENMEM.maximum_ram_page)).toBe(512);
    expect(b.call(b.domU, HYPERVISOR.memory_op, XENMEM.maximum_ram_page | (1 << 6))).toBe(-E.EINVAL);
  });

  it.each([[XENMEM.exchange], [XENMEM.machphys_mfn_list], [63], [-1]])("answers command %i with -ENOSYS", (cmd) => {
    const b = bed();
    expect(b.call(b.domU, HYPERVISOR.memory_op, cmd, 0)).toBe(-E.ENOSYS);
  });
});

describe("XENMEM_add_to_physmap", () => {
  it("maps the shared_info page, through which the guest reads its vcpu_info", () => {
    const b = bed();
    const si = b.domU.sharedInfoMfn;
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(0);
    expect(b.hv.machine.refCount[si]).toBe(2);
    const mem = new DomainGuestMemory(b.hv.machine, b.domU);
    const page = mem.page(40 * PAGE_SIZE);
    const v1 = vcpu_info.size; // vcpu_info[1]
    expect(vcpu_info.fields.evtchn_upcall_mask.get(page, 0)).toBe(1); // created masked
    b.hv.vcpuInfoView(b.domU.vcpus[1]!)!.setUint8(0, 1); // the hypervisor raises evtchn_upcall_pending
    expect(vcpu_info.fields.evtchn_upcall_pending.get(page, v1)).toBe(1);
    vcpu_info.fields.evtchn_upcall_mask.set(page, 0, 0); // the guest unmasks through its mapping
    expect(b.hv.vcpuInfoView(b.domU.vcpus[0]!)!.getUint8(1)).toBe(0);
    expectInvariants(b.hv);
  });

  it("releases RAM at the gpfn and replaces its own earlier mapping", () => {
    const b = bed();
    const free = b.hv.machine.freeFrames;
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 10 })).toBe(0);
    expect([b.domU.pfnToMfn(10), b.domU.totPages, b.hv.machine.freeFrames]).toEqual([undefined, 31, free + 1]);
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 10 })).toBe(0);
    expect(b.hv.machine.refCount[b.domU.sharedInfoMfn]).toBe(2);
    expectInvariants(b.hv);
  });

  it("lets dom0 map a domU's shared_info into the domU", () => {
    const b = bed();
    expect(addToPhysmap(b, b.dom0, { domid: 1, space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(0);
    expect(b.domU.translate(40)?.mfn).toBe(b.domU.sharedInfoMfn);
    expect(b.dom0.translate(40)).toBeUndefined();
    expectInvariants(b.hv);
  });

  it.each<[string, Parameters<typeof addToPhysmap>[2], number]>([
    ["shared_info index 1", { space: XENMAPSPACE.shared_info, idx: 1, gpfn: 40 }, -E.EINVAL],
    ["a grant frame the table does not have", { space: XENMAPSPACE.grant_table, idx: 100000, gpfn: 40 }, -E.EINVAL],
    ["a foreign page (batch only)", { space: XENMAPSPACE.gmfn_foreign, gpfn: 40 }, -E.ENOSYS],
    ["moving one of its own pages", { space: XENMAPSPACE.gmfn, idx: 3, gpfn: 40 }, -E.EOPNOTSUPP],
    ["an unknown space", { space: 77, gpfn: 40 }, -E.EINVAL],
    ["device MMIO from a domU", { space: XENMAPSPACE.dev_mmio, gpfn: 40 }, -E.EACCES],
    ["a gpfn outside the pseudo-physical space", { space: XENMAPSPACE.shared_info, gpfn: 2 ** 24 }, -E.EINVAL],
    ["a gpfn too large to be exact", { space: XENMAPSPACE.shared_info, gpfn: 2n ** 63n }, -E.EINVAL],
    ["another domain, without privilege", { domid: 2, space: XENMAPSPACE.shared_info, gpfn: 40 }, -E.EPERM],
    ["a domain that does not exist", { domid: 77, space: XENMAPSPACE.shared_info, gpfn: 40 }, -E.ESRCH],
  ])("refuses %s", (_what, values, errno) => {
    const b = bed();
    expect(addToPhysmap(b, b.domU, values)).toBe(errno);
    expect([b.domU.mappings.size, b.domUs[1]!.mappings.size, b.domU.totPages]).toEqual([0, 0, 32]);
    expectInvariants(b.hv);
  });

  it("faults on an unreadable argument", () => {
    const b = bed();
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 40 }, UNMAPPED)).toBe(-E.EFAULT);
    expect(b.domU.mappings.size).toBe(0);
  });

  it("maps a grant-table frame when the grant table has one", () => {
    const b = bed();
    const frame = grantFrame(b.hv, b.domU, 0);
    const rc = addToPhysmap(b, b.domU, { space: XENMAPSPACE.grant_table, idx: 0, gpfn: 40 });
    if (frame === undefined) expect(rc).toBe(-E.EINVAL);
    else {
      expect(rc).toBe(0);
      expect(b.domU.translate(40)?.mfn).toBe(frame);
    }
    expectInvariants(b.hv);
  });

  it("leaves a grant mapping alone: -EBUSY to map over it or remove it", () => {
    const b = bed();
    // What the grant table does when it maps a grant at virtual page 40.
    const mfn = b.domUs[1]!.pfnToMfn(0)!;
    b.hv.machine.get(mfn);
    b.domU.mappings.set(40, { mfn, writable: true, kind: "grant" });
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(-E.EBUSY);
    expect(removeFromPhysmap(b, b.domU, 40)).toBe(-E.EBUSY);
    expect(b.domU.translate(40)?.mfn).toBe(mfn);
    expectInvariants(b.hv);
    b.domU.mappings.delete(40);
    b.hv.machine.put(mfn);
  });
});

describe("XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign", () => {
  it("lets dom0 map a domU's pages, with a result per entry", () => {
    const b = bed();
    const { rc, errs } = batch(b, b.dom0, { foreign: 1, idxs: [0, 1, 99], gpfns: [100, 101, 102] });
    expect(rc).toBe(0);
    expect(errs).toEqual([0, 0, -E.EINVAL]);
    // dom0 writes the domU's first page through its mapping, as the domain builder writes start_info.
    new DomainGuestMemory(b.hv.machine, b.dom0).write(100 * PAGE_SIZE + 8, new TextEncoder().encode("xen-3.0-x86_64"));
    expect(new TextDecoder().decode(new DomainGuestMemory(b.hv.machine, b.domU).read(8, 14))).toBe("xen-3.0-x86_64");
    expect(b.hv.machine.refCount[b.domU.pfnToMfn(1)!]).toBe(2);
    expect(b.dom0.translate(102)).toBeUndefined();
    expectInvariants(b.hv);
  });

  it.each([
    ["the foreign domain without privilege", "domU", 2, -E.EPERM],
    ["a foreign domain that does not exist", "dom0", 77, -E.ESRCH],
    ["DOMID_SELF as the foreign domain", "dom0", DOMID.SELF, -E.ESRCH],
    ["itself as the foreign domain", "dom0", 0, -E.EINVAL],
  ] as const)("refuses per entry %s", (_what, who, foreign, errno) => {
    const b = bed();
    const caller = who === "dom0" ? b.dom0 : b.domU;
    expect(batch(b, caller, { foreign, idxs: [0], gpfns: [100] })).toEqual({ rc: 0, errs: [errno] });
    expect(caller.mappings.size).toBe(0);
    expectInvariants(b.hv);
  });

  it.each([
    ["an unwritable errs array", { errsVa: UNMAPPED }, -E.EFAULT],
    ["gmfn_range", { space: XENMAPSPACE.gmfn_range }, -E.EOPNOTSUPP],
    ["a target domain that does not exist", { domid: 77 }, -E.ESRCH],
    ["a target domain it may not control", { domid: 2 }, -E.EPERM],
  ] as const)("refuses the whole batch for %s, mapping nothing", (_what, extra, errno) => {
    const b = bed();
    expect(batch(b, b.domU, { foreign: 0, idxs: [0, 1], gpfns: [100, 101], ...extra }).rc).toBe(errno);
    expect([b.domU.mappings.size, b.domUs[1]!.mappings.size]).toEqual([0, 0]);
    expectInvariants(b.hv);
  });

  it("keeps a destroyed domain dying while dom0 maps its page, and reaps it when the mapping goes", () => {
    const b = bed();
    expect(batch(b, b.dom0, { foreign: 1, idxs: [3], gpfns: [100] }).errs).toEqual([0]);
    expect(b.hv.destroyDomain(b.domU)).toBe(0);
    expect([b.domU.state, b.hv.domains.has(1), b.hv.machine.ownedBy(1)]).toEqual(["dying", true, 1]);
    expectInvariants(b.hv);
    // The dying domain has no pages left to map, and may not be mapped into.
    expect(batch(b, b.dom0, { foreign: 1, idxs: [4], gpfns: [101] }).errs).toEqual([-E.EINVAL]);
    expect(addToPhysmap(b, b.dom0, { domid: 1, space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(-E.ESRCH);
    expect(removeFromPhysmap(b, b.dom0, 100)).toBe(0);
    expect([b.domU.state, b.hv.domains.has(1), b.hv.machine.ownedBy(1)]).toEqual(["destroyed", false, 0]);
    expectInvariants(b.hv);
  });
});

describe("XENMEM_remove_from_physmap", () => {
  it("takes a mapping away and drops its reference", () => {
    const b = bed();
    expect(addToPhysmap(b, b.domU, { space: XENMAPSPACE.shared_info, gpfn: 40 })).toBe(0);
    expect(removeFromPhysmap(b, b.domU, 40)).toBe(0);
    expect([b.domU.translate(40), b.hv.machine.refCount[b.domU.sharedInfoMfn]]).toEqual([undefined, 1]);
    expectInvariants(b.hv);
  });

  it("releases RAM at the gpfn", () => {
    const b = bed();
    expect(removeFromPhysmap(b, b.domU, 7)).toBe(0);
    expect([b.domU.pfnToMfn(7), b.domU.totPages]).toEqual([undefined, 31]);
    expectInvariants(b.hv);
  });

  it.each([
    ["an empty gpfn", 40, DOMID.SELF, undefined, -E.ENOENT],
    ["another domain, without privilege", 7, 2, undefined, -E.EPERM],
    ["a domain that does not exist", 7, 77, undefined, -E.ESRCH],
    ["an unreadable argument", 7, DOMID.SELF, UNMAPPED, -E.EFAULT],
  ] as const)("refuses %s", (_what, gpfn, domid, argVa, errno) => {
    const b = bed();
    expect(removeFromPhysmap(b, b.domU, gpfn, domid, argVa)).toBe(errno);
    expect([b.domU.totPages, b.domUs[1]!.totPages]).toEqual([32, 32]);
    expectInvariants(b.hv);
  });

  it("refuses continuation bits", () => {
    const b = bed();
    const va = b.args(b.domU).put(xen_remove_from_physmap, { domid: DOMID.SELF, gpfn: 7n });
    expect(b.call(b.domU, HYPERVISOR.memory_op, XENMEM.remove_from_physmap | (1 << 6), va)).toBe(-E.EINVAL);
    expect(b.domU.totPages).toBe(32);
  });
});
