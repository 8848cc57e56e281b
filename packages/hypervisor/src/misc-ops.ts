/**
 * The small hypercalls: `xen_version`, `console_io`, `multicall` and
 * `callback_op`.
 *
 * ## `xen_version(cmd, arg)`
 *
 * pvkit reports itself as Xen {@link XEN_VERSION} (4.17, extraversion
 * `-pvkit`), an x86_64 hypervisor for 64-bit PV guests (`"xen-3.0-x86_64"`)
 * whose PV guests see the hypervisor above `0xffff800000000000`
 * (`HYPERVISOR_VIRT_START`). Build details are fixed strings, so runs stay
 * reproducible. As with Xen's dummy XSM, any domain may ask anything except
 * `commandline` and `build_id`, which the policy decides
 * (`"xen_version:commandline"`); a domain refused gets `"<denied>"` for the
 * command line and `-EPERM` for the build id. pvkit has no build id
 * (`-ENODATA`) and no command line (an empty one).
 *
 * `XENVER_get_features` word 0 holds the `XENFEAT_*` bits pvkit honours:
 * `memory_op_vnode_supported` (always set by Xen; pvkit has one node, so a
 * vnode request is trivially met), `dom0` for the hardware domain (domid 0),
 * and `direct_mapped`, which Xen sets for every PV guest (its frame numbers
 * are machine frames). The bits Xen also sets for PV but which need the PV
 * MMU or grant-table extensions pvkit does not offer
 * (`mmu_pt_update_preserve_ad`, `highmem_assist`, `gnttab_map_avail_bits`)
 * are left clear. Other words are `-EINVAL`.
 *
 * ## `console_io(cmd, count, buffer)`
 *
 * `CONSOLEIO_write` copies `count` bytes in chunks of 127, as Xen does, and
 * appends them to Xen's console ({@link Hypervisor.log}), one entry per line;
 * a fault stops it with `-EFAULT` after the chunks already copied. Text from
 * a domain other than the hardware domain (which only a non-default policy
 * lets write) has unprintable characters removed and each line prefixed
 * `(d<domid>) `, as Xen's `guest_console_write`. `CONSOLEIO_read` reads, as
 * on Xen, the hypervisor's serial *input*: bytes typed at Xen's console
 * ({@link consoleInput}), not its log (that is `XEN_SYSCTL_readconsole`).
 * Both are for the privileged domain only (`"console_io:write"`,
 * `"console_io:read"`), `-EPERM` otherwise.
 *
 * ## `multicall(entries, count)`
 *
 * Runs `count` `multicall_entry`s in order through the hypercall table,
 * writing each result (a negative errno as its two's complement) into the
 * entry's `result`; returns 0. Arguments are read as signed 64-bit values, so
 * a `-1` stored by the guest arrives as -1. A multicall inside a multicall is
 * refused for that entry with `-EINVAL` (Xen's re-entry check); an entry that
 * cannot be read or whose result cannot be written stops the batch with
 * `-EFAULT`, the earlier entries having run.
 *
 * ## `callback_op(cmd, arg)`
 *
 * Registers the calling vCPU's entry points (in `Vcpu.callbacks`), per vCPU
 * as on x86 PV: `event` (the upcall: marks the vCPU `upcallRegistered`), `failsafe`,
 * `syscall`, `syscall32`, `sysenter` and `nmi`; an address that is not
 * canonical is `-EINVAL`, another type `-ENOSYS`. Only `nmi` can be
 * unregistered; the others answer `-EINVAL`, as Xen's.
 *
 * @module
 */
import {
  CALLBACKF,
  CALLBACKOP,
  CALLBACKTYPE,
  CONSOLEIO,
  PAGE_SIZE,
  VIRQ,
  XENFEAT,
  XENVER,
  XEN_ERRNO,
  callback_register,
  callback_unregister,
  keyOf,
  multicall_entry,
  xen_capabilities_info,
  xen_changeset_info,
  xen_commandline,
  xen_compile_info,
  xen_extraversion,
  xen_feature_info,
  xen_platform_parameters,
} from "@pvkit/abi";
import { sendVirq } from "./event-channel.js";
import { copyFromGuest, copyToGuest, readGuestStruct, writeGuestStruct } from "./guest-memory.js";
import type { HypercallContext } from "./hypercall.js";
import { XEN_VERSION, type Hypervisor } from "./hypervisor.js";

