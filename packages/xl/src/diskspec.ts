/**
 * The DISKSPEC of `xl-disk-configuration(5)`: one item of `disk = [ ... ]`,
 * read as libxlu reads it (`tools/libs/util/libxlu_disk_l.l`,
 * `libxlu_disk.c`).
 *
 * A spec is comma-separated parameters. Those without `=` fill the
 * positional slots still empty, in the order `target, format, vdev,
 * access`; the others are `key=value` or bare flags. These are the same disk:
 *
 * ```
 * /dev/vg/guest-volume,,hda
 * /dev/vg/guest-volume,raw,hda,rw
 * format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume
 * raw:/dev/vg/guest-volume,hda,w          (deprecated prefix syntax)
 * ```
 *
 * - `target=` takes the whole rest of the spec, commas included, so it
 *   comes last; it is the only way to name a target with a comma.
 * - An empty parameter means its default: format `raw`; access `rw`, or `ro`
 *   for a cdrom (a cdrom is always read-only, whatever the access says).
 * - `devtype=cdrom` or the flag `cdrom` makes a removable cdrom; without a
 *   target it is an empty drive (format `empty`).
 * - Flags: `cdrom`, `direct-io-safe`, `discard`/`no-discard`,
 *   `trusted`/`untrusted`, `colo`/`no-colo`.
 * - Keys: `format` (raw, qcow, qcow2, vhd, qed, empty), `vdev`, `access`
 *   (rw, w, ro, r), `devtype` (disk, cdrom), `backend` (a driver domain's
 *   name), `backendtype` (phy, tap, qdisk, standalone), `script`,
 *   `specification` (xen, virtio), `target`, and the COLO keys `colo-host`,
 *   `colo-port`, `colo-export`, `active-disk`, `hidden-disk`.
 * - Deprecated prefixes before the target: `raw:`, `qcow:`, `qcow2:`, `vhd:`
 *   set the format; `iscsi:`, `nbd:`, `enbd:`, `drbd:` set the script
 *   `block-NAME`; `tapdisk:`, `tap:`, `tap2:`, `aio:`, `ioemu:`, `file:`,
 *   `phy:` are dropped. After a prefix the format slot is skipped
 *   (`raw:/img,hda,w`), and `VDEV:cdrom` / `VDEV:disk` gives the device type
 *   (`,hdc:cdrom,r` is an empty cdrom).
 *
 * Every parameter may be given once, positionally or by name; a vdev is
 * required, and a target unless the disk is a cdrom.
 *
 * What pvkit itself supports (raw images only) is decided by
 * `decodeDomainConfig`; this module accepts everything xl accepts.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/** Disk image formats xl knows (`libxl_disk_format`); `empty` is a cdrom drive with no medium. */
export type DiskFormat = "raw" | "qcow" | "qcow2" | "vhd" | "qed" | "empty";

/** Backend implementations libxl can choose (`libxl_disk_backend`). */
export type DiskBackendType = "phy" | "tap" | "qdisk" | "standalone";

/** The COLO replication settings of a disk (xl marks them unstable). */
export interface DiskColo {
  /** `colo` or `no-colo`. */
  readonly enable?: boolean;
  /** `colo-host=`: the secondary host. */
  readonly host?: string;
  /** `colo-port=`: the secondary's NBD port. */
  readonly port?: number;
  /** `colo-export=`: the NBD export name. */
  readonly export?: string;
  /** `active-disk=`. */
  readonly activeDisk?: string;
  /** `hidden-disk=`. */
  readonly hiddenDisk?: string;
}

