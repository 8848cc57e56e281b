/**
 * A domain's P2M: its pseudo-physical to machine frame map.
 *
 * The pseudo-physical space is large ({@link MAX_PFN} pages) and a domain
 * uses little of it, often far apart (RAM from pfn 0, a mapping near the
 * top). So, like Xen's multi-level p2m, the map is two-level: a leaf of
 * {@link P2M_LEAF_ENTRIES} entries exists only where some pfn in its range is
 * populated, and goes away when its last entry does. Populating one high pfn
 * costs one 4 KiB leaf, and walking the map visits only populated entries.
 *
 * @module
 */

/** P2M entry of a pfn with no frame. */
export const INVALID_MFN = -1;

/** The pseudo-physical space of a domain: pfns below 2^24 (64 GiB). */
export const MAX_PFN = 1 << 24;

/** Entries in one leaf of the P2M: 1024 (pfn bits 0..9); the upper pfn bits pick the leaf. */
export const P2M_LEAF_ENTRIES = 1024;

const LEAF_SHIFT = Math.log2(P2M_LEAF_ENTRIES);
const LEAF_MASK = P2M_LEAF_ENTRIES - 1;

/** One leaf: its entries and how many of them are populated. */
interface Leaf {
  readonly mfns: Int32Array;
  used: number;
}

/** A sparse pfn → mfn map over pfns `0 .. MAX_PFN - 1`. */
export class P2m {
  private readonly leaves = new Map<number, Leaf>();
  private populated = 0;

  /** Number of populated pfns. */
  get count(): number {
    return this.populated;
  }

  /** Number of leaves allocated (each {@link P2M_LEAF_ENTRIES} entries). */
  get leafCount(): number {
    return this.leaves.size;
  }

  /** The mfn at `pfn`, or undefined where nothing is populated (or `pfn` is not a pfn). */
  get(pfn: number): number | undefined {
    if (!isPfn(pfn)) return undefined;
    const mfn = this.leaves.get(pfn >>> LEAF_SHIFT)?.mfns[pfn & LEAF_MASK];
    return mfn === undefined || mfn === INVALID_MFN ? undefined : mfn;
  }

  /**
   * Sets `pfn` to `mfn`, allocating its leaf if needed.
   * @throws RangeError for a pfn outside the pseudo-physical space or an invalid mfn
   */
  set(pfn: number, mfn: number): void {
    if (!isPfn(pfn)) throw new RangeError(`pfn ${pfn} is outside the pseudo-physical space`);
    if (!Number.isInteger(mfn) || mfn < 0) throw new RangeError(`mfn ${mfn} is not a machine frame`);
    const key = pfn >>> LEAF_SHIFT;
    let leaf = this.leaves.get(key);
    if (leaf === undefined) this.leaves.set(key, (leaf = { mfns: new Int32Array(P2M_LEAF_ENTRIES).fill(INVALID_MFN), used: 0 }));
    const i = pfn & LEAF_MASK;
    if (leaf.mfns[i] === INVALID_MFN) {
      leaf.used++;
      this.populated++;
    }
    leaf.mfns[i] = mfn;
  }

  /** Clears `pfn`, freeing its leaf when that was the leaf's last entry. @returns false if nothing was there. */
  delete(pfn: number): boolean {
    if (!isPfn(pfn)) return false;
    const key = pfn >>> LEAF_SHIFT;
    const leaf = this.leaves.get(key);
    const i = pfn & LEAF_MASK;
    if (leaf === undefined || leaf.mfns[i] === INVALID_MFN) return false;
    leaf.mfns[i] = INVALID_MFN;
    this.populated--;
    if (--leaf.used === 0) this.leaves.delete(key);
    return true;
  }

  /**
   * Calls `fn(mfn, pfn)` for every populated pfn, in ascending pfn order.
   * `fn` may delete the entry it is given.
   */
  forEach(fn: (mfn: number, pfn: number) => void): void {
    for (const key of [...this.leaves.keys()].sort((a, b) => a - b)) {
      const { mfns } = this.leaves.get(key)!;
      for (let i = 0; i < P2M_LEAF_ENTRIES; i++) {
        const mfn = mfns[i]!;
        if (mfn !== INVALID_MFN) fn(mfn, (key << LEAF_SHIFT) | i);
      }
    }
  }

  /** The highest populated pfn, or undefined when none is. */
  highest(): number | undefined {
    let top: number | undefined;
    for (const [key, { mfns }] of this.leaves) {
      if (top !== undefined && key < top >>> LEAF_SHIFT) continue;
      for (let i = LEAF_MASK; i >= 0; i--) {
        if (mfns[i] !== INVALID_MFN) {
          top = Math.max(top ?? 0, (key << LEAF_SHIFT) | i);
          break;
        }
      }
    }
    return top;
  }
}

/** True for a whole number below {@link MAX_PFN}. */
function isPfn(pfn: number): boolean {
  return Number.isInteger(pfn) && pfn >= 0 && pfn < MAX_PFN;
}
