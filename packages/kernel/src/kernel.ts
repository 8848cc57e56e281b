/**
 * The kernel: boot from `start_info`, then run the guest's tasks.
 *
 * {@link Kernel.boot} does what Mini-OS's `start_kernel` does, in order:
 * read `start_info`, set up the page allocator past the bootstrap region,
 * map shared_info, install the event upcall, bind `VIRQ_TIMER`, map the grant
 * table and open the console (Xen's for dom0, the console ring for a domU).
 *
 * Guest code is async: a task waits for an event, a timer or a ring by
 * awaiting a promise the kernel resolves from the upcall. When every task
 * waits, {@link kernelMain}'s idle loop blocks the vCPU (`SCHEDOP_block`)
 * until the hypervisor has an event for it.
 *
 * ```ts
 * import { kernelMain } from "@pvkit/kernel";
 *
 * export default kernelMain(async (k) => {
 *   await k.console.write("hello from a domU\n");
 * });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  CALLBACKOP,
  CALLBACKTYPE,
  DOMID,
  HYPERVISOR,
  PAGE_SIZE,
  SCHEDOP,
  SHUTDOWN,
  SIF,
  VIRQ,
  VCPUOP,
  XENMAPSPACE,
  XENMEM,
  XENVER,
  XEN_ERRNO,
  callback_register,
  sched_poll,
  xen_memory_reservation,
  decodeStruct,
  sched_shutdown,
  start_info,
  xen_add_to_physmap,
  type KernelEntry,
  type Platform,
  type StructValue,
} from "@pvkit/abi";
import { HypervisorConsole, RingConsole, type Console } from "./console.js";
import { Events } from "./events.js";
import { Grants } from "./grants.js";
import { ARG_STACK_PAGES, ArgStack, orThrow, result, xenError, type Hypercaller, type XenError } from "./hypercall.js";
import { INVALID_MFN, Memory } from "./memory.js";
import { Clock, Timers } from "./time.js";
import { openXenstore } from "./xenstore-ring.js";
import { startBalloon } from "./balloon.js";

/** What `start_info` told the kernel, decoded. */
export type StartInfo = StructValue<typeof start_info>;

/** A booted guest kernel. */
export class Kernel implements Hypercaller {
  /** The platform it was handed. */
  readonly platform: Platform;
  /** `start_info` as the builder filled it. */
  readonly startInfo: StartInfo;
  /** Its pages and mapping area. */
  readonly memory: Memory;
  /** Scratch memory for hypercall arguments. */
  readonly args: ArgStack;
  /** Event channels. */
  readonly events: Events;
  /** Grant table. */
  readonly grants: Grants;
  /** System time. */
  readonly clock: Clock;
  /** Sleeps and deadlines. */
  readonly timers: Timers;
  /** The console. */
  readonly console: Console;
  /** The port `VIRQ_TIMER` is bound to. */
  readonly timerPort: number;
  /** The command line (`start_info.cmd_line`), e.g. `"role=server peer=2"`. */
  readonly cmdline: string;

