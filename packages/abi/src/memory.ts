/**
 * `memory.h`: the operations of `__HYPERVISOR_memory_op`, with which a domain
 * grows and shrinks its memory reservation, populates its physmap, maps
 * special pages (shared info, grant table frames) into it, and reads the
 * machine memory map, together with their argument structs.
 *
 * @module
 */
import { constants } from "./constants.js";
import { nested, struct, u16, u32, u64 } from "./layout.js";

/** Commands of `__HYPERVISOR_memory_op` (`XENMEM_*`). */
export const XENMEM = constants("memory.h", "XENMEM_", {
  /** Allocate extents of machine memory to a domain; returns how many were allocated ({@link xen_memory_reservation}). */
  increase_reservation: 0,
  /** Give extents back to the hypervisor; returns how many were freed ({@link xen_memory_reservation}). */
  decrease_reservation: 1,
  /** Largest machine frame number in the system. No argument struct. */
  maximum_ram_page: 2,
  /** Pages currently allocated to a domain (argument: `domid_t *`). */
  current_reservation: 3,
  /** Most pages a domain may have (argument: `domid_t *`). */
  maximum_reservation: 4,
  /** The machine frames holding the machine-to-phys table ({@link xen_machphys_mfn_list}). */
  machphys_mfn_list: 5,
  /** Allocate memory at the given guest frames and return the frames used ({@link xen_memory_reservation}). */
  populate_physmap: 6,
  /** Map a special page into the physmap ({@link xen_add_to_physmap}). */
  add_to_physmap: 7,
  /** The memory map a domain was given, in e820 format ({@link xen_memory_map}). */
  memory_map: 9,
  /** The host's machine memory map, for the hardware domain ({@link xen_memory_map}). */
  machine_memory_map: 10,
  /** Swap a set of extents for others of a different size or placement ({@link xen_memory_exchange}). */
  exchange: 11,
  /** Where the machine-to-phys table is mapped in a PV guest ({@link xen_machphys_mapping}). */
  machphys_mapping: 12,
  /** Set another domain's memory map (tools; {@link xen_foreign_memory_map}). */
  set_memory_map: 13,
  /** Largest guest frame number in use by a domain (argument: `domid_t *`). */
  maximum_gpfn: 14,
  /** Remove a page from the physmap ({@link xen_remove_from_physmap}). */
  remove_from_physmap: 15,
  /** Set the populate-on-demand target of a domain ({@link xen_pod_target}). */
  set_pod_target: 16,
  /** Read the populate-on-demand state of a domain ({@link xen_pod_target}). */
  get_pod_target: 17,
  /** Pages freed by memory sharing (tools). */
  get_sharing_freed_pages: 18,
  /** Pages shared by memory sharing (tools). */
  get_sharing_shared_pages: 19,
  /** Memory paging operations (tools). */
  paging_op: 20,
  /** Memory access-permission operations (tools). */
  access_op: 21,
  /** Memory sharing operations (tools). */
  sharing_op: 22,
  /** Batched form of `add_to_physmap` ({@link xen_add_to_physmap_batch}). */
  add_to_physmap_batch: 23,
  /** Claim pages for a domain ahead of populating it, failing early if memory is short (tools). */
  claim_pages: 24,
  /** The frames of the compat machine-to-phys table, for 32-bit PV guests. */
  machphys_compat_mfn_list: 25,
  /** A domain's virtual NUMA topology. */
  get_vnumainfo: 26,
  /** Memory reserved for devices (RMRRs and the like; tools). */
  reserved_device_memory_map: 27,
  /** Map a resource of another domain, such as its grant table frames ({@link xen_mem_acquire_resource}). */
  acquire_resource: 28,
});

/**
 * `xen_memory_reservation.mem_flags` bits (`XENMEMF_*`). The low byte holds
 * the address width limit and the next byte a NUMA node plus one; those are
 * built with the C macros `XENMEMF_address_bits(x)` and `XENMEMF_node(x)`.
 */
export const XENMEMF = constants("memory.h", "XENMEMF_", {
  /** Populate with populate-on-demand entries instead of memory. */
  populate_on_demand: 1 << 16,
  /** Allocate only from the node named, failing otherwise. */
  exact_node_request: 1 << 17,
  /** The node named is a virtual NUMA node. */
  vnode: 1 << 18,
});

/** Where a page added with `XENMEM_add_to_physmap` comes from (`XENMAPSPACE_*`). */
export const XENMAPSPACE = constants("memory.h", "XENMAPSPACE_", {
  /** The domain's shared info page. */
  shared_info: 0,
  /** A frame of the domain's grant table (`idx` is the frame index). */
  grant_table: 1,
  /** Another guest frame of the same domain, which moves. */
  gmfn: 2,
  /** A range of `size` guest frames (`add_to_physmap` only). */
  gmfn_range: 3,
  /** A frame of another domain (`add_to_physmap_batch` only). */
  gmfn_foreign: 4,
  /** A device MMIO region (Arm only). */
  dev_mmio: 5,
});

/** Flags ORed into `xen_add_to_physmap.idx` (`XENMAPIDX_*`). */
export const XENMAPIDX = constants("memory.h", "XENMAPIDX_", {
  /** With `XENMAPSPACE_grant_table`: map a frame of the version 2 status array instead. */
  grant_table_status: 0x80000000,
});

