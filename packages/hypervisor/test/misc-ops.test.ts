import { afterEach, describe, expect, it } from "vitest";
import {
  CALLBACKF,
  CALLBACKOP,
  CALLBACKTYPE,
  CONSOLEIO,
  DOMID,
  HYPERVISOR,
  PAGE_SIZE,
  XENFEAT,
  XENMEM,
  XENVER,
  XEN_ERRNO,
  callback_register,
  callback_unregister,
  multicall_entry,
  xen_compile_info,
  xen_feature_info,
  xen_memory_domain,
  xen_platform_parameters,
  type StructValue,
} from "@pvkit/abi";
import type { Domain } from "@pvkit/hypervisor";
import { consoleInput } from "../src/misc-ops.js";
import { UNMAPPED, bed, expectInvariants, type Bed } from "./bed.js";

const E = XEN_ERRNO;


const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0) < 0 ? bytes.length : bytes.indexOf(0)));

/** `xen_version(cmd, buffer)` from `caller` with a zeroed `size`-byte buffer; returns the result and the buffer. */
function version(b: Bed, caller: Domain, cmd: number, size: number): { rc: number; out: Uint8Array } {
  const a = b.args(caller);
  const va = a.alloc(size);
  a.write(va, new Uint8Array(size).fill(0xee));
  const rc = b.call(caller, HYPERVISOR.xen_version, cmd, va);
  return { rc, out: a.read(va, size) };
}

describe("xen_version", () => {
  it("XENVER_version is 4.17 as major << 16 | minor", () => {
    const b = bed();
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.version)).toBe(0x40011);
  });

  it.each([
    ["extraversion", XENVER.extraversion, 16, "-pvkit"],
    ["capabilities", XENVER.capabilities, 1024, "xen-3.0-x86_64"],
    ["changeset", XENVER.changeset, 64, "unavailable"],
  ] as const)("XENVER_%s fills its whole buffer with a NUL-terminated string", (_what, cmd, size, expected) => {
    const b = bed();
    const { rc, out } = version(b, b.domU, cmd, size + 8);
    expect(rc).toBe(0);
    expect(text(out)).toBe(expected);
    expect(out.subarray(expected.length, size).every((x) => x === 0)).toBe(true);
    expect(out.subarray(size).every((x) => x === 0xee)).toBe(true); // nothing past the buffer
  });

  it("XENVER_compile_info and XENVER_platform_parameters fill their structs", () => {
    const b = bed();
    const a = b.args(b.domU);
    const ci = a.alloc(xen_compile_info.size);
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.compile_info, ci)).toBe(0);
    const info = a.get(xen_compile_info, ci);
    expect([text(info.compiler), text(info.compile_by), text(info.compile_date)]).toEqual(["TypeScript", "pvkit", ""]);
    const pp = a.alloc(xen_platform_parameters.size);
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.platform_parameters, pp)).toBe(0);
    expect(a.get(xen_platform_parameters, pp).virt_start).toBe(0xffff800000000000n);
  });

  it("XENVER_get_features word 0 holds the features pvkit honours, dom0 for the hardware domain", () => {
    const b = bed();
    const features = (d: Domain, submap_idx: number) => {
      const a = b.args(d);
      const va = a.put(xen_feature_info, { submap_idx, submap: 0xdead });
      return { rc: b.call(d, HYPERVISOR.xen_version, XENVER.get_features, va), fi: a.get(xen_feature_info, va) };
    };
    const common = (1 << XENFEAT.memory_op_vnode_supported) | (1 << XENFEAT.direct_mapped);
    expect(features(b.domU, 0)).toEqual({ rc: 0, fi: { submap_idx: 0, submap: common } });
    expect(features(b.dom0, 0).fi.submap).toBe(common | (1 << XENFEAT.dom0));
    expect(features(b.domU, 1)).toEqual({ rc: -E.EINVAL, fi: { submap_idx: 1, submap: 0xdead } });
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.get_features, UNMAPPED)).toBe(-E.EFAULT);
  });

  it("XENVER_pagesize is 4096, and insists on a null argument", () => {
    const b = bed();
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.pagesize, 0)).toBe(4096);
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.pagesize, PAGE_SIZE)).toBe(-E.EINVAL);
  });

  it("XENVER_guest_handle is the handle the toolstack gave the domain", () => {
    const b = bed();
    b.domU.handle = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
    const { rc, out } = version(b, b.domU, XENVER.guest_handle, 16);
    expect([rc, out]).toEqual([0, b.domU.handle]);
  });

  it("XENVER_commandline and XENVER_build_id are for the privileged domain; others are denied", () => {
    const b = bed();
    expect(version(b, b.dom0, XENVER.commandline, 1024)).toEqual({ rc: 0, out: new Uint8Array(1024) });
    const denied = version(b, b.domU, XENVER.commandline, 1024);
    expect([denied.rc, text(denied.out), denied.out[9]]).toEqual([0, "<denied>", 0xee]); // 9 bytes copied
    expect(b.call(b.dom0, HYPERVISOR.xen_version, XENVER.build_id, 0)).toBe(-E.ENODATA);
    expect(b.call(b.domU, HYPERVISOR.xen_version, XENVER.build_id, 0)).toBe(-E.EPERM);
  });

  it.each([
    ["an unknown command", 99, PAGE_SIZE * 20, -E.ENOSYS],
    ["an unwritable buffer", XENVER.extraversion, UNMAPPED, -E.EFAULT],
    ["a buffer running off the end of RAM", XENVER.capabilities, 32 * PAGE_SIZE - 100, -E.EFAULT],
  ] as const)("answers %s", (_what, cmd, va, errno) => {
    const b = bed();
    const before = Buffer.from(b.hv.machine.bytes.slice());
    expect(b.call(b.domU, HYPERVISOR.xen_version, cmd, va)).toBe(errno);
    expect(Buffer.from(b.hv.machine.bytes).equals(before)).toBe(true);
  });
});