  private constructor(platform: Platform) {
    this.platform = platform;
    const mem = platform.memory;
    this.startInfo = decodeStruct(start_info, new DataView(mem.read(platform.startInfo, start_info.size).buffer));
    const si = this.startInfo;
    this.cmdline = cString(si.cmd_line);
    const firstFree = Number(si.pt_base) / PAGE_SIZE + Number(si.nr_pt_frames);
    this.memory = new Memory(mem, Number(si.nr_pages), Number(si.mfn_list), firstFree);

    // Argument stack: the first free pages, which are consecutive at boot.
    const argPfn = this.memory.allocPage();
    for (let i = 1; i < ARG_STACK_PAGES; i++) this.memory.allocPage();
    if (argPfn === undefined) throw new Error("no memory for the hypercall argument stack");
    this.args = new ArgStack(mem, argPfn * PAGE_SIZE, ARG_STACK_PAGES * PAGE_SIZE);

    // shared_info, mapped into the mapping area.
    const sharedInfoVa = this.memory.allocMappingVa();
    orThrow(
      this.args.frame((a) =>
        result(
          "XENMEM_add_to_physmap(shared_info)",
          this.hypercall(HYPERVISOR.memory_op, XENMEM.add_to_physmap, a.put(xen_add_to_physmap, { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: BigInt(sharedInfoVa / PAGE_SIZE) })),
        ),
      ),
    );
    const sharedInfo = mem.page(sharedInfoVa);

    this.events = new Events(this, sharedInfo);
    platform.setUpcall(this.events.upcall);
    orThrow(
      this.args.frame((a) =>
        result("CALLBACKOP_register", this.hypercall(HYPERVISOR.callback_op, CALLBACKOP.register, a.put(callback_register, { type: CALLBACKTYPE.event, flags: 0, address: 0n }))),
      ),
    );

    this.clock = new Clock(sharedInfo);
    this.timers = new Timers(this, this.clock);
    this.timerPort = orThrow(this.events.bindVirq(VIRQ.TIMER));
    this.events.on(this.timerPort, this.timers.onTimer);

    this.grants = new Grants(this, this.memory);
    orThrow(this.grants.init());

    if (si.flags & SIF.INITDOMAIN) this.console = new HypervisorConsole(this);
    else {
      const consolePfn = this.memory.pfnOf(Number(si.console_domU_mfn));
      if (consolePfn === undefined) throw new Error(`start_info names console frame ${si.console_domU_mfn}, which is not in this domain's P2M`);
      const page = mem.page(consolePfn * PAGE_SIZE);
      this.console = new RingConsole(new Uint8Array(page.buffer, page.byteOffset, PAGE_SIZE), si.console_domU_evtchn, this.events);
    }
    sharedInfo.setUint8(1, 0); // vCPU 0's evtchn_upcall_mask: events may now upcall
  }

  /** Boots a kernel on `platform`. Throws if the domain was built wrongly. */
  static boot(platform: Platform): Kernel {
    return new Kernel(platform);
  }

  /** Enters the hypervisor. */
  readonly hypercall: Platform["hypercall"] = (op, a1, a2, a3, a4, a5) => this.platform.hypercall(op, a1, a2, a3, a4, a5);

  /** True for dom0 (`SIF_INITDOMAIN`). */
  get isDom0(): boolean {
    return (this.startInfo.flags & SIF.INITDOMAIN) !== 0;
  }

  /** True if the domain may use privileged operations (`SIF_PRIVILEGED`). */
  get privileged(): boolean {
    return (this.startInfo.flags & SIF.PRIVILEGED) !== 0;
  }

  /** The value of `key=value` on the command line, or undefined. */
  arg(key: string): string | undefined {
    for (const word of this.cmdline.split(/\s+/)) {
      const eq = word.indexOf("=");
      if (eq > 0 && word.slice(0, eq) === key) return word.slice(eq + 1);
    }
    return undefined;
  }

  /** Writes a line to the console. */
  print(line: string): Promise<void> {
    return this.console.write(`${line}\n`);
  }

  /** Resolves after `ns` nanoseconds of system time. */
  sleep(ns: number): Promise<void> {
    return this.timers.sleep(ns);
  }

  /** Xen's version (`XENVER_version`): major and minor. */
  xenVersion(): { readonly major: number; readonly minor: number } {
    const v = this.hypercall(HYPERVISOR.xen_version, XENVER.version, 0);
    return { major: v >>> 16, minor: v & 0xffff };
  }

