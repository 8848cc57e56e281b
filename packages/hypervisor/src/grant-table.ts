/**
 * Grant tables, version 1: how one domain lets another map or copy its pages.
 *
 * ## The protocol
 *
 * Every domain has a grant table: frames of machine memory that the domain
 * itself writes, holding 8-byte {@link grant_entry_v1} entries (512 a frame).
 * To grant a page, the granter fills entry `ref`: `domid` (who may use it)
 * and `frame` (for a PV guest, the machine frame number of the page), then,
 * after a write barrier, `flags` with the type `GTF_permit_access` (plus
 * `GTF_readonly` to forbid writes). Writing the type last publishes the entry.
 * The granter passes `ref` to the grantee, usually through XenStore.
 *
 * The grantee calls `__HYPERVISOR_grant_table_op`:
 *
 * - `GNTTABOP_map_grant_ref` checks the entry and maps the frame at a virtual
 *   address of the grantee (`host_addr`). While any mapping of the entry
 *   exists the hypervisor keeps `GTF_reading` set in the entry's flags, and
 *   `GTF_writing` while a writable one exists. It sets them with a
 *   compare-and-exchange on the 32-bit word holding `flags` and `domid`, so
 *   the check of type and grantee and the setting of the flags are one atomic
 *   step against a granter rewriting the entry. The map returns a handle: an
 *   index into the grantee's *maptrack*, its table of live mappings, which
 *   holds `256 × max_maptrack_frames` of them (a full one answers
 *   `GNTST_no_space`, as Xen 4.17 does).
 * - `GNTTABOP_unmap_grant_ref` removes a mapping by its handle; when the last
 *   mapping of the entry goes (the last writable one, for `GTF_writing`) the
 *   flag is cleared. A non-zero `dev_bus_addr` is checked only against a
 *   mapping made with `GNTMAP_device_map` (`GNTST_bad_dev_addr` when it
 *   differs), as in Xen 4.17.
 * - `GNTTABOP_copy` copies bytes between pages named by grant or (only for
 *   the caller's own pages) by frame, without mapping anything in the guest;
 *   the entry is pinned, with its flags set, only for the copy.
 *
 * The granter ends access by clearing `flags` with a compare-and-exchange that
 * refuses while `GTF_reading` or `GTF_writing` is set (Linux's
 * `gnttab_end_foreign_access_ref`): the hypervisor does not stop a guest from
 * scribbling on its own table, but a guest kernel that follows the protocol
 * cannot reuse a page the grantee still maps. And should the granter give the
 * page up anyway (`decrease_reservation`), the frame stays allocated: each
 * grant mapping, like any mapping, holds a reference on its frame, so the
 * frame is freed only when the grantee unmaps it. A domain destroyed while
 * its pages are mapped stays dying until the last such mapping goes.
 *
 * ## Where pvkit differs from Xen
 *
 * - Version 1 only: `GNTTABOP_set_version` accepts 1 and answers 2 with
 *   `-ENOSYS`, as Xen booted with `gnttab=max-ver:1` does, so there are no
 *   status frames and no sub-page or transitive grants.
 * - A map must include `GNTMAP_host_map` at a page-aligned virtual address
 *   that maps nothing (no RAM, no other mapping). Device-only maps
 *   (`GNTMAP_device_map` alone) and `GNTMAP_contains_pte` are refused with
 *   `GNTST_general_error`: pvkit has no I/O MMU and no page tables for the
 *   mapping to live in. With both flags the map is a host map that also
 *   returns `dev_bus_addr`.
 * - `GNTTABOP_transfer` answers every operation with `GNTST_general_error`: a
 *   PV receiver must enter a transferred page into its own P2M, which pvkit
 *   keeps for it, and page flipping is obsolete (Linux dropped it).
 * - `GNTTABOP_unmap_and_replace` and `GNTTABOP_cache_flush` answer `-ENOSYS`,
 *   as does `GNTTABOP_dump_table`, which Xen itself no longer implements.
 * - A dying domain's grants can no longer be mapped or copied
 *   (`GNTST_bad_domain`): its grant frames are released when it is destroyed.
 *
 * Each operation is traced as a `grant` record with the caller, the granter
 * (or the target domain), the grant reference (-1 where there is none) and the
 * `GNTST_*` status.
 *
 * @module
 */
import {
  DOMID,
  GNTCOPY,
  GNTMAP,
  GNTST,
  GNTTABOP,
  GTF,
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
  grant_entry_v1,
  type StructLayout,
} from "@pvkit/abi";
import type { Domain, Mapping } from "./domain.js";
import { copyToGuest, readGuestStruct, u64ToNumber, writeGuestStruct } from "./guest-memory.js";
import type { HypercallContext } from "./hypercall.js";
import type { Hypervisor } from "./hypervisor.js";
import { PageType } from "./machine.js";

/** Version 1 entries in one grant-table frame: 4096 / 8. */
export const GRANT_ENTRIES_PER_FRAME = PAGE_SIZE / grant_entry_v1.size;

/** Default most grant-table frames of a domain: Xen's `gnttab_max_frames` (64, i.e. 32768 entries). */
export const DEFAULT_MAX_GRANT_FRAMES = 64;

/** Maptrack entries in one maptrack frame: Xen's `MAPTRACK_PER_PAGE` (4096 / 16-byte `grant_mapping`). */
export const MAPTRACK_PER_FRAME = 256;

/** Default most maptrack frames of a domain: Xen's `gnttab_max_maptrack_frames` (1024). */
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;

