/**
 * What a parsed xl.cfg means to pvkit: the domain to build, validated with
 * io-ts, and the libxl JSON that `xl create -n` prints for it.
 *
 * pvkit runs PV guests whose kernels are JavaScript modules, so it reads
 * exactly these keys of `xl.cfg(5)`:
 *
 * | key | meaning | default |
 * | --- | --- | --- |
 * | `name` | the domain's name (required) | |
 * | `type` | `"pv"`; `"pvh"` and `"hvm"` are refused | `"pv"`, as xl on x86 |
 * | `kernel` | the kernel module: a `.js`/`.mjs` file, a `file:` URL of one, or a package specifier (`@pvkit/domu/hello`) (required) | |
 * | `cmdline`, `extra` | the kernel command line; `cmdline` wins over `extra`, as in xl | none |
 * | `memory` | initial memory, MiB | `maxmem`, else 32 (libxl's) |
 * | `maxmem` | maximum memory, MiB, at least `memory` | `memory` |
 * | `vcpus` | vCPUs online at boot | `maxvcpus`, else 1 |
 * | `maxvcpus` | vCPUs in all, at least `vcpus`, at most 32 (`XEN_LEGACY_MAX_VCPUS`) | `vcpus` |
 * | `cpu_weight` | credit scheduler weight, 1 to 65535 | 256 |
 * | `cap` | credit scheduler cap, % of one CPU, 0 (none) to 65535 | 0 |
 * | `on_poweroff`, `on_reboot`, `on_crash`, `on_watchdog` | `destroy`, `restart` or `preserve` | `destroy`, `restart`, `destroy`, `destroy` |
 * | `disk` | a list of DISKSPECs, raw images only ({@link parseDiskSpec}) | none |
 * | `vif` | a list of vifspecs ({@link parseVifSpec}) | none |
 *
 * Every other key is an error that names it (`unsupported key(s): builder,
 * vfb`), never silently dropped. Shutdown actions xl knows but pvkit does
 * not implement (`rename-restart`, `coredump-*`, `soft-reset`) are refused
 * by name. Numbers may be written as strings, as xl allows (`memory =
 * "256"`). Every error names the key and where its value was written.
 *
 * `xl create -n` (dry run) must also read Debian's example configs, whose
 * kernel is a Linux image: with `allowForeignKernel` such a kernel is only
 * recorded, with a warning.
 *
 * Where pvkit is stricter than xl, or checks earlier:
 *
 * - `type` must be spelled out; xl compares only as many letters as given,
 *   so for xl `"p"` is pv and `"h"` (or `""`) is hvm.
 * - `root=` is not read, nor `bootloader=` or `firmware=`: a kernel is
 *   required, and the command line is `cmdline` or `extra`.
 * - A name is 1 to 64 letters, digits, `_`, `.` and `-`, as in dom0's boot
 *   manifest.
 * - Checks libxl makes when it creates the domain are made here: `maxmem`
 *   at least `memory`, disk vdevs valid and unique, NIC devids unique, the
 *   command line within `MAX_GUEST_CMDLINE`.
 * - An invalid value in a vifspec is an error (xl prints a message and goes
 *   on); unknown vifspec items stay warnings, as in xl.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { MAX_GUEST, XEN_LEGACY } from "@pvkit/abi";
import { parseDiskSpec, type DiskSpec, type ParsedDiskSpec } from "./diskspec.js";
import { parseVifSpec, type ParsedVifSpec, type VifSpec } from "./vifspec.js";
import { applyOverrides, cfgError, formatLocation, parseCfg, parseCInteger, type CfgError, type CfgLocation, type CfgMap, type CfgValue } from "./xlcfg.js";

/** The xl.cfg keys pvkit reads. */
export const XL_KEYS = [
  "name",
  "type",
  "kernel",
  "cmdline",
  "extra",
  "memory",
  "maxmem",
  "vcpus",
  "maxvcpus",
  "cpu_weight",
  "cap",
  "on_poweroff",
  "on_reboot",
  "on_crash",
  "on_watchdog",
  "disk",
  "vif",
] as const;

/** One of the xl.cfg keys pvkit reads. */
export type XlKey = (typeof XL_KEYS)[number];

/** The shutdown actions xl accepts (`on_poweroff` and the others), in xl's spelling. */
export const XL_SHUTDOWN_ACTIONS = ["destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset"] as const;

/** What pvkit does when a domain shuts down: the actions it implements. */
export type ShutdownAction = "destroy" | "restart" | "preserve";

