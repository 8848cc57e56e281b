/**
 * Building dom0, as Xen's `dom0_build.c` does at boot: the one domain the
 * hypervisor builds itself. Every other domain is built by dom0's toolstack
 * through hypercalls.
 *
 * dom0 gets its RAM at pfns `0 .. pages`, the bootstrap region of
 * `planBootLayout` (its kernel image, the P2M list, `start_info`), and
 * `start_info` flags `SIF_PRIVILEGED | SIF_INITDOMAIN`. dom0 has no
 * XenStore or console ring of its own: it writes to Xen's console.
 *
 * @module
 */
import { PAGE_SIZE, SIF, encodeKernelImage, fillStartInfo, planBootLayout, writeP2mList, type KernelEntry } from "@pvkit/abi";
import type { Domain } from "./domain.js";
import { Engine } from "./engine.js";
import { Hypervisor } from "./hypervisor.js";

/** What dom0 is built from. */
export interface Dom0Config {
  /** The kernel: a module URL (loaded like any image) or an entry function. */
  readonly kernel: string | KernelEntry;
  /** Pages of RAM. */
  readonly pages: number;
  /** Most pages dom0 may grow to (default: `pages`). */
  readonly maxPages?: number;
  /** vCPUs (default 1). */
  readonly vcpus?: number;
  /** The kernel command line. */
  readonly cmdline?: string;
  /** A boot module (Xen's initrd slot: `start_info.mod_start`, `mod_len`). */
  readonly module?: Uint8Array;
}

/**
 * Builds dom0 (domid 0), unpaused, with its kernel attached to `engine`.
 * @throws if the machine cannot hold it, or dom0 already exists.
 */
export function buildDom0(hv: Hypervisor, engine: Engine, config: Dom0Config): Domain {
  const image = encodeKernelImage(typeof config.kernel === "string" ? config.kernel : "pvkit:inline-dom0-kernel");
  const layout = planBootLayout(config.pages, image.byteLength, config.module?.byteLength ?? 0);
  const d = hv.createDomain({ maxPages: Math.max(config.pages, config.maxPages ?? 0), maxVcpus: config.vcpus ?? 1, privileged: true }, 0);
  if (typeof d === "number") throw new Error(`cannot create dom0: error ${d}`);
  for (let pfn = 0; pfn < config.pages; pfn++) {
    if (d.populate(pfn) < 0) throw new Error(`cannot build dom0: machine memory exhausted at page ${pfn} of ${config.pages}`);
  }
  const mem = hv.machine;
  const bytesAt = (pfn: number) => mem.frameBytes(d.pfnToMfn(pfn)!);
  bytesAt(layout.imagePfn).set(image);
  const module = config.module ?? new Uint8Array(0);
  for (let off = 0; off < module.byteLength; off += PAGE_SIZE) bytesAt(layout.modulePfn + off / PAGE_SIZE).set(module.subarray(off, off + PAGE_SIZE));
  const mfns = Array.from({ length: config.pages }, (_, pfn) => d.pfnToMfn(pfn)!);
  writeP2mList(layout, mfns, (pfn) => mem.frameView(mfns[pfn]!));
  fillStartInfo(mem.frameView(d.pfnToMfn(layout.startInfoPfn)!), {
    nrPages: config.pages,
    sharedInfoMfn: d.sharedInfoMfn,
    flags: SIF.PRIVILEGED | SIF.INITDOMAIN,
    layout,
    cmdline: config.cmdline ?? "",
    moduleBytes: module.byteLength,
  });
  const startInfoVa = layout.startInfoPfn * PAGE_SIZE;
  if (typeof config.kernel === "string") d.vcpus[0]!.context = { rip: layout.imagePfn * PAGE_SIZE, rsi: startInfoVa };
  else engine.attachKernel(d, config.kernel, startInfoVa);
  hv.unpause(d);
  return d;
}

/** A host to boot: the machine, the engine and dom0. */
export interface HostConfig {
  /** Machine memory in 4 KiB frames. */
  readonly frames: number;
  /** Simulated pCPUs (default 1). */
  readonly pcpus?: number;
  /** Engine seed (default 1). */
  readonly seed?: number;
  /** Deterministic (default) or realtime. */
  readonly mode?: "deterministic" | "realtime";
  /** dom0. */
  readonly dom0: Dom0Config;
}

/** Boots a host as Xen boots: the hypervisor comes up, then builds dom0, which builds everything else. */
export function bootHost(config: HostConfig): { readonly hv: Hypervisor; readonly engine: Engine; readonly dom0: Domain } {
  const hv = new Hypervisor({ frames: config.frames, pcpus: config.pcpus ?? 1 });
  const engine = new Engine(hv, { seed: config.seed ?? 1, mode: config.mode ?? "deterministic" });
  const dom0 = buildDom0(hv, engine, config.dom0);
  return { hv, engine, dom0 };
}
