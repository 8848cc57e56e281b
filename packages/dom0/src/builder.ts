/**
 * The domain builder, in the role of libxenguest's `xc_dom_*`: dom0 builds
 * a PV domain through hypercalls alone.
 *
 * 1. `XEN_DOMCTL_createdomain`, `max_mem`: a paused, empty domain.
 * 2. `XENMEM_populate_physmap` for its RAM; Xen returns the mfns.
 * 3. Event channels for its console and XenStore, allocated in the new
 *    domain and offered to dom0 (`EVTCHNOP_alloc_unbound` on its behalf).
 * 4. The bootstrap region (`planBootLayout`), written through foreign
 *    mappings of its pages (`XENMAPSPACE_gmfn_foreign`): the kernel image,
 *    the P2M list, `start_info`, and zeroed XenStore and console pages.
 * 5. Grant-table seeding: the reserved references `GNTTAB_RESERVED_CONSOLE`
 *    and `GNTTAB_RESERVED_XENSTORE` grant the console and XenStore pages to
 *    dom0, written into the guest's first grant frame mapped for the purpose.
 * 6. `XEN_DOMCTL_setvcpucontext`: vCPU 0 starts at the image with
 *    `start_info` in `rsi`.
 *
 * {@link createDomain} does step 1, {@link buildDomain} the rest, so that a
 * toolstack can create several domains and connect them (with their domids
 * known) before building any. The domain is left paused; the caller
 * unpauses it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { pipe } from "fp-ts/lib/function.js";
import { GNTTAB_RESERVED, GTF, PAGE_SIZE, encodeKernelImage, fillStartInfo, grant_entry_v1, planBootLayout, writeP2mList, type BootLayout } from "@pvkit/abi";
import type { Kernel, XenError } from "@pvkit/kernel";
import { Toolstack } from "./toolstack.js";

/** What to build. */
export interface DomainSpec {
  /** The kernel module's URL. */
  readonly kernel: string;
  /** Pages of RAM. */
  readonly pages: number;
  /** vCPUs (default 1). */
  readonly vcpus?: number;
  /** The kernel command line. */
  readonly cmdline?: string;
}

/** A built, still paused, domain and what dom0 needs to serve it. */
export interface BuiltDomain {
  /** Its domid. */
  readonly domid: number;
  /** Where its bootstrap region lies. */
  readonly layout: BootLayout;
  /** The mfn of each of its pfns. */
  readonly p2m: readonly number[];
  /** Its console event channel (a port of the new domain, offered to dom0). */
  readonly consolePort: number;
  /** Its XenStore event channel (likewise). */
  readonly storePort: number;
  /** The frame of its shared_info page. */
  readonly sharedInfoMfn: number;
}

/** A domid of 0 in createdomain asks the hypervisor to pick one. */
const ANY_DOMID = 0;

/** Creates an empty, paused domain for `spec` (`XEN_DOMCTL_createdomain`, `max_mem`); returns its domid. */
export function createDomain(k: Kernel, spec: DomainSpec): E.Either<XenError, number> {
  const ts = new Toolstack(k);
  const created = ts.createDomain(spec.vcpus ?? 1, ANY_DOMID);
  if (E.isLeft(created)) return created;
  const limited = ts.setMaxMem(created.right, spec.pages);
  if (E.isLeft(limited)) {
    ts.destroy(created.right);
    return limited;
  }
  return created;
}

/**
 * Builds the domain `domid` made by {@link createDomain} from `spec`, leaving
 * it paused. On failure the caller destroys it; the error names the step.
 */
export function buildDomain(k: Kernel, domid: number, spec: DomainSpec): E.Either<XenError, BuiltDomain> {
  const ts = new Toolstack(k);
  const image = encodeKernelImage(spec.kernel);
  let layout: BootLayout;
  try {
    layout = planBootLayout(spec.pages, image.byteLength);
  } catch (e) {
    return E.left({ op: "plan boot layout", code: -22, name: "EINVAL", message: (e as Error).message });
  }
  return pipe(
    E.Do,
    E.bind("p2m", () => ts.populate(domid, spec.pages)),
    E.bind("info", () => ts.domainInfo(domid)),
    E.bind("consolePort", () => k.events.allocUnbound(0, domid)),
    E.bind("storePort", () => k.events.allocUnbound(0, domid)),
    E.map(({ p2m, info, consolePort, storePort }) => ({ domid, layout, p2m, consolePort, storePort, sharedInfoMfn: Number(info.shared_info_frame) })),
    E.chainFirst((d) => writeBootstrap(ts, d, image, spec.cmdline ?? "")),
    E.chainFirst((d) => seedGrantTable(ts, d)),
    E.chainFirst((d) => ts.setVcpuContext(domid, 0, d.layout.imagePfn * PAGE_SIZE, d.layout.startInfoPfn * PAGE_SIZE)),
  );
}

/** Writes the image, P2M list, start_info and zeroed ring pages through foreign mappings. */
function writeBootstrap(ts: Toolstack, d: BuiltDomain, image: Uint8Array, cmdline: string): E.Either<XenError, void> {
  const { layout, p2m } = d;
  const pfns = Array.from({ length: layout.firstFreePfn }, (_, pfn) => pfn);
  return E.map((vas: number[]) => {
    const mem = ts.k.memory.memory;
    const page = (pfn: number) => mem.page(vas[pfn]!);
    mem.write(vas[layout.imagePfn]!, image);
    writeP2mList(layout, p2m, page);
    fillStartInfo(page(layout.startInfoPfn), {
      nrPages: p2m.length,
      sharedInfoMfn: d.sharedInfoMfn,
      flags: 0,
      layout,
      cmdline,
      store: { mfn: p2m[layout.storePfn]!, evtchn: d.storePort },
      console: { mfn: p2m[layout.consolePfn]!, evtchn: d.consolePort },
    });
    for (const pfn of [layout.storePfn, layout.consolePfn]) mem.write(vas[pfn]!, new Uint8Array(PAGE_SIZE));
    ts.unmapForeign(vas);
  })(ts.mapForeign(d.domid, pfns));
}

/**
 * Grants the console and XenStore pages to dom0 through the reserved
 * references, as `xc_dom_gnttab_seed` does: the guest's grant frame 0 is put
 * at a scratch gfn of the guest, mapped here, written, and taken away again.
 */
function seedGrantTable(ts: Toolstack, d: BuiltDomain): E.Either<XenError, void> {
  const scratch = d.p2m.length; // the first gfn past the guest's RAM
  return pipe(
    ts.addGrantFrame(d.domid, 0, scratch),
    E.chain(() => ts.mapForeign(d.domid, [scratch])),
    E.map(([va]) => {
      const table = ts.k.memory.memory.page(va!);
      const f = grant_entry_v1.fields;
      for (const [ref, pfn] of [
        [GNTTAB_RESERVED.CONSOLE, d.layout.consolePfn],
        [GNTTAB_RESERVED.XENSTORE, d.layout.storePfn],
      ] as const) {
        const base = ref * grant_entry_v1.size;
        f.domid.set(table, base, 0);
        f.frame.set(table, base, d.p2m[pfn]!);
        f.flags.set(table, base, GTF.permit_access);
      }
      ts.unmapForeign([va!]);
      ts.removeFromPhysmap(d.domid, scratch);
    }),
  );
}
