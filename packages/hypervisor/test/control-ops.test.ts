import { afterEach, describe, expect, it } from "vitest";
import {
  DOMID,
  EVTCHNOP,
  GNTST,
  GNTTABOP,
  HYPERVISOR,
  RUNSTATE,
  SHUTDOWN,
  XENMAPSPACE,
  XENMEM,
  XEN_DOMCTL,
  XEN_DOMCTL_CDF,
  XEN_DOMCTL_INTERFACE,
  XEN_DOMCTL_SCHEDOP,
  XEN_DOMINF,
  XEN_ERRNO,
  XEN_SCHEDULER,
  XEN_SYSCTL,
  XEN_SYSCTL_INTERFACE,
  XEN_SYSCTL_PHYSCAP,
  evtchn_alloc_unbound,
  gnttab_setup_table,
  xen_add_to_physmap_batch,
  xen_domctl,
  xen_domctl_createdomain,
  xen_domctl_getdomaininfo,
  xen_domctl_getvcpuinfo,
  xen_domctl_max_mem,
  xen_domctl_max_vcpus,
  xen_domctl_scheduler_op,
  xen_domctl_setdomainhandle,
  xen_domctl_settimeoffset,
  xen_memory_domain,
  xen_memory_reservation,
  xen_remove_from_physmap,
  xen_sysctl,
  xen_sysctl_getdomaininfolist,
  xen_sysctl_physinfo,
  xen_sysctl_readconsole,
  xen_sysctl_sched_id,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import type { Domain } from "@pvkit/hypervisor";
import { UNMAPPED, bed, expectInvariants, type Bed } from "./bed.js";

const E = XEN_ERRNO;

const U = xen_domctl.fields.u.offset;
const SU = xen_sysctl.fields.u.offset;

interface Answer {
  readonly rc: number;
  /** `xen_domctl.domain` / the whole struct afterwards. */
  readonly domain: number;
  /** The union read back as `layout`. */
  union<L extends StructLayout>(layout: L): StructValue<L>;
}

/** A domctl from `caller` with the command's struct in the union. */
function domctl<L extends StructLayout>(
  b: Bed,
  caller: Domain,
  cmd: number,
  domain: number,
  layout?: L,
  values?: Partial<StructValue<L>>,
  opts: { version?: number; argVa?: number } = {},
): Answer {
  const a = b.args(caller);
  const va = a.put(xen_domctl, { cmd, interface_version: opts.version ?? XEN_DOMCTL_INTERFACE.VERSION, domain });
  if (layout !== undefined) a.put(layout, values ?? {}, va + U);
  const rc = b.call(caller, HYPERVISOR.domctl, opts.argVa ?? va);
  return { rc, domain: a.get(xen_domctl, va).domain, union: (l) => a.get(l, va + U) };
}

function info(b: Bed, domid: number, caller: Domain = b.dom0): Answer & { info: StructValue<typeof xen_domctl_getdomaininfo> } {
  const r = domctl(b, caller, XEN_DOMCTL.getdomaininfo, domid);
  return { ...r, info: r.union(xen_domctl_getdomaininfo) };
}

function sysctl<L extends StructLayout>(b: Bed, caller: Domain, cmd: number, layout?: L, values?: Partial<StructValue<L>>, opts: { version?: number; argVa?: number } = {}) {
  const a = b.args(caller);
  const va = a.put(xen_sysctl, { cmd, interface_version: opts.version ?? XEN_SYSCTL_INTERFACE.VERSION });
  if (layout !== undefined) a.put(layout, values ?? {}, va + SU);
  const rc = b.call(caller, HYPERVISOR.sysctl, opts.argVa ?? va);
  return { rc, a, union: <M extends StructLayout>(l: M) => a.get(l, va + SU) };
}

function memoryOp(b: Bed, caller: Domain, cmd: number, layout: StructLayout, values: Record<string, unknown>): number {
  const va = b.args(caller).put(layout, values as never);
  return b.call(caller, HYPERVISOR.memory_op, cmd, va);
}

const { dying, shutdown, paused, blocked, running, shutdownshift } = XEN_DOMINF;

/** A createdomain configuration Xen 4.17 accepts: one vCPU and the default limits. */
const CREATE: Partial<StructValue<typeof xen_domctl_createdomain>> = { max_vcpus: 1, max_grant_frames: -1, max_maptrack_frames: -1, max_evtchn_port: 1023 };

describe("a domain's life through domctl", () => {
  it("create → max_mem → populate → getdomaininfo → unpause → run → block → pause → shut down → destroy", () => {
    const b = bed();
    const handle = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    const created = domctl(b, b.dom0, XEN_DOMCTL.createdomain, 0, xen_domctl_createdomain, { ...CREATE, max_vcpus: 2, handle });
    expect(created.rc).toBe(0);
    const id = created.domain;
    expect(id).toBe(3); // the first free id after 0 (1 and 2 are the bed's)
    const d = b.hv.domains.get(id)!;

    let i = info(b, id).info;
    expect(i).toMatchObject({ domain: id, flags: paused, tot_pages: 0n, max_pages: 0n, nr_online_vcpus: 1, max_vcpu_id: 1, ssidref: 0, cpupool: 0 });
    expect(i.shared_info_frame).toBe(BigInt(d.sharedInfoMfn));
    expect(i.handle).toEqual(handle);

    expect(domctl(b, b.dom0, XEN_DOMCTL.max_mem, id, xen_domctl_max_mem, { max_memkb: 64n }).rc).toBe(0);
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_vcpus, id, xen_domctl_max_vcpus, { max: 2 }).rc).toBe(0);
    // The domain builder populates the new domain from dom0, and maps a page of it to write start_info.
    const a = b.args(b.dom0);
    const list = a.alloc(8 * 17);
    a.write(list, new Uint8Array(new BigUint64Array(Array.from({ length: 17 }, (_, p) => BigInt(p))).buffer));
    const reservation = a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: 17n, domid: id });
    expect(b.call(b.dom0, HYPERVISOR.memory_op, XENMEM.populate_physmap, reservation)).toBe(16); // max_pages stops the 17th
    const idxs = a.alloc(8);
    const gpfns = a.alloc(8);
    const errs = a.alloc(4);
    a.write(gpfns, new Uint8Array(new BigUint64Array([200n]).buffer));
    expect(b.call(b.dom0, HYPERVISOR.memory_op, XENMEM.add_to_physmap_batch, a.put(xen_add_to_physmap_batch, { domid: DOMID.SELF, space: XENMAPSPACE.gmfn_foreign, size: 1, foreign_domid: id, idxs: BigInt(idxs), gpfns: BigInt(gpfns), errs: BigInt(errs) }))).toBe(0);
    i = info(b, id).info;
    expect([i.tot_pages, i.max_pages, i.flags]).toEqual([16n, 16n, paused]);
    expectInvariants(b.hv);

    expect(domctl(b, b.dom0, XEN_DOMCTL.unpausedomain, id).rc).toBe(0);
    expect(info(b, id).info.flags).toBe(0); // runnable: neither running nor blocked
    b.hv.setRunstate(d.vcpus[0]!, RUNSTATE.running);
    b.hv.advanceTo(1000);
    i = info(b, id).info;
    expect([i.flags, i.cpu_time]).toEqual([running, 1000n]);
    b.hv.setRunstate(d.vcpus[0]!, RUNSTATE.blocked);
    b.hv.advanceTo(5000);
    i = info(b, id).info;
    expect([i.flags, i.cpu_time]).toEqual([blocked, 1000n]);
    expect(domctl(b, b.dom0, XEN_DOMCTL.unpausedomain, id).rc).toBe(-E.EINVAL); // not paused

    expect(domctl(b, b.dom0, XEN_DOMCTL.pausedomain, id).rc).toBe(0);
    expect(info(b, id).info.flags).toBe(paused | blocked);
    b.hv.shutdown(d, SHUTDOWN.reboot);
    expect(info(b, id).info.flags).toBe(paused | shutdown | (SHUTDOWN.reboot << shutdownshift));

    // dom0 still maps one of its pages: destroyed, it stays dying, owning that page, until dom0 lets go.
    expect(domctl(b, b.dom0, XEN_DOMCTL.destroydomain, id).rc).toBe(0);
    i = info(b, id).info;
    expect([i.domain, i.flags, i.tot_pages, i.nr_online_vcpus]).toEqual([id, dying | paused | shutdown | (SHUTDOWN.reboot << shutdownshift), 1n, 0]);
    expect(domctl(b, b.dom0, XEN_DOMCTL.destroydomain, id).rc).toBe(0); // again: still dying
    expectInvariants(b.hv);
    expect(b.call(b.dom0, HYPERVISOR.memory_op, XENMEM.remove_from_physmap, a.put(xen_remove_from_physmap, { domid: DOMID.SELF, gpfn: 200n }))).toBe(0);
    expect(b.hv.domains.has(id)).toBe(false);
    expect(info(b, id).rc).toBe(-E.ESRCH);
    expectInvariants(b.hv);
  });

  it("chooses domids round-robin, never 0, and honours a free one asked for", () => {
    const b = bed();
    const create = (domain: number) => domctl(b, b.dom0, XEN_DOMCTL.createdomain, domain, xen_domctl_createdomain, CREATE);
    expect(create(0).domain).toBe(3);
    expect(create(10).domain).toBe(10);
    expect(create(DOMID.INVALID).domain).toBe(4); // after the last one chosen, not the one asked for
    b.hv.destroyDomain(b.hv.domains.get(3)!);
    expect(create(0).domain).toBe(5);
    expectInvariants(b.hv);
  });
});

