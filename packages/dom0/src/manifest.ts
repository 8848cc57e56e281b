/**
 * The boot manifest: what dom0 builds at boot, handed to it by the host as
 * its boot module (`start_info.mod_start`/`mod_len`, where Xen puts dom0's
 * initrd). JSON, validated with io-ts: a bad manifest is refused with every
 * problem named by its path.
 *
 * ```json
 * {
 *   "domains": [
 *     { "name": "ping", "kernel": "file:///…/ping.js", "memory": 1, "cmdline": "role=ping port=${port.bell}" },
 *     { "name": "pong", "kernel": "file:///…/pong.js", "memory": 1, "cmdline": "role=pong peer=${domid.ping} port=${port.bell}" }
 *   ],
 *   "channels": [{ "name": "bell", "from": "ping", "to": "pong" }],
 *   "consoleLinks": [{ "from": "ping", "to": "pong" }]
 * }
 * ```
 *
 * `xenstored.socket`, when given, is where xenstored listens for host
 * programs (the `XENSTORED_PATH` of Debian's `xenstore-*` clients); dom0 then
 * stays up after its domains are gone, until told to stop by writing
 * `poweroff` to `/local/domain/0/control/shutdown`.
 *
 * `console.socketDir`, when given, is where the console daemon offers each
 * domain's console to host programs (`<dir>/<domid>`, and `<dir>/<name>`).
 *
 * `control.socket`, when given, is where `xl` reaches the toolstack (the
 * control protocol of `control-protocol.ts`); dom0 then stays up after its
 * domains are gone, as with a XenStore socket, until `xl` asks for
 * `host-shutdown` (or `poweroff` is written to dom0's `control/shutdown`).
 *
 * When dom0 is told to stop while domains still run, it first asks each to
 * power off (`control/shutdown`), as `xendomains stop` does, and destroys
 * those still running after `shutdownTimeout` seconds (default 30).
 *
 * `memory` is in MiB, as in xl.cfg. A channel is an event channel port
 * allocated in `from` and offered to `to`, the way libxl sets up a console's;
 * command lines may name domids and ports: `${domid.NAME}`, and for a
 * channel `${port.NAME}` (its port in `from`). A console link types every
 * line `from` prints into the console of `to`, a null-modem cable between
 * two consoles.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { PathReporter } from "io-ts/lib/PathReporter.js";

const Name = t.refinement(t.string, (s) => /^[A-Za-z0-9_.-]{1,64}$/.test(s), "Name");
const Positive = t.refinement(t.number, (n) => Number.isInteger(n) && n > 0, "PositiveInteger");

const Mac = t.refinement(t.string, (s) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s), "MacAddress");

/**
 * A virtual disk: `target` is a raw image file on the host, or `"memory"` for
 * a disk held in dom0's memory (`size` MiB); `vdev` is the guest's name for
 * it (`xvda`...); `mode` `"w"` (default) or `"r"`.
 */
export const DiskEntry = t.intersection([t.type({ vdev: t.string, target: t.string }), t.partial({ size: Positive, mode: t.union([t.literal("w"), t.literal("r")]) })]);

/** A virtual network interface on `bridge` (default `xenbr0`), served by dom0 or by the named `backend` domain. */
export const VifEntry = t.partial({ mac: Mac, bridge: Name, backend: Name });

/** One domain to build. */
export const DomainEntry = t.intersection([
  t.type({ name: Name, kernel: t.string, memory: Positive }),
  t.partial({ vcpus: Positive, cmdline: t.string, disks: t.array(DiskEntry), vifs: t.array(VifEntry) }),
]);

/** The manifest. */
export const Manifest = t.intersection([
  t.type({ domains: t.array(DomainEntry) }),
  t.partial({
    channels: t.array(t.type({ name: Name, from: Name, to: Name })),
    consoleLinks: t.array(t.type({ from: Name, to: Name })),
    xenstored: t.partial({ socket: t.string }),
    console: t.partial({ socketDir: t.string }),
    control: t.partial({ socket: t.string }),
    bridges: t.array(t.intersection([t.type({ name: Name }), t.partial({ pcap: t.string })])),
    shutdownTimeout: t.union([Positive, t.literal(0)]),
  }),
]);

