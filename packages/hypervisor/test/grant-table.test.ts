import { afterEach, describe, expect, it } from "vitest";
import {
  DOMID,
  GNTCOPY,
  GNTMAP,
  GNTST,
  GNTTABOP,
  GTF,
  HYPERVISOR,
  PAGE_SIZE,
  XEN_ERRNO,
  gnttab_copy,
  gnttab_copy_ptr,
  gnttab_get_status_frames,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  gnttab_transfer,
  gnttab_unmap_grant_ref,
  type StructValue,
} from "@pvkit/abi";
import { FRAME_FREE, PageType, checkInvariants, copyFromGuest, copyToGuest, type Domain, type Hypervisor } from "@pvkit/hypervisor";
import { DEFAULT_MAX_GRANT_FRAMES, GRANT_ENTRIES_PER_FRAME, grantFrame, grantInvariants, type GrantTable } from "../src/grant-table.js";
import { bed, expectInvariants, type Bed } from "./bed.js";

/** The granted page's pfn in the granter, and where grantees map it (above the bed's 32 pages of RAM). */
const PFN = 5;
const HOST = 100 * PAGE_SIZE;

/** Every test leaves a consistent hypervisor behind. */
let current: Bed | undefined;
function newBed(opts?: Parameters<typeof bed>[0]): Bed {
  current = bed(opts);
  return current;
}
afterEach(() => {
  if (current !== undefined) expectInvariants(current.hv);
  current = undefined;
});

const table = (b: Bed, d: Domain): GrantTable => b.hv.grants.get(d)!;

/** Grants `pfn` of `granter` to `grantee` in entry `ref` as a guest does: domid and frame first, flags last. */
function grant(b: Bed, granter: Domain, ref: number, grantee: number, flags: number = GTF.permit_access, frame = granter.pfnToMfn(PFN)!): void {
  const at = table(b, granter).entryOffset(ref)!;
  const view = new DataView(b.hv.machine.buffer);
  view.setUint16(at + 2, grantee, true);
  view.setUint32(at + 4, frame, true);
  Atomics.store(new Uint16Array(b.hv.machine.buffer), at >> 1, flags);
}

/** The flags of entry `ref` of `d`. */
const flagsOf = (b: Bed, d: Domain, ref: number): number => table(b, d).entry(ref)!.flags;

/** Linux's gnttab_end_foreign_access_ref: clear the flags unless the hypervisor marks the entry in use. */
function endAccess(b: Bed, d: Domain, ref: number): boolean {
  const halves = new Uint16Array(b.hv.machine.buffer);
  const i = table(b, d).entryOffset(ref)! >> 1;
  for (;;) {
    const flags = Atomics.load(halves, i);
    if (flags & (GTF.reading | GTF.writing)) return false;
    if (Atomics.compareExchange(halves, i, flags, 0) === flags) return true;
  }
}

interface MapResult {
  readonly rc: number;
  readonly status: number;
  readonly handle: number;
  readonly bus: bigint;
}

function map(b: Bed, mapper: Domain, dom: number, ref: number, hostAddr: number | bigint = HOST, flags: number = GNTMAP.host_map): MapResult {
  const args = b.args(mapper);
  const va = args.put(gnttab_map_grant_ref, { host_addr: BigInt(hostAddr), flags, ref, dom, handle: 0xdead });
  const rc = b.call(mapper, HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, va, 1);
  const out = args.get(gnttab_map_grant_ref, va);
  return { rc, status: out.status, handle: out.handle, bus: out.dev_bus_addr };
}

function unmap(b: Bed, mapper: Domain, handle: number, hostAddr: number | bigint = HOST, devBusAddr = 0n): number {
  const args = b.args(mapper);
  const va = args.put(gnttab_unmap_grant_ref, { host_addr: BigInt(hostAddr), dev_bus_addr: devBusAddr, handle, status: 99 });
  expect(b.call(mapper, HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, va, 1)).toBe(0);
  return args.get(gnttab_unmap_grant_ref, va).status;
}

type Ptr = Partial<StructValue<typeof gnttab_copy_ptr>>;
interface CopyOp {
  readonly source: Ptr;
  readonly dest: Ptr;
  readonly len: number;
  readonly flags: number;
}
const copyValue = (op: CopyOp) => ({ ...op, source: op.source as StructValue<typeof gnttab_copy_ptr>, dest: op.dest as StructValue<typeof gnttab_copy_ptr>, status: 99 });

/** Runs one GNTTABOP_copy from `caller`; returns its status. */
function copy(b: Bed, caller: Domain, op: CopyOp): number {
  const args = b.args(caller);
  const va = args.put(gnttab_copy, copyValue(op));
  expect(b.call(caller, HYPERVISOR.grant_table_op, GNTTABOP.copy, va, 1)).toBe(0);
  return args.get(gnttab_copy, va).status;
}

/** Fills `pfn` of `d` with `byte` through its own address space. */
function fill(b: Bed, d: Domain, pfn: number, byte: number): void {
  expect(copyToGuest(b.hv.machine, d, pfn * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(byte))).toBe(true);
}
/** The frames whose bytes differ between two snapshots of machine memory. */
function changedFrames(before: Uint8Array, after: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < before.length; i++) {
    if (before[i] !== after[i]) {
      const mfn = Math.floor(i / PAGE_SIZE);
      out.push(mfn);
      i = (mfn + 1) * PAGE_SIZE - 1;
    }
  }
  return out;
}
const read = (hv: Hypervisor, d: Domain, va: number, n: number) => copyFromGuest(hv.machine, d, va, n);

