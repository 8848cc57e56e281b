/**
 * `examples/xenstore`: dom0 runs xenstored; two domUs use it through their
 * XenStore rings. The writer publishes a greeting in its home and grants the
 * reader access to it; the reader's watch fires only once it may read it.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** The guest kernel's URL. */
export const guestKernel = (): string => kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));

/** Runs the example with `seed`; `vandal` adds a guest that breaks its XenStore ring. */
export function runXenstore(seed = 1, vandal = false): Promise<RunResult> {
  return runManifest(
    {
      domains: [
        { name: "alice", kernel: guestKernel(), memory: 1, cmdline: "role=writer peer=${domid.bob}" },
        { name: "bob", kernel: guestKernel(), memory: 1, cmdline: "role=reader peer=${domid.alice}" },
        ...(vandal ? [{ name: "vandal", kernel: guestKernel(), memory: 1, cmdline: "role=vandal" }] : []),
      ],
    },
    { seed },
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of (await runXenstore()).console) console.log(line);
}