/**
 * Xen counts pins of an entry in 8-bit fields and refuses a new one once a
 * count reaches 128 (`act->pin & 0x80808080`).
 */
const PIN_LIMIT = 0x80;

/** Xen retries the compare-and-exchange on a shared entry this many times before calling it unstable. */
const CMPXCHG_RETRIES = 5;

/** Bits of a grant-table op's `cmd` that carry continuation state (`GNTTABOP_ARG_MASK`). */
const GNTTABOP_CMD_MASK = (1 << 12) - 1;

/** Page types a writable grant mapping or copy cannot take (Xen's `get_page_type(PGT_writable_page)` fails). */
const PAGE_TABLE_TYPES: ReadonlySet<number> = new Set([PageType.l1, PageType.l2, PageType.l3, PageType.l4]);

/**
 * The hypervisor's shadow of an entry in use (Xen's `active_grant_entry`):
 * who pinned it, the frame found there when it was first pinned, and how
 * many read-only and writable pins (mappings, and copies in progress) it has.
 * It exists exactly while the entry is pinned.
 */
export interface ActiveGrant {
  /** The grantee holding the pins. */
  readonly domid: number;
  /** The frame mapped, captured from the entry at the first pin. */
  readonly mfn: number;
  /** Read-only pins (`GNTPIN_hstr`). */
  readers: number;
  /** Writable pins (`GNTPIN_hstw`). */
  writers: number;
}

/** One live mapping in a grantee's maptrack (Xen's `grant_mapping`), by handle. */
export interface MaptrackEntry {
  /** The granting domain. */
  readonly granter: Domain;
  /** The grant reference in the granter's table. */
  readonly ref: number;
  /** The frame mapped. */
  readonly mfn: number;
  /** Virtual page number of `host_addr` in the grantee. */
  readonly vpn: number;
  /** Whether it was mapped `GNTMAP_readonly`. */
  readonly readonly: boolean;
  /** The `GNTMAP_*` flags of the map request. */
  readonly flags: number;
  /** Whether the mapping holds a writable type reference on the frame. */
  readonly typeRef: boolean;
  /** The mapping installed in the grantee's address space. */
  readonly mapping: Mapping;
}

/** A snapshot of one version 1 grant entry. */
export interface GrantEntry {
  /** `GTF_*` type and flags. */
  readonly flags: number;
  /** The grantee. */
  readonly domid: number;
  /** The frame (an mfn, for a PV granter). */
  readonly frame: number;
}

/**
 * A domain's grant state: as a granter, its shared grant-table frames and the
 * active entries shadowing the grants in use; as a grantee, its maptrack.
 */
export class GrantTable {
  /** Machine frames of the shared table, in order: entry `ref` is in frame `ref / 512`. Owned by the domain, typed `grant_table`, not in `tot_pages`. */
  readonly frames: number[] = [];
  /** Most frames the table may grow to (`max_grant_frames`, fixed at creation). */
  maxFrames: number;
  /** Most maptrack frames (`max_maptrack_frames`, fixed at creation): the grantee may hold `256 ×` this many mappings. */
  maxMaptrackFrames: number;
  /** The grant table version in force: always 1. */
  readonly version = 1;
  /** Pinned entries of this domain's table, by grant reference. */
  readonly active = new Map<number, ActiveGrant>();
  /** This domain's live mappings of grants, by handle. */
  readonly maptrack = new Map<number, MaptrackEntry>();

  private isReleased = false;
  private maptrackLimit = 0;
  private readonly freeHandles: number[] = [];
  private readonly words: Int32Array;

  /**
   * Creates the grant state of `domain`, limited to `maxFrames` grant frames
   * and `maxMaptrackFrames` maptrack frames, with one frame, so the entries
   * the domain builder fills (`GNTTAB_RESERVED_CONSOLE`, `_XENSTORE`) exist.
   * If machine memory is exhausted the table starts empty and grows on demand.
   */
  constructor(
    readonly hv: Hypervisor,
    readonly domain: Domain,
    maxFrames = DEFAULT_MAX_GRANT_FRAMES,
    maxMaptrackFrames = DEFAULT_MAX_MAPTRACK_FRAMES,
  ) {
    this.words = hv.machine.words;
    this.maxFrames = maxFrames;
    this.maxMaptrackFrames = maxMaptrackFrames;
    this.grow(1);
  }

  /** Number of entries the table holds now. */
  get nrEntries(): number {
    return this.frames.length * GRANT_ENTRIES_PER_FRAME;
  }

  /** True once {@link release} gave the frames back (the domain is dying): the table is gone. */
  get released(): boolean {
    return this.isReleased;
  }

  /**
   * Grows the table to at least `nr` frames (Xen's `gnttab_grow_table`):
   * each new frame is allocated zeroed to the domain and typed `grant_table`.
   * @returns false, allocating nothing, beyond {@link maxFrames}, once
   * released, or when machine memory runs out.
   */
  grow(nr: number): boolean {
    if (!Number.isInteger(nr) || nr > this.maxFrames || this.isReleased) return false;
    const m = this.hv.machine;
    const added: number[] = [];
    while (this.frames.length + added.length < nr) {
      const mfn = m.alloc(this.domain.domid, "xenheap");
      if (mfn === undefined) {
        for (const f of added) m.put(f);
        return false;
      }
      m.type[mfn] = PageType.grant_table;
      m.typeCount[mfn] = 1;
      added.push(mfn);
    }
    this.frames.push(...added);
    return true;
  }

