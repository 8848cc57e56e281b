/**
 * A very small IPv4 host: one interface, one address, ARP and ICMP echo —
 * enough for one domU to ping another.
 *
 * The stack sits on a {@link NetLink} (the netfront device, or a test
 * wire) and a {@link NetClock} (the kernel's clock and timers). Frames come
 * in through {@link NetStack.input}, which the owner calls for each frame
 * the link receives; it answers ARP requests for its address and echo
 * requests to it at once, and wakes whoever waits for an ARP or echo reply.
 *
 * ```ts
 * const stack = new NetStack(link, { now: () => k.clock.now(), sleep: (ns) => k.sleep(ns) }, { ip: parseIpv4("10.0.0.1")! });
 * nic.onReceive((frame) => stack.input(frame));
 * const reply = await stack.ping(parseIpv4("10.0.0.2")!, { seq: 1 });
 * if (reply) await k.print(`time=${reply.rttNs / 1e6} ms`);
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { ArpCache, decodeArp, encodeArp, type ArpPacket } from "./arp.js";
import { BROADCAST_MAC, ETHERTYPE, decodeEthernet, encodeEthernet, isMulticastMac, macEquals } from "./ethernet.js";
import { ICMP_TYPE, decodeIcmpEcho, encodeIcmpEcho, type IcmpEcho } from "./icmp.js";
import { IPPROTO, IPV4_FLAG, decodeIpv4, encodeIpv4 } from "./ipv4.js";

/** What the stack needs of a network interface. */
export interface NetLink {
  /** The interface's MAC address. */
  readonly mac: Uint8Array;
  /** Sends a frame; false if it could not be queued (it is dropped). */
  transmit(frame: Uint8Array): boolean;
}

/** What the stack needs of time: virtual nanoseconds, and sleeping. */
export interface NetClock {
  /** Now, in ns. */
  now(): number;
  /** Resolves after `ns`. */
  sleep(ns: number): Promise<void>;
}

/** The interface's configuration. */
export interface NetStackConfig {
  /** Its IPv4 address. */
  readonly ip: number;
  /** TTL of packets it sends (default 64). */
  readonly ttl?: number;
  /** How long to wait for an ARP reply before asking again, in ns (default 1 s). */
  readonly arpTimeoutNs?: number;
  /** How many ARP requests to send before giving up (default 3). */
  readonly arpTries?: number;
}

/** One echo request to send. */
export interface PingOptions {
  /** Sequence number. */
  readonly seq: number;
  /** Identifier (default 0x7076, "pv"). */
  readonly id?: number;
  /** Bytes of data after the echo header (default 56, as `ping`). */
  readonly size?: number;
  /** How long to wait for the reply, in ns (default 1 s). */
  readonly timeoutNs?: number;
}

/** An echo reply received. */
export interface PingReply {
  /** Who answered. */
  readonly from: number;
  /** Its sequence number. */
  readonly seq: number;
  /** TTL of the reply. */
  readonly ttl: number;
  /** ICMP bytes (header and data), as `ping` reports them. */
  readonly bytes: number;
  /** Round-trip time in ns, from sending the request (after address resolution) to the reply. */
  readonly rttNs: number;
}

/** Counters of a stack. */
export interface NetStackStats {
  /** Frames received. */
  rxFrames: number;
  /** Frames sent. */
  txFrames: number;
  /** Frames the link refused. */
  txDropped: number;
  /** ARP requests answered. */
  arpAnswered: number;
  /** Echo requests answered. */
  echoAnswered: number;
  /** Echo replies received for a ping waiting for them. */
  echoReplies: number;
  /** Frames dropped, by reason. */
  readonly dropped: Map<string, number>;
}

const DEFAULT_PING_ID = 0x7076;