/** The kernel to boot: a pvkit kernel module, or (dry run only) a path that is not one, kept to be printed. */
export type KernelRef =
  | {
      /** A module pvkit can load. */
      readonly kind: "module";
      /** A `.js`/`.mjs` path, a `file:` URL or a package specifier, as written. */
      readonly specifier: string;
    }
  | {
      /** Not a pvkit kernel (e.g. `/boot/vmlinuz`): accepted by a dry run only. */
      readonly kind: "foreign";
      /** The path as written. */
      readonly path: string;
    };

/** A PV domain as pvkit builds it: every default applied. */
export interface DomainConfig {
  /** The domain's name. */
  readonly name: string;
  /** Always `"pv"`. */
  readonly type: "pv";
  /** The kernel. */
  readonly kernel: KernelRef;
  /** The kernel command line (`cmdline`, else `extra`), if any. */
  readonly cmdline?: string;
  /** Initial memory, MiB. */
  readonly memory: number;
  /** Maximum memory, MiB (≥ memory). */
  readonly maxmem: number;
  /** vCPUs online at boot. */
  readonly vcpus: number;
  /** vCPUs in all (≥ vcpus). */
  readonly maxvcpus: number;
  /** Credit scheduler weight. */
  readonly cpuWeight: number;
  /** Credit scheduler cap, % of one physical CPU; 0 is none. */
  readonly cap: number;
  /** Action when the guest powers off. */
  readonly onPoweroff: ShutdownAction;
  /** Action when the guest reboots. */
  readonly onReboot: ShutdownAction;
  /** Action when the guest crashes. */
  readonly onCrash: ShutdownAction;
  /** Action when the guest's watchdog fires. */
  readonly onWatchdog: ShutdownAction;
  /** Virtual disks, in `disk` order. */
  readonly disks: readonly DiskSpec[];
  /** Virtual NICs, in `vif` order (devid = index unless given). */
  readonly vifs: readonly VifSpec[];
  /** The keys the configuration set; the other fields hold defaults. */
  readonly explicit: readonly XlKey[];
}

/** Options of {@link decodeDomainConfig}. */
export interface DecodeOptions {
  /** Accept a kernel that is not a pvkit module, with a warning (for `xl create -n`). */
  readonly allowForeignKernel?: boolean;
  /** Names the configuration in errors that have no position (a missing key); default `"config"`. */
  readonly source?: string;
}

/** A decoded configuration and the remarks on it that are not errors. */
export interface DecodedDomainConfig {
  /** The domain. */
  readonly config: DomainConfig;
  /** Warnings, each with its place: ignored settings, deprecated syntax, a foreign kernel. */
  readonly warnings: readonly string[];
}

// ---------------------------------------------------------------------------
// io-ts codecs

const intIn = (min: number, max: number) =>
  new t.Type<number, number, unknown>(`Integer(${min}..${max})`, (u): u is number => typeof u === "number" && Number.isInteger(u) && u >= min && u <= max, (u, c) => (typeof u === "number" && Number.isInteger(u) && u >= min && u <= max ? t.success(u) : t.failure(u, c)), t.identity);

const keyOf = <const K extends string>(keys: readonly K[]) => t.keyof(Object.fromEntries(keys.map((k) => [k, null])) as { [P in K]: null });

const DiskSpecCodec: t.Type<DiskSpec, DiskSpec, unknown> = t.intersection([
  t.type({
    format: keyOf(["raw", "qcow", "qcow2", "vhd", "qed", "empty"]),
    vdev: t.string,
    access: keyOf(["rw", "ro"]),
    devtype: keyOf(["disk", "cdrom"]),
    directIoSafe: t.boolean,
  }),
  t.partial({
    target: t.string,
    backend: t.string,
    backendtype: keyOf(["phy", "tap", "qdisk", "standalone"]),
    script: t.string,
    specification: keyOf(["xen", "virtio"]),
    discard: t.boolean,
    trusted: t.boolean,
    colo: t.partial({ enable: t.boolean, host: t.string, port: t.number, export: t.string, activeDisk: t.string, hiddenDisk: t.string }),
  }),
]);

const VifSpecCodec: t.Type<VifSpec, VifSpec, unknown> = t.intersection([
  t.type({ unknown: t.readonlyArray(t.string) }),
  t.partial({
    mac: t.string,
    bridge: t.string,
    gatewaydev: t.string,
    type: keyOf(["vif", "ioemu"]),
    model: t.string,
    vifname: t.string,
    script: t.string,
    ip: t.string,
    backend: t.string,
    rate: t.type({ text: t.string, bytesPerInterval: t.number, intervalUsecs: t.number }),
    devid: t.number,
    mtu: t.number,
    trusted: t.boolean,
    colo: t.record(t.string, t.string),
  }),
]);

const Action = keyOf<ShutdownAction>(["destroy", "restart", "preserve"]);

/**
 * The io-ts codec of a {@link DomainConfig}, for boundaries that carry one
 * already decoded (a control-socket message): shapes, enumerations and
 * integer ranges.
 */
