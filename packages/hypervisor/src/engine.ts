/**
 * The deterministic engine: one thread, discrete events, a virtual clock.
 *
 * The engine owns the simulated pCPUs. Each step it either fires the timers
 * due next, or puts the best runnable vCPU (by the credit scheduler) on the
 * earliest free pCPU and runs its guest code until the guest gives the CPU
 * back by awaiting {@link Platform.descheduled} — after a block, poll or
 * yield, or simply to let others run. Guest code costs virtual time by a
 * fixed model (a base cost per slice plus a cost per hypercall and upcall,
 * with a seeded jitter), never by the wall clock, so the same topology and
 * seed give the same trace byte for byte. When every vCPU is blocked, time
 * jumps to the next timer.
 *
 * In realtime mode the same loop waits for the wall clock to reach each
 * virtual instant before acting, and when idle waits for outside input
 * ({@link Engine.kick}) or the next timer.
 *
 * Events reach a guest through its upcall, which the engine calls on the
 * vCPU's behalf when an event is pending and upcalls are unmasked: when the
 * vCPU is resumed, and on return from each of its hypercalls, as Xen does on
 * return to guest. During the upcall `evtchn_upcall_mask` is set, and cleared
 * after it, as Xen's event callback with `CALLBACKF_mask_events` does.
 *
 * @module
 */
import { CALLBACKTYPE, RUNSTATE, SHUTDOWN, decodeKernelImage, vcpu_info, vcpu_time_info, type KernelEntry, type Platform, type Upcall } from "@pvkit/abi";
import type { Domain, Vcpu } from "./domain.js";
import { CreditScheduler } from "./credit.js";
import { localEventsPending, raisePirq } from "./event-channel.js";
import { DomainGuestMemory, copyFromGuest } from "./guest-memory.js";
import type { Hypervisor } from "./hypervisor.js";

/** The virtual-time cost model of guest execution, in ns. */
export interface CostModel {
  /** Every slice costs at least this much. */
  readonly slice: number;
  /** Added per hypercall made in the slice. */
  readonly hypercall: number;
  /** Added per upcall delivered in the slice. */
  readonly upcall: number;
  /** Up to this much more, drawn from the seeded generator. */
  readonly jitter: number;
}

/** The default cost model: about what a small PV guest slice costs on real hardware. */
export const DEFAULT_COSTS: CostModel = { slice: 1_000, hypercall: 200, upcall: 300, jitter: 100 };

/** Options of an {@link Engine}. */
export interface EngineConfig {
  /** Seed of the engine's generator (default 1). */
  readonly seed?: number;
  /** `"deterministic"` (default) or `"realtime"`. */
  readonly mode?: "deterministic" | "realtime";
  /** The cost model. */
  readonly costs?: CostModel;
  /**
   * Loads a kernel module named by an image, giving each boot its own
   * instance (the default, {@link importKernel}).
   */
  readonly loader?: KernelLoader;
}

/** Finds the entry of the kernel module at `url`, a fresh instance for `domid`. */
export type KernelLoader = (url: string, domid: number) => Promise<KernelEntry>;

let kernelInstances = 0;

/**
 * Imports a fresh instance of the module at `url` and returns its default
 * export. ES modules are cached by URL, so each boot gets a URL of its own
 * (`?domid=N&boot=M`): two domains, or two boots of one domid, never share a
 * module's state.
 */
export const importKernel: KernelLoader = async (url, domid) => {
  const sep = url.includes("?") ? "&" : "?";
  const mod = (await import(`${url}${sep}domid=${domid}&boot=${++kernelInstances}`)) as { default?: unknown };
  if (typeof mod.default !== "function") throw new Error(`kernel module ${url} has no default export function`);
  return mod.default as KernelEntry;
};

/** Most bytes a kernel image may take. */
const MAX_IMAGE = 4096;

/** Why {@link Engine.run} returned. */
export type StopReason = "idle" | "until" | "stopped";

/** A small seeded generator (mulberry32), so runs are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The guest side of one vCPU: its code, its upcall, and the two hand-over points. */
interface VcpuRunner {
  readonly entry: KernelEntry;
  readonly platform: Platform;
  upcall: Upcall | undefined;
  started: boolean;
  finished: boolean;
  inUpcall: boolean;
  /** Resolves the guest's pending `descheduled()`: the vCPU runs again. */
  resumeGuest: (() => void) | undefined;
  /** Resolves the engine's wait: the guest gave the CPU back. */
  endSlice: (() => void) | undefined;
  hypercalls: number;
  upcalls: number;
}

