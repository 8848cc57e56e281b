/**
 * `examples/network`: two domUs on dom0's bridge `xenbr0` ping each other
 * through netfront and netback, and the bridge writes what crosses it to
 * a pcap file.
 *
 * `vandal` adds a guest that breaks its TX ring (netback disconnects that
 * vif alone); `crasher` adds one that powers off in the middle of sending;
 * `strayBridge` one whose vif names a bridge dom0 does not have: netback
 * reports it in `hotplug-status`, as `vif-bridge` does, and the group's
 * creation fails as libxl's does.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** The guest kernel's URL. */
export const guestKernel = (): string => kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));

/** What to run. */
export interface NetworkOptions {
  /** The engine's seed (default 1). */
  readonly seed?: number;
  /** Where the bridge writes its capture (default: none). */
  readonly pcap?: string;
  /** Echo requests each way (default 3). */
  readonly count?: number;
  /** Bytes of ICMP data per echo request (default 56); over a page, frames span several ring slots. */
  readonly pingSize?: number;
  /** Have bob use separate TX and RX event channels. */
  readonly split?: boolean;
  /** Add a guest that corrupts its TX ring. */
  readonly vandal?: boolean;
  /** Add a guest that powers off mid-I/O. */
  readonly crasher?: boolean;
  /** Add a guest whose vif names a bridge that does not exist. */
  readonly strayBridge?: boolean;
}

/** The boot manifest of the example. */
export function networkManifest(opts: NetworkOptions = {}): unknown {
  const count = opts.count ?? 3;
  const guest = guestKernel();
  const size = opts.pingSize !== undefined ? ` size=${opts.pingSize}` : "";
  return {
    domains: [
      { name: "alice", kernel: guest, memory: 2, cmdline: `ip=10.0.0.1 peer=10.0.0.2 count=${count}${size}`, vifs: [{ mac: "00:16:3e:00:00:01" }] },
      { name: "bob", kernel: guest, memory: 2, cmdline: `ip=10.0.0.2 peer=10.0.0.1 count=${count}${size}${opts.split ? " split=1" : ""}`, vifs: [{ mac: "00:16:3e:00:00:02" }] },
      ...(opts.vandal ? [{ name: "mallory", kernel: guest, memory: 2, cmdline: "role=vandal", vifs: [{}] }] : []),
      ...(opts.crasher ? [{ name: "carol", kernel: guest, memory: 2, cmdline: "role=crasher", vifs: [{}] }] : []),
      ...(opts.strayBridge ? [{ name: "dave", kernel: guest, memory: 2, cmdline: "ip=10.0.0.4 peer=10.0.0.1", vifs: [{ bridge: "xenbr9" }] }] : []),
    ],
    bridges: [{ name: "xenbr0", ...(opts.pcap !== undefined && { pcap: opts.pcap }) }],
  };
}

/** Runs the example. */
export function runNetwork(opts: NetworkOptions = {}): Promise<RunResult> {
  return runManifest(networkManifest(opts), { seed: opts.seed ?? 1 });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const pcap = join(mkdtempSync(join(tmpdir(), "pvkit-network-")), "xenbr0.pcap");
  for (const line of (await runNetwork({ pcap })).console) console.log(line);
  console.log(`capture of xenbr0: ${pcap} (try: tshark -r ${pcap})`);
}