export const DomainConfigCodec: t.Type<DomainConfig, DomainConfig, unknown> = t.intersection([
  t.type({
    name: t.string,
    type: t.literal("pv"),
    kernel: t.union([t.type({ kind: t.literal("module"), specifier: t.string }), t.type({ kind: t.literal("foreign"), path: t.string })]),
    memory: intIn(1, Number.MAX_SAFE_INTEGER),
    maxmem: intIn(1, Number.MAX_SAFE_INTEGER),
    vcpus: intIn(1, XEN_LEGACY.MAX_VCPUS),
    maxvcpus: intIn(1, XEN_LEGACY.MAX_VCPUS),
    cpuWeight: intIn(1, 65535),
    cap: intIn(0, 65535),
    onPoweroff: Action,
    onReboot: Action,
    onCrash: Action,
    onWatchdog: Action,
    disks: t.readonlyArray(DiskSpecCodec),
    vifs: t.readonlyArray(VifSpecCodec),
    explicit: t.readonlyArray(keyOf(XL_KEYS)),
  }),
  t.partial({ cmdline: t.string }),
]);

// Codecs over the parsed configuration: their input is a CfgValue, whose
// location the error reporter reads back from the failing value.

const isCfgValue = (u: unknown): u is CfgValue => typeof u === "object" && u !== null && "kind" in u && "loc" in u;
const kindOf = (v: CfgValue): string => (v.kind === "list" ? "a list" : v.kind === "number" ? `the number ${v.text}` : `the string ${JSON.stringify(v.value)}`);

/** A cfg value read as text: a string, or a number's digits (xl reads both as strings). */
function cfgText(what: string) {
  return new t.Type<string, string, unknown>(
    "CfgText",
    (u): u is string => typeof u === "string",
    (u, c) => {
      if (!isCfgValue(u)) return t.failure(u, c, "not a configuration value");
      if (u.kind === "string") return t.success(u.value);
      if (u.kind === "number") return t.success(u.text);
      return t.failure(u, c, `expected ${what}, found a list (the key takes a single value)`);
    },
    t.identity,
  );
}

/** A cfg value read as an integer in `[min, max]`, from a number or a string, as `xlu_cfg_get_long` reads it. */
function cfgInt(min: number, max: number, range: string) {
  return new t.Type<number, number, unknown>(
    "CfgInteger",
    (u): u is number => typeof u === "number",
    (u, c) => {
      if (!isCfgValue(u)) return t.failure(u, c, "not a configuration value");
      if (u.kind === "list") return t.failure(u, c, "expected a number, found a list");
      const n = u.kind === "number" ? u.value : parseCInteger(u.value);
      if (n === undefined) return t.failure(u, c, `expected a number, found ${kindOf(u)}`);
      if (n < min || n > max) return t.failure(u, c, `${n} is out of range (${range})`);
      return t.success(n);
    },
    t.identity,
  );
}

/** A cfg list whose items each decode with `item`. */
function cfgList<A>(item: t.Type<A, A, unknown>, what: string) {
  return new t.Type<A[], A[], unknown>(
    "CfgList",
    (u): u is A[] => Array.isArray(u),
    (u, c) => {
      if (!isCfgValue(u)) return t.failure(u, c, "not a configuration value");
      if (u.kind !== "list") return t.failure(u, c, `expected a list [ ${what}, ... ], found ${kindOf(u)}`);
      const errors: t.ValidationError[] = [];
      const out: A[] = [];
      u.items.forEach((v, i) => {
        const r = item.validate(v, t.appendContext(c, String(i), item, v));
        if (E.isLeft(r)) errors.push(...r.left);
        else out.push(r.right);
      });
      return errors.length > 0 ? t.failures(errors) : t.success(out);
    },
    t.identity,
  );
}

/** A list item that is a spec string, parsed by `parse`; each of the spec's errors becomes a failure naming the spec. */
function cfgSpec<A>(what: string, parse: (s: string) => E.Either<string[], A>) {
  return new t.Type<A, A, unknown>(
    what,
    (u): u is A => typeof u === "object" && u !== null,
    (u, c) => {
      if (!isCfgValue(u)) return t.failure(u, c, "not a configuration value");
      if (u.kind === "list") return t.failure(u, c, `expected a ${what} string, found a list`);
      const text = u.kind === "string" ? u.value : u.text;
      const r = parse(text);
      return E.isLeft(r) ? t.failures(r.left.map((m) => ({ value: u, context: c, message: `${JSON.stringify(text)}: ${m}` }))) : t.success(r.right);
    },
    t.identity,
  );
}

const REFUSED_TYPES: Readonly<Record<string, string>> = { hvm: "HVM", pvh: "PVH" };

