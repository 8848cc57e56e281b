import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import {
  DOMID,
  EVTCHNOP,
  GNTST,
  GTF,
  GuestFault,
  HYPERVISOR,
  PAGE_SIZE,
  SHUTDOWN,
  VIRQ,
  encodeKernelImage,
  evtchn_send,
  multicall_entry,
  planBootLayout,
  sched_shutdown,
  type GuestMemory,
} from "@pvkit/abi";
import { bootHost, checkInvariants, type Domain, type Engine, type Hypervisor, type StopReason } from "@pvkit/hypervisor";
import { ArgStack, ENTRIES_PER_FRAME, MAPPING_AREA_VPN, grantError, kernelMain, orThrow, result, xenError, type Kernel, type XenError } from "@pvkit/kernel";

const MS = 1_000_000;
const SECOND = 1_000_000_000;
const PAGES = 256;
const CMDLINE = "a=1 b=two flag =bad c=x=y";

interface Run {
  readonly hv: Hypervisor;
  readonly engine: Engine;
  readonly dom0: Domain;
  readonly stop: StopReason;
}

/** Boots a host whose dom0 runs `main` as an inline kernel, and runs it to the end. */
async function boot(main: (k: Kernel) => Promise<void>, cmdline = CMDLINE): Promise<Run> {
  const { hv, engine, dom0 } = bootHost({ frames: 4096, pcpus: 1, dom0: { kernel: kernelMain(main), pages: PAGES, cmdline } });
  // A bound on virtual time, so a test that never finishes fails instead of hanging.
  const stop = await engine.run({ until: 60 * SECOND });
  return { hv, engine, dom0, stop };
}

/** The run ended as a successful kernel does: no guest error, powered off, every invariant holding. */
function expectClean(r: Run): void {
  expect([...r.engine.guestErrors]).toEqual([]);
  expect(r.stop).toBe("idle");
  expect(r.dom0.state).toBe("shutdown");
  expect(r.dom0.shutdownReason).toBe(SHUTDOWN.poweroff);
  expect(checkInvariants(r.hv)).toEqual([]);
}

/** A Left's error, or a failure. */
function leftOf<T>(e: E.Either<XenError, T>): XenError {
  if (E.isRight(e)) throw new Error(`expected an error, got ${String(e.right)}`);
  return e.left;
}

/** Sends on every port of `ports` in one `multicall`, so no upcall comes between them; returns each send's result. */
function sendAll(k: Kernel, ports: readonly number[]): { rc: number; results: number[] } {
  return k.args.frame((a) => {
    const sends = ports.map((port) => a.put(evtchn_send, { port }));
    const entries = sends.map((va) => a.put(multicall_entry, { op: BigInt(HYPERVISOR.event_channel_op), args: [BigInt(EVTCHNOP.send), BigInt(va), 0n, 0n, 0n, 0n] }));
    entries.forEach((va, i) => {
      if (va !== entries[0]! + i * multicall_entry.size) throw new Error("multicall entries are not contiguous");
    });
    const rc = k.hypercall(HYPERVISOR.multicall, entries[0]!, entries.length);
    return { rc, results: entries.map((va) => Number(BigInt.asIntN(64, a.get(multicall_entry, va).result))) };
  });
}

// ---------------------------------------------------------------------------

describe("named errors and results", () => {
  it("turns a non-negative result into Right and a negative errno into a named Left", () => {
    expect(result("EVTCHNOP_send", 0)).toEqual(E.right(0));
    expect(result("EVTCHNOP_bind_ipi", 7)).toEqual(E.right(7));
    expect(result("EVTCHNOP_send", -22)).toEqual(E.left({ op: "EVTCHNOP_send", code: -22, name: "EINVAL", message: "EVTCHNOP_send: EINVAL" }));
    expect(leftOf(result("SCHEDOP_poll", -14)).name).toBe("EFAULT");
    expect(leftOf(result("SCHEDOP_remote_shutdown", -3)).name).toBe("ESRCH");
  });

  it("names errno values Xen does not define by number", () => {
    expect(xenError("op", -9999)).toEqual({ op: "op", code: -9999, name: "E9999", message: "op: E9999" });
  });

  it("names GNTST statuses with their C names", () => {
    expect(grantError("GNTTABOP_map_grant_ref", GNTST.bad_gntref)).toEqual({
      op: "GNTTABOP_map_grant_ref",
      code: GNTST.bad_gntref,
      name: "GNTST_bad_gntref",
      message: "GNTTABOP_map_grant_ref: GNTST_bad_gntref",
    });
    expect(grantError("GNTTABOP_copy", GNTST.permission_denied).name).toBe("GNTST_permission_denied");
  });

  it("unwraps a Right with orThrow, and throws a Left's message with the error attached", () => {
    expect(orThrow(E.right(5))).toBe(5);
    const err = xenError("EVTCHNOP_close", -22);
    let thrown: unknown;
    try {
      orThrow(E.left(err));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as Error).message).toBe("EVTCHNOP_close: EINVAL");
    expect((thrown as { xen?: XenError }).xen).toEqual(err);
  });
});

