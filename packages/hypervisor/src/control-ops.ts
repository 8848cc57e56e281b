/**
 * The toolstack's interfaces: `__HYPERVISOR_domctl` (one domain) and
 * `__HYPERVISOR_sysctl` (the host).
 *
 * Both take one struct (`xen_domctl`, `xen_sysctl`) holding a command, an
 * interface version and a 128-byte union with the command's own struct. A
 * version other than `XEN_DOMCTL_INTERFACE_VERSION` /
 * `XEN_SYSCTL_INTERFACE_VERSION` fails with `-EACCES` before anything else is
 * looked at, as Xen does, so a toolstack built against other headers cannot
 * misread the union. Commands that answer (`createdomain`, `getdomaininfo`,
 * `getvcpuinfo`, `scheduler_op`, every sysctl) write the whole struct back.
 *
 * ## Who may call
 *
 * Xen's dummy XSM makes every domctl pvkit has and every sysctl `XSM_PRIV`:
 * only the control domain may, whatever the target, and a domain acting on
 * itself earns nothing; `getdomaininfo` is `XSM_XS_PRIV`, open to the
 * XenStore domain too. pvkit asks the policy `"domctl:<command>"` (or
 * `"sysctl:<command>"`) with that class and the target domain. The order of
 * refusals is Xen's: a bad version (`-EACCES`), then a domain that does not
 * exist (`-ESRCH`), then the policy (`-EPERM`), then an unknown command
 * (`-ENOSYS`).
 *
 * ## domctl commands (Xen 4.17 semantics)
 *
 * - `createdomain`: `xen_domctl.domain` names the id wanted; 0 or a reserved
 *   id asks the hypervisor to choose, which it does round-robin from the last
 *   id it chose (domid 0 is never chosen; see {@link Hypervisor.createDomain}).
 *   An id in use is `-EEXIST`. Only PV domains exist, so any
 *   `XEN_DOMCTL_CDF_*` flag but `xs_domain` (HVM, HAP, IOMMU, nested
 *   virtualisation, vPMU, tboot) and any emulated device are `-EINVAL`. The
 *   limits are Xen 4.17's: `max_grant_frames` and `max_maptrack_frames`
 *   below 0 ask for the defaults (64 and 1024), and must otherwise lie in
 *   1..64 and 0..1024 (`-EINVAL`); `max_evtchn_port` caps the ports the
 *   domain may allocate (beyond 4095, the 2-level ABI's last, it changes
 *   nothing). `grant_opts` is not checked: pvkit's grant tables are version 1
 *   whatever it asks (Xen 4.17 refuses a version of 0 or above its maximum).
 *   The domain starts paused with `max_pages` 0 and `max_vcpus` vCPUs; its
 *   id comes back in `xen_domctl.domain`.
 * - `destroydomain`: tears the domain down (`-EINVAL` on oneself). A domain
 *   already dying, still held by another domain's mappings, answers 0 again.
 * - `pausedomain` / `unpausedomain`: the toolstack's nested pause count, at
 *   most 255 (`-EOVERFLOW`); pausing oneself is `-EINVAL`, unpausing a domain
 *   the toolstack has not paused is `-EINVAL`.
 * - `getdomaininfo`: state, pages, CPU time and vCPUs (see
 *   {@link domctl}). As in Xen 4.17 (not later), a domid with no domain
 *   answers for the next domain up, so a toolstack can walk all domains; a
 *   reserved domid is `-EINVAL`, nothing further up `-ESRCH`.
 * - `max_mem`: `max_pages = max_memkb / 4`. Like Xen it may go below
 *   `tot_pages`: the domain then ratchets down, since every allocation is
 *   refused until it has given pages back.
 * - `getvcpuinfo`: one vCPU's state: `online` (not `RUNSTATE_offline`),
 *   `blocked`, `running`, its running time in ns (up to now, as
 *   `getdomaininfo` counts it) and its pCPU. A vCPU id the domain does not
 *   have is `-EINVAL` (Xen: at or past `max_vcpus`). pvkit's engine deals
 *   pCPUs out per slice and does not keep the last one a vCPU ran on (Xen's
 *   `v->processor`), so `cpu` is always 0.
 * - `max_vcpus`: must equal the count given to `createdomain`, which already
 *   made the vCPUs (Xen 4.17 keeps the call for old toolstacks).
 * - `scheduler_op`: the credit scheduler's `weight` and `cap` (sched_id
 *   `XEN_SCHEDULER_CREDIT`, any other `-EINVAL`). As Xen's credit scheduler,
 *   `putinfo` leaves the weight alone when given 0 and the cap alone when
 *   given `0xffff`; there are no per-vCPU parameters (`-EINVAL`).
 * - `setdomainhandle`, `settimeoffset`: the handle (UUID) and the wallclock
 *   offset in seconds (`Domain.timeOffset`).
 *
 * ## sysctl commands
 *
 * `physinfo` (the simulated host: one node, `pcpus` single-threaded cores
 * on one socket, a 1 GHz clock so that a cycle is a nanosecond of virtual
 * time, PV guests and grant table v1), `getdomaininfolist`, `sched_id`
 * (credit) and `readconsole` (Xen's console as `xl dmesg` reads it: a 16 KiB
 * ring of the lines in `Hypervisor.console`, each ending in a newline).
 *
 * @module
 */
