/**
 * The quickstart guest: a domU that uses all three split drivers.
 *
 * 1. console: everything it prints goes out through its console ring to
 *    dom0's console daemon;
 * 2. block: it writes a note to its first disk, flushes and reads it back;
 * 3. network: it brings up `eth0`, pings its peer and answers the peer's
 *    pings, then closes everything and powers off.
 *
 * Command line: `ip=A peer=B`.
 */
import * as E from "fp-ts/lib/Either.js";
import { NetStack, Netfront, formatIpv4, formatMac, listVbds, openBlkfront, parseIpv4 } from "@pvkit/domu";
import { kernelMain, openXenstore } from "@pvkit/kernel";

const MS = 1_000_000;

export default kernelMain(async (k) => {
  const xs = openXenstore(k);
  const name = E.getOrElse(() => "guest")(await xs.read("name")());
  await k.print(`${name}: booted with ${k.memory.nrPages} pages, Xen ${k.xenVersion().major}.${k.xenVersion().minor}`);

  // Block: write a note to sector 0 and read it back.
  const [vbd] = await listVbds(xs);
  if (vbd === undefined) throw new Error(`${name}: no disk`);
  const disk = await openBlkfront(k, xs, vbd);
  if (E.isLeft(disk)) throw new Error(`${name}: disk ${vbd}: ${disk.left.message}`);
  const note = new Uint8Array(512);
  note.set(new TextEncoder().encode(`${name} was here`));
  const wrote = await disk.right.write(0, note);
  const flushed = await disk.right.flush();
  const back = await disk.right.read(0, 1);
  const text = E.isRight(back) ? new TextDecoder().decode(back.right).replace(/\0+$/, "") : `(${back.left.message})`;
  await k.print(`${name}: disk ${vbd}: wrote ${E.isRight(wrote) ? "ok" : wrote.left.message}, flushed ${E.isRight(flushed) ? "ok" : flushed.left.message}, read back "${text}"`);
  await disk.right.close();

  // Network: ping the peer, answer its pings.
  const ip = parseIpv4(k.arg("ip") ?? "");
  const peer = parseIpv4(k.arg("peer") ?? "");
  if (ip === undefined || peer === undefined) throw new Error(`${name}: ip= and peer= must be IPv4 addresses`);
  const nic = await Netfront.open(k, xs);
  if (E.isLeft(nic)) throw new Error(`${name}: eth0: ${nic.left.message}`);
  const stack = new NetStack(nic.right, { now: () => k.clock.now(), sleep: (ns) => k.sleep(ns) }, { ip });
  nic.right.onReceive((frame) => stack.input(frame));
  await k.print(`${name}: eth0 ${formatMac(nic.right.mac)} ${formatIpv4(ip)} up`);
  for (let seq = 1; seq <= 3; seq++) {
    const r = await stack.ping(peer, { seq, size: 56 });
    await k.print(r === undefined ? `${name}: no reply from ${formatIpv4(peer)}` : `${name}: reply from ${formatIpv4(r.from)}: icmp_seq=${r.seq} time=${(r.rttNs / MS).toFixed(3)} ms`);
    await k.sleep(10 * MS);
  }
  await Promise.race([stack.answered(3), k.sleep(5_000 * MS)]);
  await nic.right.close();
  await k.print(`${name}: done`);
});
