/**
 * `grant_table.h`: grant tables, the way a domain lets another domain map,
 * copy or take over one of its pages.
 *
 * The granting domain fills an entry of its grant table (a
 * {@link grant_entry_v1}: flags, the grantee and the frame) and passes the
 * entry's index, the grant reference, to the grantee, usually through
 * XenStore. The grantee then uses `__HYPERVISOR_grant_table_op` with one of
 * the {@link GNTTABOP} commands to map, unmap, copy or transfer. Per-operation
 * results are {@link GNTST} codes in each struct's `status` field.
 *
 * @module
 */
import { constants } from "./constants.js";
import { nested, struct, i16, u16, u32, u64 } from "./layout.js";

/**
 * Commands of `__HYPERVISOR_grant_table_op` (`GNTTABOP_*`). The hypercall
 * takes a command, an array of the command's structs and its length, and
 * reports each element's outcome in that element's `status`.
 */
export const GNTTABOP = constants("grant_table.h", "GNTTABOP_", {
  /** Map granted frames into the caller's address space or for device DMA. */
  map_grant_ref: 0,
  /** Undo a `map_grant_ref`, by the handle it returned. */
  unmap_grant_ref: 1,
  /** Size a domain's grant table and learn the frames that hold it. */
  setup_table: 2,
  /** Ask the hypervisor to print a domain's grant table to its console. */
  dump_table: 3,
  /** Give a page to a domain that offered a `GTF_accept_transfer` grant. */
  transfer: 4,
  /** Copy bytes between frames, either side named by frame or by grant. */
  copy: 5,
  /** Report a domain's current and maximum grant-table frames. */
  query_size: 6,
  /** Unmap a grant, putting another mapping in its place. */
  unmap_and_replace: 7,
  /** Choose grant table version 1 or 2. */
  set_version: 8,
  /** Learn the frames of the version 2 status array. */
  get_status_frames: 9,
  /** Report a domain's grant table version. */
  get_version: 10,
  /** Swap two entries of the caller's grant table. */
  swap_grant_ref: 11,
  /** Clean or invalidate the cache over part of a granted frame. */
  cache_flush: 12,
});

/**
 * Per-operation results (`GNTST_*`): zero for success, negative otherwise.
 * They are written to each request's `status`, not returned by the hypercall.
 */
export const GNTST = constants("grant_table.h", "GNTST_", {
  /** Normal return. */
  okay: 0,
  /** Any error without a more specific code. */
  general_error: -1,
  /** The domain id is not recognised. */
  bad_domain: -2,
  /** The grant reference is not recognised or not suitable. */
  bad_gntref: -3,
  /** The mapping handle is not recognised or not suitable. */
  bad_handle: -4,
  /** The virtual address cannot take the mapping. */
  bad_virt_addr: -5,
  /** The device address to unmap is not suitable. */
  bad_dev_addr: -6,
  /** No room left in the I/O MMU. */
  no_device_space: -7,
  /** The caller lacks the privilege for the operation. */
  permission_denied: -8,
  /** The page given is not valid for the operation. */
  bad_page: -9,
  /** A copy argument crosses a page boundary. */
  bad_copy_arg: -10,
  /** The page address is too large for the transfer. */
  address_too_big: -11,
  /** Not done this time; try again. */
  eagain: -12,
  /** Out of space (handles and the like). */
  no_space: -13,
});

/**
 * `grant_entry_v1.flags` (`GTF_*`). The low two bits are the entry type
 * (`type_mask`); the rest are flags, some written by the granting guest and
 * some (`reading`, `writing`, `transfer_*`) by the hypervisor.
 */
export const GTF = constants("grant_table.h", "GTF_", {
  /** Type: the entry grants nothing. */
  invalid: 0,
  /** Type: `domid` may map and access `frame`. */
  permit_access: 1,
  /** Type: `domid` may transfer a page into `frame`. */
  accept_transfer: 2,
  /** Type: `domid` may use another domain's grant as if it were this one (version 2). */
  transitive: 3,
  /** The bits that hold the entry type. */
  type_mask: 3,
  /** Restrict the grantee to read-only access. */
  readonly: 1 << 2,
  /** Set by the hypervisor while the grantee has the frame mapped or copies from it. */
  reading: 1 << 3,
  /** Set by the hypervisor while the grantee has the frame mapped writable or copies into it. */
  writing: 1 << 4,
  /** Cache attribute for the grantee's mapping: write-through. */
  PWT: 1 << 5,
  /** Cache attribute for the grantee's mapping: cache disabled. */
  PCD: 1 << 6,
  /** Cache attribute for the grantee's mapping: PAT. */
  PAT: 1 << 7,
  /** Only part of the frame is granted (version 2 sub-page grants). */
  sub_page: 1 << 8,
  /** Transfer: the hypervisor has committed to a transfer into this entry. */
  transfer_committed: 1 << 2,
  /** Transfer: the transfer is complete and `frame` holds the new MFN. */
  transfer_completed: 1 << 3,
});

