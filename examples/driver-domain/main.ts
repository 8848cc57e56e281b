/**
 * `examples/driver-domain`: the network backend runs in an unprivileged
 * driver domain, `netdd`, instead of dom0. Its kernel is
 * `@pvkit/dom0/netback-domain`: netback and its own bridge `xenbr0`. The
 * vifs of `alice` and `bob` name it as their backend, so the toolstack
 * puts their backend directories in netdd's home, and the two ping each
 * other through it — their pages granted to netdd, not to dom0.
 *
 * With `backendCloses`, netdd closes its vifs and powers off part-way
 * through, and the guests see their link go down.
 */
import { fileURLToPath } from "node:url";
import { kernelUrl, runManifest, type RunResult } from "../support.js";

/** What to run. */
export interface DriverDomainOptions {
  /** The engine's seed (default 1). */
  readonly seed?: number;
  /** Echo requests each way (default 3). */
  readonly count?: number;
  /** Make the driver domain close its vifs and power off after 300 ms of virtual time. */
  readonly backendCloses?: boolean;
}

/** The boot manifest of the example. */
export function driverDomainManifest(opts: DriverDomainOptions = {}): unknown {
  const guest = kernelUrl(fileURLToPath(new URL("../network/guest.js", import.meta.url)));
  const count = opts.backendCloses ? 10 : (opts.count ?? 3);
  return {
    domains: [
      { name: "netdd", kernel: kernelUrl("@pvkit/dom0/netback-domain"), memory: 2, cmdline: `bridges=xenbr0${opts.backendCloses ? " shutdown-after=300000000" : ""}` },
      { name: "alice", kernel: guest, memory: 2, cmdline: `ip=192.168.7.1 peer=192.168.7.2 count=${count}`, vifs: [{ mac: "00:16:3e:07:00:01", backend: "netdd" }] },
      { name: "bob", kernel: guest, memory: 2, cmdline: `ip=192.168.7.2 peer=192.168.7.1 count=${count}`, vifs: [{ mac: "00:16:3e:07:00:02", backend: "netdd" }] },
    ],
  };
}

/** Runs the example. */
export function runDriverDomain(opts: DriverDomainOptions = {}): Promise<RunResult> {
  return runManifest(driverDomainManifest(opts), { seed: opts.seed ?? 1 });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of (await runDriverDomain()).console) console.log(line);
}
