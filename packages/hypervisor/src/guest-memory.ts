/**
 * Reaching guest memory from the hypervisor, and the guest's own view of it.
 *
 * Every hypercall pointer is a guest virtual address. The hypervisor never
 * trusts one: it copies argument structs in with {@link copyFromGuest} and
 * results out with {@link copyToGuest}, and either fails (the caller answers
 * `-EFAULT`) when any byte is unmapped, or, for a copy out, mapped read-only.
 * This is Xen's `copy_from_guest`/`copy_to_guest` discipline: a value is read
 * from guest memory once, then checked, so the guest cannot change it between
 * the check and the use.
 *
 * @module
 */
import { GuestFault, PAGE_SIZE, type GuestMemory, type StructLayout } from "@pvkit/abi";
import type { Domain } from "./domain.js";
import type { MachineMemory } from "./machine.js";

/**
 * A guest's 64-bit value (an address, a frame number) as a number: exact, or
 * NaN when it is above 2^53 - 1, which every address and frame check refuses
 * (NaN is no integer, and compares false with everything).
 */
export function u64ToNumber(value: bigint): number {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.NaN;
}

/** Calls `fn(mfn, offsetInPage, length, writable)` for each page piece of `[va, va + length)`; false if any page is unmapped. */
function eachPiece(d: Domain, va: number, length: number, fn: (mfn: number, off: number, n: number, writable: boolean) => boolean): boolean {
  if (!Number.isSafeInteger(va) || !Number.isSafeInteger(length) || va < 0 || length < 0) return false;
  for (let done = 0; done < length; ) {
    const at = va + done;
    const vpn = Math.floor(at / PAGE_SIZE);
    const off = at - vpn * PAGE_SIZE;
    const n = Math.min(length - done, PAGE_SIZE - off);
    const m = d.translate(vpn);
    if (m === undefined || !fn(m.mfn, off, n, m.writable)) return false;
    done += n;
  }
  return true;
}

/** Copies `length` bytes at guest virtual address `va` of `d`; undefined if any byte is unmapped. */
export function copyFromGuest(mem: MachineMemory, d: Domain, va: number, length: number): Uint8Array | undefined {
  const out = new Uint8Array(length);
  let at = 0;
  const ok = eachPiece(d, va, length, (mfn, off, n) => {
    out.set(mem.bytes.subarray(mfn * PAGE_SIZE + off, mfn * PAGE_SIZE + off + n), at);
    at += n;
    return true;
  });
  return ok ? out : undefined;
}

/**
 * Copies `data` to guest virtual address `va` of `d`. Checks every page first,
 * so a copy that would fault writes nothing.
 * @returns false if any byte is unmapped or mapped read-only.
 */
export function copyToGuest(mem: MachineMemory, d: Domain, va: number, data: Uint8Array): boolean {
  if (!eachPiece(d, va, data.byteLength, (_m, _o, _n, writable) => writable)) return false;
  let at = 0;
  return eachPiece(d, va, data.byteLength, (mfn, off, n) => {
    mem.bytes.set(data.subarray(at, at + n), mfn * PAGE_SIZE + off);
    at += n;
    return true;
  });
}

/** Copies a struct of `layout` in from guest address `va`, as a DataView of its own bytes (base 0); undefined on a fault. */
export function readGuestStruct(mem: MachineMemory, d: Domain, va: number, layout: StructLayout): DataView | undefined {
  const bytes = copyFromGuest(mem, d, va, layout.size);
  return bytes && new DataView(bytes.buffer);
}

/** Copies a struct (as read by {@link readGuestStruct} and updated) back out to `va`; false on a fault. */
export function writeGuestStruct(mem: MachineMemory, d: Domain, va: number, view: DataView): boolean {
  return copyToGuest(mem, d, va, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
}

/**
 * A domain's address space as its kernel sees it: the direct map of its RAM
 * plus whatever grant and foreign mappings it installed. This is the
 * `memory` of the platform a kernel is handed.
 */
export class DomainGuestMemory implements GuestMemory {
  /** Views `d`'s address space in machine memory `mem`. */
  constructor(
    private readonly mem: MachineMemory,
    private readonly d: Domain,
  ) {}

  /** {@inheritDoc @pvkit/abi!GuestMemory.page} */
  page(va: number, access: "r" | "rw" = "rw"): DataView {
    if (!Number.isSafeInteger(va) || va < 0) throw new GuestFault(va, "page access");
    const m = this.d.translate(Math.floor(va / PAGE_SIZE));
    if (m === undefined) throw new GuestFault(va, "page access");
    if (access === "rw" && !m.writable) throw new GuestFault(va, "writable access to a read-only mapping");
    return this.mem.frameView(m.mfn);
  }

  /** {@inheritDoc @pvkit/abi!GuestMemory.read} */
  read(va: number, length: number): Uint8Array {
    const out = copyFromGuest(this.mem, this.d, va, length);
    if (out === undefined) throw new GuestFault(va, `read of ${length} bytes`);
    return out;
  }

  /** {@inheritDoc @pvkit/abi!GuestMemory.write} */
  write(va: number, data: Uint8Array): void {
    if (!copyToGuest(this.mem, this.d, va, data)) throw new GuestFault(va, `write of ${data.byteLength} bytes`);
  }
}
