/**
 * The `xl` end of the control protocol (`@pvkit/dom0`'s
 * `control-protocol.ts`): a client of `<run-dir>/control.sock`, where dom0's
 * toolstack listens as libxl does in dom0 on Xen.
 *
 * One JSON object per line each way. {@link ControlClient.request} sends a
 * request with a fresh `id` and resolves with the `result` of the reply that
 * carries it; a reply with `ok: false` rejects with a {@link ControlError} of
 * kind `"refused"` whose message is dom0's, meant for a person. Replies are
 * decoded with io-ts: a line that is not a reply is a `"protocol"` error,
 * never a crash.
 *
 * The protocol fixes the requests; the shapes of most results are this
 * module's ({@link DomainSummaryCodec} and the `*Result` codecs below): what
 * xl needs to print what real xl prints. Each is decoded before use, so a
 * dom0 that answers differently gets an error naming the operation and the
 * field, not a garbled table.
 *
 * @module
 */
import { createConnection, type Socket } from "node:net";
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { PathReporter } from "io-ts/lib/PathReporter.js";
import { CreateRequest, type Request } from "@pvkit/dom0";

/** How a control request failed. */
export type ControlErrorKind =
  /** No host answers at the socket (no socket, or nobody listening). */
  | "unreachable"
  /** dom0 answered `ok: false`; the message is dom0's. */
  | "refused"
  /** A line that is not a reply, or a result xl cannot read. */
  | "protocol"
  /** No reply in time. */
  | "timeout"
  /** The connection closed before the reply came. */
  | "closed";

/** A failed control request; `message` is ready to print. */
export class ControlError extends Error {
  /** Creates an error of `kind`. */
  constructor(
    message: string,
    /** How it failed. */
    readonly kind: ControlErrorKind,
  ) {
    super(message);
    this.name = "ControlError";
  }
}

/** The operations of the protocol. */
export type ControlOp = Request["op"];

/** The arguments of operation `K`, as the protocol's `Request` codec defines them. */
export type ControlArgs<K extends ControlOp> = Request extends infer R ? (R extends { readonly op: infer O; readonly args: infer A } ? (K extends O ? A : never) : never) : never;

/** Options of a request. */
export interface RequestOptions {
  /** Give up after this long (ms); default: wait as long as the connection lasts. */
  readonly timeoutMs?: number;
}

const Nat = t.refinement(t.number, (n) => Number.isInteger(n) && n >= 0, "NonNegativeInteger");
const NonNeg = t.refinement(t.number, (n) => Number.isFinite(n) && n >= 0, "NonNegativeNumber");

const ReplyCodec = t.union([
  t.type({ id: Nat, ok: t.literal(true), result: t.unknown }),
  t.type({ id: Nat, ok: t.literal(false), error: t.string }),
]);

interface Pending {
  readonly op: string;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: ControlError) => void;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
}

/** Why connecting failed, in words: what a person should check. */
function unreachable(path: string, e: NodeJS.ErrnoException): ControlError {
  switch (e.code) {
    case "ENOENT":
      return new ControlError(`no pvkit host is running: there is no control socket at ${path} (start a host with \`pvkit up\`, or set PVKIT_RUN_DIR to its run directory)`, "unreachable");
    case "ECONNREFUSED":
      return new ControlError(`no pvkit host answers at ${path}: the socket refuses connections (a host that is gone, or one whose dom0 is still booting)`, "unreachable");
    case "EACCES":
      return new ControlError(`cannot connect to the pvkit host at ${path}: permission denied`, "unreachable");
    default:
      return new ControlError(`cannot connect to the pvkit host at ${path}: ${e.message}`, "unreachable");
  }
}

