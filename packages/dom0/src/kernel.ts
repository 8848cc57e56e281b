/**
 * The dom0 kernel: the privileged domain that builds and serves the others.
 *
 * At boot it reads its boot manifest (see `manifest.ts`) from the boot
 * module, creates every domain, connects the channels, builds and unpauses
 * them, and relays their consoles to Xen's console as `[name] line`. It binds
 * `VIRQ_DOM_EXC`, which the hypervisor raises when a domain shuts down; each
 * time, it asks `getdomaininfo` which domains did, reports why, and destroys
 * them. When the last is gone, dom0 powers off and with it the host.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { SHUTDOWN, VIRQ, keyOf } from "@pvkit/abi";
import { kernelMain, orThrow, type Kernel } from "@pvkit/kernel";
import { buildDomain, createDomain } from "./builder.js";
import { ConsoleDaemon } from "./console/index.js";
import { XenstoredService } from "./xenstored.js";
import { addDevice, devicePaths, publishDom0, publishDomain, releaseDomain, type DeviceSpec } from "./xs-domain.js";
import { startBlkback } from "./blkback/index.js";
import { startNetback } from "./netback/index.js";
import { parseManifest, substitute, vdevToDevid, type Manifest } from "./manifest.js";
import { Toolstack } from "./toolstack.js";

const MIB_PAGES = 256;

/** The devices of a manifest domain, as the toolstack creates them: disks as vbds, vifs served by dom0 or a driver domain. */
function deviceSpecs(d: Manifest["domains"][number], domids: ReadonlyMap<string, number>): DeviceSpec[] {
  const frontendDomid = domids.get(d.name)!;
  const disks = (d.disks ?? []).map((disk): DeviceSpec => {
    const devid = vdevToDevid(disk.vdev)!;
    return {
      type: "vbd",
      devid,
      frontendDomid,
      backendDomid: 0,
      frontend: { "virtual-device": String(devid), "device-type": "disk" },
      backend: {
        dev: disk.vdev,
        type: disk.target === "memory" ? "memory" : "file",
        params: disk.target === "memory" ? String((disk.size ?? 1) * 1024 * 1024) : disk.target,
        mode: disk.mode ?? "w",
        "device-type": "disk",
      },
    };
  });
  const vifs = (d.vifs ?? []).map((vif, handle): DeviceSpec => {
    const mac = vif.mac ?? defaultMac(frontendDomid, handle);
    return {
      type: "vif",
      devid: handle,
      frontendDomid,
      backendDomid: vif.backend === undefined ? 0 : domids.get(vif.backend)!,
      frontend: { mac, handle: String(handle) },
      backend: { mac, handle: String(handle), bridge: vif.bridge ?? "xenbr0", script: "vif-bridge" },
    };
  });
  return [...disks, ...vifs];
}

/** A locally administered MAC in Xen's OUI (00:16:3e), derived from the domid and handle as xl does when none is given. */
function defaultMac(domid: number, handle: number): string {
  return ["00", "16", "3e", domid >> 8, domid & 0xff, handle].map((b) => (typeof b === "string" ? b : b.toString(16).padStart(2, "0"))).join(":");
}

/** Runs dom0 on a booted kernel: build the manifest's domains, serve them, tear them down. */
export async function dom0Main(k: Kernel): Promise<void> {
  await k.print(`dom0: pvkit ${k.memory.nrPages} pages, ${k.privileged ? "privileged" : "UNPRIVILEGED"}`);
  const si = k.startInfo;
  if (si.mod_len === 0n) {
    await k.print("dom0: no boot manifest: nothing to build");
    return;
  }
  const manifest = parseManifest(k.memory.memory.read(Number(si.mod_start), Number(si.mod_len)));
  if (E.isLeft(manifest)) throw new Error(manifest.left.join("\n"));
  await boot(k, manifest.right);
}

