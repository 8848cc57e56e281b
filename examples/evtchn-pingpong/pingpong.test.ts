import { describe, expect, it } from "vitest";
import { skipUnbuilt } from "../built.js";

describe.skipIf(skipUnbuilt)("examples/evtchn-pingpong", () => {
  it("two domUs exchange 1000 notifications each way over an interdomain channel", async () => {
    const { runPingPong } = await import("../dist/evtchn-pingpong/main.js");
    const { console: lines } = await runPingPong(1, 1000);
    expect(lines).toContain("[ping] ping: pong is connected on port 1");
    // 1000 answers plus pong's "connected" ring.
    expect(lines).toContainEqual(expect.stringMatching(/^\[ping\] ping: 1000 round trips, 1001 notifications received, mean RTT \d+ ns$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[pong\] pong: answered 1000 rings from domain 1 on local port \d+$/));
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("is deterministic per seed", async () => {
    const { runPingPong } = await import("../dist/evtchn-pingpong/main.js");
    const [a, b, c] = [await runPingPong(9, 50), await runPingPong(9, 50), await runPingPong(10, 50)];
    expect(a.trace).toBe(b.trace);
    expect(c.trace).not.toBe(a.trace);
    expect(c.console).toContainEqual(expect.stringMatching(/ping: 50 round trips/));
  });
});
