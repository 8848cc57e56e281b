/**
 * The domain manager, in libxl's role: the live domains dom0 has built, with
 * the configuration each was created from, and everything `xl` asks of them.
 * The boot manifest and the control socket both create domains through it.
 *
 * ## Creating a domain
 *
 * {@link Libxl.create} does what `libxl_domain_create_new` does for a PV
 * guest, one named step after another:
 *
 * 1. `XEN_DOMCTL_createdomain` and `max_mem` (the builder's
 *    {@link createDomain}), then the credit scheduler's weight and cap;
 * 2. the domain builder ({@link buildDomain}): RAM, the bootstrap region,
 *    the console and XenStore pages and channels, vCPU 0's context;
 * 3. the console daemon connects to its console;
 * 4. its XenStore home ({@link publishDomain}; `memory/static-max` is the
 *    config's maximum) and `XS_INTRODUCE`;
 * 5. its devices: disks as `vbd`s served by dom0, vifs as `vif`s served by
 *    dom0 or the driver domain the config names ({@link addDevice}); the
 *    xenbus drivers take it from there;
 * 6. unpause, unless asked to leave it paused.
 *
 * A step that fails destroys whatever was built and the error names it
 * (`creating web: building: XENMEM_populate_physmap: ENOMEM`). Names are
 * unique among live domains. {@link Libxl.createGroup} creates several at
 * once, giving each its domid before any is built, so the boot manifest can
 * connect them with event channels and name each other in command lines.
 *
 * ## When a domain shuts down
 *
 * dom0 calls {@link Libxl.reap} on every `VIRQ_DOM_EXC`. A domain that has
 * shut down gets the action its config names for the reason (xl.cfg's
 * `on_poweroff`, `on_reboot`, `on_crash`, `on_watchdog`): `destroy`;
 * `restart` (destroy, then create again from the same config, under the same
 * name, with a new domid); or `preserve` (leave it shut down, as `xl list`
 * then shows it, until someone destroys it). Suspend and soft reset, which
 * pvkit does not implement, preserve.
 *
 * ## What pvkit does differently
 *
 * - `mem-set` and `mem-max` set `max_mem` to exactly the memory asked;
 *   libxl adds `LIBXL_MAXMEM_CONSTANT` (1 MiB) of slack, which pvkit's
 *   builder never needs. `mem-max` also writes `memory/static-max` (libxl
 *   since 4.13 leaves it), so a later `mem-set` may go up to it.
 * - A domain starts with `max_mem` equal to its `memory`, as libxl sets it;
 *   its balloon driver may grow it up to `maxmem` once `mem-set` allows.
 * - `shutdown` of Domain-0 is refused (use `host-shutdown`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { hostname, machine, release, version as osVersion } from "node:os";
import { isAbsolute } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PAGE_SIZE, SHUTDOWN, XEN_DOMINF, XEN_SCHEDULER, XEN_SYSCTL_PHYSCAP, XenbusState, keyOf } from "@pvkit/abi";
import type { Kernel, XsClient } from "@pvkit/kernel";
import { buildDomain, createDomain } from "./builder.js";
import type { ConsoleDaemon } from "./console/index.js";
import type {
  Action,
  AttachResult,
  BlockDeviceSummary,
  ConsoleResult,
  CreateRequest,
  CreateResult,
  DiskRequest,
  DmesgResult,
  DomainAck,
  DomainRef,
  DomainSummary,
  HostInfo,
  MemoryResult,
  NetworkDeviceSummary,
  SchedCreditEntry,
  ShutdownReasonName,
  ShutdownResult,
  TopEntry,
  UptimeEntry,
  VbdCounters,
  VcpuSummary,
  VifCounters,
  VifRequest,
} from "./control-protocol.js";
import { vdevToDevid } from "./manifest.js";
import { Toolstack, type DomainInfo } from "./toolstack.js";
import { addDevice, devicePaths, forgetDevice, publishDomain, releaseDomain, removeDevice, type DeviceSpec } from "./xs-domain.js";

/** KiB in a page. */
const PAGE_KIB = PAGE_SIZE / 1024;
/** Pages in a MiB. */
const MIB_PAGES = (1024 * 1024) / PAGE_SIZE;

/**
 * How long libxl waits for a back end: `block-detach` and `network-detach`
 * for it to close before removing the device anyway (libxl's
 * `LIBXL_DESTROY_TIMEOUT`, 10 s), and adding a vif for its hotplug status.
 */
export const DEVICE_REMOVE_TIMEOUT_NS = 10_000_000_000;

/** A domain's name: what the boot manifest allows, and not all digits (xl would read that as a domid). */
const NAME = /^(?!\d+$)[A-Za-z0-9_.-]{1,64}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** `xl info`'s `virt_caps` words for the `XEN_SYSCTL_PHYSCAP_*` bits, in xl's order. */
const VIRT_CAPS: readonly (readonly [number, string])[] = [
  [XEN_SYSCTL_PHYSCAP.pv, "pv"],
  [XEN_SYSCTL_PHYSCAP.hvm, "hvm"],
  [XEN_SYSCTL_PHYSCAP.hap, "hap"],
  [XEN_SYSCTL_PHYSCAP.shadow, "shadow"],
  [XEN_SYSCTL_PHYSCAP.iommu_hap_pt_share, "iommu_hap_pt_share"],
  [XEN_SYSCTL_PHYSCAP.vmtrace, "vmtrace"],
  [XEN_SYSCTL_PHYSCAP.vpmu, "vpmu"],
  [XEN_SYSCTL_PHYSCAP.gnttab_v1, "gnttab-v1"],
  [XEN_SYSCTL_PHYSCAP.gnttab_v2, "gnttab-v2"],
];

/** xl's letters for a shutdown reason in `xl list`'s fifth state column (`SHUTDOWN_*` order). */
const SHUTDOWN_LETTERS = "-rscwS";

/** Where {@link Libxl} finds the back ends' counters for `top` (dom0's blkback and netback; a driver domain's are not visible). */
export interface DeviceCounterSource {
  /** The counters of vbd `devid` of `frontendDomid`, if dom0 serves it. */
  vbd(frontendDomid: number, devid: number): VbdCounters | undefined;
  /** The counters of vif `devid` of `frontendDomid`, if dom0 serves it. */
  vif(frontendDomid: number, devid: number): VifCounters | undefined;
}

/** What {@link Libxl} works with besides the kernel. */
export interface LibxlOptions {
  /** dom0's XenStore client. */
  readonly xs: XsClient;
  /** The console daemon, which serves each domain's console. */
  readonly consoles: ConsoleDaemon;
  /** Where it reports what it did ("started web as domain 3"); awaited, so lines keep their order. */
  readonly log?: (line: string) => void | Promise<void>;
  /** The back ends' counters, for `top`. */
  readonly counters?: DeviceCounterSource;
  /** How long device addition and removal wait for the back end (default {@link DEVICE_REMOVE_TIMEOUT_NS}). */
  readonly deviceTimeoutNs?: number;
  /** Asks dom0 to stop the host (the guests asked to power off, those left destroyed, then dom0 powers off); resolves once the domains are gone. Without it, `hostShutdown` is refused. */
  readonly powerOff?: () => Promise<void>;
}

/** How to create. */
export interface CreateOptions {
  /** Leave the domain paused (`xl create -p`). */
  readonly paused?: boolean;
}