describe("console_io", () => {
  const write = (b: Bed, caller: Domain, data: string | Uint8Array, va?: number, count?: number) => {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const a = b.args(caller);
    const at = va ?? a.alloc(bytes.length);
    if (va === undefined) a.write(at, bytes);
    return b.call(caller, HYPERVISOR.console_io, CONSOLEIO.write, count ?? bytes.length, at);
  };

  it("CONSOLEIO_write from dom0 puts each line on Xen's console", () => {
    const b = bed();
    expect(write(b, b.dom0, "hello from dom0\nsecond line")).toBe(0);
    expect(b.hv.console).toEqual(["hello from dom0", "second line"]);
    expect(b.hv.trace.records.filter((r) => r.kind === "console").map((r) => r.domid)).toEqual([0, 0]);
    expect(write(b, b.dom0, "")).toBe(0);
    expect(b.hv.console).toHaveLength(2);
  });

  it("copies long writes in 127-byte chunks, and a fault stops it after the chunks already copied", () => {
    const b = bed();
    const long = "x".repeat(300);
    expect(write(b, b.dom0, long)).toBe(0);
    expect(b.hv.console).toEqual([long]);
    // 200 bytes lie before the end of RAM: the first chunk (127) is copied, the second faults.
    const va = 32 * PAGE_SIZE - 200;
    b.args(b.dom0).write(va, new Uint8Array(200).fill(0x79));
    expect(write(b, b.dom0, "", va, 400)).toBe(-E.EFAULT);
    expect(b.hv.console[1]).toBe("y".repeat(127));
  });

  it("refuses a domU with -EPERM, and logs nothing", () => {
    const b = bed();
    expect(write(b, b.domU, "let me in")).toBe(-E.EPERM);
    expect(b.call(b.domU, HYPERVISOR.console_io, CONSOLEIO.read, 16, PAGE_SIZE * 20)).toBe(-E.EPERM);
    expect(b.hv.console).toEqual([]);
  });

  it("prefixes and cleans a domU's text when a policy lets it write, as Xen's guest_console_write", () => {
    const b = bed();
    b.hv.policy = { allows: () => true };
    expect(write(b, b.domU, "bell\x07 here\nok")).toBe(0);
    expect(b.hv.console).toEqual(["(d1) bell here", "(d1) ok"]);
  });

  it("CONSOLEIO_read returns bytes typed at Xen's console, at most count", () => {
    const b = bed();
    expect(consoleInput(b.hv, new TextEncoder().encode("ls\n"))).toBe(3);
    const a = b.args(b.dom0);
    const buf = a.alloc(16);
    expect(b.call(b.dom0, HYPERVISOR.console_io, CONSOLEIO.read, 2, buf)).toBe(2);
    expect(b.call(b.dom0, HYPERVISOR.console_io, CONSOLEIO.read, 16, buf + 2)).toBe(1);
    expect(new TextDecoder().decode(a.read(buf, 3))).toBe("ls\n");
    expect(b.call(b.dom0, HYPERVISOR.console_io, CONSOLEIO.read, 16, buf)).toBe(0);
    expect(consoleInput(b.hv, new Uint8Array(200))).toBe(128); // the ring holds 128 bytes
  });

  it.each([
    ["a negative count to read", CONSOLEIO.read, -1, 20 * PAGE_SIZE, -E.E2BIG],
    ["a read into unmapped memory", CONSOLEIO.read, 4, UNMAPPED, -E.EFAULT],
    ["a write from unmapped memory", CONSOLEIO.write, 4, UNMAPPED, -E.EFAULT],
    ["an unknown command", 7, 4, 20 * PAGE_SIZE, -E.ENOSYS],
  ] as const)("answers %s", (_what, cmd, count, va, errno) => {
    const b = bed();
    consoleInput(b.hv, new Uint8Array([65, 66]));
    expect(b.call(b.dom0, HYPERVISOR.console_io, cmd, count, va)).toBe(errno);
    expect(b.hv.console).toEqual([]);
    expect(b.call(b.dom0, HYPERVISOR.console_io, CONSOLEIO.read, 8, 20 * PAGE_SIZE)).toBe(2); // nothing consumed
  });
});