/** A parsed DISKSPEC, defaults applied as libxlu applies them. */
export interface DiskSpec {
  /** The image file or device (`pdev_path`); undefined for an empty cdrom given no target at all. */
  readonly target?: string;
  /** The image format; `raw` by default. */
  readonly format: DiskFormat;
  /** The guest's name for the disk: `xvda`, `hdc`, `sda`... */
  readonly vdev: string;
  /** Whether the guest may write: `rw` by default, always `ro` for a cdrom. */
  readonly access: "rw" | "ro";
  /** `disk`, or `cdrom` (removable, read-only). */
  readonly devtype: "disk" | "cdrom";
  /** `backend=`: the name of the driver domain serving the disk (default dom0). */
  readonly backend?: string;
  /** `backendtype=`: which backend implementation. */
  readonly backendtype?: DiskBackendType;
  /** `script=` (or a deprecated script prefix): the block hotplug script. */
  readonly script?: string;
  /** `specification=`: the protocol, `xen` (blkif) or `virtio`. */
  readonly specification?: "xen" | "virtio";
  /** The `direct-io-safe` flag. */
  readonly directIoSafe: boolean;
  /** `discard` (true) or `no-discard` (false); undefined when neither is given. */
  readonly discard?: boolean;
  /** `trusted` (true) or `untrusted` (false); undefined when neither is given. */
  readonly trusted?: boolean;
  /** COLO settings, when any is given. */
  readonly colo?: DiskColo;
}

/** A parsed spec and the remarks on it that are not errors (deprecated syntax, overridden access). */
export interface ParsedDiskSpec {
  /** The disk. */
  readonly spec: DiskSpec;
  /** Remarks, each naming the part concerned. */
  readonly warnings: readonly string[];
}

const FORMATS: readonly DiskFormat[] = ["raw", "qcow", "qcow2", "vhd", "qed", "empty"];
const BACKEND_TYPES: readonly DiskBackendType[] = ["phy", "tap", "qdisk", "standalone"];
const FLAGS = new Set(["cdrom", "direct-io-safe", "discard", "no-discard", "colo", "no-colo", "trusted", "untrusted"]);
const STRING_KEYS = new Set(["vdev", "script", "backend", "colo-host", "colo-export", "active-disk", "hidden-disk"]);

interface State {
  target?: string | undefined;
  format?: DiskFormat | undefined;
  vdev?: string | undefined;
  readwrite: boolean;
  accessGiven?: string | undefined;
  accessSlotUsed: boolean;
  cdrom: boolean;
  hadPrefix: boolean;
  backend?: string | undefined;
  backendtype?: DiskBackendType | undefined;
  script?: string | undefined;
  specification?: "xen" | "virtio" | undefined;
  directIoSafe: boolean;
  discard?: boolean | undefined;
  trusted?: boolean | undefined;
  colo: { enable?: boolean; host?: string | undefined; port?: number; export?: string | undefined; activeDisk?: string | undefined; hiddenDisk?: string | undefined };
}

/**
 * Parses one DISKSPEC. Left: every error, each naming the part that is
 * wrong (`unknown format "qcow3"`, `vdev respecified: "xvdb"`...).
 */