const DomainType = new t.Type<"pv", "pv", unknown>(
  "DomainType",
  (u): u is "pv" => u === "pv",
  (u, c) => {
    if (!isCfgValue(u) || u.kind === "list") return t.failure(u, c, 'expected "pv"');
    const v = u.kind === "string" ? u.value : u.text;
    if (v === "pv") return t.success("pv");
    if (REFUSED_TYPES[v] !== undefined) return t.failure(u, c, `${JSON.stringify(v)} is refused: pvkit runs PV guests only, not ${REFUSED_TYPES[v]} (write type = "pv" or leave type out)`);
    return t.failure(u, c, `invalid domain type ${JSON.stringify(v)} (xl knows "pv", "pvh" and "hvm"; pvkit runs "pv")`);
  },
  t.identity,
);

const ShutdownActionCfg = new t.Type<ShutdownAction, ShutdownAction, unknown>(
  "ShutdownAction",
  (u): u is ShutdownAction => Action.is(u),
  (u, c) => {
    if (!isCfgValue(u) || u.kind === "list") return t.failure(u, c, "expected an action string");
    const v = u.kind === "string" ? u.value : u.text;
    if (Action.is(v)) return t.success(v);
    if ((XL_SHUTDOWN_ACTIONS as readonly string[]).includes(v)) return t.failure(u, c, `${JSON.stringify(v)} is an xl action pvkit does not support (pvkit supports destroy, restart and preserve)`);
    return t.failure(u, c, `unknown action ${JSON.stringify(v)} (xl knows ${XL_SHUTDOWN_ACTIONS.join(", ")})`);
  },
  t.identity,
);

const MAX_MIB = Math.floor(Number.MAX_SAFE_INTEGER / (1024 * 1024));
const VCPU_RANGE = `1 to ${XEN_LEGACY.MAX_VCPUS}: a pvkit guest's vcpu_info lives in shared_info, XEN_LEGACY_MAX_VCPUS`;

/** The codec of the keys pvkit reads, over a parsed configuration. */
const XlKeysCodec = t.partial({
  name: cfgText("a name"),
  type: DomainType,
  kernel: cfgText("a kernel"),
  cmdline: cfgText("a command line"),
  extra: cfgText("a command line"),
  memory: cfgInt(1, MAX_MIB, "MiB, at least 1"),
  maxmem: cfgInt(1, MAX_MIB, "MiB, at least 1"),
  vcpus: cfgInt(1, XEN_LEGACY.MAX_VCPUS, VCPU_RANGE),
  maxvcpus: cfgInt(1, XEN_LEGACY.MAX_VCPUS, VCPU_RANGE),
  cpu_weight: cfgInt(1, 65535, "1 to 65535"),
  cap: cfgInt(0, 65535, "0 to 65535 % of one CPU; 0 is no cap"),
  on_poweroff: ShutdownActionCfg,
  on_reboot: ShutdownActionCfg,
  on_crash: ShutdownActionCfg,
  on_watchdog: ShutdownActionCfg,
  disk: cfgList(cfgSpec<ParsedDiskSpec>("diskspec", parseDiskSpec), "'DISKSPEC'"),
  vif: cfgList(cfgSpec<ParsedVifSpec>("vifspec", parseVifSpec), "'VIFSPEC'"),
});

/** The errors of a failed decode, each with the key path (`disk[1]`) and the place of the failing value. */
function reportErrors(errors: t.Errors, source: string): CfgError[] {
  return errors.map((e) => {
    const path = e.context.slice(1).map((c) => c.key);
    const key = path[0] ?? "";
    const label = path.map((p, i) => (i === 0 ? p : `[${p}]`)).join("");
    const message = `${label}: ${e.message ?? "invalid value"}`;
    return isCfgValue(e.value) ? cfgError(e.value.loc, message, key) : { message: `${source}: ${message}`, source, key };
  });
}

// ---------------------------------------------------------------------------
// Kernels

const FILE_MODULE = /\.(m?js)$/;
/** An npm package name (scoped or not), then an optional subpath. */
const PACKAGE_SPECIFIER = /^(@[a-z0-9~-][a-z0-9._~-]*\/)?[a-z0-9~-][a-z0-9._~-]*(\/[^\s\\/]+)*$/;

/**
 * Whether `kernel` names a pvkit kernel module: a `.js`/`.mjs` file (a path,
 * or a `file:` URL of one) or a package specifier such as
 * `@pvkit/domu/hello`. `/boot/vmlinuz` is not one.
 */
