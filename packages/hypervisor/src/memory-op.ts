/**
 * `__HYPERVISOR_memory_op`: a domain's memory reservation and its physmap.
 *
 * ## The reservation: `increase_reservation`, `decrease_reservation`, `populate_physmap`
 *
 * Each takes a `struct xen_memory_reservation`: `nr_extents` extents of
 * `2^extent_order` pages, listed in the array at `extent_start` (`xen_pfn_t`,
 * 8 bytes each, in the *caller's* address space), for domain `domid`
 * (`DOMID_SELF`, or a domain the caller may control: the dom0 domain builder
 * populates a new domU this way).
 *
 * Like Xen, these three never return an errno. They return how many extents
 * were done, and stop at the first one that cannot be: so a refusal of the
 * whole call (an unreadable argument, an unknown domain, no permission, an
 * extent order too large, populate-on-demand) reads as 0 extents, and a
 * reservation that reaches `max_pages` or runs out of machine memory half-way
 * reads as the count done so far. The caller compares the result with
 * `nr_extents`, as Linux's balloon driver does.
 *
 * - `populate_physmap`: `extent_start` holds guest pfns; each gets a new frame,
 *   and, the domain being PV, the array entry is overwritten with the frame's
 *   mfn. A pfn already populated stops the call (Xen, for PV, would quietly
 *   give the domain a second page).
 * - `increase_reservation`: allocates extents "anywhere". On Xen a PV domain
 *   receives machine frames that are not in its P2M yet, learns their mfns
 *   from `extent_start` (unless that is a null handle) and enters them into
 *   its own P2M. pvkit keeps the P2M itself, so it places each new frame at
 *   the lowest pfn that is neither populated nor covered by a mapping, and
 *   reports its mfn the same way.
 * - `decrease_reservation`: `extent_start` holds the pfns to release. (A Xen
 *   PV guest passes mfns there, since its "gfns" are machine frames; pvkit's
 *   P2M belongs to the hypervisor, so a pfn names the page without ambiguity.)
 *   A pfn with no page of the domain behind it stops the call, as Xen refuses
 *   a page the domain does not own. A page that a mapping still holds (a
 *   foreign or grant mapping, the domain's own included) leaves the P2M at
 *   once but stays allocated, and counted in the domain's `tot_pages`, until
 *   that mapping goes: as in Xen, `tot_pages` drops only when a page is
 *   freed, so giving back a page one keeps mapped makes no room under
 *   `max_pages`.
 *
 * Only order-0 extents are supported: pvkit's allocator does not hand out
 * machine-contiguous runs, which is what a larger PV extent promises. A
 * larger order is refused like any other whole-call refusal (0 extents),
 * which is also how Xen answers an order above its `memop-max-order`.
 * When an mfn cannot be written back to the caller's array the extent is
 * undone before the call stops, so a bad array pointer changes nothing (Xen
 * leaves that page allocated to the domain).
 *
 * The upper bits of `cmd` (from bit 6, `MEMOP_EXTENT_SHIFT`) carry the extent
 * a continuation resumes at, as in Xen. pvkit never preempts a hypercall, so
 * they are only ever set by a guest that chooses to.
 *
 * ## Asking about a reservation
 *
 * `current_reservation`, `maximum_reservation` and `maximum_gpfn` take a
 * pointer to a `domid_t` and return `tot_pages`, `max_pages` and the highest
 * populated pfn (Xen, for PV, returns the guest-maintained `max_pfn` less
 * one). `maximum_ram_page` returns Xen's `max_page`: one past the highest
 * machine frame.
 *
 * ## The physmap: `add_to_physmap`, `add_to_physmap_batch`, `remove_from_physmap`
 *
 * These install a frame at guest frame `gpfn` of a domain, which in pvkit is
 * the virtual page `gpfn` of its address space (`Domain.mappings`, as
 * mappings of kind `physmap`; the direct map makes virtual page n pfn n).
 * Each mapping holds one reference on its frame. As on Xen, RAM populated at `gpfn` is released first, and a mapping
 * an earlier call installed there is replaced, its reference dropped. A grant
 * mapping there is refused with `-EBUSY`: it belongs to the grant table,
 * which must unmap it.
 *
 * - `XENMAPSPACE_shared_info` (`idx` 0): the domain's shared_info page.
 * - `XENMAPSPACE_grant_table` (`idx` a frame index, with
 *   `XENMAPIDX_grant_table_status` for a v2 status frame): a frame of the
 *   domain's grant table, as the grant table hands it out.
 * - `XENMAPSPACE_gmfn_foreign` (`add_to_physmap_batch` only): page `idx` (a
 *   pfn) of domain `foreign_domid`, mapped writable. The domain receiving the
 *   mapping must be allowed to map the foreign one (Xen's
 *   `xsm_map_gmfn_foreign`, which the dummy policy grants only to a
 *   privileged domain); this is how the dom0 domain builder writes a new
 *   domU's kernel and start_info. Each entry's result goes to `errs`.
 *
 * On Xen, x86 PV domains cannot use these at all (`-EACCES`: they map
 * special frames through their page tables). pvkit gives PV domains a
 * hypervisor-managed P2M and address space, so this is how they map them.
 * `remove_from_physmap` takes a mapping away (or, where RAM is populated,
 * releases it, where Xen would leave the page allocated but unreachable) and
 * then lets a dying domain whose last foreign-mapped page this was finish
 * dying. A dying domain has no pages left to lend and takes no new mappings
 * (`-ESRCH` as a target, `-EINVAL` per entry as a foreign owner).
 *
 * @module
 */