/** How to create a group of domains. */
export interface GroupOptions extends CreateOptions {
  /**
   * Called once every domain of the group has its domid and before any is
   * built: set up what connects them (say, event channels) and return each
   * one's command line. A Left fails the creation with that message.
   */
  readonly connect?: (domids: ReadonlyMap<string, number>) => E.Either<string, (config: CreateRequest) => string>;
}

/** An operation's outcome: a value, or a message for a person. */
export type LibxlResult<A> = Promise<E.Either<string, A>>;

/** A device's two directories as XenStore has them. */
interface DeviceKeys {
  readonly devid: number;
  /** The frontend's keys. */
  readonly fe: Record<string, string>;
  /** The backend's keys. */
  readonly be: Record<string, string>;
  readonly backendPath: string;
  readonly backendDomid: number;
}

/** A domain Libxl created and has not yet seen destroyed. */
interface LiveDomain {
  readonly domid: number;
  readonly name: string;
  /** The config it was created from, with its final command line; hotplug keeps its devices current. */
  config: CreateRequest;
  /** The devices Libxl added, for teardown and `top`. */
  readonly devices: DeviceSpec[];
  /** System time it was built, ns. */
  readonly startedNs: number;
  /** Still being created: not yet unpaused. */
  building: boolean;
  /** Running (or paused); shut down and preserved; or being destroyed. */
  state: "running" | "shutdown" | "dying";
  /** `shutdown -w` callers, told when it goes. */
  readonly waiters: ((r: ShutdownResult) => void)[];
}

/** xl's six-letter state (`rbpscd`) from `getdomaininfo`'s flags, as `xl list` prints it. */
export function domainStateString(flags: number): string {
  const shutdown = (flags & XEN_DOMINF.shutdown) !== 0;
  const reason = (flags >>> XEN_DOMINF.shutdownshift) & XEN_DOMINF.shutdownmask;
  return [
    flags & XEN_DOMINF.running ? "r" : "-",
    flags & XEN_DOMINF.blocked ? "b" : "-",
    flags & XEN_DOMINF.paused ? "p" : "-",
    shutdown ? "s" : "-",
    shutdown ? (SHUTDOWN_LETTERS[reason] ?? "?") : "-",
    flags & XEN_DOMINF.dying ? "d" : "-",
  ].join("");
}

/** The action a config names for a shutdown reason (suspend and soft reset: preserve). */
export function actionFor(config: CreateRequest, reason: number): Action {
  switch (reason) {
    case SHUTDOWN.poweroff:
      return config.onPoweroff;
    case SHUTDOWN.reboot:
      return config.onReboot;
    case SHUTDOWN.crash:
      return config.onCrash;
    case SHUTDOWN.watchdog:
      return config.onWatchdog;
    default:
      return "preserve";
  }
}

/** A locally administered MAC in Xen's OUI (00:16:3e), derived from the domid and handle, for a vif given none. */
export function defaultMac(domid: number, handle: number): string {
  return ["00", "16", "3e", (domid >> 8) & 0xff, domid & 0xff, handle & 0xff].map((b) => (typeof b === "string" ? b : b.toString(16).padStart(2, "0"))).join(":");
}

/**
 * The URL of a kernel module named in a config: a `file:` URL as it is, an absolute
 * path as a `file:` URL, or a package specifier (`@pvkit/domu/hello`)
 * resolved from dom0's package. A relative path is refused: dom0 does not
 * know the directory `xl` ran in. A `file:` kernel must exist.
 */
export function resolveKernel(spec: string): E.Either<string, string> {
  let url: string;
  if (/^[a-z][a-z0-9+.-]+:/i.test(spec)) {
    // dom0 imports the kernel into itself: only from its own disk, never from the network or inline code.
    if (!spec.toLowerCase().startsWith("file:")) return E.left(`kernel "${spec}": only file: URLs, absolute paths and package specifiers are loaded`);
    url = spec;
  } else if (isAbsolute(spec)) url = pathToFileURL(spec).href;
  else if (spec.startsWith(".")) return E.left(`kernel "${spec}" is a relative path: give an absolute path or a file: URL`);
  else {
    try {
      url = pathToFileURL(createRequire(import.meta.url).resolve(spec)).href;
    } catch {
      return E.left(`kernel "${spec}": no such module`);
    }
  }
  if (url.startsWith("file:")) {
    let path: string;
    try {
      path = fileURLToPath(url);
    } catch (e) {
      return E.left(`kernel "${spec}": ${(e as Error).message}`);
    }
    if (!existsSync(path)) return E.left(`kernel "${spec}": no such file ${path}`);
  }
  return E.right(url);
}

/**
 * Whether a disk's target is there: `memory`, or a regular file dom0 can
 * stat (libxl stats a disk's target before it adds the device:
 * `Disk vdev=xvdb failed to stat: ...`). Unlike Xen's `phy:` disks, a block
 * device is refused: node cannot learn its size, and blkback serves files.
 */
export function checkDiskTarget(disk: DiskRequest): E.Either<string, void> {
  if (disk.target === "memory") return E.right(undefined);
  try {
    const st = statSync(disk.target);
    if (!st.isFile()) return E.left(`disk vdev=${disk.vdev}: ${disk.target} is not a regular file (blkback serves raw image files)`);
  } catch (e) {
    return E.left(`disk vdev=${disk.vdev} failed to stat ${disk.target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return E.right(undefined);
}

/** The problems of a config that can be seen before anything is built (libxl's and xl's checks). */
export function checkConfig(c: CreateRequest): string[] {
  const problems: string[] = [];
  if (!NAME.test(c.name)) problems.push(`name "${c.name}" must be 1 to 64 letters, digits, "_", "." or "-", and not all digits`);
  if (c.name === "Domain-0") problems.push(`name "Domain-0" is dom0's`);
  if (c.maxMemMiB < c.memoryMiB) problems.push(`maxMemMiB (${c.maxMemMiB}) must be at least memoryMiB (${c.memoryMiB})`);
  if (c.weight > 65535) problems.push(`weight ${c.weight} is above 65535`);
  if (c.cap > 65534) problems.push(`cap ${c.cap} is above 65534`);
  const vdevs = new Set<string>();
  for (const d of c.disks) {
    if (vdevToDevid(d.vdev) === undefined) problems.push(`disk vdev "${d.vdev}" is not a xvd/hd/sd name`);
    if (vdevs.has(d.vdev)) problems.push(`disk vdev "${d.vdev}" is used twice`);
    vdevs.add(d.vdev);
    if (d.target === "memory" && d.size === undefined) problems.push(`memory disk "${d.vdev}" needs a size`);
  }
  for (const v of c.vifs) if (v.mac !== undefined && !MAC.test(v.mac)) problems.push(`vif mac "${v.mac}" is not six hex pairs`);
  return problems;
}

/** A vbd as libxl adds it: served by dom0 from a file or memory. */
export function vbdDevice(frontendDomid: number, disk: DiskRequest): DeviceSpec {
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
      mode: disk.mode,
      "device-type": "disk",
    },
  };
}

/** A vif as libxl adds it, on `bridge` (default `xenbr0`), served by `backendDomid`. */
export function vifDevice(frontendDomid: number, handle: number, vif: VifRequest, backendDomid: number): DeviceSpec {
  const mac = vif.mac ?? defaultMac(frontendDomid, handle);
  return {
    type: "vif",
    devid: handle,
    frontendDomid,
    backendDomid,
    frontend: { mac, handle: String(handle) },
    backend: { mac, handle: String(handle), bridge: vif.bridge ?? "xenbr0", script: "vif-bridge" },
  };
}

