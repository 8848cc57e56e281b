/**
 * `examples/hello`: dom0 builds two domUs with the domain builder (domctl and
 * memory_op), and each prints a greeting to its console, which dom0 relays
 * to Xen's console.
 */
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** Runs the example with `seed`. */
export function runHello(seed = 1): Promise<RunResult> {
  const hello = kernelUrl("@pvkit/domu/hello");
  return runManifest(
    {
      domains: [
        { name: "alice", kernel: hello, memory: 1, cmdline: "name=alice" },
        { name: "bob", kernel: hello, memory: 2, cmdline: "name=bob" },
      ],
    },
    { seed },
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { console: lines, ns } = await runHello();
  for (const line of lines) console.log(line);
  console.log(`(virtual time ${(ns / 1e6).toFixed(3)} ms)`);
}
