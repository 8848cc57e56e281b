/**
 * `xl top`: xentop's view of the host, from the control protocol's `top`
 * operation (the domains) and `info` (the host's memory and CPUs),
 * refreshed every `delay` seconds.
 *
 * On a terminal it redraws the screen (summary, header, a row per domain)
 * until `q`, Escape or Ctrl-C; in batch mode (`-b`, or when standard output
 * is no terminal) it prints the header and rows at each refresh, without
 * the summary, as `xentop -b` does; `-i N` stops after N refreshes.
 *
 * What `top` reports of devices comes from the back ends dom0 runs:
 * NETTX/NETRX and the per-NIC lines of `-n` (for a domain with one NIC)
 * from netback's counters; the VBD columns and the per-disk lines of `-x`
 * from blkback's, which count as Linux's blkback `statistics/` do.
 *
 * @module
 */
import { decodeResult, InfoResult, TopResult, VcpuListResult, type ControlClient, type TopEntry, type VbdCounters } from "../control-client.js";
import { formatXentop, type XentopDomain, type XentopHost, type XentopOptions, type XentopVbdStats } from "./format.js";
import type { CliIo } from "./io.js";

/** Options of {@link runTop}. */
export interface TopOptions extends XentopOptions {
  /** Seconds between refreshes. */
  readonly delaySeconds: number;
  /** Refreshes before stopping; undefined: until told to quit. */
  readonly iterations?: number;
}

/** The host's summary from `info`'s values (memory in MiB, `cpu_mhz` as `"2400.000"`). */
export function xentopHost(info: Readonly<Record<string, string | number>>): XentopHost {
  const num = (k: string) => Number(info[k] ?? 0) || 0;
  return {
    xenVersion: String(info["xen_version"] ?? `${info["xen_major"] ?? "?"}.${info["xen_minor"] ?? "?"}${info["xen_extra"] ?? ""}`),
    nrCpus: num("nr_cpus"),
    cpuMhz: num("cpu_mhz"),
    totalMemKiB: num("total_memory") * 1024,
    freeMemKiB: num("free_memory") * 1024,
  };
}

const vbdStats = (c: VbdCounters): XentopVbdStats => ({ oo: c.ooReq, rd: c.rdReq, wr: c.wrReq, rsect: c.rdSect, wsect: c.wrSect });

/** A domain of `top`'s result as xentop shows it; `vcpuNs` from `vcpu-list`, when asked for. */
export function xentopDomain(e: TopEntry, vcpuNs?: readonly number[]): XentopDomain {
  return {
    domid: e.domid,
    name: e.name,
    state: e.state,
    cpuNs: e.cpuNs,
    memKiB: e.memKiB,
    maxMemKiB: e.maxMemKiB,
    vcpus: e.vcpus,
    ...(vcpuNs === undefined ? {} : { vcpuNs }),
    nets: e.vifs,
    netTxBytes: e.net.txBytes,
    netRxBytes: e.net.rxBytes,
    // The counters are summed over the domain's NICs: exact per NIC only when it has one.
    ...(e.vifs === 1 ? { netDetail: [{ rxBytes: e.net.rxBytes, rxPackets: e.net.rxFrames, rxErrs: 0, rxDrop: 0, txBytes: e.net.txBytes, txPackets: e.net.txFrames, txErrs: 0, txDrop: 0 }] } : {}),
    vbds: e.vbds,
    vbdStats: vbdStats(e.vbd),
    vbdDetail: e.vbdDevices.map((v) => ({ devid: v.devid, ...vbdStats(v) })),
  };
}

/** Runs xentop against `client` until it is done (iterations) or told to quit. */
export async function runTop(client: ControlClient, io: CliIo, options: TopOptions): Promise<void> {
  const interactive = !options.batch && io.stdout.isTTY === true;
  const stdin = io.stdin;
  const rawInput = interactive && stdin.isTTY === true && typeof stdin.setRawMode === "function";
  let quit = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    quit = true;
    wake?.();
  };
  const onKey = (chunk: Buffer | string) => {
    if (/[qQ\x1b\x03]/.test(String(chunk))) stop();
  };
  const onSignal = () => stop();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  if (rawInput) {
    stdin.setRawMode!(true);
    stdin.on("data", onKey);
    stdin.resume();
  }
  let previous: { domains: XentopDomain[]; at: number } | undefined;
  try {
    for (let n = 1; !quit; n++) {
      const entries = decodeResult(TopResult, "top", await client.request("top", {}));
      const host = xentopHost(decodeResult(InfoResult, "info", await client.request("info", {})));
      let vcpuTimes: Map<number, number[]> | undefined;
      if (options.vcpus) {
        vcpuTimes = new Map();
        for (const v of decodeResult(VcpuListResult, "vcpu-list", await client.request("vcpu-list", {}))) {
          if (v.online) vcpuTimes.set(v.domid, [...(vcpuTimes.get(v.domid) ?? []), v.cpuNs]);
        }
      }
      const domains = entries.map((e) => xentopDomain(e, vcpuTimes?.get(e.domid) ?? (vcpuTimes === undefined ? undefined : [])));
      const at = performance.now();
      const screen = formatXentop(host, domains, previous === undefined ? undefined : { domains: previous.domains, elapsedMs: at - previous.at }, new Date(), { ...options, batch: !interactive });
      io.stdout.write(interactive ? `\x1b[H\x1b[2J${screen.replace(/\n/g, "\x1b[K\n")}` : screen);
      previous = { domains, at };
      if (options.iterations !== undefined && n >= options.iterations) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.delaySeconds * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (rawInput) {
      stdin.off("data", onKey);
      stdin.setRawMode!(false);
      stdin.pause();
    }
  }
}