/** Flat memory for the argument stack: `pages` pages at virtual address 0. */
class FlatMemory implements GuestMemory {
  readonly bytes: Uint8Array;
  constructor(pages: number) {
    this.bytes = new Uint8Array(pages * PAGE_SIZE);
  }
  page(va: number): DataView {
    if (va < 0 || va >= this.bytes.byteLength) throw new GuestFault(va, "page access");
    return new DataView(this.bytes.buffer, Math.floor(va / PAGE_SIZE) * PAGE_SIZE, PAGE_SIZE);
  }
  read(va: number, length: number): Uint8Array {
    if (va < 0 || va + length > this.bytes.byteLength) throw new GuestFault(va, "read");
    return this.bytes.slice(va, va + length);
  }
  write(va: number, data: Uint8Array): void {
    if (va < 0 || va + data.byteLength > this.bytes.byteLength) throw new GuestFault(va, "write");
    this.bytes.set(data, va);
  }
}

describe("ArgStack", () => {
  const BASE = PAGE_SIZE;
  const BYTES = 2 * PAGE_SIZE;

  it("writes zeroed structs with the values given, and reads them back", () => {
    const mem = new FlatMemory(4);
    mem.bytes.fill(0xaa);
    const stack = new ArgStack(mem, BASE, BYTES);
    const out = stack.frame((a) => {
      const va = a.put(sched_shutdown, { reason: SHUTDOWN.reboot });
      const empty = a.put(evtchn_send, {});
      return { va, empty, reason: a.get(sched_shutdown, va).reason, port: a.get(evtchn_send, empty).port };
    });
    expect(out).toEqual({ va: BASE, empty: BASE + 8, reason: SHUTDOWN.reboot, port: 0 });
    expect([...mem.bytes.subarray(BASE, BASE + 4)]).toEqual([SHUTDOWN.reboot, 0, 0, 0]);
  });

  it("allocates 8-aligned, nests frames, and pops each when it returns or throws", () => {
    const stack = new ArgStack(new FlatMemory(4), BASE, BYTES);
    const seen: number[] = [];
    stack.frame((outer) => {
      seen.push(outer.alloc(3), outer.alloc(1));
      stack.frame((inner) => void seen.push(inner.alloc(16)));
      stack.frame((inner) => void seen.push(inner.alloc(16)));
      expect(() =>
        stack.frame((inner) => {
          seen.push(inner.alloc(100));
          throw new Error("handler failed");
        }),
      ).toThrow("handler failed");
      seen.push(outer.alloc(8));
    });
    seen.push(stack.frame((a) => a.alloc(8)));
    expect(seen).toEqual([BASE, BASE + 8, BASE + 16, BASE + 16, BASE + 16, BASE + 16, BASE]);
  });

  it("fills exactly, refuses one byte more with an overflow error, and recovers", () => {
    const stack = new ArgStack(new FlatMemory(4), BASE, BYTES);
    expect(stack.frame((a) => a.alloc(BYTES))).toBe(BASE);
    expect(() => stack.frame((a) => a.alloc(BYTES + 1))).toThrow("hypercall argument stack overflow");
    expect(() =>
      stack.frame((a) => {
        a.alloc(BYTES - 8);
        stack.frame((b) => b.alloc(16));
      }),
    ).toThrow("hypercall argument stack overflow");
    expect(stack.frame((a) => a.alloc(8))).toBe(BASE);
  });
});