describe("grant tables at creation", () => {
  it("give each domain one grant frame, typed and owned but outside tot_pages", () => {
    const b = newBed();
    for (const d of [b.dom0, ...b.domUs]) {
      const gt = table(b, d);
      expect(gt.frames).toHaveLength(1);
      const mfn = gt.frames[0]!;
      expect([b.hv.machine.owner[mfn], b.hv.machine.type[mfn], b.hv.machine.typeCount[mfn], b.hv.machine.refCount[mfn]]).toEqual([d.domid, PageType.grant_table, 1, 1]);
      expect(d.totPages).toBe(32);
      expect(gt.nrEntries).toBe(GRANT_ENTRIES_PER_FRAME);
      expect(gt.entry(0)).toEqual({ flags: 0, domid: 0, frame: 0 }); // GNTTAB_RESERVED_CONSOLE, for the builder
    }
  });

  it("grantFrame grows the table on demand up to max_grant_frames", () => {
    const b = newBed();
    const gt = table(b, b.domU);
    const mfn = grantFrame(b.hv, b.domU, 5);
    expect(mfn).toBe(gt.frames[5]);
    expect(gt.frames).toHaveLength(6);
    expect(grantFrame(b.hv, b.domU, 2)).toBe(gt.frames[2]);
    expect(grantFrame(b.hv, b.domU, DEFAULT_MAX_GRANT_FRAMES)).toBeUndefined();
    expect(grantFrame(b.hv, b.domU, -1)).toBeUndefined();
    expect(gt.frames).toHaveLength(6);
    expectInvariants(b.hv);
    b.hv.destroyDomain(b.domU);
    expect(grantFrame(b.hv, b.domU, 0)).toBeUndefined();
  });

  it("a failed growth for lack of memory allocates nothing", () => {
    const b = newBed({ frames: 120 });
    const free = b.hv.machine.freeFrames;
    expect(grantFrame(b.hv, b.domU, free + 1)).toBeUndefined();
    expect(b.hv.machine.freeFrames).toBe(free);
    expect(grantFrame(b.hv, b.domU, free)).toBeDefined(); // exactly the free frames: fits
    expect(b.hv.machine.freeFrames).toBe(0);
  });
});

describe("GNTTABOP_setup_table and query_size", () => {
  function setup(b: Bed, caller: Domain, dom: number, nr: number, frameList?: number): { rc: number; status: number; frames: bigint[] } {
    const args = b.args(caller);
    const list = frameList ?? args.alloc(8 * Math.max(nr, 1));
    const va = args.put(gnttab_setup_table, { dom, nr_frames: nr, frame_list: BigInt(list), status: 99 });
    const rc = b.call(caller, HYPERVISOR.grant_table_op, GNTTABOP.setup_table, va, 1);
    const status = args.get(gnttab_setup_table, va).status;
    const frames = status === GNTST.okay ? Array.from({ length: nr }, (_, i) => new DataView(args.read(list + 8 * i, 8).buffer).getBigUint64(0, true)) : [];
    return { rc, status, frames };
  }

  function query(b: Bed, caller: Domain, dom: number) {
    const args = b.args(caller);
    const va = args.put(gnttab_query_size, { dom, status: 99 });
    expect(b.call(caller, HYPERVISOR.grant_table_op, GNTTABOP.query_size, va, 1)).toBe(0);
    return args.get(gnttab_query_size, va);
  }

  it("grows the caller's table and lists its frames' mfns", () => {
    const b = newBed();
    const r = setup(b, b.domU, DOMID.SELF, 4);
    expect([r.rc, r.status]).toEqual([0, GNTST.okay]);
    expect(r.frames).toEqual(table(b, b.domU).frames.map(BigInt));
    expect(table(b, b.domU).frames).toHaveLength(4);
    expect(query(b, b.domU, DOMID.SELF)).toMatchObject({ nr_frames: 4, max_nr_frames: DEFAULT_MAX_GRANT_FRAMES, status: GNTST.okay });
    // Asking for fewer frames lists the first ones and shrinks nothing.
    expect(setup(b, b.domU, b.domU.domid, 2).frames).toEqual(table(b, b.domU).frames.slice(0, 2).map(BigInt));
    expect(table(b, b.domU).frames).toHaveLength(4);
  });

  it("lets a privileged domain set up and size another domain's table", () => {
    const b = newBed();
    const r = setup(b, b.dom0, b.domU.domid, 3);
    expect([r.rc, r.status, r.frames]).toEqual([0, GNTST.okay, table(b, b.domU).frames.map(BigInt)]);
    expect(query(b, b.dom0, b.domU.domid)).toMatchObject({ nr_frames: 3, status: GNTST.okay });
  });

  it.each([
    ["another domain's table, unprivileged", (b: Bed) => b.domUs[1]!.domid, 1, GNTST.permission_denied],
    ["a domain that does not exist", () => 77, 1, GNTST.bad_domain],
    ["more than max_grant_frames", () => DOMID.SELF, DEFAULT_MAX_GRANT_FRAMES + 1, GNTST.general_error],
  ])("refuses %s", (_what, dom, nr, status) => {
    const b = newBed();
    const r = setup(b, b.domU, dom(b), nr);
    expect([r.rc, r.status]).toEqual([0, status]);
    expect(table(b, b.domUs[1]!).frames).toHaveLength(1);
    expect(table(b, b.domU).frames).toHaveLength(1);
  });

  it("reports a frame list it cannot write with GNTST_bad_virt_addr, and bad arguments with errnos", () => {
    const b = newBed();
    expect(setup(b, b.domU, DOMID.SELF, 2, 200 * PAGE_SIZE).status).toBe(GNTST.bad_virt_addr);
    expect(table(b, b.domU).frames).toHaveLength(2); // grown all the same, as Xen does
    const va = b.args(b.domU).put(gnttab_setup_table, { dom: DOMID.SELF, nr_frames: 1 });
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.setup_table, va, 2)).toBe(-XEN_ERRNO.EINVAL);
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.setup_table, 200 * PAGE_SIZE, 1)).toBe(-XEN_ERRNO.EFAULT);
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.query_size, va, 0)).toBe(-XEN_ERRNO.EINVAL);
    expect(query(b, b.domU, b.dom0.domid).status).toBe(GNTST.permission_denied);
    expect(query(b, b.domU, 77).status).toBe(GNTST.bad_domain);
  });
});

