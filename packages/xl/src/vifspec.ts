/**
 * The vifspec of `xl-network-configuration(5)`: one item of
 * `vif = [ ... ]`, read as xl reads it (`parse_nic_config` in
 * `tools/xl/xl_parse.c`, `xlu_vif_parse_rate` in
 * `tools/libs/util/libxlu_vif.c`).
 *
 * A vifspec is comma-separated `key=value` pairs, every one optional; the
 * empty string `''` is a NIC with every default. Empty items are skipped and
 * spaces before an item are ignored.
 *
 * ```
 * 'mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0'
 * 'bridge=xenbr1, rate=10Mb/s@20ms'
 * ''
 * ```
 *
 * Keys: `mac`, `bridge`, `gatewaydev` (and its deprecated alias `netdev`),
 * `type` (`vif` or `ioemu`, HVM only), `model` (HVM only), `vifname`,
 * `script`, `ip`, `backend`, `rate`, `devid`, `mtu`, the flags `trusted` and
 * `untrusted`, and the COLO keys (`forwarddev`, `colo_*`), kept apart.
 * `accel` is ignored with a warning, as xl ignores it. Anything else is
 * kept in {@link VifSpec.unknown} and reported as a warning: xl prints
 * "unrecognized argument" and goes on.
 *
 * A `mac` is six groups of hex digits separated by colons; it is normalised
 * to lowercase `00:16:3e:74:3d:76`. Without one the toolstack picks an
 * address in Xen's OUI {@link XEN_OUI}, as libxl does, so the spec leaves it
 * undefined.
 *
 * A `rate` is `RATE/s` or `RATE/s@INTERVAL`: RATE in bytes (`B`, `KB`, `MB`,
 * `GB`) or bits (`b`, `Kb`, `Mb`, `Gb`), decimal multiples of 1000;
 * INTERVAL in `s`, `ms` or `us` (default 50ms). It becomes a credit of
 * bytes per interval, as libxlu computes it.
 *
 * Where pvkit is stricter than xl: an invalid value (`mac`, `type`, `rate`,
 * `devid`, `mtu`) is an error, where xl prints a message and still creates
 * the NIC; `devid` and `mtu` must be plain decimal numbers.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/** The Organizationally Unique Identifier Xen's toolstack uses for the MACs it generates: `00:16:3e`. */
export const XEN_OUI = "00:16:3e";

/** A rate limit: a credit of bytes refilled every interval. */
export interface VifRate {
  /** The `rate=` value as written. */
  readonly text: string;
  /** Bytes the guest may send per interval (libxl's `rate_bytes_per_interval`). */
  readonly bytesPerInterval: number;
  /** The refill interval in microseconds (libxl's `rate_interval_usecs`). */
  readonly intervalUsecs: number;
}

/** A parsed vifspec. Absent keys are undefined: the toolstack applies its defaults (bridge `xenbr0`, a MAC in {@link XEN_OUI}...). */
export interface VifSpec {
  /** `mac=`, normalised to lowercase `xx:xx:xx:xx:xx:xx`. */
  readonly mac?: string;
  /** `bridge=`: the host bridge to join. */
  readonly bridge?: string;
  /** `gatewaydev=` (or the deprecated `netdev=`). */
  readonly gatewaydev?: string;
  /** `type=`: `vif` (PV only) or `ioemu` (emulated too); HVM only. */
  readonly type?: "vif" | "ioemu";
  /** `model=`: the emulated NIC model; HVM only. */
  readonly model?: string;
  /** `vifname=`: the backend device's name. */
  readonly vifname?: string;
  /** `script=`: the hotplug script. */
  readonly script?: string;
  /** `ip=`: the address the hotplug script may filter on. */
  readonly ip?: string;
  /** `backend=`: the name of the driver domain serving the NIC (default dom0). */
  readonly backend?: string;
  /** `rate=`: the transmit rate limit. */
  readonly rate?: VifRate;
  /** `devid=`: the device number, instead of the NIC's index. */
  readonly devid?: number;
  /** `mtu=`. */
  readonly mtu?: number;
  /** `trusted` (true) or `untrusted` (false); undefined when neither is given. */
  readonly trusted?: boolean;
  /** COLO settings (`forwarddev` and `colo_*`), by key, when any is given. */
  readonly colo?: Readonly<Record<string, string>>;
  /** Items xl does not recognise, as written (`foo=bar`); kept, and reported as warnings. */
  readonly unknown: readonly string[];
}

/** A parsed vifspec and the remarks on it that are not errors. */
export interface ParsedVifSpec {
  /** The NIC. */
  readonly spec: VifSpec;
  /** Remarks (unknown items, deprecated or ignored keys), each naming the item. */
  readonly warnings: readonly string[];
}

const COLO_KEYS = new Set([
  "forwarddev",
  ...["mirror", "compare_pri_in", "compare_sec_in", "compare_notify", "redirector0", "redirector1", "redirector2", "sec_redirector0", "sec_redirector1"].flatMap((n) =>
    ["id", "ip", "port"].map((p) => `colo_sock_${n}_${p}`),
  ),
  "colo_filter_mirror_queue",
  "colo_filter_mirror_outdev",
  ...["redirector0", "redirector1", "sec_redirector0", "sec_redirector1"].flatMap((n) => ["queue", "indev", "outdev"].map((p) => `colo_filter_${n}_${p}`)),
  "colo_filter_sec_rewriter0_queue",
  "colo_compare_pri_in",
  "colo_compare_sec_in",
  "colo_compare_out",
  "colo_compare_notify_dev",
  "colo_checkpoint_host",
  "colo_checkpoint_port",
]);

