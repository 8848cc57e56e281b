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
 *   entry, each foreign mapping of it).
 *
 * A frame is free exactly when its reference count is 0; the allocator hands
 * out free frames in a fixed order, so a run is reproducible.
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

/** The host's memory: frames and the frame table. */
export class MachineMemory {
  /** Number of machine frames. */
  readonly frames: number;
  /** The whole of machine memory. */
  readonly buffer: SharedArrayBuffer;
  /** Every byte of machine memory. */
  readonly bytes: Uint8Array;
  /** Owner domid of each frame, or {@link FRAME_FREE}. */
  readonly owner: Int32Array;
  /** {@link PageType} of each frame. */
  readonly type: Uint8Array;
  /** Type references of each frame. */
  readonly typeCount: Uint32Array;
  /** General references of each frame; 0 means free. */
  readonly refCount: Uint32Array;
  /** Free frames, a stack: the next frame handed out is `freeList[freeCount - 1]`. */
  private readonly freeList: Int32Array;
  private freeCount: number;
  private readonly owned = new Map<number, number>();

  /** Creates `frames` frames of zeroed machine memory, all free. */
  constructor(frames: number) {
    if (!Number.isInteger(frames) || frames < 1) throw new RangeError(`machine memory needs a positive whole number of frames, not ${frames}`);
    this.frames = frames;
    this.buffer = new SharedArrayBuffer(frames * PAGE_SIZE);
    this.bytes = new Uint8Array(this.buffer);
    this.owner = new Int32Array(frames).fill(FRAME_FREE);
    this.type = new Uint8Array(frames);
    this.typeCount = new Uint32Array(frames);
    this.refCount = new Uint32Array(frames);
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
   * Allocates a zeroed frame to `owner` with one reference (the owner's).
   * @returns its mfn, or undefined when memory is exhausted.
   */
  alloc(owner: number): number | undefined {
    if (this.freeCount === 0) return undefined;
    const mfn = this.freeList[--this.freeCount]!;
    this.owner[mfn] = owner;
    this.owned.set(owner, (this.owned.get(owner) ?? 0) + 1);
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
    const left = this.owned.get(owner)! - 1;
    if (left === 0) this.owned.delete(owner);
    else this.owned.set(owner, left);
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

  /** The frames owned by `domid` (a scan of the frame table). */
  framesOf(domid: number): number[] {
    const out: number[] = [];
    for (let mfn = 0; mfn < this.frames; mfn++) if (this.owner[mfn] === domid) out.push(mfn);
    return out;
  }
}
