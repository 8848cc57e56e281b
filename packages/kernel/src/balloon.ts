/**
 * The balloon driver: the guest's memory follows the toolstack's target.
 *
 * ## The protocol (Linux `drivers/xen/xen-balloon.c`, `balloon.c`)
 *
 * The toolstack writes the size it wants a domain to have to
 * `memory/target` in the domain's home, in KiB (`xl mem-set`; libxl wrote
 * the boot size there when it built the domain, next to
 * `memory/static-max`). The guest watches the key and moves toward it:
 *
 * - **Below**: it takes pages out of its own allocator — free pages only,
 *   never a page in use — and gives them back to Xen with
 *   `XENMEM_decrease_reservation`. The pfns stay in the guest's physical
 *   address space with no frame behind them: that set of pfns is "the
 *   balloon". When there are not enough free pages it gives back what is
 *   free and tries again later, with a back-off (Linux: 1 s doubling to
 *   32 s), or at once when told pages were freed ({@link Balloon.kick}).
 * - **Above**: it asks for pages with `XENMEM_populate_physmap`, filling the
 *   balloon's pfns first and then pfns past its RAM, and hands them to the
 *   allocator. Xen refuses past the domain's `max_pages` (the populate call
 *   does fewer extents than asked): the balloon stops there and reports it,
 *   until the target changes or it is kicked.
 *
 * Both work in batches of {@link BALLOON_BATCH} pages per hypercall (Linux:
 * as many as fit in one page of frame list). The guest publishes nothing
 * back: `xl list` shows the domain's `tot_pages`, which Xen counts, so it
 * follows the balloon by itself. Linux publishes nothing in XenStore either;
 * its `current_kb`/`target_kb` live in sysfs, here in
 * {@link Balloon.currentKiB} and {@link Balloon.targetKiB}.
 *
 * A PV guest's target is the domain's whole reservation (Linux's
 * `target_diff` is 0 for PV), so pages are compared one for one with the
 * balloon's count: `start_info.nr_pages`, plus pages populated, minus pages
 * given back. Reservation changes made around the balloon (a kernel calling
 * `increaseReservation` itself) are not in that count.
 *
 * Unlike Linux, which retries for ever, the balloon gives up after
 * {@link BalloonOptions.maxRetries} back-offs until the next target or kick,
 * so that a guest that cannot shrink does not keep a timer armed for ever.
 *
 * {@link @pvkit/kernel!kernelMain | kernelMain} starts a balloon in every
 * domU that has a XenStore page; {@link balloonOf} finds it.
 *
 * ```ts
 * export default kernelMain(async (k) => {
 *   const balloon = balloonOf(k)!;
 *   await k.print(`${balloon.currentKiB} KiB, target ${balloon.targetKiB} KiB`);
 * });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { DOMID, HYPERVISOR, PAGE_SIZE, XENMEM, XEN_ERRNO, xen_memory_reservation } from "@pvkit/abi";
import { xenError, type XenError } from "./hypercall.js";
import type { Kernel } from "./kernel.js";
import type { XsClient } from "./xenstore.js";
import { openXenstore } from "./xenstore-ring.js";

// ---------------------------------------------------------------------------
// Target arithmetic
// ---------------------------------------------------------------------------

/** KiB in a page: `memory/target` is in KiB (Linux shifts by `PAGE_SHIFT - 10`). */
export const KIB_PER_PAGE = PAGE_SIZE / 1024;

/** Most pages moved by one reservation hypercall: a 2 KiB extent list. */
export const BALLOON_BATCH = 256;

/** The XenStore key the toolstack writes the target to, relative to the domain's home. */
export const BALLOON_TARGET_KEY = "memory/target";

/** Pages in `kib` KiB, rounded down as Linux's `new_target >>= PAGE_SHIFT - 10` does. */
export function kibToPages(kib: number): number {
  return Math.floor(kib / KIB_PER_PAGE);
}

/** KiB in `pages` pages. */
export function pagesToKib(pages: number): number {
  return pages * KIB_PER_PAGE;
}

/**
 * The KiB of a `memory/target` value: a decimal number of KiB, surrounding
 * whitespace allowed; anything else (empty, negative, fractional, not a
 * safe integer) is undefined, and the balloon leaves its target as it was.
 */
export function parseTargetKiB(value: string): number | undefined {
  const s = value.trim();
  if (!/^\d+$/.test(s)) return undefined;
  const kib = Number(s);
  return Number.isSafeInteger(kib) ? kib : undefined;
}

/** What the balloon does next to move from its current size toward its target. */
export type BalloonStep = { readonly kind: "none" } | { readonly kind: "increase" | "decrease"; readonly pages: number };

/**
 * The next batch toward `targetPages` from `currentPages` (Linux's `credit`
 * in `balloon_process`): grow or shrink by the difference, at most `batch`
 * pages at a time; nothing when they are equal.
 */
