/**
 * Host attach: each console on a Unix socket, as `xl console` reaches a
 * domain's console through xenconsoled's pty.
 *
 * The socket for domain `domid` is `<dir>/<domid>`, with a symbolic link
 * `<dir>/<name>` to it. A program that connects gets what the console said
 * so far (the daemon's history), then its output as it comes; what it
 * writes is typed at the console. When the domain's console goes, the
 * program gets EOF.
 *
 * Socket callbacks run outside any vCPU, where guest code (and dom0 is
 * guest code) may not make hypercalls: they only queue what happened and
 * raise a host interrupt line. The daemon's work — attaching, typing into
 * the guest's ring and notifying it — happens in the line's handler, on
 * dom0's vCPU.
 *
 * A client that does not read has its output dropped once its backlog
 * passes {@link MAX_CLIENT_BACKLOG}; a client typing faster than the guest
 * reads is paused until its input has gone into the ring.
 *
 * @module
 */
import { mkdirSync, rmSync, symlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { ConsoleDaemon, ConsoleListener } from "./daemon.js";
import type { HostLine } from "./env.js";

/** Bytes of output a socket client may have unsent before more is dropped for it. */
export const MAX_CLIENT_BACKLOG = 1 << 20;

/** Typed bytes waiting for a guest's ring past which the typing clients are paused. */
export const MAX_PENDING_INPUT = 16 * 1024;

/** What a socket callback queued for dom0's vCPU. */
type HostEvent =
  | { readonly kind: "connect"; readonly domid: number; readonly socket: Socket }
  | { readonly kind: "data"; readonly socket: Socket; readonly bytes: Uint8Array }
  | { readonly kind: "close"; readonly socket: Socket }
  | { readonly kind: "error"; readonly error: Error };

/** One connected host program. */
interface Client {
  readonly domid: number;
  readonly socket: Socket;
  detach: () => void;
  paused: boolean;
}

/** A name a link may have: a file name, and not one a domid could take. */
const LINK_NAME = /^(?!\d+$)[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** The console sockets of one daemon. */
export class ConsoleSockets {
  private readonly servers = new Map<number, { server: Server; path: string; link: string | undefined }>();
  private readonly clients = new Map<Socket, Client>();
  private readonly inbox: HostEvent[] = [];
  /** The first error a server hit. */
  failure: Error | undefined;

  /**
   * @param daemon the daemon whose consoles are served
   * @param line raised by socket callbacks; its handler serves them on dom0's vCPU
   * @param dir where the sockets go (created)
   * @param log the daemon's notices
   */
  constructor(
    private readonly daemon: ConsoleDaemon,
    private readonly line: HostLine,
    readonly dir: string,
    private readonly log: (message: string) => void,
  ) {
    line.onRaised(() => this.serve());
  }

  /** The socket path of `domid`, if it is served. */
  pathOf(domid: number): string | undefined {
    return this.servers.get(domid)?.path;
  }

  /**
   * Starts serving `domid`'s console at `<dir>/<domid>`, linked from
   * `<dir>/<name>`. A failure (say, the directory cannot be made) is kept in
   * {@link ConsoleSockets.failure} and logged; the console is served
   * without a socket.
   */
  open(domid: number, name: string): void {
    this.close(domid);
    const path = join(this.dir, String(domid));
    let link: string | undefined;
    try {
      mkdirSync(this.dir, { recursive: true });
      rmSync(path, { force: true });
      if (LINK_NAME.test(name)) {
        link = join(this.dir, name);
        rmSync(link, { force: true });
        symlinkSync(String(domid), link);
      }
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    const server = createServer((socket) => {
      this.post({ kind: "connect", domid, socket });
      socket.on("data", (bytes: Buffer) => this.post({ kind: "data", socket, bytes: new Uint8Array(bytes) }));
      socket.on("close", () => this.post({ kind: "close", socket }));
      socket.on("error", () => socket.destroy());
    });
    server.on("error", (error) => this.post({ kind: "error", error }));
    server.listen(path);
    this.servers.set(domid, { server, path, link });
  }

  /** Stops serving `domid`: the socket and its link go. (Its clients were ended by the daemon.) */
  close(domid: number): void {
    const s = this.servers.get(domid);
    if (s === undefined) return;
    this.servers.delete(domid);
    s.server.close();
    rmSync(s.path, { force: true });
    if (s.link !== undefined) rmSync(s.link, { force: true });
    for (const c of [...this.clients.values()]) if (c.domid === domid) this.drop(c);
  }

  /** Stops serving every console and the interrupt line. */
  closeAll(): void {
    for (const domid of [...this.servers.keys()]) this.close(domid);
    this.line.close();
  }

  /** From a host callback: queue, and raise the line. */
  private post(e: HostEvent): void {
    this.inbox.push(e);
    this.line.raise();
  }

  /** On dom0's vCPU: serve what the sockets queued. */
  private serve(): void {
    for (const e of this.inbox.splice(0)) {
      switch (e.kind) {
        case "connect":
          this.attach(e.domid, e.socket);
          break;
        case "data": {
          const c = this.clients.get(e.socket);
          if (c === undefined) break;
          this.daemon.type(c.domid, e.bytes);
          if (this.daemon.pendingInput(c.domid) > MAX_PENDING_INPUT && !c.paused) {
            c.paused = true;
            c.socket.pause();
          }
          break;
        }
        case "close": {
          const c = this.clients.get(e.socket);
          if (c !== undefined) this.drop(c);
          break;
        }
        case "error":
          this.fail(e.error);
          break;
      }
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.log(`console socket: ${error.message}`);
  }

  private attach(domid: number, socket: Socket): void {
    if (socket.destroyed) return;
    let backlogDropped = false;
    const client: Client = { domid, socket, detach: () => {}, paused: false };
    const listener: ConsoleListener = {
      output: (bytes) => {
        if (socket.destroyed) return;
        // A client that does not read loses output rather than growing dom0's memory.
        if (socket.writableLength > MAX_CLIENT_BACKLOG) backlogDropped = true;
        else socket.write(bytes);
      },
      end: () => this.drop(client),
      drained: () => {
        for (const c of this.clients.values()) {
          if (c.domid === domid && c.paused) {
            c.paused = false;
            c.socket.resume();
          }
        }
      },
    };
    const attached = this.daemon.attach(domid, listener);
    if (attached === undefined) {
      socket.end();
      return;
    }
    if (attached.replay.byteLength > 0) socket.write(attached.replay);
    if (!attached.live) {
      socket.end();
      return;
    }
    client.detach = () => {
      attached.detach();
      if (backlogDropped) this.log(`console socket of domain ${domid}: a client that did not read lost output`);
    };
    this.clients.set(socket, client);
  }

  /** Detaches a client and ends its socket (after what was written has gone). */
  private drop(c: Client): void {
    if (this.clients.get(c.socket) !== c) {
      c.socket.end();
      return;
    }
    this.clients.delete(c.socket);
    c.detach();
    if (!c.socket.destroyed) c.socket.end(() => c.socket.destroy());
  }
}