describe("GNTTABOP_map_grant_ref and unmap_grant_ref", () => {
  it("maps a granted page: the grantee reads and writes the granter's page, and unmapping undoes it all", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    const mfn = granter.pfnToMfn(PFN)!;
    fill(b, granter, PFN, 0x5a);
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8);
    expect([r.rc, r.status]).toEqual([0, GNTST.okay]);
    expect(r.bus).toBe(BigInt(mfn) * BigInt(PAGE_SIZE));
    expect(flagsOf(b, granter, 8)).toBe(GTF.permit_access | GTF.reading | GTF.writing);
    expect(b.hv.machine.refCount[mfn]).toBe(2);
    expect(mapper.translate(HOST / PAGE_SIZE)).toEqual({ mfn, writable: true, kind: "grant" });
    expect([b.hv.machine.type[mfn], b.hv.machine.typeCount[mfn]]).toEqual([PageType.writable, 1]);
    const tracked = table(b, mapper).maptrack.get(r.handle)!;
    expect(tracked.granter).toBe(granter);
    expect([tracked.ref, tracked.mfn, tracked.vpn, tracked.readonly]).toEqual([8, mfn, HOST / PAGE_SIZE, false]);
    expectInvariants(b.hv);

    expect(read(b.hv, mapper, HOST + 100, 4)).toEqual(new Uint8Array(4).fill(0x5a));
    expect(copyToGuest(b.hv.machine, mapper, HOST + 10, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(read(b.hv, granter, PFN * PAGE_SIZE + 10, 3)).toEqual(new Uint8Array([1, 2, 3]));
    expect(b.hv.trace.records).toContainEqual({ t: 0, kind: "grant", op: "map", domid: mapper.domid, granter: granter.domid, ref: 8, status: GNTST.okay });

    expect(unmap(b, mapper, r.handle)).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 8)).toBe(GTF.permit_access);
    expect(b.hv.machine.refCount[mfn]).toBe(1);
    expect([b.hv.machine.type[mfn], b.hv.machine.typeCount[mfn]]).toEqual([PageType.none, 0]);
    expect(mapper.translate(HOST / PAGE_SIZE)).toBeUndefined();
    expect(table(b, mapper).maptrack.size).toBe(0);
    expect(read(b.hv, mapper, HOST, 1)).toBeUndefined();
    expect(b.hv.trace.records).toContainEqual({ t: 0, kind: "grant", op: "unmap", domid: mapper.domid, granter: granter.domid, ref: 8, status: GNTST.okay });
  });

  it("maps read-only: only GTF_reading is set and the grantee cannot write", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.dom0];
    fill(b, granter, PFN, 0x77);
    grant(b, granter, 3, mapper.domid, GTF.permit_access | GTF.readonly);
    const r = map(b, mapper, granter.domid, 3, HOST, GNTMAP.host_map | GNTMAP.readonly);
    expect(r.status).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 3)).toBe(GTF.permit_access | GTF.readonly | GTF.reading);
    expect(read(b.hv, mapper, HOST, 2)).toEqual(new Uint8Array([0x77, 0x77]));
    expect(copyToGuest(b.hv.machine, mapper, HOST, new Uint8Array([1]))).toBe(false);
    expect(read(b.hv, granter, PFN * PAGE_SIZE, 1)).toEqual(new Uint8Array([0x77]));
    expect(b.hv.machine.type[granter.pfnToMfn(PFN)!]).toBe(PageType.none); // no writable type taken
    expect(unmap(b, mapper, r.handle)).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 3)).toBe(GTF.permit_access | GTF.readonly);
  });

  it("gives each map of one grant its own handle, clearing GTF_writing with the last writable one and GTF_reading with the last", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 9, mapper.domid);
    const w = map(b, mapper, granter.domid, 9, HOST);
    const r = map(b, mapper, granter.domid, 9, HOST + PAGE_SIZE, GNTMAP.host_map | GNTMAP.readonly);
    const w2 = map(b, mapper, granter.domid, 9, HOST + 2 * PAGE_SIZE);
    expect([w.status, r.status, w2.status]).toEqual([0, 0, 0]);
    expect(new Set([w.handle, r.handle, w2.handle]).size).toBe(3);
    expect(b.hv.machine.refCount[granter.pfnToMfn(PFN)!]).toBe(4);
    const both = GTF.permit_access | GTF.reading | GTF.writing;
    expect(flagsOf(b, granter, 9)).toBe(both);
    expect(unmap(b, mapper, w.handle, HOST)).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 9)).toBe(both); // w2 is still writable
    expect(unmap(b, mapper, w2.handle, HOST + 2 * PAGE_SIZE)).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 9)).toBe(GTF.permit_access | GTF.reading);
    expectInvariants(b.hv);
    expect(unmap(b, mapper, r.handle, HOST + PAGE_SIZE)).toBe(GNTST.okay);
    expect(flagsOf(b, granter, 9)).toBe(GTF.permit_access);
    expect(b.hv.machine.refCount[granter.pfnToMfn(PFN)!]).toBe(1);
  });

  it("does not hand a freed handle straight back, so a stale handle is refused", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 4, mapper.domid);
    const first = map(b, mapper, granter.domid, 4);
    expect(unmap(b, mapper, first.handle)).toBe(GNTST.okay);
    const second = map(b, mapper, granter.domid, 4);
    expect(second.handle).not.toBe(first.handle);
    expect(unmap(b, mapper, first.handle)).toBe(GNTST.bad_handle);
    expect(unmap(b, mapper, second.handle)).toBe(GNTST.okay);
  });

  it("lets a domain map a grant to itself, by its own domid", () => {
    const b = newBed();
    grant(b, b.domU, 2, b.domU.domid);
    const r = map(b, b.domU, b.domU.domid, 2);
    expect(r.status).toBe(GNTST.okay);
    expect(read(b.hv, b.domU, HOST, 4)).toEqual(read(b.hv, b.domU, PFN * PAGE_SIZE, 4));
    expect(unmap(b, b.domU, r.handle)).toBe(GNTST.okay);
  });

  type Case = readonly [string, number, (b: Bed, granter: Domain, mapper: Domain) => { dom?: number; ref?: number; host?: number | bigint; flags?: number }];
  const cases: readonly Case[] = [
    ["no host_map or device_map flag", GNTST.bad_gntref, () => ({ flags: 0 })],
    ["device_map alone (no I/O MMU in pvkit)", GNTST.general_error, () => ({ flags: GNTMAP.device_map })],
    ["contains_pte (no page tables to update)", GNTST.general_error, () => ({ flags: GNTMAP.host_map | GNTMAP.contains_pte })],
    ["a domain that does not exist", GNTST.bad_domain, () => ({ dom: 77 })],
    ["DOMID_SELF (map names the granter by id)", GNTST.bad_domain, () => ({ dom: DOMID.SELF })],
    ["a ref beyond the granter's table", GNTST.bad_gntref, () => ({ ref: GRANT_ENTRIES_PER_FRAME })],
    ["an entry that grants nothing", GNTST.general_error, (b, g) => (grant(b, g, 8, 2, GTF.invalid), {})],
    ["an entry granted to another domain", GNTST.general_error, (b, g) => (grant(b, g, 8, 0), {})],
    ["an accept_transfer entry", GNTST.general_error, (b, g) => (grant(b, g, 8, 2, GTF.accept_transfer), {})],
    ["a sub-page entry", GNTST.general_error, (b, g) => (grant(b, g, 8, 2, GTF.permit_access | GTF.sub_page), {})],
    ["a writable map of a read-only grant", GNTST.general_error, (b, g) => (grant(b, g, 8, 2, GTF.permit_access | GTF.readonly), {})],
    ["a frame the granter does not own", GNTST.bad_page, (b, g, m) => (grant(b, g, 8, 2, GTF.permit_access, m.pfnToMfn(PFN)!), {})],
    ["a frame that does not exist", GNTST.bad_page, (b, g) => (grant(b, g, 8, 2, GTF.permit_access, 999_999), {})],
    ["a writable map of a page table", GNTST.general_error, (b, g) => ((b.hv.machine.type[g.pfnToMfn(PFN)!] = PageType.l1), {})],
    ["an unaligned host_addr", GNTST.general_error, () => ({ host: HOST + 8 })],
    ["a host_addr over the grantee's RAM", GNTST.general_error, () => ({ host: 3 * PAGE_SIZE })],
    ["a host_addr past 2^53", GNTST.general_error, () => ({ host: 0xffff_c900_0000_0000n })],
    [
      "a host_addr already holding a mapping",
      GNTST.general_error,
      (b, g, m) => {
        grant(b, g, 7, m.domid);
        expect(map(b, m, g.domid, 7).status).toBe(GNTST.okay);
        return {};
      },
    ],
  ];

  it.each(cases)("refuses %s with its GNTST code, leaving the entry and both domains as they were", (_what, status, prepare) => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    const mfn = granter.pfnToMfn(PFN)!;
    const o = prepare(b, granter, mapper);
    const flagsBefore = flagsOf(b, granter, 8);
    const mappingsBefore = [...mapper.mappings];
    const handlesBefore = table(b, mapper).maptrack.size;
    const refsBefore = b.hv.machine.refCount.slice();
    const r = map(b, mapper, o.dom ?? granter.domid, o.ref ?? 8, o.host ?? HOST, o.flags ?? GNTMAP.host_map);
    expect([r.rc, r.status, r.handle]).toEqual([0, status, 0xdead]);
    expect(flagsOf(b, granter, 8)).toBe(flagsBefore);
    expect([...mapper.mappings]).toEqual(mappingsBefore);
    expect(table(b, mapper).maptrack.size).toBe(handlesBefore);
    expect(b.hv.machine.refCount).toEqual(refsBefore);
    expect(b.hv.trace.records.at(-2)).toMatchObject({ kind: "grant", op: "map", domid: mapper.domid, status });
    if (b.hv.machine.type[mfn] === PageType.l1) b.hv.machine.type[mfn] = PageType.none; // the page-table case
  });

  it("answers GNTST_no_space when the grantee's maptrack is full, as Xen 4.17 does", () => {
    const b = newBed();
    grant(b, b.domU, 8, 2);
    table(b, b.domUs[1]!).maxMaptrackFrames = 0;
    expect(map(b, b.domUs[1]!, b.domU.domid, 8).status).toBe(GNTST.no_space);
    expect(flagsOf(b, b.domU, 8)).toBe(GTF.permit_access);
  });

  it("refuses a 129th pin of one grant, as Xen's 8-bit pin counters do", () => {
    const b = newBed();
    grant(b, b.domU, 8, 2);
    const mapper = b.domUs[1]!;
    for (let i = 0; i < 128; i++) expect(map(b, mapper, b.domU.domid, 8, HOST + i * PAGE_SIZE, GNTMAP.host_map | GNTMAP.readonly).status).toBe(GNTST.okay);
    expect(map(b, mapper, b.domU.domid, 8, HOST + 128 * PAGE_SIZE, GNTMAP.host_map | GNTMAP.readonly).status).toBe(GNTST.general_error);
    // Xen tests every counter at once (act->pin & 0x80808080): a writable pin is refused too.
    expect(map(b, mapper, b.domU.domid, 8, HOST + 128 * PAGE_SIZE).status).toBe(GNTST.general_error);
    expect(table(b, b.domU).active.get(8)).toMatchObject({ readers: 128, writers: 0 });
    expect(flagsOf(b, b.domU, 8)).toBe(GTF.permit_access | GTF.reading);
    expect(unmap(b, mapper, table(b, mapper).maptrack.keys().next().value!, HOST)).toBe(GNTST.okay);
    expect(map(b, mapper, b.domU.domid, 8, HOST).status).toBe(GNTST.okay);
    expect(table(b, b.domU).active.get(8)).toMatchObject({ readers: 127, writers: 1 });
  });

  it("keeps a pinned entry for its grantee even if the granter rewrites it for another", () => {
    const b = newBed({ domUs: 3 });
    const [granter, first, second] = b.domUs as [Domain, Domain, Domain];
    grant(b, granter, 8, first.domid);
    const r = map(b, first, granter.domid, 8);
    expect(r.status).toBe(GNTST.okay);
    // A misbehaving granter re-grants the entry in use to a third domain.
    grant(b, granter, 8, second.domid, GTF.permit_access | GTF.reading | GTF.writing);
    expect(map(b, second, granter.domid, 8).status).toBe(GNTST.general_error);
    grant(b, granter, 8, first.domid, GTF.permit_access | GTF.reading | GTF.writing);
    expect(unmap(b, first, r.handle)).toBe(GNTST.okay);
  });

  it.each([
    ["a handle never handed out", (h: number) => ({ handle: h + 1000 }), GNTST.bad_handle],
    ["the wrong host_addr", () => ({ host: HOST + PAGE_SIZE }), GNTST.general_error],
    ["host_addr 0", () => ({ host: 0 }), GNTST.general_error],
    ["the wrong dev_bus_addr for a device mapping", () => ({ bus: 4096n }), GNTST.bad_dev_addr],
  ])("refuses to unmap with %s and keeps the mapping", (_what, change, status) => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8, HOST, GNTMAP.host_map | GNTMAP.device_map);
    const c: { handle?: number; host?: number; bus?: bigint } = change(r.handle);
    expect(unmap(b, mapper, c.handle ?? r.handle, c.host ?? HOST, c.bus ?? 0n)).toBe(status);
    expect(mapper.mappings.has(HOST / PAGE_SIZE)).toBe(true);
    expect(flagsOf(b, granter, 8)).toBe(GTF.permit_access | GTF.reading | GTF.writing);
    // The right dev_bus_addr is accepted.
    expect(unmap(b, mapper, r.handle, HOST, r.bus)).toBe(GNTST.okay);
  });

  it("ignores dev_bus_addr when unmapping a host-only mapping, as Xen 4.17 does", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8);
    expect(unmap(b, mapper, r.handle, HOST, 4096n)).toBe(GNTST.okay);
    expect(mapper.mappings.has(HOST / PAGE_SIZE)).toBe(false);
  });

  it("refuses another domain's handle and a second unmap", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8);
    expect(unmap(b, b.dom0, r.handle)).toBe(GNTST.bad_handle);
    expect(unmap(b, mapper, r.handle)).toBe(GNTST.okay);
    expect(unmap(b, mapper, r.handle)).toBe(GNTST.bad_handle);
  });

  it("processes a batch, each op with its own status", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 1, mapper.domid);
    grant(b, granter, 2, 0);
    const args = b.args(mapper);
    const va = args.putArray(gnttab_map_grant_ref, [
      { host_addr: BigInt(HOST), flags: GNTMAP.host_map, ref: 1, dom: granter.domid },
      { host_addr: BigInt(HOST + PAGE_SIZE), flags: GNTMAP.host_map, ref: 2, dom: granter.domid },
      { host_addr: BigInt(HOST + PAGE_SIZE), flags: GNTMAP.host_map | GNTMAP.readonly, ref: 1, dom: granter.domid },
    ]);
    expect(b.call(mapper, HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, va, 3)).toBe(0);
    expect([0, 1, 2].map((i) => args.getAt(gnttab_map_grant_ref, va, i).status)).toEqual([GNTST.okay, GNTST.general_error, GNTST.okay]);
    const handles = [0, 2].map((i) => args.getAt(gnttab_map_grant_ref, va, i).handle);
    const un = args.putArray(gnttab_unmap_grant_ref, [
      { host_addr: BigInt(HOST), handle: handles[0]!, status: 99 },
      { host_addr: BigInt(HOST + PAGE_SIZE), handle: handles[1]!, status: 99 },
    ]);
    expect(b.call(mapper, HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, un, 2)).toBe(0);
    expect([0, 1].map((i) => args.getAt(gnttab_unmap_grant_ref, un, i).status)).toEqual([GNTST.okay, GNTST.okay]);
    expect(flagsOf(b, granter, 1)).toBe(GTF.permit_access);
  });
});

