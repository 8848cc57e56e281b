/**
 * The block example's guest: it finds its virtual disks under `device/vbd`
 * and uses them through blkfront.
 *
 * - `role=exercise`: on its first disk (writable) it writes a pattern over
 *   every sector, in writes of varied sizes all issued at once (the queue
 *   and the ring hold them back), flushes, reads everything back and checks
 *   it, discards a range and checks it reads as zeros. On its second disk
 *   (read-only) it reads the label and tries to write and discard, which
 *   the back end refuses.
 * - `role=crash`: starts a burst of writes on its disk and powers off
 *   without waiting for them: dom0 must clean up after it.
 *
 * `ring-order=`, `persistent=`, `indirect=` and `queue=` choose what the
 * front end asks for.
 */
import * as E from "fp-ts/lib/Either.js";
import { kernelMain, openXenstore, type Kernel } from "@pvkit/kernel";
import { listVbds, openBlkfront, type BlkfrontDevice, type BlkfrontOptions } from "@pvkit/domu";
import { READ_ONLY_LABEL, discardRange, patternAt } from "./pattern.js";

/** Write sizes the exerciser cycles through, in sectors: one sector, part pages, inline requests, indirect ones. */
const WRITE_SIZES = [1, 7, 8, 13, 64, 88, 256, 300];

function options(k: Kernel): BlkfrontOptions {
  const n = (key: string, dflt: number) => Number(k.arg(key) ?? dflt);
  return { ringPageOrder: n("ring-order", 0), persistent: k.arg("persistent") !== "0", maxIndirectSegments: n("indirect", 32), queueDepth: n("queue", 16) };
}

function describe(name: string, d: BlkfrontDevice): string {
  const i = d.info!;
  const features = [i.readOnly ? "read-only" : "read-write", `${i.ringPages}-page ring (${d.ring!.size} slots)`, i.persistent ? "persistent grants" : "grants per request", i.maxSegments > 11 ? `${i.maxSegments} indirect segments` : "11 segments", i.flush === "flush" ? "flush" : "no flush", i.discard ? "discard" : "no discard"];
  return `${name}: ${i.sectors} sectors of ${i.sectorSize} bytes, info ${i.vdisk}; ${features.join(", ")}`;
}

async function exercise(k: Kernel, name: string, disk: BlkfrontDevice): Promise<void> {
  const sectors = disk.info!.sectors;
  const writes: Promise<E.Either<{ message: string }, void>>[] = [];
  for (let s = 0, i = 0; s < sectors; i++) {
    const n = Math.min(WRITE_SIZES[i % WRITE_SIZES.length]!, sectors - s);
    writes.push(disk.write(s, patternAt(s * 512, n * 512)));
    s += n;
  }
  const failed = (await Promise.all(writes)).filter(E.isLeft);
  await k.print(`${name}: wrote ${sectors} sectors in ${writes.length} writes, ${failed.length} failed`);
  const flushed = await disk.flush();
  await k.print(`${name}: flush ${E.isRight(flushed) ? "done" : `failed: ${flushed.left.message}`}`);

  let bad = 0;
  const reads: Promise<void>[] = [];
  for (let s = 0; s < sectors; s += 256) {
    const n = Math.min(256, sectors - s);
    reads.push(
      disk.read(s, n).then((r) => {
        if (E.isLeft(r)) bad += n;
        else {
          const want = patternAt(s * 512, n * 512);
          for (let x = 0; x < n; x++) if (r.right.subarray(x * 512, (x + 1) * 512).some((b, j) => b !== want[x * 512 + j])) bad++;
        }
      }),
    );
  }
  await Promise.all(reads);
  await k.print(bad === 0 ? `${name}: read back all ${sectors} sectors: the pattern is intact` : `${name}: read back: ${bad} sectors WRONG`);

  const d = discardRange(sectors);
  const discarded = await disk.discard(d.start, d.count);
  const after = await disk.read(d.start - 1, d.count + 2);
  const zeros = E.isRight(after) && after.right.subarray(512, (d.count + 1) * 512).every((b) => b === 0);
  const edges = E.isRight(after) && after.right.subarray(0, 512).every((b, j) => b === patternAt((d.start - 1) * 512, 512)[j]) && after.right.subarray((d.count + 1) * 512).every((b, j) => b === patternAt((d.start + d.count) * 512, 512)[j]);
  await k.print(`${name}: discarded sectors ${d.start}..${d.start + d.count - 1}: ${E.isRight(discarded) ? "done" : discarded.left.message}; they read as ${zeros ? "zeros" : "NOT zeros"}, their neighbours ${edges ? "are untouched" : "CHANGED"}`);
  const s = disk.ring!.stats;
  await k.print(`${name}: stats: ${s.requests} requests, ${s.indirect} indirect, ${s.grants} grants, ${s.queueWaits} queue waits, ${s.ringFull} ring-full waits`);
}

async function readOnly(k: Kernel, name: string, disk: BlkfrontDevice): Promise<void> {
  const label = await disk.read(0, 1);
  const text = E.isRight(label) ? new TextDecoder().decode(label.right.subarray(0, READ_ONLY_LABEL.length)) : label.left.message;
  await k.print(`${name}: reads "${text.replace(/\0+$/, "")}"`);
  const w = await disk.write(0, new Uint8Array(512).fill(0x41));
  await k.print(`${name}: write ${E.isLeft(w) ? `refused: ${w.left.name} (BLKIF_RSP ${w.left.status})` : "ALLOWED — wrong"}`);
  const d = await disk.discard(0, 8);
  await k.print(`${name}: discard ${E.isLeft(d) ? `refused: ${d.left.name} (BLKIF_RSP ${d.left.status})` : "ALLOWED — wrong"}`);
  const again = await disk.read(0, 1);
  const same = E.isRight(again) && E.isRight(label) && again.right.every((b, i) => b === label.right[i]);
  await k.print(`${name}: still reads the same: ${same ? "yes" : "NO"}`);
}

async function crash(k: Kernel, name: string, disk: BlkfrontDevice): Promise<void> {
  const first = await disk.write(0, patternAt(0, 4096));
  await k.print(`${name}: first write ${E.isRight(first) ? "done" : first.left.message}`);
  for (let i = 1; i < 48; i++) void disk.write(i * 64, patternAt(i * 64 * 512, 64 * 512));
  await k.print(`${name}: powering off with writes in flight`);
}

export default kernelMain(async (k) => {
  const xs = openXenstore(k);
  const name = E.getOrElse(() => "guest")(await xs.read("name")());
  const ids = await listVbds(xs);
  await k.print(`${name}: virtual block devices ${ids.join(", ")}`);
  const disks: [string, BlkfrontDevice][] = [];
  for (const [i, id] of ids.entries()) {
    const d = await openBlkfront(k, xs, id, options(k));
    if (E.isLeft(d)) throw new Error(`${name}: vbd ${id}: ${d.left.message}`);
    const label = `xvd${String.fromCharCode(97 + i)}`;
    disks.push([label, d.right]);
    await k.print(describe(label, d.right));
  }
  switch (k.arg("role")) {
    case "exercise": {
      const [[n0, d0], ro] = [disks[0]!, disks[1]];
      await exercise(k, n0, d0);
      if (ro !== undefined) await readOnly(k, ro[0], ro[1]);
      for (const [, d] of disks) await d.close();
      await k.print(`${name}: disks closed`);
      return;
    }
    case "crash":
      return crash(k, name, disks[0]![1]);
    default:
      throw new Error(`unknown role ${k.arg("role")}`);
  }
});
