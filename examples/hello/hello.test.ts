import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/hello", () => {
  it("dom0 builds two domUs, each greets on its console, and dom0 tears both down", async () => {
    const { runHello } = await import("../dist/hello/main.js");
    const { console: lines } = await runHello(1);
    expect(lines).toContain("dom0: started alice as domain 1");
    expect(lines).toContain("dom0: started bob as domain 2");
    expect(lines).toContain("[alice] Hello from alice!");
    expect(lines).toContain("[bob] Hello from bob!");
    expect(lines).toContainEqual(expect.stringMatching(/^\[alice\] {3}Xen 4\.17, 256 pages \(\d+ free\), booted at \d+ ns$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[bob\] {3}Xen 4\.17, 512 pages/));
    expect(lines).toContain("[bob]   command line: name=bob");
    expect(lines.filter((l) => /shut down: poweroff; destroyed$/.test(l))).toHaveLength(2);
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("gives a byte-identical trace for the same seed, and still works with another", async () => {
    const { runHello } = await import("../dist/hello/main.js");
    const a = await runHello(5);
    const b = await runHello(5);
    expect(a.trace.length).toBeGreaterThan(1000);
    expect(a.trace).toBe(b.trace);
    const c = await runHello(6);
    expect(c.console).toContain("[bob] Hello from bob!");
    expect(c.trace).not.toBe(a.trace);
  });
});
