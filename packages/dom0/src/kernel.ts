/**
 * The dom0 kernel: the privileged domain that builds and serves the others.
 *
 * At boot it reads its boot manifest (see `manifest.ts`) from the boot
 * module, starts xenstored, the console daemon and the back ends, and has
 * the domain manager ({@link Libxl}) create the manifest's domains as one
 * group: each gets its domid, the channels are connected, then each is
 * built, given its devices and unpaused. Their consoles are relayed to Xen's
 * console as `[name] line`. It binds `VIRQ_DOM_EXC`, which the hypervisor
 * raises when a domain shuts down; each time, the domain manager applies the
 * action the domain's config names (the manifest's domains: destroy).
 *
 * With a control socket in the manifest, `xl` reaches the domain manager
 * through it (`control.ts`). A dom0 serving a control or XenStore socket
 * stays up until told to stop — `xl host-shutdown`, or `poweroff` written to
 * its own `control/shutdown` — and then destroys every domain; otherwise it
 * stops when the last domain is gone. Then dom0 powers off, and with it the
 * host.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { VIRQ } from "@pvkit/abi";
import { kernelMain, orThrow, type Kernel } from "@pvkit/kernel";
import { ConsoleDaemon } from "./console/index.js";
import type { CreateRequest } from "./control-protocol.js";
import { ControlServer } from "./control.js";
import { Libxl, type DeviceCounterSource } from "./libxl.js";
import { XenstoredService } from "./xenstored.js";
import { publishDom0 } from "./xs-domain.js";
import { startBlkback, type BlkbackService } from "./blkback/index.js";
import { startNetback, type Netback } from "./netback/index.js";
import { DEFAULT_SHUTDOWN_TIMEOUT_S, parseManifest, substitute, type Manifest } from "./manifest.js";

/** A manifest domain as the domain manager creates it: xl's defaults, and destroyed on any shutdown. */
function createRequest(d: Manifest["domains"][number]): CreateRequest {
  return {
    name: d.name,
    kernel: d.kernel,
    memoryMiB: d.memory,
    maxMemMiB: d.memory,
    vcpus: d.vcpus ?? 1,
    cmdline: d.cmdline ?? "",
    weight: 256,
    cap: 0,
    onPoweroff: "destroy",
    onReboot: "destroy",
    onCrash: "destroy",
    onWatchdog: "destroy",
    disks: (d.disks ?? []).map((disk) => ({ target: disk.target, vdev: disk.vdev, mode: disk.mode ?? "w", ...(disk.size !== undefined && { size: disk.size }) })),
    vifs: (d.vifs ?? []).map((vif) => ({ ...(vif.mac !== undefined && { mac: vif.mac }), ...(vif.bridge !== undefined && { bridge: vif.bridge }), ...(vif.backend !== undefined && { backend: vif.backend }) })),
  };
}

/** `top`'s counters, from the back ends dom0 runs. */
function backendCounters(blk: BlkbackService, net: Netback): DeviceCounterSource {
  return {
    vbd: (domid, devid) => {
      for (const d of blk.devices.values()) {
        if (d.frontendId !== domid || d.id !== String(devid)) continue;
        const s = d.ring?.stats;
        return s === undefined ? undefined : { requests: s.requests, errors: s.errors, ooReq: 0, rdReq: s.rdReq, wrReq: s.wrReq, rdSect: s.rdSect, wrSect: s.wrSect };
      }
      return undefined;
    },
    vif: (domid, devid) => {
      for (const d of net.devices.values()) {
        if (d.frontendId !== domid || d.id !== String(devid)) continue;
        const s = d.datapath?.stats;
        return s === undefined ? undefined : { txFrames: s.txFrames, txBytes: s.txBytes, rxFrames: s.rxFrames, rxBytes: s.rxBytes };
      }
      return undefined;
    },
  };
}