import {
  DOMID,
  RUNSTATE,
  XEN_DOMCTL,
  XEN_DOMCTL_CDF,
  XEN_DOMCTL_INTERFACE,
  XEN_DOMCTL_SCHEDOP,
  XEN_DOMINF,
  XEN_ERRNO,
  XEN_INVALID,
  XEN_SCHEDULER,
  XEN_SYSCTL,
  XEN_SYSCTL_INTERFACE,
  XEN_SYSCTL_PHYSCAP,
  XEN_X86_MSR,
  keyOf,
  xen_domctl,
  xen_domctl_createdomain,
  xen_domctl_getdomaininfo,
  xen_domctl_getvcpuinfo,
  xen_domctl_max_mem,
  xen_domctl_vcpucontext,
  vcpu_guest_context,
  xen_domctl_max_vcpus,
  xen_domctl_scheduler_op,
  xen_domctl_setdomainhandle,
  xen_domctl_settimeoffset,
  xen_sysctl,
  xen_sysctl_getdomaininfolist,
  xen_sysctl_physinfo,
  xen_sysctl_readconsole,
  xen_sysctl_sched_id,
  zeroStruct,
} from "@pvkit/abi";
import type { Domain } from "./domain.js";
import { DEFAULT_MAX_GRANT_FRAMES, DEFAULT_MAX_MAPTRACK_FRAMES } from "./grant-table.js";
import { copyToGuest, readGuestStruct, writeGuestStruct } from "./guest-memory.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";
import { MAX_PFN } from "./p2m.js";

const E = XEN_ERRNO;

/** Offset of the command union `u` in `xen_domctl`. */
const DOMCTL_U = xen_domctl.fields.u.offset;
/** Offset of the command union `u` in `xen_sysctl`. */
const SYSCTL_U = xen_sysctl.fields.u.offset;

/** The toolstack may nest pauses this deep (Xen's limit on `controller_pause_count`). */
const MAX_CONTROLLER_PAUSES = 255;

/** pvkit's clock: one cycle per nanosecond of virtual time. */
const CPU_KHZ = 1_000_000;

/** Guest-physical address bits: the pseudo-physical space holds {@link MAX_PFN} pages of 4 KiB. */
const GPADDR_BITS = Math.log2(MAX_PFN) + 12;

/** Bytes of Xen's console ring (`conring_size`'s default, 16 KiB). */
const CONRING_SIZE = 16 * 1024;

