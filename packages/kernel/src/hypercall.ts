/**
 * Entering the hypervisor: named errors, argument structs in guest memory,
 * and the raw hypercall results turned into `Either`.
 *
 * A hypercall takes pointers as guest virtual addresses, so its argument
 * structs must live in the kernel's own memory. {@link ArgStack} is a small
 * stack of scratch pages for them: each call takes a frame, writes its
 * structs, makes the hypercall, reads the results back and pops the frame.
 * It is a stack, not one buffer, because an upcall delivered on return from
 * a hypercall may itself make hypercalls before the outer call has read its
 * results.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  GNTST,
  PAGE_SIZE,
  cName,
  decodeStruct,
  encodeStruct,
  errnoName,
  zeroStruct,
  type GuestMemory,
  type HypercallEntry,
  type StructLayout,
  type StructValue,
} from "@pvkit/abi";

/** A hypercall that failed: what was asked and Xen's error. */
export interface XenError {
  /** The operation, e.g. `"EVTCHNOP_bind_interdomain"`. */
  readonly op: string;
  /** The negative result: `-errno`, or a `GNTST_*` status for grant operations. */
  readonly code: number;
  /** The error's name: `"EINVAL"`, `"GNTST_bad_gntref"`, ... */
  readonly name: string;
  /** `"<op>: <name>"`, for messages. */
  readonly message: string;
}

/** The error of a hypercall that returned `-errno`. */
export function xenError(op: string, rc: number): XenError {
  const name = errnoName(rc);
  return { op, code: rc, name, message: `${op}: ${name}` };
}

/** The error of a grant operation whose status was a `GNTST_*` failure. */
export function grantError(op: string, status: number): XenError {
  const name = cName(GNTST, status);
  return { op, code: status, name, message: `${op}: ${name}` };
}

/** `Right(rc)` for a non-negative result, `Left` with the named error otherwise. */
export function result(op: string, rc: number): E.Either<XenError, number> {
  return rc >= 0 ? E.right(rc) : E.left(xenError(op, rc));
}

/** Unwraps a `Right`, or throws an Error carrying the Xen error's message (for code paths where failure is a bug). */
export function orThrow<T>(e: E.Either<XenError, T>): T {
  if (E.isLeft(e)) throw Object.assign(new Error(e.left.message), { xen: e.left });
  return e.right;
}

/** Writes and reads argument structs in one frame of an {@link ArgStack}. */
export interface ArgFrame {
  /** Writes a zeroed struct with `values` set; returns its virtual address. */
  put<L extends StructLayout>(layout: L, values: Partial<StructValue<L>>): number;
  /** Reserves `n` bytes; returns their virtual address. */
  alloc(n: number): number;
  /** Reads a struct at `va`. */
  get<L extends StructLayout>(layout: L, va: number): StructValue<L>;
  /** The guest memory, for raw reads and writes of what was reserved. */
  readonly memory: GuestMemory;
}

/** Scratch memory for hypercall arguments, used as a stack of frames. */
export class ArgStack {
  private top: number;

  /** Uses the `bytes` bytes at `baseVa` of `memory`. */
  constructor(
    private readonly memory: GuestMemory,
    private readonly baseVa: number,
    private readonly bytes: number,
  ) {
    this.top = baseVa;
  }

  /** Runs `fn` with a fresh frame, popped when `fn` returns or throws. */
  frame<T>(fn: (a: ArgFrame) => T): T {
    const mark = this.top;
    const alloc = (n: number) => {
      const va = this.top;
      this.top += (n + 7) & ~7;
      if (this.top > this.baseVa + this.bytes) throw new Error("hypercall argument stack overflow");
      return va;
    };
    const frame: ArgFrame = {
      memory: this.memory,
      alloc,
      put: (layout, values) => {
        const va = alloc(layout.size);
        const view = new DataView(new ArrayBuffer(layout.size));
        zeroStruct(layout, view);
        encodeStruct(layout, view, 0, values);
        this.memory.write(va, new Uint8Array(view.buffer));
        return va;
      },
      get: (layout, va) => decodeStruct(layout, new DataView(this.memory.read(va, layout.size).buffer)),
    };
    try {
      return fn(frame);
    } finally {
      this.top = mark;
    }
  }
}

/** The pages an {@link ArgStack} of this many bytes needs. */
export const ARG_STACK_PAGES = 4;

/** The size of the argument stack. */
export const ARG_STACK_BYTES = ARG_STACK_PAGES * PAGE_SIZE;

/** The raw hypercall entry plus the argument stack: what every subsystem wrapper needs. */
export interface Hypercaller {
  /** Enter the hypervisor. */
  readonly hypercall: HypercallEntry;
  /** Scratch memory for argument structs. */
  readonly args: ArgStack;
}