/** Asks the running domains to power off and reaps them as they do, for at most `timeoutNs`. */
async function powerOffDomains(k: Kernel, libxl: Libxl, domExc: number, timeoutNs: number): Promise<void> {
  if (libxl.runningCount === 0) return;
  await libxl.powerOffAll();
  const timeout = k.timers.timeout(timeoutNs);
  let late = false;
  const deadline = timeout.fired.then(() => (late = true));
  while (libxl.runningCount > 0 && !late) {
    await Promise.race([k.events.wait(domExc), deadline]);
    await libxl.reap();
  }
  timeout.cancel();
  if (libxl.runningCount > 0) await k.print(`dom0: ${libxl.runningCount} domain(s) did not power off within ${timeoutNs / 1e9} s; destroying them`);
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
  const xenstored = new XenstoredService(k);
  const xs = xenstored.client;
  const xsSocket = m.xenstored?.socket;
  if (xsSocket !== undefined) xenstored.listen(xsSocket);
  orThrow(await publishDom0(xs, k.memory.nrPages)());
  const shutdownRequests = xs.watch("/local/domain/0/control/shutdown", "dom0-shutdown");
  const domExc = orThrow(k.events.bindVirq(VIRQ.DOM_EXC));

  const links = new Map<string, string[]>();
  for (const l of m.consoleLinks ?? []) links.set(l.from, [...(links.get(l.from) ?? []), l.to]);
  let libxl: Libxl | undefined;
  const consoles: ConsoleDaemon = new ConsoleDaemon(k, {
    sink: (name, _domid, line) => {
      void k.print(`[${name}] ${line}`);
      for (const to of links.get(name) ?? []) {
        const domid = libxl?.domidOf(to);
        if (domid !== undefined) consoles.type(domid, `${line}\n`);
      }
    },
    log: (message) => void k.print(`dom0: ${message}`),
    ...(m.console?.socketDir !== undefined && { socketDir: m.console.socketDir }),
  });
  const blkback = startBlkback(k, xs);
  const netback = startNetback(k, xs, { bridges: m.bridges ?? [{ name: "xenbr0" }] });

  // A host serving a socket stays up until asked to stop; otherwise dom0 goes when its domains have.
  let stopRequested = false;
  let requestStop = () => {};
  const stop = new Promise<void>((resolve) => (requestStop = resolve));
  const askStop = () => {
    stopRequested = true;
    requestStop();
  };
  let tornDown = () => {};
  const gone = new Promise<void>((resolve) => (tornDown = resolve));
  libxl = new Libxl(k, {
    xs,
    consoles,
    log: (line) => k.print(`dom0: ${line}`),
    counters: backendCounters(blkback, netback),
    powerOff: () => {
      askStop();
      return gone;
    },
  });

  // The manifest's domains, as one group: the channels connect them before any is built.
  const created = await libxl.createGroup(m.domains.map(createRequest), {
    connect: (domids) => {
      const ports = new Map<string, number>();
      for (const c of m.channels ?? []) {
        const port = k.events.allocUnbound(domids.get(c.to)!, domids.get(c.from)!);
        if (E.isLeft(port)) return E.left(`channel ${c.name}: ${port.left.message}`);
        ports.set(c.name, port.right);
      }
      return E.right((c: CreateRequest) => substitute(c.cmdline, domids, ports));
    },
  });
  if (E.isLeft(created)) throw new Error(created.left);

  const controlSocket = m.control?.socket;
  let control: ControlServer | undefined;
  if (controlSocket !== undefined) {
    control = new ControlServer(k, libxl);
    control.listen(controlSocket);
  }
  const serving = xsSocket !== undefined || controlSocket !== undefined;

  void (async () => {
    for await (const _ of shutdownRequests) {
      const asked = await xs.read("/local/domain/0/control/shutdown")();
      if (E.isRight(asked) && asked.right === "poweroff") {
        askStop();
        return;
      }
    }
  })();
  while (!stopRequested && (libxl.size > 0 || serving)) {
    await Promise.race([k.events.wait(domExc), stop]);
    if (!stopRequested) await libxl.reap();
    if (xenstored.failure !== undefined) throw new Error(`xenstored socket: ${xenstored.failure.message}`);
    if (consoles.failure !== undefined) throw new Error(`console sockets: ${consoles.failure.message}`);
    if (control?.failure !== undefined) throw new Error(`control socket: ${control.failure.message}`);
  }
  await powerOffDomains(k, libxl, domExc, (m.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_S) * 1e9);
  await libxl.destroyAll();
  tornDown();
  await control?.close();
  await shutdownRequests.close();
  for (const b of [blkback, netback]) await b.stop();
  consoles.close();
  xenstored.close();
  await k.print("dom0: every domain has shut down");
}

/** The dom0 kernel entry. */
export default kernelMain(dom0Main);
