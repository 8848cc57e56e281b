/**
 * `io/console.h`: the PV console page.
 *
 * Two byte rings in one page. `out` carries what the guest prints (the guest
 * produces, the console daemon consumes); `in` carries what is typed at the
 * console (the daemon produces, the guest consumes). Indexes run freely and
 * are masked with the ring's size (`MASK_XENCONS_IDX`); after producing, a
 * side notifies the other through the console event channel.
 *
 * @module
 */
import { bytes, struct, u32 } from "../layout.js";

/** The console page (`struct xencons_interface`). */
export const xencons_interface = struct("struct xencons_interface", 3088, {
  /** Input to the guest, 1024 bytes. */
  in: bytes(0, 1024),
  /** Output from the guest, 2048 bytes. */
  out: bytes(1024, 2048),
  in_cons: u32(3072),
  in_prod: u32(3076),
  out_cons: u32(3080),
  out_prod: u32(3084),
});