describe("a granter ending access", () => {
  it("cannot end access while the grant is mapped, and a page it gives up stays allocated until the unmap", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    const mfn = granter.pfnToMfn(PFN)!;
    fill(b, granter, PFN, 0x42);
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8);
    expect(endAccess(b, granter, 8)).toBe(false);
    expect(flagsOf(b, granter, 8) & GTF.reading).toBe(GTF.reading);

    // The granter gives the page up anyway: the mapping keeps the frame alive, still in its tot_pages.
    expect(granter.depopulate(PFN)).toBe(true);
    expect([granter.pfnToMfn(PFN), granter.totPages]).toEqual([undefined, 32]);
    expect([b.hv.machine.owner[mfn], b.hv.machine.refCount[mfn]]).toEqual([granter.domid, 1]);
    expect(read(b.hv, mapper, HOST, 2)).toEqual(new Uint8Array([0x42, 0x42]));
    expectInvariants(b.hv);

    expect(unmap(b, mapper, r.handle)).toBe(GNTST.okay);
    expect([b.hv.machine.owner[mfn], b.hv.machine.refCount[mfn], granter.totPages]).toEqual([FRAME_FREE, 0, 31]);
    expect(endAccess(b, granter, 8)).toBe(true);
    expect(flagsOf(b, granter, 8)).toBe(0);
  });

  it("is caught by the invariant checker if it scribbles the in-use flags away", () => {
    const b = newBed();
    grant(b, b.domU, 8, 2);
    const r = map(b, b.domUs[1]!, b.domU.domid, 8);
    grant(b, b.domU, 8, 2, GTF.permit_access);
    expect(grantInvariants(b.hv)).toEqual([expect.stringMatching(/granter's entry has flags 0x1 domid 2, expected GTF_reading\|GTF_writing for d2/)]);
    grant(b, b.domU, 8, 2, GTF.permit_access | GTF.reading | GTF.writing);
    expect(unmap(b, b.domUs[1]!, r.handle)).toBe(GNTST.okay);
  });

  it("the checker also finds a mapping removed behind the maptrack's back", () => {
    const b = newBed();
    grant(b, b.domU, 8, 2);
    const r = map(b, b.domUs[1]!, b.domU.domid, 8);
    const m = b.domUs[1]!.mappings.get(HOST / PAGE_SIZE)!;
    b.domUs[1]!.mappings.delete(HOST / PAGE_SIZE);
    expect(checkInvariants(b.hv)).toContainEqual(expect.stringMatching(/grant handle \d+ \(d1 ref 8\): va page 100 does not hold its mapping/));
    b.domUs[1]!.mappings.set(HOST / PAGE_SIZE, m);
    expect(unmap(b, b.domUs[1]!, r.handle)).toBe(GNTST.okay);
  });
});

describe("GNTTABOP_copy", () => {
  const SELF = DOMID.SELF;

  it("copies out of a grant into the caller's own frame, pinning the entry only for the copy", () => {
    const b = newBed();
    const [granter, caller] = [b.domU, b.domUs[1]!];
    expect(copyToGuest(b.hv.machine, granter, PFN * PAGE_SIZE + 100, new TextEncoder().encode("granted bytes"))).toBe(true);
    grant(b, granter, 8, caller.domid, GTF.permit_access | GTF.readonly);
    const dest = caller.pfnToMfn(6)!;
    const status = copy(b, caller, { source: { ref: 8, domid: granter.domid, offset: 100 }, dest: { gmfn: BigInt(dest), domid: SELF, offset: 4000 }, len: 13, flags: GNTCOPY.source_gref });
    expect(status).toBe(GNTST.okay);
    expect(new TextDecoder().decode(read(b.hv, caller, 6 * PAGE_SIZE + 4000, 13))).toBe("granted bytes");
    expect(flagsOf(b, granter, 8)).toBe(GTF.permit_access | GTF.readonly);
    expect(table(b, granter).active.size).toBe(0);
    expect(b.hv.trace.records).toContainEqual({ t: 0, kind: "grant", op: "copy", domid: caller.domid, granter: granter.domid, ref: 8, status: GNTST.okay });
  });

  it("copies from the caller's frame into a writable grant", () => {
    const b = newBed();
    const [granter, caller] = [b.domU, b.dom0];
    fill(b, caller, 7, 0xab);
    grant(b, granter, 8, caller.domid);
    const status = copy(b, caller, { source: { gmfn: BigInt(caller.pfnToMfn(7)!), domid: SELF, offset: 0 }, dest: { ref: 8, domid: granter.domid, offset: 10 }, len: 20, flags: GNTCOPY.dest_gref });
    expect(status).toBe(GNTST.okay);
    const got = read(b.hv, granter, PFN * PAGE_SIZE, 40)!;
    expect([...got.subarray(0, 10)].every((x) => x === 0)).toBe(true);
    expect([...got.subarray(10, 30)].every((x) => x === 0xab)).toBe(true);
    expect([...got.subarray(30)].every((x) => x === 0)).toBe(true);
    expect(flagsOf(b, granter, 8)).toBe(GTF.permit_access);
  });

  it("copies between two grants of two domains, and leaves a mapping's flags as they were", () => {
    const b = newBed({ domUs: 3 });
    const [a, c, caller] = b.domUs as [Domain, Domain, Domain];
    fill(b, a, PFN, 0x11);
    grant(b, a, 8, caller.domid, GTF.permit_access | GTF.readonly);
    grant(b, c, 9, caller.domid);
    const r = map(b, caller, c.domid, 9, HOST, GNTMAP.host_map | GNTMAP.readonly);
    const status = copy(b, caller, { source: { ref: 8, domid: a.domid, offset: 0 }, dest: { ref: 9, domid: c.domid, offset: 0 }, len: PAGE_SIZE, flags: GNTCOPY.source_gref | GNTCOPY.dest_gref });
    expect(status).toBe(GNTST.okay);
    expect(read(b.hv, caller, HOST, PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE).fill(0x11));
    expect(flagsOf(b, c, 9)).toBe(GTF.permit_access | GTF.reading); // GTF_writing was only for the copy
    expect(unmap(b, caller, r.handle)).toBe(GNTST.okay);
  });

  it("copies within the caller's own pages by frame", () => {
    const b = newBed();
    fill(b, b.domU, 2, 0x33);
    const status = copy(b, b.domU, { source: { gmfn: BigInt(b.domU.pfnToMfn(2)!), domid: SELF, offset: 1 }, dest: { gmfn: BigInt(b.domU.pfnToMfn(3)!), domid: SELF, offset: 2 }, len: 3, flags: 0 });
    expect(status).toBe(GNTST.okay);
    expect(read(b.hv, b.domU, 3 * PAGE_SIZE, 6)).toEqual(new Uint8Array([0, 0, 0x33, 0x33, 0x33, 0]));
  });

  type Case = readonly [string, number, (b: Bed, granter: Domain, caller: Domain) => CopyOp];
  const fromGrant = (granter: Domain, caller: Domain, over: Partial<CopyOp> = {}): CopyOp => ({
    source: { ref: 8, domid: granter.domid, offset: 0 },
    dest: { gmfn: BigInt(caller.pfnToMfn(6)!), domid: SELF, offset: 0 },
    len: 16,
    flags: GNTCOPY.source_gref,
    ...over,
  });
  const cases: readonly Case[] = [
    ["a frame named with the caller's own domid (only DOMID_SELF)", GNTST.permission_denied, (_b, g, c) => fromGrant(g, c, { dest: { gmfn: BigInt(c.pfnToMfn(6)!), domid: c.domid, offset: 0 } })],
    ["a frame of another domain", GNTST.permission_denied, (_b, g, c) => fromGrant(g, c, { flags: 0, source: { gmfn: BigInt(g.pfnToMfn(PFN)!), domid: g.domid, offset: 0 } })],
    ["a grant of a domain that does not exist", GNTST.bad_domain, (_b, g, c) => fromGrant(g, c, { source: { ref: 8, domid: 77, offset: 0 } })],
    ["a ref beyond the table", GNTST.bad_gntref, (_b, g, c) => fromGrant(g, c, { source: { ref: 4096, domid: g.domid, offset: 0 } })],
    ["a grant to another domain", GNTST.general_error, (b, g, c) => (grant(b, g, 8, 0), fromGrant(g, c))],
    ["an entry that grants nothing", GNTST.general_error, (b, g, c) => (grant(b, g, 8, c.domid, GTF.invalid), fromGrant(g, c))],
    [
      "writing into a read-only grant",
      GNTST.general_error,
      (b, g, c) => (grant(b, g, 8, c.domid, GTF.permit_access | GTF.readonly), { source: { gmfn: BigInt(c.pfnToMfn(6)!), domid: SELF, offset: 0 }, dest: { ref: 8, domid: g.domid, offset: 0 }, len: 16, flags: GNTCOPY.dest_gref }),
    ],
    ["a granted frame the granter does not own", GNTST.bad_page, (b, g, c) => (grant(b, g, 8, c.domid, GTF.permit_access, c.pfnToMfn(1)!), fromGrant(g, c))],
    ["a DOMID_SELF frame the caller does not own", GNTST.bad_page, (_b, g, c) => fromGrant(g, c, { dest: { gmfn: BigInt(g.pfnToMfn(1)!), domid: SELF, offset: 0 } })],
    ["a destination frame that is a page table", GNTST.general_error, (b, g, c) => ((b.hv.machine.type[c.pfnToMfn(6)!] = PageType.l1), fromGrant(g, c))],
    ["a source range past the page", GNTST.bad_copy_arg, (_b, g, c) => fromGrant(g, c, { source: { ref: 8, domid: g.domid, offset: PAGE_SIZE - 8 } })],
    ["a destination range past the page", GNTST.bad_copy_arg, (_b, g, c) => fromGrant(g, c, { dest: { gmfn: BigInt(c.pfnToMfn(6)!), domid: SELF, offset: 1 }, len: PAGE_SIZE })],
  ];

  it.each(cases)("refuses %s with its GNTST code and copies nothing", (_what, status, build) => {
    const b = newBed();
    const [granter, caller] = [b.domU, b.domUs[1]!];
    fill(b, granter, PFN, 0xcc);
    grant(b, granter, 8, caller.domid);
    const op = build(b, granter, caller);
    const flagsBefore = flagsOf(b, granter, 8);
    const before = b.hv.machine.bytes.slice();
    expect(copy(b, caller, op)).toBe(status);
    // Only the op's own status changed in memory, in the caller's argument page.
    expect(changedFrames(before, b.hv.machine.bytes)).toEqual([caller.pfnToMfn(16)!]);
    expect(flagsOf(b, granter, 8)).toBe(flagsBefore);
    expect(table(b, granter).active.size).toBe(0);
    b.hv.machine.type[caller.pfnToMfn(6)!] = PageType.none;
  });

  it("gives each op of a batch its own status", () => {
    const b = newBed();
    const [granter, caller] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, caller.domid);
    const args = b.args(caller);
    const ok = copyValue({ source: { ref: 8, domid: granter.domid, offset: 0 }, dest: { gmfn: BigInt(caller.pfnToMfn(6)!), domid: SELF, offset: 0 }, len: 8, flags: GNTCOPY.source_gref });
    const va = args.putArray(gnttab_copy, [ok, { ...ok, len: PAGE_SIZE + 1 }, ok]);
    expect(b.call(caller, HYPERVISOR.grant_table_op, GNTTABOP.copy, va, 3)).toBe(0);
    expect([0, 1, 2].map((i) => args.getAt(gnttab_copy, va, i).status)).toEqual([GNTST.okay, GNTST.bad_copy_arg, GNTST.okay]);
  });
});

