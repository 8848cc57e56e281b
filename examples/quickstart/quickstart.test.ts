import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/quickstart", () => {
  it("two domUs use console, block and network, and everything is returned at the end", async () => {
    const { runQuickstart } = await import("../dist/quickstart/main.js");
    const { console: lines } = await runQuickstart(1);
    for (const name of ["alpha", "beta"]) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[${name}\\] ${name}: booted with 512 pages, Xen 4\\.17$`)));
      expect(lines).toContain(`[${name}] ${name}: disk 51712: wrote ok, flushed ok, read back "${name} was here"`);
      expect(lines.filter((l) => l.startsWith(`[${name}] ${name}: reply from`))).toHaveLength(3);
      expect(lines).toContain(`[${name}] ${name}: done`);
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^dom0: ${name} \\(domain \\d\\) shut down: poweroff; destroyed$`)));
    }
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("gives the same trace for the same seed", async () => {
    const { runQuickstart } = await import("../dist/quickstart/main.js");
    expect((await runQuickstart(2)).trace).toBe((await runQuickstart(2)).trace);
  });
});