/**
 * `__HYPERVISOR_domctl(struct xen_domctl *)`. See the module documentation
 * for the commands and the order of refusals.
 *
 * `getdomaininfo` reports, as Xen does: `flags` with `XEN_DOMINF_paused`
 * while the toolstack's pause count is above 0, `_running` if a vCPU is on a
 * pCPU, `_blocked` if every online vCPU waits for an event (not once the
 * domain has shut down: its vCPUs are stopped, not waiting), `_shutdown` with
 * the `SHUTDOWN_*` reason in bits 16..23, `_dying` once it is being
 * destroyed, `_xs_domain`; `tot_pages`, `max_pages`, the shared_info mfn,
 * `cpu_time` (ns all vCPUs have run), the online vCPU count and the highest
 * vCPU id, the handle, cpupool 0 and `gpaddr_bits`. Xen also leaves the bits
 * of an unset shutdown code (`~0`) in the reason field of a domain that has
 * not shut down; pvkit leaves them 0.
 */
export function domctl(ctx: HypercallContext, argVa: number): number {
  const { hv } = ctx;
  const op = readGuestStruct(hv.machine, ctx.domain, argVa, xen_domctl);
  if (op === undefined) return -E.EFAULT;
  const F = xen_domctl.fields;
  if (F.interface_version.get(op, 0) !== XEN_DOMCTL_INTERFACE.VERSION) return -E.EACCES;
  const cmd = F.cmd.get(op, 0);
  const domid = F.domain.get(op, 0);
  let d: Domain | undefined;
  if (cmd !== XEN_DOMCTL.createdomain) {
    d = hv.domains.get(domid);
    if (d === undefined && cmd !== XEN_DOMCTL.getdomaininfo) return -E.ESRCH;
  }
  const xsm = cmd === XEN_DOMCTL.getdomaininfo ? "xs_priv" : "priv";
  if (!hv.allows(ctx.domain, `domctl:${keyOf(XEN_DOMCTL, cmd) ?? cmd}`, xsm, d)) return -E.EPERM;

  // A command that answers checks first that it can, so a read-only argument changes nothing.
  const answers = cmd === XEN_DOMCTL.createdomain || cmd === XEN_DOMCTL.getdomaininfo || cmd === XEN_DOMCTL.getvcpuinfo || cmd === XEN_DOMCTL.scheduler_op;
  if (answers && !writeGuestStruct(hv.machine, ctx.domain, argVa, op)) return -E.EFAULT;

  let rc: number;
  switch (cmd) {
    case XEN_DOMCTL.createdomain:
      rc = createDomain(hv, op, domid);
      break;
    case XEN_DOMCTL.destroydomain:
      rc = d === ctx.domain ? -E.EINVAL : d!.dead ? 0 : hv.destroyDomain(d!);
      break;
    case XEN_DOMCTL.pausedomain:
      if (d === ctx.domain) rc = -E.EINVAL;
      else if (d!.pauseCount >= MAX_CONTROLLER_PAUSES) rc = -E.EOVERFLOW;
      else {
        hv.pause(d!);
        rc = 0;
      }
      break;
    case XEN_DOMCTL.unpausedomain:
      rc = hv.unpause(d!) ? 0 : -E.EINVAL;
      break;
    case XEN_DOMCTL.getdomaininfo: {
      let target = d;
      if (target === undefined) {
        if (domid >= DOMID.FIRST_RESERVED) return -E.EINVAL;
        target = domainsFrom(hv, domid)[0];
        if (target === undefined) return -E.ESRCH;
      }
      fillDomainInfo(hv, target, op, DOMCTL_U);
      F.domain.set(op, 0, target.domid);
      rc = 0;
      break;
    }
    case XEN_DOMCTL.max_mem: {
      const pages = xen_domctl_max_mem.fields.max_memkb.get(op, DOMCTL_U) >> 2n;
      d!.maxPages = Number(pages > 0xffffffffn ? 0xffffffffn : pages);
      rc = 0;
      break;
    }
    case XEN_DOMCTL.getvcpuinfo:
      rc = getVcpuInfo(hv, d!, op);
      break;
    case XEN_DOMCTL.max_vcpus: {
      const max = xen_domctl_max_vcpus.fields.max.get(op, DOMCTL_U);
      rc = d === ctx.domain || max !== d!.vcpus.length ? -E.EINVAL : 0;
      break;
    }
    case XEN_DOMCTL.scheduler_op:
      rc = schedulerOp(d!, op);
      break;
    case XEN_DOMCTL.setdomainhandle:
      d!.handle = xen_domctl_setdomainhandle.fields.handle.get(op, DOMCTL_U);
      rc = 0;
      break;
    case XEN_DOMCTL.setvcpucontext:
      rc = setVcpuContext(ctx, d!, op);
      break;
    case XEN_DOMCTL.settimeoffset:
      d!.timeOffset = xen_domctl_settimeoffset.fields.time_offset_seconds.get(op, DOMCTL_U);
      rc = 0;
      break;
    default:
      return -E.ENOSYS;
  }
  if (answers && !writeGuestStruct(hv.machine, ctx.domain, argVa, op)) return -E.EFAULT;
  return rc;
}

