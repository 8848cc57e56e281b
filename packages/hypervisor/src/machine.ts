/**
 * Machine memory and the frame table.
 *
 * All of the host's memory is one `SharedArrayBuffer` cut into 4 KiB machine
 * frames, numbered by machine frame number (`mfn`). Beside it, the frame
 * table records for every frame, in typed arrays rather than objects:
 *
 * - `owner`: the domid that owns it, or {@link FRAME_FREE};
 * - `type`: what it is used as ({@link PageType}: a plain writable page, the
 *   domain's shared_info, a grant-table frame, a page table level);
 * - `typeCount`: how many uses pin that type;
 * - `refCount`: how many references keep the frame allocated (its owner's P2M
 *   entry, each foreign mapping of it);
 * - `xenheap`: whether it is a page the hypervisor shares with its owner
 *   (shared_info, a grant-table frame) rather than the owner's RAM.
 *
 * A frame is free exactly when its reference count is 0; the allocator hands
 * out free frames in a fixed order, so a run is reproducible.
 *
 * A domain's `tot_pages` is the number of RAM frames it owns
 * ({@link MachineMemory.ramOwnedBy}), as in Xen, where `tot_pages` drops only
 * when a page is freed: a page the domain gave back but another mapping still
 * holds keeps counting against its owner until that mapping goes. Xenheap
 * frames, as in Xen, are not counted.
 *
 * @module
 */
import { PAGE_SIZE } from "@pvkit/abi";

/** `owner` of a frame nobody owns. */
export const FRAME_FREE = -1;

/** What a frame is used as (Xen's `PGT_*` page types, the ones pvkit uses). */
export const PageType = {
  /** Not typed: free, or an ordinary page not currently mapped writable. */
  none: 0,
  /** An ordinary page mapped writable. */
  writable: 1,
  /** The domain's shared_info page. */
  shared_info: 2,
  /** A frame of the domain's grant table. */
  grant_table: 3,
  /** Page table levels, for the PV MMU. */
  l1: 4,
  l2: 5,
  l3: 6,
  l4: 7,
} as const;

/** A {@link PageType} value. */
export type PageType = (typeof PageType)[keyof typeof PageType];

/**
 * What a frame is allocated as: the owner's `ram` (Xen's domheap pages,
 * counted in `tot_pages`), or a `xenheap` page the hypervisor shares with the
 * owner (shared_info, grant-table frames), which is not.
 */
export type FrameKind = "ram" | "xenheap";

// Atomics on machine memory (event channel bitmaps, grant entries) use the
// host's byte order, while the ABI is little-endian x86_64.
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error("pvkit needs a little-endian host");

/** The host's memory: frames and the frame table. */
export class MachineMemory {
  /** Number of machine frames. */
  readonly frames: number;
  /** The whole of machine memory. */
  readonly buffer: SharedArrayBuffer;
  /** Every byte of machine memory. */
  readonly bytes: Uint8Array;
  /** Machine memory as 32-bit words, for `Atomics` on shared bitmaps and grant entries. */
  readonly words: Int32Array;
  /** Owner domid of each frame, or {@link FRAME_FREE}. */
  readonly owner: Int32Array;
  /** {@link PageType} of each frame. */
  readonly type: Uint8Array;
  /** Type references of each frame. */
  readonly typeCount: Uint32Array;
  /** General references of each frame; 0 means free. */
  readonly refCount: Uint32Array;
  /** 1 for a frame allocated as `xenheap` ({@link FrameKind}), 0 for RAM or a free frame. */
  readonly xenheap: Uint8Array;
  /** Free frames, a stack: the next frame handed out is `freeList[freeCount - 1]`. */
  private readonly freeList: Int32Array;
  private freeCount: number;
  private readonly owned = new Map<number, number>();
  private readonly ram = new Map<number, number>();

