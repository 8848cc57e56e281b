/**
 * The stack end to end: two hosts on a test wire (frames delivered as
 * microtasks, each taking 500 ns of a fake clock) resolve each other with
 * ARP and ping; what is malformed is dropped and counted.
 */
import { describe, expect, it } from "vitest";
import {
  ETHERTYPE,
  ICMP_TYPE,
  IPPROTO,
  NetStack,
  encodeEthernet,
  encodeIcmpEcho,
  encodeIpv4,
  parseIpv4,
  parseMac,
  type NetClock,
  type NetLink,
} from "@pvkit/domu";

class FakeClock implements NetClock {
  t = 0;
  private sleepers: { at: number; wake: () => void }[] = [];
  now(): number {
    return this.t;
  }
  sleep(ns: number): Promise<void> {
    return new Promise((wake) => this.sleepers.push({ at: this.t + ns, wake }));
  }
  /** Moves time to `t`, waking sleepers due. */
  advance(ns: number): void {
    this.t += ns;
    for (const s of this.sleepers.filter((x) => x.at <= this.t)) {
      this.sleepers.splice(this.sleepers.indexOf(s), 1);
      s.wake();
    }
  }
}

const settle = async () => {
  for (let i = 0; i < 50; i++) await Promise.resolve();
};

/** Two hosts on one wire; `log` records every frame's EtherType and length. */
function pair() {
  const clock = new FakeClock();
  const log: { from: string; type: number; len: number }[] = [];
  let mode: "up" | "refuse" | "blackhole" = "up";
  const hosts: NetStack[] = [];
  const link = (name: string, mac: string, peer: () => NetStack): NetLink => ({
    mac: parseMac(mac)!,
    transmit: (frame) => {
      if (mode === "refuse") return false;
      log.push({ from: name, type: (frame[12]! << 8) | frame[13]!, len: frame.length });
      if (mode === "blackhole") return true;
      queueMicrotask(() => {
        clock.advance(500);
        peer().input(frame);
      });
      return true;
    },
  });
  const a = new NetStack(link("a", "00:16:3e:00:00:0a", () => hosts[1]!), clock, { ip: parseIpv4("10.0.0.10")! });
  const b = new NetStack(link("b", "00:16:3e:00:00:0b", () => hosts[0]!), clock, { ip: parseIpv4("10.0.0.11")! });
  hosts.push(a, b);
  return { a, b, clock, log, set: (m: typeof mode) => (mode = m) };
}