describe("Kernel.boot", () => {
  it("reads start_info: command line, privilege, memory and the P2M", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      got.cmdline = k.cmdline;
      got.args = ["a", "b", "c", "flag", "", "missing"].map((key) => k.arg(key));
      got.isDom0 = k.isDom0;
      got.privileged = k.privileged;
      got.nrPages = k.memory.nrPages;
      got.firstFreePfn = k.memory.firstFreePfn;
      got.freePages = k.memory.freePages;
      got.p2m = Array.from({ length: k.memory.nrPages }, (_, pfn) => k.memory.mfnOf(pfn));
      got.pfnOf = k.memory.pfnOf(k.memory.mfnOf(100));
      got.pfnOfForeign = k.memory.pfnOf(0x7fffffff);
      got.startNrPages = k.startInfo.nr_pages;
      got.timerPort = k.timerPort;
    });
    expectClean(r);
    const layout = planBootLayout(PAGES, encodeKernelImage("pvkit:inline-dom0-kernel").byteLength);
    expect(got.cmdline).toBe(CMDLINE);
    expect(got.args).toEqual(["1", "two", "x=y", undefined, undefined, undefined]);
    expect([got.isDom0, got.privileged]).toEqual([true, true]);
    expect(got.nrPages).toBe(PAGES);
    expect(got.startNrPages).toBe(BigInt(PAGES));
    expect(got.firstFreePfn).toBe(layout.firstFreePfn);
    // The argument stack took four pages past the bootstrap region.
    expect(got.freePages).toBe(PAGES - layout.firstFreePfn - 4);
    expect(got.p2m).toEqual(Array.from({ length: PAGES }, (_, pfn) => r.dom0.pfnToMfn(pfn)));
    expect([got.pfnOf, got.pfnOfForeign]).toEqual([100, undefined]);
    expect(got.timerPort).toBe(r.hv.evtchn.get(r.dom0)!.virqToPort[0]![VIRQ.TIMER]);
  });

  it("hands out free pages lowest first, zeroed, and refuses to free what it never gave", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const m = k.memory;
      const before = m.freePages;
      const a = m.allocPage()!;
      const b = m.allocPage()!;
      got.pair = [a, b, before - m.freePages];
      m.memory.write(a * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0x5a));
      m.freePage(a);
      const again = m.allocPage()!;
      got.again = [again, m.memory.read(again * PAGE_SIZE, PAGE_SIZE).every((x) => x === 0)];
      got.errors = [() => m.freePage(0), () => m.freePage(PAGES), () => m.freePage(b + 1)].map((f) => {
        try {
          f();
          return "freed";
        } catch (e) {
          return (e as Error).message;
        }
      });
      m.freePage(b);
      got.doubleFree = (() => {
        try {
          m.freePage(b);
          return "freed";
        } catch (e) {
          return (e as Error).message;
        }
      })();
      const va = m.allocMappingVa();
      got.mapping = [va, m.allocMappingVa()];
      m.freeMappingVa(va);
      got.mappingReused = m.allocMappingVa() === va;
    });
    expectClean(r);
    const layout = planBootLayout(PAGES, encodeKernelImage("pvkit:inline-dom0-kernel").byteLength);
    const first = layout.firstFreePfn + 4;
    expect(got.pair).toEqual([first, first + 1, 2]);
    expect(got.again).toEqual([first, true]);
    expect(got.errors).toEqual([expect.stringContaining("pfn 0"), expect.stringContaining(`pfn ${PAGES}`), expect.stringContaining(`pfn ${first + 2}`)]);
    expect(got.doubleFree).toContain(`pfn ${first + 1}`);
    // shared_info and the first grant frame took the first two pages of the mapping area.
    expect(got.mapping).toEqual([(MAPPING_AREA_VPN + 2) * PAGE_SIZE, (MAPPING_AREA_VPN + 3) * PAGE_SIZE]);
    expect(got.mappingReused).toBe(true);
  });

  it("writes to Xen's console as dom0", async () => {
    const r = await boot(async (k) => {
      await k.print("hello from dom0");
      await k.console.write("two\nlines\n");
      if (k.console.read().byteLength !== 0) throw new Error("dom0's console has input");
    });
    expectClean(r);
    expect(r.hv.console).toEqual(expect.arrayContaining(["hello from dom0", "two", "lines"]));
  });
});

