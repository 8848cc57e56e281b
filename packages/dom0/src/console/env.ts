/**
 * What the console daemon needs of the kernel it runs in, as an interface:
 * the time, a guest's console page and channel, a timer, and a host
 * interrupt line for socket I/O. {@link kernelConsoleEnv} implements it over
 * dom0's `Kernel` with hypercalls; tests
 * implement it over plain pages and a fake clock.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { EVTCHNOP, GNTTAB_RESERVED, HYPERVISOR, PAGE_SIZE, XEN_ERRNO, evtchn_bind_pirq } from "@pvkit/abi";
import { xenError, type Kernel, type XenError } from "@pvkit/kernel";
import type { ConsoleChannel } from "./ring.js";

/** A guest's console as the daemon holds it: the mapped page and dom0's end of the console channel. */
export interface ConsoleEndpoint extends ConsoleChannel {
  /** The console page, as mapped in dom0. */
  readonly page: Uint8Array;
  /** dom0's port of the console event channel. */
  readonly port: number;
  /** Calls `handler` on every event the guest sends (on dom0's vCPU). */
  onEvent(handler: () => void): void;
  /** Stops events from reaching the handler until {@link ConsoleEndpoint.unmask}; they stay pending. */
  mask(): void;
  /** Lets events through again, delivering one that arrived while masked. */
  unmask(): void;
  /** Closes the channel and unmaps the page. */
  close(): void;
}

/** A host interrupt line: host callbacks raise it, and its handler runs on dom0's vCPU. */
export interface HostLine {
  /** Raises the line; callable from any host callback. */
  raise(): void;
  /** Calls `handler` (on dom0's vCPU) each time the line's event arrives. */
  onRaised(handler: () => void): void;
  /** Stops delivering the line's events. */
  close(): void;
}

/** The console daemon's view of the kernel it runs in. */
export interface ConsoleEnv {
  /** System time, ns since the host booted. */
  now(): number;
  /** Maps `domid`'s console page (`GNTTAB_RESERVED_CONSOLE`) and binds its console port `remotePort`. */
  open(domid: number, remotePort: number): E.Either<XenError, ConsoleEndpoint>;
  /** Calls `fn` on dom0's vCPU once system time reaches `deadlineNs`. */
  at(deadlineNs: number, fn: () => void): void;
  /** A host interrupt line, for serving host sockets; only dom0 has them. */
  hostLine(): E.Either<XenError, HostLine>;
}

/** The console daemon's environment in dom0's kernel `k`: grant maps, event channels, timers and host IRQs. */
export function kernelConsoleEnv(k: Kernel): ConsoleEnv {
  return {
    now: () => k.clock.now(),

    open(domid, remotePort) {
      const mapped = k.grants.map(domid, GNTTAB_RESERVED.CONSOLE);
      if (E.isLeft(mapped)) return mapped;
      const mapping = mapped.right;
      const bound = k.events.bindInterdomain(domid, remotePort);
      if (E.isLeft(bound)) {
        k.grants.unmap(mapping);
        return bound;
      }
      const port = bound.right;
      const view = k.memory.memory.page(mapping.va);
      return E.right({
        page: new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE),
        port,
        notify: () => void k.events.notify(port),
        onEvent: (handler) => k.events.on(port, handler),
        mask: () => k.events.mask(port),
        unmask: () => void k.events.unmask(port),
        close: () => {
          k.events.close(port);
          k.grants.unmap(mapping);
        },
      });
    },

    at(deadlineNs, fn) {
      void k.timers.until(deadlineNs).then(fn);
    },

    hostLine() {
      const irqs = k.platform.hostIrqs;
      if (irqs === undefined) return E.left(xenError("host interrupt lines", -XEN_ERRNO.EPERM));
      const line = irqs.alloc();
      const rc = k.args.frame((a) => {
        const va = a.put(evtchn_bind_pirq, { pirq: line, flags: 0 });
        const rc = k.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va);
        return rc < 0 ? rc : a.get(evtchn_bind_pirq, va).port;
      });
      if (rc < 0) return E.left(xenError("EVTCHNOP_bind_pirq", rc));
      const port = rc;
      return E.right({
        raise: () => irqs.raise(line),
        onRaised: (handler) => k.events.on(port, handler),
        close: () => void k.events.close(port),
      });
    },
  };
}