describe("NetStack", () => {
  it("resolves the peer with ARP, then pings it; the RTT is the reply's delay", async () => {
    const { a, b, log } = pair();
    const r = await a.ping(parseIpv4("10.0.0.11")!, { seq: 1 });
    expect(r).toEqual({ from: parseIpv4("10.0.0.11"), seq: 1, ttl: 64, bytes: 64, rttNs: 1000 });
    expect(log.map((f) => `${f.from}:${f.type.toString(16)}:${f.len}`)).toEqual(["a:806:60", "b:806:60", "a:800:98", "b:800:98"]);
    expect(b.stats.echoAnswered).toBe(1);
    expect(b.stats.arpAnswered).toBe(1);
    expect(a.stats.echoReplies).toBe(1);
    // The second ping needs no ARP: a learned b from its reply, and b learned a from its request.
    expect((await a.ping(parseIpv4("10.0.0.11")!, { seq: 2 }))?.seq).toBe(2);
    expect(log.filter((f) => f.type === ETHERTYPE.ARP)).toHaveLength(2);
    expect(b.arp.lookup(parseIpv4("10.0.0.10")!)).toEqual(parseMac("00:16:3e:00:00:0a"));
    await expect(b.answered(2)).resolves.toBeUndefined();
  });

  it("gives up on an address nobody answers after three ARP requests", async () => {
    const { a, clock, log } = pair();
    let result: unknown = "pending";
    void a.ping(parseIpv4("10.0.0.99")!, { seq: 1 }).then((r) => (result = r));
    for (let i = 0; i < 3; i++) {
      await settle();
      clock.advance(1_000_000_000);
    }
    await settle();
    expect(result).toBeUndefined();
    expect(log.filter((f) => f.from === "a" && f.type === ETHERTYPE.ARP)).toHaveLength(3);
  });

  it("times out a ping whose reply never comes", async () => {
    const { a, clock, set } = pair();
    await a.ping(parseIpv4("10.0.0.11")!, { seq: 1 });
    set("blackhole");
    let result: unknown = "pending";
    void a.ping(parseIpv4("10.0.0.11")!, { seq: 2, timeoutNs: 5_000 }).then((r) => (result = r));
    await settle();
    clock.advance(4_999);
    await settle();
    expect(result).toBe("pending");
    clock.advance(1);
    await settle();
    expect(result).toBeUndefined();
  });

  it("fails a ping at once when the link refuses the frame, and counts it", async () => {
    const { a, set } = pair();
    await a.ping(parseIpv4("10.0.0.11")!, { seq: 1 });
    set("refuse");
    expect(await a.ping(parseIpv4("10.0.0.11")!, { seq: 2 })).toBeUndefined();
    expect(a.stats.txDropped).toBe(1);
  });

  it("drops what is not for it or is malformed, and says why", async () => {
    const { a, b } = pair();
    const macA = parseMac("00:16:3e:00:00:0a")!;
    const macB = parseMac("00:16:3e:00:00:0b")!;
    const ip = (dst: string, payload: Uint8Array, protocol: number = IPPROTO.ICMP) =>
      encodeIpv4({ tos: 0, id: 1, fragment: 0, ttl: 64, protocol, src: parseIpv4("10.0.0.10")!, dst: parseIpv4(dst)!, payload });
    const echo = (type: number, seq = 1) => encodeIcmpEcho({ type, code: 0, id: 5, seq, data: new Uint8Array(8) });
    const frame = (payload: Uint8Array, dst = macB, type: number = ETHERTYPE.IPV4) => encodeEthernet({ dst, src: macA, type, payload });
    const badSum = ip("10.0.0.11", echo(ICMP_TYPE.ECHO_REQUEST));
    badSum[10]! ^= 0xff;
    const badIcmp = ip("10.0.0.11", (() => {
      const m = echo(ICMP_TYPE.ECHO_REQUEST);
      m[2]! ^= 1;
      return m;
    })());
    b.input(new Uint8Array(10));
    b.input(frame(ip("10.0.0.11", echo(ICMP_TYPE.ECHO_REQUEST)), parseMac("00:16:3e:00:00:99")!));
    b.input(frame(new Uint8Array(46), macB, 0x86dd));
    b.input(frame(badSum));
    b.input(frame(ip("10.0.0.12", echo(ICMP_TYPE.ECHO_REQUEST))));
    b.input(frame(ip("10.0.0.11", new Uint8Array(20), IPPROTO.UDP)));
    b.input(frame(badIcmp));
    b.input(frame(ip("10.0.0.11", echo(ICMP_TYPE.ECHO_REPLY, 77))));
    b.input(frame(new Uint8Array(28), macB, ETHERTYPE.ARP));
    expect(Object.fromEntries(b.stats.dropped)).toEqual({
      ethernet: 1,
      "not for this MAC": 1,
      "ethertype 0x86dd": 1,
      "ipv4: bad header checksum": 1,
      "not for this address": 1,
      "protocol 17": 1,
      "icmp: bad ICMP checksum": 1,
      "unexpected echo reply": 1,
      arp: 1,
    });
    expect(b.stats.echoAnswered).toBe(0);
    // A good request, sent to the broadcast address at the Ethernet level, is answered to its sender's MAC.
    b.input(frame(ip("10.0.0.11", echo(ICMP_TYPE.ECHO_REQUEST)), parseMac("ff:ff:ff:ff:ff:ff")!));
    expect(b.stats.echoAnswered).toBe(1);
    await settle();
    expect(a.stats.dropped.get("unexpected echo reply")).toBe(1);
  });
});