export function balloonStep(targetPages: number, currentPages: number, batch: number = BALLOON_BATCH): BalloonStep {
  const credit = targetPages - currentPages;
  if (credit === 0) return { kind: "none" };
  return { kind: credit > 0 ? "increase" : "decrease", pages: Math.min(Math.abs(credit), batch) };
}

/** The back-off after `delayNs`: doubled, capped at `maxNs` (Linux's `update_schedule`). */
export function nextBackoff(delayNs: number, maxNs: number): number {
  return Math.min(delayNs * 2, maxNs);
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/**
 * Where the balloon stands:
 *
 * - `"balanced"`: its size is the target.
 * - `"retrying"`: short of the target for want of free pages (or after a
 *   failed hypercall); it tries again after a back-off or a {@link Balloon.kick}.
 * - `"limited"`: Xen refused more pages (the domain reached `max_pages`, or
 *   the host is out of memory); it holds until the target changes or a kick.
 * - `"stalled"`: it retried {@link BalloonOptions.maxRetries} times without
 *   reaching the target, and waits for a new target or a kick.
 */
export type BalloonStatus = "balanced" | "retrying" | "limited" | "stalled";

/** Options of a {@link Balloon}. */
export interface BalloonOptions {
  /** Most pages per hypercall (default and most {@link BALLOON_BATCH}). */
  readonly batch?: number;
  /** The first back-off, in ns of system time (default 1 s, as Linux). */
  readonly initialDelayNs?: number;
  /** The longest back-off, in ns (default 32 s, Linux's `max_schedule_delay`). */
  readonly maxDelayNs?: number;
  /**
   * Retries before giving up until the next target or kick (default 16;
   * `Infinity` retries for ever, as Linux's `RETRY_UNLIMITED`). A bound keeps
   * a balloon that cannot reach its target from arming timers for ever, which
   * would keep a deterministic engine from ever going idle.
   */
  readonly maxRetries?: number;
  /** Where the balloon reports a refusal or giving up (default: the console, as `balloon: ...` lines). */
  readonly report?: (line: string) => void;
}

type Outcome = { readonly kind: "done" } | { readonly kind: "eagain"; readonly why: string } | { readonly kind: "limited"; readonly why: string };

/**
 * A balloon over a kernel's reservation. It starts at the kernel's boot
 * size with that as its target; {@link Balloon.setTarget} (or
 * {@link Balloon.followTarget}, which watches `memory/target`) moves it.
 * Its work runs as a task of the kernel, so call its methods from guest code.
 */
export class Balloon {
  private current: number;
  private target: number;
  /** pfns given back, with no frame behind them: re-populated first when the balloon grows. */
  private readonly balloon: number[] = [];
  private readonly batch: number;
  private readonly initialDelayNs: number;
  private readonly maxDelayNs: number;
  private readonly maxRetries: number;
  private readonly report: (line: string) => void;

  private state: BalloonStatus = "balanced";
  private failure: string | undefined;
  private retries = 0;
  private delayNs: number;
  /** A refusal was reported since the last target or kick: report each once. */
  private reported = false;

  /** A target or kick arrived since the worker last looked. */
  private signalled = false;
  private wake: (() => void) | undefined;
  private waiting = false;
  private readonly settledWaiters: ((s: BalloonStatus) => void)[] = [];

  /**
   * Starts the balloon's worker on `k` (it waits for a target).
   * @param k the booted kernel whose reservation it moves
   * @param opts batch size, back-off and reporting
   */
  constructor(
    private readonly k: Kernel,
    opts: BalloonOptions = {},
  ) {
    this.current = Number(k.startInfo.nr_pages);
    this.target = this.current;
    this.batch = Math.max(1, Math.min(opts.batch ?? BALLOON_BATCH, BALLOON_BATCH));
    this.initialDelayNs = opts.initialDelayNs ?? 1_000_000_000;
    this.maxDelayNs = opts.maxDelayNs ?? 32_000_000_000;
    this.maxRetries = opts.maxRetries ?? 16;
    this.report = opts.report ?? ((line) => void k.print(line));
    this.delayNs = this.initialDelayNs;
    void this.worker();
  }

  /** The reservation as the guest counts it, in pages: boot `nr_pages`, plus populated, minus given back. */
  get currentPages(): number {
    return this.current;
  }

  /** {@link Balloon.currentPages} in KiB (Linux's `current_kb`). */
  get currentKiB(): number {
    return pagesToKib(this.current);
  }

  /** The target, in pages. */
  get targetPages(): number {
    return this.target;
  }

  /** The target in KiB (Linux's `target_kb`), rounded down to whole pages. */
  get targetKiB(): number {
    return pagesToKib(this.target);
  }

  /** pfns in the balloon: given back and not re-populated yet. */
  get balloonedPages(): number {
    return this.balloon.length;
  }

  /** Where the balloon stands. */
  get status(): BalloonStatus {
    return this.state;
  }

  /** Why it last fell short of its target, while it is not `"balanced"`. */
  get lastError(): string | undefined {
    return this.failure;
  }

  /** Retries made toward the current target (Linux's `retry_count`, less one). */
  get retryCount(): number {
    return this.retries;
  }

  /** Sets the target in pages (Linux's `balloon_set_new_target`) and lets the worker move toward it. */
  setTarget(pages: number): void {
    if (!Number.isSafeInteger(pages) || pages < 0) throw new RangeError(`balloon target ${pages} is not a number of pages`);
    this.target = pages;
    this.retries = 0;
    this.reported = false;
    this.delayNs = this.initialDelayNs;
    this.signal();
  }

  /** Sets the target in KiB, as `memory/target` gives it. */
  setTargetKiB(kib: number): void {
    this.setTarget(kibToPages(kib));
  }

  /**
   * Tries again now rather than after the back-off: call it after freeing
   * pages the balloon was short of, or after the toolstack raised
   * `max_pages`.
   */
  kick(): void {
    this.reported = false;
    this.signal();
  }

  /** Resolves, with the status, once the worker has done what it can and waits (for a target, a kick or a back-off). */
  settled(): Promise<BalloonStatus> {
    if (this.waiting && !this.signalled) return Promise.resolve(this.state);
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  /**
   * Follows `memory/target` in the domain's home over `xs`: each time the
   * watch fires, reads the key and sets the target. A missing or malformed
   * value is ignored, as Linux ignores one it cannot scan. Returns when the
   * connection closes.
   */
  async followTarget(xs: XsClient): Promise<void> {
    try {
      for await (const _ of xs.watch(BALLOON_TARGET_KEY, "balloon")) {
        const value = await xs.read(BALLOON_TARGET_KEY)();
        if (E.isLeft(value)) continue; // not written (yet): nothing asked
        const kib = parseTargetKiB(value.right);
        if (kib === undefined) this.report(`balloon: ignoring ${BALLOON_TARGET_KEY} "${value.right}": not a number of KiB`);
        else this.setTargetKiB(kib);
      }
    } catch (e) {
      this.report(`balloon: cannot watch ${BALLOON_TARGET_KEY}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private signal(): void {
    this.signalled = true;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Waits for a signal, or `delayNs` of system time when given. */
  private wait(delayNs: number | undefined): Promise<void> {
    if (this.signalled) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
      if (delayNs !== undefined)
        void this.k.sleep(delayNs).then(() => {
          if (this.wake !== resolve) return; // woken before the timer: this timer is stale
          this.wake = undefined;
          resolve();
        });
    });
  }

  /** The worker (Linux's `balloon_process`, run as a delayed work item). */
  private async worker(): Promise<void> {
    let retryIn: number | undefined;
    for (;;) {
      this.waiting = true;
      if (!this.signalled) for (const w of this.settledWaiters.splice(0)) w(this.state);
      await this.wait(retryIn);
      this.waiting = false;
      this.signalled = false;
      let outcome: Outcome;
      try {
        outcome = this.process();
      } catch (e) {
        // A bug, or methods called from outside the guest's vCPU: try again later, from a timer.
        outcome = { kind: "eagain", why: e instanceof Error ? e.message : String(e) };
      }
      retryIn = this.after(outcome);
    }
  }

  /** Moves toward the target batch by batch, until there or until a batch falls short. */
  private process(): Outcome {
    for (;;) {
      const step = balloonStep(this.target, this.current, this.batch);
      if (step.kind === "none") return { kind: "done" };
      const outcome = step.kind === "increase" ? this.increase(step.pages) : this.decrease(step.pages);
      if (outcome.kind !== "done") return outcome;
    }
  }

  /** Records an outcome; returns the back-off before the next try, or undefined to wait for a signal. */
  private after(outcome: Outcome): number | undefined {
    if (outcome.kind === "done") {
      this.state = "balanced";
      this.failure = undefined;
      this.retries = 0;
      this.delayNs = this.initialDelayNs;
      return undefined;
    }
    const held = `holding at ${this.currentKiB} KiB of a ${this.targetKiB} KiB target`;
    if (outcome.kind === "limited") {
      if (!this.reported) this.report(`balloon: ${outcome.why}; ${held}`);
      this.reported = true;
      this.state = "limited";
      this.failure = outcome.why;
      return undefined;
    }
    this.failure = outcome.why;
    if (this.retries >= this.maxRetries) {
      this.report(`balloon: giving up after ${this.retries} retries (${outcome.why}); ${held}`);
      this.state = "stalled";
      this.retries = 0;
      this.delayNs = this.initialDelayNs;
      return undefined;
    }
    this.retries++;
    this.state = "retrying";
    const delay = this.delayNs;
    this.delayNs = nextBackoff(this.delayNs, this.maxDelayNs);
    return delay;
  }

  /** Gives back up to `count` free pages (`XENMEM_decrease_reservation`). */
  private decrease(count: number): Outcome {
    const mem = this.k.memory;
    const take = Math.min(count, mem.freePages);
    if (take === 0) return { kind: "eagain", why: "no free pages to give back" };
    // Take the pages from the allocator (zeroed: nothing of the guest's leaves with them), then
    // let the kernel check they are free and give them back.
    const pfns: number[] = [];
    for (let i = 0; i < take; i++) pfns.push(mem.allocPage()!);
    for (const pfn of pfns) mem.freePage(pfn);
    const given = this.k.decreaseReservation(pfns);
    if (E.isLeft(given)) return { kind: "eagain", why: given.left.message };
    this.current -= given.right;
    this.balloon.push(...pfns.slice(0, given.right));
    if (given.right < take) return { kind: "eagain", why: `XENMEM_decrease_reservation took ${given.right} of ${take} pages` };
    if (take < count) return { kind: "eagain", why: `${count - take} more pages are in use` };
    return { kind: "done" };
  }

  /** Gets up to `count` pages: the balloon's pfns first, then past the kernel's RAM. */
  private increase(count: number): Outcome {
    let asked: number;
    let got: E.Either<XenError, number[]>;
    if (this.balloon.length > 0) {
      this.balloon.sort((a, b) => b - a); // lowest pfns at the end: re-populated first
      const pfns = this.balloon.splice(-Math.min(count, this.balloon.length)).reverse();
      asked = pfns.length;
      got = this.populate(pfns);
      this.balloon.push(...pfns.slice(E.isRight(got) ? got.right.length : 0)); // what Xen did not back stays in the balloon
    } else {
      asked = count;
      got = this.k.increaseReservation(count);
    }
    if (E.isLeft(got)) return { kind: "limited", why: `Xen refused more pages (${got.left.message})` };
    this.current += got.right.length;
    if (got.right.length < asked) return { kind: "limited", why: `Xen gave ${got.right.length} of ${asked} pages asked for` };
    return { kind: "done" };
  }

  /**
   * Backs the balloon's `pfns` with new frames (`XENMEM_populate_physmap`,
   * which writes each frame's mfn over its pfn in the list), records them in
   * the P2M and hands them to the allocator.
   * @returns the pfns populated: a prefix of `pfns`, possibly short
   */
  private populate(pfns: readonly number[]): E.Either<XenError, number[]> {
    const k = this.k;
    return k.args.frame((a) => {
      const list = a.alloc(pfns.length * 8);
      const view = new DataView(new ArrayBuffer(pfns.length * 8));
      pfns.forEach((pfn, i) => view.setBigUint64(i * 8, BigInt(pfn), true));
      a.memory.write(list, new Uint8Array(view.buffer));
      const rc = k.hypercall(HYPERVISOR.memory_op, XENMEM.populate_physmap, a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: BigInt(pfns.length), extent_order: 0, domid: DOMID.SELF }));
      if (rc <= 0) return E.left(xenError("XENMEM_populate_physmap", rc < 0 ? rc : -XEN_ERRNO.ENOMEM));
      const mfns = new DataView(a.memory.read(list, rc * 8).buffer);
      const done = pfns.slice(0, rc);
      done.forEach((pfn, i) => k.memory.setMfn(pfn, Number(mfns.getBigUint64(i * 8, true))));
      k.memory.addPages(done);
      return E.right(done);
    });
  }
}

// ---------------------------------------------------------------------------
// One balloon per kernel
// ---------------------------------------------------------------------------

const balloons = new WeakMap<Kernel, Balloon>();

/**
 * Starts the balloon of a domU: a {@link Balloon} following `memory/target`
 * over the kernel's XenStore connection ({@link openXenstore}). Later calls
 * return the same balloon, and `opts` count only on the first.
 * {@link @pvkit/kernel!kernelMain | kernelMain} calls it, with the defaults,
 * for every domU with a XenStore page before the kernel's own code runs, so
 * kernels rarely need to: {@link balloonOf} finds that balloon.
 */
export function startBalloon(k: Kernel, opts: BalloonOptions = {}): Balloon {
  let balloon = balloons.get(k);
  if (balloon === undefined) {
    balloons.set(k, (balloon = new Balloon(k, opts)));
    void balloon.followTarget(openXenstore(k));
  }
  return balloon;
}

/** The balloon {@link startBalloon} started for `k`, if any. */
export function balloonOf(k: Kernel): Balloon | undefined {
  return balloons.get(k);
}
