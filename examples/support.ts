/**
 * What every example shares: finding kernel modules by package name, and
 * booting a host whose dom0 builds the domains of a boot manifest.
 */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { bootHost, checkInvariants, toChromeTrace } from "@pvkit/hypervisor";

const require = createRequire(import.meta.url);

/** The file URL of a kernel module, by package specifier (`@pvkit/domu/hello`) or path relative to this directory. */
export function kernelUrl(specifier: string): string {
  return pathToFileURL(require.resolve(specifier)).href;
}

/** What a run of an example produced. */
export interface RunResult {
  /** Xen's console: dom0's lines and the domUs' lines it relayed. */
  readonly console: readonly string[];
  /** The trace, as JSON lines. */
  readonly trace: string;
  /** Virtual time at the end, in ns. */
  readonly ns: number;
}

/**
 * Boots a host with the generic dom0 kernel and `manifest`, runs it until
 * nothing can happen, checks that every domU's resources were returned (the
 * invariant checker), and reports. With `PVKIT_TRACE=file.json` in the
 * environment it also writes the trace as Chrome trace JSON for Perfetto.
 */
export async function runManifest(manifest: unknown, opts: { seed?: number; pcpus?: number; frames?: number } = {}): Promise<RunResult> {
  const { hv, engine } = bootHost({
    frames: opts.frames ?? 8192,
    pcpus: opts.pcpus ?? 2,
    seed: opts.seed ?? 1,
    dom0: { kernel: kernelUrl("@pvkit/dom0/kernel"), pages: 1024, module: new TextEncoder().encode(JSON.stringify(manifest)) },
  });
  await engine.run();
  const crashed = [...engine.guestErrors].map(([domid, e]) => `domain ${domid}: ${e instanceof Error ? e.stack : String(e)}`);
  if (crashed.length > 0) throw new Error(`guest kernels failed:\n${crashed.join("\n")}\n${hv.console.join("\n")}`);
  const broken = checkInvariants(hv);
  if (broken.length > 0) throw new Error(`invariants broken after the run:\n${broken.join("\n")}`);
  const traceFile = process.env["PVKIT_TRACE"];
  if (traceFile) writeFileSync(traceFile, JSON.stringify(toChromeTrace(hv.trace.records)));
  return { console: [...hv.console], trace: hv.trace.serialize(), ns: hv.now };
}