describe("hypercall errors through the typed API", () => {
  it("names the failing operation and Xen's error", async () => {
    const got: XenError[] = [];
    const r = await boot(async (k) => {
      got.push(leftOf(k.events.bindInterdomain(77, 1)));
      got.push(leftOf(k.events.notify(4000)));
      got.push(leftOf(k.events.bindIpi(5)));
      got.push(leftOf(k.events.close(0)));
    });
    expectClean(r);
    expect(got.map((e) => [e.op, e.name, e.code])).toEqual([
      ["EVTCHNOP_bind_interdomain", "ESRCH", -3],
      ["EVTCHNOP_send", "EINVAL", -22],
      ["EVTCHNOP_bind_ipi", "ENOENT", -2],
      ["EVTCHNOP_close", "EINVAL", -22],
    ]);
    expect(got[0]!.message).toBe("EVTCHNOP_bind_interdomain: ESRCH");
  });
});

describe("Events", () => {
  it("calls a port's handler on each event until it is turned off, counting every event", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const p = orThrow(ev.bindIpi(0));
      const seen: number[] = [];
      ev.on(p, (port) => seen.push(port));
      orThrow(ev.notify(p));
      got.afterOne = [...seen]; // delivered by the upcall on return from the send
      orThrow(ev.notify(p));
      ev.off(p);
      orThrow(ev.notify(p));
      got.afterOff = [...seen];
      got.count = ev.counts.get(p);
      const other: number[] = [];
      ev.on(p, (port) => other.push(port)); // a new handler replaces the old
      orThrow(ev.notify(p));
      got.replaced = [seen.length, other];
      got.port = p;
    });
    expectClean(r);
    const p = got.port as number;
    expect(got.afterOne).toEqual([p]);
    expect(got.afterOff).toEqual([p, p]);
    expect(got.count).toBe(3);
    expect(got.replaced).toEqual([2, [p]]);
  });

  it("resolves wait() at once for an event that came before it, and later for one that comes after", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const p = orThrow(ev.bindIpi(0));
      orThrow(ev.notify(p));
      got.firedBefore = ev.hasFired(p);
      await ev.wait(p);
      got.firedAfter = ev.hasFired(p);
      // Nothing pending now: wait() must not resolve until an event comes.
      const waiting = ev.wait(p).then(() => "event");
      got.race = await Promise.race([waiting, k.sleep(MS).then(() => "timeout")]);
      orThrow(ev.notify(p));
      got.then = await waiting;
      // Two waiters on one port both wake on the next event.
      const both = Promise.all([ev.wait(p), ev.wait(p)]);
      orThrow(ev.notify(p));
      await both;
      got.both = true;
    });
    expectClean(r);
    expect(got).toEqual({ firedBefore: true, firedAfter: false, race: "timeout", then: "event", both: true });
  });

  it("keeps a masked port pending without an upcall, and delivers it on unmask", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const p = orThrow(ev.bindIpi(0));
      let calls = 0;
      ev.on(p, () => calls++);
      ev.mask(p);
      orThrow(ev.notify(p));
      got.masked = [calls, ev.isPending(p), ev.counts.get(p)];
      got.unmask = ev.unmask(p);
      got.unmasked = [calls, ev.isPending(p), ev.counts.get(p)];
      // Unmasking a port with nothing pending delivers nothing.
      orThrow(ev.unmask(p));
      got.again = calls;
    });
    expectClean(r);
    expect(got.masked).toEqual([0, true, undefined]);
    expect(got.unmask).toEqual(E.right(0));
    expect(got.unmasked).toEqual([1, false, 1]);
    expect(got.again).toBe(1);
  });

  it("closes a port: sends on it fail, and so does closing it again", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const p = orThrow(ev.bindIpi(0));
      let calls = 0;
      ev.on(p, () => calls++);
      got.close = ev.close(p);
      got.send = leftOf(ev.notify(p)).name;
      got.closeAgain = leftOf(ev.close(p)).message;
      // The port is free again: the next binding takes it, with no handler left over.
      const q = orThrow(ev.bindIpi(0));
      orThrow(ev.notify(q));
      got.reused = [q === p, calls];
    });
    expectClean(r);
    expect(got).toEqual({ close: E.right(0), send: "EINVAL", closeAgain: "EVTCHNOP_close: EINVAL", reused: [true, 0] });
  });

  it("connects two of its own ports (alloc_unbound for itself, then bind_interdomain)", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const a = orThrow(ev.allocUnbound(DOMID.SELF));
      const b = orThrow(ev.bindInterdomain(DOMID.SELF, a));
      // Xen marks the new local end pending when it connects, in case a send was lost.
      got.boundFired = ev.hasFired(b);
      await ev.wait(b);
      const seen: string[] = [];
      ev.on(a, () => seen.push("a"));
      ev.on(b, () => seen.push("b"));
      orThrow(ev.notify(a));
      orThrow(ev.notify(b));
      orThrow(ev.notify(a));
      got.seen = seen;
      got.ports = [a, b];
    });
    expectClean(r);
    expect(got.boundFired).toBe(true);
    expect(got.seen).toEqual(["b", "a", "b"]);
    const [a, b] = got.ports as number[];
    const ec = r.hv.evtchn.get(r.dom0)!;
    expect([ec.remoteDomid[a!], ec.remotePort[a!], ec.remoteDomid[b!], ec.remotePort[b!]]).toEqual([0, b, 0, a]);
  });

  it("scans every pending port across several bitmap words in one upcall, each handler once", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const targets: number[] = []; // the port to send on for each handler's port to fire
      const ports: number[] = [];
      for (let i = 0; i < 60; i++) {
        const a = orThrow(ev.allocUnbound(DOMID.SELF));
        const b = orThrow(ev.bindInterdomain(DOMID.SELF, a));
        ports.push(a, b);
        targets.push(b, a); // a send on one end fires the other
      }
      for (let i = 0; i < 80; i++) {
        const p = orThrow(ev.bindIpi(0));
        ports.push(p);
        targets.push(p);
      }
      const before = new Map(ports.map((p) => [p, ev.counts.get(p) ?? 0]));
      const order: number[] = [];
      for (const p of ports) ev.on(p, (port) => order.push(port));
      // Highest port first: if one upcall scans them all, handlers still run in port order.
      const sends = targets.map((t, i) => ({ t, p: ports[i]! })).sort((x, y) => y.p - x.p);
      got.multicall = sendAll(k, sends.map((s) => s.t));
      got.order = order;
      got.delta = ports.map((p) => (ev.counts.get(p) ?? 0) - before.get(p)!);
      got.ports = ports;
      got.pendingLeft = ports.filter((p) => ev.isPending(p));
    });
    expectClean(r);
    const ports = got.ports as number[];
    expect(ports).toHaveLength(200);
    expect(Math.max(...ports)).toBeGreaterThan(3 * 64); // four 64-bit words, eight 32-bit halves
    expect(got.multicall).toEqual({ rc: 0, results: Array(200).fill(0) });
    expect(got.order).toEqual([...ports].sort((x, y) => x - y));
    expect(got.delta).toEqual(Array(200).fill(1));
    expect(got.pendingLeft).toEqual([]);
  });

  it("dispatches ports in the upper half of the selector, up to port 4095, and runs out of ports after it", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      let last = 0;
      for (;;) {
        const p = orThrow(ev.allocUnbound(DOMID.SELF));
        last = p;
        if (p === 4094) break;
      }
      orThrow(ev.close(2047));
      orThrow(ev.close(2048));
      const ipis = [orThrow(ev.bindIpi(0)), orThrow(ev.bindIpi(0)), orThrow(ev.bindIpi(0))];
      got.full = leftOf(ev.bindIpi(0)).name;
      const order: number[] = [];
      for (const p of ipis) ev.on(p, (port) => order.push(port));
      got.multicall = sendAll(k, [...ipis].reverse()).rc;
      got.order = order;
      got.ipis = ipis;
      got.last = last;
    });
    expectClean(r);
    expect(got.last).toBe(4094);
    expect(got.ipis).toEqual([2047, 2048, 4095]);
    expect(got.full).toBe("ENOSPC");
    expect(got.multicall).toBe(0);
    expect(got.order).toEqual([2047, 2048, 4095]);
  });

  it("waits with until() for a condition, re-checking after each event", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const ev = k.events;
      const p = orThrow(ev.bindIpi(0));
      let hits = 0;
      ev.on(p, () => hits++);
      await k.until(p, () => true); // already true: returns without an event
      const done = k.until(p, () => hits >= 3).then(() => hits);
      for (let i = 0; i < 3; i++) {
        await k.sleep(MS);
        orThrow(ev.notify(p));
      }
      got.hits = await done;
    });
    expectClean(r);
    expect(got.hits).toBe(3);
  });
});