describe("the other commands", () => {
  it("answers every GNTTABOP_transfer with GNTST_general_error and moves no page", () => {
    const b = newBed();
    grant(b, b.dom0, 8, b.domU.domid, GTF.accept_transfer, 0);
    const args = b.args(b.domU);
    const mfn = b.domU.pfnToMfn(PFN)!;
    const va = args.putArray(gnttab_transfer, [
      { mfn: BigInt(mfn), domid: 0, ref: 8, status: 99 },
      { mfn: BigInt(mfn), domid: 0, ref: 9, status: 99 },
    ]);
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.transfer, va, 2)).toBe(0);
    expect([0, 1].map((i) => args.getAt(gnttab_transfer, va, i).status)).toEqual([GNTST.general_error, GNTST.general_error]);
    expect(b.hv.machine.owner[mfn]).toBe(b.domU.domid);
    expect(flagsOf(b, b.dom0, 8)).toBe(GTF.accept_transfer);
  });

  it("keeps version 1: set_version 1 succeeds, 2 is -ENOSYS, anything else -EINVAL; get_version says 1", () => {
    const b = newBed();
    const setVersion = (v: number) => {
      const args = b.args(b.domU);
      const va = args.put(gnttab_set_version, { version: v });
      return [b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.set_version, va, 1), args.get(gnttab_set_version, va).version];
    };
    expect(setVersion(1)).toEqual([0, 1]);
    expect(setVersion(2)).toEqual([-XEN_ERRNO.ENOSYS, 1]);
    expect(setVersion(3)).toEqual([-XEN_ERRNO.EINVAL, 1]);
    const getVersion = (caller: Domain, dom: number) => {
      const args = b.args(caller);
      const va = args.put(gnttab_get_version, { dom, version: 99 });
      return [b.call(caller, HYPERVISOR.grant_table_op, GNTTABOP.get_version, va, 1), args.get(gnttab_get_version, va).version];
    };
    expect(getVersion(b.domU, DOMID.SELF)).toEqual([0, 1]);
    expect(getVersion(b.dom0, b.domU.domid)).toEqual([0, 1]);
    expect(getVersion(b.domU, 0)).toEqual([-XEN_ERRNO.EPERM, 99]);
    expect(getVersion(b.domU, 77)).toEqual([-XEN_ERRNO.ESRCH, 99]);
  });

  it("reports no status frames under version 1", () => {
    const b = newBed();
    const statusFor = (nr: number) => {
      const args = b.args(b.domU);
      const va = args.put(gnttab_get_status_frames, { nr_frames: nr, dom: DOMID.SELF, status: 99 });
      expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.get_status_frames, va, 1)).toBe(0);
      return args.get(gnttab_get_status_frames, va).status;
    };
    expect(statusFor(0)).toBe(GNTST.okay);
    expect(statusFor(1)).toBe(GNTST.general_error);
  });

  it("swaps two entries of the caller's table unless one is in use", () => {
    const b = newBed();
    grant(b, b.domU, 10, 2);
    grant(b, b.domU, 11, 0, GTF.permit_access | GTF.readonly, 1234);
    const swap = (a: number, c: number) => {
      const args = b.args(b.domU);
      const va = args.put(gnttab_swap_grant_ref, { ref_a: a, ref_b: c, status: 99 });
      expect(b.call(b.domU, HYPERVISOR.grant_table_op, GNTTABOP.swap_grant_ref, va, 1)).toBe(0);
      return args.get(gnttab_swap_grant_ref, va).status;
    };
    const e10 = table(b, b.domU).entry(10);
    const e11 = table(b, b.domU).entry(11);
    expect(swap(10, 11)).toBe(GNTST.okay);
    expect([table(b, b.domU).entry(10), table(b, b.domU).entry(11)]).toEqual([e11, e10]);
    expect(swap(10, 10)).toBe(GNTST.okay);
    expect(swap(10, GRANT_ENTRIES_PER_FRAME)).toBe(GNTST.bad_gntref);
    const r = map(b, b.domUs[1]!, b.domU.domid, 11);
    expect(r.status).toBe(GNTST.okay);
    expect(swap(10, 11)).toBe(GNTST.eagain);
    expect(unmap(b, b.domUs[1]!, r.handle)).toBe(GNTST.okay);
  });

  it.each([
    ["an unknown command", 99, 1, -XEN_ERRNO.ENOSYS],
    ["GNTTABOP_dump_table (gone from Xen)", GNTTABOP.dump_table, 1, -XEN_ERRNO.ENOSYS],
    ["GNTTABOP_unmap_and_replace", GNTTABOP.unmap_and_replace, 1, -XEN_ERRNO.ENOSYS],
    ["GNTTABOP_cache_flush", GNTTABOP.cache_flush, 1, -XEN_ERRNO.ENOSYS],
    ["continuation bits on a command other than cache_flush", GNTTABOP.map_grant_ref | (1 << 12), 1, -XEN_ERRNO.EINVAL],
    ["a negative count", GNTTABOP.map_grant_ref, -1, -XEN_ERRNO.EINVAL],
    ["a count past INT_MAX", GNTTABOP.copy, 2 ** 31, -XEN_ERRNO.EINVAL],
    ["a fractional count", GNTTABOP.copy, 1.5, -XEN_ERRNO.EINVAL],
    ["no operations", GNTTABOP.map_grant_ref, 0, 0],
  ])("answers %s with its errno", (_what, cmd, count, rc) => {
    const b = newBed();
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, cmd, 16 * PAGE_SIZE, count)).toBe(rc);
  });

  it.each([
    [GNTTABOP.map_grant_ref, gnttab_map_grant_ref.size],
    [GNTTABOP.unmap_grant_ref, gnttab_unmap_grant_ref.size],
    [GNTTABOP.copy, gnttab_copy.size],
    [GNTTABOP.transfer, gnttab_transfer.size],
    [GNTTABOP.query_size, 0],
    [GNTTABOP.set_version, 0],
    [GNTTABOP.get_version, 0],
  ])("answers command %i on an unreadable array with -EFAULT", (cmd, size) => {
    const b = newBed();
    expect(b.call(b.domU, HYPERVISOR.grant_table_op, cmd, 200 * PAGE_SIZE, 1)).toBe(-XEN_ERRNO.EFAULT);
    if (size > 0) {
      // An array running off the end of RAM: the first op runs, the second faults.
      const va = 32 * PAGE_SIZE - size;
      expect(b.call(b.domU, HYPERVISOR.grant_table_op, cmd, va, 2)).toBe(-XEN_ERRNO.EFAULT);
    }
  });

  it("runs the ops before a fault in a batch", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    const va = 32 * PAGE_SIZE - gnttab_map_grant_ref.size;
    b.args(mapper).put(gnttab_map_grant_ref, { host_addr: BigInt(HOST), flags: GNTMAP.host_map, ref: 8, dom: granter.domid }, va);
    expect(b.call(mapper, HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, va, 2)).toBe(-XEN_ERRNO.EFAULT);
    const done = b.args(mapper).get(gnttab_map_grant_ref, va);
    expect(done.status).toBe(GNTST.okay);
    expect(unmap(b, mapper, done.handle)).toBe(GNTST.okay);
  });
});

