/**
 * The `xl` command line: real xl's subcommands, options and output, over
 * the control protocol to dom0's toolstack at `<run-dir>/control.sock`
 * (the run directory is `$PVKIT_RUN_DIR`, else `./.pvkit/run`; xl has no
 * flag for it).
 *
 * ```
 * xl [-vfNtT] <subcommand> [args]
 * ```
 *
 * Every command exits 0 on success and non-zero with a message on standard
 * error otherwise; usage errors (exit 2, as xl's) name the bad argument.
 *
 * @module
 */
import { writeFileSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import * as os from "node:os";
import * as E from "fp-ts/lib/Either.js";
import type { DomainRef } from "@pvkit/dom0";
import {
  BlockListResult,
  ConsoleResult,
  ControlClient,
  ControlError,
  decodeResult,
  DomainAckResult,
  DmesgResult,
  InfoResult,
  ListResult,
  NetworkListResult,
  SchedCreditResult,
  ShutdownResultCodec,
  TraceResult,
  UptimeResult,
  VcpuListResult,
} from "../control-client.js";
import { parseDiskSpec } from "../diskspec.js";
import { libxlDeviceDiskJson, libxlDeviceNicJson, libxlDomainConfigJson, parseDomainConfig, stringifyLibxlJson } from "../domain-config.js";
import { createConnection } from "node:net";
import { hostPaths, resolveRunDir, type HostPaths } from "../host.js";
import { parseVifSpec } from "../vifspec.js";
import { countOption, getopt, hasOption, optionValue, type OptionSpec, type ParsedArgs } from "./args.js";
import { attachConsole } from "./console.js";
import { diskRequest, toCreateRequest, vifRequest } from "./create.js";
import {
  BLOCK_LIST_HEADER,
  formatBlock,
  formatInfo,
  formatList,
  formatListLong,
  formatNic,
  formatSchedDomain,
  formatSchedPool,
  formatUptime,
  formatVcpu,
  NETWORK_LIST_HEADER,
  parseMemSizeKiB,
  SCHED_CREDIT_HEADER,
  VCPU_LIST_HEADER,
} from "./format.js";
import { CliError, usageError, type CliIo } from "./io.js";
import { runTop } from "./top.js";

/** What an xl command runs with. */
export interface XlContext {
  /** Its streams, environment and working directory. */
  readonly io: CliIo;
  /** The host's run directory. */
  readonly paths: HostPaths;
  /** `xl -N`: a dry run, which contacts no host. */
  readonly dryRun: boolean;
  /** The control connection, opened on first use. */
  client(): Promise<ControlClient>;
}

/** An xl subcommand. */
interface Command {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly optionsHelp?: string;
  readonly spec: OptionSpec;
  readonly minArgs: number;
  readonly dryRunnable?: boolean;
  /** Runs it; returns the exit status. */
  run(ctx: XlContext, args: ParsedArgs, argv: readonly string[]): Promise<number>;
}

/** A domain as xl names one on its command line: a domid if all digits, else a name. */
export function domainRef(text: string): DomainRef {
  return /^\d+$/.test(text) ? Number(text) : text;
}

/** The one domain operand of `xl <command>` (minArgs has seen there is one), as written; more is a usage error. */
function oneDomain(command: string, args: ParsedArgs): string {
  if (args.operands.length > 1) throw usageError(`xl ${command}: one domain (given ${args.operands.join(" ")})`);
  return args.operands[0]!;
}

const out = (ctx: XlContext, s: string) => void ctx.io.stdout.write(s);
const err = (ctx: XlContext, s: string) => void ctx.io.stderr.write(s);

async function list(ctx: XlContext) {
  return decodeResult(ListResult, "list", await (await ctx.client()).request("list", {}));
}

/** The domid of `text` (a domid or a name), from `list`; a CliError naming it if there is no such domain. */
async function findDomain(ctx: XlContext, text: string): Promise<{ domid: number; name: string }> {
  const ref = domainRef(text);
  const d = (await list(ctx)).find((x) => (typeof ref === "number" ? x.domid === ref : x.name === ref));
  if (d === undefined) throw new CliError(`${text} is an invalid domain identifier: there is no such domain`);
  return d;
}

/** A whole number in `[min, max]` given for an option, or a usage error naming the option. */
function intOption(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw usageError(`${what}: "${text}" is not a number from ${min} to ${max}`);
  return Number(text);
}

// ---------------------------------------------------------------------------
// Commands

const create: Command = {
  name: "create",
  usage: "<ConfigFile> [options] [vars]",
  summary: "Create a domain from config file <filename>",
  optionsHelp: [
    "-h                      Print this help.",
    "-p                      Leave the domain paused after it is created.",
    "-c                      Connect to the console after the domain is created.",
    "-f FILE, --defconfig=FILE",
    "                        Use the given configuration file.",
    "-q, --quiet             Quiet.",
    "-n, --dryrun            Dry run - prints the resulting configuration (also --dry-run)",
    "                         (deprecated in favour of global -N option).",
    "-d                      Enable debug messages.",
    "-F                      Run in foreground until death of the domain.",
    "-e                      Do not wait in the background for the death of the domain.",
  ].join("\n"),
  spec: { short: "Fnqf:pcdeVA", long: { dryrun: { short: "n", arg: false }, "dry-run": { short: "n", arg: false }, quiet: { short: "q", arg: false }, defconfig: { short: "f", arg: true }, vncviewer: { short: "V", arg: false }, "vncviewer-autopass": { short: "A", arg: false } } },
  minArgs: 0,
  dryRunnable: true,
  async run(ctx, args) {
    if (hasOption(args, "V") || hasOption(args, "A")) throw new CliError("xl create: -V/-A: pvkit domains have no VNC display");
    let filename = optionValue(args, "f");
    const overrides: string[] = [];
    for (const a of args.operands) {
      if (a.includes("=")) overrides.push(a);
      else if (filename === undefined) filename = a;
      else throw usageError(`xl create: unexpected argument "${a}": one config file, then KEY=VALUE settings`);
    }
    if (filename === undefined) throw usageError("xl create: no config file given (name one, or /dev/null with KEY=VALUE settings)");
    const dryRun = ctx.dryRun || hasOption(args, "n");
    const quiet = hasOption(args, "q");
    const path = resolve(ctx.io.cwd, filename);
    let text: string;
    try {
      text = filename === "/dev/null" ? "" : readFileSync(path, "utf8");
    } catch (e) {
      throw new CliError(`Failed to read config file: ${filename}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "No such file or directory" : (e as Error).message}`);
    }
    if (!quiet) err(ctx, `Parsing config from ${filename}\n`);
    const parsed = parseDomainConfig(text, filename, { overrides, allowForeignKernel: dryRun });
    if (E.isLeft(parsed)) throw new CliError(parsed.left.map((e) => e.message).join("\n"));
    for (const w of parsed.right.warnings) err(ctx, `warning: ${w}\n`);
    const config = parsed.right.config;
    if (dryRun || hasOption(args, "d")) {
      const json = stringifyLibxlJson(libxlDomainConfigJson(config));
      if (dryRun) {
        out(ctx, json);
        return 0;
      }
      err(ctx, json);
    }
    // Settings given on the command line alone (`/dev/null`) name kernels from the working directory.
    const request = toCreateRequest(config, filename === "/dev/null" ? ctx.io.cwd : dirname(path), ctx.io.cwd, (w) => err(ctx, `warning: ${w}\n`));
    const client = await ctx.client();
    const { domid } = decodeResult(DomainAckResult, "create", await client.request("create", { config: request, paused: hasOption(args, "p") }));
    if (hasOption(args, "c")) await consoleOf(ctx, domid, config.name);
    if (hasOption(args, "F")) {
      while ((await list(ctx)).some((d) => d.domid === domid)) await new Promise((r) => setTimeout(r, 500));
    }
    return 0;
  },
};

async function consoleOf(ctx: XlContext, domain: DomainRef, label: string): Promise<void> {
  const { socket } = decodeResult(ConsoleResult, "console", await (await ctx.client()).request("console", { domain }));
  await attachConsole(socket, ctx.io, label);
}

const listCommand: Command = {
  name: "list",
  usage: "[options] [Domain]",
  summary: "List information about all/some domains",
  optionsHelp: ["-l, --long              Output all VM details", "-Z, --context           Prints out security context", "-c, --cpupool           Prints the cpupool the domain is in", "-n, --numa              Prints out NUMA node affinity"].join("\n"),
  spec: { short: "lvhZcn", long: { long: { short: "l", arg: false }, verbose: { short: "v", arg: false }, context: { short: "Z", arg: false }, cpupool: { short: "c", arg: false }, numa: { short: "n", arg: false } } },
  minArgs: 0,
  async run(ctx, args) {
    if (hasOption(args, "v")) throw new CliError("xl list: -v: pvkit domains have no UUIDs or security labels to show");
    if (args.operands.length > 1) throw usageError(`xl list: one domain at most (given ${args.operands.join(" ")})`);
    let domains = await list(ctx);
    const only = args.operands[0];
    if (only !== undefined) {
      const ref = domainRef(only);
      domains = domains.filter((d) => (typeof ref === "number" ? d.domid === ref : d.name === ref));
      if (domains.length === 0) throw new CliError(`Error: Domain '${only}' does not exist.`);
    }
    out(ctx, hasOption(args, "l") ? formatListLong(domains) : formatList(domains, { context: hasOption(args, "Z"), cpupool: hasOption(args, "c"), numa: hasOption(args, "n") }));
    return 0;
  },
};

/** A command taking one domain and an operation with `{ domain }` arguments. */
function simple(name: "pause" | "unpause", summary: string): Command {
  return {
    name,
    usage: "<Domain>",
    summary,
    spec: { short: "" },
    minArgs: 1,
    async run(ctx, args) {
      await (await ctx.client()).request(name, { domain: domainRef(oneDomain(name, args)) });
      return 0;
    },
  };
}

const destroy: Command = {
  name: "destroy",
  usage: "[options] <Domain>",
  summary: "Terminate a domain immediately",
  optionsHelp: "-f                      Permit destroying domain 0.",
  spec: { short: "f" },
  minArgs: 1,
  async run(ctx, args) {
    const dom = oneDomain("destroy", args);
    if ((dom === "0" || dom === "Domain-0") && !hasOption(args, "f")) {
      throw new CliError("Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n");
    }
    await (await ctx.client()).request("destroy", { domain: domainRef(dom) });
    return 0;
  },
};

function shutdownOrReboot(op: "shutdown" | "reboot"): Command {
  const verb = op === "shutdown" ? "Shutting down" : "Rebooting";
  return {
    name: op,
    usage: "[options] <-a|Domain>",
    summary: op === "shutdown" ? "Issue a shutdown signal to a domain" : "Issue a reboot signal to a domain",
    optionsHelp: [
      `-a, --all               ${op === "shutdown" ? "Shutdown" : "Reboot"} all guest domains.`,
      "-h                      Print this help.",
      `-F                      Fallback to ACPI ${op === "shutdown" ? "power" : "reset"} event for HVM guests with`,
      "                        no PV drivers.",
      `-w, --wait              Wait for guest(s) to ${op === "shutdown" ? "shutdown" : "reboot"}.`,
    ].join("\n"),
    spec: { short: "awF", long: { all: { short: "a", arg: false }, wait: { short: "w", arg: false } } },
    minArgs: 0,
    async run(ctx, args) {
      const all = hasOption(args, "a");
      if (!all && args.operands.length === 0) throw new CliError("You must specify -a or a domain id.\n");
      if (args.operands.length > (all ? 0 : 1)) throw usageError(`xl ${op}: ${all ? "-a takes no domain" : "one domain"} (given ${args.operands.join(" ")})`);
      const targets = all ? (await list(ctx)).filter((d) => d.domid !== 0) : [await findDomain(ctx, args.operands[0]!)];
      const wait = countOption(args, "w") > 0;
      for (const d of targets) err(ctx, `${verb} domain ${d.domid}\n`);
      if (!wait) {
        const client = await ctx.client();
        for (const d of targets) await client.request(op, { domain: d.domid, wait });
        return 0;
      }
      // dom0 answers a connection's requests in turn: wait for each domain on a connection of its own.
      err(ctx, `Waiting for ${targets.length} domains\n`);
      await Promise.all(
        targets.map(async (d) => {
          const client = await ControlClient.connect(ctx.paths.controlSocket);
          try {
            const r = decodeResult(ShutdownResultCodec, op, await client.request(op, { domain: d.domid, wait }));
            err(ctx, `Domain ${d.domid} has been ${r.reason === "destroyed" ? "destroyed" : `shut down, reason: ${r.reason}; action: ${r.action}${r.restartedAs === undefined ? "" : `, restarted as domain ${r.restartedAs}`}`}\n`);
          } finally {
            client.close();
          }
        }),
      );
      return 0;
    },
  };
}

const consoleCommand: Command = {
  name: "console",
  usage: "[options] <Domain>",
  summary: "Attach to domain's console",
  optionsHelp: ["-t <type>               console type, pv or serial", "-n <number>             console number", "", "Use the key combination Ctrl+] to detach from the domain console."].join("\n"),
  spec: { short: "n:t:", long: { type: { short: "t", arg: true }, num: { short: "n", arg: true } } },
  minArgs: 1,
  async run(ctx, args) {
    const type = optionValue(args, "t");
    if (type !== undefined && type !== "pv" && type !== "serial") throw usageError(`xl console: -t ${type}: the console type is pv or serial`);
    if (type === "serial") throw new CliError("xl console: -t serial: pvkit domains are PV guests, which have a PV console only");
    const num = optionValue(args, "n");
    if (num !== undefined && num !== "0") throw new CliError(`xl console: -n ${num}: a pvkit domain has one console, number 0`);
    const dom = oneDomain("console", args);
    await consoleOf(ctx, domainRef(dom), dom);
    return 0;
  },
};

const info: Command = {
  name: "info",
  usage: "[-n] [name]",
  summary: "Get information about Xen host",
  optionsHelp: "-n, --numa              List host NUMA topology information",
  spec: { short: "n", long: { numa: { short: "n", arg: false } } },
  minArgs: 0,
  async run(ctx, args) {
    if (hasOption(args, "n")) throw new CliError("xl info: -n: pvkit hosts have no NUMA topology to show");
    const values = decodeResult(InfoResult, "info", await (await ctx.client()).request("info", {}));
    const local: Record<string, string> = { host: os.hostname(), release: os.release(), version: os.version(), machine: os.machine() };
    out(ctx, formatInfo({ ...local, ...values }, args.operands[0]));
    return 0;
  },
};

const dmesg: Command = {
  name: "dmesg",
  usage: "[-c]",
  summary: "Read and/or clear dmesg buffer",
  optionsHelp: "  -c                        Clear dmesg buffer as well as printing it",
  spec: { short: "c", long: { clear: { short: "c", arg: false } } },
  minArgs: 0,
  async run(ctx, args) {
    const { text } = decodeResult(DmesgResult, "dmesg", await (await ctx.client()).request("dmesg", hasOption(args, "c") ? { clear: true } : {}));
    out(ctx, text);
    return 0;
  },
};

const uptime: Command = {
  name: "uptime",
  usage: "[-s] [Domain]",
  summary: "Print uptime for all/some domains",
  optionsHelp: "-s                      Uptime in short format",
  spec: { short: "s" },
  minArgs: 0,
  async run(ctx, args) {
    let entries = decodeResult(UptimeResult, "uptime", await (await ctx.client()).request("uptime", {}));
    if (args.operands.length > 0) {
      entries = args.operands.map((a) => {
        const ref = domainRef(a);
        const e = entries.find((x) => (typeof ref === "number" ? x.domid === ref : x.name === ref));
        if (e === undefined) throw new CliError(`${a} is an invalid domain identifier: there is no such domain`);
        return e;
      });
    }
    out(ctx, formatUptime(entries, hasOption(args, "s"), new Date()));
    return 0;
  },
};

function memCommand(op: "mem-set" | "mem-max"): Command {
  return {
    name: op,
    usage: "<Domain> <MemKB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>",
    summary: op === "mem-set" ? "Set the current memory usage for a domain" : "Set the maximum amount reservation for a domain",
    spec: { short: "" },
    minArgs: 2,
    async run(ctx, args) {
      if (args.operands.length > 2) throw usageError(`xl ${op}: a domain and a size (given ${args.operands.join(" ")})`);
      const [dom, size] = args.operands as [string, string];
      const memKiB = parseMemSizeKiB(size);
      if (memKiB === undefined || memKiB <= 0) throw new CliError(`invalid memory size: ${size}`);
      await (await ctx.client()).request(op, { domain: domainRef(dom), memKiB });
      return 0;
    },
  };
}

const vcpuList: Command = {
  name: "vcpu-list",
  usage: "[Domain, ...]",
  summary: "List the VCPUs for all/some domains",
  spec: { short: "" },
  minArgs: 0,
  async run(ctx, args) {
    const client = await ctx.client();
    const requests = args.operands.length === 0 ? [{}] : args.operands.map((a) => ({ domain: domainRef(a) }));
    let text = VCPU_LIST_HEADER;
    for (const r of requests) {
      for (const v of decodeResult(VcpuListResult, "vcpu-list", await client.request("vcpu-list", r))) text += formatVcpu(v);
    }
    out(ctx, text);
    return 0;
  },
};

const schedCredit: Command = {
  name: "sched-credit",
  usage: "[options]",
  summary: "Get/set credit scheduler parameters",
  optionsHelp: [
    "-d DOMAIN, --domain=DOMAIN        Domain to modify",
    "-w WEIGHT, --weight=WEIGHT        Weight (int)",
    "-c CAP, --cap=CAP                 Cap (int)",
    "-s         --schedparam           Query / modify scheduler parameters",
    "-p CPUPOOL, --cpupool=CPUPOOL     Restrict output to CPUPOOL",
  ].join("\n"),
  spec: {
    short: "d:w:c:p:t:r:m:s",
    long: {
      domain: { short: "d", arg: true },
      weight: { short: "w", arg: true },
      cap: { short: "c", arg: true },
      schedparam: { short: "s", arg: false },
      tslice_ms: { short: "t", arg: true },
      ratelimit_us: { short: "r", arg: true },
      migration_delay_us: { short: "m", arg: true },
      cpupool: { short: "p", arg: true },
    },
  },
  minArgs: 0,
  async run(ctx, args) {
    const dom = optionValue(args, "d");
    const weightText = optionValue(args, "w");
    const capText = optionValue(args, "c");
    const pool = optionValue(args, "p");
    const s = hasOption(args, "s");
    if ((pool !== undefined || s) && (dom !== undefined || weightText !== undefined || capText !== undefined)) throw new CliError("Specifying a cpupool or schedparam is not allowed with domain options.");
    if (dom === undefined && (weightText !== undefined || capText !== undefined)) throw new CliError("Must specify a domain.");
    if (!s && ["t", "r", "m"].some((o) => hasOption(args, o))) throw new CliError("Must specify schedparam to set schedule parameter values.");
    if (s && ["t", "r", "m"].some((o) => hasOption(args, o))) throw new CliError("xl sched-credit: -t/-r/-m: the control protocol cannot set the pool's parameters yet");
    if (pool !== undefined && pool !== "Pool-0") throw new CliError(`unknown cpupool '${pool}'`);
    if (args.operands.length > 0) throw usageError(`xl sched-credit: unexpected argument "${args.operands[0]}" (name the domain with -d)`);
    const client = await ctx.client();
    if (dom !== undefined && (weightText !== undefined || capText !== undefined)) {
      const weight = weightText === undefined ? undefined : intOption(weightText, "xl sched-credit: -w", 1, 65535);
      const cap = capText === undefined ? undefined : intOption(capText, "xl sched-credit: -c", 0, 65535);
      await client.request("sched-credit", { domain: domainRef(dom), ...(weight === undefined ? {} : { weight }), ...(cap === undefined ? {} : { cap }) });
      return 0;
    }
    const domains = decodeResult(SchedCreditResult, "sched-credit", await client.request("sched-credit", dom === undefined ? {} : { domain: domainRef(dom) }));
    // The protocol has no pool parameters: xl's line for parameters it cannot read.
    let text = dom === undefined ? formatSchedPool(undefined) : "";
    if (!s) {
      text += SCHED_CREDIT_HEADER;
      for (const d of domains) text += formatSchedDomain(d);
    }
    out(ctx, text);
    return 0;
  },
};

const blockAttach: Command = {
  name: "block-attach",
  usage: "<Domain> <disk-spec-component(s)>...",
  summary: "Create a new virtual block device",
  spec: { short: "" },
  minArgs: 2,
  dryRunnable: true,
  async run(ctx, args) {
    const [dom, ...components] = args.operands as [string, ...string[]];
    const text = components.join(",");
    const parsed = parseDiskSpec(text);
    if (E.isLeft(parsed)) throw new CliError(parsed.left.map((m) => `xl block-attach: ${JSON.stringify(text)}: ${m}`).join("\n"));
    for (const w of parsed.right.warnings) err(ctx, `warning: ${w}\n`);
    if (ctx.dryRun) {
      out(ctx, `disk: ${stringifyLibxlJson(libxlDeviceDiskJson(parsed.right.spec))}\n`);
      return 0;
    }
    const disk = diskRequest(parsed.right.spec, ctx.io.cwd, "xl block-attach", (w) => err(ctx, `warning: ${w}\n`));
    await (await ctx.client()).request("block-attach", { domain: domainRef(dom), disk });
    return 0;
  },
};

const blockDetach: Command = {
  name: "block-detach",
  usage: "[-f] <Domain> <DevId>",
  summary: "Destroy a domain's virtual block device",
  optionsHelp: "  -f, --force           Detach even if the guest does not release the device",
  spec: { short: "f", long: { force: { short: "f", arg: false } } },
  minArgs: 2,
  async run(ctx, args) {
    if (args.operands.length > 2) throw usageError(`xl block-detach: a domain and a device (given ${args.operands.join(" ")})`);
    const [dom, dev] = args.operands as [string, string];
    if (hasOption(args, "f")) err(ctx, "warning: --force ignored: the control protocol detaches through the guest\n");
    const client = await ctx.client();
    let vdev = dev;
    if (/^\d+$/.test(dev)) {
      const disks = decodeResult(BlockListResult, "block-list", await client.request("block-list", { domain: domainRef(dom) }));
      const found = disks.find((d) => d.devid === Number(dev));
      if (found === undefined) throw new CliError(`Error: Device ${dev} not connected.`);
      vdev = found.vdev;
    }
    await client.request("block-detach", { domain: domainRef(dom), vdev });
    return 0;
  },
};

function deviceList(op: "block-list" | "network-list"): Command {
  return {
    name: op,
    usage: "<Domain(s)>",
    summary: op === "block-list" ? "List virtual block devices for a domain" : "List virtual network interfaces for a domain",
    spec: { short: "" },
    minArgs: 1,
    async run(ctx, args) {
      const client = await ctx.client();
      out(ctx, op === "block-list" ? BLOCK_LIST_HEADER : NETWORK_LIST_HEADER);
      let status = 0;
      for (const a of args.operands) {
        try {
          const result = await client.request(op, { domain: domainRef(a) });
          if (op === "block-list") {
            const { domid } = await findDomain(ctx, a);
            for (const b of decodeResult(BlockListResult, op, result)) out(ctx, formatBlock(b, domid));
          } else for (const n of decodeResult(NetworkListResult, op, result)) out(ctx, formatNic(n));
        } catch (e) {
          if (!(e instanceof ControlError && e.kind === "refused") && !(e instanceof CliError)) throw e;
          err(ctx, `${e.message}\n`);
          status = 1;
        }
      }
      return status;
    },
  };
}

const networkAttach: Command = {
  name: "network-attach",
  usage: "<Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] [ip=<ip>] [script=<script>] [backend=<BackDomain>] [vifname=<name>] [rate=<rate>] [model=<model>] [accel=<accel>]",
  summary: "Create a new virtual network device",
  spec: { short: "" },
  minArgs: 1,
  dryRunnable: true,
  async run(ctx, args) {
    const [dom, ...items] = args.operands as [string, ...string[]];
    const text = items.join(",");
    const parsed = parseVifSpec(text);
    if (E.isLeft(parsed)) throw new CliError(parsed.left.map((m) => `xl network-attach: ${m}`).join("\n"));
    for (const w of parsed.right.warnings) err(ctx, `warning: ${w}\n`);
    if (ctx.dryRun) {
      out(ctx, `vif: ${stringifyLibxlJson(libxlDeviceNicJson(parsed.right.spec))}\n`);
      return 0;
    }
    const vif = vifRequest(parsed.right.spec, "xl network-attach", (w) => err(ctx, `warning: ${w}\n`));
    await (await ctx.client()).request("network-attach", { domain: domainRef(dom), vif });
    return 0;
  },
};

const networkDetach: Command = {
  name: "network-detach",
  usage: "<Domain> <DevId|mac>",
  summary: "Destroy a domain's virtual network device",
  spec: { short: "" },
  minArgs: 2,
  async run(ctx, args) {
    if (args.operands.length > 2) throw usageError(`xl network-detach: a domain and a device (given ${args.operands.join(" ")})`);
    const [dom, dev] = args.operands as [string, string];
    const client = await ctx.client();
    let devid: number;
    if (dev.includes(":")) {
      const nics = decodeResult(NetworkListResult, "network-list", await client.request("network-list", { domain: domainRef(dom) }));
      const found = nics.find((n) => n.mac.toLowerCase() === dev.toLowerCase());
      if (found === undefined) throw new CliError(`Unknown device ${dev}.`);
      devid = found.devid;
    } else if (/^\d+$/.test(dev)) devid = Number(dev);
    else throw usageError(`xl network-detach: "${dev}" is neither a device number nor a MAC address`);
    await client.request("network-detach", { domain: domainRef(dom), devid });
    return 0;
  },
};

const top: Command = {
  name: "top",
  usage: "[options]",
  summary: "Monitor a host and the domains in real time",
  optionsHelp: [
    "-d, --delay=SECONDS  seconds between updates (default 1)",
    "-n, --networks       output vif network data",
    "-x, --vbds           output vbd block device data",
    "-r, --repeat-header  repeat table header before each domain",
    "-v, --vcpus          output vcpu data",
    "-b, --batch          output in batch mode, no user input accepted",
    "-i, --iterations     number of iterations before exiting",
    "-f, --full-name      output the full domain name (not truncated)",
    "-z, --dom0-first     display dom0 first (ignore sorting)",
  ].join("\n"),
  spec: {
    short: "Vnxrvd:bi:fz",
    long: {
      version: { short: "V", arg: false },
      networks: { short: "n", arg: false },
      vbds: { short: "x", arg: false },
      "repeat-header": { short: "r", arg: false },
      vcpus: { short: "v", arg: false },
      delay: { short: "d", arg: true },
      batch: { short: "b", arg: false },
      iterations: { short: "i", arg: true },
      "full-name": { short: "f", arg: false },
      "dom0-first": { short: "z", arg: false },
    },
  },
  minArgs: 0,
  async run(ctx, args) {
    if (hasOption(args, "V")) {
      out(ctx, "xentop 1.0 (pvkit)\n");
      return 0;
    }
    if (args.operands.length > 0) throw usageError(`xl top: unexpected argument "${args.operands[0]}"`);
    const delay = optionValue(args, "d");
    const iterations = optionValue(args, "i");
    await runTop(await ctx.client(), ctx.io, {
      delaySeconds: delay === undefined ? 1 : intOption(delay, "xl top: -d", 1, 86400),
      ...(iterations === undefined ? {} : { iterations: intOption(iterations, "xl top: -i", 1, Number.MAX_SAFE_INTEGER) }),
      batch: hasOption(args, "b"),
      vcpus: hasOption(args, "v"),
      networks: hasOption(args, "n"),
      vbds: hasOption(args, "x"),
      repeatHeader: hasOption(args, "r"),
      fullName: hasOption(args, "f"),
      dom0First: hasOption(args, "z"),
    });
    return 0;
  },
};

/**
 * Asks the host for `seconds` of the hypervisor's trace on its trace socket
 * (the host serves it, as xentrace reads Xen's buffers directly).
 */
function recordTrace(socket: string, seconds: number): Promise<unknown> {
  return new Promise((resolvePromise, reject) => {
    const c = createConnection(socket);
    let reply = "";
    c.on("connect", () => c.write(`${JSON.stringify({ seconds })}\n`));
    c.on("data", (b) => (reply += b.toString()));
    c.on("error", (e) => reject(new CliError(`xl trace: no pvkit host is running: cannot reach ${socket} (${e.message})`)));
    c.on("end", () => {
      try {
        const json = JSON.parse(reply) as { error?: unknown };
        if (typeof json.error === "string") reject(new CliError(`xl trace: ${json.error}`));
        else resolvePromise(json);
      } catch {
        reject(new CliError("xl trace: the host's answer was not a trace"));
      }
    });
  });
}

const trace: Command = {
  name: "trace",
  usage: "-o <file> [-t <seconds>]",
  summary: "Record the hypervisor's trace for a while, as Chrome trace JSON (Perfetto)",
  optionsHelp: ["-o FILE, --output=FILE  Where to write the trace (required)", "-t SECS, --time=SECS    How long to record (default 1)"].join("\n"),
  spec: { short: "o:t:", long: { output: { short: "o", arg: true }, time: { short: "t", arg: true } } },
  minArgs: 0,
  async run(ctx, args) {
    const file = optionValue(args, "o");
    if (file === undefined) throw usageError("xl trace: -o FILE is required: where to write the trace");
    if (args.operands.length > 0) throw usageError(`xl trace: unexpected argument "${args.operands[0]}"`);
    const t = optionValue(args, "t") ?? "1";
    const seconds = Number(t);
    if (!/^\d+(\.\d+)?$/.test(t) || seconds <= 0 || seconds > 3600) throw usageError(`xl trace: -t: "${t}" is not a number of seconds from 0 to 3600`);
    const result = await recordTrace(ctx.paths.traceSocket, seconds);
    const chrome = decodeResult(TraceResult, "trace", result);
    writeFileSync(resolve(ctx.io.cwd, file), JSON.stringify(result));
    err(ctx, `Wrote ${chrome.traceEvents.length} trace events to ${file}\n`);
    return 0;
  },
};

const domid: Command = {
  name: "domid",
  usage: "<DomainName>",
  summary: "Convert a domain name to domain id",
  spec: { short: "" },
  minArgs: 1,
  async run(ctx, args) {
    const name = args.operands[0]!;
    const d = (await list(ctx)).find((x) => x.name === name);
    if (d === undefined) throw new CliError(`Can't get domid of domain name '${name}', maybe this domain does not exist.`);
    out(ctx, `${d.domid}\n`);
    return 0;
  },
};

const domname: Command = {
  name: "domname",
  usage: "<DomainId>",
  summary: "Convert a domain id to domain name",
  spec: { short: "" },
  minArgs: 1,
  async run(ctx, args) {
    const id = args.operands[0]!;
    if (!/^\d+$/.test(id)) throw new CliError("Invalid domain id.\n");
    const d = (await list(ctx)).find((x) => x.domid === Number(id));
    if (d === undefined) throw new CliError(`Can't get domain name of domain id '${Number(id)}', maybe this domain does not exist.`);
    out(ctx, `${d.name}\n`);
    return 0;
  },
};

const COMMANDS: readonly Command[] = [
  create,
  listCommand,
  destroy,
  shutdownOrReboot("shutdown"),
  shutdownOrReboot("reboot"),
  simple("pause", "Pause execution of a domain"),
  simple("unpause", "Unpause a paused domain"),
  consoleCommand,
  info,
  dmesg,
  top,
  uptime,
  memCommand("mem-max"),
  memCommand("mem-set"),
  vcpuList,
  schedCredit,
  blockAttach,
  blockDetach,
  deviceList("block-list"),
  networkAttach,
  networkDetach,
  deviceList("network-list"),
  domid,
  domname,
  trace,
];

/** The names of the subcommands this xl has, in `xl help`'s order. */
export const XL_COMMANDS: readonly string[] = COMMANDS.map((c) => c.name);

/** `xl help`: every subcommand, one line each, as xl prints its table. */
export function xlHelp(): string {
  let s = "Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n";
  for (const c of COMMANDS) {
    s += ` ${padTo(c.name, 19)} `;
    if (c.name.length > 19) s += `\n ${padTo("", 19)} `;
    s += `${c.summary}\n`;
  }
  return `${s}\npvkit: the run directory is $PVKIT_RUN_DIR, else ./.pvkit/run (start a host there with \`pvkit up\`).\n`;
}

const padTo = (s: string, n: number) => s.padEnd(n);

/** `xl help <command>` (and `xl <command> -h`), as xl prints it. */
function commandHelp(c: Command): string {
  return `Usage: xl [-v${c.dryRunnable ? "N" : ""}] ${c.name} ${c.usage}\n\n${c.summary}.\n\n${c.optionsHelp === undefined ? "" : `Options:\n\n${c.optionsHelp}\n`}`;
}

/**
 * Runs `xl` with `argv` (the arguments after `xl`). Resolves with the exit
 * status; what went wrong is on `io.stderr`.
 */
export async function xlMain(argv: readonly string[], io: CliIo): Promise<number> {
  let i = 0;
  let dryRun = false;
  for (; i < argv.length && argv[i]!.startsWith("-") && argv[i] !== "-"; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") {
      io.stdout.write(xlHelp());
      return 0;
    }
    for (const letter of a.slice(1)) {
      if (letter === "N") dryRun = true;
      else if (!"vftT".includes(letter)) {
        io.stderr.write(`option \`${letter}' not supported.\n`);
        return 2;
      }
    }
  }
  const name = argv[i];
  if (name === undefined) {
    io.stderr.write(xlHelp());
    return 2;
  }
  if (name === "help") {
    const which = argv[i + 1];
    const c = COMMANDS.find((x) => x.name === which);
    if (which !== undefined && c === undefined) {
      io.stderr.write(`command "${which}" not implemented\n`);
      return 1;
    }
    io.stdout.write(c === undefined ? xlHelp() : commandHelp(c));
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.stderr.write(`command "${name}" not implemented (xl help lists the commands)\n`);
    return 1;
  }
  if (dryRun && !command.dryRunnable) {
    io.stderr.write(`command does not implement -N (dryrun) option\n`);
    return 1;
  }
  const rest = argv.slice(i + 1);
  if (rest.includes("-h") || rest.includes("--help")) {
    io.stdout.write(commandHelp(command));
    return 0;
  }
  const parsed = getopt(rest, command.spec);
  if (E.isLeft(parsed)) {
    io.stderr.write(`${parsed.left}\n`);
    return 2;
  }
  if (parsed.right.operands.length < command.minArgs) {
    io.stderr.write(`'xl ${command.name}' requires at least ${command.minArgs} argument${command.minArgs > 1 ? "s" : ""}.\n\n${commandHelp(command)}`);
    return 2;
  }
  const paths = hostPaths(resolveRunDir(undefined, io.env, io.cwd));
  let client: Promise<ControlClient> | undefined;
  const ctx: XlContext = {
    io,
    paths,
    dryRun,
    client: () => (client ??= ControlClient.connect(paths.controlSocket)),
  };
  try {
    return await command.run(ctx, parsed.right, rest);
  } catch (e) {
    if (e instanceof CliError || e instanceof ControlError) {
      const message = e.message.endsWith("\n") ? e.message : `${e.message}\n`;
      io.stderr.write(message);
      return e instanceof CliError ? e.code : 1;
    }
    io.stderr.write(`xl ${command.name}: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  } finally {
    if (client !== undefined) await client.then((c) => c.close(), () => {});
  }
}
