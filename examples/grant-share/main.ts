/**
 * `examples/grant-share`: one domU grants pages, another maps one, reads and
 * writes it, unmaps it, and moves a page the other way with a grant copy.
 * The grant references travel over the consoles: dom0 types the granter's
 * console lines into the mapper's console.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** Runs the example with `seed`. */
export function runGrantShare(seed = 1): Promise<RunResult> {
  const here = (f: string) => kernelUrl(fileURLToPath(new URL(f, import.meta.url)));
  return runManifest(
    {
      domains: [
        { name: "granter", kernel: here("./granter.js"), memory: 1, cmdline: "peer=${domid.mapper} port=${port.sync}" },
        { name: "mapper", kernel: here("./mapper.js"), memory: 1, cmdline: "peer=${domid.granter} port=${port.sync}" },
      ],
      channels: [{ name: "sync", from: "granter", to: "mapper" }],
      consoleLinks: [{ from: "granter", to: "mapper" }],
    },
    { seed },
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of (await runGrantShare()).console) console.log(line);
}
