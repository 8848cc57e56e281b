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

/** Pages of RAM handed out one at a time, and the mapping area's virtual pages. */
export class Memory {
  private readonly free: number[] = [];
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
    if (pfn < this.firstFreePfn || pfn >= this.nrPages || this.free.includes(pfn)) throw new Error(`freeing pfn ${pfn}, which was not allocated`);
    this.free.push(pfn);
  }

  /** The machine frame behind `pfn`, from the P2M list. */
  mfnOf(pfn: number): number {
    return Number(this.memory.page(this.p2mListVa + pfn * 8, "r").getBigUint64((this.p2mListVa + pfn * 8) % PAGE_SIZE, true));
  }

  /** The pfn backed by machine frame `mfn`, or undefined (a search of the P2M list). */
  pfnOf(mfn: number): number | undefined {
    for (let pfn = 0; pfn < this.nrPages; pfn++) if (this.mfnOf(pfn) === mfn) return pfn;
    return undefined;
  }

  /** Records that `pfn` is now backed by `mfn` (after populating it), or by nothing (`-1`, after releasing it). */
  setMfn(pfn: number, mfn: number): void {
    const va = this.p2mListVa + pfn * 8;
    this.memory.page(va).setBigUint64(va % PAGE_SIZE, BigInt.asUintN(64, BigInt(mfn)), true);
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
