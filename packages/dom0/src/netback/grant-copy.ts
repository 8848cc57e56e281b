/**
 * How netback moves packet bytes: `GNTTABOP_copy`, in batches, through a few
 * bounce pages of its own — the way Linux's netback copies a frame's slots
 * out of the guest on transmit and into the guest's posted buffers on
 * receive (`feature-rx-copy`), without mapping any guest page.
 *
 * One hypercall carries every segment of a frame (at most
 * `XEN_NETIF_NR_SLOTS_MIN` of them, one bounce page each); each segment
 * gets its own `GNTST_*` status, so a bad grant reference spoils only the
 * frame that named it.
 *
 * @module
 */
import { DOMID, GNTCOPY, GNTST, GNTTABOP, HYPERVISOR, PAGE_SIZE, XEN_NETIF, encodeStruct, gnttab_copy, type StructValue, gnttab_copy_ptr } from "@pvkit/abi";
import type { Kernel } from "@pvkit/kernel";
import type { NetGrantSegment, VifIo } from "./datapath.js";

/** One side of a copy: `ref` or `gmfn` (a union in C), a domain and an offset. */
type CopySide = Partial<StructValue<typeof gnttab_copy_ptr>>;

/** One `struct gnttab_copy` to make. */
interface CopyOp {
  readonly source: CopySide;
  readonly dest: CopySide;
  readonly len: number;
  readonly flags: number;
}

/** Bounce pages, and batched grant copies through them. */
export class GrantCopier {
  /** The bounce pages (pfns), one per segment of a batch. */
  readonly pages: readonly number[];
  private released = false;

  /**
   * Allocates `pages` bounce pages from `k`'s memory.
   * @throws if the kernel has too few free pages
   */
  constructor(
    private readonly k: Kernel,
    pages: number = XEN_NETIF.NR_SLOTS_MIN,
  ) {
    const got: number[] = [];
    for (let i = 0; i < pages; i++) {
      const pfn = k.memory.allocPage();
      if (pfn === undefined) {
        for (const p of got) k.memory.freePage(p);
        throw new Error(`netback: no memory for ${pages} bounce pages`);
      }
      got.push(pfn);
    }
    this.pages = got;
  }

  /** The I/O of one vif whose frontend is domain `domid`. */
  io(domid: number): VifIo {
    return {
      readFrontend: (segs) => this.read(domid, segs),
      writeFrontend: (segs) => this.write(domid, segs),
    };
  }

  /** Copies each segment out of `domid`'s grants; each result is the bytes, or the copy's `GNTST_*` status. */
  read(domid: number, segs: readonly NetGrantSegment[]): (Uint8Array | number)[] {
    const out: (Uint8Array | number)[] = [];
    for (let first = 0; first < segs.length; first += this.pages.length) {
      const batch = segs.slice(first, first + this.pages.length);
      const status = this.batch(
        batch.map((s, i) => ({ source: { ref: s.gref, domid, offset: s.offset }, dest: { gmfn: BigInt(this.k.memory.mfnOf(this.pages[i]!)), domid: DOMID.SELF, offset: 0 }, len: s.len, flags: GNTCOPY.source_gref })),
      );
      batch.forEach((s, i) => out.push(status[i] === GNTST.okay ? this.k.memory.memory.read(this.pages[i]! * PAGE_SIZE, s.len) : status[i]!));
    }
    return out;
  }

  /** Copies each segment's data into `domid`'s grants; returns each copy's `GNTST_*` status. */
  write(domid: number, segs: readonly (NetGrantSegment & { readonly data: Uint8Array })[]): number[] {
    const out: number[] = [];
    for (let first = 0; first < segs.length; first += this.pages.length) {
      const batch = segs.slice(first, first + this.pages.length);
      batch.forEach((s, i) => this.k.memory.memory.write(this.pages[i]! * PAGE_SIZE, s.data.subarray(0, s.len)));
      out.push(
        ...this.batch(
          batch.map((s, i) => ({ source: { gmfn: BigInt(this.k.memory.mfnOf(this.pages[i]!)), domid: DOMID.SELF, offset: 0 }, dest: { ref: s.gref, domid, offset: s.offset }, len: s.len, flags: GNTCOPY.dest_gref })),
        ),
      );
    }
    return out;
  }

  /** One `GNTTABOP_copy` hypercall over contiguous ops; returns each op's status. */
  private batch(ops: readonly CopyOp[]): number[] {
    if (ops.length === 0) return [];
    if (this.released) return ops.map(() => GNTST.general_error);
    return this.k.args.frame((a) => {
      const bytes = new Uint8Array(ops.length * gnttab_copy.size);
      const view = new DataView(bytes.buffer);
      // Each side sets either u.ref or u.gmfn (a union); encodeStruct writes only the fields given.
      ops.forEach((op, i) => encodeStruct(gnttab_copy, view, i * gnttab_copy.size, op as Partial<StructValue<typeof gnttab_copy>>));
      const va = a.alloc(bytes.length);
      a.memory.write(va, bytes);
      const rc = this.k.hypercall(HYPERVISOR.grant_table_op, GNTTABOP.copy, va, ops.length);
      if (rc < 0) return ops.map(() => GNTST.general_error);
      const back = new DataView(a.memory.read(va, bytes.length).buffer);
      return ops.map((_, i) => gnttab_copy.fields.status.get(back, i * gnttab_copy.size));
    });
  }

  /** Gives the bounce pages back to the kernel. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const p of this.pages) this.k.memory.freePage(p);
  }
}