import {
  DOMID,
  PAGE,
  XENMAPSPACE,
  XENMEM,
  XENMEMF,
  XEN_ERRNO,
  keyOf,
  xen_add_to_physmap,
  xen_add_to_physmap_batch,
  xen_memory_domain,
  xen_memory_reservation,
  xen_remove_from_physmap,
} from "@pvkit/abi";
import type { Domain, Mapping } from "./domain.js";
import { grantFrame } from "./grant-table.js";
import { copyFromGuest, copyToGuest, readGuestStruct, u64ToNumber } from "./guest-memory.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";
import { MAX_PFN } from "./p2m.js";

/** `cmd` bits above this carry the extent a continuation resumes at (Xen's `MEMOP_EXTENT_SHIFT`). */
const MEMOP_EXTENT_SHIFT = 6;
/** The command part of `cmd` (Xen's `MEMOP_CMD_MASK`). */
const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;
/** Most extents a reservation call may name: the count must fit a continuation's `cmd`. */
const MAX_EXTENTS = 0xffffffff >>> MEMOP_EXTENT_SHIFT;
/** Bytes of a `xen_pfn_t` / `xen_ulong_t` array element. */
const XEN_PFN_SIZE = 8;
/** Bytes of an `int` in the `errs` array of `add_to_physmap_batch`. */
const ERR_SIZE = 4;

const E = XEN_ERRNO;

/**
 * `__HYPERVISOR_memory_op(cmd, arg)`. See the module documentation for each
 * command. The reservation commands return the number of extents done; the
 * others 0 (or the value asked for) on success and a negative errno on
 * failure; an unknown command `-ENOSYS`.
 */
export function memoryOp(ctx: HypercallContext, cmd: number, argVa: number): number {
  if (!Number.isSafeInteger(cmd) || cmd < 0) return -E.ENOSYS;
  const op = cmd & MEMOP_CMD_MASK;
  const start = Math.floor(cmd / (1 << MEMOP_EXTENT_SHIFT));
  switch (op) {
    case XENMEM.increase_reservation:
    case XENMEM.decrease_reservation:
    case XENMEM.populate_physmap:
      return reservation(ctx, op, start, argVa);
    case XENMEM.maximum_ram_page:
      return start !== 0 ? -E.EINVAL : ctx.hv.machine.frames;
    case XENMEM.current_reservation:
    case XENMEM.maximum_reservation:
    case XENMEM.maximum_gpfn:
      return start !== 0 ? -E.EINVAL : reservationInfo(ctx, op, argVa);
    case XENMEM.add_to_physmap:
      return addToPhysmap(ctx, start, argVa);
    case XENMEM.add_to_physmap_batch:
      return addToPhysmapBatch(ctx, start, argVa);
    case XENMEM.remove_from_physmap:
      return start !== 0 ? -E.EINVAL : removeFromPhysmap(ctx, argVa);
    default:
      return -E.ENOSYS;
  }
}

/** The policy's name for a memory_op command: `"memory_op:populate_physmap"`. */
function action(op: number): string {
  return `memory_op:${keyOf(XENMEM, op) ?? op}`;
}

