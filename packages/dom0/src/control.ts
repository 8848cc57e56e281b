/**
 * The control server: dom0's end of `<run-dir>/control.sock`, where `xl`
 * talks to the toolstack (see `control-protocol.ts` for the protocol).
 *
 * Each connection sends one JSON request per line and gets one reply line
 * per request, in order: a connection's requests are served one after
 * another (a `shutdown -w` holds up only the connection that asked), while
 * different connections are served side by side.
 *
 * Socket callbacks run outside any vCPU, where dom0's code may not make
 * hypercalls. As xenstored's socket does, they only queue the bytes and
 * raise a host interrupt line (`EVTCHNOP_bind_pirq`); the line's handler,
 * on dom0's vCPU, cuts lines, decodes them and dispatches them to
 * {@link ControlOps} — the {@link Libxl} domain manager and the host's
 * stop.
 *
 * A line that is not JSON, or not a request the protocol knows, gets an
 * error reply naming what was wrong; a line longer than
 * {@link MAX_CONTROL_LINE}, or more than {@link MAX_QUEUED_REQUESTS} waiting,
 * gets one and the connection is closed. Nothing a client sends reaches
 * another connection.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { TextDecoder } from "node:util";
import { EVTCHNOP, HYPERVISOR, evtchn_bind_pirq } from "@pvkit/abi";
import { xenError, type Kernel } from "@pvkit/kernel";
import { decodeRequest, encodeReply, type Reply, type Request } from "./control-protocol.js";
import type { Libxl } from "./libxl.js";

/** The longest request line accepted, in bytes; a longer one closes the connection. */
export const MAX_CONTROL_LINE = 1 << 20;

/** Requests a connection may have waiting behind the one being served; more close the connection. */
export const MAX_QUEUED_REQUESTS = 1024;

/**
 * What the control server dispatches to: the domain manager's operations
 * (a {@link Libxl}, or a fake in tests), `hostShutdown` among them.
 */
export type ControlOps = Pick<
  Libxl,
  | "list"
  | "create"
  | "destroy"
  | "pause"
  | "unpause"
  | "shutdown"
  | "info"
  | "dmesg"
  | "uptime"
  | "top"
  | "memSet"
  | "memMax"
  | "vcpuList"
  | "schedCredit"
  | "console"
  | "blockAttach"
  | "blockDetach"
  | "blockList"
  | "networkAttach"
  | "networkDetach"
  | "networkList"
  | "hostShutdown"
>;

