/**
 * The toolstack's hypercalls, in the role of libxenctrl: typed wrappers of
 * the `domctl`, `sysctl` and foreign `memory_op` calls dom0 uses to create,
 * build, start, watch and destroy domains.
 *
 * Each `domctl` is one `struct xen_domctl`: the command, the interface
 * version this toolstack was built against, the target domain, and the
 * command's own struct in the union at offset 16.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  HYPERVISOR,
  PAGE_SIZE,
  XENMAPSPACE,
  XENMEM,
  XEN_DOMCTL,
  XEN_DOMCTL_INTERFACE,
  XEN_DOMINF,
  decodeStruct,
  encodeStruct,
  xen_add_to_physmap,
  xen_add_to_physmap_batch,
  xen_domctl,
  xen_domctl_createdomain,
  xen_domctl_getdomaininfo,
  xen_domctl_max_mem,
  xen_domctl_vcpucontext,
  xen_memory_reservation,
  xen_remove_from_physmap,
  vcpu_guest_context,
  VGCF,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import { result, xenError, type Kernel, type XenError } from "@pvkit/kernel";

const U_OFFSET = xen_domctl.fields.u.offset;

/** A domain's state as `XEN_DOMCTL_getdomaininfo` reports it. */
export type DomainInfo = StructValue<typeof xen_domctl_getdomaininfo>;

/** dom0's handle on the hypervisor's control interface. */
export class Toolstack {
  /** Uses dom0's kernel `k` (which must be privileged). */
  constructor(readonly k: Kernel) {}

  /** Issues `XEN_DOMCTL_<cmd>` on `domain` with `sub` in the union; returns the result and the union as it came back. */
  domctl<L extends StructLayout>(cmd: number, domain: number, layout?: L, sub?: Partial<StructValue<L>>): E.Either<XenError, { rc: number; domain: number; out: DataView }> {
    const name = `XEN_DOMCTL_${Object.entries(XEN_DOMCTL).find(([, v]) => v === cmd)?.[0] ?? cmd}`;
    return this.k.args.frame((a) => {
      const view = new DataView(new ArrayBuffer(xen_domctl.size));
      encodeStruct(xen_domctl, view, 0, { cmd, interface_version: XEN_DOMCTL_INTERFACE.VERSION, domain });
      if (layout !== undefined && sub !== undefined) encodeStruct(layout, view, U_OFFSET, sub);
      const va = a.alloc(xen_domctl.size);
      a.memory.write(va, new Uint8Array(view.buffer));
      const rc = this.k.hypercall(HYPERVISOR.domctl, va);
      const back = new DataView(a.memory.read(va, xen_domctl.size).buffer);
      return E.map((n: number) => ({ rc: n, domain: xen_domctl.fields.domain.get(back, 0), out: new DataView(back.buffer, U_OFFSET) }))(result(name, rc));
    });
  }

  /** Creates a paused domain (`XEN_DOMCTL_createdomain`); returns its domid. */
  createDomain(maxVcpus: number, domid = 0): E.Either<XenError, number> {
    return E.map((r: { domain: number }) => r.domain)(this.domctl(XEN_DOMCTL.createdomain, domid, xen_domctl_createdomain, { max_vcpus: maxVcpus, max_evtchn_port: 4095, max_grant_frames: 32, max_maptrack_frames: 1024 }));
  }

  /** Sets the most memory a domain may have (`XEN_DOMCTL_max_mem`). */
  setMaxMem(domid: number, pages: number): E.Either<XenError, void> {
    return E.map(() => undefined)(this.domctl(XEN_DOMCTL.max_mem, domid, xen_domctl_max_mem, { max_memkb: BigInt(pages * (PAGE_SIZE / 1024)) }));
  }

  /** Unpauses a domain (`XEN_DOMCTL_unpausedomain`). */
  unpause(domid: number): E.Either<XenError, void> {
    return E.map(() => undefined)(this.domctl(XEN_DOMCTL.unpausedomain, domid));
  }

  /** Pauses a domain (`XEN_DOMCTL_pausedomain`). */
  pause(domid: number): E.Either<XenError, void> {
    return E.map(() => undefined)(this.domctl(XEN_DOMCTL.pausedomain, domid));
  }

  /** Destroys a domain (`XEN_DOMCTL_destroydomain`). */
  destroy(domid: number): E.Either<XenError, void> {
    return E.map(() => undefined)(this.domctl(XEN_DOMCTL.destroydomain, domid));
  }

  /** Reports a domain's state (`XEN_DOMCTL_getdomaininfo`). */
  domainInfo(domid: number): E.Either<XenError, DomainInfo> {
    return E.map((r: { out: DataView }) => decodeStruct(xen_domctl_getdomaininfo, r.out))(this.domctl(XEN_DOMCTL.getdomaininfo, domid));
  }

  /** Whether a domain has shut down, and why (the `XEN_DOMINF_shutdown` bit and code). */
  static shutdownReason(info: DomainInfo): number | undefined {
    if ((info.flags & XEN_DOMINF.shutdown) === 0) return undefined;
    return (info.flags >>> XEN_DOMINF.shutdownshift) & XEN_DOMINF.shutdownmask;
  }