export function isKernelModule(kernel: string): boolean {
  if (/^file:/i.test(kernel)) {
    try {
      return FILE_MODULE.test(new URL(kernel).pathname);
    } catch {
      return false;
    }
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(kernel) || kernel.includes("\\")) return false;
  if (FILE_MODULE.test(kernel)) return true;
  if (/^(\.{1,2}\/|\/|~)/.test(kernel)) return false;
  return PACKAGE_SPECIFIER.test(kernel);
}

const notAModule = (kernel: string) => `kernel: ${kernel === "" ? '""' : kernel} is not a pvkit kernel module (a .js/.mjs file or package specifier)`;

// ---------------------------------------------------------------------------
// Decoding

const DOMAIN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const VDEV = /^((xvd|hd|sd)[a-z]{1,3}[0-9]*|d[0-9]+(p[0-9]+)?)$/;
const utf8Length = (s: string) => new TextEncoder().encode(s).length;

/**
 * Decodes a parsed configuration into the domain pvkit builds. Left: every
 * error at once, each naming its key and, when it has one, the place of its
 * value: `example.cfg:9:8: type: "hvm" is refused: pvkit runs PV guests
 * only...`, `example.cfg: unsupported key(s): builder, vfb ...`,
 * `example.cfg:4:10: maxmem: 64 MiB is less than memory (128 MiB)`.
 */