  /** Gives the frames back (the domain is dying); a frame someone still maps stays allocated by that mapping. */
  release(): void {
    const m = this.hv.machine;
    for (const mfn of this.frames) {
      m.typeCount[mfn] = 0;
      m.type[mfn] = PageType.none;
      m.put(mfn);
    }
    this.frames.length = 0;
    this.isReleased = true;
  }

  /** Byte offset of entry `ref` in machine memory, or undefined if the table has no such entry. */
  entryOffset(ref: number): number | undefined {
    if (!Number.isInteger(ref) || ref < 0 || ref >= this.nrEntries) return undefined;
    return this.frames[Math.floor(ref / GRANT_ENTRIES_PER_FRAME)]! * PAGE_SIZE + (ref % GRANT_ENTRIES_PER_FRAME) * grant_entry_v1.size;
  }

  /** Reads entry `ref` as it is now, or undefined beyond the table. */
  entry(ref: number): GrantEntry | undefined {
    const at = this.entryOffset(ref);
    if (at === undefined) return undefined;
    const raw = Atomics.load(this.words, at >> 2);
    return { flags: raw & 0xffff, domid: raw >>> 16, frame: Atomics.load(this.words, (at >> 2) + 1) >>> 0 };
  }

  /**
   * Sets `GTF_reading` (and `GTF_writing` unless `readonly`) in entry `ref`
   * (Xen's `_set_status_v1`). For an entry not yet pinned, the type must be
   * `GTF_permit_access` (with no `GTF_sub_page` when `mapping`) and the
   * grantee `ldomid`, checked in the same compare-and-exchange that sets the
   * flags; a writable pin needs an entry without `GTF_readonly`.
   * @returns a `GNTST_*` status.
   */
  setStatus(ref: number, pinned: boolean, readonly: boolean, mapping: boolean, ldomid: number): number {
    const at = this.entryOffset(ref);
    if (at === undefined) return GNTST.bad_gntref;
    const mask = GTF.type_mask | (mapping ? GTF.sub_page : 0);
    const set = GTF.reading | (readonly ? 0 : GTF.writing);
    let raw = Atomics.load(this.words, at >> 2);
    for (let tries = 0; tries < CMPXCHG_RETRIES; tries++) {
      const flags = raw & 0xffff;
      if (!pinned && ((flags & mask) !== GTF.permit_access || raw >>> 16 !== ldomid)) return GNTST.general_error;
      if (!readonly && (flags & GTF.readonly) !== 0) return GNTST.general_error;
      const prev = Atomics.compareExchange(this.words, at >> 2, raw, raw | set);
      if (prev === raw) return GNTST.okay;
      raw = prev;
    }
    return GNTST.general_error; // the granter keeps changing the entry
  }

  /** Clears `mask` from the flags of entry `ref` atomically (Xen's `gnttab_clear_flags`); nothing once released. */
  clearFlags(ref: number, mask: number): void {
    const at = this.entryOffset(ref);
    // flags are the low half of the word; the domid above them is kept.
    if (at !== undefined && mask !== 0) Atomics.and(this.words, at >> 2, ~(mask & 0xffff));
  }

  /**
   * Takes a maptrack handle (Xen's `get_maptrack_handle`): handles come a
   * maptrack frame (256) at a time, and a freed handle joins the back of the
   * free list, so it is not handed out again at once.
   * @returns the handle, or undefined when the maptrack is full.
   */
  allocHandle(): number | undefined {
    if (this.freeHandles.length === 0) {
      if (this.maptrackLimit >= this.maxMaptrackFrames * MAPTRACK_PER_FRAME) return undefined;
      for (let i = 0; i < MAPTRACK_PER_FRAME; i++) this.freeHandles.push(this.maptrackLimit + i);
      this.maptrackLimit += MAPTRACK_PER_FRAME;
    }
    return this.freeHandles.shift();
  }

  /** Returns a handle to the free list. */
  freeHandle(handle: number): void {
    this.freeHandles.push(handle);
  }
}

/**
 * The machine frame behind grant-table frame `idx` of `d`, growing the table
 * to `idx + 1` frames if needed (what `XENMEM_add_to_physmap` with
 * `XENMAPSPACE_grant_table` maps).
 * @returns the mfn, or undefined past the domain's maximum, for a dying
 * domain, or when machine memory is exhausted.
 */
export function grantFrame(hv: Hypervisor, d: Domain, idx: number): number | undefined {
  const gt = hv.grants.get(d);
  if (gt === undefined || d.dead || !Number.isInteger(idx) || idx < 0) return undefined;
  if (idx >= gt.frames.length && !gt.grow(idx + 1)) return undefined;
  return gt.frames[idx];
}

// ---------------------------------------------------------------------------
// Pinning: the shared core of map and copy.

/** True if `mfn` is an allocated frame owned by `d`. */
function ownedBy(hv: Hypervisor, mfn: number, d: Domain): boolean {
  const m = hv.machine;
  return m.valid(mfn) && m.refCount[mfn]! > 0 && m.owner[mfn] === d.domid;
}

/**
 * Pins entry `ref` of `rd` for grantee `ld` (the common part of Xen's
 * `map_grant_ref` and `acquire_grant_for_copy`): checks the entry, sets its
 * flags, captures the frame at the first pin and counts the pin.
 * @returns the frame, or a negative `GNTST_*` status with nothing changed.
 */
