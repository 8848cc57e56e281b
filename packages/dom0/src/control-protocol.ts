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
 * accepts either; a string of digits is a domid.
 *
 * What each operation answers (`result`):
 *
 * | op | result |
 * | --- | --- |
 * | `list` | {@link DomainSummary}[] |
 * | `create` | {@link CreateResult} |
 * | `destroy`, `pause`, `unpause` | {@link DomainAck} |
 * | `shutdown`, `reboot` | {@link DomainAck}; with `wait`, {@link ShutdownResult} once it has gone |
 * | `mem-set`, `mem-max` | {@link MemoryResult} |
 * | `vcpu-list` | {@link VcpuSummary}[] |
 * | `sched-credit` | {@link SchedCreditEntry}[] (every domain without `domain`) |
 * | `info` | {@link HostInfo} |
 * | `dmesg` | {@link DmesgResult} (`clear`: the next read starts after this one, as `xl dmesg -c`) |
 * | `uptime` | {@link UptimeEntry}[] |
 * | `top` | {@link TopEntry}[] |
 * | `console` | {@link ConsoleResult} |
 * | `block-attach`, `network-attach` | {@link AttachResult} |
 * | `block-detach`, `network-detach` | {@link DomainAck} |
 * | `block-list` | {@link BlockDeviceSummary}[] |
 * | `network-list` | {@link NetworkDeviceSummary}[] |
 * | `host-shutdown` | `null`, once every guest has powered off or been destroyed; then dom0 powers off |
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";

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

/** Each operation (or family of operations) with its arguments. */
const OPERATIONS = [
    t.type({ op: t.literal("list"), args: t.type({}) }),
    t.type({ op: t.literal("create"), args: t.type({ config: CreateRequest, paused: t.boolean }) }),
    t.type({ op: t.keyof({ destroy: null, pause: null, unpause: null }), args: t.type({ domain: DomainRef }) }),
    t.type({ op: t.keyof({ shutdown: null, reboot: null }), args: t.type({ domain: DomainRef, wait: t.boolean }) }),
    t.type({ op: t.keyof({ info: null, uptime: null, top: null, "host-shutdown": null }), args: t.type({}) }),
    t.type({ op: t.literal("dmesg"), args: t.partial({ clear: t.boolean }) }),
    t.type({ op: t.keyof({ "mem-set": null, "mem-max": null }), args: t.type({ domain: DomainRef, memKiB: Pos }) }),
    t.type({ op: t.literal("vcpu-list"), args: t.partial({ domain: DomainRef }) }),
    t.type({ op: t.literal("sched-credit"), args: t.partial({ domain: DomainRef, weight: Pos, cap: Nat }) }),
    t.type({ op: t.literal("console"), args: t.type({ domain: DomainRef }) }),
    t.type({ op: t.literal("block-attach"), args: t.type({ domain: DomainRef, disk: DiskRequest }) }),
    t.type({ op: t.literal("block-detach"), args: t.type({ domain: DomainRef, vdev: t.string }) }),
    t.type({ op: t.literal("network-attach"), args: t.type({ domain: DomainRef, vif: VifRequest }) }),
    t.type({ op: t.literal("network-detach"), args: t.type({ domain: DomainRef, devid: Nat }) }),
  t.type({ op: t.keyof({ "block-list": null, "network-list": null }), args: t.type({ domain: DomainRef }) }),
] as const;

/** Every operation, with its arguments. */
export const Request = t.intersection([t.type({ id: Nat }), t.union([...OPERATIONS])]);
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

/** What `create` answers: the new domain. */
export interface CreateResult {
  /** Its domid. */
  readonly domid: number;
  /** Its name. */
  readonly name: string;
}

/** What `destroy`, `pause`, `unpause`, `shutdown` and `reboot` without `wait` answer: the domain acted on. */
export type DomainAck = CreateResult;

/** Why a domain shut down (`SHUTDOWN_*`), or `"destroyed"` if it was destroyed without shutting down first. */
export type ShutdownReasonName = "poweroff" | "reboot" | "suspend" | "crash" | "watchdog" | "soft_reset" | "destroyed";

/**
 * What `shutdown` and `reboot` with `wait` answer once the domain has shut
 * down (or been destroyed), as `xl shutdown -w` waits for either: why it
 * went, and what the toolstack did about it (its `on_*` action).
 */
export interface ShutdownResult extends CreateResult {
  /** Why it went. */
  readonly reason: ShutdownReasonName;
  /** The action applied; `"destroy"` too when it was destroyed outright. */
  readonly action: Action;
  /** With `"restart"`: the domid of the domain built again in its place (absent if that failed). */
  readonly restartedAs?: number;
}

