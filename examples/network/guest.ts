/**
 * A domU on the network: netfront on `device/vif/0`, the tiny stack of
 * `@pvkit/domu` on top.
 *
 * - `role=ping` (default): `ip=A peer=B [count=N] [interval-ms=M] [answer=N]
 *   [size=S] [split=1]`. Pings `peer` `count` times with `S` bytes of data
 *   (default 56), printing each reply's round-trip time in virtual time, answers the peer's pings, and once it has answered
 *   `answer` of them (default `count`) closes its vif and exits. A vif that
 *   does not come up is reported, and the guest exits.
 * - `role=vandal`: connects, then claims 10000 TX requests more than its
 *   ring holds and rings the backend; the backend must disconnect this vif
 *   and no other.
 * - `role=crasher`: connects, puts a burst of broadcast frames on its ring
 *   and powers off at once without closing the vif: the backend must give
 *   back everything it held of a domain destroyed mid-I/O.
 */
import * as E from "fp-ts/lib/Either.js";
import { XenbusState } from "@pvkit/abi";
import { BROADCAST_MAC, ETHERTYPE, NetStack, Netfront, encodeEthernet, formatIpv4, formatMac, parseIpv4 } from "@pvkit/domu";
import { kernelMain, openXenstore, xenbusStateName, type Kernel, type XsClient } from "@pvkit/kernel";

const MS = 1_000_000;
// `split=1` asks for separate TX and RX event channels (feature-split-event-channels).

async function open(k: Kernel, xs: XsClient, name: string): Promise<Netfront | undefined> {
  const nic = await Netfront.open(k, xs, { splitEventChannels: k.arg("split") === "1" });
  if (E.isRight(nic)) return nic.right;
  await k.print(`${name}: eth0 did not come up: ${nic.left.message}`);
  return undefined;
}

async function ping(k: Kernel, xs: XsClient, name: string): Promise<void> {
  const ip = parseIpv4(k.arg("ip") ?? "");
  const peer = parseIpv4(k.arg("peer") ?? "");
  if (ip === undefined || peer === undefined) throw new Error(`${name}: ip= and peer= must be IPv4 addresses`);
  const count = Number(k.arg("count") ?? "3");
  const answer = Number(k.arg("answer") ?? String(count));
  const interval = Number(k.arg("interval-ms") ?? "200") * MS;
  const size = Number(k.arg("size") ?? "56");
  const freeBefore = k.memory.freePages;
  const nic = await open(k, xs, name);
  if (nic === undefined) return;
  await k.print(`${name}: eth0 ${formatMac(nic.mac)} ${formatIpv4(ip)} up (sg ${nic.sg ? "on" : "off"}${nic.split ? ", split event channels" : ""})`);
  const stack = new NetStack(nic, { now: () => k.clock.now(), sleep: (ns) => k.sleep(ns) }, { ip });
  nic.onReceive((frame) => stack.input(frame));

  let received = 0;
  let sent = 0;
  for (let seq = 1; seq <= count; seq++) {
    if (seq > 1) await k.sleep(interval);
    if (!nic.up) {
      await k.print(`${name}: eth0 is down (backend ${xenbusStateName(nic.otherState)})`);
      break;
    }
    sent++;
    const r = await stack.ping(peer, { seq, size });
    if (r === undefined) await k.print(`${name}: no reply from ${formatIpv4(peer)}: icmp_seq=${seq}`);
    else {
      received++;
      await k.print(`${name}: ${r.bytes} bytes from ${formatIpv4(r.from)}: icmp_seq=${r.seq} ttl=${r.ttl} time=${(r.rttNs / MS).toFixed(3)} ms`);
    }
  }
  await k.print(`${name}: ${sent} packets transmitted, ${received} received, ${sent === 0 ? 0 : Math.round((100 * (sent - received)) / sent)}% packet loss`);
  if (nic.up) await Promise.race([stack.answered(answer), k.sleep(5_000 * MS)]);
  await k.print(`${name}: answered ${stack.stats.echoAnswered} echo requests, ${stack.stats.arpAnswered} ARP requests`);
  await nic.close();
  const held = freeBefore - k.memory.freePages;
  await k.print(`${name}: eth0 closed; ${held === 0 ? "every page and grant given back" : `${held} pages still granted`}`);
}

async function vandal(k: Kernel, xs: XsClient, name: string): Promise<void> {
  const nic = await open(k, xs, name);
  if (nic === undefined) return;
  const port = await xs.read(`${nic.nodename}/event-channel`)();
  const rings = nic.sharedRings();
  if (E.isLeft(port) || rings === undefined) throw new Error(`${name}: no rings`);
  const header = new DataView(rings.tx.buffer, rings.tx.byteOffset, 16);
  header.setUint32(0, header.getUint32(8, true) + 10_000, true); // req_prod far past rsp_prod
  k.events.notify(Number(port.right));
  await nic.waitFor((d) => d.otherState === XenbusState.Closing || d.otherState === XenbusState.Closed || d.status === "stopped");
  await k.print(`${name}: the backend is ${xenbusStateName(nic.otherState)}: my vif was disconnected`);
  await nic.close();
}

async function crasher(k: Kernel, xs: XsClient, name: string): Promise<void> {
  const nic = await open(k, xs, name);
  if (nic === undefined) return;
  const frame = encodeEthernet({ dst: BROADCAST_MAC, src: nic.mac, type: ETHERTYPE.IPV4, payload: new Uint8Array(100).fill(0xee) });
  let queued = 0;
  while (nic.transmit(frame)) queued++;
  await k.print(`${name}: ${queued} frames on the ring; powering off without closing`);
}

export default kernelMain(async (k) => {
  const xs = openXenstore(k);
  const name = E.getOrElse(() => "guest")(await xs.read("name")());
  switch (k.arg("role") ?? "ping") {
    case "ping":
      return ping(k, xs, name);
    case "vandal":
      return vandal(k, xs, name);
    case "crasher":
      return crasher(k, xs, name);
    default:
      throw new Error(`${name}: unknown role ${k.arg("role")}`);
  }
});