  /** Creates `frames` frames of zeroed machine memory, all free. */
  constructor(frames: number) {
    if (!Number.isInteger(frames) || frames < 1) throw new RangeError(`machine memory needs a positive whole number of frames, not ${frames}`);
    this.frames = frames;
    this.buffer = new SharedArrayBuffer(frames * PAGE_SIZE);
    this.bytes = new Uint8Array(this.buffer);
    this.words = new Int32Array(this.buffer);
    this.owner = new Int32Array(frames).fill(FRAME_FREE);
    this.type = new Uint8Array(frames);
    this.typeCount = new Uint32Array(frames);
    this.refCount = new Uint32Array(frames);
    this.xenheap = new Uint8Array(frames);
    this.freeList = new Int32Array(frames);
    // Hand out low frames first: frame 0 is on top of the stack.
    for (let i = 0; i < frames; i++) this.freeList[i] = frames - 1 - i;
    this.freeCount = frames;
  }

  /** Frames not allocated. */
  get freeFrames(): number {
    return this.freeCount;
  }

  /** True if `mfn` names a frame of this machine. */
  valid(mfn: number): boolean {
    return Number.isInteger(mfn) && mfn >= 0 && mfn < this.frames;
  }

  /**
   * Allocates a zeroed frame to `owner` with one reference (the owner's), as
   * its RAM or as a xenheap page.
   * @returns its mfn, or undefined when memory is exhausted.
   */
  alloc(owner: number, kind: FrameKind = "ram"): number | undefined {
    if (this.freeCount === 0) return undefined;
    const mfn = this.freeList[--this.freeCount]!;
    this.owner[mfn] = owner;
    count(this.owned, owner, 1);
    if (kind === "xenheap") this.xenheap[mfn] = 1;
    else count(this.ram, owner, 1);
    this.type[mfn] = PageType.none;
    this.typeCount[mfn] = 0;
    this.refCount[mfn] = 1;
    this.frameBytes(mfn).fill(0);
    return mfn;
  }

  /** Takes a reference on an allocated frame (a mapping of it). */
  get(mfn: number): void {
    if (this.refCount[mfn] === 0) throw new Error(`frame ${mfn} is free: no reference can be taken`);
    this.refCount[mfn]!++;
  }

  /**
   * Drops a reference; the last one frees the frame.
   * @returns true if the frame was freed.
   */
  put(mfn: number): boolean {
    if (this.refCount[mfn] === 0) throw new Error(`frame ${mfn} is already free`);
    if (--this.refCount[mfn]! > 0) return false;
    const owner = this.owner[mfn]!;
    count(this.owned, owner, -1);
    if (this.xenheap[mfn] === 0) count(this.ram, owner, -1);
    this.xenheap[mfn] = 0;
    this.owner[mfn] = FRAME_FREE;
    this.type[mfn] = PageType.none;
    this.typeCount[mfn] = 0;
    this.freeList[this.freeCount++] = mfn;
    return true;
  }

  /** The bytes of frame `mfn`. */
  frameBytes(mfn: number): Uint8Array {
    return this.bytes.subarray(mfn * PAGE_SIZE, (mfn + 1) * PAGE_SIZE);
  }

  /** A DataView of frame `mfn`, offset 0 at its first byte. */
  frameView(mfn: number): DataView {
    return new DataView(this.buffer, mfn * PAGE_SIZE, PAGE_SIZE);
  }

  /** How many frames `domid` owns. */
  ownedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  /** How many RAM frames `domid` owns: its `tot_pages`. */
  ramOwnedBy(domid: number): number {
    return this.ram.get(domid) ?? 0;
  }

  /** The frames owned by `domid` (a scan of the frame table). */
  framesOf(domid: number): number[] {
    const out: number[] = [];
    for (let mfn = 0; mfn < this.frames; mfn++) if (this.owner[mfn] === domid) out.push(mfn);
    return out;
  }
}

/** Adds `delta` to `owner`'s entry of a per-owner counter, dropping entries that reach 0. */
function count(counts: Map<number, number>, owner: number, delta: number): void {
  const n = (counts.get(owner) ?? 0) + delta;
  if (n === 0) counts.delete(owner);
  else counts.set(owner, n);
}