/** A connection to dom0's control socket. Requests may overlap; replies are matched by `id`. */
export class ControlClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffered = "";
  private closedWith: ControlError | undefined;

  private constructor(
    private readonly socket: Socket,
    /** The socket's path. */
    readonly path: string,
  ) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.receive(chunk));
    socket.on("error", (e) => this.fail(new ControlError(`control socket ${path}: ${e.message}`, "closed")));
    socket.on("close", () => this.fail(new ControlError(`the pvkit host closed the control connection (${path}) before answering`, "closed")));
  }

  /**
   * Connects to the control socket at `path`. Rejects with an
   * `"unreachable"` {@link ControlError} that says what to check when no
   * host listens there.
   */
  static connect(path: string, options: RequestOptions = {}): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              socket.destroy();
              reject(new ControlError(`no answer from the pvkit host at ${path} within ${options.timeoutMs} ms`, "timeout"));
            }, options.timeoutMs);
      const fail = (e: NodeJS.ErrnoException) => {
        if (timer !== undefined) clearTimeout(timer);
        reject(unreachable(path, e));
      };
      socket.once("error", fail);
      socket.once("connect", () => {
        if (timer !== undefined) clearTimeout(timer);
        socket.off("error", fail);
        resolve(new ControlClient(socket, path));
      });
    });
  }

  /**
   * Sends `op` with `args`; resolves with the reply's `result`. Rejects with
   * a {@link ControlError}: `"refused"` carrying dom0's message, or
   * `"closed"`, `"timeout"`, `"protocol"`.
   */
  request<K extends ControlOp>(op: K, args: ControlArgs<K>, options: RequestOptions = {}): Promise<unknown> {
    return this.requestRaw(op, args as object, options);
  }

  /**
   * Sends an operation the protocol may not define (yet), such as a
   * proposed one; dom0 answers an operation it does not know with an error
   * (see {@link isUnknownOperation}).
   */
  requestRaw(op: string, args: object, options: RequestOptions = {}): Promise<unknown> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(id);
              reject(new ControlError(`no reply to ${op} from the pvkit host within ${options.timeoutMs} ms`, "timeout"));
            }, options.timeoutMs);
      this.pending.set(id, { op, resolve, reject, timer });
      this.socket.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  /** Closes the connection; requests still waiting fail with `"closed"`. */
  close(): void {
    this.fail(new ControlError("control connection closed", "closed"));
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf("\n"); nl >= 0; nl = this.buffered.indexOf("\n")) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (line.trim() !== "") this.reply(line);
    }
  }

  private reply(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      this.failAll(new ControlError(`the pvkit host sent a line that is not JSON: ${line.slice(0, 200)}`, "protocol"));
      return;
    }
    const decoded = ReplyCodec.decode(json);
    if (E.isLeft(decoded)) {
      this.failAll(new ControlError(`the pvkit host sent a line that is not a control reply: ${PathReporter.report(decoded).slice(0, 2).join("; ")}`, "protocol"));
      return;
    }
    const r = decoded.right;
    let p = this.pending.get(r.id);
    // A request dom0 could not read at all is answered with id 0: it is the oldest one waiting.
    if (p === undefined && r.id === 0 && !r.ok) {
      const first = this.pending.keys().next();
      if (!first.done) p = this.pending.get(first.value);
      if (p !== undefined) this.pending.delete(first.value as number);
    } else this.pending.delete(r.id);
    if (p === undefined) return;
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (r.ok) p.resolve(r.result);
    else p.reject(new ControlError(r.error, "refused"));
  }

  private failAll(error: ControlError): void {
    for (const p of this.pending.values()) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(error);
    }
    this.pending.clear();
  }

  private fail(error: ControlError): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = error;
    this.failAll(error);
  }
}

/**
 * Whether `e` is dom0 refusing an operation it does not know, as its
 * request decoder answers one (`bad control request "trace": ...`).
 */
export function isUnknownOperation(e: unknown, op: string): boolean {
  return e instanceof ControlError && e.kind === "refused" && e.message.startsWith(`bad control request "${op}"`);
}

/**
 * Decodes a result with `codec`, or throws a `"protocol"`
 * {@link ControlError} naming the operation and what did not match.
 */
export function decodeResult<A>(codec: t.Decoder<unknown, A>, op: string, result: unknown): A {
  const decoded = codec.decode(result);
  if (E.isRight(decoded)) return decoded.right;
  const problems = PathReporter.report(decoded).slice(0, 3).join("; ");
  throw new ControlError(`the pvkit host's reply to ${op} is not what xl reads: ${problems}`, "protocol");
}

// ---------------------------------------------------------------------------
// Results: decoders of the result interfaces of `control-protocol.ts`

/** A domain as `list` reports it: the decoder of the protocol's `DomainSummary`. */
export const DomainSummaryCodec = t.intersection([
  t.type({ domid: Nat, name: t.string, memKiB: NonNeg, maxMemKiB: NonNeg, vcpus: Nat, state: t.string, cpuNs: NonNeg }),
  t.partial({ config: CreateRequest }),
]);
/** A domain as `list` reports it. */
export type DomainSummaryResult = t.TypeOf<typeof DomainSummaryCodec>;

/** The result of `list`: every domain. */
export const ListResult = t.array(DomainSummaryCodec);

/** The domain an operation acted on (the protocol's `CreateResult`, `DomainAck`): what `create`, `destroy`, `pause`... answer. */
export const DomainAckResult = t.type({ domid: Nat, name: t.string });

/** What `shutdown`/`reboot` with `wait` answer (the protocol's `ShutdownResult`): why the domain went and what was done about it. */
export const ShutdownResultCodec = t.intersection([
  t.type({ domid: Nat, name: t.string, reason: t.string, action: t.string }),
  t.partial({ restartedAs: Nat }),
]);

