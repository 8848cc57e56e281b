/**
 * From a parsed xl.cfg to the control protocol's `CreateRequest`: kernel
 * paths become file URLs (relative paths taken from the config file's
 * directory, package specifiers resolved as Node resolves them), disks and
 * NICs become the protocol's, and what the protocol cannot carry is said in
 * a warning, not dropped in silence.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { vdevToDevid, type CreateRequest, type DiskRequest, type VifRequest } from "@pvkit/dom0";
import type { DiskSpec } from "../diskspec.js";
import type { DomainConfig } from "../domain-config.js";
import type { VifSpec } from "../vifspec.js";
import { CliError } from "./io.js";

const ownRequire = createRequire(import.meta.url);

/**
 * The file URL of a kernel named in a config: a `file:` URL (which must
 * exist); a path (absolute, `./`, `../`, or a `.js`/`.mjs` file name)
 * taken from `baseDir`; else a package specifier, resolved from `baseDir`
 * and then from pvkit's own packages (`@pvkit/domu/hello`).
 * @throws CliError naming the kernel when it cannot be found.
 */
export function resolveKernelUrl(specifier: string, baseDir: string): string {
  if (/^file:/i.test(specifier)) {
    let path: string;
    try {
      path = fileURLToPath(specifier);
    } catch (e) {
      throw new CliError(`kernel: ${specifier} is not a file URL pvkit can read: ${(e as Error).message}`);
    }
    if (!existsSync(path)) throw new CliError(`kernel: ${specifier}: no such file`);
    return specifier;
  }
  const pathLike = isAbsolute(specifier) || specifier.startsWith("./") || specifier.startsWith("../");
  const asPath = resolve(baseDir, specifier);
  if (pathLike || (/\.m?js$/.test(specifier) && !specifier.startsWith("@"))) {
    if (existsSync(asPath) && statSync(asPath).isFile()) return pathToFileURL(asPath).href;
    if (pathLike) throw new CliError(`kernel: ${asPath}: no such file`);
  }
  for (const from of [createRequire(join(baseDir, "noop.js")), ownRequire]) {
    try {
      return pathToFileURL(from.resolve(specifier)).href;
    } catch {
      // try the next place
    }
  }
  throw new CliError(`kernel: cannot find ${specifier}: not a file in ${baseDir}, nor a module Node resolves from there or from pvkit's packages (is it built?)`);
}

/**
 * A disk as the protocol takes it: a raw image (path made absolute from
 * `cwd`, as xl hands libxl the path it was given), its vdev and access.
 * @throws CliError when pvkit's blkback cannot serve it.
 */
export function diskRequest(spec: DiskSpec, cwd: string, label: string, warn: (message: string) => void): DiskRequest {
  if (spec.target === undefined || spec.target === "") throw new CliError(`${label}: a disk needs an image file (target=)`);
  if (spec.format !== "raw") throw new CliError(`${label}: format ${spec.format} is not supported by pvkit (raw images only)`);
  if (vdevToDevid(spec.vdev) === undefined) throw new CliError(`${label}: vdev ${spec.vdev}: pvkit's blkback serves xvdX, hdX and sdX disks (one letter)`);
  if (spec.backend !== undefined) warn(`${label}: backend=${spec.backend} ignored: disks are served by dom0`);
  return { target: resolve(cwd, spec.target), vdev: spec.vdev, mode: spec.access === "rw" && spec.devtype === "disk" ? "w" : "r" };
}

/** A NIC as the protocol takes it (MAC, bridge, backend domain); the vifspec keys it cannot carry are warned of. */
export function vifRequest(spec: VifSpec, label: string, warn: (message: string) => void): VifRequest {
  const dropped = (["ip", "rate", "mtu", "vifname", "gatewaydev", "devid"] as const).filter((k) => spec[k] !== undefined);
  if (dropped.length > 0) warn(`${label}: ${dropped.map((k) => `${k}=`).join(", ")} ignored: pvkit's netback does not use ${dropped.length === 1 ? "it" : "them"}`);
  const backend = spec.backend === undefined ? undefined : /^\d+$/.test(spec.backend) ? Number(spec.backend) : spec.backend;
  return {
    ...(spec.mac === undefined ? {} : { mac: spec.mac }),
    ...(spec.bridge === undefined ? {} : { bridge: spec.bridge }),
    ...(backend === undefined ? {} : { backend }),
  };
}

/**
 * The `create` request for a decoded configuration. `cfgDir` is the config
 * file's directory (kernel paths are taken from it), `cwd` xl's (disk paths
 * are, as xl leaves them to libxl).
 * @throws CliError when the kernel or a disk cannot be used.
 */
export function toCreateRequest(config: DomainConfig, cfgDir: string, cwd: string, warn: (message: string) => void): CreateRequest {
  if (config.kernel.kind !== "module") throw new CliError(`kernel: ${config.kernel.path} is not a pvkit kernel module`);
  if (config.maxvcpus > config.vcpus) warn(`maxvcpus=${config.maxvcpus}: pvkit creates the ${config.vcpus} vCPU(s) online at boot only`);
  return {
    name: config.name,
    kernel: resolveKernelUrl(config.kernel.specifier, cfgDir),
    memoryMiB: config.memory,
    maxMemMiB: config.maxmem,
    vcpus: config.vcpus,
    cmdline: config.cmdline ?? "",
    weight: config.cpuWeight,
    cap: config.cap,
    onPoweroff: config.onPoweroff,
    onReboot: config.onReboot,
    onCrash: config.onCrash,
    onWatchdog: config.onWatchdog,
    disks: config.disks.map((d, i) => diskRequest(d, cwd, `disk[${i}]`, warn)),
    vifs: config.vifs.map((v, i) => vifRequest(v, `vif[${i}]`, warn)),
  };
}