  /**
   * Populates pfns `0 .. pages` of `domid` (`XENMEM_populate_physmap`);
   * returns the mfn backing each pfn, as Xen returns them to a PV toolstack.
   */
  populate(domid: number, pages: number): E.Either<XenError, number[]> {
    return this.k.args.frame((a) => {
      const list = a.alloc(pages * 8);
      const pfns = new DataView(new ArrayBuffer(pages * 8));
      for (let pfn = 0; pfn < pages; pfn++) pfns.setBigUint64(pfn * 8, BigInt(pfn), true);
      a.memory.write(list, new Uint8Array(pfns.buffer));
      const va = a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: BigInt(pages), extent_order: 0, domid });
      const rc = this.k.hypercall(HYPERVISOR.memory_op, XENMEM.populate_physmap, va);
      if (rc < 0) return E.left(xenError("XENMEM_populate_physmap", rc));
      if (rc < pages) return E.left({ ...xenError("XENMEM_populate_physmap", -12), message: `XENMEM_populate_physmap: only ${rc} of ${pages} pages` });
      const out = new DataView(a.memory.read(list, pages * 8).buffer);
      return E.right(Array.from({ length: pages }, (_, i) => Number(out.getBigUint64(i * 8, true))));
    });
  }

  /**
   * Maps pages `pfns` of domain `domid` into dom0's mapping area
   * (`XENMEM_add_to_physmap_batch`, `XENMAPSPACE_gmfn_foreign`); returns their
   * virtual addresses here, in order.
   */
  mapForeign(domid: number, pfns: readonly number[]): E.Either<XenError, number[]> {
    const vas = pfns.map(() => this.k.memory.allocMappingVa());
    const rc = this.k.args.frame((a) => {
      const n = pfns.length;
      const idxs = a.alloc(n * 8);
      const gpfns = a.alloc(n * 8);
      const errs = a.alloc(n * 4);
      const bytes = new DataView(new ArrayBuffer(n * 16));
      pfns.forEach((pfn, i) => {
        bytes.setBigUint64(i * 8, BigInt(pfn), true);
        bytes.setBigUint64(n * 8 + i * 8, BigInt(vas[i]! / PAGE_SIZE), true);
      });
      a.memory.write(idxs, new Uint8Array(bytes.buffer, 0, n * 8));
      a.memory.write(gpfns, new Uint8Array(bytes.buffer, n * 8, n * 8));
      const va = a.put(xen_add_to_physmap_batch, { domid: 0x7ff0, space: XENMAPSPACE.gmfn_foreign, size: n, foreign_domid: domid, idxs: BigInt(idxs), gpfns: BigInt(gpfns), errs: BigInt(errs) });
      const r = this.k.hypercall(HYPERVISOR.memory_op, XENMEM.add_to_physmap_batch, va);
      if (r < 0) return r;
      const e = new DataView(a.memory.read(errs, n * 4).buffer);
      for (let i = 0; i < n; i++) if (e.getInt32(i * 4, true) < 0) return e.getInt32(i * 4, true);
      return 0;
    });
    if (rc < 0) {
      this.unmapForeign(vas);
      return E.left(xenError("XENMEM_add_to_physmap_batch(gmfn_foreign)", rc));
    }
    return E.right(vas);
  }

  /** Removes mappings made by {@link Toolstack.mapForeign} (`XENMEM_remove_from_physmap`). */
  unmapForeign(vas: readonly number[]): void {
    for (const va of vas) {
      this.removeFromPhysmap(0x7ff0, va / PAGE_SIZE);
      this.k.memory.freeMappingVa(va);
    }
  }

  /** `XENMEM_remove_from_physmap` of `gpfn` in `domid`. */
  removeFromPhysmap(domid: number, gpfn: number): E.Either<XenError, number> {
    return this.k.args.frame((a) =>
      result("XENMEM_remove_from_physmap", this.k.hypercall(HYPERVISOR.memory_op, XENMEM.remove_from_physmap, a.put(xen_remove_from_physmap, { domid, gpfn: BigInt(gpfn) }))),
    );
  }

  /** Installs grant frame `idx` of `domid` at its `gpfn` (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`). */
  addGrantFrame(domid: number, idx: number, gpfn: number): E.Either<XenError, number> {
    return this.k.args.frame((a) =>
      result(
        "XENMEM_add_to_physmap(grant_table)",
        this.k.hypercall(HYPERVISOR.memory_op, XENMEM.add_to_physmap, a.put(xen_add_to_physmap, { domid, space: XENMAPSPACE.grant_table, idx: BigInt(idx), gpfn: BigInt(gpfn) })),
      ),
    );
  }

  /** Points vCPU `vcpu` of `domid` at its entry (`XEN_DOMCTL_setvcpucontext`): `rip` the image, `rsi` start_info. */
  setVcpuContext(domid: number, vcpu: number, rip: number, rsi: number): E.Either<XenError, void> {
    return this.k.args.frame((a) => {
      const ctxt = new DataView(new ArrayBuffer(vcpu_guest_context.size));
      encodeStruct(vcpu_guest_context, ctxt, 0, { flags: BigInt(VGCF.in_kernel | VGCF.online), user_regs: { rip: BigInt(rip), rsi: BigInt(rsi) } });
      const va = a.alloc(vcpu_guest_context.size);
      a.memory.write(va, new Uint8Array(ctxt.buffer));
      return E.map(() => undefined)(this.domctl(XEN_DOMCTL.setvcpucontext, domid, xen_domctl_vcpucontext, { vcpu, ctxt: BigInt(va) }));
    });
  }
}
