/**
 * Grant tables, guest side: sharing this domain's pages with others, and
 * mapping pages others share with it.
 *
 * To grant a page, the kernel takes a free grant reference and writes the
 * entry in its grant table: the grantee's domid and the page's machine frame
 * first, the flags (`GTF_permit_access`, maybe `GTF_readonly`) last, so the
 * hypervisor never sees a half-written entry. The reference travels to the
 * grantee, usually through XenStore, which maps it with
 * `GNTTABOP_map_grant_ref` or copies through it with `GNTTABOP_copy`.
 *
 * Ending access is a compare-and-exchange of the flags to 0 that fails while
 * the hypervisor has `GTF_reading` or `GTF_writing` set: while a peer still
 * maps the page, {@link Grants.endAccess} refuses, and the page must not be
 * reused. References 0 to 7 are reserved (`GNTTAB_NR_RESERVED_ENTRIES`; 0
 * and 1 are the console and XenStore pages the builder granted).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  DOMID,
  GNTCOPY,
  GNTMAP,
  GNTST,
  GNTTABOP,
  GNTTAB_NR,
  GTF,
  HYPERVISOR,
  PAGE_SIZE,
  XENMAPSPACE,
  XENMEM,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  grant_entry_v1,
  xen_add_to_physmap,
  type StructValue,
} from "@pvkit/abi";
import { grantError, xenError, type Hypercaller, type XenError } from "./hypercall.js";
import type { Memory } from "./memory.js";

/** Entries in one grant-table frame (v1: 8 bytes each). */
export const ENTRIES_PER_FRAME = PAGE_SIZE / grant_entry_v1.size;

/** A page of another domain mapped here. */
export interface GrantMapping {
  /** Where it is mapped. */
  readonly va: number;
  /** The hypervisor's handle, needed to unmap. */
  readonly handle: number;
  /** The granter and reference. */
  readonly domid: number;
  /** The grant reference mapped. */
  readonly ref: number;
}

/** One side of a grant copy: a grant reference of another domain, or a local page by pfn. */
export type CopyEnd = { readonly domid: number; readonly ref: number; readonly offset: number } | { readonly pfn: number; readonly offset: number };

/** The guest's grant table and its mappings of others' grants. */
export class Grants {
  private readonly frames: Uint16Array[] = [];
  private readonly views: DataView[] = [];
  private readonly free: number[] = [];

  /** Uses the hypercall entry, and `memory` for pfns and mapping addresses. */
  constructor(
    private readonly hc: Hypercaller,
    private readonly mem: Memory,
  ) {}

  /** Maps grant-table frame `idx` (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`) and frees its references. */
  private addFrame(): E.Either<XenError, void> {
    const idx = this.frames.length;
    const va = this.mem.allocMappingVa();
    const rc = this.hc.args.frame((a) =>
      this.hc.hypercall(HYPERVISOR.memory_op, XENMEM.add_to_physmap, a.put(xen_add_to_physmap, { domid: DOMID.SELF, space: XENMAPSPACE.grant_table, idx: BigInt(idx), gpfn: BigInt(va / PAGE_SIZE) })),
    );
    if (rc < 0) {
      this.mem.freeMappingVa(va);
      return E.left(xenError("XENMEM_add_to_physmap(grant_table)", rc));
    }
    const view = this.mem.memory.page(va);
    this.views.push(view);
    this.frames.push(new Uint16Array(view.buffer, view.byteOffset, PAGE_SIZE / 2));
    const first = idx === 0 ? GNTTAB_NR.RESERVED_ENTRIES : idx * ENTRIES_PER_FRAME;
    for (let ref = (idx + 1) * ENTRIES_PER_FRAME - 1; ref >= first; ref--) this.free.push(ref);
    return E.right(undefined);
  }

  /**
   * Grants `domid` access to the page backed by `mfn`; returns the reference.
   * Grows the table by a frame when it runs out.
   */
  grantAccess(domid: number, mfn: number, readonly = false): E.Either<XenError, number> {
    if (this.free.length === 0) {
      const grown = this.addFrame();
      if (E.isLeft(grown)) return grown;
    }
    const ref = this.free.pop()!;
    this.writeEntry(ref, domid, mfn, GTF.permit_access | (readonly ? GTF.readonly : 0));
    return E.right(ref);
  }

  /** Writes entry `ref`: domid and frame, then the flags last. Used for the reserved references too. */
  writeEntry(ref: number, domid: number, mfn: number, flags: number): void {
    const view = this.views[Math.floor(ref / ENTRIES_PER_FRAME)];
    if (view === undefined) throw new Error(`grant reference ${ref} is beyond the mapped table`);
    const base = (ref % ENTRIES_PER_FRAME) * grant_entry_v1.size;
    grant_entry_v1.fields.domid.set(view, base, domid);
    grant_entry_v1.fields.frame.set(view, base, mfn);
    Atomics.store(this.frames[Math.floor(ref / ENTRIES_PER_FRAME)]!, base / 2, flags);
  }