/** Drives a {@link Hypervisor}: scheduling, time, and the guests' code. */
export class Engine {
  /** The hypervisor driven. */
  readonly hv: Hypervisor;
  /** The credit scheduler. */
  readonly scheduler: CreditScheduler;
  /** Deterministic or realtime. */
  readonly mode: "deterministic" | "realtime";
  /** Errors thrown by guest code, by domid (the domain was crashed for it). */
  readonly guestErrors = new Map<number, unknown>();

  private readonly costs: CostModel;
  private readonly loader: KernelLoader;
  private readonly random: () => number;
  private readonly runners = new Map<Vcpu, VcpuRunner>();
  private readonly pcpuFree: number[];
  /** Whether pCPU p's free time is an idle wait (for a timer or a ready vCPU), not the end of a slice it ran. */
  private readonly pcpuIdle: boolean[];
  private running: Vcpu | undefined;
  /** Host I/O in flight (`HostIrqs.hold`): while any is, the engine is not idle. */
  private hostIo = 0;
  private sliceStart = 0;
  private stopRequested = false;
  private kickResolve: (() => void) | undefined;
  private wallStart = 0;

  /** Attaches an engine to `hv` (it installs itself as the hypervisor's hooks). */
  constructor(hv: Hypervisor, config: EngineConfig = {}) {
    this.hv = hv;
    this.scheduler = new CreditScheduler(hv.pcpus);
    this.mode = config.mode ?? "deterministic";
    this.costs = config.costs ?? DEFAULT_COSTS;
    this.loader = config.loader ?? importKernel;
    this.random = seededRandom(config.seed ?? 1);
    this.pcpuFree = new Array<number>(hv.pcpus).fill(0);
    this.pcpuIdle = new Array<boolean>(hv.pcpus).fill(false);
    hv.hooks = {
      wake: (v) => {
        // Woken during another vCPU's slice: it may run from that moment of the slice, not before.
        v.readyAt = this.clockNow();
        if (v !== this.running && this.hv.runnable(v)) this.scheduler.enqueue(v, "woken");
        this.kick();
      },
      deschedule: (v) => {
        if (v !== this.running) this.scheduler.dequeue(v);
      },
      destroyed: (d) => {
        for (const v of d.vcpus) {
          this.scheduler.forget(v);
          this.runners.delete(v);
        }
      },
    };
    for (const d of hv.domains.values()) for (const v of d.vcpus) if (hv.runnable(v)) this.scheduler.enqueue(v, "woken");
  }

  /**
   * Gives vCPU 0 of `d` its kernel: `entry` runs with a platform whose
   * `startInfo` is `startInfoVa`, the first time the vCPU is scheduled.
   * Returning from the entry powers the domain off; throwing crashes it.
   */
  attachKernel(d: Domain, entry: KernelEntry, startInfoVa: number): void {
    const v = d.vcpus[0]!;
    if (this.runners.has(v)) throw new Error(`domain ${d.domid} already has a kernel`);
    const runner: VcpuRunner = {
      entry,
      platform: this.platformFor(v, startInfoVa),
      upcall: undefined,
      started: false,
      finished: false,
      inUpcall: false,
      resumeGuest: undefined,
      endSlice: undefined,
      hypercalls: 0,
      upcalls: 0,
    };
    this.runners.set(v, runner);
    if (v !== this.running && this.hv.runnable(v)) this.scheduler.enqueue(v, "woken");
  }

