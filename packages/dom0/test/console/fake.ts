/**
 * A console daemon environment without a hypervisor: each "guest" is a plain
 * page with the guest's side of the rings (`consoleGuest`), events are
 * direct calls, time is a number the test moves, and the host line runs its
 * handler on the next turn of the event loop (as dom0's vCPU would, later).
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE, XEN_ERRNO } from "@pvkit/abi";
import { xenError } from "@pvkit/kernel";
import { consoleGuest, type ByteRingPair } from "@pvkit/ring";
import type { ConsoleEndpoint, ConsoleEnv, HostLine } from "@pvkit/dom0";

/** One fake guest: its console page, its side of the rings, and what the daemon did to its channel. */
export class FakeGuest {
  readonly page = new Uint8Array(PAGE_SIZE);
  readonly rings: ByteRingPair = consoleGuest(this.page);
  /** Notifications the daemon sent the guest. */
  notified = 0;
  handler: (() => void) | undefined;
  masked = false;
  /** An event arrived while masked. */
  pending = false;
  closed = false;
  /** Events the guest sent that reached the daemon's handler. */
  delivered = 0;

  constructor(readonly domid: number) {}

  /** The guest signals the daemon (EVTCHNOP_send from its side). */
  notify(): void {
    if (this.closed) return;
    if (this.masked) {
      this.pending = true;
      return;
    }
    this.delivered++;
    this.handler?.();
  }

  /** Writes what fits of `text` to `out` and notifies; returns the bytes written. */
  write(text: string | Uint8Array): number {
    const n = this.rings.tx.write(typeof text === "string" ? new TextEncoder().encode(text) : text);
    if (n > 0) this.notify();
    return n;
  }

  /** Reads the console input, notifying the daemon if it took any. */
  read(): string {
    const bytes = this.rings.rx.read();
    if (bytes.byteLength > 0) this.notify();
    return new TextDecoder().decode(bytes);
  }
}

/** The fake environment. */
export class FakeEnv implements ConsoleEnv {
  t = 1_000;
  readonly guests = new Map<number, FakeGuest>();
  private timers: { t: number; fn: () => void }[] = [];
  private nextPort = 10;
  lines: { raised: number; handler: (() => void) | undefined; closed: boolean }[] = [];

  /** Adds a guest. */
  guest(domid: number): FakeGuest {
    const g = new FakeGuest(domid);
    this.guests.set(domid, g);
    return g;
  }

  now(): number {
    return this.t;
  }

  open(domid: number, _remotePort: number): E.Either<ReturnType<typeof xenError>, ConsoleEndpoint> {
    const g = this.guests.get(domid);
    if (g === undefined) return E.left(xenError("GNTTABOP_map_grant_ref", -XEN_ERRNO.ESRCH));
    g.closed = false;
    return E.right({
      page: g.page,
      port: this.nextPort++,
      notify: () => void g.notified++,
      onEvent: (handler) => (g.handler = handler),
      mask: () => (g.masked = true),
      unmask: () => {
        g.masked = false;
        if (g.pending) {
          g.pending = false;
          g.delivered++;
          g.handler?.();
        }
      },
      close: () => {
        g.closed = true;
        g.handler = undefined;
      },
    });
  }

  at(deadlineNs: number, fn: () => void): void {
    this.timers.push({ t: deadlineNs, fn });
    this.timers.sort((a, b) => a.t - b.t);
  }

  /** Moves time on by `ns`, running the timers that fall due. */
  advance(ns: number): void {
    this.t += ns;
    while (this.timers.length > 0 && this.timers[0]!.t <= this.t) this.timers.shift()!.fn();
  }

  hostLine(): E.Either<ReturnType<typeof xenError>, HostLine> {
    const l = { raised: 0, handler: undefined as (() => void) | undefined, closed: false };
    this.lines.push(l);
    let scheduled = false;
    return E.right({
      raise: () => {
        l.raised++;
        if (scheduled || l.closed) return;
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          if (!l.closed) l.handler?.();
        });
      },
      onRaised: (handler) => (l.handler = handler),
      close: () => (l.closed = true),
    });
  }
}
