/** STUB — being written: netback, the bridge and pcap. */
import type { Kernel, XsClient } from "@pvkit/kernel";
import type { Backends } from "../backends.js";
export interface BridgeSpec {
  readonly name: string;
  readonly pcap?: string;
}
export function startNetback(_k: Kernel, _xs: XsClient, _opts: { readonly bridges: readonly BridgeSpec[] }): Backends {
  return { stop: async () => {} };
}