const E = XEN_ERRNO;

/** The lowest hypervisor virtual address in a 64-bit PV guest (x86_64 `HYPERVISOR_VIRT_START`). */
const HYPERVISOR_VIRT_START = 0xffff800000000000n;
/** What Xen copies out in place of information the caller may not see (`xen_deny()`). */
const DENIED = "<denied>";
/** The guest ABIs this hypervisor runs. */
const CAPABILITIES = "xen-3.0-x86_64";
/** Fixed build details (no clock, no host name: runs are reproducible). */
const BUILD = { compiler: "TypeScript", compileBy: "pvkit", compileDomain: "pvkit", compileDate: "", changeset: "unavailable", commandline: "" } as const;

const ascii = new TextEncoder();

/** A NUL-terminated C string in a zeroed buffer of `size` bytes, truncated to fit (Xen's `safe_strcpy`). */
function cString(text: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(ascii.encode(text).subarray(0, size - 1));
  return out;
}

/** Copies `bytes` out to `va` in the caller's address space: 0, or `-EFAULT`. */
function copyOut(ctx: HypercallContext, va: number, bytes: Uint8Array): number {
  return copyToGuest(ctx.hv.machine, ctx.domain, va, bytes) ? 0 : -E.EFAULT;
}

/**
 * `__HYPERVISOR_xen_version(cmd, arg)`. `XENVER_version` returns
 * `major << 16 | minor` and `XENVER_pagesize` the page size (its `arg` must
 * be null, else `-EINVAL`); the others fill the buffer at `arg` and return 0.
 * An unknown command is `-ENOSYS`. See the module documentation.
 */
export function xenVersion(ctx: HypercallContext, cmd: number, argVa: number): number {
  const d = ctx.domain;
  // Xen's dummy XSM: these two are XSM_PRIV, everything else any guest may see.
  const deny = (cmd === XENVER.commandline || cmd === XENVER.build_id) && !ctx.hv.allows(d, `xen_version:${keyOf(XENVER, cmd)}`, "priv");
  switch (cmd) {
    case XENVER.version:
      return (XEN_VERSION.major << 16) | XEN_VERSION.minor;
    case XENVER.extraversion:
      return copyOut(ctx, argVa, cString(XEN_VERSION.extra, xen_extraversion.size));
    case XENVER.compile_info: {
      const info = new DataView(new ArrayBuffer(xen_compile_info.size));
      const C = xen_compile_info.fields;
      C.compiler.set(info, 0, cString(BUILD.compiler, C.compiler.size));
      C.compile_by.set(info, 0, cString(BUILD.compileBy, C.compile_by.size));
      C.compile_domain.set(info, 0, cString(BUILD.compileDomain, C.compile_domain.size));
      C.compile_date.set(info, 0, cString(BUILD.compileDate, C.compile_date.size));
      return writeGuestStruct(ctx.hv.machine, d, argVa, info) ? 0 : -E.EFAULT;
    }
    case XENVER.capabilities:
      return copyOut(ctx, argVa, cString(CAPABILITIES, xen_capabilities_info.size));
    case XENVER.changeset:
      return copyOut(ctx, argVa, cString(BUILD.changeset, xen_changeset_info.size));
    case XENVER.platform_parameters: {
      const params = new DataView(new ArrayBuffer(xen_platform_parameters.size));
      xen_platform_parameters.fields.virt_start.set(params, 0, HYPERVISOR_VIRT_START);
      return writeGuestStruct(ctx.hv.machine, d, argVa, params) ? 0 : -E.EFAULT;
    }
    case XENVER.get_features: {
      const fi = readGuestStruct(ctx.hv.machine, d, argVa, xen_feature_info);
      if (fi === undefined) return -E.EFAULT;
      const F = xen_feature_info.fields;
      if (F.submap_idx.get(fi, 0) !== 0) return -E.EINVAL;
      let submap = (1 << XENFEAT.memory_op_vnode_supported) | (1 << XENFEAT.direct_mapped);
      if (d.domid === 0) submap |= 1 << XENFEAT.dom0;
      F.submap.set(fi, 0, submap >>> 0);
      return writeGuestStruct(ctx.hv.machine, d, argVa, fi) ? 0 : -E.EFAULT;
    }
    case XENVER.pagesize:
      return argVa !== 0 ? -E.EINVAL : PAGE_SIZE;
    case XENVER.guest_handle:
      return copyOut(ctx, argVa, d.handle.slice(0, 16));
    case XENVER.commandline:
      return copyOut(ctx, argVa, deny ? cString(DENIED, DENIED.length + 1) : cString(BUILD.commandline, xen_commandline.size));
    case XENVER.build_id:
      return deny ? -E.EPERM : -E.ENODATA;
    default:
      return -E.ENOSYS;
  }
}

