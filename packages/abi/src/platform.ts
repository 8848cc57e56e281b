/**
 * The platform contract: everything a guest kernel is given, and all it has.
 *
 * A real PV kernel starts with a pointer to `start_info` and can do three
 * things beyond computing: enter the hypervisor with a hypercall, touch the
 * memory mapped into its address space, and take an upcall when an event is
 * pending. A pvkit kernel gets exactly those, as a {@link Platform}:
 *
 * - {@link Platform.hypercall}: `(op, a1..a5) => number`, `>= 0` on success,
 *   a negative Xen errno on failure. Pointer arguments are guest virtual
 *   addresses, never JavaScript objects.
 * - {@link Platform.memory}: the guest's virtual address space.
 * - {@link Platform.setUpcall}: the event upcall (what
 *   `CALLBACKTYPE_event` registers on Xen).
 * - {@link Platform.startInfo}: the virtual address of `start_info`.
 *
 * A hypercall that takes the vCPU off the CPU (`SCHEDOP_block`,
 * `SCHEDOP_poll`, `SCHEDOP_yield`) returns at once; the kernel then awaits
 * {@link Platform.descheduled}, which settles when the scheduler runs the vCPU
 * again, which is when the hypercall "returns" on real hardware.
 *
 * A guest package never imports the hypervisor; it is handed a Platform.
 *
 * @module
 */
import { PAGE_SIZE } from "./xen.js";

/**
 * The hypercall entry. `op` is a `__HYPERVISOR_*` number; unused arguments
 * may be left out and read as 0. Returns a non-negative result or `-errno`.
 */
export type HypercallEntry = (op: number, a1?: number, a2?: number, a3?: number, a4?: number, a5?: number) => number;

/** Called with the vCPU id when that vCPU has an event pending and upcalls unmasked. */
export type Upcall = (vcpuId: number) => void;

/** Raised when a guest touches a virtual address that maps nothing. */
export class GuestFault extends Error {
  /** The faulting guest virtual address. */
  readonly va: number;
  /** Creates the fault for `va`, saying what was being done. */
  constructor(va: number, what: string) {
    super(`page fault: ${what} at guest virtual address 0x${va.toString(16)}`);
    this.name = "GuestFault";
    this.va = va;
  }
}

/**
 * A guest's virtual address space, a page at a time. Consecutive virtual
 * pages need not be consecutive machine frames, so byte access that may cross
 * a page boundary goes through {@link GuestMemory.read} and
 * {@link GuestMemory.write}; structs that lie within one page are accessed in
 * place through {@link GuestMemory.page}.
 */
export interface GuestMemory {
  /**
   * The whole page containing `va`, as a view whose offset 0 is the start of
   * that page (so a struct at `va` is at `va % PAGE_SIZE`). The view aliases
   * the page: writes through it are seen by every mapper of the frame.
   *
   * `access` says what the caller will do with the view: `"r"` to read only
   * (allowed on a read-only grant mapping), `"rw"` (the default) to write too.
   * A view cannot itself refuse writes, so a kernel that asked for `"r"`
   * must not write through it.
   * @throws {@link GuestFault} if nothing is mapped there, or `"rw"` was asked of a read-only mapping.
   */
  page(va: number, access?: "r" | "rw"): DataView;
  /** Copies `length` bytes from `va`. @throws {@link GuestFault} */
  read(va: number, length: number): Uint8Array;
  /** Copies `data` to `va`. @throws {@link GuestFault} */
  write(va: number, data: Uint8Array): void;
}

/**
 * Host interrupt lines: how host I/O reaches the privileged domain. dom0
 * stands in for the host's operating system (it alone reaches host files and
 * sockets, as Linux dom0 drives the hardware); when host I/O completes
 * outside any vCPU, the code that saw it raises a line, and dom0 receives it
 * as an event on the port it bound to that line with `EVTCHNOP_bind_pirq`, as
 * Xen delivers a physical IRQ to dom0.
 */