  /**
   * Grows the reservation by `count` pages (`XENMEM_populate_physmap` at the
   * lowest pfns past the kernel's RAM) and hands them to the page allocator.
   * @returns the pfns populated — possibly fewer than asked, when the domain
   * reached `max_pages` — or the error if none could be.
   */
  increaseReservation(count: number): E.Either<XenError, number[]> {
    const pfns = this.memory.unpopulatedPfns(count);
    return this.args.frame((a) => {
      const list = a.alloc(count * 8);
      const view = new DataView(new ArrayBuffer(count * 8));
      pfns.forEach((pfn, i) => view.setBigUint64(i * 8, BigInt(pfn), true));
      a.memory.write(list, new Uint8Array(view.buffer));
      const rc = this.hypercall(HYPERVISOR.memory_op, XENMEM.populate_physmap, a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: BigInt(count), extent_order: 0, domid: DOMID.SELF }));
      if (rc <= 0) return E.left(xenError("XENMEM_populate_physmap", rc < 0 ? rc : -XEN_ERRNO.ENOMEM));
      const out = new DataView(a.memory.read(list, rc * 8).buffer);
      const done = pfns.slice(0, rc);
      done.forEach((pfn, i) => this.memory.setMfn(pfn, Number(out.getBigUint64(i * 8, true))));
      this.memory.addPages(done);
      return E.right(done);
    });
  }

  /**
   * Gives free pages back (`XENMEM_decrease_reservation`), as a balloon
   * driver does. The pages must be free in the allocator.
   * @returns how many the hypervisor took.
   */
  decreaseReservation(pfns: readonly number[]): E.Either<XenError, number> {
    if (!this.memory.takeFree(pfns)) return E.left({ op: "decrease_reservation", code: -XEN_ERRNO.EINVAL, name: "EINVAL", message: "decrease_reservation: a page to give back is in use" });
    return this.args.frame((a) => {
      const list = a.alloc(pfns.length * 8);
      const view = new DataView(new ArrayBuffer(pfns.length * 8));
      pfns.forEach((pfn, i) => view.setBigUint64(i * 8, BigInt(pfn), true));
      a.memory.write(list, new Uint8Array(view.buffer));
      const rc = this.hypercall(HYPERVISOR.memory_op, XENMEM.decrease_reservation, a.put(xen_memory_reservation, { extent_start: BigInt(list), nr_extents: BigInt(pfns.length), extent_order: 0, domid: DOMID.SELF }));
      const given = Math.max(0, rc);
      pfns.slice(0, given).forEach((pfn) => this.memory.setMfn(pfn, INVALID_MFN));
      this.memory.addPages(pfns.slice(given)); // what Xen did not take stays ours
      return result("XENMEM_decrease_reservation", rc);
    });
  }

  /** Brings vCPU `id` up or down (`VCPUOP_up`/`VCPUOP_down`). */
  vcpu(id: number, up: boolean): E.Either<XenError, number> {
    return result(up ? "VCPUOP_up" : "VCPUOP_down", this.hypercall(HYPERVISOR.vcpu_op, up ? VCPUOP.up : VCPUOP.down, id, 0));
  }

  /** Whether vCPU `id` is up (`VCPUOP_is_up`). */
  vcpuIsUp(id: number): E.Either<XenError, boolean> {
    return E.map((n: number) => n === 1)(result("VCPUOP_is_up", this.hypercall(HYPERVISOR.vcpu_op, VCPUOP.is_up, id, 0)));
  }

  /** Lets other vCPUs run (`SCHEDOP_yield`), resolving when this one runs again. */
  async yield(): Promise<void> {
    this.hypercall(HYPERVISOR.sched_op, SCHEDOP.yield);
    await this.platform.descheduled();
  }

  /**
   * Sleeps until one of `ports` is pending or `timeoutNs` of system time has
   * passed (`SCHEDOP_poll`; 0: no timeout), without an upcall.
   */
  async poll(ports: readonly number[], timeoutNs = 0): Promise<E.Either<XenError, void>> {
    const deadline = timeoutNs === 0 ? 0 : this.clock.now() + timeoutNs;
    const rc = this.args.frame((a) => {
      const list = a.alloc(ports.length * 4);
      const view = new DataView(new ArrayBuffer(ports.length * 4));
      ports.forEach((p, i) => view.setUint32(i * 4, p, true));
      a.memory.write(list, new Uint8Array(view.buffer));
      return this.hypercall(HYPERVISOR.sched_op, SCHEDOP.poll, a.put(sched_poll, { ports: BigInt(list), nr_ports: ports.length, timeout: BigInt(deadline) }));
    });
    if (rc < 0) return E.left(xenError("SCHEDOP_poll", rc));
    await this.platform.descheduled();
    return E.right(undefined);
  }

  /** Shuts the domain down with `reason` (`SCHEDOP_shutdown`); the vCPU stops with it. */
  shutdown(reason: number = SHUTDOWN.poweroff): E.Either<XenError, number> {
    return this.args.frame((a) => result("SCHEDOP_shutdown", this.hypercall(HYPERVISOR.sched_op, SCHEDOP.shutdown, a.put(sched_shutdown, { reason }))));
  }

  /**
   * Waits until `ready()` holds, re-checking after every event on `port`.
   * The check comes first, so a condition already true costs nothing.
   */
  async until(port: number, ready: () => boolean): Promise<void> {
    while (!ready()) await this.events.wait(port);
  }
}