describe("Timers", () => {
  it("a cancelled timeout never fires and no longer keeps the vCPU's timer armed; others still fire in order", async () => {
    const got: Record<string, unknown> = {};
    let deadline = (): number | undefined => undefined;
    const main = async (k: Kernel) => {
      const start = k.clock.now();
      const far = k.timers.timeout(10 * SECOND);
      const near = k.timers.timeout(2 * MS);
      let farFired = false;
      void far.fired.then(() => (farFired = true));
      got.armedNear = deadline() === near.deadline && near.deadline - start >= 2 * MS;
      near.cancel();
      got.armedFar = deadline() === far.deadline; // the next deadline takes its place
      far.cancel();
      got.disarmed = deadline() === undefined;
      far.cancel(); // again: nothing
      const order: string[] = [];
      const a = k.timers.timeout(3 * MS);
      await Promise.all([k.sleep(1 * MS).then(() => order.push("sleep")), a.fired.then(() => order.push("timeout"))]);
      got.order = order;
      await k.sleep(20 * MS);
      got.farFired = farFired;
      got.endedBy = k.clock.now() - start < SECOND;
    };
    const { hv, engine, dom0 } = bootHost({ frames: 4096, pcpus: 1, dom0: { kernel: kernelMain(main), pages: PAGES } });
    deadline = () => dom0.vcpus[0]!.singleshotDeadline;
    expectClean({ hv, engine, dom0, stop: await engine.run({ until: 60 * SECOND }) });
    expect(got).toEqual({ armedNear: true, armedFar: true, disarmed: true, order: ["sleep", "timeout"], farFired: false, endedBy: true });
  });
});