export function decodeDomainConfig(cfg: CfgMap, options: DecodeOptions = {}): E.Either<CfgError[], DecodedDomainConfig> {
  const source = options.source ?? "config";
  const errors: CfgError[] = [];
  const warnings: string[] = [];
  const at = (loc: CfgLocation, message: string) => `${formatLocation(loc)}: ${message}`;
  const supported = new Set<string>(XL_KEYS);

  const unsupported = [...cfg.keys()].filter((k) => !supported.has(k));
  if (unsupported.length > 0) {
    const places = unsupported.map((k) => formatLocation(cfg.get(k)!.loc)).join(", ");
    errors.push({
      message: `${source}: unsupported key(s): ${unsupported.join(", ")} (at ${places}); pvkit reads only ${XL_KEYS.join(", ")}`,
      source,
      key: unsupported[0]!,
    });
  }

  // Decode every key; if some fail, decode the others again without them,
  // so that one bad value does not hide the problems of the rest.
  let decoded = XlKeysCodec.decode(Object.fromEntries(cfg));
  if (E.isLeft(decoded)) {
    errors.push(...reportErrors(decoded.left, source));
    const failed = new Set(decoded.left.map((e) => e.context[1]?.key));
    decoded = XlKeysCodec.decode(Object.fromEntries([...cfg].filter(([k]) => !failed.has(k))));
    if (E.isLeft(decoded)) return E.left([...errors, ...reportErrors(decoded.left, source)]);
  }
  const v = decoded.right;
  const locOf = (k: XlKey) => cfg.get(k)!.loc;

  if (v.name === undefined) {
    if (!cfg.has("name")) errors.push({ message: `${source}: name: missing: every domain needs a name (name = "...")`, source, key: "name" });
  } else if (!DOMAIN_NAME.test(v.name)) errors.push(cfgError(locOf("name"), `name: ${JSON.stringify(v.name)} is not a pvkit domain name (1 to 64 letters, digits, '_', '.', '-')`, "name"));

  let kernel: KernelRef | undefined;
  if (v.kernel === undefined) {
    if (!cfg.has("kernel")) errors.push({ message: `${source}: kernel: missing: pvkit boots a kernel module (kernel = "@pvkit/domu/hello")`, source, key: "kernel" });
  } else if (isKernelModule(v.kernel)) {
    kernel = { kind: "module", specifier: v.kernel };
  } else if (options.allowForeignKernel === true) {
    kernel = { kind: "foreign", path: v.kernel };
    warnings.push(at(locOf("kernel"), `${notAModule(v.kernel)}; recorded for the dry run only`));
  } else {
    errors.push(cfgError(locOf("kernel"), notAModule(v.kernel), "kernel"));
  }

  if (v.cmdline !== undefined && v.extra !== undefined) warnings.push(at(locOf("cmdline"), "extra= ignored in favour of cmdline="));
  const cmdline = v.cmdline ?? v.extra;
  if (cmdline !== undefined && utf8Length(cmdline) >= MAX_GUEST.CMDLINE) {
    const key = v.cmdline !== undefined ? "cmdline" : "extra";
    errors.push(cfgError(locOf(key), `${key}: ${utf8Length(cmdline)} bytes do not fit start_info's cmd_line (MAX_GUEST_CMDLINE is ${MAX_GUEST.CMDLINE} bytes with its NUL)`, key));
  }

  const memory = v.memory ?? v.maxmem ?? 32;
  const maxmem = v.maxmem ?? memory;
  if (maxmem < memory) errors.push(cfgError(locOf("maxmem"), `maxmem: ${maxmem} MiB is less than memory (${memory} MiB); maxmem must be at least memory`, "maxmem"));
  const vcpus = v.vcpus ?? v.maxvcpus ?? 1;
  const maxvcpus = v.maxvcpus ?? vcpus;
  if (maxvcpus < vcpus) errors.push(cfgError(locOf("maxvcpus"), `maxvcpus: ${maxvcpus} is less than vcpus (${vcpus}); maxvcpus must be at least vcpus`, "maxvcpus"));

  const disks: DiskSpec[] = [];
  const vdevs = new Map<string, number>();
  (v.disk ?? []).forEach(({ spec, warnings: w }, i) => {
    const loc = (cfg.get("disk") as Extract<CfgValue, { kind: "list" }>).items[i]!.loc;
    const label = `disk[${i}]`;
    const fail = (m: string) => errors.push(cfgError(loc, `${label}: ${m}`, "disk"));
    for (const m of w) warnings.push(at(loc, `${label}: ${m}`));
    if (spec.devtype === "disk" && spec.target === "") fail("the target is empty: a disk needs an image file");
    if (spec.format === "empty") fail("an empty cdrom drive is not supported by pvkit (give it an image)");
    else if (spec.format !== "raw") fail(`format ${spec.format} is not supported by pvkit (raw images only)`);
    if (spec.specification === "virtio") fail("specification=virtio is not supported by pvkit (its disks are Xen blkif devices)");
    if (spec.colo !== undefined) fail("COLO settings are not supported by pvkit");
    if (!VDEV.test(spec.vdev)) fail(`vdev ${JSON.stringify(spec.vdev)} is not a Xen virtual disk name (xvdX, hdX, sdX or dN; see xen-vbd-interface(7))`);
    const first = vdevs.get(spec.vdev);
    if (first !== undefined) fail(`vdev ${spec.vdev} is already used by disk[${first}]`);
    else vdevs.set(spec.vdev, i);
    if (spec.backendtype !== undefined) warnings.push(at(loc, `${label}: backendtype=${spec.backendtype} ignored: pvkit's dom0 serves disks with its own blkback`));
    if (spec.script !== undefined) warnings.push(at(loc, `${label}: script=${spec.script} not run: pvkit has no hotplug scripts`));
    disks.push(spec);
  });

  const vifs: VifSpec[] = [];
  const devids = new Map<number, number>();
  (v.vif ?? []).forEach(({ spec, warnings: w }, i) => {
    const loc = (cfg.get("vif") as Extract<CfgValue, { kind: "list" }>).items[i]!.loc;
    const label = `vif[${i}]`;
    for (const m of w) warnings.push(at(loc, `${label}: ${m}`));
    if (spec.colo !== undefined) errors.push(cfgError(loc, `${label}: COLO settings (${Object.keys(spec.colo).join(", ")}) are not supported by pvkit`, "vif"));
    if (spec.type !== undefined || spec.model !== undefined) warnings.push(at(loc, `${label}: type= and model= apply to HVM guests only; ignored`));
    if (spec.script !== undefined) warnings.push(at(loc, `${label}: script=${spec.script} not run: pvkit has no hotplug scripts`));
    const devid = spec.devid ?? i;
    const first = devids.get(devid);
    if (first !== undefined) errors.push(cfgError(loc, `${label}: devid ${devid} is already used by vif[${first}]`, "vif"));
    else devids.set(devid, i);
    vifs.push(spec);
  });

  if (errors.length > 0 || kernel === undefined || v.name === undefined) return E.left(errors);
  const config: DomainConfig = {
    name: v.name,
    type: "pv",
    kernel,
    ...(cmdline === undefined ? {} : { cmdline }),
    memory,
    maxmem,
    vcpus,
    maxvcpus,
    cpuWeight: v.cpu_weight ?? 256,
    cap: v.cap ?? 0,
    onPoweroff: v.on_poweroff ?? "destroy",
    onReboot: v.on_reboot ?? "restart",
    onCrash: v.on_crash ?? "destroy",
    onWatchdog: v.on_watchdog ?? "destroy",
    disks,
    vifs,
    explicit: XL_KEYS.filter((k) => cfg.has(k)),
  };
  return E.right({ config, warnings });
}

/** Options of {@link parseDomainConfig}. */
export interface ParseDomainConfigOptions extends DecodeOptions {
  /** `xl create`'s `KEY=VALUE` arguments, applied after the file. */
  readonly overrides?: readonly string[];
}

/**
 * The whole of reading a domain's configuration, as `xl create` does:
 * parse the file, apply the command-line overrides, decode. `source` names
 * the file in messages.
 */
