/** STUB — being written: blkback. */
import type { Kernel, XsClient } from "@pvkit/kernel";
import type { Backends } from "../backends.js";
export function startBlkback(_k: Kernel, _xs: XsClient): Backends {
  return { stop: async () => {} };
}