/** Element `i` of a `xen_pfn_t` array at `va` in `d`'s address space, or undefined on a fault. */
function readPfn(hv: Hypervisor, d: Domain, va: number, i: number): bigint | undefined {
  const bytes = copyFromGuest(hv.machine, d, va + i * XEN_PFN_SIZE, XEN_PFN_SIZE);
  return bytes && new DataView(bytes.buffer).getBigUint64(0, true);
}

/** Writes element `i` of a `xen_pfn_t` array at `va`; false on a fault. */
function writePfn(hv: Hypervisor, d: Domain, va: number, i: number, value: number): boolean {
  const bytes = new Uint8Array(XEN_PFN_SIZE);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
  return copyToGuest(hv.machine, d, va + i * XEN_PFN_SIZE, bytes);
}

/** True if `pfn` holds RAM or a mapping: populate_physmap stops there, increase_reservation looks further. */
function occupied(d: Domain, pfn: number): boolean {
  return d.pfnToMfn(pfn) !== undefined || d.mappings.has(pfn);
}

/**
 * `increase_reservation`, `decrease_reservation` and `populate_physmap`.
 * Returns the index of the first extent not done, counting from 0 (so the
 * number done when the call started at extent 0).
 */
function reservation(ctx: HypercallContext, op: number, start: number, argVa: number): number {
  const { hv } = ctx;
  const r = readGuestStruct(hv.machine, ctx.domain, argVa, xen_memory_reservation);
  if (r === undefined) return start;
  const f = xen_memory_reservation.fields;
  const nrExtents = f.nr_extents.get(r, 0);
  if (nrExtents > BigInt(MAX_EXTENTS)) return start;
  const nr = Number(nrExtents);
  if (start >= nr) return start;
  const d = hv.lookup(ctx.domain, f.domid.get(r, 0));
  if (d === undefined || d.dead) return start;
  const memFlags = f.mem_flags.get(r, 0);
  // An address width (low byte) that cannot hold even one page is invalid. Wider limits are
  // not enforced: pvkit's allocator has no notion of low memory.
  const addressBits = memFlags & 0xff;
  if (addressBits !== 0 && addressBits <= PAGE.SHIFT) return start;
  // Populate-on-demand is for translated (HVM) guests; Xen refuses it for PV, as here.
  if (op === XENMEM.populate_physmap && (memFlags & XENMEMF.populate_on_demand) !== 0) return start;
  if (!hv.allows(ctx.domain, action(op), "target", d)) return start;
  if (f.extent_order.get(r, 0) !== 0) return start;
  const list = u64ToNumber(f.extent_start.get(r, 0));

  let i = start;
  switch (op) {
    case XENMEM.populate_physmap:
      for (; i < nr; i++) {
        const gpfn = readPfn(hv, ctx.domain, list, i);
        if (gpfn === undefined) break;
        const pfn = u64ToNumber(gpfn);
        if (occupied(d, pfn)) break;
        const mfn = d.populate(pfn);
        if (mfn < 0) break;
        if (!writePfn(hv, ctx.domain, list, i, mfn)) {
          d.depopulate(pfn);
          break;
        }
      }
      break;
    case XENMEM.increase_reservation: {
      let pfn = 0;
      for (; i < nr; i++) {
        while (pfn < MAX_PFN && occupied(d, pfn)) pfn++;
        const mfn = d.populate(pfn);
        if (mfn < 0) break;
        // A null extent_start means "don't tell me the frames".
        if (list !== 0 && !writePfn(hv, ctx.domain, list, i, mfn)) {
          d.depopulate(pfn);
          break;
        }
      }
      break;
    }
    default: // XENMEM.decrease_reservation
      for (; i < nr; i++) {
        const gpfn = readPfn(hv, ctx.domain, list, i);
        if (gpfn === undefined || !d.depopulate(u64ToNumber(gpfn))) break;
      }
  }
  return i;
}

/** `current_reservation`, `maximum_reservation`, `maximum_gpfn`: a number about a domain. */
function reservationInfo(ctx: HypercallContext, op: number, argVa: number): number {
  const { hv } = ctx;
  const v = readGuestStruct(hv.machine, ctx.domain, argVa, xen_memory_domain);
  if (v === undefined) return -E.EFAULT;
  const d = hv.lookup(ctx.domain, xen_memory_domain.fields.domid.get(v, 0));
  if (d === undefined) return -E.ESRCH;
  if (!hv.allows(ctx.domain, action(op), "target", d)) return -E.EPERM;
  switch (op) {
    case XENMEM.current_reservation:
      return d.totPages;
    case XENMEM.maximum_reservation:
      return d.maxPages;
    default:
      // XENMEM.maximum_gpfn: the highest populated pfn, 0 when there is none.
      return d.p2m.highest() ?? 0;
  }
}

