/**
 * The learning bridge: tables of frames entering on ports, and where each
 * leaves — learning, flooding of unknown destinations, broadcast and
 * multicast, filtering, aging, detaching, invalid sources, and capture.
 */
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import { Bridge, PcapBuffer, parsePcap, type BridgePort } from "@pvkit/dom0";

const MAC = {
  a: "00:16:3e:00:00:0a",
  b: "00:16:3e:00:00:0b",
  c: "00:16:3e:00:00:0c",
  x: "00:16:3e:00:00:99",
  bcast: "ff:ff:ff:ff:ff:ff",
  mcast: "01:00:5e:00:00:01",
  zero: "00:00:00:00:00:00",
} as const;

const mac = (s: string) => s.split(":").map((h) => parseInt(h, 16));
const frame = (dst: string, src: string, len = 60) => {
  const f = new Uint8Array(len);
  f.set(mac(dst), 0);
  f.set(mac(src), 6);
  f[12] = 0x08;
  return f;
};

class Tap implements BridgePort {
  readonly got: Uint8Array[] = [];
  constructor(readonly name: string) {}
  deliver(frame: Uint8Array): void {
    this.got.push(frame);
  }
}

function setup(now = { t: 0 }, agingNs?: number) {
  const capture = new PcapBuffer();
  const bridge = new Bridge("xenbr0", { now: () => now.t, capture, ...(agingNs !== undefined && { agingNs }) });
  const ports = { A: new Tap("A"), B: new Tap("B"), C: new Tap("C") };
  for (const p of Object.values(ports)) bridge.attach(p);
  return { bridge, ports, capture, now };
}

type PortName = "A" | "B" | "C";