/** `gnttab_map_grant_ref.flags` (`GNTMAP_*`): how a grant is to be mapped. */
export const GNTMAP = constants("grant_table.h", "GNTMAP_", {
  /** Map for access by I/O devices (returns `dev_bus_addr`). */
  device_map: 1 << 0,
  /** Map for access by the host CPUs at `host_addr`. */
  host_map: 1 << 1,
  /** Allow read-only access only. */
  readonly: 1 << 2,
  /** With `host_map`: the mapping is usable by the current application as well as the kernel. */
  application_map: 1 << 3,
  /** `host_addr` is the machine address of the PTE to update, not a virtual address. */
  contains_pte: 1 << 4,
  /** Bits left to the guest in the PTE of a mapping (with `XENFEAT_gnttab_map_avail_bits`). */
  guest_avail_mask: 0xffff0000,
});

/** `gnttab_copy.flags` (`GNTCOPY_*`): which side of a copy is named by a grant reference. */
export const GNTCOPY = constants("grant_table.h", "GNTCOPY_", {
  /** `source.u.ref` is a grant reference of `source.domid`, not a frame. */
  source_gref: 1 << 0,
  /** `dest.u.ref` is a grant reference of `dest.domid`, not a frame. */
  dest_gref: 1 << 1,
});

/**
 * Grant references the toolstack fills for a new domain before it boots
 * (`GNTTAB_RESERVED_*`), granting its console and XenStore pages to their
 * back ends.
 */
export const GNTTAB_RESERVED = constants("grant_table.h", "GNTTAB_RESERVED_", {
  CONSOLE: 0,
  XENSTORE: 1,
});

/** Number of grant entries kept across a grant table reset (`GNTTAB_NR_RESERVED_ENTRIES`). */
export const GNTTAB_NR = constants("grant_table.h", "GNTTAB_NR_", { RESERVED_ENTRIES: 8 });

/** `gnttab_cache_flush.op` (`GNTTAB_CACHE_*`). */
export const GNTTAB_CACHE = constants("grant_table.h", "GNTTAB_CACHE_", {
  /** Write dirty lines back. */
  CLEAN: 1 << 0,
  /** Discard the lines. */
  INVAL: 1 << 1,
  /** `a.ref` is a grant reference rather than `a.dev_bus_addr`. */
  SOURCE_GREF: 0x80000000,
});

/**
 * A version 1 grant table entry (8 bytes). The granting guest writes `domid`
 * and `frame` first and `flags` last (with a write barrier between), since
 * a valid type in `flags` publishes the entry.
 */
export const grant_entry_v1 = struct("struct grant_entry_v1", 8, {
  /** {@link GTF} type and flags. */
  flags: u16(0),
  /** The domain being granted access. */
  domid: u16(2),
  /** The frame granted (or, after a transfer, the frame received). */
  frame: u32(4),
});

/** The header common to every version 2 grant entry: flags and grantee. */
export const grant_entry_header = struct("struct grant_entry_header", 4, {
  flags: u16(0),
  domid: u16(2),
});

/**
 * A version 2 grant entry (16 bytes): a whole frame, a sub-page range of a
 * frame, or a transitive grant of another domain's grant reference, as the
 * header's type and `GTF_sub_page` say.
 */
export const grant_entry_v2 = struct("union grant_entry_v2", 16, {
  hdr: nested(0, grant_entry_header),
  full_page_frame: u64(8, "full_page.frame"),
  sub_page_page_off: u16(4, "sub_page.page_off"),
  sub_page_length: u16(6, "sub_page.length"),
  sub_page_frame: u64(8, "sub_page.frame"),
  transitive_trans_domid: u16(4, "transitive.trans_domid"),
  transitive_gref: u32(8, "transitive.gref"),
});

/**
 * `GNTTABOP_map_grant_ref`: map grant `ref` of domain `dom` at `host_addr`
 * and/or for devices, as {@link GNTMAP} `flags` say. On success returns a
 * `handle` for the unmap and, for device mappings, `dev_bus_addr`.
 */
export const gnttab_map_grant_ref = struct("struct gnttab_map_grant_ref", 32, {
  host_addr: u64(0),
  flags: u32(8),
  ref: u32(12),
  dom: u16(16),
  status: i16(18),
  handle: u32(20),
  dev_bus_addr: u64(24),
});