describe("destroying domains with grants in use", () => {
  it("destroying the grantee undoes its mappings and clears the granter's flags", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    const mfn = granter.pfnToMfn(PFN)!;
    grant(b, granter, 8, mapper.domid);
    grant(b, granter, 9, mapper.domid, GTF.permit_access | GTF.readonly);
    expect(map(b, mapper, granter.domid, 8).status).toBe(GNTST.okay);
    expect(map(b, mapper, granter.domid, 9, HOST + PAGE_SIZE, GNTMAP.host_map | GNTMAP.readonly).status).toBe(GNTST.okay);
    expect(b.hv.machine.refCount[mfn]).toBe(3);
    expect(b.hv.destroyDomain(mapper)).toBe(0);
    expect(mapper.state).toBe("destroyed");
    expect([flagsOf(b, granter, 8), flagsOf(b, granter, 9)]).toEqual([GTF.permit_access, GTF.permit_access | GTF.readonly]);
    expect([b.hv.machine.refCount[mfn], b.hv.machine.type[mfn]]).toEqual([1, PageType.none]);
    expect(table(b, granter).active.size).toBe(0);
    expect(b.hv.machine.ownedBy(mapper.domid)).toBe(0);
    expect(endAccess(b, granter, 8)).toBe(true);
  });

  it("destroying the granter while mapped leaves it dying until the grantee unmaps, then every frame of it is free", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    const mfn = granter.pfnToMfn(PFN)!;
    const grantFrames = [...table(b, granter).frames];
    fill(b, granter, PFN, 0x99);
    grant(b, granter, 8, mapper.domid);
    const r = map(b, mapper, granter.domid, 8);
    expect(b.hv.destroyDomain(granter)).toBe(0);
    expect(granter.state).toBe("dying");
    expect(b.hv.domains.has(granter.domid)).toBe(true);
    expect(b.hv.machine.framesOf(granter.domid)).toEqual([mfn]); // only the mapped page is left
    for (const f of grantFrames) expect(b.hv.machine.refCount[f]).toBe(0);
    expect(table(b, granter).released).toBe(true);
    expect(read(b.hv, mapper, HOST, 1)).toEqual(new Uint8Array([0x99]));
    // A dying granter's grants can no longer be mapped.
    expect(map(b, mapper, granter.domid, 8, HOST + PAGE_SIZE).status).toBe(GNTST.bad_domain);
    expectInvariants(b.hv);

    expect(unmap(b, mapper, r.handle)).toBe(GNTST.okay);
    expect(granter.state).toBe("destroyed");
    expect(b.hv.domains.has(granter.domid)).toBe(false);
    expect(b.hv.machine.framesOf(granter.domid)).toEqual([]);
    expect(b.hv.machine.refCount[mfn]).toBe(0);
    expect(table(b, granter).active.size).toBe(0);
    const owned = [...b.hv.domains.values()].reduce((n, d) => n + b.hv.machine.ownedBy(d.domid), 0);
    expect(b.hv.machine.freeFrames).toBe(b.hv.machine.frames - owned);
  });

  it("destroying the grantee of a dying granter lets both go", () => {
    const b = newBed();
    const [granter, mapper] = [b.domU, b.domUs[1]!];
    grant(b, granter, 8, mapper.domid);
    expect(map(b, mapper, granter.domid, 8).status).toBe(GNTST.okay);
    b.hv.destroyDomain(granter);
    expect(granter.state).toBe("dying");
    b.hv.destroyDomain(mapper);
    expect([granter.state, mapper.state]).toEqual(["destroyed", "destroyed"]);
    expect(b.hv.machine.freeFrames).toBe(b.hv.machine.frames - b.hv.machine.ownedBy(0));
  });

  it("a domain mapping its own grant is destroyed cleanly", () => {
    const b = newBed();
    grant(b, b.domU, 8, b.domU.domid);
    expect(map(b, b.domU, b.domU.domid, 8).status).toBe(GNTST.okay);
    b.hv.destroyDomain(b.domU);
    expect(b.domU.state).toBe("destroyed");
    expect(b.hv.machine.ownedBy(b.domU.domid)).toBe(0);
  });
});
