/**
 * `examples/evtchn-pingpong`: two domUs exchange 1000 notifications each way
 * over an interdomain event channel that dom0 allocated in ping and offered
 * to pong.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** Runs the example with `seed` and `count` round trips. */
export function runPingPong(seed = 1, count = 1000): Promise<RunResult> {
  const here = (f: string) => kernelUrl(fileURLToPath(new URL(f, import.meta.url)));
  return runManifest(
    {
      domains: [
        { name: "ping", kernel: here("./ping.js"), memory: 1, cmdline: `port=\${port.bell} count=${count}` },
        { name: "pong", kernel: here("./pong.js"), memory: 1, cmdline: `peer=\${domid.ping} port=\${port.bell} count=${count}` },
      ],
      channels: [{ name: "bell", from: "ping", to: "pong" }],
    },
    { seed },
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of (await runPingPong()).console) console.log(line);
}