/** One interface's IPv4, ARP and ICMP echo. */
export class NetStack {
  /** The ARP cache. */
  readonly arp: ArpCache;
  /** Counters. */
  readonly stats: NetStackStats = { rxFrames: 0, txFrames: 0, txDropped: 0, arpAnswered: 0, echoAnswered: 0, echoReplies: 0, dropped: new Map() };
  private readonly ttl: number;
  private readonly arpTimeout: number;
  private readonly arpTries: number;
  private nextIpId = 1;
  private readonly arpWaiters = new Map<number, (() => void)[]>();
  private readonly echoWaiters = new Map<string, (r: PingReply) => void>();
  private readonly answeredWaiters: { n: number; wake: () => void }[] = [];

  /**
   * @param link where frames go out
   * @param clock time and sleeping
   * @param config the address and timers
   */
  constructor(
    readonly link: NetLink,
    readonly clock: NetClock,
    readonly config: NetStackConfig,
  ) {
    this.arp = new ArpCache(link.mac, config.ip);
    this.ttl = config.ttl ?? 64;
    this.arpTimeout = config.arpTimeoutNs ?? 1_000_000_000;
    this.arpTries = config.arpTries ?? 3;
  }

  /** Handles one received frame. Never throws: what it cannot use is counted in `stats.dropped`. */
  input(frame: Uint8Array): void {
    this.stats.rxFrames++;
    const eth = decodeEthernet(frame);
    if (E.isLeft(eth)) return this.drop("ethernet");
    const f = eth.right;
    if (!isMulticastMac(f.dst) && !macEquals(f.dst, this.link.mac)) return this.drop("not for this MAC");
    if (f.type === ETHERTYPE.ARP) return this.arpInput(f.payload);
    if (f.type === ETHERTYPE.IPV4) return this.ipInput(f.src, f.payload);
    this.drop(`ethertype 0x${f.type.toString(16).padStart(4, "0")}`);
  }

  private drop(reason: string): void {
    this.stats.dropped.set(reason, (this.stats.dropped.get(reason) ?? 0) + 1);
  }

  private send(dst: Uint8Array, type: number, payload: Uint8Array): boolean {
    const ok = this.link.transmit(encodeEthernet({ dst, src: this.link.mac, type, payload }));
    if (ok) this.stats.txFrames++;
    else this.stats.txDropped++;
    return ok;
  }

  private arpInput(payload: Uint8Array): void {
    const p = decodeArp(payload);
    if (E.isLeft(p)) return this.drop("arp");
    const verdict = this.arp.receive(p.right);
    if (verdict.reply !== undefined) {
      this.sendArp(verdict.reply, p.right.sha);
      this.stats.arpAnswered++;
    }
    if (verdict.learned) {
      const waiting = this.arpWaiters.get(p.right.spa >>> 0);
      this.arpWaiters.delete(p.right.spa >>> 0);
      for (const w of waiting ?? []) w();
    }
  }

  private sendArp(p: ArpPacket, to: Uint8Array): void {
    this.send(to, ETHERTYPE.ARP, encodeArp(p));
  }

  private ipInput(srcMac: Uint8Array, payload: Uint8Array): void {
    const ip = decodeIpv4(payload);
    if (E.isLeft(ip)) return this.drop(`ipv4: ${ip.left}`);
    const p = ip.right;
    if (p.dst >>> 0 !== this.config.ip >>> 0) return this.drop("not for this address");
    if ((p.fragment & (IPV4_FLAG.MF | 0x1fff)) !== 0) return this.drop("fragment");
    if (p.protocol !== IPPROTO.ICMP) return this.drop(`protocol ${p.protocol}`);
    const m = decodeIcmpEcho(p.payload);
    if (E.isLeft(m)) return this.drop(`icmp: ${m.left}`);
    const echo = m.right;
    if (echo.type === ICMP_TYPE.ECHO_REQUEST) {
      // Answer to the MAC it came from, as a host answers a neighbour on the link.
      const reply: IcmpEcho = { type: ICMP_TYPE.ECHO_REPLY, code: 0, id: echo.id, seq: echo.seq, data: echo.data };
      this.sendIp(srcMac, p.src, encodeIcmpEcho(reply));
      this.stats.echoAnswered++;
      for (const w of this.answeredWaiters.filter((x) => this.stats.echoAnswered >= x.n)) {
        this.answeredWaiters.splice(this.answeredWaiters.indexOf(w), 1);
        w.wake();
      }
      return;
    }
    const key = `${p.src >>> 0}/${echo.id}/${echo.seq}`;
    const waiter = this.echoWaiters.get(key);
    if (waiter === undefined) return this.drop("unexpected echo reply");
    this.echoWaiters.delete(key);
    this.stats.echoReplies++;
    waiter({ from: p.src, seq: echo.seq, ttl: p.ttl, bytes: p.payload.length, rttNs: 0 });
  }

