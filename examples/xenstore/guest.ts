/**
 * A guest that uses XenStore, as every PV driver does to find its peers.
 *
 * - `role=writer`: reads its own `name` and `domid` (relative paths resolve
 *   to its home, `/local/domain/<domid>`), writes `data/greeting`, and grants
 *   `peer` read access to it with `SET_PERMS`.
 * - `role=reader`: watches the writer's greeting; the watch fires only once
 *   the greeting exists *and* the reader may read it, then it reads it.
 * - `role=responder`: waits for commands in `data/command` (written from
 *   outside, say with `xenstore-write`) and answers `greet` in `data/reply`;
 *   `exit` ends it. It also takes the disks and network interfaces the
 *   toolstack hotplugs (`xl block-attach`, `xl network-attach`) with
 *   `@pvkit/domu`'s `watchDevices`, and lets them go on detach; `disk`
 *   writes and reads back sector 0 of each disk and answers, one line per
 *   disk joined by `; `, `xvdb: 4 MiB, wrote and read sector 0: ok` (or
 *   `no disks`).
 * - `role=vandal`: a broken guest: it claims far more requests in its
 *   XenStore ring than the ring holds, which xenstored must refuse by
 *   closing that one connection.
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE, xenstore_domain_interface } from "@pvkit/abi";
import { kernelMain, openXenstore, type Kernel, type XsClient } from "@pvkit/kernel";
import { formatMac, watchDevices, type BlkfrontDevice } from "@pvkit/domu";

const get = async <A>(task: () => Promise<E.Either<{ message: string }, A>>): Promise<A> => {
  const r = await task();
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
};

async function writer(xs: XsClient, name: string, peer: number, print: (s: string) => Promise<void>): Promise<void> {
  const domid = Number(await get(xs.read("domid")));
  await get(xs.write("data/greeting", `hello from ${name}`));
  await print(`${name}: wrote /local/domain/${domid}/data/greeting`);
  await get(xs.setPerms("data/greeting", { owner: domid, others: "n", entries: [{ domid: peer, access: "r" }] }));
  await print(`${name}: granted domain ${peer} read access`);
}

async function reader(xs: XsClient, name: string, peer: number, print: (s: string) => Promise<void>): Promise<void> {
  const path = `/local/domain/${peer}/data/greeting`;
  const before = await xs.read(path)();
  await print(`${name}: before the grant, reading ${path}: ${E.isLeft(before) ? before.left.name : "readable?!"}`);
  for await (const _ of xs.watch(path, "greeting")) {
    const now = await xs.read(path)();
    if (E.isRight(now)) {
      await print(`${name}: read "${now.right}"`);
      return;
    }
  }
}

/** Writes a pattern to sector 0 of `disk`, reads it back and says how it went. */
async function checkDisk(disk: BlkfrontDevice, vdev: string, round: number): Promise<string> {
  const size = `${(disk.info?.sectors ?? 0) / 2048} MiB`;
  const pattern = new Uint8Array(512).map((_, i) => (i * 7 + round) & 0xff);
  const wrote = await disk.write(0, pattern);
  if (E.isLeft(wrote)) return `${vdev}: ${size}, write failed: ${wrote.left.message}`;
  const read = await disk.read(0, 1);
  if (E.isLeft(read)) return `${vdev}: ${size}, read failed: ${read.left.message}`;
  return `${vdev}: ${size}, wrote and read sector 0: ${read.right.every((b, i) => b === pattern[i]) ? "ok" : "MISMATCH"}`;
}

async function responder(k: Kernel, xs: XsClient, name: string, print: (s: string) => Promise<void>): Promise<void> {
  // Hotplugged devices: the disks by device id, with their names (the backend's `dev`, e.g. xvdb).
  const disks = new Map<string, { readonly vdev: string; readonly disk: BlkfrontDevice }>();
  const devices = watchDevices(
    k,
    xs,
    {
      vbd: async (disk) => {
        const dev = await xs.read(`${disk.backendPath}/dev`)();
        const vdev = E.isRight(dev) ? dev.right : `vbd ${disk.id}`;
        disks.set(disk.id, { vdev, disk });
        await print(`${name}: ${vdev} connected, ${(disk.info?.sectors ?? 0) / 2048} MiB`);
      },
      vif: (nic) => print(`${name}: vif ${nic.id} connected, mac ${formatMac(nic.mac)}`),
      gone: (type, id) => {
        if (type === "vbd") disks.delete(id);
        return print(`${name}: ${type} ${id} removed`);
      },
      error: (type, id, err) => print(`${name}: ${type} ${id}: ${err.message}`),
    },
    // Small rings and buffers: the guest has a megabyte or two.
    { blkfront: { queueDepth: 4, maxDataPages: 4 }, netfront: { rxBuffers: 8, txBuffers: 8 } },
  );
  await get(xs.write("data/ready", "1"));
  let round = 0;
  for await (const _ of xs.watch("data/command", "command")) {
    const cmd = await xs.read("data/command")();
    if (E.isLeft(cmd)) continue;
    if (cmd.right === "greet") await get(xs.write("data/reply", `hello from ${name}`));
    if (cmd.right === "disk") {
      const lines: string[] = [];
      for (const { vdev, disk } of disks.values()) lines.push(await checkDisk(disk, vdev, ++round));
      await get(xs.write("data/reply", lines.length === 0 ? "no disks" : lines.join("; ")));
    }
    if (cmd.right === "exit") break;
  }
  await devices.stop();
}

/** Corrupts the guest's own XenStore ring: req_prod 10000 past req_cons, then rings dom0. */
async function vandal(k: Kernel): Promise<void> {
  const page = k.memory.memory.page(k.memory.pfnOf(Number(k.startInfo.store_mfn))! * PAGE_SIZE);
  xenstore_domain_interface.fields.req_prod.set(page, 0, xenstore_domain_interface.fields.req_cons.get(page, 0) + 10_000);
  k.events.notify(k.startInfo.store_evtchn);
  await k.sleep(1_000_000);
  await k.print(`vandal: xenstored set the ring's error to ${xenstore_domain_interface.fields.error.get(page, 0)}`);
}

export default kernelMain(async (k) => {
  if (k.arg("role") === "vandal") return vandal(k);
  const xs = openXenstore(k);
  const name = await get(xs.read("name"));
  const peer = Number(k.arg("peer"));
  switch (k.arg("role")) {
    case "writer":
      return writer(xs, name, peer, (s) => k.print(s));
    case "reader":
      return reader(xs, name, peer, (s) => k.print(s));
    case "responder":
      return responder(k, xs, name, (s) => k.print(s));
    default:
      throw new Error(`unknown role ${k.arg("role")}`);
  }
});