describe("Bridge", () => {
  it.each<{ name: string; steps: [PortName, string, string][]; out: PortName[][] }>([
    {
      name: "floods an unknown destination to every other port, then forwards once learned",
      steps: [
        ["A", MAC.b, MAC.a],
        ["B", MAC.a, MAC.b],
        ["A", MAC.b, MAC.a],
      ],
      out: [["B", "C"], ["A"], ["B"]],
    },
    {
      name: "sends broadcast to every other port, even with everything learned",
      steps: [
        ["A", MAC.bcast, MAC.a],
        ["B", MAC.bcast, MAC.b],
        ["C", MAC.bcast, MAC.c],
      ],
      out: [
        ["B", "C"],
        ["A", "C"],
        ["A", "B"],
      ],
    },
    {
      name: "sends multicast like broadcast",
      steps: [
        ["B", MAC.a, MAC.b],
        ["A", MAC.mcast, MAC.a],
      ],
      out: [["A", "C"], ["B", "C"]],
    },
    {
      name: "does not send a frame back to the port its destination is behind",
      steps: [
        ["A", MAC.bcast, MAC.a],
        ["A", MAC.a, MAC.c],
      ],
      out: [["B", "C"], []],
    },
    {
      name: "moves a station that appears behind another port",
      steps: [
        ["A", MAC.bcast, MAC.a],
        ["C", MAC.bcast, MAC.a],
        ["B", MAC.a, MAC.b],
      ],
      out: [["B", "C"], ["A", "B"], ["C"]],
    },
    {
      name: "drops frames from a group or all-zero source without learning them",
      steps: [
        ["A", MAC.b, MAC.mcast],
        ["A", MAC.b, MAC.zero],
        ["B", MAC.mcast, MAC.b],
      ],
      out: [[], [], ["A", "C"]],
    },
  ])("$name", ({ steps, out }) => {
    const { bridge, ports } = setup();
    const results = steps.map(([from, dst, src]) => bridge.input(ports[from], frame(dst, src)).map((p) => p.name));
    expect(results).toEqual(out);
  });

  it("delivers each frame once per port it goes to, and captures it once", () => {
    const { bridge, ports, capture } = setup();
    bridge.input(ports.A, frame(MAC.bcast, MAC.a));
    bridge.input(ports.B, frame(MAC.a, MAC.b, 1514));
    bridge.input(ports.A, frame(MAC.b, MAC.zero)); // invalid: not captured
    expect(ports.A.got).toHaveLength(1);
    expect(ports.B.got).toHaveLength(1);
    expect(ports.C.got).toHaveLength(1);
    const cap = parsePcap(capture.bytes());
    if (E.isLeft(cap)) throw new Error(cap.left);
    expect(cap.right.packets.map((p) => p.origLen)).toEqual([60, 1514]);
    expect(bridge.stats).toEqual({ frames: 2, forwarded: 1, flooded: 0, broadcast: 1, filtered: 0, dropped: 1, evicted: 0 });
  });

  it("ages out an entry not refreshed for agingNs, and floods again", () => {
    const { bridge, ports, now } = setup({ t: 0 }, 1_000);
    bridge.input(ports.B, frame(MAC.bcast, MAC.b));
    now.t = 1_000;
    expect(bridge.input(ports.A, frame(MAC.b, MAC.a)).map((p) => p.name)).toEqual(["B"]);
    now.t = 1_001;
    expect(bridge.input(ports.A, frame(MAC.b, MAC.a)).map((p) => p.name)).toEqual(["B", "C"]);
    expect(bridge.lookup(MAC.b)).toBeUndefined();
  });

  it("learns at most maxLearned addresses: aged ones go first, else the stalest, and a flood of new sources cannot grow it", () => {
    const now = { t: 0 };
    const bridge = new Bridge("xenbr0", { now: () => now.t, agingNs: 1_000, maxLearned: 3 });
    const [A, B] = [new Tap("A"), new Tap("B")];
    bridge.attach(A);
    bridge.attach(B);
    const src = (i: number) => `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`;
    const learned = () => bridge.entries().map(([m]) => m);
    bridge.input(B, frame(MAC.bcast, MAC.b)); // t=0
    now.t = 600;
    bridge.input(A, frame(MAC.bcast, src(1)));
    bridge.input(A, frame(MAC.bcast, src(2)));
    expect(learned()).toEqual([MAC.b, src(1), src(2)]);
    // Full; MAC.b has aged (1001 ns old): it goes, nothing fresh is evicted.
    now.t = 1_001;
    bridge.input(A, frame(MAC.bcast, src(3)));
    expect(learned()).toEqual([src(1), src(2), src(3)]);
    expect(bridge.stats.evicted).toBe(0);
    // Full of fresh entries: the stalest goes.
    bridge.input(A, frame(MAC.bcast, src(4)));
    expect(learned()).toEqual([src(2), src(3), src(4)]);
    expect(bridge.stats.evicted).toBe(1);
    // A refresh is not a new entry and evicts nothing.
    now.t = 1_002;
    bridge.input(A, frame(MAC.bcast, src(3)));
    expect(bridge.stats.evicted).toBe(1);
    expect(learned()).toEqual([src(2), src(4), src(3)]);
    for (let i = 5; i < 200; i++) bridge.input(A, frame(MAC.bcast, src(i)));
    expect(learned()).toHaveLength(3);
    expect(bridge.stats.evicted).toBe(196);
  });

  it("forgets what was learned behind a port that detaches, and no longer sends to it", () => {
    const { bridge, ports } = setup();
    bridge.input(ports.B, frame(MAC.bcast, MAC.b));
    bridge.detach(ports.B);
    expect(bridge.lookup(MAC.b)).toBeUndefined();
    expect(bridge.input(ports.A, frame(MAC.b, MAC.a)).map((p) => p.name)).toEqual(["C"]);
    expect(bridge.input(ports.B, frame(MAC.a, MAC.b))).toEqual([]); // from a port not attached
    expect(bridge.entries().map(([m, e]) => [m, e.port.name])).toEqual([[MAC.a, "A"]]);
  });

  it("drops runt frames", () => {
    const { bridge, ports } = setup();
    expect(bridge.input(ports.A, new Uint8Array(13))).toEqual([]);
    expect(bridge.stats.dropped).toBe(1);
  });
});