describe("Grants", () => {
  it("hands out references from 8 (0 to 7 are reserved) and reuses one ended", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const g = k.grants;
      const mfn = k.memory.mfnOf(k.memory.allocPage()!);
      const a = orThrow(g.grantAccess(0, mfn));
      const b = orThrow(g.grantAccess(0, mfn, true));
      got.refs = [a, b];
      got.flags = [g.flags(a), g.flags(b)];
      got.end = g.endAccess(a);
      got.endedFlags = g.flags(a);
      got.reused = orThrow(g.grantAccess(0, mfn));
      got.reserved = [0, 1, 7].map((ref) => leftOf(g.endAccess(ref)).name);
      got.beyond = leftOf(g.endAccess(ENTRIES_PER_FRAME * 10)).name;
    });
    expectClean(r);
    expect(got.refs).toEqual([8, 9]);
    expect(got.flags).toEqual([GTF.permit_access, GTF.permit_access | GTF.readonly]);
    expect(got.end).toEqual(E.right(undefined));
    expect(got.endedFlags).toBe(0);
    expect(got.reused).toBe(8);
    expect(got.reserved).toEqual(["GNTST_bad_gntref", "GNTST_bad_gntref", "GNTST_bad_gntref"]);
    expect(got.beyond).toBe("GNTST_bad_gntref");
  });

  it("refuses to end access to a reference twice, so it is never handed out to two grants", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const g = k.grants;
      const mfn = k.memory.mfnOf(k.memory.allocPage()!);
      const a = orThrow(g.grantAccess(0, mfn));
      orThrow(g.endAccess(a));
      got.second = g.endAccess(a);
      got.neverGranted = g.endAccess(100);
      got.next = [orThrow(g.grantAccess(0, mfn)), orThrow(g.grantAccess(0, mfn))];
    });
    expectClean(r);
    expect(E.isLeft(got.second as E.Either<XenError, void>)).toBe(true);
    expect(leftOf(got.second as E.Either<XenError, void>).name).toBe("GNTST_bad_gntref");
    expect(leftOf(got.neverGranted as E.Either<XenError, void>).name).toBe("GNTST_bad_gntref");
    expect(got.next).toEqual([8, 9]);
  });

  it("grows the table by a frame past its first 512 references", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const g = k.grants;
      const pfn = k.memory.allocPage()!;
      const mfn = k.memory.mfnOf(pfn);
      const refs: number[] = [];
      for (let i = 0; i < ENTRIES_PER_FRAME - 8; i++) refs.push(orThrow(g.grantAccess(0, mfn)));
      got.firstFrame = [refs[0], refs.at(-1), new Set(refs).size];
      const next = orThrow(g.grantAccess(0, mfn));
      got.next = next;
      // The hypervisor sees the entry in the new frame: the domain can map it.
      const m = orThrow(g.map(0, next));
      got.mapped = m.ref;
      k.memory.memory.write(pfn * PAGE_SIZE, new TextEncoder().encode("frame 1"));
      got.through = new TextDecoder().decode(k.memory.memory.read(m.va, 7));
      orThrow(g.unmap(m));
      orThrow(g.endAccess(next));
    });
    expectClean(r);
    expect(got.firstFrame).toEqual([8, ENTRIES_PER_FRAME - 1, ENTRIES_PER_FRAME - 8]);
    expect(got.next).toBe(ENTRIES_PER_FRAME);
    expect(got.mapped).toBe(ENTRIES_PER_FRAME);
    expect(got.through).toBe("frame 1");
    expect(r.hv.grants.get(r.dom0)!.frames).toHaveLength(2);
  });

  it("refuses to end access while its own grant is mapped, and ends it once unmapped", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const g = k.grants;
      const pfn = k.memory.allocPage()!;
      const ref = orThrow(g.grantAccess(0, k.memory.mfnOf(pfn)));
      const m = orThrow(g.map(0, ref));
      got.flagsMapped = g.flags(ref);
      k.memory.memory.write(m.va + 100, new TextEncoder().encode("through the grant"));
      got.inPage = new TextDecoder().decode(k.memory.memory.read(pfn * PAGE_SIZE + 100, 17));
      const refused = leftOf(g.endAccess(ref));
      got.refused = [refused.name, refused.op, refused.message];
      got.stillGranted = g.flags(ref) & GTF.type_mask;
      got.unmap = g.unmap(m);
      got.flagsUnmapped = g.flags(ref);
      got.end = g.endAccess(ref);
      got.badMap = leftOf(g.map(0, ref)).name; // access ended: nothing to map
      got.va = m.va;
    });
    expectClean(r);
    expect(got.flagsMapped).toBe(GTF.permit_access | GTF.reading | GTF.writing);
    expect(got.inPage).toBe("through the grant");
    expect(got.refused).toEqual(["GNTST_general_error", "end_foreign_access", expect.stringContaining("still mapped")]);
    expect(got.stillGranted).toBe(GTF.permit_access);
    expect(got.unmap).toEqual(E.right(undefined));
    expect(got.flagsUnmapped).toBe(GTF.permit_access);
    expect(got.end).toEqual(E.right(undefined));
    expect(got.badMap).toBe("GNTST_general_error");
    expect(r.dom0.mappings.has((got.va as number) / PAGE_SIZE)).toBe(false);
  });

  it("copies between its own pages through a grant, either way", async () => {
    const got: Record<string, unknown> = {};
    const r = await boot(async (k) => {
      const g = k.grants;
      const mem = k.memory.memory;
      const src = k.memory.allocPage()!;
      const dst = k.memory.allocPage()!;
      mem.write(src * PAGE_SIZE, Uint8Array.from({ length: PAGE_SIZE }, (_, i) => i & 0xff));
      const ref = orThrow(g.grantAccess(0, k.memory.mfnOf(src)));
      got.fromGrant = g.copy({ domid: 0, ref, offset: 16 }, { pfn: dst, offset: 100 }, 50);
      got.dst = [...mem.read(dst * PAGE_SIZE + 100, 50)];
      got.untouched = [mem.read(dst * PAGE_SIZE + 99, 1)[0], mem.read(dst * PAGE_SIZE + 150, 1)[0]];
      // And into a granted page, from a local one.
      const back = orThrow(g.grantAccess(0, k.memory.mfnOf(dst)));
      got.toGrant = g.copy({ pfn: src, offset: 0 }, { domid: DOMID.SELF, ref: back, offset: 0 }, 8);
      got.back = [...mem.read(dst * PAGE_SIZE, 8)];
      got.badRef = leftOf(g.copy({ domid: 0, ref: 4000, offset: 0 }, { pfn: dst, offset: 0 }, 8));
      got.readonly = leftOf(g.copy({ pfn: src, offset: 0 }, { domid: 0, ref: orThrow(g.grantAccess(0, k.memory.mfnOf(dst), true)), offset: 0 }, 8)).name;
    });
    expectClean(r);
    expect(got.fromGrant).toEqual(E.right(undefined));
    expect(got.dst).toEqual(Array.from({ length: 50 }, (_, i) => (16 + i) & 0xff));
    expect(got.untouched).toEqual([0, 0]);
    expect(got.toGrant).toEqual(E.right(undefined));
    expect(got.back).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect((got.badRef as XenError).op).toBe("GNTTABOP_copy");
    expect((got.badRef as XenError).name).toBe("GNTST_bad_gntref");
    // Xen refuses to write-pin a read-only grant with GNTST_general_error.
    expect(got.readonly).toBe("GNTST_general_error");
  });

  it("names a refused map", async () => {
    const got: XenError[] = [];
    const r = await boot(async (k) => {
      got.push(leftOf(k.grants.map(0, 3000)));
      got.push(leftOf(k.grants.map(77, 8)));
    });
    expectClean(r);
    expect(got.map((e) => [e.op, e.name])).toEqual([
      ["GNTTABOP_map_grant_ref", "GNTST_bad_gntref"],
      ["GNTTABOP_map_grant_ref", "GNTST_bad_domain"],
    ]);
  });
});