const sumVbd = (a: VbdCounters, b: VbdCounters): VbdCounters => ({
  requests: a.requests + b.requests,
  errors: a.errors + b.errors,
  ooReq: a.ooReq + b.ooReq,
  rdReq: a.rdReq + b.rdReq,
  wrReq: a.wrReq + b.wrReq,
  rdSect: a.rdSect + b.rdSect,
  wrSect: a.wrSect + b.wrSect,
});
const sumVif = (a: VifCounters, b: VifCounters): VifCounters => ({ txFrames: a.txFrames + b.txFrames, txBytes: a.txBytes + b.txBytes, rxFrames: a.rxFrames + b.rxFrames, rxBytes: a.rxBytes + b.rxBytes });
const NO_VBD: VbdCounters = { requests: 0, errors: 0, ooReq: 0, rdReq: 0, wrReq: 0, rdSect: 0, wrSect: 0 };
const NO_VIF: VifCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0 };

/** The domain manager. See the module documentation. */
export class Libxl {
  /** The hypercalls it makes. */
  readonly ts: Toolstack;
  private readonly xs: XsClient;
  private readonly domains = new Map<number, LiveDomain>();
  /** Names of domains being created, not yet live. */
  private readonly reserved = new Set<string>();
  /** Creations in progress, which {@link Libxl.destroyAll} waits for. */
  private readonly creating = new Set<Promise<unknown>>();
  private closing = false;
  private nextWaitToken = 0;

  /** Manages domains from dom0's kernel `k`. */
  constructor(
    readonly k: Kernel,
    private readonly opts: LibxlOptions,
  ) {
    this.ts = new Toolstack(k);
    this.xs = opts.xs;
  }

  /** How many domains it manages (running, preserved, or being built or destroyed). */
  get size(): number {
    return this.domains.size;
  }

  /** The domid of the live domain called `name` (Domain-0 is 0). */
  domidOf(name: string): number | undefined {
    if (name === "Domain-0") return 0;
    for (const d of this.domains.values()) if (d.name === name && d.state !== "dying") return d.domid;
    return undefined;
  }

  /** The name of domain `domid`, if it is one Libxl manages (or dom0). */
  nameOf(domid: number): string | undefined {
    return domid === 0 ? "Domain-0" : this.domains.get(domid)?.name;
  }

  private async log(line: string): Promise<void> {
    await this.opts.log?.(line);
  }

  /** Finds a domain by name or domid (a string of digits is a domid, as xl reads it). */
  resolve(ref: DomainRef): E.Either<string, CreateResult> {
    const domid = typeof ref === "number" ? ref : /^\d+$/.test(ref) ? Number(ref) : this.domidOf(ref);
    const name = domid === undefined ? undefined : this.nameOf(domid);
    if (domid === undefined || name === undefined) return E.left(`domain ${ref} does not exist`);
    return E.right({ domid, name });
  }