describe("multicall", () => {
  type Entry = Partial<StructValue<typeof multicall_entry>>;
  const entry = (op: number, ...args: (number | bigint)[]): Entry => ({ op: BigInt(op), result: 0xaan, args: [...args.map((x) => BigInt.asUintN(64, BigInt(x))), 0n, 0n, 0n, 0n, 0n, 0n].slice(0, 6) });

  it("runs each entry through the hypercall table and stores each result, errors included", () => {
    const b = bed();
    const a = b.args(b.domU);
    const domid = a.put(xen_memory_domain, { domid: DOMID.SELF });
    const list = a.putArray(multicall_entry, [
      entry(HYPERVISOR.xen_version, XENVER.version),
      entry(HYPERVISOR.xen_version, 99),
      entry(99),
      entry(HYPERVISOR.memory_op, XENMEM.current_reservation, domid),
      entry(HYPERVISOR.memory_op, -1), // a -1 stored as 2^64 - 1 arrives as -1
    ]);
    expect(b.call(b.domU, HYPERVISOR.multicall, list, 5)).toBe(0);
    const results = [0, 1, 2, 3, 4].map((i) => BigInt.asIntN(64, a.getAt(multicall_entry, list, i).result));
    expect(results).toEqual([0x40011n, BigInt(-E.ENOSYS), BigInt(-E.ENOSYS), 32n, BigInt(-E.ENOSYS)]);
    // Each entry was a hypercall of its own in the trace.
    const calls = b.hv.trace.records.filter((r) => r.kind === "hypercall").map((r) => (r.kind === "hypercall" ? r.op : ""));
    expect(calls).toEqual(["xen_version", "xen_version", "99", "memory_op", "memory_op", "multicall"]);
  });

  it("refuses a nested multicall for that entry with -EINVAL, and carries on", () => {
    const b = bed();
    const a = b.args(b.domU);
    const inner = a.putArray(multicall_entry, [entry(HYPERVISOR.xen_version, XENVER.version)]);
    const list = a.putArray(multicall_entry, [entry(HYPERVISOR.multicall, inner, 1), entry(HYPERVISOR.xen_version, XENVER.pagesize)]);
    expect(b.call(b.domU, HYPERVISOR.multicall, list, 2)).toBe(0);
    expect([0, 1].map((i) => BigInt.asIntN(64, a.getAt(multicall_entry, list, i).result))).toEqual([BigInt(-E.EINVAL), 4096n]);
    expect(a.getAt(multicall_entry, inner, 0).result).toBe(0xaan); // never ran
    // The vCPU is out of its multicall again.
    expect(b.call(b.domU, HYPERVISOR.multicall, inner, 1)).toBe(0);
  });

  it("stops with -EFAULT at an entry it cannot read, after running the ones before", () => {
    const b = bed();
    const a = b.args(b.domU);
    const list = a.putArray(multicall_entry, [entry(HYPERVISOR.xen_version, XENVER.version)]);
    expect(b.call(b.domU, HYPERVISOR.multicall, UNMAPPED, 1)).toBe(-E.EFAULT);
    // The list runs off the end of RAM after one entry.
    const last = 32 * PAGE_SIZE - multicall_entry.size;
    a.write(last, a.read(list, multicall_entry.size));
    expect(b.call(b.domU, HYPERVISOR.multicall, last, 2)).toBe(-E.EFAULT);
    expect(a.getAt(multicall_entry, last, 0).result).toBe(0x40011n);
    expect(b.call(b.domU, HYPERVISOR.multicall, UNMAPPED, 0)).toBe(0);
  });
});