/** The text of a NUL-terminated C string. */
function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** What the toolstack may write to a guest's `control/shutdown`, and the reason each asks for. */
const SHUTDOWN_REQUESTS: Readonly<Record<string, number>> = { poweroff: SHUTDOWN.poweroff, halt: SHUTDOWN.poweroff, reboot: SHUTDOWN.reboot, crash: SHUTDOWN.crash };

/**
 * Watches `control/shutdown`, as every PV guest's xenbus code does: when the
 * toolstack (`xl shutdown`, `xl reboot`) writes a request there, the guest
 * acknowledges it by clearing the key and shuts down with that reason.
 */
async function honourShutdownRequests(k: Kernel): Promise<void> {
  const xs = openXenstore(k);
  try {
    for await (const _ of xs.watch("control/shutdown", "shutdown")) {
      const asked = await xs.read("control/shutdown")();
      const reason = E.isRight(asked) ? SHUTDOWN_REQUESTS[asked.right] : undefined;
      if (reason === undefined) continue;
      await xs.write("control/shutdown", "")();
      k.shutdown(reason);
      return;
    }
  } catch {
    // The XenStore connection broke (the guest may have wrecked its own ring): no request can come now.
  }
}

/** Lets every task that can run, run until it waits again. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Makes a kernel entry from `main`: boot, run `main`, and idle (blocking the
 * vCPU) whenever every task waits. When `main` returns the domain powers
 * off; when it throws, the domain crashes with the error on Xen's console.
 */
export function kernelMain(main: (k: Kernel) => Promise<void>): KernelEntry {
  return async (platform) => {
    const k = Kernel.boot(platform);
    if (!k.isDom0 && k.startInfo.store_mfn !== 0n) void honourShutdownRequests(k);
    if (!k.isDom0 && k.startInfo.store_mfn !== 0n) startBalloon(k);
    let done = false;
    let failure: { error: unknown } | undefined;
    main(k).then(
      () => (done = true),
      (error: unknown) => {
        failure = { error };
        done = true;
      },
    );
    for (;;) {
      await settle();
      if (done) break;
      const upcalls = k.events.upcalls;
      platform.hypercall(HYPERVISOR.sched_op, SCHEDOP.block);
      // An event was already waiting: the block returned at once and its upcall ran on the way out.
      // The tasks it woke must run now, inside this slice, before the vCPU gives up its pCPU.
      if (k.events.upcalls !== upcalls) continue;
      await platform.descheduled();
    }
    if (failure !== undefined) throw failure.error;
    k.shutdown(SHUTDOWN.poweroff);
    await platform.descheduled();
  };
}