  /** A domain Libxl manages (not dom0), by name or domid. */
  private managed(ref: DomainRef, what: string): E.Either<string, LiveDomain> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    if (r.right.domid === 0) return E.left(`${what}: not possible on Domain-0`);
    return E.right(this.domains.get(r.right.domid)!);
  }

  /** A running domain Libxl manages, ready for hotplug and shutdown requests. */
  private running(ref: DomainRef, what: string): E.Either<string, LiveDomain> {
    const d = this.managed(ref, what);
    if (E.isLeft(d)) return d;
    if (d.right.building) return E.left(`${what}: ${d.right.name} is still being created`);
    if (d.right.state !== "running") return E.left(`${what}: ${d.right.name} ${d.right.state === "shutdown" ? "has shut down" : "is being destroyed"}`);
    return d;
  }

  // ---------------------------------------------------------------------------
  // Creating

  /** Creates, builds and (unless `opts.paused`) starts a domain from `config`; see the module documentation. */
  async create(config: CreateRequest, opts: CreateOptions = {}): LibxlResult<CreateResult> {
    return E.map((domids: number[]) => ({ domid: domids[0]!, name: config.name }))(await this.createGroup([config], opts));
  }

  /**
   * Creates several domains together, as the boot manifest does: every one
   * gets its domid, then `opts.connect` runs, then each is built, published,
   * given its devices (whose vif back ends may be domains of the group) and
   * started. If any step fails, every domain of the group is destroyed.
   * Returns the domids, in order.
   */
  createGroup(configs: readonly CreateRequest[], opts: GroupOptions = {}): LibxlResult<number[]> {
    const task = this.createGroupNow(configs, opts, new Set());
    this.creating.add(task);
    void task.finally(() => this.creating.delete(task));
    return task;
  }

  private async createGroupNow(configs: readonly CreateRequest[], opts: GroupOptions, ownNames: ReadonlySet<string>): LibxlResult<number[]> {
    if (this.closing) return E.left("the host is shutting down");
    const names = new Set<string>();
    const problems: string[] = [];
    for (const c of configs) {
      for (const p of checkConfig(c)) problems.push(`${c.name}: ${p}`);
      if (names.has(c.name)) problems.push(`${c.name}: name is used twice`);
      else if ((this.domidOf(c.name) !== undefined || this.reserved.has(c.name)) && !ownNames.has(c.name)) problems.push(`${c.name}: a domain of that name already exists`);
      names.add(c.name);
    }
    if (problems.length > 0) return E.left(`cannot create: ${problems.join("; ")}`);
    const kernels = new Map<string, string>();
    for (const c of configs) {
      const url = resolveKernel(c.kernel);
      if (E.isLeft(url)) return E.left(`creating ${c.name}: ${url.left}`);
      kernels.set(c.name, url.right);
      // libxl stats every disk before it builds anything.
      for (const disk of c.disks) {
        const target = checkDiskTarget(disk);
        if (E.isLeft(target)) return E.left(`creating ${c.name}: ${target.left}`);
      }
    }
    for (const name of names) this.reserved.add(name);
    const made: { config: CreateRequest; domid: number }[] = [];
    const live: LiveDomain[] = [];
    const fail = async (message: string): LibxlResult<number[]> => {
      for (const d of live) if (d.state !== "dying") await this.teardown(d);
      for (const m of made) if (!live.some((d) => d.domid === m.domid)) this.ts.destroy(m.domid);
      return E.left(message);
    };
    const stopping = (name: string) => (this.closing ? `creating ${name}: the host is shutting down` : live.some((d) => d.state === "dying") ? `creating ${name}: destroyed while being created` : undefined);
    try {
      // 1. Empty, paused domains; their domids known before anything is built.
      for (const c of configs) {
        const domid = createDomain(this.k, { kernel: c.kernel, pages: c.memoryMiB * MIB_PAGES, vcpus: c.vcpus });
        if (E.isLeft(domid)) return await fail(`creating ${c.name}: ${domid.left.message}`);
        made.push({ config: c, domid: domid.right });
        const sched = this.ts.setSchedCredit(domid.right, { weight: c.weight, cap: c.cap });
        if (E.isLeft(sched)) return await fail(`creating ${c.name}: scheduler parameters: ${sched.left.message}`);
      }
      const domids = new Map(made.map((m) => [m.config.name, m.domid] as const));
      // 2. What connects them.
      const cmdlineOf = opts.connect === undefined ? E.right((c: CreateRequest) => c.cmdline) : opts.connect(domids);
      if (E.isLeft(cmdlineOf)) return await fail(`creating ${configs.map((c) => c.name).join(", ")}: ${cmdlineOf.left}`);
      // 3. Build, connect the console, publish.
      for (const { config: c, domid } of made) {
        const cmdline = cmdlineOf.right(c);
        const spec = { kernel: kernels.get(c.name)!, pages: c.memoryMiB * MIB_PAGES, vcpus: c.vcpus, cmdline };
        let built: ReturnType<typeof buildDomain>;
        try {
          built = buildDomain(this.k, domid, spec);
        } catch (e) {
          return await fail(`creating ${c.name}: building: ${e instanceof Error ? e.message : String(e)}`);
        }
        if (E.isLeft(built)) return await fail(`creating ${c.name}: building: ${built.left.message}`);
        const d: LiveDomain = { domid, name: c.name, config: { ...c, cmdline }, devices: [], startedNs: this.k.clock.now(), building: true, state: "running", waiters: [] };
        this.domains.set(domid, d);
        live.push(d);
        const console = this.opts.consoles.connect(domid, c.name, built.right.consolePort);
        if (E.isLeft(console)) return await fail(`creating ${c.name}: console: ${console.left.message}`);
        const published = await publishDomain(this.xs, built.right, { name: c.name, pages: spec.pages, vcpus: c.vcpus })();
        if (E.isLeft(published)) return await fail(`creating ${c.name}: xenstore: ${published.left.message}`);
        const staticMax = await this.xs.write(`/local/domain/${domid}/memory/static-max`, String(c.maxMemMiB * 1024))();
        if (E.isLeft(staticMax)) return await fail(`creating ${c.name}: xenstore: ${staticMax.left.message}`);
        const stop = stopping(c.name);
        if (stop !== undefined) return await fail(stop);
      }
      // 4. Devices.
      for (const d of live) {
        const c = d.config;
        for (const disk of c.disks) {
          const dev = vbdDevice(d.domid, disk);
          const added = await addDevice(this.xs, dev)();
          if (E.isLeft(added)) return await fail(`creating ${c.name}: disk ${disk.vdev}: ${added.left.message}`);
          d.devices.push(dev);
        }
        for (const [handle, vif] of c.vifs.entries()) {
          const backend = vif.backend === undefined ? 0 : typeof vif.backend === "string" && domids.has(vif.backend) ? domids.get(vif.backend)! : E.getOrElseW(() => undefined)(E.map((r: CreateResult) => r.domid)(this.resolve(vif.backend)));
          if (backend === undefined) return await fail(`creating ${c.name}: vif ${handle}: backend domain ${vif.backend} does not exist`);
          const dev = vifDevice(d.domid, handle, vif, backend);
          const added = await addDevice(this.xs, dev)();
          if (E.isLeft(added)) return await fail(`creating ${c.name}: vif ${handle}: ${added.left.message}`);
          d.devices.push(dev);
          // dom0's netback answers now; a driver domain runs its own hotplug (and one built in this group only once the group starts).
          if (backend === 0) {
            const up = await this.hotplugDone(dev);
            if (E.isLeft(up)) return await fail(`creating ${c.name}: vif ${handle}: ${up.left}`);
          }
        }
        const stop = stopping(c.name);
        if (stop !== undefined) return await fail(stop);
      }
      // 5. Start.
      for (const d of live) {
        d.building = false;
        if (opts.paused === true) {
          await this.log(`created ${d.name} as domain ${d.domid}, paused`);
          continue;
        }
        const unpaused = this.ts.unpause(d.domid);
        if (E.isLeft(unpaused)) return await fail(`creating ${d.name}: unpause: ${unpaused.left.message}`);
        await this.log(`started ${d.name} as domain ${d.domid}`);
      }
      return E.right(made.map((m) => m.domid));
    } catch (e) {
      return await fail(`creating ${configs.map((c) => c.name).join(", ")}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      for (const name of names) if (!ownNames.has(name)) this.reserved.delete(name);
    }
  }

  // ---------------------------------------------------------------------------
  // Destroying and shutting down

  /** Tears a domain down: console, the domain, its XenStore home, its devices' back-end directories. */
  private async teardown(d: LiveDomain): Promise<void> {
    d.state = "dying";
    this.opts.consoles.disconnect(d.domid);
    this.ts.destroy(d.domid);
    await releaseDomain(this.xs, d.domid);
    // The frontends' directories went with the domain's home; the backends saw it and closed.
    for (const dev of d.devices) await this.xs.rm(devicePaths(dev).backend)();
    this.domains.delete(d.domid);
  }

  private tell(d: LiveDomain, r: ShutdownResult): void {
    for (const w of d.waiters.splice(0)) w(r);
  }

  /** Destroys a domain (`xl destroy`): whatever it was doing, it is gone. */
  async destroy(ref: DomainRef): LibxlResult<DomainAck> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    if (r.right.domid === 0) return E.left("Not destroying domain 0");
    const d = this.domains.get(r.right.domid)!;
    if (d.building) return E.left(`destroy: ${d.name} is still being created`);
    if (d.state === "dying") return E.left(`destroy: ${d.name} is already being destroyed`);
    await this.teardown(d);
    await this.log(`${d.name} (domain ${d.domid}) destroyed`);
    this.tell(d, { domid: d.domid, name: d.name, reason: "destroyed", action: "destroy" });
    return E.right(r.right);
  }

  /**
   * Asks a domain to shut down or reboot (`xl shutdown`, `xl reboot`): writes
   * `poweroff` or `reboot` to its `control/shutdown`, which the guest's
   * xenbus code honours. With `wait`, answers once it has shut down (and its
   * `on_*` action is done) or been destroyed.
   */
  async shutdown(ref: DomainRef, how: "poweroff" | "reboot", wait: boolean): LibxlResult<DomainAck | ShutdownResult> {
    const op = how === "poweroff" ? "shutdown" : "reboot";
    const found = this.resolve(ref);
    if (E.isRight(found) && found.right.domid === 0) return E.left(`${op}: Domain-0 is not shut down this way; use host-shutdown`);
    const d = this.running(ref, op);
    if (E.isLeft(d)) return d;
    const { domid, name } = d.right;
    let waiter: ((r: ShutdownResult) => void) | undefined;
    const done = wait ? new Promise<ShutdownResult>((resolve) => d.right.waiters.push((waiter = resolve))) : undefined;
    const written = await this.xs.write(`/local/domain/${domid}/control/shutdown`, how)();
    if (E.isLeft(written)) {
      const i = waiter === undefined ? -1 : d.right.waiters.indexOf(waiter);
      if (i >= 0) d.right.waiters.splice(i, 1);
      return E.left(`${op} ${name}: ${written.left.message}`);
    }
    if (done === undefined) return E.right({ domid, name });
    return E.right(await done);
  }

  /**
   * Looks at every domain after a `VIRQ_DOM_EXC`: one that has shut down
   * gets its config's action, one that has vanished is forgotten. Call it on
   * dom0's vCPU, one call at a time.
   */
  async reap(): Promise<void> {
    for (const d of [...this.domains.values()]) {
      if (d.state !== "running") continue;
      const info = this.ts.domainInfo(d.domid);
      // getdomaininfo answers for the next domain up when this one is gone (Xen 4.17).
      if (E.isLeft(info) || info.right.domain !== d.domid) {
        await this.teardown(d);
        await this.log(`${d.name} (domain ${d.domid}) vanished`);
        this.tell(d, { domid: d.domid, name: d.name, reason: "destroyed", action: "destroy" });
        continue;
      }
      const reason = Toolstack.shutdownReason(info.right);
      if (reason === undefined) continue;
      d.state = "shutdown";
      await this.onShutdown(d, reason);
    }
  }

  private async onShutdown(d: LiveDomain, reason: number): Promise<void> {
    const why = (keyOf(SHUTDOWN, reason) ?? String(reason)) as ShutdownReasonName;
    // While the host stops, nothing restarts or stays behind.
    const action = this.closing ? "destroy" : actionFor(d.config, reason);
    const what = `${d.name} (domain ${d.domid}) shut down: ${why}`;
    const result: ShutdownResult = { domid: d.domid, name: d.name, reason: why, action };
    switch (action) {
      case "destroy":
        await this.teardown(d);
        await this.log(`${what}; destroyed`);
        this.tell(d, result);
        return;
      case "preserve":
        await this.log(`${what}; preserved`);
        this.tell(d, result);
        return;
      case "restart": {
        // The name stays taken between the old domain and the new.
        this.reserved.add(d.name);
        try {
          await this.teardown(d);
          await this.log(`${what}; restarting`);
          const task = this.createGroupNow([d.config], {}, new Set([d.name]));
          this.creating.add(task);
          const again = await task;
          this.creating.delete(task);
          if (E.isLeft(again)) await this.log(`restarting ${d.name} failed: ${again.left}`);
          this.tell(d, E.isRight(again) ? { ...result, restartedAs: again.right[0]! } : result);
        } finally {
          this.reserved.delete(d.name);
        }
        return;
      }
    }
  }

  /** How many domains are running (neither shut down, nor being built or destroyed). */
  get runningCount(): number {
    let n = 0;
    for (const d of this.domains.values()) if (d.state === "running" && !d.building) n++;
    return n;
  }

  /**
   * The first step of stopping the host, as `xendomains stop` does: refuses
   * creations from now on, lets any in progress finish or give up, then asks
   * every running domain to power off through its `control/shutdown`. A
   * domain that shuts down now is destroyed whatever its `on_poweroff` says.
   * The caller goes on calling {@link Libxl.reap} on `VIRQ_DOM_EXC` until
   * {@link Libxl.runningCount} is 0 or its patience ends, then {@link Libxl.destroyAll}.
   */
  async powerOffAll(): Promise<void> {
    await this.close();
    for (const d of [...this.domains.values()]) {
      if (d.state !== "running" || d.domid === 0) continue;
      const written = await this.xs.write(`/local/domain/${d.domid}/control/shutdown`, "poweroff")();
      if (E.isLeft(written)) await this.log(`asking ${d.name} to power off: ${written.left.message}`);
    }
  }

  private async close(): Promise<void> {
    this.closing = true;
    while (this.creating.size > 0) await Promise.allSettled([...this.creating]);
  }

  /** Destroys every domain (the host is stopping), after any creation in progress has finished or given up; refuses creations from now on. */
  async destroyAll(): Promise<void> {
    await this.close();
    for (const d of [...this.domains.values()]) {
      if (d.state === "dying") continue;
      await this.teardown(d);
      await this.log(`${d.name} (domain ${d.domid}) destroyed on shutdown`);
      this.tell(d, { domid: d.domid, name: d.name, reason: "destroyed", action: "destroy" });
    }
  }

  /** Stops the host (pvkit's `host-shutdown`): the guests are asked to power off, those still running after the timeout destroyed, and dom0 powers off. Answers once the domains are gone. */
  async hostShutdown(): LibxlResult<null> {
    if (this.opts.powerOff === undefined) return E.left("host-shutdown: this dom0 cannot power the host off");
    await this.opts.powerOff();
    return E.right(null);
  }

  // ---------------------------------------------------------------------------
  // Pausing, memory, vCPUs, scheduling

  /** Pauses a domain (`XEN_DOMCTL_pausedomain`; nested, as Xen counts pauses). */
  async pause(ref: DomainRef): LibxlResult<DomainAck> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    return E.bimap((e: { message: string }) => `pause ${r.right.name}: ${e.message}`, () => r.right)(this.ts.pause(r.right.domid));
  }

  /** Undoes one pause (`XEN_DOMCTL_unpausedomain`). */
  async unpause(ref: DomainRef): LibxlResult<DomainAck> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    if (this.domains.get(r.right.domid)?.building === true) return E.left(`unpause: ${r.right.name} is still being created`);
    return E.bimap((e: { message: string }) => `unpause ${r.right.name}: ${e.message}`, () => r.right)(this.ts.unpause(r.right.domid));
  }

  private async memoryKeys(domid: number): Promise<E.Either<string, { target: number; staticMax: number }>> {
    const home = `/local/domain/${domid}/memory`;
    const target = await this.xs.read(`${home}/target`)();
    const staticMax = await this.xs.read(`${home}/static-max`)();
    if (E.isLeft(target)) return E.left(`cannot read ${home}/target: ${target.left.message}`);
    if (E.isLeft(staticMax)) return E.left(`cannot read ${home}/static-max: ${staticMax.left.message}`);
    return E.right({ target: Number(target.right), staticMax: Number(staticMax.right) });
  }

  /**
   * Sets a domain's memory target (`xl mem-set`, libxl's
   * `libxl_set_memory_target` with enforce): at most `memory/static-max`;
   * `max_mem` becomes the target and `memory/target` is written, which the
   * guest's balloon driver follows.
   */
  async memSet(ref: DomainRef, memKiB: number): LibxlResult<MemoryResult> {
    const d = this.running(ref, "mem-set");
    if (E.isLeft(d)) return d;
    const { domid, name } = d.right;
    const keys = await this.memoryKeys(domid);
    if (E.isLeft(keys)) return E.left(`mem-set ${name}: ${keys.left}`);
    if (memKiB > keys.right.staticMax) return E.left(`mem-set ${name}: memory_dynamic_max must be less than or equal to memory_static_max (${keys.right.staticMax} KiB)`);
    const limited = this.ts.setMaxMemKiB(domid, memKiB);
    if (E.isLeft(limited)) return E.left(`mem-set ${name}: ${limited.left.message}`);
    const written = await this.xs.write(`/local/domain/${domid}/memory/target`, String(memKiB))();
    if (E.isLeft(written)) return E.left(`mem-set ${name}: ${written.left.message}`);
    return E.right({ domid, name, targetKiB: memKiB, staticMaxKiB: keys.right.staticMax });
  }

  /**
   * Sets the most memory a domain may have (`xl mem-max`): at least its
   * target; `max_mem` (`XEN_DOMCTL_max_mem`) and `memory/static-max`.
   */
  async memMax(ref: DomainRef, memKiB: number): LibxlResult<MemoryResult> {
    const d = this.running(ref, "mem-max");
    if (E.isLeft(d)) return d;
    const { domid, name } = d.right;
    const keys = await this.memoryKeys(domid);
    if (E.isLeft(keys)) return E.left(`mem-max ${name}: ${keys.left}`);
    if (memKiB < keys.right.target) return E.left(`mem-max ${name}: memory_static_max must be greater than or equal to memory_dynamic_max (${keys.right.target} KiB)`);
    const limited = this.ts.setMaxMemKiB(domid, memKiB);
    if (E.isLeft(limited)) return E.left(`mem-max ${name}: ${limited.left.message}`);
    const written = await this.xs.write(`/local/domain/${domid}/memory/static-max`, String(memKiB))();
    if (E.isLeft(written)) return E.left(`mem-max ${name}: ${written.left.message}`);
    return E.right({ domid, name, targetKiB: keys.right.target, staticMaxKiB: memKiB });
  }

  /** Every domain's vCPUs, or one domain's (`xl vcpu-list`), from `XEN_DOMCTL_getvcpuinfo`. */
  async vcpuList(ref?: DomainRef): LibxlResult<VcpuSummary[]> {
    let infos: DomainInfo[];
    if (ref === undefined) {
      const all = this.ts.domainInfoList();
      if (E.isLeft(all)) return E.left(`vcpu-list: ${all.left.message}`);
      infos = all.right;
    } else {
      const r = this.resolve(ref);
      if (E.isLeft(r)) return r;
      const one = this.ts.domainInfo(r.right.domid);
      if (E.isLeft(one)) return E.left(`vcpu-list ${r.right.name}: ${one.left.message}`);
      infos = [one.right];
    }
    const out: VcpuSummary[] = [];
    for (const info of infos) {
      if (info.max_vcpu_id === 0xffffffff) continue;
      for (let vcpu = 0; vcpu <= info.max_vcpu_id; vcpu++) {
        const v = this.ts.vcpuInfo(info.domain, vcpu);
        if (E.isLeft(v)) return E.left(`vcpu-list: domain ${info.domain} vcpu ${vcpu}: ${v.left.message}`);
        const { online, blocked, running, cpu, cpu_time } = v.right;
        out.push({
          domid: info.domain,
          name: this.nameOf(info.domain) ?? "(null)",
          vcpu,
          cpu: online ? cpu : -1,
          state: `${online && running ? "r" : "-"}${blocked ? "b" : "-"}${online ? "-" : "p"}`,
          online: online !== 0,
          blocked: blocked !== 0,
          running: running !== 0,
          cpuNs: Number(cpu_time),
          affinity: "all",
        });
      }
    }
    return E.right(out);
  }

  /**
   * The credit scheduler (`xl sched-credit`): with no domain, every
   * domain's weight and cap; with a domain, its own, after setting the
   * weight and/or cap given.
   */
  async schedCredit(args: { readonly domain?: DomainRef; readonly weight?: number; readonly cap?: number }): LibxlResult<SchedCreditEntry[]> {
    if (args.domain === undefined) {
      if (args.weight !== undefined || args.cap !== undefined) return E.left("sched-credit: setting a weight or cap needs a domain");
      const all = this.ts.domainInfoList();
      if (E.isLeft(all)) return E.left(`sched-credit: ${all.left.message}`);
      const out: SchedCreditEntry[] = [];
      for (const info of all.right) {
        if ((info.flags & XEN_DOMINF.dying) !== 0) continue;
        const p = this.ts.schedCredit(info.domain);
        if (E.isRight(p)) out.push({ domid: info.domain, name: this.nameOf(info.domain) ?? "(null)", ...p.right });
      }
      return E.right(out);
    }
    const r = this.resolve(args.domain);
    if (E.isLeft(r)) return r;
    if (args.weight !== undefined && args.weight > 65535) return E.left(`sched-credit: weight ${args.weight} is above 65535`);
    if (args.cap !== undefined && args.cap > 65534) return E.left(`sched-credit: cap ${args.cap} is above 65534`);
    if (args.weight !== undefined || args.cap !== undefined) {
      const set = this.ts.setSchedCredit(r.right.domid, { ...(args.weight !== undefined && { weight: args.weight }), ...(args.cap !== undefined && { cap: args.cap }) });
      if (E.isLeft(set)) return E.left(`sched-credit ${r.right.name}: ${set.left.message}`);
      const d = this.domains.get(r.right.domid);
      if (d !== undefined) d.config = { ...d.config, ...(args.weight !== undefined && { weight: args.weight }), ...(args.cap !== undefined && { cap: args.cap }) };
    }
    const p = this.ts.schedCredit(r.right.domid);
    if (E.isLeft(p)) return E.left(`sched-credit ${r.right.name}: ${p.left.message}`);
    return E.right([{ ...r.right, ...p.right }]);
  }

  // ---------------------------------------------------------------------------
  // Looking

  /** Every domain, live or dying, as `xl list` shows them (`XEN_SYSCTL_getdomaininfolist`). */
  async list(): LibxlResult<DomainSummary[]> {
    const all = this.ts.domainInfoList();
    if (E.isLeft(all)) return E.left(`list: ${all.left.message}`);
    return E.right(
      all.right.map((info) => {
        const d = this.domains.get(info.domain);
        return {
          domid: info.domain,
          name: this.nameOf(info.domain) ?? "(null)",
          memKiB: Number(info.tot_pages) * PAGE_KIB,
          maxMemKiB: Number(info.max_pages) * PAGE_KIB,
          vcpus: info.nr_online_vcpus,
          state: domainStateString(info.flags),
          cpuNs: Number(info.cpu_time),
          ...(d !== undefined && { config: d.config }),
        };
      }),
    );
  }

  /** The host (`xl info`): the host's OS, `XEN_SYSCTL_physinfo`, `xen_version` and the scheduler. */
  async info(): LibxlResult<HostInfo> {
    const phys = this.ts.physinfo();
    if (E.isLeft(phys)) return E.left(`info: ${phys.left.message}`);
    const ver = this.ts.versionInfo();
    if (E.isLeft(ver)) return E.left(`info: ${ver.left.message}`);
    const sched = this.ts.schedulerId();
    if (E.isLeft(sched)) return E.left(`info: ${sched.left.message}`);
    const p = phys.right;
    const v = ver.right;
    const pagesPerMiB = (1 << 20) / v.pagesize;
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    return E.right({
      host: hostname(),
      release: release(),
      version: osVersion(),
      machine: machine(),
      nr_cpus: p.nr_cpus,
      max_cpu_id: p.max_cpu_id,
      nr_nodes: p.nr_nodes,
      cores_per_socket: p.cores_per_socket,
      threads_per_core: p.threads_per_core,
      cpu_mhz: `${Math.floor(p.cpu_khz / 1000)}.${String(p.cpu_khz % 1000).padStart(3, "0")}`,
      hw_caps: p.hw_cap.map(hex).join(":"),
      virt_caps: VIRT_CAPS.filter(([bit]) => (p.capabilities & bit) !== 0)
        .map(([, name]) => name)
        .join(" "),
      total_memory: Math.floor(Number(p.total_pages) / pagesPerMiB),
      free_memory: Math.floor(Number(p.free_pages - p.outstanding_pages) / pagesPerMiB),
      sharing_freed_memory: 0,
      sharing_used_memory: 0,
      outstanding_claims: Math.floor(Number(p.outstanding_pages) / pagesPerMiB),
      free_cpus: 0,
      xen_major: v.major,
      xen_minor: v.minor,
      xen_extra: v.extra,
      xen_version: `${v.major}.${v.minor}${v.extra}`,
      xen_caps: v.capabilities,
      xen_scheduler: (keyOf(XEN_SCHEDULER, sched.right) ?? String(sched.right)).toLowerCase(),
      xen_pagesize: v.pagesize,
      platform_params: `virt_start=0x${v.virtStart.toString(16)}`,
      xen_changeset: v.changeset,
      xen_commandline: v.commandline,
      cc_compiler: v.compiler,
      cc_compile_by: v.compileBy,
      cc_compile_domain: v.compileDomain,
      cc_compile_date: v.compileDate,
      build_id: v.buildId,
      xend_config_format: 4,
    });
  }

  /** Xen's console (`xl dmesg`, `XEN_SYSCTL_readconsole`); with `clear`, the next read starts after it (`xl dmesg -c`). */
  async dmesg(clear = false): LibxlResult<DmesgResult> {
    return E.bimap((e: { message: string }) => `dmesg: ${e.message}`, (text: string) => ({ text }))(this.ts.readConsole(clear));
  }

  /** How long each domain has been up (`xl uptime`): dom0 since the host booted, a domU since it was built. */
  async uptime(): LibxlResult<UptimeEntry[]> {
    const all = this.ts.domainInfoList();
    if (E.isLeft(all)) return E.left(`uptime: ${all.left.message}`);
    const now = this.k.clock.now();
    const out: UptimeEntry[] = [];
    for (const info of all.right) {
      if (info.domain === 0) out.push({ domid: 0, name: "Domain-0", uptimeNs: now });
      const d = this.domains.get(info.domain);
      if (d !== undefined) out.push({ domid: d.domid, name: d.name, uptimeNs: now - d.startedNs });
    }
    return E.right(out);
  }

  /** Each domain's CPU, memory and device counters (`xl top`, one sample). */
  async top(): LibxlResult<TopEntry[]> {
    const listed = await this.list();
    if (E.isLeft(listed)) return listed;
    const counters = this.opts.counters;
    return E.right(
      listed.right.map((s) => {
        const devices = this.domains.get(s.domid)?.devices ?? [];
        const vbds = devices.filter((dev) => dev.type === "vbd");
        const vifs = devices.filter((dev) => dev.type === "vif");
        const vbdDevices = vbds.flatMap((dev) => {
          const c = counters?.vbd(dev.frontendDomid, dev.devid);
          return c === undefined ? [] : [{ devid: dev.devid, ...c }];
        });
        return {
          domid: s.domid,
          name: s.name,
          state: s.state,
          cpuNs: s.cpuNs,
          memKiB: s.memKiB,
          maxMemKiB: s.maxMemKiB,
          vcpus: s.vcpus,
          vbds: vbds.length,
          vifs: vifs.length,
          vbd: vbdDevices.reduce(sumVbd, NO_VBD),
          vbdDevices,
          net: vifs.reduce((acc, dev) => sumVif(acc, counters?.vif(dev.frontendDomid, dev.devid) ?? NO_VIF), NO_VIF),
        };
      }),
    );
  }

  /** Where to reach a domain's console (`xl console`): its Unix socket, from the console daemon. */
  async console(ref: DomainRef): LibxlResult<ConsoleResult> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    const info = this.opts.consoles.console(r.right.domid);
    if (info === undefined) return E.left(`console: ${r.right.name} has no console dom0 serves`);
    if (info.socket === undefined) return E.left(`console: dom0 serves consoles on no sockets (the boot manifest names no console.socketDir)`);
    return E.right({ ...r.right, socket: info.socket });
  }

  // ---------------------------------------------------------------------------
  // Hotplug

  /** Adds a disk to a running domain (`xl block-attach`); the guest's blkfront and dom0's blkback connect it. */
  async blockAttach(ref: DomainRef, disk: DiskRequest): LibxlResult<AttachResult> {
    const d = this.running(ref, "block-attach");
    if (E.isLeft(d)) return d;
    const { domid, name } = d.right;
    const devid = vdevToDevid(disk.vdev);
    if (devid === undefined) return E.left(`block-attach ${name}: vdev "${disk.vdev}" is not a xvd/hd/sd name`);
    if (disk.target === "memory" && disk.size === undefined) return E.left(`block-attach ${name}: a memory disk needs a size`);
    const target = checkDiskTarget(disk);
    if (E.isLeft(target)) return E.left(`block-attach ${name}: ${target.left}`);
    const present = await this.xs.read(`/local/domain/${domid}/device/vbd/${devid}/state`)();
    if (E.isRight(present) || d.right.devices.some((dev) => dev.type === "vbd" && dev.devid === devid)) return E.left(`block-attach ${name}: it already has a disk ${disk.vdev}`);
    const dev = vbdDevice(domid, disk);
    const added = await addDevice(this.xs, dev)();
    if (E.isLeft(added)) return E.left(`block-attach ${name}: ${added.left.message}`);
    d.right.devices.push(dev);
    d.right.config = { ...d.right.config, disks: [...d.right.config.disks, disk] };
    return E.right({ domid, name, devid });
  }

  /** Removes a disk from a running domain (`xl block-detach`), named by vdev (`xvdb`) or virtual-device number. */
  async blockDetach(ref: DomainRef, vdev: string): LibxlResult<DomainAck> {
    const d = this.running(ref, "block-detach");
    if (E.isLeft(d)) return d;
    const devid = /^\d+$/.test(vdev) ? Number(vdev) : vdevToDevid(vdev);
    if (devid === undefined) return E.left(`block-detach ${d.right.name}: vdev "${vdev}" is not a xvd/hd/sd name`);
    const removed = await this.detach(d.right, "vbd", devid, "block-detach");
    if (E.isLeft(removed)) return removed;
    d.right.config = { ...d.right.config, disks: d.right.config.disks.filter((disk) => vdevToDevid(disk.vdev) !== devid) };
    return E.right({ domid: d.right.domid, name: d.right.name });
  }

  /** Adds a network interface to a running domain (`xl network-attach`), with the next free handle. */
  async networkAttach(ref: DomainRef, vif: VifRequest): LibxlResult<AttachResult> {
    const d = this.running(ref, "network-attach");
    if (E.isLeft(d)) return d;
    const { domid, name } = d.right;
    if (vif.mac !== undefined && !MAC.test(vif.mac)) return E.left(`network-attach ${name}: mac "${vif.mac}" is not six hex pairs`);
    const backend = vif.backend === undefined ? E.right({ domid: 0, name: "Domain-0" }) : this.resolve(vif.backend);
    if (E.isLeft(backend)) return E.left(`network-attach ${name}: backend ${backend.left}`);
    const listed = await this.xs.directory(`/local/domain/${domid}/device/vif`)();
    const handles = [...(E.isRight(listed) ? listed.right.map(Number) : []), ...d.right.devices.filter((dev) => dev.type === "vif").map((dev) => dev.devid)];
    const handle = handles.length === 0 ? 0 : Math.max(...handles) + 1;
    const dev = vifDevice(domid, handle, vif, backend.right.domid);
    const added = await addDevice(this.xs, dev)();
    if (E.isLeft(added)) return E.left(`network-attach ${name}: ${added.left.message}`);
    // As libxl, dom0 waits for the hotplug of the vifs it serves; a driver domain runs its own (xl devd).
    const up = dev.backendDomid === 0 ? await this.hotplugDone(dev) : E.right(undefined);
    if (E.isLeft(up)) {
      // As libxl does when a hotplug script fails: the device goes again.
      await removeDevice(this.xs, dev)();
      await this.backendClosed(devicePaths(dev).backend);
      await forgetDevice(this.xs, dev)();
      return E.left(`network-attach ${name}: vif ${handle}: ${up.left}`);
    }
    d.right.devices.push(dev);
    d.right.config = { ...d.right.config, vifs: [...d.right.config.vifs, { ...vif, mac: dev.frontend!["mac"]! }] };
    return E.right({ domid, name, devid: handle });
  }

  /** Removes a network interface from a running domain (`xl network-detach`), by handle. */
  async networkDetach(ref: DomainRef, devid: number): LibxlResult<DomainAck> {
    const d = this.running(ref, "network-detach");
    if (E.isLeft(d)) return d;
    const mac = d.right.devices.find((dev) => dev.type === "vif" && dev.devid === devid)?.frontend?.["mac"];
    const removed = await this.detach(d.right, "vif", devid, "network-detach");
    if (E.isLeft(removed)) return removed;
    d.right.config = { ...d.right.config, vifs: d.right.config.vifs.filter((v) => v.mac !== mac) };
    return E.right({ domid: d.right.domid, name: d.right.name });
  }

  /**
   * libxl's `device_remove`: asks the back end to close (`online` 0, state
   * Closing), waits for it to reach Closed (or gone) within the timeout, and
   * removes both directories either way. Unlike libxl, it does not wait when
   * the frontend never left Initialising (the guest has no driver for it).
   */
  private async detach(d: LiveDomain, type: "vbd" | "vif", devid: number, what: string): LibxlResult<void> {
    const frontend = `/local/domain/${d.domid}/device/${type}/${devid}`;
    const backendId = await this.xs.read(`${frontend}/backend-id`)();
    const known = d.devices.find((dev) => dev.type === type && dev.devid === devid);
    if (E.isLeft(backendId) && known === undefined) return E.left(`${what} ${d.name}: it has no ${type} ${devid}`);
    const dev: DeviceSpec = known ?? { type, devid, frontendDomid: d.domid, backendDomid: Number(E.isRight(backendId) ? backendId.right : 0) };
    // A frontend still Initialising has no driver to close it: nothing to wait for.
    const frontendState = await this.xs.read(`${frontend}/state`)();
    const driven = E.isRight(frontendState) && Number(frontendState.right) > XenbusState.Initialising;
    const asked = await removeDevice(this.xs, dev)();
    if (E.isLeft(asked)) return E.left(`${what} ${d.name}: ${asked.left.message}`);
    if (driven) await this.backendClosed(devicePaths(dev).backend);
    await forgetDevice(this.xs, dev)();
    const i = d.devices.indexOf(known!);
    if (i >= 0) d.devices.splice(i, 1);
    return E.right(undefined);
  }

  /** Resolves when the back end at `path` is Closed or gone, or the timeout has passed: true if it closed. */
  private async backendClosed(path: string): Promise<boolean> {
    const closed = await this.awaitNode(`${path}/state`, async () => {
      const s = await this.xs.read(`${path}/state`)();
      return E.isLeft(s) || Number(s.right) >= XenbusState.Closed ? true : undefined;
    });
    return closed === true;
  }

  /**
   * Waits for a vif's hotplug script (netback's bridge check, in the role of
   * `vif-bridge`) to report in its back end's `hotplug-status`: `connected`,
   * or `error` with the reason in `hotplug-error`, as libxl waits before it
   * calls a device added.
   */
  private async hotplugDone(dev: DeviceSpec): Promise<E.Either<string, void>> {
    const path = devicePaths(dev).backend;
    const r = await this.awaitNode(`${path}/hotplug-status`, async () => {
      const s = await this.xs.read(`${path}/hotplug-status`)();
      if (E.isLeft(s)) return undefined;
      if (s.right === "connected") return E.right(undefined);
      if (s.right !== "error") return undefined;
      const why = await this.xs.read(`${path}/hotplug-error`)();
      return E.left(`hotplug script failed: ${E.isRight(why) ? why.right : "no reason given"}`);
    });
    return r ?? E.left(`the back end in domain ${dev.backendDomid} did not report hotplug-status within ${(this.opts.deviceTimeoutNs ?? DEVICE_REMOVE_TIMEOUT_NS) / 1e9} s`);
  }

  /** Checks, then on each change of `node` checks again, until `check` answers or the device timeout passes (undefined). */
  private async awaitNode<T>(node: string, check: () => Promise<T | undefined>): Promise<T | undefined> {
    const first = await check();
    if (first !== undefined) return first;
    // A token of its own: two waits on one node (two xl clients detaching one device) must not collide.
    const watch = this.xs.watch(node, `libxl-wait-${this.nextWaitToken++}-${node}`);
    const timeout = this.k.timers.timeout(this.opts.deviceTimeoutNs ?? DEVICE_REMOVE_TIMEOUT_NS);
    let timedOut = false;
    const expired = timeout.fired.then(() => {
      timedOut = true;
      return undefined;
    });
    const watched = (async () => {
      for await (const _ of watch) {
        if (timedOut) return undefined;
        const r = await check();
        if (r !== undefined) return r;
      }
      return undefined;
    })();
    try {
      return await Promise.race([watched, expired]);
    } finally {
      timeout.cancel();
      await watch.close();
    }
  }

  /** A domain's devices of `type`, read from XenStore: each one's frontend and backend keys. */
  private async deviceList(ref: DomainRef, type: "vbd" | "vif"): LibxlResult<DeviceKeys[]> {
    const r = this.resolve(ref);
    if (E.isLeft(r)) return r;
    const dir = `/local/domain/${r.right.domid}/device/${type}`;
    const ids = await this.xs.directory(dir)();
    const entries: DeviceKeys[] = [];
    for (const id of E.isRight(ids) ? ids.right : []) {
      const fe = await this.readAll(`${dir}/${id}`);
      const backendPath = fe["backend"] ?? "";
      const be = backendPath === "" ? {} : await this.readAll(backendPath);
      // backend-id, or the domid in the backend's path (`/local/domain/<id>/backend/...`); 0 if neither says.
      const backendDomid = Number(fe["backend-id"] ?? /^\/local\/domain\/(\d+)\//.exec(backendPath)?.[1] ?? 0);
      entries.push({ devid: Number(id), fe, be, backendPath, backendDomid });
    }
    return E.right(entries.sort((a, b) => a.devid - b.devid));
  }

  private async readAll(dir: string): Promise<Record<string, string>> {
    const keys = await this.xs.directory(dir)();
    const out: Record<string, string> = {};
    for (const key of E.isRight(keys) ? keys.right : []) {
      const v = await this.xs.read(`${dir}/${key}`)();
      if (E.isRight(v)) out[key] = v.right;
    }
    return out;
  }

  /** A domain's vbds as XenStore has them (`xl block-list`). */
  async blockList(ref: DomainRef): LibxlResult<BlockDeviceSummary[]> {
    const listed = await this.deviceList(ref, "vbd");
    if (E.isLeft(listed)) return listed;
    const num = (s: string | undefined) => (s === undefined || s === "" ? -1 : Number(s));
    return E.right(
      listed.right.map((e) => ({
        devid: e.devid,
        vdev: e.be["dev"] ?? String(e.devid),
        backendDomid: e.backendDomid,
        state: num(e.fe["state"]),
        backendState: num(e.be["state"]),
        eventChannel: num(e.fe["event-channel"]),
        ringRef: num(e.fe["ring-ref"] ?? e.fe["ring-ref0"]),
        backendPath: e.backendPath,
        target: e.be["type"] === "memory" ? "memory" : (e.be["params"] ?? ""),
        mode: e.be["mode"] ?? "",
      })),
    );
  }

  /** A domain's vifs as XenStore has them (`xl network-list`). */
  async networkList(ref: DomainRef): LibxlResult<NetworkDeviceSummary[]> {
    const listed = await this.deviceList(ref, "vif");
    if (E.isLeft(listed)) return listed;
    const num = (s: string | undefined) => (s === undefined || s === "" ? -1 : Number(s));
    return E.right(
      listed.right.map((e) => ({
        devid: e.devid,
        backendDomid: e.backendDomid,
        mac: e.fe["mac"] ?? e.be["mac"] ?? "",
        bridge: e.be["bridge"] ?? "",
        state: num(e.fe["state"]),
        backendState: num(e.be["state"]),
        eventChannel: num(e.fe["event-channel"]),
        txRingRef: num(e.fe["tx-ring-ref"]),
        rxRingRef: num(e.fe["rx-ring-ref"]),
        backendPath: e.backendPath,
      })),
    );
  }
}