/**
 * `XEN_DOMCTL_setvcpucontext`: sets a vCPU's boot registers from the
 * `vcpu_guest_context` the toolstack passes — for pvkit, `user_regs.rip` (the
 * kernel image) and `user_regs.rsi` (`start_info`), which the engine boots
 * from when the vCPU first runs. A null context resets the vCPU's context.
 * As in Xen, a domain may not set its own vCPUs' context (`-EINVAL`), nor a
 * vCPU it does not have (`-EINVAL`).
 */
function setVcpuContext(ctx: HypercallContext, d: Domain, op: DataView): number {
  const V = xen_domctl_vcpucontext.fields;
  const v = d.vcpus[V.vcpu.get(op, DOMCTL_U)];
  if (d === ctx.domain || v === undefined) return -E.EINVAL;
  const ctxtVa = Number(V.ctxt.get(op, DOMCTL_U));
  if (ctxtVa === 0) {
    v.context = undefined;
    return 0;
  }
  const c = readGuestStruct(ctx.hv.machine, ctx.domain, ctxtVa, vcpu_guest_context);
  if (c === undefined) return -E.EFAULT;
  const regs = vcpu_guest_context.fields.user_regs;
  const r = regs.layout.fields;
  v.context = { rip: Number(r.rip.get(c, regs.at(0))), rsi: Number(r.rsi.get(c, regs.at(0))) };
  return 0;
}

/** `XEN_DOMCTL_createdomain`: validates the configuration, creates the domain paused with the domid wanted or a chosen one. */
function createDomain(hv: Hypervisor, op: DataView, wanted: number): number {
  const C = xen_domctl_createdomain.fields;
  const flags = C.flags.get(op, DOMCTL_U);
  if ((flags & ~XEN_DOMCTL_CDF.xs_domain) !== 0) return -E.EINVAL;
  const arch = C.arch.at(DOMCTL_U);
  const archFields = C.arch.layout.fields;
  if (archFields.emulation_flags.get(op, arch) !== 0) return -E.EINVAL;
  if ((archFields.misc_flags.get(op, arch) & ~XEN_X86_MSR.RELAXED) !== 0) return -E.EINVAL;
  // A specific id is taken as asked (-EEXIST if in use); 0 or a reserved one asks the hypervisor to choose.
  const domid = wanted > 0 && wanted < DOMID.FIRST_RESERVED ? wanted : undefined;
  const grantFrames = C.max_grant_frames.get(op, DOMCTL_U);
  const maptrackFrames = C.max_maptrack_frames.get(op, DOMCTL_U);
  const d = hv.createDomain(
    {
      maxPages: 0,
      maxVcpus: C.max_vcpus.get(op, DOMCTL_U),
      privileged: false,
      handle: C.handle.get(op, DOMCTL_U),
      xenstore: (flags & XEN_DOMCTL_CDF.xs_domain) !== 0,
      maxGrantFrames: grantFrames < 0 ? DEFAULT_MAX_GRANT_FRAMES : grantFrames,
      maxMaptrackFrames: maptrackFrames < 0 ? DEFAULT_MAX_MAPTRACK_FRAMES : maptrackFrames,
      maxEvtchnPort: Math.min(C.max_evtchn_port.get(op, DOMCTL_U), 0x7fffffff),
    },
    domid,
  );
  if (typeof d === "number") return d;
  xen_domctl.fields.domain.set(op, 0, d.domid);
  return 0;
}