  private platformFor(v: Vcpu, startInfo: number): Platform {
    const hv = this.hv;
    const runner = () => this.runners.get(v)!;
    const hostIrqs =
      v.domain.privileged && v.id === 0
        ? {
            alloc: () => hv.allocHostIrq(),
            raise: (pirq: number) => {
              // Host I/O completed outside any vCPU: deliver it now, and let an idle engine see it.
              if (raisePirq(hv, pirq)) this.kick();
            },
            hold: () => {
              this.hostIo++;
              let held = true;
              return () => {
                if (!held) return;
                held = false;
                this.hostIo--;
                this.kick();
              };
            },
          }
        : undefined;
    return {
      ...(hostIrqs && { hostIrqs }),
      startInfo,
      memory: new DomainGuestMemory(hv.machine, v.domain),
      hypercall: (op, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0) => {
        // Guest code runs only on a pCPU: a task that wakes outside its vCPU's slice (say, on host I/O)
        // and enters the hypervisor would make the run depend on the host's timing.
        if (this.running !== v) throw new Error(`hypercall ${op} from d${v.domain.domid}v${v.id} while it is not running on a pCPU`);
        const r = runner();
        r.hypercalls++;
        const result = hv.hypercall(v, op, a1, a2, a3, a4, a5);
        this.publishTime(v);
        this.deliverUpcall(v);
        return result;
      },
      setUpcall: (handler) => {
        runner().upcall = handler;
      },
      descheduled: () =>
        new Promise<void>((resolve) => {
          const r = runner();
          r.resumeGuest = resolve;
          const end = r.endSlice;
          r.endSlice = undefined;
          end?.();
        }),
    };
  }

  /**
   * Virtual time as the running guest sees it: the slice's start plus what
   * its hypercalls and upcalls have cost so far. Outside a slice, `hv.now`.
   */
  private clockNow(): number {
    const v = this.running;
    const r = v && this.runners.get(v);
    if (r === undefined) return this.hv.now;
    return this.sliceStart + r.hypercalls * this.costs.hypercall + r.upcalls * this.costs.upcall;
  }

  /**
   * Publishes the system time in `v`'s `vcpu_time_info`, as Xen does when it
   * schedules a vCPU: `version` goes odd, `system_time` changes, `version`
   * goes even, so a guest reading it like a seqlock never sees a torn value.
   * pvkit has no TSC, so `tsc_to_system_mul` is 0 and the guest reads
   * `system_time` as the time.
   */
  private publishTime(v: Vcpu): void {
    const info = this.hv.vcpuInfoView(v);
    if (info === undefined) return;
    const t = vcpu_info.fields.time.at(0);
    const f = vcpu_time_info.fields;
    const version = f.version.get(info, t);
    f.version.set(info, t, (version + 1) | 1);
    f.system_time.set(info, t, BigInt(this.clockNow()));
    f.version.set(info, t, ((version + 1) | 1) + 1);
  }

  /**
   * Calls the guest's upcall if an event is deliverable to `v`: the guest
   * must have registered its event callback (`CALLBACKOP_register`,
   * `CALLBACKTYPE_event`) and installed the handler, as a PV kernel on Xen
   * gets no upcall before it registers one.
   */
  private deliverUpcall(v: Vcpu): void {
    const r = this.runners.get(v);
    if (r === undefined || r.upcall === undefined || r.inUpcall || !v.callbacks.has(CALLBACKTYPE.event) || !localEventsPending(this.hv, v)) return;
    const info = this.hv.vcpuInfoView(v);
    if (info === undefined) return;
    const mask = vcpu_info.fields.evtchn_upcall_mask;
    r.inUpcall = true;
    r.upcalls++;
    mask.set(info, 0, 1);
    this.hv.trace.record({ t: this.hv.now, kind: "upcall", domid: v.domain.domid, vcpu: v.id });
    try {
      r.upcall(v.id);
    } finally {
      mask.set(info, 0, 0);
      r.inUpcall = false;
    }
  }

  /** Wakes a realtime engine waiting for input; harmless otherwise. */
  kick(): void {
    const k = this.kickResolve;
    this.kickResolve = undefined;
    k?.();
  }

  /** Asks {@link Engine.run} to return after the current step. */
  stop(): void {
    this.stopRequested = true;
    this.kick();
  }