/** Resource types and ids of `XENMEM_acquire_resource` (`XENMEM_resource_*`). */
export const XENMEM_RESOURCE = constants("memory.h", "XENMEM_resource_", {
  /** An ioreq server's pages; `id` is the server id. */
  ioreq_server: 0,
  /** A domain's grant table; `id` is `grant_table_id_shared` or `grant_table_id_status`. */
  grant_table: 1,
  /** A vCPU's processor trace buffer; `id` is the vCPU. */
  vmtrace_buf: 2,
  /** `id` of the shared entries of a grant table. */
  grant_table_id_shared: 0,
  /** `id` of the version 2 status frames of a grant table. */
  grant_table_id_status: 1,
  /** Frame index of an ioreq server's buffered-ioreq page. */
  ioreq_server_frame_bufioreq: 0,
});

/**
 * Argument of `XENMEM_increase_reservation`, `decrease_reservation` and
 * `populate_physmap`: `nr_extents` extents of `2^extent_order` pages each,
 * whose base frames are read from or written to the `extent_start` array.
 * Unprivileged callers may only name `DOMID_SELF` in `domid`.
 */
export const xen_memory_reservation = struct("struct xen_memory_reservation", 32, {
  extent_start: u64(0, "extent_start.p"),
  nr_extents: u64(8),
  extent_order: u32(16),
  /** {@link XENMEMF} flags, address width and node. */
  mem_flags: u32(20),
  domid: u16(24),
});

/**
 * `XENMEM_exchange`: give up the extents of `in` and receive those of `out`
 * (same domain, same total size). `nr_exchanged` counts the input extents
 * exchanged so far and must be zero on entry.
 */
export const xen_memory_exchange = struct("struct xen_memory_exchange", 72, {
  in: nested(0, xen_memory_reservation),
  out: nested(32, xen_memory_reservation),
  nr_exchanged: u64(64),
});

/** The domain asked about by `XENMEM_current_reservation`, `maximum_reservation` and `maximum_gpfn`. */
export const xen_memory_domain = struct("struct xen_memory_domain", 2, {
  domid: u16(0),
});

/**
 * `XENMEM_machphys_mfn_list`: fill `extent_start` with up to `max_extents`
 * machine frames, one per 2 MiB of the machine-to-phys table; `nr_extents`
 * says how many were written.
 */
export const xen_machphys_mfn_list = struct("struct xen_machphys_mfn_list", 24, {
  max_extents: u32(0),
  extent_start: u64(8, "extent_start.p"),
  nr_extents: u32(16),
});

/** `XENMEM_machphys_mapping`: the virtual range of the machine-to-phys table and the largest MFN it covers. */
export const xen_machphys_mapping = struct("struct xen_machphys_mapping", 24, {
  v_start: u64(0),
  v_end: u64(8),
  max_mfn: u64(16),
});

/**
 * `XENMEM_add_to_physmap`: make page `idx` of {@link XENMAPSPACE} `space`
 * appear at guest frame `gpfn` of `domid` (`size` pages for `gmfn_range`).
 */
export const xen_add_to_physmap = struct("struct xen_add_to_physmap", 24, {
  domid: u16(0),
  size: u16(2),
  space: u32(4),
  idx: u64(8),
  gpfn: u64(16),
});

/**
 * `XENMEM_add_to_physmap_batch`: `size` pages of `space`, indexes from
 * `idxs`, placed at the frames in `gpfns`, with a per-page error written to
 * `errs`. For `gmfn_foreign`, `foreign_domid` names the owner.
 */
export const xen_add_to_physmap_batch = struct("struct xen_add_to_physmap_batch", 32, {
  domid: u16(0),
  space: u16(2),
  size: u16(4),
  foreign_domid: u16(6, "u.foreign_domid"),
  res0: u16(6, "u.res0"),
  idxs: u64(8, "idxs.p"),
  gpfns: u64(16, "gpfns.p"),
  errs: u64(24, "errs.p"),
});

/** `XENMEM_remove_from_physmap`: unmap whatever page is at `gpfn` of `domid`. */
export const xen_remove_from_physmap = struct("struct xen_remove_from_physmap", 16, {
  domid: u16(0),
  gpfn: u64(8),
});

/**
 * `XENMEM_memory_map` and `machine_memory_map`: on entry `nr_entries` is the
 * room in `buffer`; on return, the number of e820 entries written.
 */
export const xen_memory_map = struct("struct xen_memory_map", 16, {
  nr_entries: u32(0),
  buffer: u64(8, "buffer.p"),
});

/** `XENMEM_set_memory_map`: the memory map to give `domid`. */
export const xen_foreign_memory_map = struct("struct xen_foreign_memory_map", 24, {
  domid: u16(0),
  map: nested(8, xen_memory_map),
});

/**
 * `XENMEM_set_pod_target` and `get_pod_target`: the populate-on-demand target
 * of `domid`, with its current page totals.
 */
export const xen_pod_target = struct("struct xen_pod_target", 40, {
  target_pages: u64(0),
  tot_pages: u64(8),
  pod_cache_pages: u64(16),
  pod_entries: u64(24),
  domid: u16(32),
});

/**
 * `XENMEM_acquire_resource`: map `nr_frames` frames, from index `frame`, of
 * resource `type`/`id` ({@link XENMEM_RESOURCE}) of `domid`. A PV caller gets
 * the machine frames in `frame_list`. With a null list and `nr_frames` 0 it
 * returns the resource's size in `nr_frames` instead.
 */
export const xen_mem_acquire_resource = struct("struct xen_mem_acquire_resource", 32, {
  domid: u16(0),
  type: u16(2),
  id: u32(4),
  nr_frames: u32(8),
  pad: u32(12),
  frame: u64(16),
  frame_list: u64(24, "frame_list.p"),
});