describe("domctl refusals", () => {
  it.each([
    ["a wrong interface version, even from dom0", "dom0", XEN_DOMCTL.getdomaininfo, 0, { version: 0x14 }, -E.EACCES],
    ["a wrong interface version from a domU", "domU", XEN_DOMCTL.pausedomain, 2, { version: 0 }, -E.EACCES],
    ["a domU inspecting dom0", "domU", XEN_DOMCTL.getdomaininfo, 0, {}, -E.EPERM],
    ["a domU inspecting itself", "domU", XEN_DOMCTL.getdomaininfo, 1, {}, -E.EPERM],
    ["a domU pausing itself", "domU", XEN_DOMCTL.pausedomain, 1, {}, -E.EPERM],
    ["a domU pausing another", "domU", XEN_DOMCTL.pausedomain, 2, {}, -E.EPERM],
    ["a domU creating a domain", "domU", XEN_DOMCTL.createdomain, 0, {}, -E.EPERM],
    ["a domU naming a domain that does not exist", "domU", XEN_DOMCTL.pausedomain, 77, {}, -E.ESRCH],
    ["a domU sending an unknown command", "domU", XEN_DOMCTL.shadow_op, 1, {}, -E.EPERM],
    ["an unknown command", "dom0", XEN_DOMCTL.shadow_op, 1, {}, -E.ENOSYS],
    ["a command with no such domain", "dom0", XEN_DOMCTL.unpausedomain, 77, {}, -E.ESRCH],
    ["DOMID_SELF (domctl names domains by id)", "dom0", XEN_DOMCTL.pausedomain, DOMID.SELF, {}, -E.ESRCH],
    ["getdomaininfo of a reserved domid", "dom0", XEN_DOMCTL.getdomaininfo, DOMID.SELF, {}, -E.EINVAL],
    ["getdomaininfo past the last domain", "dom0", XEN_DOMCTL.getdomaininfo, 3, {}, -E.ESRCH],
    ["dom0 pausing itself", "dom0", XEN_DOMCTL.pausedomain, 0, {}, -E.EINVAL],
    ["dom0 destroying itself", "dom0", XEN_DOMCTL.destroydomain, 0, {}, -E.EINVAL],
    ["an unreadable argument", "dom0", XEN_DOMCTL.pausedomain, 1, { argVa: UNMAPPED }, -E.EFAULT],
  ] as const)("refuses %s", (_what, who, cmd, domain, opts, errno) => {
    const b = bed();
    const caller = who === "dom0" ? b.dom0 : b.domU;
    expect(domctl(b, caller, cmd, domain, undefined, undefined, opts).rc).toBe(errno);
    expect(b.hv.domains.size).toBe(3);
    expect([...b.hv.domains.values()].map((d) => [d.state, d.pauseCount])).toEqual([["running", 0], ["running", 0], ["running", 0]]);
    expectInvariants(b.hv);
  });

  it.each<[string, number, Partial<StructValue<typeof xen_domctl_createdomain>>, number]>([
    ["a domid in use", 1, CREATE, -E.EEXIST],
    ["a domid in use, even with a bad configuration", 1, { ...CREATE, max_grant_frames: 0 }, -E.EEXIST],
    ["an HVM guest", 0, { ...CREATE, flags: XEN_DOMCTL_CDF.hvm }, -E.EINVAL],
    ["hardware-assisted paging", 0, { ...CREATE, flags: XEN_DOMCTL_CDF.hap }, -E.EINVAL],
    ["emulated devices for a PV guest", 0, { ...CREATE, arch: { emulation_flags: 1, misc_flags: 0 } }, -E.EINVAL],
    ["unknown MSR flags", 0, { ...CREATE, arch: { emulation_flags: 0, misc_flags: 2 } }, -E.EINVAL],
    ["no vCPUs", 0, { ...CREATE, max_vcpus: 0 }, -E.EINVAL],
    ["more vCPUs than pvkit has", 0, { ...CREATE, max_vcpus: 33 }, -E.EINVAL],
    ["no grant frames", 0, { ...CREATE, max_grant_frames: 0 }, -E.EINVAL],
    ["more grant frames than Xen's default", 0, { ...CREATE, max_grant_frames: 65 }, -E.EINVAL],
    ["more maptrack frames than Xen's default", 0, { ...CREATE, max_maptrack_frames: 1025 }, -E.EINVAL],
  ])("createdomain refuses %s", (_what, domain, config, errno) => {
    const b = bed();
    const r = domctl(b, b.dom0, XEN_DOMCTL.createdomain, domain, xen_domctl_createdomain, config);
    expect(r.rc).toBe(errno);
    expect(r.domain).toBe(domain); // nothing written back
    expect(b.hv.domains.size).toBe(3);
    expectInvariants(b.hv);
  });

  it("createdomain with XEN_DOMCTL_CDF_xs_domain marks a XenStore domain", () => {
    const b = bed();
    const r = domctl(b, b.dom0, XEN_DOMCTL.createdomain, 0, xen_domctl_createdomain, { ...CREATE, flags: XEN_DOMCTL_CDF.xs_domain });
    expect(info(b, r.domain).info.flags).toBe(paused | XEN_DOMINF.xs_domain);
    // Xen's dummy policy lets the XenStore domain inspect any domain (XSM_XS_PRIV), and do nothing else.
    const xs = b.hv.domains.get(r.domain)!;
    xs.maxPages = 32;
    for (let pfn = 0; pfn < 32; pfn++) xs.populate(pfn); // room for its arguments
    expect(info(b, 1, xs)).toMatchObject({ rc: 0, domain: 1 });
    expect(domctl(b, xs, XEN_DOMCTL.pausedomain, 1).rc).toBe(-E.EPERM);
  });

  it("createdomain applies max_grant_frames, max_maptrack_frames and max_evtchn_port", () => {
    const b = bed();
    const r = domctl(b, b.dom0, XEN_DOMCTL.createdomain, 0, xen_domctl_createdomain, { max_vcpus: 1, max_grant_frames: 4, max_maptrack_frames: 0, max_evtchn_port: 2 });
    expect(r.rc).toBe(0);
    const d = b.hv.domains.get(r.domain)!;
    expect([b.hv.grants.get(d)!.maxFrames, b.hv.grants.get(d)!.maxMaptrackFrames, b.hv.evtchn.get(d)!.maxPort]).toEqual([4, 0, 2]);
    // Acting on the new domain's tables, as the toolstack does while building it.
    const setup = (nr: number) => {
      const a = b.args(b.dom0);
      const frames = a.alloc(8 * nr);
      const va = a.put(gnttab_setup_table, { dom: d.domid, nr_frames: nr, frame_list: BigInt(frames) });
      expect(b.call(b.dom0, HYPERVISOR.grant_table_op, GNTTABOP.setup_table, va, 1)).toBe(0);
      return a.get(gnttab_setup_table, va).status;
    };
    expect([setup(4), setup(5)]).toEqual([GNTST.okay, GNTST.general_error]);
    const alloc = () => b.call(b.dom0, HYPERVISOR.event_channel_op, EVTCHNOP.alloc_unbound, b.args(b.dom0).put(evtchn_alloc_unbound, { dom: d.domid, remote_dom: 0 }));
    expect([alloc(), alloc(), alloc()]).toEqual([0, 0, -E.ENOSPC]); // ports 1 and 2
    // Negative grant limits ask for the defaults; a port limit past 4095 is only 4095.
    const dflt = domctl(b, b.dom0, XEN_DOMCTL.createdomain, 0, xen_domctl_createdomain, { max_vcpus: 1, max_grant_frames: -1, max_maptrack_frames: -1, max_evtchn_port: 0xffffffff });
    const e = b.hv.domains.get(dflt.domain)!;
    expect([b.hv.grants.get(e)!.maxFrames, b.hv.grants.get(e)!.maxMaptrackFrames, b.hv.evtchn.get(e)!.maxPort]).toEqual([64, 1024, 4095]);
    expectInvariants(b.hv);
  });

  it("stops nesting pauses at 255", () => {
    const b = bed();
    b.domU.pauseCount = 255;
    expect(domctl(b, b.dom0, XEN_DOMCTL.pausedomain, 1).rc).toBe(-E.EOVERFLOW);
    expect(b.domU.pauseCount).toBe(255);
  });

  it("max_vcpus must repeat createdomain's count", () => {
    const b = bed();
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_vcpus, 1, xen_domctl_max_vcpus, { max: 2 }).rc).toBe(0);
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_vcpus, 1, xen_domctl_max_vcpus, { max: 3 }).rc).toBe(-E.EINVAL);
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_vcpus, 0, xen_domctl_max_vcpus, { max: 2 }).rc).toBe(-E.EINVAL);
  });
});