  /**
   * Runs until nothing can happen any more (every vCPU blocked and no timer
   * armed), until virtual time `until`, or until {@link Engine.stop}.
   */
  async run(opts: { until?: number } = {}): Promise<StopReason> {
    const hv = this.hv;
    this.stopRequested = false;
    this.wallStart = performance.now() - hv.now / 1e6;
    for (;;) {
      if (this.stopRequested) return "stopped";
      const vcpus = [...hv.domains.values()].flatMap((d) => d.vcpus);
      this.scheduler.account(hv.now, vcpus);
      const p = this.pcpuFree.indexOf(Math.min(...this.pcpuFree));
      const start = Math.max(this.pcpuFree[p]!, hv.now);
      // Capped vCPUs parked until the next accounting period make it an event too.
      const deadline = hv.nextDeadline();
      const parkedUntil = this.scheduler.hasParked() ? this.scheduler.nextAccountingTime : undefined;
      const timer = deadline === undefined ? parkedUntil : parkedUntil === undefined ? deadline : Math.min(deadline, parkedUntil);
      if (timer !== undefined && timer <= start) {
        if (opts.until !== undefined && timer > opts.until) return this.finish(opts.until);
        if (await this.reach(timer)) hv.advanceTo(Math.max(timer, hv.now));
        else this.wakeIdlePcpus();
        continue;
      }
      if (opts.until !== undefined && start > opts.until) return this.finish(opts.until);
      const v = this.scheduler.pick((x) => hv.runnable(x) && x.readyAt <= start);
      if (v === undefined) {
        // This pCPU idles until a queued vCPU becomes ready, another pCPU finishes its slice, or the next timer.
        const later = [
          ...this.pcpuFree.filter((t) => t > start),
          ...this.scheduler.runQueue.filter((x) => hv.runnable(x) && x.readyAt > start).map((x) => x.readyAt),
        ];
        if (later.length > 0) {
          this.pcpuFree[p] = timer === undefined ? Math.min(...later) : Math.min(timer, ...later);
          this.pcpuIdle[p] = true;
          continue;
        }
        if (timer !== undefined) {
          this.pcpuFree[p] = timer;
          this.pcpuIdle[p] = true;
          continue;
        }
        if (this.hostIo > 0 && this.mode === "deterministic") {
          // Host I/O is in flight: wait for its interrupt. Virtual time stands still meanwhile,
          // so a deterministic run stays deterministic however long the host takes.
          await this.waitForHostIo();
          continue;
        }
        if (this.mode === "deterministic") return "idle";
        // Realtime: outside input can wake a domain, but not one that has shut down.
        if ([...hv.domains.values()].every((d) => d.state === "shutdown" || d.dead)) return "idle";
        if (opts.until !== undefined && hv.now >= opts.until) return "until";
        await this.waitForInput(opts.until);
        continue;
      }
      if (!(await this.reach(start))) {
        this.scheduler.enqueue(v, "preempted"); // outside input came first: plan again
        this.wakeIdlePcpus();
        continue;
      }
      if (start > hv.now) hv.advanceTo(start);
      const cost = await this.runSlice(v, p);
      this.pcpuFree[p] = start + cost;
      this.pcpuIdle[p] = false;
    }
  }

  /**
   * Outside input arrived before the time a plan waited for: a pCPU that was
   * only idling until then is free now, so the vCPU the input woke runs at
   * once rather than at the timer the idle pCPUs were parked on.
   */
  private wakeIdlePcpus(): void {
    const now = this.hv.now;
    this.pcpuFree.forEach((t, p) => {
      if (this.pcpuIdle[p] && t > now) this.pcpuFree[p] = now;
    });
  }

  private finish(until: number): StopReason {
    if (until > this.hv.now) this.hv.advanceTo(until);
    return "until";
  }

  /** Runs `v` on pCPU `p` until its guest gives the CPU back; returns the slice's cost. */
  private async runSlice(v: Vcpu, p: number): Promise<number> {
    const hv = this.hv;
    hv.setRunstate(v, RUNSTATE.running);
    this.running = v;
    this.sliceStart = hv.now;
    if (!this.runners.has(v) && v.context !== undefined) await this.bootFromImage(v, v.context);
    const r = this.runners.get(v);
    if (r === undefined || r.finished) {
      // A vCPU with no code of its own (a secondary vCPU) has nothing to do but sleep.
      hv.block(v);
    } else {
      r.hypercalls = 0;
      r.upcalls = 0;
      const sliceDone = new Promise<void>((resolve) => (r.endSlice = resolve));
      this.publishTime(v);
      if (!r.started) {
        r.started = true;
        this.startKernel(v, r);
      } else {
        this.deliverUpcall(v);
        const resume = r.resumeGuest;
        r.resumeGuest = undefined;
        resume?.();
      }
      await sliceDone;
    }
    this.running = undefined;
    const cost =
      this.costs.slice +
      (r ? r.hypercalls * this.costs.hypercall + r.upcalls * this.costs.upcall : 0) +
      Math.floor(this.random() * this.costs.jitter);
    this.scheduler.charge(v, cost);
    hv.trace.record({ t: hv.now, kind: "schedule", pcpu: p, domid: v.domain.domid, vcpu: v.id, ns: cost });
    // Virtual time stands still while guest code runs; the slice's cost is its running time,
    // and whatever state the vCPU left in starts when the slice ends.
    if (v.runstate === RUNSTATE.running) hv.setRunstate(v, RUNSTATE.runnable);
    v.runstateTime[RUNSTATE.running]! += cost;
    v.runstateEntered = hv.now + cost;
    v.readyAt = Math.max(v.readyAt, hv.now + cost);
    // Still runnable (it yielded, or just let others run), or woken again during its own slice: queue it.
    if (hv.runnable(v)) this.scheduler.enqueue(v, "yielded");
    return cost;
  }

