/**
 * The credit scheduler (Xen's `sched_credit.c`, in outline).
 *
 * Every accounting period (30 ms of virtual time) the pCPUs' time is dealt
 * out as credit to the active domains in proportion to their weight (1 to
 * 65535, default 256), and within a domain evenly to its vCPUs. A cap (a
 * percentage of one pCPU, 0 for none) limits what a domain may receive. A
 * running vCPU is charged the time it ran. Priorities:
 *
 * - BOOST: just woken from a block while under its share, so I/O-bound vCPUs
 *   answer quickly;
 * - UNDER: credit left;
 * - OVER: credit spent, runs only when nothing UNDER wants to.
 *
 * A capped vCPU whose credit is spent is parked until the next period. The
 * run queue is ordered by priority, then first come first served; a yielding
 * vCPU goes behind its peers. This module decides; the engine runs.
 *
 * @module
 */
import type { Vcpu } from "./domain.js";

/** Scheduling priorities, best first. */
export const Priority = { BOOST: 0, UNDER: 1, OVER: 2 } as const;

/** Length of an accounting period in ns (Xen: 30 ms). */
export const ACCOUNTING_PERIOD = 30_000_000;

/** A time slice (Xen: 10 ms); credit never falls below minus one slice's worth at accounting. */
export const TIMESLICE = 10_000_000;

interface VcpuCredit {
  credit: number;
  priority: number;
  parked: boolean;
  /** Ran, or wanted to, since the last accounting: only active vCPUs share their domain's credit. */
  active: boolean;
  /** Order of arrival in the run queue, for FIFO within a priority. */
  seq: number;
}

/** Credit scheduler state: credits, priorities and the run queue. */
export class CreditScheduler {
  /** Number of pCPUs whose time is dealt out. */
  readonly pcpus: number;
  private readonly state = new Map<Vcpu, VcpuCredit>();
  private runq: Vcpu[] = [];
  private seq = 0;
  private nextAccounting = ACCOUNTING_PERIOD;

  /** A scheduler for `pcpus` physical CPUs. */
  constructor(pcpus: number) {
    this.pcpus = pcpus;
  }

  private info(v: Vcpu): VcpuCredit {
    let s = this.state.get(v);
    if (s === undefined) this.state.set(v, (s = { credit: 0, priority: Priority.UNDER, parked: false, active: true, seq: 0 }));
    return s;
  }

  /** True if `v` waits in the run queue. */
  queued(v: Vcpu): boolean {
    return this.runq.includes(v);
  }

  /** The vCPUs waiting, in the order they would run. */
  get runQueue(): readonly Vcpu[] {
    return this.runq;
  }

  /** The credit and priority of `v`, for `xl vcpu-list` and tests. */
  creditOf(v: Vcpu): { readonly credit: number; readonly priority: number; readonly parked: boolean } {
    const s = this.info(v);
    return { credit: s.credit, priority: s.priority, parked: s.parked };
  }

  /**
   * Queues `v` to run. `woken` marks a wake from blocking: a vCPU under its
   * share is boosted. `yielded` puts it behind the others of its priority.
   */
  enqueue(v: Vcpu, how: "woken" | "preempted" | "yielded"): void {
    if (this.queued(v)) return;
    const s = this.info(v);
    s.active = true;
    if (how === "woken" && s.priority === Priority.UNDER) s.priority = Priority.BOOST;
    s.seq = how === "yielded" ? ++this.seq + 1e12 : ++this.seq;
    this.runq.push(v);
    this.runq.sort((a, b) => {
      const x = this.info(a);
      const y = this.info(b);
      return x.priority - y.priority || x.seq - y.seq;
    });
  }

  /** Removes `v` from the run queue (blocked, paused, offline, destroyed). */
  dequeue(v: Vcpu): void {
    const i = this.runq.indexOf(v);
    if (i >= 0) this.runq.splice(i, 1);
  }

  /** Forgets `v` entirely (its domain is gone). */
  forget(v: Vcpu): void {
    this.dequeue(v);
    this.state.delete(v);
  }

  /** When the next accounting period begins. */
  get nextAccountingTime(): number {
    return this.nextAccounting;
  }

  /** True if a queued vCPU waits, parked by its cap, for the next accounting period. */
  hasParked(): boolean {
    return this.runq.some((v) => this.info(v).parked);
  }

  /** Takes the best runnable vCPU that is not parked, or undefined. `eligible` filters out vCPUs that cannot run now. */
  pick(eligible: (v: Vcpu) => boolean): Vcpu | undefined {
    const i = this.runq.findIndex((v) => !this.info(v).parked && eligible(v));
    if (i < 0) return undefined;
    return this.runq.splice(i, 1)[0];
  }

  /** Charges `v` for `ns` of pCPU time; a boosted vCPU drops to its earned priority. */
  charge(v: Vcpu, ns: number): void {
    const s = this.info(v);
    s.active = true;
    s.credit -= ns;
    s.priority = s.credit > 0 ? Priority.UNDER : Priority.OVER;
    if (s.credit <= 0 && v.domain.sched.cap > 0) s.parked = true;
  }

  /** Runs the accounting periods due by `now`, and says when the next one is. */
  account(now: number, vcpus: readonly Vcpu[]): number {
    if (now < this.nextAccounting) return this.nextAccounting;
    // After a long idle stretch only one period's credit is dealt: unused time is not banked.
    this.nextAccounting = (Math.floor(now / ACCOUNTING_PERIOD) + 1) * ACCOUNTING_PERIOD;
    // As csched_acct: a period's credit goes to the vCPUs that were active in it (ran or queued),
    // not to blocked or offline ones, so an idle vCPU does not dilute its busy siblings' share.
    const active = vcpus.filter((v) => v.domain.state === "running" && (this.queued(v) || this.info(v).active));
    const byDomain = new Map<number, Vcpu[]>();
    for (const v of active) byDomain.set(v.domain.domid, [...(byDomain.get(v.domain.domid) ?? []), v]);
    const totalWeight = [...byDomain.values()].reduce((sum, vs) => sum + vs[0]!.domain.sched.weight, 0);
    const total = this.pcpus * ACCOUNTING_PERIOD;
    for (const vs of byDomain.values()) {
      const d = vs[0]!.domain;
      let share = (total * d.sched.weight) / totalWeight;
      if (d.sched.cap > 0) share = Math.min(share, (ACCOUNTING_PERIOD * d.sched.cap) / 100);
      for (const v of vs) {
        const s = this.info(v);
        // Credit neither piles up beyond one period's worth nor sinks below one slice of debt, as in Xen.
        s.credit = Math.min(Math.max(s.credit, -TIMESLICE) + share / vs.length, ACCOUNTING_PERIOD);
        s.parked = false;
        s.active = this.queued(v);
        if (s.priority !== Priority.BOOST) s.priority = s.credit > 0 ? Priority.UNDER : Priority.OVER;
      }
    }
    this.runq.sort((a, b) => this.info(a).priority - this.info(b).priority || this.info(a).seq - this.info(b).seq);
    return this.nextAccounting;
  }
}
