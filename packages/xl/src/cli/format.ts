/**
 * What xl prints, in real xl's formats: the same columns, widths and
 * `printf` conversions as `tools/xl` (`xl_info.c`, `xl_vcpu.c`,
 * `xl_sched.c`, `xl_block.c`, `xl_nic.c`) and `tools/xentop/xentop.c`, so
 * that scripts written against xl's output read pvkit's. Pure functions:
 * values in, text out.
 *
 * @module
 */
import type { CreateRequest } from "@pvkit/dom0";
import { libxlDomainConfigJson, stringifyLibxlJson, type DomainConfig, type LibxlJson } from "../domain-config.js";
import type { BlockInfo, DomainSummaryResult, NicInfo, VcpuInfo } from "../control-client.js";

/** `%Ns`: right-aligned in `width`. */
export const padLeft = (v: string | number, width: number): string => String(v).padStart(width);
/** `%-Ns`: left-aligned in `width`. */
export const padRight = (v: string | number, width: number): string => String(v).padEnd(width);
/**
 * `n` with `digits` decimals as C's `printf("%.Nf")` writes it: the nearest
 * decimal, and a value exactly halfway (6.25 to one decimal) rounded to
 * even, as glibc rounds (`toFixed` rounds such ties up).
 */
export function cFixed(n: number, digits: number): string {
  const exact = n.toFixed(Math.min(100, digits + 30));
  const point = exact.indexOf(".");
  const tail = exact.slice(point + 1 + digits);
  if (!/^50*$/.test(tail)) return n.toFixed(digits);
  // A tie: keep the digits as they are if the last is even, else round away from zero.
  const kept = exact.slice(0, point + 1 + digits).replace(/\.$/, "");
  const last = Number(kept[kept.length - 1]);
  return last % 2 === 0 ? kept : n.toFixed(digits);
}

/** `%W.Df`: `n` with `digits` decimals (C's rounding), right-aligned in `width`. */
export const fixed = (n: number, width: number, digits = 1): string => cFixed(n, digits).padStart(width);

/**
 * A memory size as `xl mem-set` and `mem-max` read it
 * (`parse_mem_size_kb`): an integer and an optional unit, `b`, `k`, `m`,
 * `g` or `t` (either case). No unit is MiB, as xl's code reads it (its
 * manual says KiB). Undefined if it is not such a size.
 */
export function parseMemSizeKiB(text: string): number | undefined {
  const m = /^(\d+)([bkmgt]?)$/i.exec(text.trim());
  if (m === null) return undefined;
  const n = Number(m[1]);
  switch (m[2]!.toLowerCase()) {
    case "b":
      return Math.floor(n / 1024);
    case "k":
      return n;
    case "":
    case "m":
      return n * 1024;
    case "g":
      return n * 1024 * 1024;
    default:
      return n * 1024 * 1024 * 1024;
  }
}

// ---------------------------------------------------------------------------
// xl list

/** Extra columns of `xl list`: `-Z` (security label), `-c` (cpupool), `-n` (NUMA node affinity). */
export interface ListColumns {
  /** `-Z`: the security label. */
  readonly context?: boolean;
  /** `-c`: the cpupool. */
  readonly cpupool?: boolean;
  /** `-n`: the NUMA node affinity. */
  readonly numa?: boolean;
}

/** The state column: six flags `rbpscd`, each `-` where unset. */
function stateColumn(state: string): string {
  return state.length === 6 ? state : state.slice(0, 6).padEnd(6, "-");
}

/**
 * `xl list`'s table (`list_domains`): `Name ID Mem VCPUs State Time(s)`,
 * Mem in MiB, Time in seconds (from the CPU time as a C `float`, as xl
 * casts it).
 */
