/**
 * Time and timers, guest side.
 *
 * The hypervisor publishes system time (ns since boot) in each vCPU's
 * `vcpu_time_info`, bumping `version` around every update: a reader retries
 * while the version is odd or changes under it, as with a seqlock. A kernel
 * has one single-shot timer per vCPU (`set_timer_op`), which raises
 * `VIRQ_TIMER`; {@link Timers} multiplexes any number of sleeps onto it,
 * always programming the earliest deadline.
 *
 * @module
 */
import { HYPERVISOR, vcpu_info, vcpu_time_info } from "@pvkit/abi";
import type { Hypercaller } from "./hypercall.js";

/** Reads system time from a vCPU's `vcpu_time_info`. */
export class Clock {
  private readonly base: number;

  /** Reads vCPU `vcpuId`'s time in the kernel's view of shared_info. */
  constructor(
    private readonly sharedInfo: DataView,
    vcpuId = 0,
  ) {
    this.base = vcpuId * vcpu_info.size + vcpu_info.fields.time.offset;
  }

  /** Nanoseconds since the host booted. */
  now(): number {
    const f = vcpu_time_info.fields;
    for (;;) {
      const before = f.version.get(this.sharedInfo, this.base);
      const t = f.system_time.get(this.sharedInfo, this.base);
      if ((before & 1) === 0 && f.version.get(this.sharedInfo, this.base) === before) return Number(t);
    }
  }
}

interface Sleeper {
  readonly deadline: number;
  readonly wake: () => void;
}

/** A deadline that can be called off: see {@link Timers.timeout}. */
export interface Timeout {
  /** The system time it expires at, ns. */
  readonly deadline: number;
  /** Resolves when it expires; never, once cancelled. */
  readonly fired: Promise<void>;
  /** Calls it off (again: nothing). */
  cancel(): void;
}

/** Any number of deadlines on the one single-shot timer. */
export class Timers {
  private sleepers: Sleeper[] = [];
  private programmed: number | undefined;

  /** Programs `set_timer_op` through `hc`; reads time from `clock`. */
  constructor(
    private readonly hc: Hypercaller,
    readonly clock: Clock,
  ) {}

  /** Resolves once system time reaches `deadline`. */
  until(deadline: number): Promise<void> {
    if (deadline <= this.clock.now()) return Promise.resolve();
    return new Promise((wake) => {
      this.sleepers.push({ deadline, wake });
      this.sleepers.sort((a, b) => a.deadline - b.deadline);
      this.program();
    });
  }

  /** Resolves after `ns` nanoseconds. */
  sleep(ns: number): Promise<void> {
    return this.until(this.clock.now() + ns);
  }

  /**
   * A timeout of `ns` nanoseconds (system time `deadline`) that can be
   * called off: `fired` resolves when it expires, unless `cancel` came first (then it never does, and
   * the deadline no longer keeps the timer armed).
   */
  timeout(ns: number): Timeout {
    const deadline = this.clock.now() + ns;
    let sleeper: Sleeper | undefined;
    const fired = new Promise<void>((wake) => {
      sleeper = { deadline, wake };
      this.sleepers.push(sleeper);
      this.sleepers.sort((a, b) => a.deadline - b.deadline);
      this.program();
    });
    return {
      deadline,
      fired,
      cancel: () => {
        const i = this.sleepers.indexOf(sleeper!);
        if (i < 0) return;
        this.sleepers.splice(i, 1);
        this.program();
      },
    };
  }

  /** The `VIRQ_TIMER` handler: wakes every sleeper that is due, and programs the next deadline. */
  readonly onTimer = (): void => {
    const now = this.clock.now();
    this.programmed = undefined;
    while (this.sleepers.length > 0 && this.sleepers[0]!.deadline <= now) this.sleepers.shift()!.wake();
    this.program();
  };

  /** Arms the one-shot timer for the earliest deadline, or disarms it (`set_timer_op(0)`) when none is left. */
  private program(): void {
    const next = this.sleepers[0]?.deadline;
    if (next === this.programmed) return;
    this.programmed = next;
    this.hc.hypercall(HYPERVISOR.set_timer_op, next ?? 0);
  }
}
