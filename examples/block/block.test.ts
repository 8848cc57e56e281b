import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { skipUnbuilt } from "../built.js";

type Main = typeof import("./main.js");
type Pattern = typeof import("./pattern.js");
const load = async () => ({ ...((await import("../dist/block/main.js")) as Main), ...((await import("../dist/block/pattern.js")) as Pattern) });

interface Rec {
  kind: string;
  op?: string;
  domid: number;
  status?: number;
  state?: string;
}
const records = (trace: string): Rec[] =>
  trace
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Rec);

/** dom0 unmapped every grant it mapped, and every domU was destroyed (none left a zombie for a mapping dom0 kept). */
function everythingReturned(trace: string, domus: number): void {
  const recs = records(trace);
  const dom0 = recs.filter((r) => r.kind === "grant" && r.domid === 0);
  const maps = dom0.filter((r) => r.op === "map" && r.status === 0).length;
  const unmaps = dom0.filter((r) => r.op === "unmap" && r.status === 0).length;
  expect(maps).toBeGreaterThan(0);
  expect(unmaps).toBe(maps);
  expect(recs.filter((r) => r.kind === "domain" && r.state === "destroyed").map((r) => r.domid)).toHaveLength(domus);
}

describe.skipIf(skipUnbuilt)("examples/block", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "pvkit-block-test-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a domU writes a pattern over a raw image, flushes, reads it back, discards; the image holds it; the read-only disk refuses writes", async () => {
    const { runBlock, expectedDisk, READ_ONLY_LABEL } = await load();
    const image = join(dir, "alpha.img");
    const ro = join(dir, "alpha-ro.img");
    writeFileSync(image, new Uint8Array(4 << 20).fill(0xee)); // garbage the guest must overwrite
    const roBytes = new Uint8Array(1 << 20).fill(0x33);
    roBytes.set(new TextEncoder().encode(READ_ONLY_LABEL));
    roBytes[READ_ONLY_LABEL.length] = 0;
    writeFileSync(ro, roBytes);

    const { console: lines, trace } = await runBlock({ image, readOnlyImage: ro });
    expect(lines).toContain("[alpha] alpha: virtual block devices 51712, 51728");
    expect(lines).toContain("[alpha] xvda: 8192 sectors of 512 bytes, info 0; read-write, 4-page ring (128 slots), persistent grants, 32 indirect segments, flush, discard");
    expect(lines).toContain("[alpha] xvdb: 2048 sectors of 512 bytes, info 4; read-only, 4-page ring (128 slots), persistent grants, 32 indirect segments, flush, discard");
    expect(lines).toContain("[alpha] xvda: wrote 8192 sectors in 93 writes, 0 failed");
    expect(lines).toContain("[alpha] xvda: flush done");
    expect(lines).toContain("[alpha] xvda: read back all 8192 sectors: the pattern is intact");
    expect(lines).toContain("[alpha] xvda: discarded sectors 2048..3071: done; they read as zeros, their neighbours are untouched");
    expect(lines).toContainEqual(expect.stringMatching(/^\[alpha\] xvda: stats: \d+ requests, [1-9]\d* indirect, /));
    expect(lines).toContain(`[alpha] xvdb: reads "${READ_ONLY_LABEL}"`);
    expect(lines).toContain("[alpha] xvdb: write refused: EIO (BLKIF_RSP -1)");
    expect(lines).toContain("[alpha] xvdb: discard refused: EIO (BLKIF_RSP -1)");
    expect(lines).toContain("[alpha] xvdb: still reads the same: yes");
    expect(lines).toContain("[beta] xvda: 2048 sectors of 512 bytes, info 0; read-write, 1-page ring (32 slots), grants per request, 11 segments, flush, discard");
    expect(lines).toContain("[beta] xvda: read back all 2048 sectors: the pattern is intact");
    expect(lines).toContainEqual(expect.stringMatching(/^\[beta\] xvda: stats: \d+ requests, 0 indirect, /));
    expect(lines).toContain("[alpha] alpha: disks closed");
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");

    // The image on the host holds the pattern, with the discarded range zeroed; the read-only one is untouched.
    expect(Buffer.compare(readFileSync(image), Buffer.from(expectedDisk(8192)))).toBe(0);
    expect(Buffer.compare(readFileSync(ro), Buffer.from(roBytes))).toBe(0);
    everythingReturned(trace, 2);
  });

  it("a domU that powers off with writes in flight to an image: dom0 waits for the host I/O, then returns every grant and channel", async () => {
    const { runBlock } = await load();
    const image = join(dir, "crasher.img");
    writeFileSync(image, new Uint8Array(1 << 20));
    // runManifest runs the invariant checker after the run: it throws if anything leaked.
    const { console: lines, trace } = await runBlock({ withoutBeta: true, crasher: image });
    expect(lines).toContain("[crasher] crasher: powering off with writes in flight");
    expect(lines).toContain("dom0: crasher (domain 2) shut down: poweroff; destroyed");
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
    everythingReturned(trace, 2);
  });

  it("with memory disks only, the same seed gives the same trace; another seed works too", async () => {
    const { runBlock } = await load();
    const [a, b] = [await runBlock({ seed: 5, crasher: "memory" }), await runBlock({ seed: 5, crasher: "memory" })];
    expect(a.trace).toBe(b.trace);
    expect(a.console).toEqual(b.console);
    const c = await runBlock({ seed: 6 });
    expect(c.console).toContain("[alpha] xvda: read back all 8192 sectors: the pattern is intact");
    everythingReturned(a.trace, 3);
  });
});