  /** The flags of entry `ref` as the hypervisor left them (`GTF_reading`/`GTF_writing` while mapped). */
  flags(ref: number): number {
    return Atomics.load(this.frames[Math.floor(ref / ENTRIES_PER_FRAME)]!, ((ref % ENTRIES_PER_FRAME) * grant_entry_v1.size) / 2);
  }

  /**
   * Ends access through `ref` and frees it: a compare-and-exchange of the
   * flags to 0. While the grantee still maps the page (`GTF_reading` or
   * `GTF_writing` set) it fails, the reference stays granted, and the page
   * must not be reused. A reference not granted (or already ended) is refused
   * with `GNTST_bad_gntref`, so it is never freed twice.
   */
  endAccess(ref: number): E.Either<XenError, void> {
    const table = this.frames[Math.floor(ref / ENTRIES_PER_FRAME)];
    if (table === undefined || ref < GNTTAB_NR.RESERVED_ENTRIES) return E.left(grantError("end_foreign_access", GNTST.bad_gntref));
    const at = ((ref % ENTRIES_PER_FRAME) * grant_entry_v1.size) / 2;
    for (;;) {
      const flags = Atomics.load(table, at);
      // Not granted (never, or already ended): it is on the free list, and must not go there twice.
      if ((flags & GTF.type_mask) === GTF.invalid) return E.left(grantError("end_foreign_access", GNTST.bad_gntref));
      if (flags & (GTF.reading | GTF.writing)) return E.left({ ...grantError("end_foreign_access", GNTST.general_error), message: `end_foreign_access: grant ${ref} is still mapped by its grantee` });
      if (Atomics.compareExchange(table, at, flags, 0) === flags) break;
    }
    this.free.push(ref);
    return E.right(undefined);
  }

  /** Maps `ref` of `domid` at a fresh virtual page (`GNTTABOP_map_grant_ref`). */
  map(domid: number, ref: number, readonly = false): E.Either<XenError, GrantMapping> {
    const va = this.mem.allocMappingVa();
    const r = this.hc.args.frame((a) => {
      const op = a.put(gnttab_map_grant_ref, { host_addr: BigInt(va), flags: GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0), ref, dom: domid });
      const rc = this.hc.hypercall(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, op, 1);
      const out = a.get(gnttab_map_grant_ref, op);
      if (rc < 0) return E.left(xenError("GNTTABOP_map_grant_ref", rc));
      if (out.status !== GNTST.okay) return E.left(grantError("GNTTABOP_map_grant_ref", out.status));
      return E.right({ va, handle: out.handle, domid, ref });
    });
    if (E.isLeft(r)) this.mem.freeMappingVa(va);
    return r;
  }

  /** Unmaps what {@link Grants.map} mapped (`GNTTABOP_unmap_grant_ref`). */
  unmap(m: GrantMapping): E.Either<XenError, void> {
    const r = this.hc.args.frame((a) => {
      const op = a.put(gnttab_unmap_grant_ref, { host_addr: BigInt(m.va), handle: m.handle });
      const rc = this.hc.hypercall(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, op, 1);
      if (rc < 0) return E.left(xenError("GNTTABOP_unmap_grant_ref", rc));
      const status = a.get(gnttab_unmap_grant_ref, op).status;
      return status === GNTST.okay ? E.right(undefined) : E.left(grantError("GNTTABOP_unmap_grant_ref", status));
    });
    if (E.isRight(r)) this.mem.freeMappingVa(m.va);
    return r;
  }

  /** Copies `len` bytes between pages by grant (`GNTTABOP_copy`), without mapping either. */
  copy(source: CopyEnd, dest: CopyEnd, len: number): E.Either<XenError, void> {
    const end = (e: CopyEnd) =>
      "ref" in e ? { ref: e.ref, domid: e.domid, offset: e.offset } : { gmfn: BigInt(this.mem.mfnOf(e.pfn)), domid: DOMID.SELF, offset: e.offset };
    const flags = ("ref" in source ? GNTCOPY.source_gref : 0) | ("ref" in dest ? GNTCOPY.dest_gref : 0);
    return this.hc.args.frame((a) => {
      // Each end sets either u.ref or u.gmfn (a union); encodeStruct writes only what is given.
      const op = a.put(gnttab_copy, { source: end(source), dest: end(dest), len, flags } as Partial<StructValue<typeof gnttab_copy>>);
      const rc = this.hc.hypercall(HYPERVISOR.grant_table_op, GNTTABOP.copy, op, 1);
      if (rc < 0) return E.left(xenError("GNTTABOP_copy", rc));
      const status = a.get(gnttab_copy, op).status;
      return status === GNTST.okay ? E.right(undefined) : E.left(grantError("GNTTABOP_copy", status));
    });
  }

  /** Maps the first frame (so the reserved references exist); call once at boot. */
  init(): E.Either<XenError, void> {
    return this.frames.length > 0 ? E.right(undefined) : this.addFrame();
  }
}