describe("XEN_DOMCTL_getdomaininfo", () => {
  it("answers for the next domain up when the domid has none, as Xen 4.17 does", () => {
    const b = bed({ domUs: 3 });
    b.hv.destroyDomain(b.domU);
    const r = info(b, 1);
    expect([r.rc, r.domain, r.info.domain]).toEqual([0, 2, 2]);
  });

  it("reports a domain with every vCPU offline as neither blocked nor running", () => {
    const b = bed();
    for (const v of b.domU.vcpus) b.hv.setRunstate(v, RUNSTATE.offline);
    expect(info(b, 1).info).toMatchObject({ flags: 0, nr_online_vcpus: 0, max_vcpu_id: 1 });
  });
});

describe("XEN_DOMCTL_getvcpuinfo", () => {
  const vcpuInfo = (b: Bed, vcpu: number, caller: Domain = b.dom0) => {
    const r = domctl(b, caller, XEN_DOMCTL.getvcpuinfo, 1, xen_domctl_getvcpuinfo, { vcpu });
    return { rc: r.rc, info: r.union(xen_domctl_getvcpuinfo) };
  };

  it("reports each vCPU's state and the time it has run", () => {
    const b = bed();
    const [v0, v1] = b.domU.vcpus;
    b.hv.setRunstate(v0!, RUNSTATE.blocked);
    b.hv.setRunstate(v1!, RUNSTATE.offline);
    v0!.runstateTime[RUNSTATE.running] = 1234;
    expect(vcpuInfo(b, 0)).toEqual({ rc: 0, info: { vcpu: 0, online: 1, blocked: 1, running: 0, cpu_time: 1234n, cpu: 0 } });
    expect(vcpuInfo(b, 1).info).toMatchObject({ vcpu: 1, online: 0, blocked: 0, running: 0 });
    b.hv.setRunstate(v1!, RUNSTATE.runnable);
    expect(vcpuInfo(b, 1).info).toMatchObject({ online: 1, blocked: 0, running: 0 });
  });

  it("refuses a vCPU the domain does not have with -EINVAL, and a domU with -EPERM", () => {
    const b = bed();
    expect(vcpuInfo(b, b.domU.vcpus.length).rc).toBe(-E.EINVAL);
    expect(vcpuInfo(b, 0, b.domU).rc).toBe(-E.EPERM);
  });
});