  /**
   * Boots the kernel whose image the domain builder left at `rip`, with
   * `start_info` at `rsi`. A bad image or a module that will not load
   * crashes the domain, with the reason on Xen's console.
   */
  private async bootFromImage(v: Vcpu, ctx: { readonly rip: number; readonly rsi: number }): Promise<void> {
    const d = v.domain;
    const header = copyFromGuest(this.hv.machine, d, ctx.rip, 12);
    const len = header === undefined ? 0 : new DataView(header.buffer).getUint32(8, true);
    const bytes = len > MAX_IMAGE ? header : copyFromGuest(this.hv.machine, d, ctx.rip, 12 + len);
    const url = bytes === undefined ? new Error(`no kernel image mapped at 0x${ctx.rip.toString(16)}`) : decodeKernelImage(bytes);
    try {
      if (url instanceof Error) throw url;
      this.attachKernel(d, await this.loader(url, d.domid), ctx.rsi);
    } catch (e) {
      this.guestErrors.set(d.domid, e);
      this.hv.log(`domain ${d.domid} failed to boot: ${e instanceof Error ? e.message : String(e)}`);
      this.hv.shutdown(d, SHUTDOWN.crash);
    }
  }

  private startKernel(v: Vcpu, r: VcpuRunner): void {
    const d = v.domain;
    const exit = (error?: unknown) => {
      r.finished = true;
      if (error !== undefined) {
        this.guestErrors.set(d.domid, error);
        this.hv.log(`domain ${d.domid} crashed: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (d.state === "running" || d.state === "paused") this.hv.shutdown(d, error === undefined ? SHUTDOWN.poweroff : SHUTDOWN.crash);
      const end = r.endSlice;
      r.endSlice = undefined;
      end?.();
    };
    let entered: Promise<void>;
    try {
      entered = Promise.resolve(r.entry(r.platform));
    } catch (e) {
      entered = Promise.reject(e);
    }
    entered.then(
      () => exit(),
      (e: unknown) => exit(e ?? new Error("kernel rejected with no reason")),
    );
  }

  /**
   * In realtime mode, waits until the wall clock reaches virtual time `t`.
   * Outside input ({@link Engine.kick}, say a host interrupt) cuts the wait
   * short: virtual time then moves to the wall clock (never past `t`) and the
   * caller plans again, so input is served at once, not at the next timer.
   * @returns whether `t` was reached.
   */
  private async reach(t: number): Promise<boolean> {
    if (this.mode !== "realtime") return true;
    const wait = this.wallStart + t / 1e6 - performance.now();
    if (wait <= 1) return true;
    const reached = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.kickResolve = undefined;
        resolve(true);
      }, wait);
      this.kickResolve = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
    if (!reached) {
      const wallNow = Math.round((performance.now() - this.wallStart) * 1e6);
      if (wallNow > this.hv.now) this.hv.advanceTo(Math.min(wallNow, t));
    }
    return reached;
  }

  /** Waits, without moving virtual time, until host I/O completes (a kick). */
  private waitForHostIo(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      this.kickResolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** In realtime mode with nothing to do: waits for a kick (outside input) and moves virtual time to the wall clock. */
  private async waitForInput(until: number | undefined): Promise<void> {
    const limit = until === undefined ? 1000 : Math.max(0, this.wallStart + until / 1e6 - performance.now());
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, limit);
      this.kickResolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    const wallNow = Math.round((performance.now() - this.wallStart) * 1e6);
    if (wallNow > this.hv.now) this.hv.advanceTo(until === undefined ? wallNow : Math.min(wallNow, until));
  }
}