/** How long, in seconds, a stopping dom0 waits for its guests to power off when the manifest does not say. */
export const DEFAULT_SHUTDOWN_TIMEOUT_S = 30;

/** A decoded manifest. */
export type Manifest = t.TypeOf<typeof Manifest>;

/** Decodes and checks a manifest: JSON, shape, and that every name it uses is defined once. */
export function parseManifest(bytes: Uint8Array): E.Either<string[], Manifest> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return E.left([`boot manifest is not JSON: ${(e as Error).message}`]);
  }
  const decoded = Manifest.decode(json);
  if (E.isLeft(decoded)) return E.left(PathReporter.report(decoded).map((m) => `boot manifest: ${m}`));
  const m = decoded.right;
  const problems: string[] = [];
  const names = new Set<string>();
  for (const d of m.domains) {
    if (names.has(d.name)) problems.push(`boot manifest: domain name "${d.name}" is used twice`);
    names.add(d.name);
  }
  const channels = new Set<string>();
  for (const c of m.channels ?? []) {
    if (channels.has(c.name)) problems.push(`boot manifest: channel name "${c.name}" is used twice`);
    channels.add(c.name);
    for (const end of [c.from, c.to]) if (!names.has(end)) problems.push(`boot manifest: channel "${c.name}" names unknown domain "${end}"`);
  }
  for (const l of m.consoleLinks ?? []) for (const end of [l.from, l.to]) if (!names.has(end)) problems.push(`boot manifest: console link names unknown domain "${end}"`);
  for (const d of m.domains) {
    const vdevs = new Set<string>();
    for (const disk of d.disks ?? []) {
      if (vdevToDevid(disk.vdev) === undefined) problems.push(`domain "${d.name}": disk vdev "${disk.vdev}" is not a xvd/hd/sd name`);
      if (vdevs.has(disk.vdev)) problems.push(`domain "${d.name}": disk vdev "${disk.vdev}" is used twice`);
      vdevs.add(disk.vdev);
      if (disk.target === "memory" && disk.size === undefined) problems.push(`domain "${d.name}": memory disk "${disk.vdev}" needs a size`);
    }
    for (const vif of d.vifs ?? []) if (vif.backend !== undefined && !names.has(vif.backend)) problems.push(`domain "${d.name}": vif backend names unknown domain "${vif.backend}"`);
  }
  for (const d of m.domains) {
    for (const [, kind, name] of (d.cmdline ?? "").matchAll(/\$\{(\w+)\.([A-Za-z0-9_.-]+)\}/g)) {
      const known = kind === "domid" ? names : kind === "port" ? channels : undefined;
      if (known === undefined) problems.push(`domain "${d.name}": unknown placeholder kind "${kind}" in its cmdline`);
      else if (!known.has(name!)) problems.push(`domain "${d.name}": cmdline names unknown ${kind === "domid" ? "domain" : "channel"} "${name}"`);
    }
  }
  return problems.length > 0 ? E.left(problems) : E.right(m);
}

/** Replaces `${domid.NAME}` and `${port.NAME}` in a command line. */
export function substitute(cmdline: string, domids: ReadonlyMap<string, number>, ports: ReadonlyMap<string, number>): string {
  return cmdline.replace(/\$\{(\w+)\.([A-Za-z0-9_.-]+)\}/g, (_, kind: string, name: string) => String((kind === "domid" ? domids : ports).get(name)));
}

/**
 * The virtual-device number of a disk name, as Linux and libxl number them
 * (`xen-vbd-interface.7`): `xvdX` is 202 << 8 | (X * 16), `hdX`/`sdX` map to
 * their IDE and SCSI majors. Undefined for a name that is none of these.
 */
export function vdevToDevid(vdev: string): number | undefined {
  const m = /^(xvd|hd|sd)([a-z])$/.exec(vdev);
  if (m === null) return undefined;
  const disk = m[2]!.charCodeAt(0) - 97;
  switch (m[1]) {
    case "xvd":
      return (202 << 8) | (disk << 4);
    case "hd":
      return disk < 2 ? (3 << 8) | (disk << 6) : (22 << 8) | ((disk - 2) << 6);
    default:
      return (8 << 8) | (disk << 4);
  }
}