describe("XEN_DOMCTL_max_mem", () => {
  it("sets max_pages from KiB and, like Xen, may go below tot_pages: the domain ratchets down", () => {
    const b = bed();
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_mem, 1, xen_domctl_max_mem, { max_memkb: 64n + 3n }).rc).toBe(0);
    expect(b.domU.maxPages).toBe(16);
    expect(memoryOp(b, b.domU, XENMEM.maximum_reservation, xen_memory_domain, { domid: DOMID.SELF })).toBe(16);
    // Over its limit, the domain may not allocate until it has given pages back (its low pages:
    // the list itself lives in the scratch pages above pfn 16).
    const a = b.args(b.domU);
    const list = a.alloc(8 * 16);
    a.write(list, new Uint8Array(new BigUint64Array(Array.from({ length: 16 }, (_, i) => BigInt(i))).buffer));
    expect(b.call(b.domU, HYPERVISOR.memory_op, XENMEM.increase_reservation, a.put(xen_memory_reservation, { extent_start: 0n, nr_extents: 1n, domid: DOMID.SELF }))).toBe(0);
    expect(b.call(b.domU, HYPERVISOR.memory_op, XENMEM.decrease_reservation, a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: 16n, domid: DOMID.SELF }))).toBe(16);
    expect(b.domU.totPages).toBe(16);
    expectInvariants(b.hv);
  });

  it("clamps a huge limit to 32 bits of pages", () => {
    const b = bed();
    expect(domctl(b, b.dom0, XEN_DOMCTL.max_mem, 1, xen_domctl_max_mem, { max_memkb: 2n ** 63n }).rc).toBe(0);
    expect(b.domU.maxPages).toBe(0xffffffff);
  });
});

