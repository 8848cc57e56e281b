/**
 * A network driver domain: an unprivileged domU whose kernel runs netback
 * and its own bridge, serving the vifs of other domUs, as a Xen driver
 * domain does (`backend=` in `xl-network-configuration`).
 *
 * The toolstack puts such a vif's backend directory in the driver domain's
 * home (`/local/domain/<dd>/backend/vif/<frontend>/<handle>`, owned by the
 * driver domain), so the netback started here finds it by watching its own
 * `backend/vif`, exactly as dom0's does. Nothing in it is privileged: the
 * frontends grant their ring and buffer pages to the driver domain, which
 * maps and copies them with the grant operations any domain may use, and
 * binds the event channels the frontends allocated for it.
 *
 * Command line:
 *
 * - `bridges=xenbr0,xenbr1` — the bridges to create (default `xenbr0`);
 * - `shutdown-after=<ns>` — close every vif (the backend end closes first)
 *   and power off after that much virtual time, to show a backend going
 *   away under its frontends.
 *
 * The domain powers off by itself once it has served vifs and all of them
 * are gone (their frontends' domains were destroyed), or when asked to
 * through `control/shutdown` (`poweroff`), as every PV guest watches it.
 * The module is `@pvkit/dom0/netback-domain`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { kernelMain, openXenstore, type Kernel } from "@pvkit/kernel";
import { startNetback, type Netback } from "./index.js";

/** How long a closing vif may wait for its frontend to follow, in ns. */
const CLOSE_TIMEOUT_NS = 1_000_000_000;

/** Closes every vif in order (backend first), giving each frontend a while to follow, then stops netback. */
export async function closeNetback(k: Kernel, nb: Netback, timeoutNs = CLOSE_TIMEOUT_NS): Promise<void> {
  await Promise.all([...nb.devices.values()].map((d) => Promise.race([d.close(), k.sleep(timeoutNs)])));
  await nb.stop();
}

/** Runs a driver domain on a booted kernel: netback and its bridges until idle, told to stop, or its time is up. */
export async function driverDomainMain(k: Kernel): Promise<void> {
  const xs = openXenstore(k);
  const name = await xs.read("name")();
  const me = E.isRight(name) ? name.right : "driver-domain";
  const bridges = (k.arg("bridges") ?? "xenbr0")
    .split(",")
    .filter((b) => b !== "")
    .map((b) => ({ name: b }));
  const nb = startNetback(k, xs, { bridges, log: (line) => void k.print(`${me}: ${line}`) });
  await k.print(`${me}: netback serving bridge${bridges.length > 1 ? "s" : ""} ${bridges.map((b) => b.name).join(", ")}`);

  const shutdown = xs.watch("control/shutdown", "driver-domain-shutdown");
  const asked = (async () => {
    for await (const _ of shutdown) {
      const r = await xs.read("control/shutdown")();
      if (E.isRight(r) && r.right === "poweroff") return "asked to power off";
    }
    return "XenStore closed";
  })();
  const after = Number(k.arg("shutdown-after") ?? "0");
  const timers: Promise<string>[] = after > 0 ? [k.sleep(after).then(() => "time is up")] : [];
  const why = await Promise.race([nb.idle().then(() => "every vif is gone"), asked, ...timers]);
  const served = nb.served;
  const stats = [...nb.bridges.values()].map((b) => `${b.name}: ${b.stats.frames} frames, ${b.stats.forwarded} forwarded, ${b.stats.flooded} flooded, ${b.stats.broadcast} broadcast`);
  await closeNetback(k, nb);
  await shutdown.close();
  await k.print(`${me}: ${why}; served ${served} vif${served === 1 ? "" : "s"}; ${stats.join("; ")}; ${nb.held.rings} rings still mapped, ${nb.held.ports} ports still bound`);
}

/** The driver domain's kernel entry. */
export default kernelMain(driverDomainMain);