function pin(hv: Hypervisor, rd: Domain, rgt: GrantTable, ref: number, ld: Domain, readonly: boolean, mapping: boolean): { mfn: number } | number {
  if (ref >= rgt.nrEntries) return GNTST.bad_gntref;
  let act = rgt.active.get(ref);
  if (act !== undefined && (act.domid !== ld.domid || act.readers >= PIN_LIMIT || act.writers >= PIN_LIMIT)) return GNTST.general_error;
  if (act === undefined || (!readonly && act.writers === 0)) {
    const rc = rgt.setStatus(ref, act !== undefined, readonly, mapping, ld.domid);
    if (rc !== GNTST.okay) return rc;
    if (act === undefined) {
      const frame = rgt.entry(ref)!.frame;
      if (!ownedBy(hv, frame, rd)) {
        rgt.clearFlags(ref, GTF.reading | (readonly ? 0 : GTF.writing));
        return GNTST.bad_page;
      }
      act = { domid: ld.domid, mfn: frame, readers: 0, writers: 0 };
      rgt.active.set(ref, act);
    }
  } else if (!mapping && !ownedBy(hv, act.mfn, rd)) {
    return GNTST.bad_domain;
  }
  if (readonly) act.readers++;
  else act.writers++;
  return { mfn: act.mfn };
}

/** Drops a pin taken by {@link pin}, clearing `GTF_writing` with the last writable pin and `GTF_reading` with the last pin. */
function unpin(rgt: GrantTable, ref: number, readonly: boolean): void {
  const act = rgt.active.get(ref);
  if (act === undefined) throw new Error(`grant ${ref} of domain ${rgt.domain.domid} is not pinned`);
  if (readonly) act.readers--;
  else act.writers--;
  let clear = 0;
  if (!readonly && act.writers === 0) clear |= GTF.writing;
  if (act.readers + act.writers === 0) {
    clear |= GTF.reading;
    rgt.active.delete(ref);
  }
  if (!rgt.released) rgt.clearFlags(ref, clear);
}

// ---------------------------------------------------------------------------
// Operations.

/** A grant operation's trace record. */
function traceOp(hv: Hypervisor, op: string, caller: Domain, granter: number, ref: number, status: number): void {
  hv.trace.record({ t: hv.now, kind: "grant", op, domid: caller.domid, granter, ref, status });
}

/** The domain `domid` names for the caller (`DOMID_SELF` included), or undefined if it does not exist or is dying. */
function liveDomain(ctx: HypercallContext, domid: number): Domain | undefined {
  const d = ctx.hv.lookup(ctx.domain, domid);
  return d === undefined || d.dead ? undefined : d;
}

/** Writes the `status` field of a struct at `va` (Xen's `__copy_field_to_guest(..., status)`). */
function writeStatus(ctx: HypercallContext, va: number, layout: StructLayout, status: number): boolean {
  const field = layout.fields.status!;
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setInt16(0, status, true);
  return copyToGuest(ctx.hv.machine, ctx.domain, va + field.offset, bytes);
}

/** One `GNTTABOP_map_grant_ref` (Xen's `map_grant_ref`), in Xen's order of checks; fills `status`, `handle`, `dev_bus_addr`. */
function mapOne(ctx: HypercallContext, op: DataView): void {
  const F = gnttab_map_grant_ref.fields;
  const { hv, domain: ld } = ctx;
  const flags = F.flags.get(op, 0);
  const ref = F.ref.get(op, 0);
  const dom = F.dom.get(op, 0);
  const status = (s: number) => {
    F.status.set(op, 0, s);
    traceOp(hv, "map", ld, dom, ref, s);
  };
  if ((flags & (GNTMAP.device_map | GNTMAP.host_map)) === 0) return status(GNTST.bad_gntref);
  const rd = hv.domains.get(dom);
  const rgt = rd && hv.grants.get(rd);
  const lgt = hv.grants.get(ld);
  if (rd === undefined || rd.dead || rgt === undefined || lgt === undefined) return status(GNTST.bad_domain);
  const handle = lgt.allocHandle();
  if (handle === undefined) return status(GNTST.no_space);
  const readonly = (flags & GNTMAP.readonly) !== 0;
  const pinned = pin(hv, rd, rgt, ref, ld, readonly, true);
  if (typeof pinned === "number") {
    lgt.freeHandle(handle);
    return status(pinned);
  }
  const mfn = pinned.mfn;
  const fail = (s: number) => {
    unpin(rgt, ref, readonly);
    lgt.freeHandle(handle);
    status(s);
  };
  // No owner check is needed: pin() found the frame owned by the granter at the first pin, and
  // the mappings holding the pin since keep it allocated, so owned by the granter.
  const m = hv.machine;
  if (!readonly && PAGE_TABLE_TYPES.has(m.type[mfn]!)) return fail(GNTST.general_error);
  // The host mapping (Xen's create_grant_host_mapping).
  if ((flags & GNTMAP.host_map) === 0 || (flags & GNTMAP.contains_pte) !== 0) return fail(GNTST.general_error);
  const va = u64ToNumber(F.host_addr.get(op, 0));
  if (!Number.isInteger(va) || va % PAGE_SIZE !== 0) return fail(GNTST.general_error);
  const vpn = va / PAGE_SIZE;
  if (ld.translate(vpn) !== undefined) return fail(GNTST.general_error);
  // Commit: a writable type reference for an ordinary page, a general reference, the mapping.
  const typeRef = !readonly && (m.type[mfn] === PageType.none || m.type[mfn] === PageType.writable);
  if (typeRef) {
    m.type[mfn] = PageType.writable;
    m.typeCount[mfn]!++;
  }
  m.get(mfn);
  const mapping: Mapping = { mfn, writable: !readonly, kind: "grant" };
  ld.mappings.set(vpn, mapping);
  lgt.maptrack.set(handle, { granter: rd, ref, mfn, vpn, readonly, flags, typeRef, mapping });
  F.handle.set(op, 0, handle);
  F.dev_bus_addr.set(op, 0, BigInt(mfn) * BigInt(PAGE_SIZE));
  status(GNTST.okay);
}