/** Live and dying domains with id `first` and up, in domid order. */
function domainsFrom(hv: Hypervisor, first: number): Domain[] {
  return [...hv.domains.values()].filter((d) => d.domid >= first).sort((a, b) => a.domid - b.domid);
}

/** Writes `d`'s `xen_domctl_getdomaininfo` at `base` of `view` (Xen's `getdomaininfo()`). */
function fillDomainInfo(hv: Hypervisor, d: Domain, view: DataView, base: number): void {
  const I = xen_domctl_getdomaininfo.fields;
  zeroStruct(xen_domctl_getdomaininfo, view, base);
  let online = 0;
  let cpuTime = 0;
  let allBlocked = true;
  let running = false;
  let maxVcpuId: number = XEN_INVALID.MAX_VCPU_ID;
  for (const v of d.vcpus) {
    // Time in the current runstate counts up to now, as Xen's vcpu_runstate_get.
    cpuTime += v.runstateTime[RUNSTATE.running]! + (v.runstate === RUNSTATE.running ? hv.now - v.runstateEntered : 0);
    maxVcpuId = v.id;
    if (v.runstate === RUNSTATE.offline) continue;
    online++;
    if (v.runstate !== RUNSTATE.blocked) allBlocked = false;
    if (v.runstate === RUNSTATE.running) running = true;
  }
  let flags = 0;
  if (online > 0) {
    if (allBlocked && d.state !== "shutdown") flags |= XEN_DOMINF.blocked;
    if (running) flags |= XEN_DOMINF.running;
  }
  if (d.dead) flags |= XEN_DOMINF.dying;
  if (d.shutdownReason !== undefined) flags |= XEN_DOMINF.shutdown | ((d.shutdownReason & XEN_DOMINF.shutdownmask) << XEN_DOMINF.shutdownshift);
  if (d.pauseCount > 0) flags |= XEN_DOMINF.paused;
  if (d.xenstore) flags |= XEN_DOMINF.xs_domain;
  I.domain.set(view, base, d.domid);
  I.flags.set(view, base, flags >>> 0);
  I.tot_pages.set(view, base, BigInt(d.totPages));
  I.max_pages.set(view, base, BigInt(d.maxPages));
  // A PV domain's frame numbers are machine frames; a destroyed shared_info reads as INVALID_MFN (~0).
  I.shared_info_frame.set(view, base, BigInt.asUintN(64, BigInt(d.sharedInfoMfn)));
  I.cpu_time.set(view, base, BigInt(Math.round(cpuTime)));
  I.nr_online_vcpus.set(view, base, online);
  I.max_vcpu_id.set(view, base, maxVcpuId);
  I.ssidref.set(view, base, 0);
  I.handle.set(view, base, d.handle);
  I.cpupool.set(view, base, 0);
  I.gpaddr_bits.set(view, base, GPADDR_BITS);
}

/** `XEN_DOMCTL_getvcpuinfo` (Xen's `vcpu_runstate_get` and the vCPU's pause flags). */
function getVcpuInfo(hv: Hypervisor, d: Domain, op: DataView): number {
  const V = xen_domctl_getvcpuinfo.fields;
  const v = d.vcpus[V.vcpu.get(op, DOMCTL_U)];
  if (v === undefined) return -E.EINVAL;
  const running = v.runstate === RUNSTATE.running;
  V.online.set(op, DOMCTL_U, v.runstate === RUNSTATE.offline ? 0 : 1);
  V.blocked.set(op, DOMCTL_U, v.runstate === RUNSTATE.blocked ? 1 : 0);
  V.running.set(op, DOMCTL_U, running ? 1 : 0);
  V.cpu_time.set(op, DOMCTL_U, BigInt(Math.round(v.runstateTime[RUNSTATE.running]! + (running ? hv.now - v.runstateEntered : 0))));
  V.cpu.set(op, DOMCTL_U, 0);
  return 0;
}