/** Bytes `guest_console_write` copies at a time (Xen's `kbuf[128]` less its NUL). */
const CONSOLE_CHUNK = 127;
/** Bytes of Xen's serial input ring (`SERIAL_RX_SIZE`). */
const SERIAL_RX_SIZE = 128;

const utf8 = new TextDecoder();

/**
 * Types `bytes` at the hypervisor's console, as a user at Xen's serial
 * console whose input goes to dom0: they wait in a 128-byte ring (bytes
 * beyond it are dropped, as Xen drops them) for dom0's `CONSOLEIO_read`, and
 * dom0 hears of them through `VIRQ_CONSOLE`.
 * @returns how many bytes the ring took.
 */
export function consoleInput(hv: Hypervisor, bytes: Uint8Array): number {
  const ring = hv.serialInput;
  const taken = Math.min(bytes.length, SERIAL_RX_SIZE - ring.length);
  for (let i = 0; i < taken; i++) ring.push(bytes[i]!);
  const dom0 = hv.domains.get(0);
  if (taken > 0 && dom0 !== undefined && !dom0.dead) sendVirq(hv, dom0, VIRQ.CONSOLE, 0);
  return taken;
}

/**
 * `__HYPERVISOR_console_io(cmd, count, buffer)`: `CONSOLEIO_write` returns 0
 * once all `count` bytes are on Xen's console; `CONSOLEIO_read` returns how
 * many bytes of console input it copied (at most `count`). See the module
 * documentation.
 */
export function consoleIo(ctx: HypercallContext, cmd: number, count: number, argVa: number): number {
  // Xen's dummy XSM: XSM_PRIV, for the privileged domain only.
  if (!ctx.hv.allows(ctx.domain, `console_io:${keyOf(CONSOLEIO, cmd) ?? cmd}`, "priv")) return -E.EPERM;
  switch (cmd) {
    case CONSOLEIO.write:
      return consoleWrite(ctx, count >>> 0, argVa);
    case CONSOLEIO.read: {
      // The result is a count or an errno, so a count that would read as negative is refused.
      if ((count | 0) < 0) return -E.E2BIG;
      const ring = ctx.hv.serialInput;
      const n = Math.min(count | 0, ring.length);
      if (!copyToGuest(ctx.hv.machine, ctx.domain, argVa, Uint8Array.from(ring.slice(0, n)))) return -E.EFAULT;
      ring.splice(0, n);
      return n;
    }
    default:
      return -E.ENOSYS;
  }
}

/** Copies `count` bytes from `va` in chunks and logs them; `-EFAULT` after whatever was copied when a chunk faults. */
function consoleWrite(ctx: HypercallContext, count: number, va: number): number {
  const { hv, domain: d } = ctx;
  const chunks: Uint8Array[] = [];
  let rc = 0;
  for (let done = 0; done < count; ) {
    const n = Math.min(CONSOLE_CHUNK, count - done);
    const chunk = copyFromGuest(hv.machine, d, va + done, n);
    if (chunk === undefined) {
      rc = -E.EFAULT;
      break;
    }
    chunks.push(chunk);
    done += n;
  }
  const bytes = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  chunks.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
  let text = utf8.decode(bytes);
  const hardware = d.domid === 0;
  // Keep printable ASCII, tab and newline for a domain other than the hardware domain.
  if (!hardware) text = text.replace(/[^\x20-\x7e\t\n]/g, "");
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) hv.log(hardware ? line : `(d${d.domid}) ${line}`, d.domid);
  return rc;
}