/** What `mem-set` and `mem-max` answer: the domain's memory settings afterwards, KiB. */
export interface MemoryResult extends CreateResult {
  /** `memory/target`: what the balloon driver aims for. */
  readonly targetKiB: number;
  /** `memory/static-max`: the most the domain may be given. */
  readonly staticMaxKiB: number;
}

/** One vCPU, as `vcpu-list` reports it (xl vcpu-list's columns). */
export interface VcpuSummary {
  /** Its domain. */
  readonly domid: number;
  /** Its domain's name. */
  readonly name: string;
  /** The vCPU id. */
  readonly vcpu: number;
  /** The pCPU it is on, or -1 if offline (pvkit does not track pCPUs per vCPU: 0 when online). */
  readonly cpu: number;
  /** xl's state column: `r` running, `b` blocked, `p` offline (as xl spells it), `-` where unset. */
  readonly state: string;
  /** Online. */
  readonly online: boolean;
  /** Blocked, waiting for an event. */
  readonly blocked: boolean;
  /** On a pCPU now. */
  readonly running: boolean;
  /** Time it has run, ns. */
  readonly cpuNs: number;
  /** Its hard affinity, as xl prints it (every pCPU: `all`). */
  readonly affinity: string;
}

/** A domain's credit scheduler parameters, as `sched-credit` reports them. */
export interface SchedCreditEntry extends CreateResult {
  /** Relative weight. */
  readonly weight: number;
  /** Cap, percent of one pCPU; 0 is none. */
  readonly cap: number;
}

/**
 * The host, as `xl info` prints it: xl's field names, in xl's order, so a
 * client prints `name : value` per key. Memory is in MiB.
 */
export interface HostInfo {
  readonly host: string;
  readonly release: string;
  readonly version: string;
  readonly machine: string;
  readonly nr_cpus: number;
  readonly max_cpu_id: number;
  readonly nr_nodes: number;
  readonly cores_per_socket: number;
  readonly threads_per_core: number;
  readonly cpu_mhz: string;
  readonly hw_caps: string;
  readonly virt_caps: string;
  readonly total_memory: number;
  readonly free_memory: number;
  readonly sharing_freed_memory: number;
  readonly sharing_used_memory: number;
  readonly outstanding_claims: number;
  readonly free_cpus: number;
  readonly xen_major: number;
  readonly xen_minor: number;
  readonly xen_extra: string;
  readonly xen_version: string;
  readonly xen_caps: string;
  readonly xen_scheduler: string;
  readonly xen_pagesize: number;
  readonly platform_params: string;
  readonly xen_changeset: string;
  readonly xen_commandline: string;
  readonly cc_compiler: string;
  readonly cc_compile_by: string;
  readonly cc_compile_domain: string;
  readonly cc_compile_date: string;
  readonly build_id: string;
  readonly xend_config_format: number;
}

/** What `dmesg` answers: Xen's console ring, as text. */
export interface DmesgResult {
  /** The ring's text (lines end in newlines). */
  readonly text: string;
}

/** One domain's uptime, as `uptime` reports it. */
export interface UptimeEntry extends CreateResult {
  /** Time since it was built (dom0: since the host booted), ns of the host's clock. */
  readonly uptimeNs: number;
}

/** Block I/O counters of a vbd, or a domain's vbds summed (`xl top`'s VBD columns, Linux blkback's `statistics/`). */
export interface VbdCounters {
  /** Requests taken off the rings. */
  readonly requests: number;
  /** Of them, answered with an error. */
  readonly errors: number;
  /** Requests that waited for a free request slot (`oo_req`, VBD_OO; pvkit's blkback never makes one wait: 0). */
  readonly ooReq: number;
  /** Reads (`rd_req`, VBD_RD). */
  readonly rdReq: number;
  /** Writes (`wr_req`, VBD_WR). */
  readonly wrReq: number;
  /** Sectors read (`rd_sect`, VBD_RSECT). */
  readonly rdSect: number;
  /** Sectors written (`wr_sect`, VBD_WSECT). */
  readonly wrSect: number;
}

/** One vbd's counters, for `xl top -x`. */
export interface VbdDeviceCounters extends VbdCounters {
  /** Its virtual-device number. */
  readonly devid: number;
}

/** Network counters of a domain's vifs, summed, from the guest's side (`xl top`'s NET columns). */
export interface VifCounters {
  /** Frames the guest sent. */
  readonly txFrames: number;
  /** Their bytes. */
  readonly txBytes: number;
  /** Frames the guest received. */
  readonly rxFrames: number;
  /** Their bytes. */
  readonly rxBytes: number;
}

