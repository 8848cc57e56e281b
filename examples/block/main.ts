/**
 * `examples/block`: dom0 serves virtual disks with blkback — a raw image
 * file on the host, or memory — and domUs use them with blkfront.
 *
 * - `alpha` has a 4 MiB writable disk (`xvda`: an image file, or memory)
 *   and a read-only one (`xvdb`). It asks for a four-page ring, persistent
 *   grants and 32-segment indirect requests.
 * - `beta` has a 1 MiB memory disk and asks for the plainest protocol: a
 *   one-page ring, a grant per request, 11 segments at most.
 * - `crasher` (optional) powers off in the middle of a burst of writes.
 *
 * With image files the run does real host I/O, whose timing is the host's:
 * the console is the same from run to run but the trace is not. With memory
 * disks only, the same seed gives the same trace.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** The guest kernel's URL. */
export const guestKernel = (): string => kernelUrl(fileURLToPath(new URL("./guest.js", import.meta.url)));

/** What to run. */
export interface BlockRunOptions {
  /** The engine's seed (default 1). */
  readonly seed?: number;
  /** alpha's writable disk: a raw image file (at least 4 MiB is used as it is); memory when absent. */
  readonly image?: string;
  /** alpha's read-only disk: a raw image file; a 1 MiB memory disk when absent. */
  readonly readOnlyImage?: string;
  /** Leave beta out. */
  readonly withoutBeta?: boolean;
  /** Add the crasher, on this image file (or a memory disk, `"memory"`). */
  readonly crasher?: string;
}

/** Builds the boot manifest of a run. */
export function blockManifest(o: BlockRunOptions = {}): unknown {
  const guest = guestKernel();
  return {
    domains: [
      {
        name: "alpha",
        kernel: guest,
        memory: 2,
        cmdline: "role=exercise ring-order=2 persistent=1 indirect=32 queue=16",
        disks: [
          { vdev: "xvda", target: o.image ?? "memory", size: 4, mode: "w" },
          { vdev: "xvdb", target: o.readOnlyImage ?? "memory", size: 1, mode: "r" },
        ],
      },
      ...(o.withoutBeta ? [] : [{ name: "beta", kernel: guest, memory: 2, cmdline: "role=exercise ring-order=0 persistent=0 indirect=0 queue=8", disks: [{ vdev: "xvda", target: "memory", size: 1, mode: "w" }] }]),
      ...(o.crasher === undefined ? [] : [{ name: "crasher", kernel: guest, memory: 2, cmdline: "role=crash ring-order=1", disks: [{ vdev: "xvda", target: o.crasher, size: 1, mode: "w" }] }]),
    ],
  };
}

/** Runs the example. */
export function runBlock(o: BlockRunOptions = {}): Promise<RunResult> {
  return runManifest(blockManifest(o), { seed: o.seed ?? 1, frames: 8192 });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "pvkit-block-"));
  try {
    const image = join(dir, "alpha.img");
    const ro = join(dir, "alpha-ro.img");
    writeFileSync(image, new Uint8Array(4 << 20));
    const label = new Uint8Array(1 << 20);
    label.set(new TextEncoder().encode((await import("./pattern.js")).READ_ONLY_LABEL));
    writeFileSync(ro, label);
    const { console: lines, ns } = await runBlock({ image, readOnlyImage: ro });
    for (const line of lines) console.log(line);
    console.log(`(virtual time ${(ns / 1e6).toFixed(3)} ms; images in ${dir}, removed)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
