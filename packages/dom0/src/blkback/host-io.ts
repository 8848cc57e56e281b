/**
 * Host I/O for dom0's back ends, completed on dom0's vCPU.
 *
 * dom0 stands in for the host's operating system, so blkback reads and
 * writes real files. That I/O completes in a host callback, outside any
 * vCPU, where guest code must not make hypercalls (the engine refuses them,
 * and the run would depend on the host's timing). So the callback only
 * queues the outcome and raises a host interrupt line; dom0 bound that line
 * to an event channel port with `EVTCHNOP_bind_pirq`, as Xen delivers a
 * physical IRQ to dom0, and the port's handler — on dom0's vCPU — calls the
 * completions.
 *
 * While host I/O is outstanding it is declared to the engine
 * (`HostIrqs.hold`), so a deterministic engine waits for it instead of
 * concluding that nothing can happen any more; virtual time stands still
 * meanwhile, so runs with image files stay deterministic.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { EVTCHNOP, HYPERVISOR, XEN_ERRNO, evtchn_bind_pirq, type HostIrqs } from "@pvkit/abi";
import { xenError, type Kernel, type XenError } from "@pvkit/kernel";
import type { BlkHostIo, BlkStoreDone } from "./store.js";

/** {@link BlkHostIo} over a host interrupt line bound to a port of the kernel's. */
export class PirqHostIo implements BlkHostIo {
  private readonly finished: (() => void)[] = [];
  private outstanding = 0;
  private closed = false;
  /** Completions that threw (a bug in their caller), kept so one bad callback cannot stop the others. */
  readonly failures: unknown[] = [];

  private constructor(
    private readonly k: Kernel,
    private readonly irqs: HostIrqs,
    /** The host interrupt line. */
    readonly line: number,
    /** The port it is bound to. */
    readonly port: number,
  ) {
    k.events.on(port, () => this.complete());
  }

  /** Allocates a host interrupt line and binds it (`EVTCHNOP_bind_pirq`); only dom0's boot vCPU has the lines. */
  static bind(k: Kernel): E.Either<XenError, PirqHostIo> {
    const irqs = k.platform.hostIrqs;
    if (irqs === undefined) return E.left({ op: "EVTCHNOP_bind_pirq", code: -XEN_ERRNO.ENODEV, name: "ENODEV", message: "EVTCHNOP_bind_pirq: this kernel has no host interrupt lines" });
    const line = irqs.alloc();
    const port = k.args.frame((a) => {
      const va = a.put(evtchn_bind_pirq, { pirq: line, flags: 0 });
      const rc = k.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va);
      return rc < 0 ? E.left(xenError("EVTCHNOP_bind_pirq", rc)) : E.right(a.get(evtchn_bind_pirq, va).port);
    });
    return E.map((p: number) => new PirqHostIo(k, irqs, line, p))(port);
  }

  /** Host I/O started and not yet completed on the vCPU. */
  get pending(): number {
    return this.outstanding;
  }

  /** {@inheritDoc BlkHostIo.submit} */
  submit<T>(task: () => Promise<T>, done: BlkStoreDone<T>): void {
    this.outstanding++;
    const release = this.irqs.hold();
    let started: Promise<T>;
    try {
      started = task();
    } catch (e) {
      started = Promise.reject(e);
    }
    // Host context from here: queue the outcome and raise the line, nothing else.
    started.then(
      (value) => this.queue(() => done(E.right(value)), release),
      (e: unknown) => this.queue(() => done(E.left(e instanceof Error ? e : new Error(String(e)))), release),
    );
  }

  private queue(completion: () => void, release: () => void): void {
    this.finished.push(completion);
    this.irqs.raise(this.line);
    release();
  }

  /** The port's handler, on dom0's vCPU: runs every completion queued so far. */
  private complete(): void {
    for (const c of this.finished.splice(0)) {
      this.outstanding--;
      try {
        c();
      } catch (e) {
        this.failures.push(e);
      }
    }
  }

  /** Closes the port. The line stays allocated: the host interrupt interface has no way to free one. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.k.events.close(this.port);
  }
}