/** Parses a MAC address (`00:16:3E:74:3d:76`) to lowercase two-digit form; undefined if it is not six colon-separated hex bytes. */
export function parseMac(text: string): string | undefined {
  const parts = text.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) return undefined;
  return parts.map((p) => p.toLowerCase().padStart(2, "0")).join(":");
}

const UINT32_MAX = 0xffffffffn;
const UINT64_MAX = 0xffffffffffffffffn;

/**
 * Parses a `rate=` value as libxlu does: `RATE/s[@INTERVAL]` to bytes per
 * interval. Left: why it is not a rate (`invalid rate`, `rate overflow`...).
 */
export function parseVifRate(text: string): E.Either<string[], VifRate> {
  const at = text.indexOf("@");
  const rate = at < 0 ? text : text.slice(0, at);
  const interval = at < 0 ? undefined : text.slice(at + 1);
  if (rate === "") return E.left([`no rate specified in ${JSON.stringify(text)}`]);
  const r = /^([0-9]+)([GMK]?)([Bb])\/s$/.exec(rate);
  if (r === null) return E.left([`invalid rate ${JSON.stringify(rate)} (RATE/s, RATE in B, KB, MB, GB or b, Kb, Mb, Gb)`]);
  let bytesPerSec = BigInt(r[1]!);
  if (bytesPerSec === 0n || bytesPerSec > UINT32_MAX) return E.left([`rate overflow in ${JSON.stringify(rate)}`]);
  bytesPerSec *= { G: 1_000_000_000n, M: 1_000_000n, K: 1_000n, "": 1n }[r[2] as "G" | "M" | "K" | ""];
  if (r[3] === "b") bytesPerSec /= 8n;
  let usecs = 50_000n;
  if (interval !== undefined) {
    const m = /^([0-9]+)([mu]?)(s?)$/.exec(interval);
    if (m === null) return E.left([`invalid replenishment interval ${JSON.stringify(interval)} (a number of s, ms or us)`]);
    usecs = BigInt(m[1]!);
    if (usecs === 0n || usecs > UINT32_MAX) return E.left([`replenishment interval overflow in ${JSON.stringify(interval)}`]);
    usecs *= m[2] === "m" ? 1_000n : m[2] === "u" ? 1n : 1_000_000n;
    if (usecs > UINT32_MAX) return E.left([`replenishment interval overflow in ${JSON.stringify(interval)}`]);
  }
  if (bytesPerSec > UINT64_MAX / usecs) return E.left([`rate overflow in ${JSON.stringify(text)}`]);
  const bytesPerInterval = (bytesPerSec * usecs) / 1_000_000n;
  if (bytesPerInterval > BigInt(Number.MAX_SAFE_INTEGER)) return E.left([`rate overflow in ${JSON.stringify(text)} (pvkit's limit is 2^53-1 bytes per interval)`]);
  return E.right({ text, bytesPerInterval: Number(bytesPerInterval), intervalUsecs: Number(usecs) });
}

/**
 * Parses one vifspec. Left: every invalid value, each naming its item
 * (`mac=00:16:3e:zz:00:01: not a MAC address...`).
 */
export function parseVifSpec(spec: string): E.Either<string[], ParsedVifSpec> {
  const errors: string[] = [];
  const warnings: string[] = [];
  const out: {
    -readonly [K in keyof VifSpec]?: VifSpec[K];
  } = {};
  const colo: Record<string, string> = {};
  const unknown: string[] = [];

  for (const raw of spec.split(",")) {
    const item = raw.replace(/^ +/, "");
    if (item === "") continue;
    if (item === "trusted" || item === "untrusted") {
      out.trusted = item === "trusted";
      continue;
    }
    const eq = item.indexOf("=");
    if (eq < 0) {
      unknown.push(item);
      warnings.push(`unrecognized argument ${JSON.stringify(item)} (kept, not used)`);
      continue;
    }
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    switch (key) {
      case "mac": {
        const mac = parseMac(value);
        if (mac === undefined) errors.push(`mac=${value}: not a MAC address (six hex bytes separated by colons, e.g. ${XEN_OUI}:74:3d:76)`);
        else {
          if (parseInt(mac.slice(0, 2), 16) & 1) warnings.push(`mac=${value}: a multicast address (bit 0 of the first byte is set)`);
          out.mac = mac;
        }
        break;
      }
      case "type":
        if (value === "vif" || value === "ioemu") out.type = value;
        else errors.push(`type=${value}: invalid (vif or ioemu)`);
        break;
      case "bridge":
      case "gatewaydev":
      case "model":
      case "vifname":
      case "script":
      case "ip":
      case "backend":
        out[key] = value;
        break;
      case "netdev":
        warnings.push("netdev= is deprecated, use gatewaydev=");
        out.gatewaydev = value;
        break;
      case "rate": {
        const r = parseVifRate(value);
        if (E.isLeft(r)) errors.push(...r.left.map((m) => `rate=${value}: ${m}`));
        else out.rate = r.right;
        break;
      }
      case "devid":
      case "mtu": {
        const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
        const max = key === "mtu" ? 65535 : 0x7fffffff;
        if (!(n >= (key === "mtu" ? 68 : 0) && n <= max)) errors.push(`${key}=${value}: not a valid ${key} (${key === "mtu" ? "68 to 65535" : "a device number from 0"})`);
        else out[key] = n;
        break;
      }
      case "accel":
        warnings.push(`accel=${value}: the accel parameter for vifs is not supported, ignored`);
        break;
      default:
        if (COLO_KEYS.has(key)) colo[key] = value;
        else {
          unknown.push(item);
          warnings.push(`unrecognized argument ${JSON.stringify(item)} (kept, not used)`);
        }
    }
  }
  if (errors.length > 0) return E.left(errors);
  return E.right({ spec: { ...out, ...(Object.keys(colo).length > 0 ? { colo } : {}), unknown }, warnings });
}
