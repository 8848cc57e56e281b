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
 * pfn 0 up: the kernel image, the P2M list (`start_info.mfn_list`: one u64
 * mfn per pfn), the `start_info` page, the XenStore page, the console page,
 * and no page tables (pvkit has a direct map, so `nr_pt_frames` is 0 and
 * `pt_base` is simply where the bootstrap region ends). As in Mini-OS, a
 * kernel's free memory starts at `pt_base + nr_pt_frames` pages.
 *
 * @module
 */
import { PAGE_SIZE } from "./xen.js";

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
 * Lays out the bootstrap region of a domain with `nrPages` pages of RAM and
 * an image of `imageBytes` bytes; throws if it does not fit.
 */
export function planBootLayout(nrPages: number, imageBytes: number): BootLayout {
  const pages = (bytes: number) => Math.ceil(bytes / PAGE_SIZE);
  const imagePages = Math.max(1, pages(imageBytes));
  const p2mPfn = imagePages;
  const p2mPages = pages(nrPages * 8);
  const startInfoPfn = p2mPfn + p2mPages;
  const layout = { imagePfn: 0, imagePages, p2mPfn, p2mPages, startInfoPfn, storePfn: startInfoPfn + 1, consolePfn: startInfoPfn + 2, firstFreePfn: startInfoPfn + 3 };
  if (layout.firstFreePfn >= nrPages) throw new RangeError(`${nrPages} pages cannot hold a ${layout.firstFreePfn + 1}-page bootstrap region and any free memory`);
  return layout;
}