async function boot(k: Kernel, m: Manifest): Promise<void> {
  const ts = new Toolstack(k);
  const xenstored = new XenstoredService(k);
  const xs = xenstored.client;
  const socket = m.xenstored?.socket;
  if (socket !== undefined) xenstored.listen(socket);
  orThrow(await publishDom0(xs, k.memory.nrPages)());
  const shutdownRequests = xs.watch("/local/domain/0/control/shutdown", "dom0-shutdown");

  const domids = new Map<string, number>();
  const specs = m.domains.map((d) => ({ name: d.name, kernel: d.kernel, pages: d.memory * MIB_PAGES, vcpus: d.vcpus ?? 1, cmdline: d.cmdline ?? "" }));
  for (const spec of specs) domids.set(spec.name, orThrow(createDomain(k, spec)));

  const ports = new Map<string, number>();
  for (const c of m.channels ?? []) ports.set(c.name, orThrow(k.events.allocUnbound(domids.get(c.to)!, domids.get(c.from)!)));

  const links = new Map<string, string[]>();
  for (const l of m.consoleLinks ?? []) links.set(l.from, [...(links.get(l.from) ?? []), l.to]);
  const consoles: ConsoleDaemon = new ConsoleDaemon(k, {
    sink: (name, _domid, line) => {
      void k.print(`[${name}] ${line}`);
      for (const to of links.get(name) ?? []) consoles.type(domids.get(to)!, `${line}\n`);
    },
    log: (message) => void k.print(`dom0: ${message}`),
    ...(m.console?.socketDir !== undefined && { socketDir: m.console.socketDir }),
  });

  for (const spec of specs) {
    const domid = domids.get(spec.name)!;
    const built = buildDomain(k, domid, { ...spec, cmdline: substitute(spec.cmdline, domids, ports) });
    if (E.isLeft(built)) {
      for (const id of domids.values()) ts.destroy(id);
      throw new Error(`building ${spec.name}: ${built.left.message}`);
    }
    orThrow(consoles.connect(domid, spec.name, built.right.consolePort));
    orThrow(await publishDomain(xs, built.right, spec)());
  }
  const backends = [startBlkback(k, xs), startNetback(k, xs, { bridges: m.bridges ?? [{ name: "xenbr0" }] })];
  const devicesOf = new Map(m.domains.map((d) => [domids.get(d.name)!, deviceSpecs(d, domids)] as const));
  for (const devices of devicesOf.values()) for (const dev of devices) orThrow(await addDevice(xs, dev)());

  for (const [name, domid] of domids) {
    orThrow(ts.unpause(domid));
    await k.print(`dom0: started ${name} as domain ${domid}`);
  }

  const domExc = orThrow(k.events.bindVirq(VIRQ.DOM_EXC));
  const live = new Map([...domids].map(([name, id]) => [id, name]));
  const reap = async (force: boolean) => {
    for (const [domid, name] of [...live]) {
      const info = ts.domainInfo(domid);
      const reason = E.isRight(info) ? Toolstack.shutdownReason(info.right) : undefined;
      if (reason === undefined && !force) continue;
      consoles.disconnect(domid);
      orThrow(ts.destroy(domid));
      await releaseDomain(xs, domid);
      // The frontends' directories went with the domain's home; the backends saw it and closed.
      for (const dev of devicesOf.get(domid) ?? []) await xs.rm(devicePaths(dev).backend)();
      live.delete(domid);
      await k.print(`dom0: ${name} (domain ${domid}) ${reason === undefined ? "destroyed on shutdown" : `shut down: ${keyOf(SHUTDOWN, reason) ?? reason}; destroyed`}`);
    }
  };
  // A host serving XenStore stays up until asked to stop; otherwise dom0 goes when its domains have.
  let stopRequested = false;
  let requestStop = () => {};
  const stop = new Promise<void>((resolve) => (requestStop = resolve));
  void (async () => {
    for await (const _ of shutdownRequests) {
      const asked = await xs.read("/local/domain/0/control/shutdown")();
      if (E.isRight(asked) && asked.right === "poweroff") {
        stopRequested = true;
        requestStop();
        return;
      }
    }
  })();
  while (live.size > 0 || (socket !== undefined && !stopRequested)) {
    await Promise.race([k.events.wait(domExc), stop]);
    await reap(stopRequested);
    if (xenstored.failure !== undefined) throw new Error(`xenstored socket: ${xenstored.failure.message}`);
    if (consoles.failure !== undefined) throw new Error(`console sockets: ${consoles.failure.message}`);
  }
  await shutdownRequests.close();
  for (const b of backends) await b.stop();
  consoles.close();
  xenstored.close();
  await k.print("dom0: every domain has shut down");
}

/** The dom0 kernel entry. */
export default kernelMain(dom0Main);
