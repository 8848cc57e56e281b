import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { parsePcap } from "@pvkit/dom0";
import { ETHERTYPE, ICMP_TYPE, IPPROTO, decodeEthernet, decodeIcmpEcho, decodeIpv4 } from "@pvkit/domu";
import { skipUnbuilt } from "../built.js";

/** Runs `f` with a fresh temporary directory, removed afterwards. */
async function inTemp<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-network-test-"));
  try {
    return await f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The ICMP echo messages of a capture, decoded by the stack's own (checking) decoders. */
function echoes(pcap: Uint8Array): { type: number; seq: number; src: number }[] {
  const cap = parsePcap(pcap);
  if (E.isLeft(cap)) throw new Error(cap.left);
  expect(cap.right.linktype).toBe(1);
  const out: { type: number; seq: number; src: number }[] = [];
  for (const p of cap.right.packets) {
    const eth = decodeEthernet(p.data);
    if (E.isLeft(eth) || eth.right.type !== ETHERTYPE.IPV4) continue;
    const ip = decodeIpv4(eth.right.payload);
    if (E.isLeft(ip)) throw new Error(`bad IPv4 in the capture: ${ip.left}`);
    if (ip.right.protocol !== IPPROTO.ICMP) continue;
    const m = decodeIcmpEcho(ip.right.payload);
    if (E.isLeft(m)) throw new Error(`bad ICMP in the capture: ${m.left}`);
    out.push({ type: m.right.type, seq: m.right.seq, src: ip.right.src });
  }
  return out;
}

const tsharkAvailable = !spawnSync("tshark", ["--version"], { stdio: "ignore" }).error;

describe.skipIf(skipUnbuilt)("examples/network", () => {
  it("two domUs ping each other through netfront, netback and dom0's bridge", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    await inTemp(async (dir) => {
      const pcap = join(dir, "xenbr0.pcap");
      const { console: lines } = await runNetwork({ pcap });
      for (const [me, peer] of [
        ["alice", "10.0.0.2"],
        ["bob", "10.0.0.1"],
      ] as const) {
        expect(lines).toContain(`[${me}] ${me}: eth0 00:16:3e:00:00:0${me === "alice" ? 1 : 2} 10.0.0.${me === "alice" ? 1 : 2} up (sg on)`);
        for (const seq of [1, 2, 3]) {
          expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[${me}\\] ${me}: 64 bytes from ${peer.replace(/\./g, "\\.")}: icmp_seq=${seq} ttl=64 time=\\d+\\.\\d{3} ms$`)));
        }
        expect(lines).toContain(`[${me}] ${me}: 3 packets transmitted, 3 received, 0% packet loss`);
        expect(lines).toContain(`[${me}] ${me}: eth0 closed; every page and grant given back`);
      }
      expect(lines.at(-1)).toBe("dom0: every domain has shut down");
      // What crossed the bridge: six requests and six replies, every checksum right (the decoders check them).
      const seen = echoes(new Uint8Array(readFileSync(pcap)));
      expect(seen.filter((m) => m.type === ICMP_TYPE.ECHO_REQUEST)).toHaveLength(6);
      expect(seen.filter((m) => m.type === ICMP_TYPE.ECHO_REPLY)).toHaveLength(6);
    });
  });

  it.skipIf(!tsharkAvailable && !process.env["CI"])("tshark reads the capture: ICMP echo requests and replies, checksums good", async () => {
    expect(tsharkAvailable, "tshark must be installed (scripts/host-deps.sh)").toBe(true);
    const { runNetwork } = await import("../dist/network/main.js");
    await inTemp(async (dir) => {
      const pcap = join(dir, "xenbr0.pcap");
      await runNetwork({ pcap });
      const r = spawnSync(
        "tshark",
        ["-n", "-r", pcap, "-o", "ip.check_checksum:TRUE", "-Y", "icmp", "-T", "fields", "-E", "separator=,", "-e", "icmp.type", "-e", "icmp.seq", "-e", "icmp.checksum.status", "-e", "ip.checksum.status"],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      const rows = r.stdout.trim().split("\n").map((l) => l.split(","));
      // Status 1 is "Good" in tshark's expert checksum fields (0 bad, 2 unverified).
      expect(rows).toHaveLength(12);
      for (const [, , icmp, ip] of rows) expect([icmp, ip]).toEqual(["1", "1"]);
      expect(rows.filter(([type]) => type === "8").map(([, seq]) => seq).sort()).toEqual(["1", "1", "2", "2", "3", "3"]);
      expect(rows.filter(([type]) => type === "0").map(([, seq]) => seq).sort()).toEqual(["1", "1", "2", "2", "3", "3"]);
      // And ARP resolved the two hosts first.
      const arp = spawnSync("tshark", ["-n", "-r", pcap, "-Y", "arp", "-T", "fields", "-e", "arp.opcode"], { encoding: "utf8" });
      expect(arp.stdout.trim().split("\n").sort()).toEqual(["1", "1", "2", "2"]);
    });
  });

  it("carries 20000-byte pings over several ring slots (feature-sg), with split event channels on one side", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    await inTemp(async (dir) => {
      const pcap = join(dir, "xenbr0.pcap");
      const { console: lines } = await runNetwork({ pingSize: 20_000, split: true, pcap });
      expect(lines).toContain("[bob] bob: eth0 00:16:3e:00:00:02 10.0.0.2 up (sg on, split event channels)");
      for (const seq of [1, 2, 3]) {
        expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[alice\\] alice: 20008 bytes from 10\\.0\\.0\\.2: icmp_seq=${seq} ttl=64 `)));
        expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[bob\\] bob: 20008 bytes from 10\\.0\\.0\\.1: icmp_seq=${seq} ttl=64 `)));
      }
      const cap = parsePcap(new Uint8Array(readFileSync(pcap)));
      if (E.isLeft(cap)) throw new Error(cap.left);
      expect(cap.right.packets.filter((p) => p.origLen === 14 + 20 + 20_008)).toHaveLength(12);
      expect(echoes(new Uint8Array(readFileSync(pcap)))).toHaveLength(12);
    });
  });

  it("is deterministic per seed: the same trace and the same capture, byte for byte", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    await inTemp(async (dir) => {
      const [pa, pb] = [join(dir, "a.pcap"), join(dir, "b.pcap")];
      const a = await runNetwork({ seed: 7, pcap: pa });
      const b = await runNetwork({ seed: 7, pcap: pb });
      expect(a.trace).toBe(b.trace);
      expect(a.console).toEqual(b.console);
      expect(readFileSync(pa).equals(readFileSync(pb))).toBe(true);
      const c = await runNetwork({ seed: 8 });
      expect(c.console).toContain("[bob] bob: 3 packets transmitted, 3 received, 0% packet loss");
    });
  });

  it("a guest that breaks its TX ring loses its own vif; the others ping on", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    const { console: lines } = await runNetwork({ vandal: true });
    expect(lines).toContain("netback: vif3.0: front end published req_prod 10000: 10000 requests in flight, but the ring holds 256; disconnecting");
    expect(lines).toContain("[mallory] mallory: the backend is Closing: my vif was disconnected");
    expect(lines).toContain("[alice] alice: 3 packets transmitted, 3 received, 0% packet loss");
    expect(lines).toContain("[bob] bob: 3 packets transmitted, 3 received, 0% packet loss");
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("a guest powering off mid-I/O leaves no grant, mapping or channel behind", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    // runManifest runs the invariant checker after the run; and every ring page dom0 mapped was unmapped.
    const { console: lines, trace } = await runNetwork({ crasher: true });
    const maps = new Map<string, number>();
    for (const r of trace.split("\n").map((l) => JSON.parse(l) as { kind: string; op?: string; domid?: number; granter?: number; ref?: number; status?: number })) {
      if (r.kind !== "grant" || r.domid !== 0 || (r.ref ?? 0) < 8 || r.status !== 0) continue;
      const key = `${r.granter}/${r.ref}`;
      if (r.op === "map") maps.set(key, (maps.get(key) ?? 0) + 1);
      if (r.op === "unmap") maps.set(key, (maps.get(key) ?? 0) - 1);
    }
    expect(maps.size).toBe(6); // two rings of each of the three vifs
    expect([...maps.values()].every((n) => n === 0)).toBe(true);
    expect(lines).toContainEqual(expect.stringMatching(/^\[carol\] carol: \d+ frames on the ring; powering off without closing$/));
    expect(lines).toContain("[alice] alice: 3 packets transmitted, 3 received, 0% packet loss");
    expect(lines.at(-1)).toBe("dom0: every domain has shut down");
  });

  it("a vif naming a bridge that does not exist fails the creation, as vif-bridge's error fails libxl's", async () => {
    const { runNetwork } = await import("../dist/network/main.js");
    await expect(runNetwork({ strayBridge: true })).rejects.toThrow(/domain 0: Error: creating dave: vif 0: hotplug script failed: Could not find bridge device xenbr9\n/);
  });
});
