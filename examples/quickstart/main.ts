/**
 * `examples/quickstart`: dom0 with its console daemon, block and network
 * back ends and the bridge; two domUs, each with a disk and a network
 * interface, that write to their disks and ping each other.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** Runs the quickstart with `seed`. */
export function runQuickstart(seed = 1): Promise<RunResult> {
  const guest = kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));
  const domU = (name: string, ip: string, peer: string) => ({
    name,
    kernel: guest,
    memory: 2,
    cmdline: `ip=${ip} peer=${peer}`,
    disks: [{ vdev: "xvda", target: "memory", size: 4 }],
    vifs: [{}],
  });
  return runManifest({ domains: [domU("alpha", "10.0.0.1", "10.0.0.2"), domU("beta", "10.0.0.2", "10.0.0.1")], bridges: [{ name: "xenbr0" }] }, { seed });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { console: lines, ns } = await runQuickstart();
  for (const line of lines) console.log(line);
  console.log(`(virtual time ${(ns / 1e6).toFixed(3)} ms)`);
}