/** Removes maptrack entry `handle` of `lgt`: the mapping, its references and its pin. */
function undoMapping(hv: Hypervisor, lgt: GrantTable, handle: number, e: MaptrackEntry): void {
  const m = hv.machine;
  lgt.domain.mappings.delete(e.vpn);
  lgt.maptrack.delete(handle);
  lgt.freeHandle(handle);
  if (e.typeRef && --m.typeCount[e.mfn]! === 0) m.type[e.mfn] = PageType.none;
  m.put(e.mfn);
  unpin(hv.grants.get(e.granter)!, e.ref, e.readonly);
}

/** One `GNTTABOP_unmap_grant_ref` (Xen's `unmap_common` and `unmap_common_complete`); returns its status. */
function unmapOne(ctx: HypercallContext, op: DataView): number {
  const F = gnttab_unmap_grant_ref.fields;
  const { hv, domain: ld } = ctx;
  const lgt = hv.grants.get(ld)!;
  const handle = F.handle.get(op, 0);
  const e = lgt.maptrack.get(handle);
  if (e === undefined) {
    traceOp(hv, "unmap", ld, DOMID.INVALID, -1, GNTST.bad_handle);
    return GNTST.bad_handle;
  }
  const result = (s: number) => {
    traceOp(hv, "unmap", ld, e.granter.domid, e.ref, s);
    return s;
  };
  // Only a device mapping has a bus address to check (Xen 4.17's unmap_common).
  const bus = F.dev_bus_addr.get(op, 0);
  if ((e.flags & GNTMAP.device_map) !== 0 && bus !== 0n && bus !== BigInt(e.mfn) * BigInt(PAGE_SIZE)) return result(GNTST.bad_dev_addr);
  const host = F.host_addr.get(op, 0);
  if (host === 0n || host / BigInt(PAGE_SIZE) !== BigInt(e.vpn) || ld.mappings.get(e.vpn) !== e.mapping) return result(GNTST.general_error);
  undoMapping(hv, lgt, handle, e);
  return result(GNTST.okay);
}

/** One side of a copy, claimed: its frame, and how to let it go. */
interface CopyBuf {
  readonly mfn: number;
  release(): void;
}

/** Claims one side of a copy (Xen's `gnttab_copy_claim_buf`): pins a grant, or checks a frame the caller owns. */
function claimCopyBuf(ctx: HypercallContext, d: Domain, isRef: boolean, ref: number, gmfn: bigint, readonly: boolean): CopyBuf | number {
  const { hv, domain: caller } = ctx;
  if (isRef) {
    const rgt = hv.grants.get(d)!;
    const pinned = pin(hv, d, rgt, ref, caller, readonly, false);
    if (typeof pinned === "number") return pinned;
    if (!readonly && PAGE_TABLE_TYPES.has(hv.machine.type[pinned.mfn]!)) {
      unpin(rgt, ref, readonly);
      return GNTST.general_error;
    }
    return { mfn: pinned.mfn, release: () => unpin(rgt, ref, readonly) };
  }
  const mfn = u64ToNumber(gmfn);
  if (!ownedBy(hv, mfn, d)) return GNTST.bad_page;
  if (!readonly && PAGE_TABLE_TYPES.has(hv.machine.type[mfn]!)) return GNTST.general_error;
  return { mfn, release: () => {} };
}

/**
 * The domain one side of a copy names (Xen's `gnttab_copy_lock_domain`):
 * only `DOMID_SELF` may name a page by frame; a grant may be of any domain.
 */
function copyDomain(ctx: HypercallContext, domid: number, isRef: boolean): Domain | number {
  if (!isRef && domid !== DOMID.SELF) return GNTST.permission_denied;
  return liveDomain(ctx, domid) ?? GNTST.bad_domain;
}

/** One `GNTTABOP_copy` (Xen's `gnttab_copy_one`); returns its status. */
function copyOne(ctx: HypercallContext, op: DataView): number {
  const F = gnttab_copy.fields;
  const P = gnttab_copy_ptr.fields;
  const { hv, domain: caller } = ctx;
  const src = F.source.at(0);
  const dst = F.dest.at(0);
  const flags = F.flags.get(op, 0);
  const len = F.len.get(op, 0);
  const srcRef = (flags & GNTCOPY.source_gref) !== 0;
  const dstRef = (flags & GNTCOPY.dest_gref) !== 0;
  const sDomid = P.domid.get(op, src);
  const dDomid = P.domid.get(op, dst);
  // The trace names the granting side: the source grant, else the destination grant, else the caller.
  const [granter, ref] = srcRef ? [sDomid, P.ref.get(op, src)] : dstRef ? [dDomid, P.ref.get(op, dst)] : [caller.domid, -1];
  const result = (s: number) => {
    traceOp(hv, "copy", caller, granter === DOMID.SELF ? caller.domid : granter, ref, s);
    return s;
  };
  const sd = copyDomain(ctx, sDomid, srcRef);
  if (typeof sd === "number") return result(sd);
  const dd = copyDomain(ctx, dDomid, dstRef);
  if (typeof dd === "number") return result(dd);
  const s = claimCopyBuf(ctx, sd, srcRef, P.ref.get(op, src), P.gmfn.get(op, src), true);
  if (typeof s === "number") return result(s);
  const d = claimCopyBuf(ctx, dd, dstRef, P.ref.get(op, dst), P.gmfn.get(op, dst), false);
  if (typeof d === "number") {
    s.release();
    return result(d);
  }
  const sOff = P.offset.get(op, src);
  const dOff = P.offset.get(op, dst);
  let rc: number = GNTST.okay;
  if (sOff + len > PAGE_SIZE || dOff + len > PAGE_SIZE) rc = GNTST.bad_copy_arg;
  else hv.machine.bytes.copyWithin(d.mfn * PAGE_SIZE + dOff, s.mfn * PAGE_SIZE + sOff, s.mfn * PAGE_SIZE + sOff + len);
  d.release();
  s.release();
  return result(rc);
}