/** A guest's 64-bit register value as the number a hypercall argument is: signed, so -1 stays -1. */
function argument(value: bigint): number {
  return Number(BigInt.asIntN(64, value));
}

/**
 * `__HYPERVISOR_multicall(entries, count)`: runs each `multicall_entry` and
 * stores its result; returns 0, `-EINVAL` when already in a multicall, or
 * `-EFAULT` when an entry cannot be read or written.
 */
export function multicall(ctx: HypercallContext, argVa: number, count: number): number {
  const { hv, vcpu, domain: d } = ctx;
  if (vcpu.inMulticall) return -E.EINVAL;
  vcpu.inMulticall = true;
  try {
    const M = multicall_entry.fields;
    const nr = count >>> 0;
    for (let i = 0; i < nr; i++) {
      const va = argVa + i * multicall_entry.size;
      const entry = readGuestStruct(hv.machine, d, va, multicall_entry);
      if (entry === undefined) return -E.EFAULT;
      const a = (k: number) => argument(M.args.element.get(entry, M.args.at(0, k)));
      const result = hv.hypercall(vcpu, argument(M.op.get(entry, 0)), a(0), a(1), a(2), a(3), a(4));
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(result)), true);
      if (!copyToGuest(hv.machine, d, va + M.result.offset, out)) return -E.EFAULT;
    }
    return 0;
  } finally {
    vcpu.inMulticall = false;
  }
}

/** True for an x86_64 canonical address: bits 63..47 all equal. */
function canonical(address: bigint): boolean {
  const top = address >> 47n;
  return top === 0n || top === 0x1ffffn;
}

/**
 * `__HYPERVISOR_callback_op(cmd, arg)`: `CALLBACKOP_register` and
 * `CALLBACKOP_unregister` for the calling vCPU. See the module documentation.
 */
export function callbackOp(ctx: HypercallContext, cmd: number, argVa: number): number {
  const { hv, vcpu, domain: d } = ctx;
  switch (cmd) {
    case CALLBACKOP.register: {
      const reg = readGuestStruct(hv.machine, d, argVa, callback_register);
      if (reg === undefined) return -E.EFAULT;
      const R = callback_register.fields;
      const type = R.type.get(reg, 0);
      const address = R.address.get(reg, 0);
      if (!canonical(address)) return -E.EINVAL;
      switch (type) {
        case CALLBACKTYPE.event:
        case CALLBACKTYPE.failsafe:
        case CALLBACKTYPE.syscall:
        case CALLBACKTYPE.syscall32:
        case CALLBACKTYPE.sysenter:
        case CALLBACKTYPE.nmi:
          break;
        default:
          return -E.ENOSYS;
      }
      // The event upcall ignores the flags (events are masked by the guest's vcpu_info); the others keep mask_events.
      vcpu.callbacks.set(type, { address, flags: type === CALLBACKTYPE.event ? 0 : R.flags.get(reg, 0) & CALLBACKF.mask_events });
      if (type === CALLBACKTYPE.event) vcpu.upcallRegistered = true;
      return 0;
    }
    case CALLBACKOP.unregister: {
      const unreg = readGuestStruct(hv.machine, d, argVa, callback_unregister);
      if (unreg === undefined) return -E.EFAULT;
      switch (callback_unregister.fields.type.get(unreg, 0)) {
        case CALLBACKTYPE.event:
        case CALLBACKTYPE.failsafe:
        case CALLBACKTYPE.syscall:
        case CALLBACKTYPE.syscall32:
        case CALLBACKTYPE.sysenter:
          return -E.EINVAL;
        case CALLBACKTYPE.nmi:
          vcpu.callbacks.delete(CALLBACKTYPE.nmi);
          return 0;
        default:
          return -E.ENOSYS;
      }
    }
    default:
      return -E.ENOSYS;
  }
}