  private sendIp(dstMac: Uint8Array, dst: number, icmp: Uint8Array): boolean {
    const packet = encodeIpv4({ tos: 0, id: this.nextIpId++ & 0xffff, fragment: IPV4_FLAG.DF, ttl: this.ttl, protocol: IPPROTO.ICMP, src: this.config.ip, dst, payload: icmp });
    return this.send(dstMac, ETHERTYPE.IPV4, packet);
  }

  /**
   * The MAC of `ip`: from the cache, or by asking with ARP requests
   * (broadcast, up to `arpTries` of them, `arpTimeoutNs` apart). Undefined
   * if nobody answers.
   */
  async resolve(ip: number): Promise<Uint8Array | undefined> {
    for (let tries = 0; tries < this.arpTries; tries++) {
      const known = this.arp.lookup(ip);
      if (known !== undefined) return known;
      let answered = false;
      const reply = new Promise<void>((resolve) => {
        const list = this.arpWaiters.get(ip >>> 0) ?? [];
        list.push(() => {
          answered = true;
          resolve();
        });
        this.arpWaiters.set(ip >>> 0, list);
      });
      this.sendArp(this.arp.request(ip), BROADCAST_MAC);
      await Promise.race([reply, this.clock.sleep(this.arpTimeout)]);
      if (answered) return this.arp.lookup(ip);
    }
    return this.arp.lookup(ip);
  }

  /**
   * Sends one echo request to `dst` and waits for its reply; undefined on a
   * timeout or if `dst` cannot be resolved. The data starts with the send
   * time (8 bytes, ns, big-endian) followed by bytes counting up, as
   * `ping` fills it.
   */
  async ping(dst: number, opts: PingOptions): Promise<PingReply | undefined> {
    const mac = await this.resolve(dst);
    if (mac === undefined) return undefined;
    const id = opts.id ?? DEFAULT_PING_ID;
    const data = new Uint8Array(opts.size ?? 56);
    for (let i = 8; i < data.length; i++) data[i] = i & 0xff;
    const sent = this.clock.now();
    if (data.length >= 8) new DataView(data.buffer).setBigUint64(0, BigInt(sent));
    const key = `${dst >>> 0}/${id}/${opts.seq & 0xffff}`;
    let got: PingReply | undefined;
    const reply = new Promise<void>((resolve) =>
      this.echoWaiters.set(key, (r) => {
        got = { ...r, rttNs: this.clock.now() - sent };
        resolve();
      }),
    );
    if (!this.sendIp(mac, dst, encodeIcmpEcho({ type: ICMP_TYPE.ECHO_REQUEST, code: 0, id, seq: opts.seq, data }))) {
      this.echoWaiters.delete(key);
      return undefined;
    }
    await Promise.race([reply, this.clock.sleep(opts.timeoutNs ?? 1_000_000_000)]);
    this.echoWaiters.delete(key);
    return got;
  }

  /** Resolves once the stack has answered `n` echo requests in all. */
  answered(n: number): Promise<void> {
    if (this.stats.echoAnswered >= n) return Promise.resolve();
    return new Promise((wake) => this.answeredWaiters.push({ n, wake }));
  }
}