/**
 * The permission check of the add_to_physmap commands (Xen's
 * `xatp_permission_check`): device MMIO only for the hardware domain into
 * itself, anything else for a domain the caller may act on.
 */
function physmapPermission(ctx: HypercallContext, d: Domain, space: number, op: number): number {
  if (space === XENMAPSPACE.dev_mmio && (d !== ctx.domain || d.domid !== 0)) return -E.EACCES;
  return ctx.hv.allows(ctx.domain, action(op), "target", d) ? 0 : -E.EPERM;
}

/** `add_to_physmap`: one page of a map space at one gpfn. */
function addToPhysmap(ctx: HypercallContext, start: number, argVa: number): number {
  const { hv } = ctx;
  if (start > 0xffff) return -E.EDOM;
  const x = readGuestStruct(hv.machine, ctx.domain, argVa, xen_add_to_physmap);
  if (x === undefined) return -E.EFAULT;
  const f = xen_add_to_physmap.fields;
  const space = f.space.get(x, 0);
  // Foreign pages come only through add_to_physmap_batch, which names their owner.
  if (space === XENMAPSPACE.gmfn_foreign) return -E.ENOSYS;
  const d = hv.lookup(ctx.domain, f.domid.get(x, 0));
  if (d === undefined || d.dead) return -E.ESRCH;
  const rc = physmapPermission(ctx, d, space, XENMEM.add_to_physmap);
  if (rc !== 0) return rc;
  return addOne(hv, d, space, DOMID.INVALID, f.idx.get(x, 0), f.gpfn.get(x, 0));
}

/**
 * `add_to_physmap_batch`: `size` pages, indexes from `idxs`, placed at the
 * gpfns of `gpfns`, each result written to `errs`. The call itself returns 0
 * once every entry has its result, or an errno if the batch could not be
 * processed at all.
 */
function addToPhysmapBatch(ctx: HypercallContext, start: number, argVa: number): number {
  const { hv } = ctx;
  if (start > 0xffff) return -E.EDOM;
  const b = readGuestStruct(hv.machine, ctx.domain, argVa, xen_add_to_physmap_batch);
  if (b === undefined) return -E.EFAULT;
  const f = xen_add_to_physmap_batch.fields;
  const space = f.space.get(b, 0);
  const size = f.size.get(b, 0);
  const idxsVa = u64ToNumber(f.idxs.get(b, 0));
  const gpfnsVa = u64ToNumber(f.gpfns.get(b, 0));
  const errsVa = u64ToNumber(f.errs.get(b, 0));
  // Every array is reachable before anything is done (Xen checks the ranges up front too),
  // and the indexes and gpfns are read once.
  const idxs = copyFromGuest(hv.machine, ctx.domain, idxsVa, size * XEN_PFN_SIZE);
  const gpfns = copyFromGuest(hv.machine, ctx.domain, gpfnsVa, size * XEN_PFN_SIZE);
  const errs = copyFromGuest(hv.machine, ctx.domain, errsVa, size * ERR_SIZE);
  if (idxs === undefined || gpfns === undefined || errs === undefined || !copyToGuest(hv.machine, ctx.domain, errsVa, errs)) return -E.EFAULT;
  if (space === XENMAPSPACE.gmfn_range) return -E.EOPNOTSUPP;
  const d = hv.lookup(ctx.domain, f.domid.get(b, 0));
  if (d === undefined || d.dead) return -E.ESRCH;
  const rc = physmapPermission(ctx, d, space, XENMEM.add_to_physmap_batch);
  if (rc !== 0) return rc;
  if (size < start) return -E.EILSEQ;
  if (size === start) return start !== 0 ? -E.EILSEQ : 0;
  if (space === XENMAPSPACE.dev_mmio && f.res0.get(b, 0) !== 0) return -E.EOPNOTSUPP;
  const foreign = f.foreign_domid.get(b, 0);
  const idxView = new DataView(idxs.buffer);
  const gpfnView = new DataView(gpfns.buffer);
  for (let i = start; i < size; i++) {
    const err = addOne(hv, d, space, foreign, idxView.getBigUint64(i * XEN_PFN_SIZE, true), gpfnView.getBigUint64(i * XEN_PFN_SIZE, true));
    const out = new Uint8Array(ERR_SIZE);
    new DataView(out.buffer).setInt32(0, err, true);
    if (!copyToGuest(hv.machine, ctx.domain, errsVa + i * ERR_SIZE, out)) return -E.EFAULT;
  }
  return 0;
}