/** `XEN_DOMCTL_scheduler_op` for the credit scheduler (Xen's `sched_adjust` and `csched_dom_cntl`). */
function schedulerOp(d: Domain, op: DataView): number {
  const S = xen_domctl_scheduler_op.fields;
  if (S.sched_id.get(op, DOMCTL_U) !== XEN_SCHEDULER.CREDIT) return -E.EINVAL;
  switch (S.cmd.get(op, DOMCTL_U)) {
    case XEN_DOMCTL_SCHEDOP.getinfo:
      S.credit_weight.set(op, DOMCTL_U, d.sched.weight);
      S.credit_cap.set(op, DOMCTL_U, d.sched.cap);
      return 0;
    case XEN_DOMCTL_SCHEDOP.putinfo: {
      const weight = S.credit_weight.get(op, DOMCTL_U);
      const cap = S.credit_cap.get(op, DOMCTL_U);
      if (weight !== 0) d.sched.weight = weight;
      if (cap !== 0xffff) d.sched.cap = cap;
      return 0;
    }
    default:
      // Credit has no per-vCPU parameters.
      return -E.EINVAL;
  }
}

/**
 * `__HYPERVISOR_sysctl(struct xen_sysctl *)`: `physinfo`,
 * `getdomaininfolist`, `sched_id` and `readconsole`, for the privileged
 * domain only. Any other command is `-ENOSYS`.
 */
export function sysctl(ctx: HypercallContext, argVa: number): number {
  const { hv } = ctx;
  const op = readGuestStruct(hv.machine, ctx.domain, argVa, xen_sysctl);
  if (op === undefined) return -E.EFAULT;
  const F = xen_sysctl.fields;
  if (F.interface_version.get(op, 0) !== XEN_SYSCTL_INTERFACE.VERSION) return -E.EACCES;
  const cmd = F.cmd.get(op, 0);
  if (!hv.allows(ctx.domain, `sysctl:${keyOf(XEN_SYSCTL, cmd) ?? cmd}`, "priv")) return -E.EPERM;
  let rc: number;
  let afterCopyback: (() => void) | undefined;
  switch (cmd) {
    case XEN_SYSCTL.physinfo:
      physinfo(hv, op);
      rc = 0;
      break;
    case XEN_SYSCTL.sched_id:
      xen_sysctl_sched_id.fields.sched_id.set(op, SYSCTL_U, XEN_SCHEDULER.CREDIT);
      rc = 0;
      break;
    case XEN_SYSCTL.getdomaininfolist:
      rc = getDomainInfoList(ctx, op);
      break;
    case XEN_SYSCTL.readconsole: {
      const read = readConsole(ctx, op);
      if (typeof read === "number") rc = read;
      else {
        rc = 0;
        afterCopyback = read;
      }
      break;
    }
    default:
      return -E.ENOSYS;
  }
  if (rc !== 0) return rc;
  if (!writeGuestStruct(hv.machine, ctx.domain, argVa, op)) return -E.EFAULT;
  afterCopyback?.();
  return 0;
}

/** `XEN_SYSCTL_physinfo`: the simulated host. */
function physinfo(hv: Hypervisor, op: DataView): void {
  const P = xen_sysctl_physinfo.fields;
  zeroStruct(xen_sysctl_physinfo, op, SYSCTL_U);
  P.threads_per_core.set(op, SYSCTL_U, 1);
  P.cores_per_socket.set(op, SYSCTL_U, hv.pcpus);
  P.nr_cpus.set(op, SYSCTL_U, hv.pcpus);
  P.max_cpu_id.set(op, SYSCTL_U, hv.pcpus - 1);
  P.nr_nodes.set(op, SYSCTL_U, 1);
  P.max_node_id.set(op, SYSCTL_U, 0);
  P.cpu_khz.set(op, SYSCTL_U, CPU_KHZ);
  P.capabilities.set(op, SYSCTL_U, XEN_SYSCTL_PHYSCAP.pv | XEN_SYSCTL_PHYSCAP.gnttab_v1);
  P.total_pages.set(op, SYSCTL_U, BigInt(hv.machine.frames));
  P.free_pages.set(op, SYSCTL_U, BigInt(hv.machine.freeFrames));
  P.max_mfn.set(op, SYSCTL_U, BigInt(hv.machine.frames - 1));
}