export function formatList(domains: readonly DomainSummaryResult[], columns: ListColumns = {}): string {
  let out = "Name                                        ID   Mem VCPUs\tState\tTime(s)";
  if (columns.context) out += "   Security Label";
  if (columns.cpupool) out += "         Cpupool";
  if (columns.numa) out += " NODE Affinity";
  out += "\n";
  for (const d of domains) {
    out += `${padRight(d.name, 40)} ${padLeft(d.domid, 5)} ${padLeft(Math.floor(d.memKiB / 1024), 5)} ${padLeft(d.vcpus, 5)}     ${stateColumn(d.state)}  ${fixed(Math.fround(d.cpuNs) / 1e9, 8)}`;
    if (columns.context) out += ` ${padLeft("-", 16)}`;
    if (columns.cpupool) out += padLeft("Pool-0", 16);
    if (columns.numa) out += " all";
    out += "\n";
  }
  return out;
}

/** The {@link DomainConfig} a create request came from, as far as it says (for `xl list -l`). */
export function domainConfigOfRequest(r: CreateRequest): DomainConfig {
  return {
    name: r.name,
    type: "pv",
    kernel: { kind: "module", specifier: r.kernel },
    ...(r.cmdline === "" ? {} : { cmdline: r.cmdline }),
    memory: r.memoryMiB,
    maxmem: r.maxMemMiB,
    vcpus: r.vcpus,
    maxvcpus: r.vcpus,
    cpuWeight: r.weight,
    cap: r.cap,
    onPoweroff: r.onPoweroff,
    onReboot: r.onReboot,
    onCrash: r.onCrash,
    onWatchdog: r.onWatchdog,
    disks: r.disks.map((d) => ({ target: d.target, format: "raw", vdev: d.vdev, access: d.mode === "w" ? "rw" : "ro", devtype: "disk", directIoSafe: false })),
    vifs: r.vifs.map((v) => ({
      ...(v.mac === undefined ? {} : { mac: v.mac }),
      ...(v.bridge === undefined ? {} : { bridge: v.bridge }),
      ...(v.backend === undefined ? {} : { backend: String(v.backend) }),
      unknown: [],
    })),
    explicit: [],
  };
}

/**
 * `xl list -l`: a JSON array of `{ "domid": N, "config": libxl_domain_config }`
 * for the domains whose configuration the toolstack keeps (real xl skips
 * those it cannot retrieve, such as dom0), every value resolved, and the
 * memory as it is now (after `mem-set`, `mem-max`).
 */
export function formatListLong(domains: readonly DomainSummaryResult[]): string {
  const items: LibxlJson[] = [];
  for (const d of domains) {
    if (d.config === undefined) continue;
    const config = libxlDomainConfigJson(domainConfigOfRequest(d.config), { mode: "list" });
    const b = config["b_info"] as { [key: string]: LibxlJson };
    config["b_info"] = { ...b, max_memkb: Math.round(d.maxMemKiB), target_memkb: Math.round(d.memKiB) };
    items.push({ domid: d.domid, config });
  }
  return `${stringifyLibxlJson(items)}\n`;
}

// ---------------------------------------------------------------------------
// xl vcpu-list

/** `xl vcpu-list`'s header. */
export const VCPU_LIST_HEADER = `${padRight("Name", 32)} ${padLeft("ID", 5)} ${padLeft("VCPU", 5)} ${padLeft("CPU", 5)} ${padLeft("State", 5)} ${padLeft("Time(s)", 9)} Affinity (Hard / Soft)\n`;

/**
 * One row of `xl vcpu-list` (`print_vcpuinfo`): an offline vCPU shows
 * `-` and `--p`, an online one its pCPU and `r`/`b` flags. The hard
 * affinity is the toolstack's; pvkit has no soft affinity, which on Xen is
 * `all` unless set.
 */
