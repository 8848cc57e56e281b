/**
 * `version.h` and `features.h`: the operations of `__HYPERVISOR_xen_version`,
 * with which a guest learns the hypervisor's version, build details,
 * capabilities and the optional features it offers, and the buffers they
 * fill.
 *
 * @module
 */
import { constants } from "./constants.js";
import { bytes, struct, u32, u64 } from "./layout.js";

/**
 * Commands of `__HYPERVISOR_xen_version(cmd, arg)` (`XENVER_*`). All return
 * zero on success except `version`, `pagesize` and `build_id`, which return
 * their answer.
 */
export const XENVER = constants("version.h", "XENVER_", {
  /** Returns `major << 16 | minor`. No argument. */
  version: 0,
  /** Fills a {@link xen_extraversion} string, such as `".2"`. */
  extraversion: 1,
  /** Fills a {@link xen_compile_info}. */
  compile_info: 2,
  /** Fills a {@link xen_capabilities_info}: the guest types supported, such as `"xen-3.0-x86_64"`. */
  capabilities: 3,
  /** Fills a {@link xen_changeset_info} with the source revision. */
  changeset: 4,
  /** Fills a {@link xen_platform_parameters}. */
  platform_parameters: 5,
  /** Fills a {@link xen_feature_info} with one 32-bit word of {@link XENFEAT} bits. */
  get_features: 6,
  /** Returns the page size. No argument. */
  pagesize: 7,
  /** Fills the 16-byte domain handle (UUID) the toolstack gave the caller. */
  guest_handle: 8,
  /** Fills a {@link xen_commandline} with the hypervisor's command line. */
  commandline: 9,
  /** Fills a `xen_build_id` and returns its length; with no buffer, only returns the length. */
  build_id: 10,
});

/** Sizes of the string buffers of `XENVER_*` (`XEN_*_LEN`), NUL included. */
export const XENVER_LEN = constants("version.h", "XEN_", {
  EXTRAVERSION_LEN: 16,
  CAPABILITIES_INFO_LEN: 1024,
  CHANGESET_INFO_LEN: 64,
});

/**
 * Optional features a guest can ask about with `XENVER_get_features`
 * (`XENFEAT_*`); each is a bit number, word `n / 32`, bit `n % 32`.
 */
export const XENFEAT = constants("features.h", "XENFEAT_", {
  /** The guest may update its page tables by direct writes. */
  writable_page_tables: 0,
  /** The guest may update its descriptor tables by direct writes. */
  writable_descriptor_tables: 1,
  /** The hypervisor translates guest-physical to machine addresses; the guest needs no p2m. */
  auto_translated_physmap: 2,
  /** The guest kernel runs in supervisor mode (ring 0). */
  supervisor_mode_kernel: 3,
  /** PAE page directories need not lie below 4 GiB. */
  pae_pgdir_above_4gb: 4,
  /** `MMU_PT_UPDATE_PRESERVE_AD` is supported. */
  mmu_pt_update_preserve_ad: 5,
  /** `MMUEXT_CLEAR_PAGE` and `MMUEXT_COPY_PAGE` are supported. */
  highmem_assist: 6,
  /** `GNTTABOP_map_grant_ref` honours `GNTMAP_guest_avail_mask` bits. */
  gnttab_map_avail_bits: 7,
  /** HVM guests may take events through a callback vector. */
  hvm_callback_vector: 8,
  /** The pvclock algorithm is safe for HVM guests. */
  hvm_safe_pvclock: 9,
  /** HVM guests may use pirqs. */
  hvm_pirqs: 10,
  /** The guest may run as dom0. */
  dom0: 11,
  /** `XENMEMF_vnode` is supported. */
  memory_op_vnode_supported: 13,
  /** Arm: the SMC calling convention is supported. */
  ARM_SMCCC_supported: 14,
  /** x86 PVH: the ACPI RSDP may be anywhere, not only below 1 MiB. */
  linux_rsdp_unrestricted: 15,
  /** The domain's frames are not mapped 1:1 (gfn != mfn). */
  not_direct_mapped: 16,
  /** The domain's frames are mapped 1:1 (gfn == mfn). */
  direct_mapped: 17,
  /** Number of 32-bit words of feature bits. */
  NR_SUBMAPS: 1,
});

/** `XENVER_extraversion`: a NUL-terminated string of up to 16 bytes (`typedef char xen_extraversion_t[16]`). */
export const xen_extraversion = struct("xen_extraversion_t", 16, {});

/** `XENVER_compile_info`: who built the hypervisor, where, when and with what, as NUL-terminated strings. */
export const xen_compile_info = struct("struct xen_compile_info", 144, {
  compiler: bytes(0, 64),
  compile_by: bytes(64, 16),
  compile_domain: bytes(80, 32),
  compile_date: bytes(112, 32),
});

/** `XENVER_capabilities`: a space-separated list of guest ABIs, NUL-terminated (`char[1024]`). */
export const xen_capabilities_info = struct("xen_capabilities_info_t", 1024, {});

/** `XENVER_changeset`: the source revision the hypervisor was built from, NUL-terminated (`char[64]`). */
export const xen_changeset_info = struct("xen_changeset_info_t", 64, {});

/** `XENVER_commandline`: the hypervisor's boot command line, NUL-terminated (`char[1024]`). */
export const xen_commandline = struct("xen_commandline_t", 1024, {});

/**
 * `XENVER_platform_parameters`: `virt_start` is the lowest virtual address
 * the hypervisor reserves in a PV guest's address space.
 */
export const xen_platform_parameters = struct("struct xen_platform_parameters", 8, {
  virt_start: u64(0),
});

/** `XENVER_get_features`: the caller sets `submap_idx`; the hypervisor returns that word of {@link XENFEAT} bits in `submap`. */
export const xen_feature_info = struct("struct xen_feature_info", 8, {
  submap_idx: u32(0),
  submap: u32(4),
});

/**
 * `XENVER_build_id`: `len` is the size of the buffer that follows (a flexible
 * `buf[]` of bytes), which receives the build id.
 */
export const xen_build_id = struct("struct xen_build_id", 4, {
  len: u32(0),
});