/**
 * `GNTTABOP_unmap_grant_ref`: remove the mapping identified by `handle` at
 * `host_addr` and/or `dev_bus_addr` (zero for the side not mapped).
 */
export const gnttab_unmap_grant_ref = struct("struct gnttab_unmap_grant_ref", 24, {
  host_addr: u64(0),
  dev_bus_addr: u64(8),
  handle: u32(16),
  status: i16(20),
});

/**
 * `GNTTABOP_setup_table`: grow the grant table of `dom` to `nr_frames`
 * frames and write their frame numbers to the `frame_list` array. Only a
 * privileged caller may name a domain other than itself.
 */
export const gnttab_setup_table = struct("struct gnttab_setup_table", 24, {
  dom: u16(0),
  nr_frames: u32(4),
  status: i16(8),
  frame_list: u64(16, "frame_list.p"),
});

/** `GNTTABOP_dump_table`: print the grant table of `dom` on the hypervisor console (debugging). */
export const gnttab_dump_table = struct("struct gnttab_dump_table", 4, {
  dom: u16(0),
  status: i16(2),
});

/**
 * `GNTTABOP_transfer`: hand page `mfn` to `domid`, into the entry `ref` it
 * marked `GTF_accept_transfer`. The caller loses the page.
 */
export const gnttab_transfer = struct("struct gnttab_transfer", 24, {
  mfn: u64(0),
  domid: u16(8),
  ref: u32(12),
  status: i16(16),
});

/**
 * One side of a {@link gnttab_copy}: a grant reference (`ref`) or a frame
 * (`gmfn`) of `domid`, and a byte offset into it.
 */
export const gnttab_copy_ptr = struct("struct gnttab_copy_ptr", 16, {
  ref: u32(0, "u.ref"),
  gmfn: u64(0, "u.gmfn"),
  domid: u16(8),
  offset: u16(10),
});

/**
 * `GNTTABOP_copy`: copy `len` bytes from `source` to `dest` without mapping
 * either page; {@link GNTCOPY} `flags` say which side is a grant reference.
 * Neither range may cross a page boundary.
 */
export const gnttab_copy = struct("struct gnttab_copy", 40, {
  source: nested(0, gnttab_copy_ptr),
  dest: nested(16, gnttab_copy_ptr),
  len: u16(32),
  flags: u16(34),
  status: i16(36),
});

/** `GNTTABOP_query_size`: the current and maximum number of grant-table frames of `dom`. */
export const gnttab_query_size = struct("struct gnttab_query_size", 16, {
  dom: u16(0),
  nr_frames: u32(4),
  max_nr_frames: u32(8),
  status: i16(12),
});

/**
 * `GNTTABOP_unmap_and_replace`: remove the grant mapping `handle` at
 * `host_addr` and move the mapping found at `new_addr` there, leaving
 * `new_addr` unmapped.
 */
export const gnttab_unmap_and_replace = struct("struct gnttab_unmap_and_replace", 24, {
  host_addr: u64(0),
  new_addr: u64(8),
  handle: u32(16),
  status: i16(20),
});

/**
 * `GNTTABOP_set_version`: ask for grant table version 1 or 2; on return
 * `version` holds the version in force. Only allowed while no grant is in use.
 */
export const gnttab_set_version = struct("struct gnttab_set_version", 4, {
  version: u32(0),
});

/** `GNTTABOP_get_status_frames`: write the frames of the version 2 status array of `dom` to `frame_list`. */
export const gnttab_get_status_frames = struct("struct gnttab_get_status_frames", 16, {
  nr_frames: u32(0),
  dom: u16(4),
  status: i16(6),
  frame_list: u64(8, "frame_list.p"),
});

/** `GNTTABOP_get_version`: the grant table version of `dom`. */
export const gnttab_get_version = struct("struct gnttab_get_version", 8, {
  dom: u16(0),
  pad: u16(2),
  version: u32(4),
});

/** `GNTTABOP_swap_grant_ref`: exchange entries `ref_a` and `ref_b` of the caller's table. */
export const gnttab_swap_grant_ref = struct("struct gnttab_swap_grant_ref", 12, {
  ref_a: u32(0),
  ref_b: u32(4),
  status: i16(8),
});

/**
 * `GNTTABOP_cache_flush`: clean and/or invalidate ({@link GNTTAB_CACHE}) the
 * bytes `[offset, offset + length)` of a frame named by bus address or grant.
 */
export const gnttab_cache_flush = struct("struct gnttab_cache_flush", 16, {
  dev_bus_addr: u64(0, "a.dev_bus_addr"),
  ref: u32(0, "a.ref"),
  offset: u16(8),
  length: u16(10),
  op: u32(12),
});