/** `XEN_SYSCTL_getdomaininfolist`: up to `max_domains` records from `first_domain` up, in domid order. */
function getDomainInfoList(ctx: HypercallContext, op: DataView): number {
  const { hv } = ctx;
  const L = xen_sysctl_getdomaininfolist.fields;
  const max = L.max_domains.get(op, SYSCTL_U);
  const buffer = Number(L.buffer.get(op, SYSCTL_U));
  const record = new DataView(new ArrayBuffer(xen_domctl_getdomaininfo.size));
  let n = 0;
  for (const d of domainsFrom(hv, L.first_domain.get(op, SYSCTL_U))) {
    if (n === max) break;
    fillDomainInfo(hv, d, record, 0);
    if (!copyToGuest(hv.machine, ctx.domain, buffer + n * xen_domctl_getdomaininfo.size, new Uint8Array(record.buffer))) return -E.EFAULT;
    n++;
  }
  L.num_domains.set(op, SYSCTL_U, n);
  return 0;
}

/**
 * Xen's console ring as bytes: every line of `Hypervisor.console` followed by
 * a newline, positions counted from boot, the last {@link CONRING_SIZE} bytes
 * kept. `cleared` is where `readconsole` with `clear` left the reader (Xen's
 * `conringc`).
 */
interface ConsoleRing {
  /** Lines of `Hypervisor.console` already in the ring. */
  lines: number;
  /** Bytes written since boot (Xen's `conringp`). */
  produced: number;
  /** The ring. */
  readonly bytes: Uint8Array;
  /** The reader's position after the last clear. */
  cleared: number;
}

const consoleRings = new WeakMap<Hypervisor, ConsoleRing>();
const utf8 = new TextEncoder();

/** Brings the ring up to date with the console's lines. */
function consoleRing(hv: Hypervisor): ConsoleRing {
  let ring = consoleRings.get(hv);
  if (ring === undefined || ring.lines > hv.console.length) {
    ring = { lines: 0, produced: 0, bytes: new Uint8Array(CONRING_SIZE), cleared: 0 };
    consoleRings.set(hv, ring);
  }
  for (; ring.lines < hv.console.length; ring.lines++) {
    const line = hv.console[ring.lines]!;
    for (const byte of utf8.encode(line.endsWith("\n") ? line : `${line}\n`)) ring.bytes[ring.produced++ % CONRING_SIZE] = byte;
  }
  return ring;
}

/**
 * `XEN_SYSCTL_readconsole` (Xen's `read_console_ring`): copies the ring from
 * the reader's position (or from `index`, with `incremental`) to `buffer`.
 * @returns an errno, or what to do once the answer is written back (`clear`
 * moves the reader to where this read stopped).
 */
function readConsole(ctx: HypercallContext, op: DataView): number | (() => void) {
  const { hv } = ctx;
  const R = xen_sysctl_readconsole.fields;
  const ring = consoleRing(hv);
  const max = R.count.get(op, SYSCTL_U);
  const buffer = Number(R.buffer.get(op, SYSCTL_U));
  const p = ring.produced;
  let c = Math.max(ring.cleared, p - CONRING_SIZE);
  const index = R.index.get(op, SYSCTL_U);
  if (R.incremental.get(op, SYSCTL_U) !== 0 && c < index && index <= p) c = index;
  const n = Math.min(p - c, max);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = ring.bytes[(c + i) % CONRING_SIZE]!;
  if (!copyToGuest(hv.machine, ctx.domain, buffer, out)) return -E.EFAULT;
  c += n;
  R.count.set(op, SYSCTL_U, n);
  R.index.set(op, SYSCTL_U, c >>> 0);
  const clear = R.clear.get(op, SYSCTL_U) !== 0;
  return () => {
    if (clear) ring.cleared = c;
  };
}