/** One `GNTTABOP_swap_grant_ref`: exchanges two entries of the caller's table unless either is pinned. */
function swapOne(ctx: HypercallContext, op: DataView): number {
  const F = gnttab_swap_grant_ref.fields;
  const gt = ctx.hv.grants.get(ctx.domain)!;
  const a = F.ref_a.get(op, 0);
  const b = F.ref_b.get(op, 0);
  const result = (s: number) => {
    traceOp(ctx.hv, "swap", ctx.domain, ctx.domain.domid, a, s);
    return s;
  };
  const at = gt.entryOffset(a);
  const bt = gt.entryOffset(b);
  if (at === undefined || bt === undefined) return result(GNTST.bad_gntref);
  if (a === b) return result(GNTST.okay);
  if (gt.active.has(a) || gt.active.has(b)) return result(GNTST.eagain);
  const bytes = ctx.hv.machine.bytes;
  const saved = bytes.slice(at, at + grant_entry_v1.size);
  bytes.copyWithin(at, bt, bt + grant_entry_v1.size);
  bytes.set(saved, bt);
  return result(GNTST.okay);
}

/** `GNTTABOP_setup_table` (exactly one op): grows the table and lists its frames' mfns. */
function setupTable(ctx: HypercallContext, va: number, count: number): number {
  const { hv } = ctx;
  if (count !== 1) return -XEN_ERRNO.EINVAL;
  const op = readGuestStruct(hv.machine, ctx.domain, va, gnttab_setup_table);
  if (op === undefined) return -XEN_ERRNO.EFAULT;
  const F = gnttab_setup_table.fields;
  const dom = F.dom.get(op, 0);
  const nr = F.nr_frames.get(op, 0);
  const target = liveDomain(ctx, dom);
  const gt = target && hv.grants.get(target);
  let status: number;
  if (target === undefined || gt === undefined) status = GNTST.bad_domain;
  else if (!hv.allows(ctx.domain, "grant:setup_table", "target", target)) status = GNTST.permission_denied;
  else if (nr > gt.maxFrames) status = GNTST.general_error;
  else if (nr > gt.frames.length && !gt.grow(nr)) status = GNTST.general_error;
  else {
    status = GNTST.okay;
    const list = u64ToNumber(F.frame_list.get(op, 0));
    for (let i = 0; i < nr; i++) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(gt.frames[i]!), true);
      if (!copyToGuest(hv.machine, ctx.domain, list + i * 8, bytes)) status = GNTST.bad_virt_addr;
    }
  }
  traceOp(hv, "setup_table", ctx.domain, target?.domid ?? dom, -1, status);
  return writeStatus(ctx, va, gnttab_setup_table, status) ? 0 : -XEN_ERRNO.EFAULT;
}

/** `GNTTABOP_query_size` (exactly one op). */
function querySize(ctx: HypercallContext, va: number, count: number): number {
  const { hv } = ctx;
  if (count !== 1) return -XEN_ERRNO.EINVAL;
  const op = readGuestStruct(hv.machine, ctx.domain, va, gnttab_query_size);
  if (op === undefined) return -XEN_ERRNO.EFAULT;
  const F = gnttab_query_size.fields;
  const dom = F.dom.get(op, 0);
  const target = liveDomain(ctx, dom);
  const gt = target && hv.grants.get(target);
  let status: number;
  if (target === undefined || gt === undefined) status = GNTST.bad_domain;
  else if (!hv.allows(ctx.domain, "grant:query_size", "target", target)) status = GNTST.permission_denied;
  else {
    F.nr_frames.set(op, 0, gt.frames.length);
    F.max_nr_frames.set(op, 0, gt.maxFrames);
    status = GNTST.okay;
  }
  F.status.set(op, 0, status);
  traceOp(hv, "query_size", ctx.domain, target?.domid ?? dom, -1, status);
  return writeGuestStruct(hv.machine, ctx.domain, va, op) ? 0 : -XEN_ERRNO.EFAULT;
}

/** `GNTTABOP_set_version`: version 1 stays; 2 is `-ENOSYS` (as Xen with `gnttab=max-ver:1`). */
function setVersion(ctx: HypercallContext, va: number): number {
  const op = readGuestStruct(ctx.hv.machine, ctx.domain, va, gnttab_set_version);
  if (op === undefined) return -XEN_ERRNO.EFAULT;
  const F = gnttab_set_version.fields;
  const want = F.version.get(op, 0);
  const rc = want === 1 ? 0 : want === 2 ? -XEN_ERRNO.ENOSYS : -XEN_ERRNO.EINVAL;
  F.version.set(op, 0, 1);
  return writeGuestStruct(ctx.hv.machine, ctx.domain, va, op) ? rc : -XEN_ERRNO.EFAULT;
}