export function formatVcpu(v: VcpuInfo): string {
  let out = `${padRight(v.name, 32)} ${padLeft(v.domid, 5)} ${padLeft(v.vcpu, 5)}`;
  if (!v.online) out += `${padLeft("-", 5)} ${padLeft("-", 3)}-p `;
  else out += `${padLeft(v.cpu < 0 ? "-" : v.cpu, 5)} ${padLeft(v.running ? "r" : "-", 3)}${v.blocked ? "b" : "-"}- `;
  out += `${fixed(Math.fround(v.cpuNs) / 1e9, 9)}  ${v.affinity} / all\n`;
  return out;
}

// ---------------------------------------------------------------------------
// xl sched-credit

/** The pool line of `xl sched-credit` (`sched_credit_pool_output`); no parameters is `[sched params unavailable]`. */
export function formatSchedPool(pool: { readonly name: string; readonly tsliceMs: number; readonly ratelimitUs: number; readonly migrationDelayUs: number } | undefined): string {
  if (pool === undefined) return "Cpupool Pool-0: [sched params unavailable]\n";
  return `Cpupool ${pool.name}: tslice=${pool.tsliceMs}ms ratelimit=${pool.ratelimitUs}us migration-delay=${pool.migrationDelayUs}us\n`;
}

/** `xl sched-credit`'s domain header. */
export const SCHED_CREDIT_HEADER = `${padRight("Name", 33)} ${padLeft("ID", 4)} ${padLeft("Weight", 6)} ${padLeft("Cap", 4)}\n`;

/** One row of `xl sched-credit` (`sched_credit_domain_output`). */
export function formatSchedDomain(d: { readonly domid: number; readonly name: string; readonly weight: number; readonly cap: number }): string {
  return `${padRight(d.name, 33)} ${padLeft(d.domid, 4)} ${padLeft(d.weight, 6)} ${padLeft(d.cap, 4)}\n`;
}

// ---------------------------------------------------------------------------
// xl block-list, network-list

/** `xl block-list`'s header. */
export const BLOCK_LIST_HEADER = `${padRight("Vdev", 5)} ${padRight("BE", 3)} ${padRight("handle", 6)} ${padRight("state", 5)} ${padRight("evt-ch", 6)} ${padRight("ring-ref", 8)} ${padRight("BE-path", 30)}\n`;

/**
 * One row of `xl block-list`: the disk's devid, backend domain, the
 * frontend's domain (xl's "handle" column prints libxl's `frontend_id`),
 * the frontend's state, its event channel and ring ref, and the backend's
 * path.
 */
export function formatBlock(b: BlockInfo, frontendDomid: number): string {
  return `${padRight(b.devid, 5)} ${padRight(b.backendDomid, 3)} ${padRight(frontendDomid, 6)} ${padRight(b.state, 5)} ${padRight(b.eventChannel, 6)} ${padRight(b.ringRef, 8)} ${padRight(b.backendPath, 30)}\n`;
}

/** `xl network-list`'s header. */
export const NETWORK_LIST_HEADER = `${padRight("Idx", 3)} ${padRight("BE", 2)} ${padRight("Mac Addr.", 17)} ${padRight("handle", 6)} ${padRight("state", 5)} ${padRight("evt-ch", 6)} ${padLeft("tx-", 5)}/${padRight("rx-ring-ref", 5)} ${padRight("BE-path", 30)}\n`;

/** One row of `xl network-list`. */
export function formatNic(n: NicInfo): string {
  return `${padRight(n.devid, 3)} ${padRight(n.backendDomid, 2)} ${n.mac}${padLeft(n.devid, 6)} ${padLeft(n.state, 5)} ${padLeft(n.eventChannel, 6)} ${padLeft(n.txRingRef, 5)}/${padRight(n.rxRingRef, 11)} ${padRight(n.backendPath, 30)}\n`;
}

// ---------------------------------------------------------------------------
// xl uptime