/** Runs one decoded request; a failure is an error reply, and so is an exception (as an internal error). */
export async function dispatch(ops: ControlOps, req: Request): Promise<Reply> {
  let r: E.Either<string, unknown>;
  try {
    r = await run(ops, req);
  } catch (e) {
    r = E.left(`internal error in ${req.op}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return E.isLeft(r) ? { id: req.id, ok: false, error: r.left } : { id: req.id, ok: true, result: r.right ?? null };
}

function run(ops: ControlOps, req: Request): Promise<E.Either<string, unknown>> {
  switch (req.op) {
    case "list":
      return ops.list();
    case "create":
      return ops.create(req.args.config, { paused: req.args.paused });
    case "destroy":
      return ops.destroy(req.args.domain);
    case "pause":
      return ops.pause(req.args.domain);
    case "unpause":
      return ops.unpause(req.args.domain);
    case "shutdown":
      return ops.shutdown(req.args.domain, "poweroff", req.args.wait);
    case "reboot":
      return ops.shutdown(req.args.domain, "reboot", req.args.wait);
    case "info":
      return ops.info();
    case "dmesg":
      return ops.dmesg(req.args.clear ?? false);
    case "uptime":
      return ops.uptime();
    case "top":
      return ops.top();
    case "host-shutdown":
      return ops.hostShutdown();
    case "mem-set":
      return ops.memSet(req.args.domain, req.args.memKiB);
    case "mem-max":
      return ops.memMax(req.args.domain, req.args.memKiB);
    case "vcpu-list":
      return ops.vcpuList(req.args.domain);
    case "sched-credit":
      return ops.schedCredit(req.args);
    case "console":
      return ops.console(req.args.domain);
    case "block-attach":
      return ops.blockAttach(req.args.domain, req.args.disk);
    case "block-detach":
      return ops.blockDetach(req.args.domain, req.args.vdev);
    case "block-list":
      return ops.blockList(req.args.domain);
    case "network-attach":
      return ops.networkAttach(req.args.domain, req.args.vif);
    case "network-detach":
      return ops.networkDetach(req.args.domain, req.args.devid);
    case "network-list":
      return ops.networkList(req.args.domain);
  }
}

/** Decodes one request line and runs it: the reply to send back. */
export async function handleLine(ops: ControlOps, line: string): Promise<Reply> {
  const req = decodeRequest(line);
  if (E.isLeft(req)) return { id: req.left.id, ok: false, error: req.left.error };
  return dispatch(ops, req.right);
}

/** One client connection. */
interface Connection {
  readonly socket: Socket;
  readonly decoder: TextDecoder;
  /** Text of a line not yet ended. */
  partial: string;
  /** Whole lines waiting for their turn. */
  readonly lines: string[];
  /** A request is being served. */
  busy: boolean;
  /** The client has gone (or was sent away): queue nothing more. */
  gone: boolean;
}

/** What a socket callback queued for dom0's vCPU. */
type HostEvent = { readonly kind: "data"; readonly conn: Connection; readonly bytes: Uint8Array } | { readonly kind: "close"; readonly conn: Connection };

/** The control socket, served on dom0's vCPU. See the module documentation. */
export class ControlServer {
  private server: Server | undefined;
  private port: number | undefined;
  private readonly inbox: HostEvent[] = [];
  private readonly conns = new Set<Connection>();
  private readonly idleWaiters: (() => void)[] = [];
  /** The first error the socket server hit (say, an unusable path); dom0 reports it. */
  failure: Error | undefined;

  /** Serves `ops` from dom0's kernel `k` (which must have host interrupt lines). */
  constructor(
    private readonly k: Kernel,
    private readonly ops: ControlOps,
  ) {}

  /**
   * Listens on the Unix socket at `path` (its directory is created; a stale
   * socket file is replaced).
   */
  listen(path: string): void {
    const irqs = this.k.platform.hostIrqs;
    if (irqs === undefined) throw new Error("control: only the privileged domain can serve the control socket");
    const line = irqs.alloc();
    const port = this.k.args.frame((a) => {
      const va = a.put(evtchn_bind_pirq, { pirq: line, flags: 0 });
      const rc = this.k.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va);
      return rc < 0 ? E.left(xenError("EVTCHNOP_bind_pirq", rc)) : E.right(a.get(evtchn_bind_pirq, va).port);
    });
    if (E.isLeft(port)) throw new Error(`control: cannot bind a host interrupt line: ${port.left.message}`);
    this.port = port.right;
    this.k.events.on(port.right, () => this.service());
    mkdirSync(dirname(path), { recursive: true });
    rmSync(path, { force: true });
    this.server = createServer((socket) => {
      const conn: Connection = { socket, decoder: new TextDecoder(), partial: "", lines: [], busy: false, gone: false };
      socket.on("data", (bytes: Buffer) => {
        this.inbox.push({ kind: "data", conn, bytes: new Uint8Array(bytes) });
        irqs.raise(line);
      });
      socket.on("close", () => {
        this.inbox.push({ kind: "close", conn });
        irqs.raise(line);
      });
      socket.on("error", () => socket.destroy());
    });
    // Only host callbacks follow; nothing here awaits them, so dom0's code never resumes outside its vCPU.
    this.server.on("error", (e) => {
      this.failure ??= e;
      irqs.raise(line);
    });
    this.server.listen(path);
  }

  /** On dom0's vCPU: takes what the sockets queued, cuts lines, and starts serving them. */
  private service(): void {
    for (const e of this.inbox.splice(0)) {
      const c = e.conn;
      if (e.kind === "close") {
        c.gone = true;
        c.lines.length = 0;
        this.conns.delete(c);
        this.settle();
        continue;
      }
      if (c.gone) continue;
      this.conns.add(c);
      c.partial += c.decoder.decode(e.bytes, { stream: true });
      const lines = c.partial.split("\n");
      c.partial = lines.pop()!;
      for (const l of lines) if (l.trim() !== "") c.lines.push(l);
      const refusal =
        Buffer.byteLength(c.partial) > MAX_CONTROL_LINE
          ? `control request longer than ${MAX_CONTROL_LINE} bytes: closing the connection`
          : c.lines.length > MAX_QUEUED_REQUESTS
            ? `more than ${MAX_QUEUED_REQUESTS} control requests waiting: closing the connection`
            : undefined;
      if (refusal !== undefined) {
        this.send(c, { id: 0, ok: false, error: refusal });
        c.gone = true;
        c.lines.length = 0;
        c.socket.end();
        continue;
      }
      if (!c.busy) void this.pump(c);
    }
  }

  /** Serves a connection's lines one after another. */
  private async pump(c: Connection): Promise<void> {
    c.busy = true;
    try {
      for (let line = c.lines.shift(); line !== undefined; line = c.lines.shift()) this.send(c, await handleLine(this.ops, line));
    } finally {
      c.busy = false;
      this.settle();
    }
  }

  private send(c: Connection, reply: Reply): void {
    if (!c.socket.destroyed && c.socket.writable) c.socket.write(encodeReply(reply));
  }

  /** Wakes {@link ControlServer.close} when no request is being served. */
  private settle(): void {
    if ([...this.conns].some((c) => c.busy)) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * Stops listening, lets the requests being served finish (their replies
   * go out), then ends every connection and releases the interrupt line.
   */
  async close(): Promise<void> {
    this.server?.close();
    this.server = undefined;
    while ([...this.conns].some((c) => c.busy)) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    for (const c of this.conns) {
      c.gone = true;
      c.socket.end();
    }
    this.conns.clear();
    if (this.port !== undefined) this.k.events.close(this.port);
    this.port = undefined;
  }
}
