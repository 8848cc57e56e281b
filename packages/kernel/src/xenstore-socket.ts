/**
 * XenStore for host programs: the daemon's Unix socket.
 *
 * xenstored listens on a Unix socket speaking the same `xs_wire` protocol as
 * the ring page; Xen's own clients (`xenstore-read`, …) find it through the
 * environment as `xs.c` does: `XENSTORED_PATH` names the socket, otherwise it
 * is `socket` in the directory `XENSTORED_RUNDIR` names, by default
 * `/var/run/xenstored`. A socket client acts as dom0.
 *
 * This module uses `node:net`, so the package exports it apart from the
 * kernel's index: `import { connectXenstoreSocket } from "@pvkit/kernel/xenstore-socket"`.
 *
 * @module
 */
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { XsClient, type XsTransport } from "./xenstore.js";

/** The rundir of xenstored when `XENSTORED_RUNDIR` is not set. */
export const XENSTORED_DEFAULT_RUNDIR = "/var/run/xenstored";

/** The socket path Xen's clients use: `$XENSTORED_PATH`, else `$XENSTORED_RUNDIR/socket` (default `/var/run/xenstored/socket`). */
export function xenstoredSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env["XENSTORED_PATH"];
  if (explicit !== undefined && explicit !== "") return explicit;
  return join(env["XENSTORED_RUNDIR"] || XENSTORED_DEFAULT_RUNDIR, "socket");
}

/** An {@link XsTransport} over a connected socket. */
export class SocketXsTransport implements XsTransport {
  private closeHandler: ((reason?: Error) => void) | undefined;
  private failure: Error | undefined;
  private ended = false;

  /** Speaks over `socket`, which should already be connected. */
  constructor(private readonly socket: Socket) {
    socket.on("error", (e) => (this.failure = e));
    socket.on("close", () => {
      this.ended = true;
      this.closeHandler?.(this.failure);
    });
  }

  /** Writes the message; resolves once the socket has taken it. */
  send(bytes: Uint8Array): Promise<void> {
    if (this.ended || this.socket.destroyed) return Promise.reject(new Error("xenstored socket closed"));
    return new Promise((resolve, reject) => this.socket.write(bytes, (e) => (e ? reject(e) : resolve())));
  }

  /** {@inheritDoc XsTransport.onData} */
  onData(handler: (bytes: Uint8Array) => void): void {
    this.socket.removeAllListeners("data");
    this.socket.on("data", (b: Buffer) => handler(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)));
  }

  /** {@inheritDoc XsTransport.onClose} */
  onClose(handler: (reason?: Error) => void): void {
    this.closeHandler = handler;
  }

  /** Closes the socket. */
  close(): void {
    this.ended = true;
    this.socket.destroy();
  }
}

/**
 * Connects to xenstored's Unix socket at `path` (by default the path Xen's
 * clients use, see {@link xenstoredSocketPath}) and returns a client acting
 * as dom0. Rejects if the socket cannot be reached.
 */
export function connectXenstoreSocket(path: string = xenstoredSocketPath()): Promise<XsClient> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const fail = (e: Error) => reject(new Error(`cannot connect to xenstored at ${path}: ${e.message}`));
    socket.once("error", fail);
    socket.once("connect", () => {
      socket.off("error", fail);
      resolve(new XsClient(new SocketXsTransport(socket)));
    });
  });
}