export function parseDomainConfig(text: string, source: string, options: ParseDomainConfigOptions = {}): E.Either<CfgError[], DecodedDomainConfig> {
  return E.chain((base: CfgMap) =>
    E.chain((cfg: CfgMap) => decodeDomainConfig(cfg, { ...options, source }))(applyOverrides(base, options.overrides ?? [])),
  )(parseCfg(text, source));
}

// ---------------------------------------------------------------------------
// libxl JSON

/** A JSON value as libxl writes it (objects keep their key order). */
export type LibxlJson = null | boolean | number | string | readonly LibxlJson[] | { readonly [key: string]: LibxlJson };

/** Options of {@link libxlDomainConfigJson}. */
export interface LibxlJsonOptions {
  /**
   * `"create"` (default): what `xl create -n` prints, libxl's
   * `libxl_domain_config` as xl's parser fills it, so values the
   * configuration left to libxl's defaults are absent. `"list"`: every
   * value as pvkit resolved it, as `xl list -l` shows a domain's.
   */
  readonly mode?: "create" | "list";
  /** The domain's UUID, printed in `c_info` when given (xl generates one). */
  readonly uuid?: string;
}

const DEFBOOL = (b: boolean) => (b ? "True" : "False");
/** libxl's enum spelling of a shutdown action (`libxl_action_on_shutdown_to_string`). */
const ACTION_JSON: Readonly<Record<ShutdownAction, string>> = { destroy: "destroy", restart: "restart", preserve: "preserve" };

/**
 * A disk as libxl's JSON writes a `libxl_device_disk` (the form `xl -N
 * block-attach` prints, and each item of `disks`).
 */
export function libxlDeviceDiskJson(d: DiskSpec): { [key: string]: LibxlJson } {
  const cdrom = d.devtype === "cdrom";
  return {
    ...(d.backend === undefined ? {} : { backend_domname: d.backend }),
    ...(d.target === undefined ? {} : { pdev_path: d.target }),
    vdev: d.vdev,
    ...(d.backendtype === undefined ? {} : { backend: d.backendtype }),
    format: d.format,
    ...(d.script === undefined ? {} : { script: d.script }),
    ...(cdrom ? { removable: 1 } : {}),
    ...(d.access === "rw" ? { readwrite: 1 } : {}),
    ...(cdrom ? { is_cdrom: 1 } : {}),
    ...(d.directIoSafe ? { direct_io_safe: true } : {}),
    ...(d.discard === undefined ? {} : { discard_enable: DEFBOOL(d.discard) }),
    ...(d.specification === undefined ? {} : { specification: d.specification }),
    ...(d.colo?.enable === undefined ? {} : { colo_enable: DEFBOOL(d.colo.enable) }),
    ...(d.colo?.host === undefined ? {} : { colo_host: d.colo.host }),
    ...(d.colo?.port === undefined ? {} : { colo_port: d.colo.port }),
    ...(d.colo?.export === undefined ? {} : { colo_export: d.colo.export }),
    ...(d.colo?.activeDisk === undefined ? {} : { active_disk: d.colo.activeDisk }),
    ...(d.colo?.hiddenDisk === undefined ? {} : { hidden_disk: d.colo.hiddenDisk }),
    ...(d.trusted === undefined ? {} : { trusted: DEFBOOL(d.trusted) }),
  };
}

/**
 * A NIC as libxl's JSON writes a `libxl_device_nic` (the form `xl -N
 * network-attach` prints, and each item of `nics`). `devid` is the NIC's
 * number when the spec gives none (its index in `vif`); without either it is
 * left out, as for `network-attach`.
 */
export function libxlDeviceNicJson(n: VifSpec, devid?: number): { [key: string]: LibxlJson } {
  const id = n.devid ?? devid;
  const colo: { [key: string]: LibxlJson } = {};
  for (const [k, val] of Object.entries(n.colo ?? {})) colo[k === "forwarddev" ? "coloft_forwarddev" : k] = val;
  return {
    ...(n.backend === undefined ? {} : { backend_domname: n.backend }),
    ...(id === undefined ? {} : { devid: id }),
    ...(n.mtu === undefined ? {} : { mtu: n.mtu }),
    ...(n.model === undefined ? {} : { model: n.model }),
    ...(n.mac === undefined ? {} : { mac: n.mac }),
    ...(n.ip === undefined ? {} : { ip: n.ip }),
    ...(n.bridge === undefined ? {} : { bridge: n.bridge }),
    ...(n.vifname === undefined ? {} : { ifname: n.vifname }),
    ...(n.script === undefined ? {} : { script: n.script }),
    ...(n.type === undefined ? {} : { nictype: n.type === "ioemu" ? "vif_ioemu" : "vif" }),
    ...(n.rate === undefined ? {} : { rate_bytes_per_interval: n.rate.bytesPerInterval, rate_interval_usecs: n.rate.intervalUsecs }),
    ...(n.gatewaydev === undefined ? {} : { gatewaydev: n.gatewaydev }),
    ...colo,
    ...(n.trusted === undefined ? {} : { trusted: DEFBOOL(n.trusted) }),
  };
}

