/**
 * The toolstack's hypercalls, in the role of libxenctrl: typed wrappers of
 * the `domctl`, `sysctl`, `xen_version` and foreign `memory_op` calls dom0
 * uses to create, build, start, watch and destroy domains, and to describe
 * the host.
 *
 * Each `domctl` is one `struct xen_domctl`: the command, the interface
 * version this toolstack was built against, the target domain, and the
 * command's own struct in the union at offset 16. Each `sysctl` is likewise
 * one `struct xen_sysctl`, its union at offset 8.
 *
 * @module
 */
import { sequenceS } from "fp-ts/lib/Apply.js";
import * as E from "fp-ts/lib/Either.js";
import {
  HYPERVISOR,
  PAGE_SIZE,
  XENMAPSPACE,
  XENMEM,
  XENVER,
  XEN_DOMCTL,
  XEN_DOMCTL_INTERFACE,
  XEN_DOMCTL_SCHEDOP,
  XEN_DOMINF,
  XEN_SCHEDULER,
  XEN_SYSCTL,
  XEN_SYSCTL_INTERFACE,
  decodeStruct,
  encodeStruct,
  xen_add_to_physmap,
  xen_add_to_physmap_batch,
  xen_build_id,
  xen_capabilities_info,
  xen_changeset_info,
  xen_commandline,
  xen_compile_info,
  xen_domctl,
  xen_domctl_createdomain,
  xen_domctl_getdomaininfo,
  xen_domctl_getvcpuinfo,
  xen_domctl_max_mem,
  xen_domctl_scheduler_op,
  xen_domctl_vcpucontext,
  xen_extraversion,
  xen_memory_reservation,
  xen_platform_parameters,
  xen_remove_from_physmap,
  xen_sysctl,
  xen_sysctl_getdomaininfolist,
  xen_sysctl_physinfo,
  xen_sysctl_readconsole,
  xen_sysctl_sched_id,
  vcpu_guest_context,
  VGCF,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";
import { result, xenError, type Kernel, type XenError } from "@pvkit/kernel";

const U_OFFSET = xen_domctl.fields.u.offset;
const SYSCTL_U_OFFSET = xen_sysctl.fields.u.offset;

/** A domain's state as `XEN_DOMCTL_getdomaininfo` reports it. */
export type DomainInfo = StructValue<typeof xen_domctl_getdomaininfo>;

/** One vCPU's state as `XEN_DOMCTL_getvcpuinfo` reports it. */
export type VcpuInfo = StructValue<typeof xen_domctl_getvcpuinfo>;

/** The host as `XEN_SYSCTL_physinfo` reports it. */
export type PhysInfo = StructValue<typeof xen_sysctl_physinfo>;

/** A domain's credit scheduler parameters (`XEN_DOMCTL_scheduler_op`). */
export interface CreditParams {
  /** Relative weight, 1..65535. */
  readonly weight: number;
  /** Cap in percent of one pCPU; 0 is none. */
  readonly cap: number;
}

/** What `xen_version` tells of the hypervisor (libxl's `libxl_version_info`). */
export interface XenVersionInfo {
  /** `XENVER_version` >> 16. */
  readonly major: number;
  /** `XENVER_version` & 0xffff. */
  readonly minor: number;
  /** `XENVER_extraversion`, such as `".2"`. */
  readonly extra: string;
  /** `XENVER_compile_info`. */
  readonly compiler: string;
  /** `XENVER_compile_info`. */
  readonly compileBy: string;
  /** `XENVER_compile_info`. */
  readonly compileDomain: string;
  /** `XENVER_compile_info`. */
  readonly compileDate: string;
  /** `XENVER_capabilities`: the guest types supported. */
  readonly capabilities: string;
  /** `XENVER_changeset`. */
  readonly changeset: string;
  /** `XENVER_platform_parameters`: where the hypervisor's virtual area starts. */
  readonly virtStart: bigint;
  /** `XENVER_pagesize`. */
  readonly pagesize: number;
  /** `XENVER_commandline`. */
  readonly commandline: string;
  /** `XENVER_build_id` as hex, empty when the hypervisor has none (`-ENODATA`). */
  readonly buildId: string;
}

/** Extents populated per `XENMEM_populate_physmap` call (their list must fit the argument stack). */
const POPULATE_BATCH = 1024;

/** Records fetched per `XEN_SYSCTL_getdomaininfolist` call (they must fit the argument stack). */
const DOMAIN_LIST_BATCH = 32;

/** Bytes read per `XEN_SYSCTL_readconsole` call. */
const READCONSOLE_CHUNK = 2048;

const ascii = new TextDecoder();

/** A NUL-terminated string out of `bytes`. */
function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return ascii.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

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
   * Populates pfns `0 .. pages` of `domid` (`XENMEM_populate_physmap`, in
   * batches that fit the argument stack, as libxc batches them); returns the
   * mfn backing each pfn, as Xen returns them to a PV toolstack.
   */
  populate(domid: number, pages: number): E.Either<XenError, number[]> {
    const mfns: number[] = [];
    for (let first = 0; first < pages; first += POPULATE_BATCH) {
      const n = Math.min(POPULATE_BATCH, pages - first);
      const batch = this.k.args.frame((a) => {
        const list = a.alloc(n * 8);
        const pfns = new DataView(new ArrayBuffer(n * 8));
        for (let i = 0; i < n; i++) pfns.setBigUint64(i * 8, BigInt(first + i), true);
        a.memory.write(list, new Uint8Array(pfns.buffer));
        const va = a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: BigInt(n), extent_order: 0, domid });
        const rc = this.k.hypercall(HYPERVISOR.memory_op, XENMEM.populate_physmap, va);
        if (rc < 0) return E.left(xenError("XENMEM_populate_physmap", rc));
        if (rc < n) return E.left({ ...xenError("XENMEM_populate_physmap", -12), message: `XENMEM_populate_physmap: only ${first + rc} of ${pages} pages` });
        const out = new DataView(a.memory.read(list, n * 8).buffer);
        return E.right(Array.from({ length: n }, (_, i) => Number(out.getBigUint64(i * 8, true))));
      });
      if (E.isLeft(batch)) return batch;
      mfns.push(...batch.right);
    }
    return E.right(mfns);
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
  /** Issues `XEN_SYSCTL_<cmd>` with `sub` in the union; returns the union as it came back. */
  sysctl<L extends StructLayout>(cmd: number, layout?: L, sub?: Partial<StructValue<L>>): E.Either<XenError, DataView> {
    const name = `XEN_SYSCTL_${Object.entries(XEN_SYSCTL).find(([, v]) => v === cmd)?.[0] ?? cmd}`;
    return this.k.args.frame((a) => {
      const view = new DataView(new ArrayBuffer(xen_sysctl.size));
      encodeStruct(xen_sysctl, view, 0, { cmd, interface_version: XEN_SYSCTL_INTERFACE.VERSION });
      if (layout !== undefined && sub !== undefined) encodeStruct(layout, view, SYSCTL_U_OFFSET, sub);
      const va = a.alloc(xen_sysctl.size);
      a.memory.write(va, new Uint8Array(view.buffer));
      const rc = this.k.hypercall(HYPERVISOR.sysctl, va);
      const back = new DataView(a.memory.read(va, xen_sysctl.size).buffer);
      return E.map(() => new DataView(back.buffer, SYSCTL_U_OFFSET))(result(name, rc));
    });
  }

  /** The host's CPUs, memory and capabilities (`XEN_SYSCTL_physinfo`). */
  physinfo(): E.Either<XenError, PhysInfo> {
    return E.map((u: DataView) => decodeStruct(xen_sysctl_physinfo, u))(this.sysctl(XEN_SYSCTL.physinfo));
  }

  /** The default scheduler's id, `XEN_SCHEDULER_*` (`XEN_SYSCTL_sched_id`). */
  schedulerId(): E.Either<XenError, number> {
    return E.map((u: DataView) => decodeStruct(xen_sysctl_sched_id, u).sched_id)(this.sysctl(XEN_SYSCTL.sched_id));
  }

  /** Every domain, live or dying, in domid order (`XEN_SYSCTL_getdomaininfolist`, in batches). */
  domainInfoList(): E.Either<XenError, DomainInfo[]> {
    const out: DomainInfo[] = [];
    for (let first = 0; ; ) {
      const batch = this.k.args.frame((a) => {
        const buffer = a.alloc(DOMAIN_LIST_BATCH * xen_domctl_getdomaininfo.size);
        return E.map((u: DataView) => {
          const n = decodeStruct(xen_sysctl_getdomaininfolist, u).num_domains;
          const bytes = a.memory.read(buffer, n * xen_domctl_getdomaininfo.size);
          return Array.from({ length: n }, (_, i) => decodeStruct(xen_domctl_getdomaininfo, new DataView(bytes.buffer, bytes.byteOffset + i * xen_domctl_getdomaininfo.size)));
        })(this.sysctl(XEN_SYSCTL.getdomaininfolist, xen_sysctl_getdomaininfolist, { first_domain: first, max_domains: DOMAIN_LIST_BATCH, buffer: BigInt(buffer) }));
      });
      if (E.isLeft(batch)) return batch;
      out.push(...batch.right);
      if (batch.right.length < DOMAIN_LIST_BATCH) return E.right(out);
      first = batch.right[batch.right.length - 1]!.domain + 1;
    }
  }

  /**
   * Xen's console ring as `xl dmesg` reads it (`XEN_SYSCTL_readconsole`, from
   * the reader's position on, in chunks); with `clear`, the reader's
   * position moves to the end, so the next read starts after this one.
   */
  readConsole(clear = false): E.Either<XenError, string> {
    const chunks: Uint8Array[] = [];
    let index = 0;
    for (let first = true; ; first = false) {
      const chunk = this.k.args.frame((a) => {
        const buffer = a.alloc(READCONSOLE_CHUNK);
        return E.map((u: DataView) => {
          const r = decodeStruct(xen_sysctl_readconsole, u);
          index = r.index;
          return a.memory.read(buffer, r.count);
        })(this.sysctl(XEN_SYSCTL.readconsole, xen_sysctl_readconsole, { clear: clear ? 1 : 0, incremental: first ? 0 : 1, index, buffer: BigInt(buffer), count: READCONSOLE_CHUNK }));
      });
      if (E.isLeft(chunk)) return chunk;
      if (chunk.right.byteLength === 0) break;
      chunks.push(chunk.right);
    }
    return E.right(new TextDecoder().decode(Buffer.concat(chunks)));
  }

  /** One vCPU's state and running time (`XEN_DOMCTL_getvcpuinfo`). */
  vcpuInfo(domid: number, vcpu: number): E.Either<XenError, VcpuInfo> {
    return E.map((r: { out: DataView }) => decodeStruct(xen_domctl_getvcpuinfo, r.out))(this.domctl(XEN_DOMCTL.getvcpuinfo, domid, xen_domctl_getvcpuinfo, { vcpu }));
  }

  /** A domain's credit scheduler weight and cap (`XEN_DOMCTL_scheduler_op`, `getinfo`). */
  schedCredit(domid: number): E.Either<XenError, CreditParams> {
    return E.map((r: { out: DataView }) => {
      const s = decodeStruct(xen_domctl_scheduler_op, r.out);
      return { weight: s.credit_weight, cap: s.credit_cap };
    })(this.domctl(XEN_DOMCTL.scheduler_op, domid, xen_domctl_scheduler_op, { sched_id: XEN_SCHEDULER.CREDIT, cmd: XEN_DOMCTL_SCHEDOP.getinfo }));
  }

  /** Sets a domain's credit weight and/or cap (`putinfo`; what is not given is left alone, as weight 0 and cap 0xffff ask). */
  setSchedCredit(domid: number, params: Partial<CreditParams>): E.Either<XenError, void> {
    return E.map(() => undefined)(
      this.domctl(XEN_DOMCTL.scheduler_op, domid, xen_domctl_scheduler_op, {
        sched_id: XEN_SCHEDULER.CREDIT,
        cmd: XEN_DOMCTL_SCHEDOP.putinfo,
        credit_weight: params.weight ?? 0,
        credit_cap: params.cap ?? 0xffff,
      }),
    );
  }

  /** Sets the most memory a domain may have in KiB (`XEN_DOMCTL_max_mem`, which keeps whole pages). */
  setMaxMemKiB(domid: number, kib: number): E.Either<XenError, void> {
    return E.map(() => undefined)(this.domctl(XEN_DOMCTL.max_mem, domid, xen_domctl_max_mem, { max_memkb: BigInt(kib) }));
  }

  /** What `xen_version` says of the hypervisor, as libxl gathers it for `xl info`. */
  versionInfo(): E.Either<XenError, XenVersionInfo> {
    const hc = (cmd: number, va: number) => this.k.hypercall(HYPERVISOR.xen_version, cmd, va);
    return this.k.args.frame((a) => {
      const text = (cmd: number, size: number): E.Either<XenError, string> => {
        const va = a.alloc(size);
        return E.map(() => cString(a.memory.read(va, size)))(result(`XENVER_${Object.entries(XENVER).find(([, v]) => v === cmd)?.[0]}`, hc(cmd, va)));
      };
      const version = result("XENVER_version", hc(XENVER.version, 0));
      const pagesize = result("XENVER_pagesize", hc(XENVER.pagesize, 0));
      const extra = text(XENVER.extraversion, xen_extraversion.size);
      const capabilities = text(XENVER.capabilities, xen_capabilities_info.size);
      const changeset = text(XENVER.changeset, xen_changeset_info.size);
      const commandline = text(XENVER.commandline, xen_commandline.size);
      const compileVa = a.alloc(xen_compile_info.size);
      const compile = E.map(() => a.get(xen_compile_info, compileVa))(result("XENVER_compile_info", hc(XENVER.compile_info, compileVa)));
      const paramsVa = a.alloc(xen_platform_parameters.size);
      const params = E.map(() => a.get(xen_platform_parameters, paramsVa))(result("XENVER_platform_parameters", hc(XENVER.platform_parameters, paramsVa)));
      const buildId = readBuildId();
      return E.map(
        (r: {
          version: number;
          pagesize: number;
          extra: string;
          capabilities: string;
          changeset: string;
          commandline: string;
          compile: StructValue<typeof xen_compile_info>;
          params: StructValue<typeof xen_platform_parameters>;
        }): XenVersionInfo => ({
          major: r.version >>> 16,
          minor: r.version & 0xffff,
          extra: r.extra,
          compiler: cString(r.compile.compiler),
          compileBy: cString(r.compile.compile_by),
          compileDomain: cString(r.compile.compile_domain),
          compileDate: cString(r.compile.compile_date),
          capabilities: r.capabilities,
          changeset: r.changeset,
          virtStart: r.params.virt_start,
          pagesize: r.pagesize,
          commandline: r.commandline,
          buildId,
        }),
      )(sequenceS(E.Apply)({ version, pagesize, extra, capabilities, changeset, commandline, compile, params }));

      /** `XENVER_build_id`: its length with no buffer, then the bytes; "" when there is none (`-ENODATA`). */
      function readBuildId(): string {
        const len = hc(XENVER.build_id, 0);
        if (len <= 0 || len > 1024) return "";
        const va = a.alloc(xen_build_id.size + len);
        const header = new DataView(new ArrayBuffer(xen_build_id.size));
        xen_build_id.fields.len.set(header, 0, len);
        a.memory.write(va, new Uint8Array(header.buffer));
        const n = hc(XENVER.build_id, va);
        if (n <= 0) return "";
        return Array.from(a.memory.read(va + xen_build_id.size, n), (b) => b.toString(16).padStart(2, "0")).join("");
      }
    });
  }
}