export interface HostIrqs {
  /** Allocates a free line; returns its pirq number, to bind with `EVTCHNOP_bind_pirq`. */
  alloc(): number;
  /** Raises line `pirq`: callable from any host callback, it marks the bound port pending and wakes dom0. */
  raise(pirq: number): void;
  /**
   * Declares host I/O in flight (say, a file read) whose completion will
   * raise a line; call the function returned when it completes. While any
   * is held, the engine waits for it rather than concluding that nothing
   * can happen any more.
   */
  hold(): () => void;
}

/** What a kernel is handed at boot. See the module documentation. */
export interface Platform {
  /** Enter the hypervisor. */
  readonly hypercall: HypercallEntry;
  /** The guest's virtual address space. */
  readonly memory: GuestMemory;
  /** Virtual address of this domain's `start_info` page. */
  readonly startInfo: number;
  /** Registers the event upcall; a later call replaces it. */
  setUpcall(handler: Upcall): void;
  /**
   * Settles when this vCPU runs again after a hypercall that descheduled it.
   * Awaiting it without such a hypercall first simply waits for the next
   * time slice.
   */
  descheduled(): Promise<void>;
  /** Host interrupt lines; present only for the privileged domain's boot vCPU. */
  readonly hostIrqs?: HostIrqs;
}

/**
 * A kernel image: a module whose default export is this function. It runs
 * once per domain (each domain gets its own instance of the module) and
 * returns when the kernel has shut its domain down.
 */
export type KernelEntry = (platform: Platform) => Promise<void>;

/**
 * Guest memory over one contiguous buffer: virtual addresses `baseVa` to
 * `baseVa + buffer.byteLength`. The hypervisor's direct map of a domain with
 * contiguous frames looks like this, and tests use it as a mock of any
 * {@link GuestMemory}.
 */
export class FlatGuestMemory implements GuestMemory {
  /** The backing bytes. */
  readonly bytes: Uint8Array;
  /** The virtual address of `bytes[0]`; page-aligned. */
  readonly baseVa: number;

  /** Maps `bytes` (a whole number of pages) at `baseVa`. */
  constructor(bytes: Uint8Array, baseVa = 0) {
    if (bytes.byteLength % PAGE_SIZE !== 0) throw new RangeError("guest memory must be whole pages");
    if (baseVa % PAGE_SIZE !== 0) throw new RangeError("guest memory must start on a page boundary");
    this.bytes = bytes;
    this.baseVa = baseVa;
  }

  /** Allocates `pages` zeroed pages at `baseVa` (on a SharedArrayBuffer when `shared`). */
  static ofPages(pages: number, baseVa = 0, shared = false): FlatGuestMemory {
    const buf = shared ? new SharedArrayBuffer(pages * PAGE_SIZE) : new ArrayBuffer(pages * PAGE_SIZE);
    return new FlatGuestMemory(new Uint8Array(buf), baseVa);
  }

  private offset(va: number, length: number, what: string): number {
    const off = va - this.baseVa;
    if (!Number.isInteger(va) || off < 0 || length < 0 || off + length > this.bytes.byteLength) throw new GuestFault(va, what);
    return off;
  }

  /** {@inheritDoc GuestMemory.page} */
  page(va: number): DataView {
    const off = this.offset(va, 1, "page access");
    const start = off - (off % PAGE_SIZE);
    return new DataView(this.bytes.buffer, this.bytes.byteOffset + start, PAGE_SIZE);
  }

  /** {@inheritDoc GuestMemory.read} */
  read(va: number, length: number): Uint8Array {
    const off = this.offset(va, length, `read of ${length} bytes`);
    return this.bytes.slice(off, off + length);
  }

  /** {@inheritDoc GuestMemory.write} */
  write(va: number, data: Uint8Array): void {
    this.bytes.set(data, this.offset(va, data.byteLength, `write of ${data.byteLength} bytes`));
  }
}