/**
 * libxl's domain configuration (`libxl_domain_config`) for a domain, as
 * libxl's generated JSON writer lays it out: fields in `libxl_types.idl`
 * order, a field left at its default omitted, an aggregate always written,
 * enumerations in libxl's spelling (`"restart"`, `"soft_reset"`),
 * booleans of libxl's `defbool` as `"True"`/`"False"`. `c_info`, `b_info`,
 * `disks`, `nics` and the `on_*` actions are those `xl create -n` prints;
 * the kernel and command line sit in `b_info` as in libxl since 4.9, with
 * an empty `"type.pv"`.
 *
 * Not printed, where xl prints them: `c_info.uuid` unless given (xl makes a
 * fresh one per run), and the host policies xl takes from `xl.conf`
 * (`c_info.run_hotplug_scripts`, `b_info.claim_mode`), which pvkit does not
 * have. `on_soft_reset` is always xl's default, `"soft_reset"` (pvkit reads
 * no `on_soft_reset` key).
 */
export function libxlDomainConfigJson(config: DomainConfig, options: LibxlJsonOptions = {}): { [key: string]: LibxlJson } {
  const all = options.mode === "list";
  const given = new Set<XlKey>(config.explicit);
  const has = (...keys: XlKey[]) => all || keys.some((k) => given.has(k));
  const kernel = config.kernel.kind === "module" ? config.kernel.specifier : config.kernel.path;
  const sched: { [key: string]: LibxlJson } = {
    ...(has("cpu_weight") ? { weight: config.cpuWeight } : {}),
    ...(has("cap") ? { cap: config.cap } : {}),
  };
  const action = (a: ShutdownAction) => (a === "destroy" ? undefined : ACTION_JSON[a]);
  const actions: { [key: string]: LibxlJson } = {};
  for (const [key, a] of [
    ["on_poweroff", config.onPoweroff],
    ["on_reboot", config.onReboot],
    ["on_watchdog", config.onWatchdog],
    ["on_crash", config.onCrash],
  ] as const) {
    const s = action(a);
    if (s !== undefined) actions[key] = s;
  }
  return {
    c_info: { type: "pv", name: config.name, ...(options.uuid === undefined ? {} : { uuid: options.uuid }) },
    b_info: {
      ...(has("vcpus", "maxvcpus") ? { max_vcpus: config.maxvcpus } : {}),
      ...(has("vcpus") ? { avail_vcpus: Array.from({ length: config.vcpus }, (_, i) => i) } : {}),
      ...(has("memory", "maxmem") ? { max_memkb: config.maxmem * 1024 } : {}),
      ...(has("memory") ? { target_memkb: config.memory * 1024 } : {}),
      sched_params: sched,
      kernel,
      ...(config.cmdline === undefined ? {} : { cmdline: config.cmdline }),
      "type.pv": {},
      arch_arm: {},
      arch_x86: {},
    },
    ...(config.disks.length > 0 ? { disks: config.disks.map((d) => libxlDeviceDiskJson(d)) } : {}),
    ...(config.vifs.length > 0 ? { nics: config.vifs.map((n, i) => libxlDeviceNicJson(n, i)) } : {}),
    ...actions,
    on_soft_reset: "soft_reset",
  };
}

function yajlString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.charCodeAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (code < 0x20) out += `\\u00${code.toString(16).toUpperCase().padStart(2, "0")}`;
    else out += ch;
  }
  return out + '"';
}

function yajl(v: LibxlJson, depth: number): string {
  const indent = (d: number) => "    ".repeat(d);
  if (v === null) return "null";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string") return yajlString(v);
  const isArray = Array.isArray(v);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  const items = isArray
    ? (v as readonly LibxlJson[]).map((x) => indent(depth + 1) + yajl(x, depth + 1))
    : Object.entries(v as { readonly [key: string]: LibxlJson }).map(([k, x]) => `${indent(depth + 1)}${yajlString(k)}: ${yajl(x, depth + 1)}`);
  return `${open}\n${items.join(",\n")}\n${indent(depth)}${close}`;
}

/**
 * Writes JSON as libxl does (yajl's beautifier): four-space indents, `": "`
 * after keys, an empty object or array as an opening line, a blank line and
 * the closing line, and a final newline. This is the text `xl create -n`
 * and `xl list -l` print.
 */
export function stringifyLibxlJson(value: LibxlJson): string {
  return `${yajl(value, 0)}\n`;
}