/** One domain as `top` reports it. */
export interface TopEntry extends CreateResult {
  /** xl's six-letter state. */
  readonly state: string;
  /** CPU time used, ns. */
  readonly cpuNs: number;
  /** Memory it has, KiB. */
  readonly memKiB: number;
  /** Its maximum, KiB. */
  readonly maxMemKiB: number;
  /** vCPUs online. */
  readonly vcpus: number;
  /** Its vbds. */
  readonly vbds: number;
  /** Its vifs. */
  readonly vifs: number;
  /** Block counters, from the back ends dom0 runs (zeros for devices it does not serve). */
  readonly vbd: VbdCounters;
  /** The same per vbd, for those whose back end dom0 runs and has connected. */
  readonly vbdDevices: readonly VbdDeviceCounters[];
  /** Network counters, likewise. */
  readonly net: VifCounters;
}

/** A split device's two ends, as `block-list` and `network-list` report them. */
export interface DeviceSummary {
  /** The device id (a vbd's virtual-device number, a vif's handle). */
  readonly devid: number;
  /** The backend's domain. */
  readonly backendDomid: number;
  /** The frontend's `XenbusState`. */
  readonly state: number;
  /** The backend's `XenbusState`. */
  readonly backendState: number;
  /** The event channel the frontend published, or -1. */
  readonly eventChannel: number;
  /** The backend's directory. */
  readonly backendPath: string;
}

/** A vbd, as `block-list` reports it (xl block-list's columns, and the disk's settings). */
export interface BlockDeviceSummary extends DeviceSummary {
  /** The guest's name for it (`xvda`), from the backend's `dev`. */
  readonly vdev: string;
  /** The grant reference of its ring's first page, or -1. */
  readonly ringRef: number;
  /** The backing file, or `memory`. */
  readonly target: string;
  /** `r` or `w`. */
  readonly mode: string;
}

/** A vif, as `network-list` reports it. */
export interface NetworkDeviceSummary extends DeviceSummary {
  /** Its MAC address. */
  readonly mac: string;
  /** The bridge it is a port of. */
  readonly bridge: string;
  /** Grant references of its TX and RX rings, or -1. */
  readonly txRingRef: number;
  /** Likewise. */
  readonly rxRingRef: number;
}

/** What `console` answers: where to connect to the domain's console. */
export interface ConsoleResult extends CreateResult {
  /** The Unix socket of its console: connect, read its output, write to type. */
  readonly socket: string;
}

/** What `block-attach` and `network-attach` answer: the device made. */
export interface AttachResult extends CreateResult {
  /** Its device id. */
  readonly devid: number;
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
  if (typeof json !== "object" || json === null || Array.isArray(json)) return E.left({ id: 0, error: `bad control request: expected an object { id, op, args }, got ${brief(json)}` });
  const { id, op } = json as { id?: unknown; op?: unknown };
  const replyId = Number.isInteger(id) ? (id as number) : 0;
  if (typeof op !== "string") return E.left({ id: replyId, error: `bad control request: op: expected an operation name, got ${brief(op)}` });
  // Decode against the one operation named, so the error is about its arguments, not every other operation's.
  const operation = OPERATIONS.find((o) => o.props.op.is(op));
  if (operation === undefined) return E.left({ id: replyId, error: `bad control request ${brief(op, 40)}: unknown operation` });
  const decoded = t.intersection([t.type({ id: Nat }), operation]).decode(json);
  if (E.isLeft(decoded)) {
    // A union (a domain is a name or a domid) fails once per member: one problem per path.
    const problems = new Map(decoded.left.map((e) => [...describeError(e)]));
    const [path, what] = problems.entries().next().value!;
    const rest = problems.size === 1 ? "" : ` (and ${problems.size - 1} more)`;
    return E.left({ id: replyId, error: `bad control request "${op}": ${path}: ${what}${rest}` });
  }
  return E.right(decoded.right as Request);
}

/** A value in a message: its JSON, a string cut to `max` characters. */
function brief(value: unknown, max = 60): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
  const s = JSON.stringify(value);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * A decoding error as its path and problem: `args.memKiB` and
 * `expected PositiveInteger, got -1`. The path is the object keys (not the
 * members of unions and intersections); the type is the one at that path.
 */
function describeError(e: t.ValidationError): [string, string] {
  const isMember = (i: number) => i === 0 || e.context[i - 1]!.type instanceof t.UnionType || e.context[i - 1]!.type instanceof t.IntersectionType;
  let at = 0;
  const keys: string[] = [];
  e.context.forEach((c, i) => {
    if (isMember(i)) return;
    keys.push(c.key);
    at = i;
  });
  return [keys.join("."), e.value === undefined ? "missing" : `expected ${e.context[at]!.type.name}, got ${brief(e.value)}`];
}

/** Encodes a reply as one line. */
export function encodeReply(reply: Reply): string {
  return `${JSON.stringify(reply)}\n`;
}
