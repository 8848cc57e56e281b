/**
 * The kernel's memory: its pages, its P2M list, and virtual space for
 * mappings.
 *
 * A PV domain's RAM is pfns `0 .. nr_pages`, directly mapped (virtual page n
 * is pfn n). The domain builder used the first of them for the bootstrap
 * region; the rest, from `pt_base + nr_pt_frames` pages on, are free for
 * the kernel to allocate. The P2M list the builder left at
 * `start_info.mfn_list` says which machine frame backs each pfn: a PV guest
 * hands out mfns, not pfns, when it grants a page.
 *
 * Pages that are not RAM — shared_info, grant-table frames, other domains'
 * pages mapped by grant — are mapped into a separate virtual area above the
 * RAM (from {@link MAPPING_AREA_VPN}), where a balloon can never populate.
 *
 * @module
 */
import { PAGE_SIZE, type GuestMemory } from "@pvkit/abi";

/** First virtual page of the mapping area: 4 GiB, well above any test domain's RAM. */
export const MAPPING_AREA_VPN = 0x10_0000;

/** A P2M entry with no frame (Xen's `INVALID_MFN`, all ones in the u64 list). */
export const INVALID_MFN = -1;
const INVALID_MFN_U64 = 0xffff_ffff_ffff_ffffn;

/** Pages of RAM handed out one at a time, and the mapping area's virtual pages. */
export class Memory {
  private readonly free: number[] = [];
  /** pfns past `nr_pages` populated since boot, and their mfns. */
  private readonly extra = new Map<number, number>();
  private readonly freeMapping: number[] = [];
  private nextMappingVpn = MAPPING_AREA_VPN;

  /**
   * @param memory the guest's address space
   * @param nrPages `start_info.nr_pages`
   * @param p2mListVa `start_info.mfn_list`
   * @param firstFreePfn the first pfn after the bootstrap region
   */
  constructor(
    readonly memory: GuestMemory,
    readonly nrPages: number,
    private readonly p2mListVa: number,
    readonly firstFreePfn: number,
  ) {
    // Hand out low pages first: push in reverse so pop() gives the lowest.
    for (let pfn = nrPages - 1; pfn >= firstFreePfn; pfn--) this.free.push(pfn);
  }

  /** Pages not yet allocated. */
  get freePages(): number {
    return this.free.length;
  }

  /** Allocates a zeroed page; returns its pfn, or undefined when none is left. */
  allocPage(): number | undefined {
    const pfn = this.free.pop();
    if (pfn !== undefined) this.memory.write(pfn * PAGE_SIZE, new Uint8Array(PAGE_SIZE));
    return pfn;
  }

  /** Returns a page to the allocator. */
  freePage(pfn: number): void {
    const owned = pfn >= this.firstFreePfn && (pfn < this.nrPages || this.extra.has(pfn));
    if (!owned || this.free.includes(pfn)) throw new Error(`freeing pfn ${pfn}, which was not allocated`);
    this.free.push(pfn);
  }

  /** The machine frame behind `pfn`, from the P2M list (or, past `nr_pages`, from the pages the kernel populated since). */
  mfnOf(pfn: number): number {
    if (pfn >= this.nrPages) return this.extra.get(pfn) ?? INVALID_MFN;
    const mfn = this.memory.page(this.p2mListVa + pfn * 8, "r").getBigUint64((this.p2mListVa + pfn * 8) % PAGE_SIZE, true);
    return mfn === INVALID_MFN_U64 ? INVALID_MFN : Number(mfn);
  }

  /** The pfn backed by machine frame `mfn`, or undefined (a search of the P2M list). */
  pfnOf(mfn: number): number | undefined {
    for (let pfn = 0; pfn < this.nrPages; pfn++) if (this.mfnOf(pfn) === mfn) return pfn;
    for (const [pfn, m] of this.extra) if (m === mfn) return pfn;
    return undefined;
  }

  /** Records that `pfn` is now backed by `mfn` (after populating it), or by nothing ({@link INVALID_MFN}, after releasing it). */
  setMfn(pfn: number, mfn: number): void {
    if (pfn >= this.nrPages) {
      if (mfn === INVALID_MFN) this.extra.delete(pfn);
      else this.extra.set(pfn, mfn);
      return;
    }
    const va = this.p2mListVa + pfn * 8;
    this.memory.page(va).setBigUint64(va % PAGE_SIZE, mfn === INVALID_MFN ? INVALID_MFN_U64 : BigInt(mfn), true);
  }

  /** The lowest pfns at or above `nr_pages` not populated yet: where the reservation can grow. */
  unpopulatedPfns(count: number): number[] {
    const out: number[] = [];
    for (let pfn = this.nrPages; out.length < count; pfn++) if (!this.extra.has(pfn)) out.push(pfn);
    return out;
  }

  /** Adds populated pages to the allocator. */
  addPages(pfns: readonly number[]): void {
    for (const pfn of [...pfns].reverse()) this.free.push(pfn);
  }

  /** Takes free pages out of the allocator (to give them back to the hypervisor); false if any is not free. */
  takeFree(pfns: readonly number[]): boolean {
    if (!pfns.every((p) => this.free.includes(p))) return false;
    for (const p of pfns) this.free.splice(this.free.indexOf(p), 1);
    return true;
  }

  /** Reserves a virtual page in the mapping area; returns its virtual address. */
  allocMappingVa(): number {
    return (this.freeMapping.pop() ?? this.nextMappingVpn++) * PAGE_SIZE;
  }

  /** Returns a virtual page of the mapping area once nothing is mapped there. */
  freeMappingVa(va: number): void {
    this.freeMapping.push(va / PAGE_SIZE);
  }
}