describe("XEN_DOMCTL_scheduler_op (credit)", () => {
  const sched = (b: Bed, values: Partial<StructValue<typeof xen_domctl_scheduler_op>>) =>
    domctl(b, b.dom0, XEN_DOMCTL.scheduler_op, 1, xen_domctl_scheduler_op, { sched_id: XEN_SCHEDULER.CREDIT, ...values });

  it("reads and sets weight and cap; a weight of 0 or a cap of 0xffff leaves that one alone", () => {
    const b = bed();
    let r = sched(b, { cmd: XEN_DOMCTL_SCHEDOP.getinfo });
    expect([r.rc, r.union(xen_domctl_scheduler_op).credit_weight, r.union(xen_domctl_scheduler_op).credit_cap]).toEqual([0, 256, 0]);
    expect(sched(b, { cmd: XEN_DOMCTL_SCHEDOP.putinfo, credit_weight: 512, credit_cap: 50 }).rc).toBe(0);
    expect(b.domU.sched).toEqual({ weight: 512, cap: 50 });
    expect(sched(b, { cmd: XEN_DOMCTL_SCHEDOP.putinfo, credit_weight: 0, credit_cap: 0xffff }).rc).toBe(0);
    expect(b.domU.sched).toEqual({ weight: 512, cap: 50 });
    expect(sched(b, { cmd: XEN_DOMCTL_SCHEDOP.putinfo, credit_weight: 0, credit_cap: 0 }).rc).toBe(0);
    expect(b.domU.sched).toEqual({ weight: 512, cap: 0 });
    r = sched(b, { cmd: XEN_DOMCTL_SCHEDOP.getinfo });
    expect(r.union(xen_domctl_scheduler_op).credit_weight).toBe(512);
  });

  it.each([
    ["another scheduler's id", { sched_id: XEN_SCHEDULER.CREDIT2, cmd: XEN_DOMCTL_SCHEDOP.putinfo, credit_weight: 9 }],
    ["per-vCPU parameters", { cmd: XEN_DOMCTL_SCHEDOP.putvcpuinfo }],
    ["an unknown command", { cmd: 7 }],
  ] as const)("refuses %s with -EINVAL", (_what, values) => {
    const b = bed();
    expect(sched(b, values).rc).toBe(-E.EINVAL);
    expect(b.domU.sched).toEqual({ weight: 256, cap: 0 });
  });

  it("is refused to a domU, even about itself", () => {
    const b = bed();
    expect(domctl(b, b.domU, XEN_DOMCTL.scheduler_op, 1, xen_domctl_scheduler_op, { sched_id: XEN_SCHEDULER.CREDIT, cmd: XEN_DOMCTL_SCHEDOP.putinfo, credit_weight: 65535 }).rc).toBe(-E.EPERM);
    expect(b.domU.sched.weight).toBe(256);
  });
});