/** What `console` answers (the protocol's `ConsoleResult`): the domain's console socket. */
export const ConsoleResult = t.type({ domid: Nat, name: t.string, socket: t.string });

/** What `dmesg` answers (the protocol's `DmesgResult`): Xen's console ring as text. */
export const DmesgResult = t.type({ text: t.string });

/**
 * What `info` answers (the protocol's `HostInfo`): the host's values by the
 * names `xl info` prints, memory in MiB.
 */
export const InfoResult = t.record(t.string, t.union([t.string, t.number]));

/** One domain of the `uptime` result (the protocol's `UptimeEntry`): how long it has run, ns. */
export const UptimeEntry = t.type({ domid: Nat, name: t.string, uptimeNs: NonNeg });
/** What `uptime` answers. */
export const UptimeResult = t.array(UptimeEntry);

/** One vCPU as `vcpu-list` reports it (the protocol's `VcpuSummary`); `cpu` is -1 when offline, `affinity` the hard affinity as xl prints it. */
export const VcpuInfo = t.type({
  domid: Nat,
  name: t.string,
  vcpu: Nat,
  cpu: t.number,
  state: t.string,
  online: t.boolean,
  blocked: t.boolean,
  running: t.boolean,
  cpuNs: NonNeg,
  affinity: t.string,
});
/** One vCPU as `vcpu-list` reports it. */
export type VcpuInfo = t.TypeOf<typeof VcpuInfo>;
/** What `vcpu-list` answers. */
export const VcpuListResult = t.array(VcpuInfo);

/** A domain's credit scheduler parameters (the protocol's `SchedCreditEntry`). */
export const SchedCreditEntry = t.type({ domid: Nat, name: t.string, weight: Nat, cap: Nat });
/** What `sched-credit` answers: the domain asked for, or every domain. */
export const SchedCreditResult = t.array(SchedCreditEntry);

/** The fields of a split device both lists report (the protocol's `DeviceSummary`); -1 for what the frontend has not published. */
const DeviceFields = { devid: Nat, backendDomid: Nat, state: t.number, backendState: t.number, eventChannel: t.number, backendPath: t.string };

/** A virtual disk as `block-list` reports it (the protocol's `BlockDeviceSummary`). */
export const BlockInfo = t.type({ ...DeviceFields, vdev: t.string, ringRef: t.number, target: t.string, mode: t.string });
/** A virtual disk as `block-list` reports it. */
export type BlockInfo = t.TypeOf<typeof BlockInfo>;
/** What `block-list` answers. */
export const BlockListResult = t.array(BlockInfo);

/** A virtual NIC as `network-list` reports it (the protocol's `NetworkDeviceSummary`). */
export const NicInfo = t.type({ ...DeviceFields, mac: t.string, bridge: t.string, txRingRef: t.number, rxRingRef: t.number });
/** A virtual NIC as `network-list` reports it. */
export type NicInfo = t.TypeOf<typeof NicInfo>;
/** What `network-list` answers. */
export const NetworkListResult = t.array(NicInfo);

/** A device made by `block-attach` or `network-attach` (the protocol's `AttachResult`). */
export const AttachResultCodec = t.type({ domid: Nat, name: t.string, devid: Nat });

/** A vbd's block counters, or a domain's summed (Linux blkback's `statistics/`). */
export const VbdCounters = t.type({ requests: NonNeg, errors: NonNeg, ooReq: NonNeg, rdReq: NonNeg, wrReq: NonNeg, rdSect: NonNeg, wrSect: NonNeg });
/** Decoded {@link VbdCounters}. */
export type VbdCounters = t.TypeOf<typeof VbdCounters>;
/** One domain as `top` reports it (the protocol's `TopEntry`): its state, CPU, memory, and its devices' counters, summed and per vbd. */
export const TopEntry = t.type({
  domid: Nat,
  name: t.string,
  state: t.string,
  cpuNs: NonNeg,
  memKiB: NonNeg,
  maxMemKiB: NonNeg,
  vcpus: Nat,
  vbds: Nat,
  vifs: Nat,
  vbd: VbdCounters,
  vbdDevices: t.array(t.intersection([t.type({ devid: Nat }), VbdCounters])),
  net: t.type({ txFrames: NonNeg, txBytes: NonNeg, rxFrames: NonNeg, rxBytes: NonNeg }),
});
/** One domain as `top` reports it. */
export type TopEntry = t.TypeOf<typeof TopEntry>;
/** What `top` answers. */
export const TopResult = t.array(TopEntry);

/** The result of the proposed `trace` operation: Chrome trace-event JSON, as Perfetto opens it. */
export const TraceResult = t.type({ traceEvents: t.array(t.unknown) });