/** `GNTTABOP_get_version`: always 1. */
function getVersion(ctx: HypercallContext, va: number): number {
  const op = readGuestStruct(ctx.hv.machine, ctx.domain, va, gnttab_get_version);
  if (op === undefined) return -XEN_ERRNO.EFAULT;
  const F = gnttab_get_version.fields;
  const target = liveDomain(ctx, F.dom.get(op, 0));
  if (target === undefined) return -XEN_ERRNO.ESRCH;
  if (!ctx.hv.allows(ctx.domain, "grant:get_version", "target", target)) return -XEN_ERRNO.EPERM;
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, ctx.hv.grants.get(target)!.version, true);
  return copyToGuest(ctx.hv.machine, ctx.domain, va + F.version.offset, bytes) ? 0 : -XEN_ERRNO.EFAULT;
}

/** `GNTTABOP_get_status_frames`: version 1 has none. */
function getStatusFrames(ctx: HypercallContext, va: number, count: number): number {
  if (count !== 1) return -XEN_ERRNO.EINVAL;
  const op = readGuestStruct(ctx.hv.machine, ctx.domain, va, gnttab_get_status_frames);
  if (op === undefined) return -XEN_ERRNO.EFAULT;
  const F = gnttab_get_status_frames.fields;
  const target = liveDomain(ctx, F.dom.get(op, 0));
  let status: number;
  if (target === undefined) status = GNTST.bad_domain;
  else if (!ctx.hv.allows(ctx.domain, "grant:get_status_frames", "target", target)) status = GNTST.permission_denied;
  // Version 1 has no status frames: asking for any is asking for too many.
  else status = F.nr_frames.get(op, 0) > 0 ? GNTST.general_error : GNTST.okay;
  return writeStatus(ctx, va, gnttab_get_status_frames, status) ? 0 : -XEN_ERRNO.EFAULT;
}

/**
 * Runs `one` on each of `count` structs of `layout` at `va`: reads the
 * struct, lets `one` decide its status (and fill it), and writes back either
 * the whole struct (`whole`) or only its status, as Xen does per command.
 */
function eachOp(ctx: HypercallContext, va: number, count: number, layout: StructLayout, whole: boolean, one: (op: DataView) => number | void): number {
  const mem = ctx.hv.machine;
  for (let i = 0; i < count; i++) {
    const at = va + i * layout.size;
    const op = readGuestStruct(mem, ctx.domain, at, layout);
    if (op === undefined) return -XEN_ERRNO.EFAULT;
    const status = one(op);
    const ok = whole ? writeGuestStruct(mem, ctx.domain, at, op) : writeStatus(ctx, at, layout, status as number);
    if (!ok) return -XEN_ERRNO.EFAULT;
  }
  return 0;
}

/**
 * `__HYPERVISOR_grant_table_op(cmd, uop, count)`: runs `count` operations
 * of command `cmd` from the array at guest address `argVa`, each reporting
 * its outcome in its own `status` (`GNTST_*`).
 *
 * Commands: `GNTTABOP_map_grant_ref`, `unmap_grant_ref`, `setup_table`,
 * `transfer` (refused per operation, see the module notes), `copy`,
 * `query_size`, `set_version` (version 1 only), `get_status_frames`,
 * `get_version` and `swap_grant_ref`.
 *
 * @returns 0 once every operation ran; `-EFAULT` if the array (or a
 * struct's write-back) faults, leaving the operations before it done;
 * `-EINVAL` for a count that is negative, not an integer or not 1 where Xen
 * wants exactly one (`setup_table`, `query_size`, `get_status_frames`), or
 * continuation bits in `cmd`; `-ENOSYS` for any other command; and, for
 * `set_version` and `get_version`, the errno of that command.
 */
export function grantTableOp(ctx: HypercallContext, cmd: number, argVa: number, count: number): number {
  if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) return -XEN_ERRNO.EINVAL;
  if (!Number.isInteger(cmd) || cmd < 0 || cmd > 0xffffffff) return -XEN_ERRNO.ENOSYS;
  // Xen's continuation bits above the command are only for cache_flush, which pvkit lacks.
  if (cmd > GNTTABOP_CMD_MASK) return cmd % (GNTTABOP_CMD_MASK + 1) === GNTTABOP.cache_flush ? -XEN_ERRNO.ENOSYS : -XEN_ERRNO.EINVAL;
  const { hv } = ctx;
  switch (cmd) {
    case GNTTABOP.map_grant_ref:
      return eachOp(ctx, argVa, count, gnttab_map_grant_ref, true, (op) => mapOne(ctx, op));
    case GNTTABOP.unmap_grant_ref: {
      const rc = eachOp(ctx, argVa, count, gnttab_unmap_grant_ref, false, (op) => unmapOne(ctx, op));
      hv.reap(); // a dying granter goes once its last mapped page is released
      return rc;
    }
    case GNTTABOP.setup_table:
      return setupTable(ctx, argVa, count);
    case GNTTABOP.transfer:
      return eachOp(ctx, argVa, count, gnttab_transfer, false, (op) => {
        const F = gnttab_transfer.fields;
        traceOp(hv, "transfer", ctx.domain, F.domid.get(op, 0), F.ref.get(op, 0), GNTST.general_error);
        return GNTST.general_error;
      });
    case GNTTABOP.copy:
      return eachOp(ctx, argVa, count, gnttab_copy, false, (op) => copyOne(ctx, op));
    case GNTTABOP.query_size:
      return querySize(ctx, argVa, count);
    case GNTTABOP.set_version:
      return setVersion(ctx, argVa);
    case GNTTABOP.get_status_frames:
      return getStatusFrames(ctx, argVa, count);
    case GNTTABOP.get_version:
      return getVersion(ctx, argVa);
    case GNTTABOP.swap_grant_ref:
      return eachOp(ctx, argVa, count, gnttab_swap_grant_ref, false, (op) => swapOne(ctx, op));
    default:
      return -XEN_ERRNO.ENOSYS;
  }
}

