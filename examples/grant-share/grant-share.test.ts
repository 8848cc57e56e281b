import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/grant-share", () => {
  it("maps, reads, writes and unmaps a granted page, copies one back, and cannot end access while mapped", async () => {
    const { runGrantShare } = await import("../dist/grant-share/main.js");
    const { console: lines, trace } = await runGrantShare(1);
    expect(lines).toContainEqual(expect.stringMatching(/^\[granter\] granter: grant-ref=(\d+) copy-ref=(\d+)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[mapper\] mapper: mapped grant \d+ of domain 1: "a page from the granter"$/));
    expect(lines).toContain("[granter] granter: end access while mapped: refused (end_foreign_access: grant 8 is still mapped by its grantee)");
    expect(lines).toContain('[granter] granter: shared page now reads "answered in place by the mapper"');
    expect(lines).toContain('[granter] granter: copied page reads "a page copied over by the mapper"');
    expect(lines).toContain("[granter] granter: both grants ended");
    const grantOps = trace
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; op?: string; domid?: number; status?: number })
      .filter((r) => r.kind === "grant" && r.domid === 2);
    expect(grantOps.map((r) => [r.op, r.status])).toEqual([
      ["map", 0],
      ["unmap", 0],
      ["copy", 0],
    ]);
  });
});