/** One page of a map space at `gpfn` of `d` (Xen's `xenmem_add_to_physmap_one`). */
function addOne(hv: Hypervisor, d: Domain, space: number, foreignDomid: number, idx: bigint, gpfn: bigint): number {
  let mfn: number | undefined;
  switch (space) {
    case XENMAPSPACE.shared_info:
      mfn = idx === 0n && d.sharedInfoMfn >= 0 ? d.sharedInfoMfn : undefined;
      break;
    case XENMAPSPACE.grant_table:
      mfn = idx <= 0xffffffffn ? grantFrame(hv, d, Number(idx)) : undefined;
      break;
    case XENMAPSPACE.gmfn_foreign: {
      // Xen's p2m_add_foreign. DOMID_XEN's own pages are not modelled.
      const owner = hv.domains.get(foreignDomid);
      if (owner === undefined) return -E.ESRCH;
      if (owner === d) return -E.EINVAL;
      // The domain receiving the mapping, not the caller, must be allowed to map the owner's pages.
      if (!hv.allows(d, "memory_op:map_gmfn_foreign", "target", owner)) return -E.EPERM;
      // The foreign gfn is looked up in the owner's whole physmap, RAM and added frames
      // alike, as p2m_add_foreign does: how xc_dom_gnttab_seed reaches a guest's grant frame.
      mfn = owner.translate(u64ToNumber(idx))?.mfn;
      break;
    }
    case XENMAPSPACE.gmfn:
    case XENMAPSPACE.gmfn_range:
      // Moving a domain's own pages around its physmap is for translated guests; not modelled.
      return -E.EOPNOTSUPP;
    default:
      mfn = undefined;
  }
  if (mfn === undefined) return -E.EINVAL;
  return install(hv, d, u64ToNumber(gpfn), mfn);
}

/**
 * Installs a writable mapping of `mfn` at virtual page `vpn` of `d`, taking a
 * reference on the frame: RAM there is released, an earlier physmap mapping
 * replaced; a grant mapping there refuses with `-EBUSY`.
 */
function install(hv: Hypervisor, d: Domain, vpn: number, mfn: number): number {
  if (!Number.isInteger(vpn) || vpn < 0 || vpn >= MAX_PFN) return -E.EINVAL;
  const old = d.mappings.get(vpn);
  if (old !== undefined && old.kind !== "physmap") return -E.EBUSY;
  // Take the new reference before dropping the old: both may name the same frame.
  hv.machine.get(mfn);
  if (old !== undefined) hv.machine.put(old.mfn);
  d.depopulate(vpn);
  const m: Mapping = { mfn, writable: true, kind: "physmap" };
  d.mappings.set(vpn, m);
  // The replaced mapping may have held a dying domain's last page.
  if (old !== undefined) hv.reap();
  return 0;
}

/** `remove_from_physmap`: takes away what is at `gpfn` of a domain. */
function removeFromPhysmap(ctx: HypercallContext, argVa: number): number {
  const { hv } = ctx;
  const x = readGuestStruct(hv.machine, ctx.domain, argVa, xen_remove_from_physmap);
  if (x === undefined) return -E.EFAULT;
  const f = xen_remove_from_physmap.fields;
  const d = hv.lookup(ctx.domain, f.domid.get(x, 0));
  if (d === undefined) return -E.ESRCH;
  if (!hv.allows(ctx.domain, action(XENMEM.remove_from_physmap), "target", d)) return -E.EPERM;
  const vpn = u64ToNumber(f.gpfn.get(x, 0));
  const m = Number.isInteger(vpn) ? d.mappings.get(vpn) : undefined;
  if (m !== undefined) {
    if (m.kind !== "physmap") return -E.EBUSY;
    d.mappings.delete(vpn);
    hv.machine.put(m.mfn);
    // That may have been the last reference to a dying domain's page.
    hv.reap();
    return 0;
  }
  return d.depopulate(vpn) ? 0 : -E.ENOENT;
}