/**
 * Releases the grant state of a dying `d` (Xen's `gnttab_release_mappings`
 * and the release of its table): undoes every mapping `d` holds of others'
 * grants (its address-space entry, the frame and type references, the
 * granter's pins and flags), then gives back its grant-table frames. Pages of
 * `d` that others still map stay allocated by those mappings; the caller
 * reaps `d` once they are gone.
 */
export function grantDestroy(hv: Hypervisor, d: Domain): void {
  const gt = hv.grants.get(d);
  if (gt === undefined) return;
  for (const [handle, e] of [...gt.maptrack]) undoMapping(hv, gt, handle, e);
  gt.release();
}

/**
 * Checks the grant state of every domain; returns each violation as a sentence.
 *
 * - each grant-table frame is typed `grant_table` with a type count, and a
 *   released table has none;
 * - each maptrack entry's mapping is installed in its grantee's address space
 *   with the same frame and access, its granter still exists, and the
 *   granter's active entry is pinned by that grantee for that frame;
 * - a writable mapping holding a type reference finds the frame typed
 *   `writable` with at least that many type references;
 * - each active entry's pins are exactly the maptrack entries that use it;
 * - while the granter's table exists, its entry has `GTF_reading` (and
 *   `GTF_writing` for a writable mapping) set and names the grantee. A granter
 *   may scribble over its own entries, breaking this last rule only for
 *   itself; guests that follow the protocol never do.
 */
export function grantInvariants(hv: Hypervisor): string[] {
  const problems: string[] = [];
  const m = hv.machine;
  const pins = new Map<GrantTable, Map<number, { readers: number; writers: number }>>();
  const writableTypeRefs = new Map<number, number>();
  for (const d of hv.domains.values()) {
    const gt = hv.grants.get(d);
    if (gt === undefined) {
      problems.push(`domain ${d.domid}: no grant table`);
      continue;
    }
    if (gt.released && gt.frames.length > 0) problems.push(`domain ${d.domid}: released grant table still holds ${gt.frames.length} frames`);
    for (const [i, mfn] of gt.frames.entries()) {
      if (m.type[mfn] !== PageType.grant_table || m.typeCount[mfn]! < 1) problems.push(`domain ${d.domid}: grant frame ${i} (mfn ${mfn}) has type ${m.type[mfn]} count ${m.typeCount[mfn]}`);
    }
    const vpns = new Set<number>();
    for (const [handle, e] of gt.maptrack) {
      const what = `domain ${d.domid}: grant handle ${handle} (d${e.granter.domid} ref ${e.ref})`;
      if (vpns.has(e.vpn)) problems.push(`${what} shares va page ${e.vpn} with another handle`);
      vpns.add(e.vpn);
      const map = d.mappings.get(e.vpn);
      if (map !== e.mapping || map.mfn !== e.mfn || map.writable === e.readonly) problems.push(`${what}: va page ${e.vpn} does not hold its mapping of frame ${e.mfn}`);
      if (!hv.domains.has(e.granter.domid)) problems.push(`${what}: granter no longer exists`);
      const rgt = hv.grants.get(e.granter);
      if (rgt === undefined) continue;
      const act = rgt.active.get(e.ref);
      if (act === undefined || act.domid !== d.domid || act.mfn !== e.mfn) problems.push(`${what}: granter's active entry does not match`);
      let perRef = pins.get(rgt);
      if (perRef === undefined) pins.set(rgt, (perRef = new Map()));
      const count = perRef.get(e.ref) ?? { readers: 0, writers: 0 };
      if (e.readonly) count.readers++;
      else count.writers++;
      perRef.set(e.ref, count);
      if (e.typeRef) writableTypeRefs.set(e.mfn, (writableTypeRefs.get(e.mfn) ?? 0) + 1);
      if (!rgt.released) {
        const entry = rgt.entry(e.ref);
        const need = GTF.reading | (e.readonly ? 0 : GTF.writing);
        if (entry === undefined || (entry.flags & need) !== need || entry.domid !== d.domid) {
          problems.push(`${what}: granter's entry has flags 0x${entry?.flags.toString(16)} domid ${entry?.domid}, expected GTF_reading${e.readonly ? "" : "|GTF_writing"} for d${d.domid}`);
        }
      }
    }
  }
  for (const [mfn, n] of writableTypeRefs) {
    if (m.type[mfn] !== PageType.writable || m.typeCount[mfn]! < n) problems.push(`frame ${mfn}: ${n} writable grant mappings but type ${m.type[mfn]} count ${m.typeCount[mfn]}`);
  }
  for (const d of hv.domains.values()) {
    const gt = hv.grants.get(d);
    if (gt === undefined) continue;
    for (const [ref, act] of gt.active) {
      const c = pins.get(gt)?.get(ref) ?? { readers: 0, writers: 0 };
      if (c.readers !== act.readers || c.writers !== act.writers) {
        problems.push(`domain ${d.domid}: grant ${ref} pinned ${act.readers} read-only + ${act.writers} writable, but mapped ${c.readers} + ${c.writers}`);
      }
    }
  }
  return problems;
}
