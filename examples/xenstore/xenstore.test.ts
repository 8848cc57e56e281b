import { describe, expect, it } from "vitest";
import { XENSTORE } from "@pvkit/abi";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/xenstore", () => {
  it("guests use xenstored over their rings; permissions gate both reads and watch events", async () => {
    const { runXenstore } = await import("../dist/xenstore/main.js");
    const { console: lines } = await runXenstore(1);
    const order = (line: string) => lines.indexOf(line);
    expect(lines).toContain("[bob] bob: before the grant, reading /local/domain/1/data/greeting: EACCES");
    expect(lines).toContain("[alice] alice: wrote /local/domain/1/data/greeting");
    expect(lines).toContain("[alice] alice: granted domain 2 read access");
    expect(lines).toContain('[bob] bob: read "hello from alice"');
    expect(order('[bob] bob: read "hello from alice"')).toBeGreaterThan(order("[alice] alice: granted domain 2 read access"));
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("a guest that corrupts its ring loses its own connection, and the others carry on", async () => {
    const { runXenstore } = await import("../dist/xenstore/main.js");
    const { console: lines } = await runXenstore(1, true);
    expect(lines).toContain(`[vandal] vandal: xenstored set the ring's error to ${XENSTORE.ERROR_RINGIDX}`);
    expect(lines).toContain('[bob] bob: read "hello from alice"');
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("is deterministic per seed", async () => {
    const { runXenstore } = await import("../dist/xenstore/main.js");
    const [a, b] = [await runXenstore(3), await runXenstore(3)];
    expect(a.trace).toBe(b.trace);
  });
});