describe("time", () => {
  it("sleeps for at least the time asked, in system time", async () => {
    const got: number[] = [];
    const r = await boot(async (k) => {
      const t0 = k.clock.now();
      await k.sleep(5 * MS);
      const t1 = k.clock.now();
      await k.sleep(0);
      await k.timers.until(t1 - 1); // a deadline already past resolves at once
      got.push(t0, t1);
    });
    expectClean(r);
    const [t0, t1] = got as [number, number];
    expect(t1 - t0).toBeGreaterThanOrEqual(5 * MS);
    expect(r.hv.now).toBeGreaterThanOrEqual(t1);
  });

  it("wakes concurrent sleeps in deadline order, each at or after its deadline", async () => {
    const woke: { ns: number; at: number }[] = [];
    let start = 0;
    const r = await boot(async (k) => {
      start = k.clock.now();
      await Promise.all([3, 1, 4, 2].map((n) => k.sleep(n * MS).then(() => void woke.push({ ns: n * MS, at: k.clock.now() }))));
    });
    expectClean(r);
    expect(woke.map((w) => w.ns)).toEqual([1, 2, 3, 4].map((n) => n * MS));
    for (const w of woke) expect(w.at - start).toBeGreaterThanOrEqual(w.ns);
  });
});

describe("kernelMain", () => {
  it("powers the domain off when main returns", async () => {
    const r = await boot(async () => {});
    expectClean(r);
  });

  it("crashes the domain when main throws, with the error in guestErrors and on Xen's console", async () => {
    const boom = new Error("boom at boot");
    const r = await boot(async () => {
      throw boom;
    });
    expect(r.dom0.shutdownReason).toBe(SHUTDOWN.crash);
    expect(r.engine.guestErrors.get(0)).toBe(boom);
    expect(r.hv.console).toContain("domain 0 crashed: boom at boot");
    expect(checkInvariants(r.hv)).toEqual([]);
  });

  it("crashes the domain when main throws after it has slept", async () => {
    const r = await boot(async (k) => {
      await k.sleep(2 * MS);
      throw new Error("late failure");
    });
    expect(r.dom0.shutdownReason).toBe(SHUTDOWN.crash);
    expect((r.engine.guestErrors.get(0) as Error).message).toBe("late failure");
    expect(r.hv.console.some((l) => l.includes("late failure"))).toBe(true);
    expect(r.hv.now).toBeGreaterThanOrEqual(2 * MS);
  });

  it("shuts down with the reason k.shutdown gives", async () => {
    let rc: unknown;
    const r = await boot(async (k) => {
      rc = k.shutdown(SHUTDOWN.reboot);
    });
    expect(rc).toEqual(E.right(0));
    expect(r.dom0.shutdownReason).toBe(SHUTDOWN.reboot);
    expect([...r.engine.guestErrors]).toEqual([]);
    expect(checkInvariants(r.hv)).toEqual([]);
  });

  it("refuses a shutdown reason Xen does not know", async () => {
    let err: XenError | undefined;
    const r = await boot(async (k) => {
      err = leftOf(k.shutdown(SHUTDOWN.MAX + 1));
    });
    expect([err?.op, err?.name]).toEqual(["SCHEDOP_shutdown", "EINVAL"]);
    expectClean(r);
  });
});