describe("callback_op", () => {
  const register = (b: Bed, d: Domain, type: number, address: bigint, flags = 0, argVa?: number) =>
    b.call(d, HYPERVISOR.callback_op, CALLBACKOP.register, argVa ?? b.args(d).put(callback_register, { type, flags, address }));
  const unregister = (b: Bed, d: Domain, type: number) => b.call(d, HYPERVISOR.callback_op, CALLBACKOP.unregister, b.args(d).put(callback_unregister, { type }));

  it("CALLBACKTYPE_event registers the calling vCPU's upcall", () => {
    const b = bed();
    const [v0, v1] = b.domU.vcpus;
    expect([v0!.upcallRegistered, v1!.upcallRegistered]).toEqual([false, false]);
    expect(register(b, b.domU, CALLBACKTYPE.event, 0x1000n)).toBe(0);
    expect([v0!.upcallRegistered, v1!.upcallRegistered]).toEqual([true, false]);
    expect(v0!.callbacks.get(CALLBACKTYPE.event)).toEqual({ address: 0x1000n, flags: 0 });
    expect(unregister(b, b.domU, CALLBACKTYPE.event)).toBe(-E.EINVAL);
    expect(v0!.upcallRegistered).toBe(true);
  });

  it("keeps the other entry points with their mask_events flag; only the NMI one can be unregistered", () => {
    const b = bed();
    const v = b.domU.vcpus[0]!;
    expect(register(b, b.domU, CALLBACKTYPE.syscall, 0xffff800000001000n, CALLBACKF.mask_events)).toBe(0);
    expect(v.callbacks.get(CALLBACKTYPE.syscall)).toEqual({ address: 0xffff800000001000n, flags: CALLBACKF.mask_events });
    expect(register(b, b.domU, CALLBACKTYPE.nmi, 0x2000n)).toBe(0);
    expect(unregister(b, b.domU, CALLBACKTYPE.nmi)).toBe(0);
    expect(v.callbacks.get(CALLBACKTYPE.nmi)).toBeUndefined();
    expect(unregister(b, b.domU, CALLBACKTYPE.syscall)).toBe(-E.EINVAL);
    expect(unregister(b, b.domU, 9)).toBe(-E.ENOSYS);
  });

  it.each([
    ["a non-canonical address", CALLBACKTYPE.event, 0x0000800000000000n, -E.EINVAL],
    ["the deprecated sysenter type", CALLBACKTYPE.sysenter_deprecated, 0x1000n, -E.ENOSYS],
    ["an unknown type", 42, 0x1000n, -E.ENOSYS],
  ] as const)("refuses %s", (_what, type, address, errno) => {
    const b = bed();
    expect(register(b, b.domU, type, address)).toBe(errno);
    expect(b.domU.vcpus[0]!.upcallRegistered).toBe(false);
  });

  it("faults on an unreadable argument and refuses an unknown command", () => {
    const b = bed();
    expect(register(b, b.domU, CALLBACKTYPE.event, 0n, 0, UNMAPPED)).toBe(-E.EFAULT);
    expect(b.call(b.domU, HYPERVISOR.callback_op, CALLBACKOP.unregister, UNMAPPED)).toBe(-E.EFAULT);
    expect(b.call(b.domU, HYPERVISOR.callback_op, 2, 20 * PAGE_SIZE)).toBe(-E.ENOSYS);
  });
});
