/**
 * A test bed for hypervisor tests: a hypervisor with a privileged dom0 and
 * unprivileged domUs, each with RAM, and a way to pass hypercall arguments
 * the way a guest does, as structs in its own memory at virtual addresses.
 *
 * ```ts
 * const b = bed({ domUs: 2 });
 * const va = b.args(b.domU).put(evtchn_alloc_unbound, { dom: DOMID.SELF, remote_dom: 2 });
 * expect(b.call(b.domU, HYPERVISOR.event_channel_op, EVTCHNOP.alloc_unbound, va)).toBe(0);
 * const { port } = b.args(b.domU).get(evtchn_alloc_unbound, va);
 * ```
 */
import { afterEach, expect } from "vitest";
import { PAGE_SIZE, decodeStruct, encodeStruct, zeroStruct, type StructLayout, type StructValue } from "@pvkit/abi";
import { Hypervisor, checkInvariants, copyFromGuest, copyToGuest, type Domain } from "@pvkit/hypervisor";

/** Pages of RAM each test domain gets; the upper half is scratch space for arguments. */
export const BED_PAGES = 32;
const SCRATCH_PFN = 16;

/** Writes and reads hypercall arguments in one domain's memory, from its scratch pages. */
export class GuestArgs {
  private next: number;
  constructor(
    private readonly hv: Hypervisor,
    private readonly d: Domain,
    scratchPfn = SCRATCH_PFN,
  ) {
    this.next = scratchPfn * PAGE_SIZE;
  }

  /** Reserves `n` bytes (8-aligned, never crossing into unpopulated memory) and returns their virtual address. */
  alloc(n: number): number {
    const va = this.next;
    this.next += (n + 7) & ~7;
    if (this.next > BED_PAGES * PAGE_SIZE) throw new Error("test bed scratch space exhausted");
    return va;
  }

  /** Writes a zeroed struct with `values` set and returns its virtual address. */
  put<L extends StructLayout>(layout: L, values: Partial<StructValue<L>>, va = this.alloc(layout.size)): number {
    const view = new DataView(new ArrayBuffer(layout.size));
    zeroStruct(layout, view);
    encodeStruct(layout, view, 0, values);
    this.write(va, new Uint8Array(view.buffer));
    return va;
  }

  /** Writes an array of structs and returns the address of the first. */
  putArray<L extends StructLayout>(layout: L, items: readonly Partial<StructValue<L>>[]): number {
    const va = this.alloc(layout.size * items.length);
    items.forEach((it, i) => this.put(layout, it, va + i * layout.size));
    return va;
  }

  /** Reads a struct back. */
  get<L extends StructLayout>(layout: L, va: number): StructValue<L> {
    const bytes = copyFromGuest(this.hv.machine, this.d, va, layout.size);
    if (bytes === undefined) throw new Error(`test bed: nothing mapped at 0x${va.toString(16)}`);
    return decodeStruct(layout, new DataView(bytes.buffer));
  }

  /** Reads element `i` of an array written by {@link putArray}. */
  getAt<L extends StructLayout>(layout: L, va: number, i: number): StructValue<L> {
    return this.get(layout, va + i * layout.size);
  }

  /** Writes raw bytes. */
  write(va: number, bytes: Uint8Array): void {
    if (!copyToGuest(this.hv.machine, this.d, va, bytes)) throw new Error(`test bed: cannot write at 0x${va.toString(16)}`);
  }

  /** Reads raw bytes. */
  read(va: number, n: number): Uint8Array {
    const bytes = copyFromGuest(this.hv.machine, this.d, va, n);
    if (bytes === undefined) throw new Error(`test bed: cannot read at 0x${va.toString(16)}`);
    return bytes;
  }
}

/** What {@link bed} builds. */
export interface Bed {
  readonly hv: Hypervisor;
  /** Domain 0, privileged. */
  readonly dom0: Domain;
  /** Domain 1, unprivileged. */
  readonly domU: Domain;
  /** Every unprivileged domain, domids 1..n. */
  readonly domUs: readonly Domain[];
  /** `hv.hypercall` from vCPU 0 of `d`. */
  call(d: Domain, op: number, a1?: number, a2?: number, a3?: number, a4?: number, a5?: number): number;
  /** An argument writer for `d` (a fresh one each call restarts at the scratch pages). */
  args(d: Domain): GuestArgs;
}

/** Makes a domain with `pages` pages of RAM at pfns 0.., unpaused. */
export function makeDomain(hv: Hypervisor, domid: number, privileged: boolean, pages = BED_PAGES, maxVcpus = 2): Domain {
  const d = hv.createDomain({ maxPages: pages * 2, maxVcpus, privileged }, domid);
  if (typeof d === "number") throw new Error(`test bed: createDomain(${domid}) failed with ${d}`);
  for (let pfn = 0; pfn < pages; pfn++) if (d.populate(pfn) < 0) throw new Error("test bed: out of machine memory");
  hv.unpause(d);
  return d;
}

/** A virtual address nothing maps in a bed domain (its RAM is pfns 0..31). */
export const UNMAPPED = 100 * PAGE_SIZE;

const liveBeds: Bed[] = [];
// Every bed made in a test is checked by the invariant checker after the test, whatever it did.
afterEach(() => {
  for (const b of liveBeds.splice(0)) expectInvariants(b.hv);
});

/**
 * A hypervisor with dom0 and `domUs` unprivileged domains (default 2). The
 * invariant checker runs on it after the test.
 */
export function bed(opts: { domUs?: number; frames?: number; pcpus?: number } = {}): Bed {
  const hv = new Hypervisor({ frames: opts.frames ?? 1024, pcpus: opts.pcpus ?? 2 });
  const dom0 = makeDomain(hv, 0, true);
  const domUs = Array.from({ length: opts.domUs ?? 2 }, (_, i) => makeDomain(hv, i + 1, false));
  const b: Bed = {
    hv,
    dom0,
    domU: domUs[0]!,
    domUs,
    call: (d, op, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0) => hv.hypercall(d.vcpus[0]!, op, a1, a2, a3, a4, a5),
    args: (d) => new GuestArgs(hv, d),
  };
  liveBeds.push(b);
  return b;
}

/** Asserts the invariant checker finds nothing wrong. */
export function expectInvariants(hv: Hypervisor): void {
  expect(checkInvariants(hv)).toEqual([]);
}