describe("handles and time offsets", () => {
  it("setdomainhandle changes what getdomaininfo reports; settimeoffset is kept for the wallclock", () => {
    const b = bed();
    const handle = new Uint8Array(16).fill(0xab);
    expect(domctl(b, b.dom0, XEN_DOMCTL.setdomainhandle, 1, xen_domctl_setdomainhandle, { handle }).rc).toBe(0);
    expect(info(b, 1).info.handle).toEqual(handle);
    expect(b.domU.timeOffset).toBe(0n);
    expect(domctl(b, b.dom0, XEN_DOMCTL.settimeoffset, 1, xen_domctl_settimeoffset, { time_offset_seconds: -3600n }).rc).toBe(0);
    expect(b.domU.timeOffset).toBe(-3600n);
  });
});

describe("sysctl", () => {
  it("physinfo describes the simulated host", () => {
    const b = bed({ frames: 512, pcpus: 4 });
    const r = sysctl(b, b.dom0, XEN_SYSCTL.physinfo);
    expect(r.rc).toBe(0);
    expect(r.union(xen_sysctl_physinfo)).toMatchObject({
      threads_per_core: 1,
      cores_per_socket: 4,
      nr_cpus: 4,
      max_cpu_id: 3,
      nr_nodes: 1,
      max_node_id: 0,
      cpu_khz: 1_000_000,
      capabilities: XEN_SYSCTL_PHYSCAP.pv | XEN_SYSCTL_PHYSCAP.gnttab_v1,
      total_pages: 512n,
      free_pages: BigInt(b.hv.machine.freeFrames),
      max_mfn: 511n,
    });
  });

  it("getdomaininfolist lists domains in domid order from first_domain, up to max_domains", () => {
    const b = bed();
    const list = (first: number, max: number) => {
      const a = b.args(b.dom0);
      const buffer = a.alloc(xen_domctl_getdomaininfo.size * 4);
      const va = a.put(xen_sysctl, { cmd: XEN_SYSCTL.getdomaininfolist, interface_version: XEN_SYSCTL_INTERFACE.VERSION });
      a.put(xen_sysctl_getdomaininfolist, { first_domain: first, max_domains: max, buffer: BigInt(buffer) }, va + SU);
      const rc = b.call(b.dom0, HYPERVISOR.sysctl, va);
      const n = a.get(xen_sysctl_getdomaininfolist, va + SU).num_domains;
      return { rc, domains: Array.from({ length: n }, (_, i) => a.getAt(xen_domctl_getdomaininfo, buffer, i)) };
    };
    let r = list(0, 10);
    expect(r.rc).toBe(0);
    expect(r.domains.map((d) => [d.domain, d.tot_pages])).toEqual([[0, 32n], [1, 32n], [2, 32n]]);
    r = list(1, 1);
    expect(r.domains.map((d) => d.domain)).toEqual([1]);
    expect(list(5, 10).domains).toEqual([]);
    const bad = sysctl(b, b.dom0, XEN_SYSCTL.getdomaininfolist, xen_sysctl_getdomaininfolist, { first_domain: 0, max_domains: 3, buffer: BigInt(UNMAPPED) });
    expect(bad.rc).toBe(-E.EFAULT);
  });

  it("sched_id is the credit scheduler", () => {
    const b = bed();
    const r = sysctl(b, b.dom0, XEN_SYSCTL.sched_id);
    expect([r.rc, r.union(xen_sysctl_sched_id).sched_id]).toEqual([0, XEN_SCHEDULER.CREDIT]);
  });

  it("readconsole reads Xen's console ring, incrementally and clearing", () => {
    const b = bed();
    b.hv.log("first line");
    b.hv.log("second\n");
    const read = (values: Partial<StructValue<typeof xen_sysctl_readconsole>>) => {
      const a = b.args(b.dom0);
      const buffer = a.alloc(64);
      const va = a.put(xen_sysctl, { cmd: XEN_SYSCTL.readconsole, interface_version: XEN_SYSCTL_INTERFACE.VERSION });
      a.put(xen_sysctl_readconsole, { buffer: BigInt(buffer), count: 64, ...values }, va + SU);
      const rc = b.call(b.dom0, HYPERVISOR.sysctl, va);
      const out = a.get(xen_sysctl_readconsole, va + SU);
      return { rc, text: new TextDecoder().decode(a.read(buffer, out.count)), index: out.index };
    };
    expect(read({})).toEqual({ rc: 0, text: "first line\nsecond\n", index: 18 });
    expect(read({ count: 6 }).text).toBe("first ");
    expect(read({ incremental: 1, index: 11 }).text).toBe("second\n");
    expect(read({ count: 11, clear: 1 })).toMatchObject({ text: "first line\n", index: 11 });
    b.hv.log("third");
    expect(read({}).text).toBe("second\nthird\n");
  });

  it.each([
    ["a domU", "domU", XEN_SYSCTL.physinfo, {}, -E.EPERM],
    ["a wrong interface version", "dom0", XEN_SYSCTL.physinfo, { version: 0x14 }, -E.EACCES],
    ["an unknown command", "dom0", XEN_SYSCTL.tbuf_op, {}, -E.ENOSYS],
    ["an unreadable argument", "dom0", XEN_SYSCTL.physinfo, { argVa: UNMAPPED }, -E.EFAULT],
  ] as const)("refuses %s", (_what, who, cmd, opts, errno) => {
    const b = bed();
    expect(sysctl(b, who === "dom0" ? b.dom0 : b.domU, cmd, undefined, undefined, opts).rc).toBe(errno);
    expectInvariants(b.hv);
  });
});