/** An uptime as xl writes it (`uptime_to_string`): `H:MM:SS` (hours padded to 2), `N day(s), H:MM:SS`; short: without seconds. */
export function uptimeString(seconds: number, short: boolean): string {
  let s = Math.floor(seconds);
  const day = Math.floor(s / 86400);
  s -= day * 86400;
  const hour = Math.floor(s / 3600);
  s -= hour * 3600;
  const min = Math.floor(s / 60);
  const sec = s - min * 60;
  const two = (n: number) => String(n).padStart(2, "0");
  const clock = short ? `${padLeft(hour, 2)}:${two(min)}` : `${padLeft(hour, 2)}:${two(min)}:${two(sec)}`;
  if (day > 1) return `${day} days, ${clock}`;
  if (day === 1) return `${day} day, ${clock}`;
  return clock;
}

/** `HH:MM:SS` of `now`, local time, as `strftime("%H:%M:%S")`. */
export function clockString(now: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
}

/** `xl uptime`: a header and `Name ID Uptime` rows; `-s` (short): ` HH:MM:SS up H:MM, name (id)` lines. */
export function formatUptime(entries: readonly { readonly domid: number; readonly name: string; readonly uptimeNs: number }[], short: boolean, now: Date): string {
  let out = short ? "" : `${padRight("Name", 33)} ${padLeft("ID", 4)} Uptime\n`;
  for (const e of entries) {
    const up = uptimeString(e.uptimeNs / 1e9, short);
    out += short ? ` ${clockString(now)} up ${up}, ${e.name} (${e.domid})\n` : `${padRight(e.name, 33)} ${padLeft(e.domid, 4)} ${up}\n`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// xl info

/** The names `xl info` prints, in its order (`output_nodeinfo`, `output_physinfo`, `output_xeninfo`), `xend_config_format` last. */
export const INFO_FIELDS = [
  "host",
  "release",
  "version",
  "machine",
  "nr_cpus",
  "max_cpu_id",
  "nr_nodes",
  "cores_per_socket",
  "threads_per_core",
  "cpu_mhz",
  "hw_caps",
  "virt_caps",
  "total_memory",
  "free_memory",
  "sharing_freed_memory",
  "sharing_used_memory",
  "outstanding_claims",
  "free_cpus",
  "xen_major",
  "xen_minor",
  "xen_extra",
  "xen_version",
  "xen_caps",
  "xen_scheduler",
  "xen_pagesize",
  "platform_params",
  "xen_changeset",
  "xen_commandline",
  "cc_compiler",
  "cc_compile_by",
  "cc_compile_domain",
  "cc_compile_date",
  "build_id",
  "xend_config_format",
] as const;

/**
 * `xl info`: `name : value` lines, the name padded to 23 columns, known
 * names in xl's order and any others after them (before
 * `xend_config_format`). With `only` (`xl info NAME`), just the values of
 * the lines whose name starts with it, as xl's `maybe_printf` filters.
 */
export function formatInfo(values: Readonly<Record<string, string | number>>, only?: string): string {
  const known = new Set<string>(INFO_FIELDS);
  const names = [...INFO_FIELDS.filter((n) => n !== "xend_config_format" && values[n] !== undefined), ...Object.keys(values).filter((n) => !known.has(n)), "xend_config_format"];
  const all: Record<string, string | number> = { ...values, xend_config_format: values["xend_config_format"] ?? 4 };
  let out = "";
  for (const name of names) {
    const value = String(all[name]);
    const line = `${padRight(name, 23)}:${value === "" ? "" : ` ${value}`}\n`;
    if (only === undefined) out += line;
    else if (line.startsWith(only) && line.includes(": ")) out += line.slice(line.indexOf(": ") + 2);
  }
  return out;
}

// ---------------------------------------------------------------------------
// xl top (xentop)

/** The host as xentop's summary shows it. */
export interface XentopHost {
  /** Xen's version, `4.17.0`. */
  readonly xenVersion: string;
  /** Physical CPUs. */
  readonly nrCpus: number;
  /** Their speed, MHz. */
  readonly cpuMhz: number;
  /** Machine memory, KiB. */
  readonly totalMemKiB: number;
  /** Free memory, KiB. */
  readonly freeMemKiB: number;
}

/** A NIC's counters, as `xentop -n` prints them. */
export interface XentopNet {
  /** Bytes, packets, errors and drops received. */
  readonly rxBytes: number;
  /** Packets received. */
  readonly rxPackets: number;
  /** Receive errors. */
  readonly rxErrs: number;
  /** Received packets dropped. */
  readonly rxDrop: number;
  /** Bytes sent. */
  readonly txBytes: number;
  /** Packets sent. */
  readonly txPackets: number;
  /** Send errors. */
  readonly txErrs: number;
  /** Sent packets dropped. */
  readonly txDrop: number;
}

/** Block counters: requests out of order, reads, writes, sectors read and written. */
export interface XentopVbdStats {
  /** Requests out of order. */
  readonly oo: number;
  /** Read requests. */
  readonly rd: number;
  /** Write requests. */
  readonly wr: number;
  /** Sectors read. */
  readonly rsect: number;
  /** Sectors written. */
  readonly wsect: number;
}

/** A domain as xentop shows it. */
export interface XentopDomain {
  /** Its domid. */
  readonly domid: number;
  /** Its name. */
  readonly name: string;
  /** xl's six-flag state (`rbpscd`). */
  readonly state: string;
  /** CPU time, ns. */
  readonly cpuNs: number;
  /** Memory, KiB. */
  readonly memKiB: number;
  /** Maximum memory, KiB; undefined is "no limit". */
  readonly maxMemKiB?: number;
  /** vCPUs. */
  readonly vcpus: number;
  /** Each online vCPU's time, ns (for `-v`). */
  readonly vcpuNs?: readonly number[];
  /** NICs. */
  readonly nets: number;
  /** Bytes its NICs sent. */
  readonly netTxBytes: number;
  /** Bytes its NICs received. */
  readonly netRxBytes: number;
  /** Per-NIC counters (for `-n`), when known. */
  readonly netDetail?: readonly XentopNet[];
  /** Virtual disks. */
  readonly vbds: number;
  /** Their summed counters; undefined when unknown (xentop prints `-`). */
  readonly vbdStats?: XentopVbdStats;
  /** Per-disk counters (for `-x`), when known. */
  readonly vbdDetail?: readonly (XentopVbdStats & { readonly devid: number })[];
}

/** A xentop column: its header and default width. */
interface TopField {
  readonly header: string;
  readonly width: number;
}

const TOP_FIELDS: readonly TopField[] = [
  { header: "NAME", width: 10 },
  { header: "STATE", width: 6 },
  { header: "CPU(sec)", width: 10 },
  { header: "CPU(%)", width: 6 },
  { header: "MEM(k)", width: 10 },
  { header: "MEM(%)", width: 6 },
  { header: "MAXMEM(k)", width: 10 },
  { header: "MAXMEM(%)", width: 9 },
  { header: "VCPUS", width: 5 },
  { header: "NETS", width: 4 },
  { header: "NETTX(k)", width: 8 },
  { header: "NETRX(k)", width: 8 },
  { header: "VBDS", width: 4 },
  { header: "VBD_OO", width: 8 },
  { header: "VBD_RD", width: 8 },
  { header: "VBD_WR", width: 8 },
  { header: "VBD_RSECT", width: 10 },
  { header: "VBD_WSECT", width: 10 },
  { header: "SSID", width: 4 },
];

/** xentop's state column, from xl's `rbpscd` flags: `dsbcpr` order (dying, shutdown, blocked, crashed, paused, running). */
export function xentopState(xlState: string): string {
  const at = (i: number, c: string) => xlState[i] === c;
  // xl's fifth flag is the shutdown reason's letter; `c` there is a crash.
  const flags: Record<string, boolean> = { d: at(5, "d"), s: at(3, "s"), b: at(1, "b"), c: at(4, "c"), p: at(2, "p"), r: at(0, "r") };
  return ["d", "s", "b", "c", "p", "r"].map((c) => (flags[c] ? c : "-")).join("");
}

/** Options of {@link formatXentop}, as xentop's. */
export interface XentopOptions {
  /** Batch mode (`-b`): no summary lines. */
  readonly batch?: boolean;
  /** `-v`: a line of vCPU times under each domain. */
  readonly vcpus?: boolean;
  /** `-n`: a line per NIC. */
  readonly networks?: boolean;
  /** `-x`: a line per virtual disk. */
  readonly vbds?: boolean;
  /** `-r`: the header before each domain. */
  readonly repeatHeader?: boolean;
  /** `-f`: names in full, not cut to 10 columns. */
  readonly fullName?: boolean;
  /** `-z`: dom0 first, whatever the order. */
  readonly dom0First?: boolean;
}

const digits = (n: number): number => Math.floor(Math.log10(n)) + 1;

/**
 * One xentop screen (`top()`): in interactive mode the summary (`xentop -
 * HH:MM:SS   Xen V`, the domain count by state, memory and CPUs), then the
 * header and a row per domain, sorted by name as xentop sorts by default.
 * CPU(%) is the domain's CPU time over the wall time since `previous`
 * (0 without one), as xentop computes it.
 */
export function formatXentop(
  host: XentopHost,
  current: readonly XentopDomain[],
  previous: { readonly domains: readonly XentopDomain[]; readonly elapsedMs: number } | undefined,
  now: Date,
  options: XentopOptions = {},
): string {
  let out = "";
  if (!options.batch) {
    const counts = { running: 0, blocked: 0, paused: 0, crashed: 0, dying: 0, shutdown: 0 };
    for (const d of current) {
      const s = xentopState(d.state);
      if (s[5] === "r") counts.running++;
      else if (s[2] === "b") counts.blocked++;
      else if (s[4] === "p") counts.paused++;
      else if (s[1] === "s") counts.shutdown++;
      else if (s[3] === "c") counts.crashed++;
      else if (s[0] === "d") counts.dying++;
    }
    out += `xentop - ${clockString(now)}   Xen ${host.xenVersion}\n`;
    out += `${current.length} domains: ${counts.running} running, ${counts.blocked} blocked, ${counts.paused} paused, ${counts.crashed} crashed, ${counts.dying} dying, ${counts.shutdown} shutdown \n`;
    const used = host.totalMemKiB - host.freeMemKiB;
    out += `Mem: ${Math.floor(host.totalMemKiB)}k total, ${Math.floor(used)}k used, ${Math.floor(host.freeMemKiB)}k free    CPUs: ${host.nrCpus} @ ${Math.floor(host.cpuMhz)}MHz\n`;
  }
  const domains = [...current];
  const byName = (a: XentopDomain, b: XentopDomain) => {
    const x = a.name.toLowerCase();
    const y = b.name.toLowerCase();
    return x < y ? -1 : x > y ? 1 : 0;
  };
  if (options.dom0First) {
    const i = domains.findIndex((d) => d.name === "Domain-0");
    const dom0 = i >= 0 ? domains.splice(i, 1) : [];
    domains.sort(byName);
    domains.unshift(...dom0);
  } else domains.sort(byName);

  const widths = TOP_FIELDS.map((f) => f.width);
  const vbdWidth = (i: number, n: number | undefined) => (widths[i] = Math.max(widths[i]!, digits((n ?? 0) + 1)));
  for (const d of domains) {
    if (options.fullName) widths[0] = Math.max(widths[0]!, d.name.length);
    widths[10] = Math.max(widths[10]!, digits(Math.floor(d.netTxBytes / 1024) + 1));
    widths[11] = Math.max(widths[11]!, digits(Math.floor(d.netRxBytes / 1024) + 1));
    vbdWidth(14, d.vbdStats?.rd);
    vbdWidth(15, d.vbdStats?.wr);
    vbdWidth(16, d.vbdStats?.rsect);
    vbdWidth(17, d.vbdStats?.wsect);
  }
  const header = `${TOP_FIELDS.map((f, i) => padLeft(f.header, widths[i]!)).join(" ")}\n`;
  const total = host.totalMemKiB > 0 ? host.totalMemKiB : 1;
  domains.forEach((d, index) => {
    if (index === 0 || options.repeatHeader) out += header;
    const before = previous?.domains.find((p) => p.domid === d.domid);
    const cpuPct = before === undefined || previous === undefined || previous.elapsedMs <= 0 ? 0 : (d.cpuNs - before.cpuNs) / 10 / (previous.elapsedMs * 1000);
    const max = d.maxMemKiB;
    // xentop prints `-` for block counters it could not read, 0s for a domain with no disks.
    const stats = d.vbds === 0 ? { oo: 0, rd: 0, wr: 0, rsect: 0, wsect: 0 } : d.vbdStats;
    const vbd = (i: number, key: keyof XentopVbdStats) => padLeft(stats === undefined ? "-" : stats[key], widths[i]!);
    const cells = [
      options.fullName ? padLeft(d.name, widths[0]!) : padLeft(d.name.slice(0, 10), 10),
      xentopState(d.state),
      padLeft(Math.floor(d.cpuNs / 1e9), 10),
      fixed(cpuPct, 6),
      padLeft(Math.floor(d.memKiB), 10),
      fixed((d.memKiB / total) * 100, 6),
      max === undefined ? padLeft("no limit", 10) : padLeft(Math.floor(max), 10),
      max === undefined ? padLeft("n/a", 9) : fixed((max / total) * 100, 9),
      padLeft(d.vcpus, 5),
      padLeft(d.nets, 4),
      padLeft(Math.floor(d.netTxBytes / 1024), widths[10]!),
      padLeft(Math.floor(d.netRxBytes / 1024), widths[11]!),
      padLeft(d.vbds, 4),
      vbd(13, "oo"),
      vbd(14, "rd"),
      vbd(15, "wr"),
      vbd(16, "rsect"),
      vbd(17, "wsect"),
      padLeft(0, 4),
    ];
    out += `${cells.join(" ")}\n`;
    if (options.vcpus) {
      out += "VCPUs(sec): ";
      (d.vcpuNs ?? []).forEach((ns, i) => {
        if (i !== 0 && i % 5 === 0) out += "\n        ";
        out += ` ${padLeft(i, 2)}: ${padLeft(Math.floor(ns / 1e9), 10)}s`;
      });
      out += "\n";
    }
    if (options.networks) {
      (d.netDetail ?? []).forEach((n, i) => {
        out += `Net${i} RX: ${padLeft(n.rxBytes, 8)}bytes ${padLeft(n.rxPackets, 8)}pkts ${padLeft(n.rxErrs, 8)}err ${padLeft(n.rxDrop, 8)}drop  `;
        out += `TX: ${padLeft(n.txBytes, 8)}bytes ${padLeft(n.txPackets, 8)}pkts ${padLeft(n.txErrs, 8)}err ${padLeft(n.txDrop, 8)}drop\n`;
      });
    }
    if (options.vbds) {
      for (const v of d.vbdDetail ?? []) {
        const details = `[${padLeft((v.devid >> 8).toString(16), 2)}:${padLeft((v.devid & 0xff).toString(16), 2)}] `;
        out += `VBD BlkBack ${padLeft(v.devid, 4)} ${details} OO: ${padLeft(v.oo, 8)}   RD: ${padLeft(v.rd, 8)}   WR: ${padLeft(v.wr, 8)}   RSECT: ${padLeft(v.rsect, 10)}   WSECT: ${padLeft(v.wsect, 10)}\n`;
      }
    }
  });
  return out;
}
