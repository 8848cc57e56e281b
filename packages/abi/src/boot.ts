/**
 * pvkit's PV boot protocol: the kernel image and the bootstrap layout.
 *
 * Xen boots a PV kernel by loading its ELF image into the new domain's
 * memory, writing a `start_info` page and pointing vCPU 0's `rip` at the
 * entry and `rsi` at `start_info`. pvkit does the same, except that a pvkit
 * kernel is a JavaScript module, so its "image" is a small record naming the
 * module: {@link encodeKernelImage}. When vCPU 0 first runs, the engine reads
 * the image at `rip`, loads a fresh instance of the module for the domain,
 * and calls its default export with the platform.
 *
 * The bootstrap region follows Xen's x86 PV layout (`xc_dom_x86.c`), from
 * pfn 0 up: the kernel image, an optional module (the initrd slot:
 * `start_info.mod_start` and `mod_len`), the P2M list (`start_info.mfn_list`: one u64
 * mfn per pfn), the `start_info` page, the XenStore page, the console page,
 * and no page tables (pvkit has a direct map, so `nr_pt_frames` is 0 and
 * `pt_base` is simply where the bootstrap region ends). As in Mini-OS, a
 * kernel's free memory starts at `pt_base + nr_pt_frames` pages.
 *
 * @module
 */
import { encodeStruct, zeroStruct } from "./layout.js";
import { PAGE_SIZE, start_info } from "./xen.js";

/** First 8 bytes of a kernel image. */
export const KERNEL_IMAGE_MAGIC = "PVKITKRN";

/** The magic string `start_info.magic` starts with, as Xen writes it for x86_64 PV guests. */
export const START_INFO_MAGIC = "xen-3.0-x86_64";

/**
 * A kernel image: the magic, a u32 length, then the module's URL in UTF-8
 * (a `file:` URL, or a bare specifier the host can resolve).
 */
export function encodeKernelImage(moduleUrl: string): Uint8Array {
  const url = new TextEncoder().encode(moduleUrl);
  const out = new Uint8Array(12 + url.byteLength);
  out.set(new TextEncoder().encode(KERNEL_IMAGE_MAGIC));
  new DataView(out.buffer).setUint32(8, url.byteLength, true);
  out.set(url, 12);
  return out;
}

/** The module URL of a kernel image, or an Error saying what is wrong with it. */
export function decodeKernelImage(bytes: Uint8Array): string | Error {
  if (bytes.byteLength < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== KERNEL_IMAGE_MAGIC) {
    return new Error(`not a pvkit kernel image: no ${KERNEL_IMAGE_MAGIC} magic`);
  }
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (len === 0 || 12 + len > bytes.byteLength) return new Error(`kernel image claims a ${len}-byte module name, but has ${bytes.byteLength - 12}`);
  return new TextDecoder().decode(bytes.subarray(12, 12 + len));
}

/** Where the domain builder puts each part of the bootstrap region, in pfns. */
export interface BootLayout {
  /** First pfn of the kernel image. */
  readonly imagePfn: number;
  /** Pages of the image. */
  readonly imagePages: number;
  /** First pfn of the module (the image's end when there is none). */
  readonly modulePfn: number;
  /** Pages of the module (0 when there is none). */
  readonly modulePages: number;
  /** First pfn of the P2M list. */
  readonly p2mPfn: number;
  /** Pages of the P2M list. */
  readonly p2mPages: number;
  /** The start_info page. */
  readonly startInfoPfn: number;
  /** The XenStore ring page. */
  readonly storePfn: number;
  /** The console ring page. */
  readonly consolePfn: number;
  /** First pfn after the bootstrap region: `pt_base` points here, and free memory starts here. */
  readonly firstFreePfn: number;
}

/**
 * Lays out the bootstrap region of a domain with `nrPages` pages of RAM, an
 * image of `imageBytes` bytes and a module of `moduleBytes`; throws if it
 * does not fit.
 */
export function planBootLayout(nrPages: number, imageBytes: number, moduleBytes = 0): BootLayout {
  const pages = (bytes: number) => Math.ceil(bytes / PAGE_SIZE);
  const imagePages = Math.max(1, pages(imageBytes));
  const modulePages = pages(moduleBytes);
  const p2mPfn = imagePages + modulePages;
  const p2mPages = pages(nrPages * 8);
  const startInfoPfn = p2mPfn + p2mPages;
  const layout = { imagePfn: 0, imagePages, modulePfn: imagePages, modulePages, p2mPfn, p2mPages, startInfoPfn, storePfn: startInfoPfn + 1, consolePfn: startInfoPfn + 2, firstFreePfn: startInfoPfn + 3 };
  if (layout.firstFreePfn >= nrPages) throw new RangeError(`${nrPages} pages cannot hold a ${layout.firstFreePfn + 1}-page bootstrap region and any free memory`);
  return layout;
}

/**
 * Fills a `start_info` page for a domain, as Xen's and libxenguest's
 * builders do. Both builders use it: the hypervisor's for dom0, dom0's for every other domain.
 */
export function fillStartInfo(
  page: DataView,
  fields: {
    readonly nrPages: number;
    readonly sharedInfoMfn: number;
    readonly flags: number;
    readonly layout: BootLayout;
    readonly cmdline: string;
    readonly moduleBytes?: number;
    readonly store?: { readonly mfn: number; readonly evtchn: number };
    readonly console?: { readonly mfn: number; readonly evtchn: number };
  },
): void {
  zeroStruct(start_info, page);
  const cmd = new TextEncoder().encode(fields.cmdline);
  if (cmd.byteLength >= 1024) throw new RangeError(`command line of ${cmd.byteLength} bytes exceeds MAX_GUEST_CMDLINE`);
  encodeStruct(start_info, page, 0, {
    magic: new TextEncoder().encode(START_INFO_MAGIC),
    nr_pages: BigInt(fields.nrPages),
    shared_info: BigInt(fields.sharedInfoMfn * PAGE_SIZE),
    flags: fields.flags,
    store_mfn: BigInt(fields.store?.mfn ?? 0),
    store_evtchn: fields.store?.evtchn ?? 0,
    console_domU_mfn: BigInt(fields.console?.mfn ?? 0),
    console_domU_evtchn: fields.console?.evtchn ?? 0,
    pt_base: BigInt(fields.layout.firstFreePfn * PAGE_SIZE),
    nr_pt_frames: 0n,
    mfn_list: BigInt(fields.layout.p2mPfn * PAGE_SIZE),
    mod_start: BigInt(fields.moduleBytes ? fields.layout.modulePfn * PAGE_SIZE : 0),
    mod_len: BigInt(fields.moduleBytes ?? 0),
    cmd_line: cmd,
    first_p2m_pfn: BigInt(fields.layout.p2mPfn),
    nr_p2m_frames: BigInt(fields.layout.p2mPages),
  });
}

/**
 * Writes the P2M list (`start_info.mfn_list`): the u64 mfn of each pfn, in
 * the bootstrap region's P2M pages. `pageOf(pfn)` gives a view of a page of
 * the new domain (however the builder reaches it), `mfns[pfn]` the frame.
 */
export function writeP2mList(layout: BootLayout, mfns: readonly number[], pageOf: (pfn: number) => DataView): void {
  for (let pfn = 0; pfn < mfns.length; pfn++) {
    const at = pfn * 8;
    pageOf(layout.p2mPfn + Math.floor(at / PAGE_SIZE)).setBigUint64(at % PAGE_SIZE, BigInt(mfns[pfn]!), true);
  }
}