export function parseDiskSpec(spec: string): E.Either<string[], ParsedDiskSpec> {
  const errors: string[] = [];
  const warnings: string[] = [];
  const st: State = { readwrite: true, accessSlotUsed: false, cdrom: false, hadPrefix: false, directIoSafe: false, colo: {} };

  /** Sets a string once; an empty earlier value may be replaced silently, as libxlu's savestring allows. */
  const save = (what: string, current: string | undefined, value: string): string | undefined => {
    if (current !== undefined && current !== "") {
      errors.push(`${what} respecified: ${JSON.stringify(value)} (already ${JSON.stringify(current)})`);
      return current;
    }
    return value;
  };
  const setFormat = (value: string): void => {
    const f: DiskFormat | undefined = value === "" ? "raw" : FORMATS.find((x) => x === value);
    if (f === undefined) errors.push(`unknown format ${JSON.stringify(value)} (xl knows ${FORMATS.join(", ")})`);
    else if (st.format !== undefined && st.format !== f) errors.push(`format respecified: ${JSON.stringify(value)} (already ${st.format})`);
    else st.format = f;
  };
  const setAccess = (value: string): void => {
    if (value === "r" || value === "ro") st.readwrite = false;
    else if (value === "rw" || value === "w" || value === "") st.readwrite = true;
    else return void errors.push(`unknown access ${JSON.stringify(value)} (rw, w, ro or r)`);
    st.accessGiven = value;
  };
  /** `VDEV:cdrom` / `VDEV:disk`, the deprecated way to give the device type with the vdev. */
  const vdevAndDevtype = (token: string): boolean => {
    const colon = token.lastIndexOf(":");
    if (colon < 0) return false;
    st.vdev = save("vdev", st.vdev, token.slice(0, colon));
    const type = token.slice(colon + 1);
    if (type === "cdrom") st.cdrom = true;
    else if (type === "disk") st.cdrom = false;
    else errors.push(`unknown device type ${JSON.stringify(type)} in ${JSON.stringify(token)} (cdrom or disk)`);
    warnings.push(`${JSON.stringify(token)}: VDEV:TYPE is deprecated, use devtype=${type}`);
    return true;
  };
  const positional = (token: string): void => {
    if (errors.length > 0) return; // earlier errors would only cascade
    if (st.target === undefined) {
      st.target = token;
    } else if (!st.hadPrefix && st.format === undefined) {
      if (st.target === "" && vdevAndDevtype(token)) st.format = "empty";
      else setFormat(token);
    } else if (st.vdev === undefined) {
      if (!vdevAndDevtype(token)) st.vdev = token;
    } else if (!st.accessSlotUsed) {
      st.accessSlotUsed = true;
      setAccess(token);
    } else {
      errors.push(`too many positional parameters: ${JSON.stringify(token)} (the order is target, format, vdev, access)`);
    }
  };
  const keyword = (key: string, value: string): void => {
    switch (key) {
      case "format":
        return setFormat(value);
      case "access":
        return setAccess(value);
      case "devtype":
        if (value === "cdrom") st.cdrom = true;
        else if (value === "disk") st.cdrom = false;
        else errors.push(`unknown devtype ${JSON.stringify(value)} (cdrom or disk)`);
        return;
      case "backendtype": {
        const b = BACKEND_TYPES.find((x) => x === value);
        if (b === undefined) errors.push(`unknown backendtype ${JSON.stringify(value)} (xl knows ${BACKEND_TYPES.join(", ")})`);
        else if (st.backendtype !== undefined && st.backendtype !== b) errors.push(`backendtype respecified: ${JSON.stringify(value)}`);
        else st.backendtype = b;
        return;
      }
      case "specification":
        if (value !== "xen" && value !== "virtio") errors.push(`unknown specification ${JSON.stringify(value)} (xen or virtio)`);
        else if (st.specification !== undefined && st.specification !== value) errors.push(`specification respecified: ${JSON.stringify(value)}`);
        else st.specification = value;
        return;
      case "colo-port": {
        const port = /^[0-9]+$/.test(value) ? Number(value) : NaN;
        if (!(port > 0 && port < 65536)) errors.push(`unknown value for colo-port: ${JSON.stringify(value)}`);
        else st.colo.port = port;
        return;
      }
      case "vdev":
        st.vdev = save("vdev", st.vdev, value);
        return;
      case "script":
        st.script = save("script", st.script, value);
        return;
      case "backend":
        st.backend = save("backend", st.backend, value);
        return;
      case "colo-host":
        st.colo.host = save("colo-host", st.colo.host, value);
        return;
      case "colo-export":
        st.colo.export = save("colo-export", st.colo.export, value);
        return;
      case "active-disk":
        st.colo.activeDisk = save("active-disk", st.colo.activeDisk, value);
        return;
      case "hidden-disk":
        st.colo.hiddenDisk = save("hidden-disk", st.colo.hiddenDisk, value);
        return;
    }
  };
  const flag = (name: string): void => {
    if (name === "cdrom") st.cdrom = true;
    else if (name === "direct-io-safe") st.directIoSafe = true;
    else if (name === "discard" || name === "no-discard") st.discard = name === "discard";
    else if (name === "trusted" || name === "untrusted") st.trusted = name === "trusted";
    else st.colo.enable = name === "colo";
  };

  let i = 0;
  while (i < spec.length) {
    const ws = /^[ \t\n]+/.exec(spec.slice(i));
    if (ws !== null) {
      i += ws[0].length;
      continue;
    }
    const rest = spec.slice(i);
    const prefix = /^([a-z][a-z0-9]*):/.exec(rest);
    if (prefix !== null) {
      const p = prefix[1]!;
      const known = /^(raw|qcow2?|vhd)$/.test(p) ? "format" : /^(iscsi|e?nbd|drbd)$/.test(p) ? "script" : /^(tapdisk|tap2?|aio|ioemu|file|phy)$/.test(p) ? "ignored" : undefined;
      if (known !== undefined) {
        st.hadPrefix = true;
        if (known === "format") setFormat(p);
        else if (known === "script") st.script = save("script", st.script, `block-${p}`);
        warnings.push(`prefix "${p}:" is deprecated${known === "format" ? `, use format=${p}` : known === "script" ? `, use script=block-${p}` : " and ignored"}`);
        i += p.length + 1;
        continue;
      }
      const after = rest[p.length + 1];
      if (after === undefined || !/[a-z0-9]/.test(after)) {
        errors.push(`unknown deprecated disk prefix "${p}:"`);
        break;
      }
    }
    const comma = rest.indexOf(",");
    const token = comma < 0 ? rest : rest.slice(0, comma);
    const advance = comma < 0 ? rest.length : comma + 1;
    const eq = token.indexOf("=");
    if (eq < 0) {
      if (FLAGS.has(token)) flag(token);
      else positional(token);
      i += advance;
      continue;
    }
    const key = token.slice(0, eq);
    if (key === "target") {
      // target= eats the rest of the spec, commas included, less one trailing comma.
      const value = rest.slice(eq + 1).replace(/,$/, "");
      st.target = save("target", st.target, value);
      break;
    }
    if (!/^[a-z][-a-z0-9]*$/.test(key)) {
      errors.push(`bad disk syntax near ${JSON.stringify(rest)}`);
      break;
    }
    if (STRING_KEYS.has(key) || ["format", "access", "devtype", "backendtype", "specification", "colo-port"].includes(key)) keyword(key, token.slice(eq + 1));
    else errors.push(`unknown parameter ${JSON.stringify(token)}`);
    i += advance;
  }

  if (errors.length === 0) {
    if (st.vdev === undefined) errors.push("no vdev specified");
    else if (st.target === undefined && !st.cdrom) errors.push("no target specified (and device not removable)");
  }
  if (errors.length > 0) return E.left(errors);

  let format: DiskFormat = st.format ?? "raw";
  if (st.cdrom) {
    if (st.target === undefined || st.target === "") format = "empty";
    if (st.readwrite && st.accessGiven !== undefined && st.accessGiven !== "") warnings.push(`access=${st.accessGiven} ignored: a cdrom is read-only`);
  }
  const colo = Object.keys(st.colo).length > 0 ? { colo: st.colo as DiskColo } : {};
  const diskSpec: DiskSpec = {
    ...(st.target === undefined ? {} : { target: st.target }),
    format,
    vdev: st.vdev!,
    access: st.readwrite && !st.cdrom ? "rw" : "ro",
    devtype: st.cdrom ? "cdrom" : "disk",
    ...(st.backend === undefined ? {} : { backend: st.backend }),
    ...(st.backendtype === undefined ? {} : { backendtype: st.backendtype }),
    ...(st.script === undefined ? {} : { script: st.script }),
    ...(st.specification === undefined ? {} : { specification: st.specification }),
    directIoSafe: st.directIoSafe,
    ...(st.discard === undefined ? {} : { discard: st.discard }),
    ...(st.trusted === undefined ? {} : { trusted: st.trusted }),
    ...colo,
  };
  return E.right({ spec: diskSpec, warnings });
}
