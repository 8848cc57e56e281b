/**
 * The control protocol: how `xl` talks to dom0's toolstack over
 * `<run-dir>/control.sock`, as real `xl` talks to libxl in dom0.
 *
 * One JSON object per line each way. A request names an operation and its
 * arguments; the reply carries the request's `id` and either a result or an
 * error message meant for a person (xl prints it on stderr and exits
 * non-zero). Both ends decode with io-ts: a malformed line gets an error
 * reply naming what was wrong, never a crash.
 *
 * ```
 * → {"id":1,"op":"list","args":{}}
 * ← {"id":1,"ok":true,"result":[{"domid":0,"name":"Domain-0",...}]}
 * → {"id":2,"op":"destroy","args":{"domain":"web"}}
 * ← {"id":2,"ok":false,"error":"domain web does not exist"}
 * ```
 *
 * Domains are named by name or domid (`domain`: a string or number), as xl
 * accepts either.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { PathReporter } from "io-ts/lib/PathReporter.js";

const Nat = t.refinement(t.number, (n) => Number.isInteger(n) && n >= 0, "NonNegativeInteger");
const Pos = t.refinement(t.number, (n) => Number.isInteger(n) && n > 0, "PositiveInteger");

/** A domain named by name or domid. */
export const DomainRef = t.union([t.string, Nat]);
/** A domain named by name or domid. */
export type DomainRef = t.TypeOf<typeof DomainRef>;

/** What to do when a domain powers off, reboots, crashes or its watchdog fires (`on_*` in xl.cfg). */
export const Action = t.keyof({ destroy: null, restart: null, preserve: null });
/** What to do when a domain powers off, reboots, crashes or its watchdog fires (`on_*` in xl.cfg). */
export type Action = t.TypeOf<typeof Action>;

/** A disk to attach: a raw image file (or `"memory"` with `size` MiB), the guest's name for it, and the access. */
export const DiskRequest = t.intersection([
  t.type({ target: t.string, vdev: t.string, mode: t.keyof({ r: null, w: null }) }),
  t.partial({ size: Pos }),
]);
/** A disk to attach. */
export type DiskRequest = t.TypeOf<typeof DiskRequest>;

/** A network interface to attach: its MAC (the toolstack picks one if absent), bridge, and backend domain. */
export const VifRequest = t.partial({ mac: t.string, bridge: t.string, backend: DomainRef });
/** A network interface to attach. */
export type VifRequest = t.TypeOf<typeof VifRequest>;

/** A domain to create, as xl hands its parsed config to the toolstack. */
export const CreateRequest = t.type({
  name: t.string,
  kernel: t.string,
  memoryMiB: Pos,
  maxMemMiB: Pos,
  vcpus: Pos,
  cmdline: t.string,
  weight: Pos,
  cap: Nat,
  onPoweroff: Action,
  onReboot: Action,
  onCrash: Action,
  onWatchdog: Action,
  disks: t.array(DiskRequest),
  vifs: t.array(VifRequest),
});
/** A domain to create. */
export type CreateRequest = t.TypeOf<typeof CreateRequest>;

/** Every operation, with its arguments. */
export const Request = t.intersection([
  t.type({ id: Nat }),
  t.union([
    t.type({ op: t.literal("list"), args: t.type({}) }),
    t.type({ op: t.literal("create"), args: t.type({ config: CreateRequest, paused: t.boolean }) }),
    t.type({ op: t.keyof({ destroy: null, pause: null, unpause: null }), args: t.type({ domain: DomainRef }) }),
    t.type({ op: t.keyof({ shutdown: null, reboot: null }), args: t.type({ domain: DomainRef, wait: t.boolean }) }),
    t.type({ op: t.keyof({ info: null, dmesg: null, uptime: null, top: null, "host-shutdown": null }), args: t.type({}) }),
    t.type({ op: t.keyof({ "mem-set": null, "mem-max": null }), args: t.type({ domain: DomainRef, memKiB: Pos }) }),
    t.type({ op: t.literal("vcpu-list"), args: t.partial({ domain: DomainRef }) }),
    t.type({ op: t.literal("sched-credit"), args: t.partial({ domain: DomainRef, weight: Pos, cap: Nat }) }),
    t.type({ op: t.literal("console"), args: t.type({ domain: DomainRef }) }),
    t.type({ op: t.literal("block-attach"), args: t.type({ domain: DomainRef, disk: DiskRequest }) }),
    t.type({ op: t.literal("block-detach"), args: t.type({ domain: DomainRef, vdev: t.string }) }),
    t.type({ op: t.literal("network-attach"), args: t.type({ domain: DomainRef, vif: VifRequest }) }),
    t.type({ op: t.literal("network-detach"), args: t.type({ domain: DomainRef, devid: Nat }) }),
    t.type({ op: t.keyof({ "block-list": null, "network-list": null }), args: t.type({ domain: DomainRef }) }),
  ]),
]);
/** A request line. */
export type Request = t.TypeOf<typeof Request>;

/** A reply line. */
export type Reply = { readonly id: number; readonly ok: true; readonly result: unknown } | { readonly id: number; readonly ok: false; readonly error: string };

/** A domain as `list` reports it (xl list's columns, and more for `list -l`). */
export interface DomainSummary {
  /** Its domid. */
  readonly domid: number;
  /** Its name. */
  readonly name: string;
  /** Memory it has, KiB. */
  readonly memKiB: number;
  /** Its maximum, KiB. */
  readonly maxMemKiB: number;
  /** vCPUs online. */
  readonly vcpus: number;
  /** xl's state column: six flags `rbpscd` (running, blocked, paused, shutdown, crashed, dying), `-` where unset. */
  readonly state: string;
  /** CPU time used, ns. */
  readonly cpuNs: number;
  /** The config it was created from (not for dom0). */
  readonly config?: CreateRequest;
}

/**
 * Decodes one request line. A line that is not JSON, or not a request the
 * protocol knows, gives an error naming what was wrong (and the id, when
 * one could be read, so the reply can carry it).
 */
export function decodeRequest(line: string): E.Either<{ readonly id: number; readonly error: string }, Request> {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    return E.left({ id: 0, error: `control request is not JSON: ${(e as Error).message}` });
  }
  const id = typeof json === "object" && json !== null && Number.isInteger((json as { id?: unknown }).id) ? ((json as { id: number }).id) : 0;
  const decoded = Request.decode(json);
  if (E.isLeft(decoded)) {
    const op = typeof json === "object" && json !== null ? (json as { op?: unknown }).op : undefined;
    return E.left({ id, error: `bad control request${typeof op === "string" ? ` "${op}"` : ""}: ${PathReporter.report(decoded).slice(0, 3).join("; ")}` });
  }
  return E.right(decoded.right);
}

/** Encodes a reply as one line. */
export function encodeReply(reply: Reply): string {
  return `${JSON.stringify(reply)}\n`;
}
