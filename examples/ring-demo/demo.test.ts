import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { BLKIF_RSP } from "@pvkit/abi";
import { runRingDemo } from "./demo.js";

const built = fileURLToPath(new URL("../dist/ring-demo/main.js", import.meta.url));

describe("examples/ring-demo", () => {
  it("writes 256 KiB through the ring, reads it back intact, and refuses what it must", () => {
    const lines: string[] = [];
    const r = runRingDemo((l) => lines.push(l));
    expect(r.ringSlots).toBe(32);
    expect(r.bytesVerified).toBe(256 * 1024);
    expect(r.flushStatus).toBe(BLKIF_RSP.OKAY);
    expect(r.outOfRangeStatus).toBe(BLKIF_RSP.ERROR);
    expect(r.hostileError).toMatch(/req_prod .* but the ring holds 32/);
    // One notification each way per submission; the read's second push is held off.
    expect(r.events).toEqual({ frontToBack: 4, backToFront: 4, suppressed: 1 });
    expect(lines).toContain("front: READ 256 KiB back: 4 request(s), req_prod=17, no notification needed: back end not yet re-armed");
    expect(lines).toContain("verify: all 262144 bytes read back match the pattern written");
    expect(lines.filter((l) => l.startsWith("front:") && l.includes("response(s)"))).toEqual([
      "front: 8 response(s): BLKIF_RSP_OKAY",
      "front: 1 response(s): BLKIF_RSP_OKAY",
      "front: 8 response(s): BLKIF_RSP_OKAY",
      "front: 1 response(s): BLKIF_RSP_ERROR",
    ]);
  });

  it.skipIf(!existsSync(built) && !process.env["CI"])("the built demo that `npm run demo` runs prints exactly these lines", () => {
    const lines: string[] = [];
    runRingDemo((l) => lines.push(l));
    const out = execFileSync(process.execPath, [built], { encoding: "utf8" });
    expect(out).toBe(lines.map((l) => `${l}\n`).join(""));
  });
});
