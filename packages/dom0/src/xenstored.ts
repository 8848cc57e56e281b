/**
 * xenstored's transports in dom0: the pure daemon (`./xenstore/`) wired to
 * the world.
 *
 * - **Ring connections.** When the toolstack introduces a domain
 *   (`XS_INTRODUCE domid mfn port`), dom0 maps that domain's XenStore page
 *   through the reserved grant `GNTTAB_RESERVED_XENSTORE`, as xenstored does
 *   with `xengnttab`, and binds the domain's store event channel. On each
 *   event it takes the requests from the page's `req` ring, feeds them to the
 *   daemon, writes replies and watch events to `rsp` (queueing what does not
 *   fit until the guest makes room) and notifies the guest.
 * - **The socket.** Host programs — Debian's `xenstore-read` and friends,
 *   pvkit's `xl` — connect to a Unix socket speaking the same `xs_wire`
 *   protocol (`XENSTORED_PATH`). Their bytes arrive outside any vCPU, so the
 *   socket callback only queues them and raises a host interrupt line; dom0
 *   serves them on its own vCPU when the line's event arrives. Socket clients
 *   act as dom0, as on Xen.
 * - **dom0 itself.** The toolstack in dom0 talks to the daemon through a
 *   loopback connection, with the same client every guest uses.
 *
 * A connection that breaks the protocol (a bad length, a ring index out of
 * range) is closed; nothing it sends can reach another connection.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { EVTCHNOP, GNTTAB_RESERVED, HYPERVISOR, PAGE_SIZE, XENSTORE, evtchn_bind_pirq, xenstore_domain_interface } from "@pvkit/abi";
import { RingProtocolError, xenstoreDaemon, type ByteRingPair } from "@pvkit/ring";
import { XsClient, orThrow, type GrantMapping, type Kernel, type XsTransport } from "@pvkit/kernel";
import { Xenstored, type XsConnection } from "./xenstore/index.js";

/** A guest's XenStore ring, as dom0 serves it. */
class RingConnection {
  private readonly rings: ByteRingPair;
  private readonly pending: Uint8Array[] = [];
  private readonly pageView: DataView;
  readonly conn: XsConnection;

  constructor(
    private readonly k: Kernel,
    daemon: Xenstored,
    readonly domid: number,
    private readonly mapping: GrantMapping,
    readonly port: number,
  ) {
    const page = k.memory.memory.page(mapping.va);
    this.pageView = page;
    this.rings = xenstoreDaemon(new Uint8Array(page.buffer, page.byteOffset, PAGE_SIZE));
    this.conn = daemon.connect(domid, (bytes) => this.queue(bytes));
    k.events.on(port, () => this.service());
  }

  /**
   * Output for the guest: a reply, or a watch event another connection's
   * request caused. It goes into the ring at once, with a notification —
   * batched into one when it happens while serving the guest's own requests.
   */
  private queue(bytes: Uint8Array): void {
    this.pending.push(bytes);
    if (this.servicing || this.conn.closed) return;
    if (this.flush()) this.k.events.notify(this.port);
  }

  private servicing = false;

  /** Takes every request the guest wrote, answers, and flushes what fits. Closes the connection if the guest broke the ring. */
  service(): void {
    if (this.conn.closed) return;
    let moved = false;
    this.servicing = true;
    try {
      for (;;) {
        const bytes = this.rings.rx.read();
        if (bytes.byteLength === 0) break;
        moved = true;
        this.conn.receive(bytes);
      }
      moved = this.flush() || moved;
    } catch (e) {
      if (!(e instanceof RingProtocolError)) throw e;
      // As xenstored does: mark the page with the error and stop serving it.
      xenstore_domain_interface.fields.error.set(this.pageView, 0, XENSTORE.ERROR_RINGIDX);
      this.conn.close();
    } finally {
      this.servicing = false;
    }
    if (moved) this.k.events.notify(this.port);
  }

  private flush(): boolean {
    let moved = false;
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.rings.tx.write(head);
      if (n > 0) moved = true;
      if (n < head.byteLength) {
        this.pending[0] = head.subarray(n);
        break;
      }
      this.pending.shift();
    }
    return moved;
  }

  close(): void {
    this.conn.close();
    this.k.events.close(this.port);
    this.k.grants.unmap(this.mapping);
  }
}

/** The daemon and all its transports, running in dom0. */
export class XenstoredService {
  /** The pure daemon. */
  readonly daemon: Xenstored;
  /** dom0's own client (the toolstack's), over a loopback connection. */
  readonly client: XsClient;
  private readonly rings = new Map<number, RingConnection>();
  private server: Server | undefined;
  private readonly socketInbox: { socket: Socket; conn: XsConnection; bytes: Uint8Array }[] = [];

  /** Starts the daemon in dom0's kernel `k`. */
  constructor(private readonly k: Kernel) {
    this.daemon = new Xenstored({
      hooks: {
        introduce: (domid, _mfn, port) => this.attachRing(domid, port),
        release: (domid) => this.detachRing(domid),
      },
    });
    let deliver: (bytes: Uint8Array) => void = () => {};
    const conn = this.daemon.connect(0, (bytes) => queueMicrotask(() => deliver(bytes)));
    const loopback: XsTransport = { send: (bytes) => conn.receive(bytes), onData: (handler) => (deliver = handler) };
    this.client = new XsClient(loopback);
  }

  private attachRing(domid: number, remotePort: number): void {
    if (this.rings.has(domid)) return;
    const mapping = orThrow(this.k.grants.map(domid, GNTTAB_RESERVED.XENSTORE));
    const port = this.k.events.bindInterdomain(domid, remotePort);
    if (E.isLeft(port)) {
      this.k.grants.unmap(mapping);
      throw new Error(`xenstored: cannot bind domain ${domid}'s store channel: ${port.left.message}`);
    }
    const ring = new RingConnection(this.k, this.daemon, domid, mapping, port.right);
    this.rings.set(domid, ring);
    ring.service(); // requests written before we were connected
  }

  private detachRing(domid: number): void {
    this.rings.get(domid)?.close();
    this.rings.delete(domid);
  }

  /**
   * Listens on the Unix socket at `path` (its directory is created; a stale
   * socket file is replaced). Requests are served on dom0's vCPU, woken by a
   * host interrupt line; a server error is kept in {@link XenstoredService.failure}.
   */
  listen(path: string): void {
    const irqs = this.k.platform.hostIrqs;
    if (irqs === undefined) throw new Error("xenstored: only the privileged domain can serve the host socket");
    const line = irqs.alloc();
    const port = orThrow(
      this.k.args.frame((a) => {
        const va = a.put(evtchn_bind_pirq, { pirq: line, flags: 0 });
        const rc = this.k.hypercall(HYPERVISOR.event_channel_op, EVTCHNOP.bind_pirq, va);
        return rc < 0 ? E.left({ op: "EVTCHNOP_bind_pirq", code: rc, name: String(rc), message: `EVTCHNOP_bind_pirq: ${rc}` }) : E.right(a.get(evtchn_bind_pirq, va).port);
      }),
    );
    this.k.events.on(port, () => this.serviceSocket());
    mkdirSync(dirname(path), { recursive: true });
    rmSync(path, { force: true });
    this.server = createServer((socket) => {
      const conn = this.daemon.connect(0, (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      });
      socket.on("data", (bytes) => {
        this.socketInbox.push({ socket, conn, bytes: new Uint8Array(bytes) });
        irqs.raise(line);
      });
      socket.on("close", () => {
        this.socketInbox.push({ socket, conn, bytes: new Uint8Array(0) });
        irqs.raise(line);
      });
      socket.on("error", () => socket.destroy());
    });
    // Only host callbacks follow; nothing here awaits them, so dom0's code never resumes outside its vCPU.
    this.server.on("error", (e) => {
      this.failure = e;
      irqs.raise(line);
    });
    this.server.listen(path);
  }

  /** An error the socket server hit (say, the path was unusable), reported when dom0 next serves the socket. */
  failure: Error | undefined;

  /** Serves what socket clients sent (on dom0's vCPU). */
  private serviceSocket(): void {
    for (const { socket, conn, bytes } of this.socketInbox.splice(0)) {
      if (bytes.byteLength === 0) conn.close();
      else if (!conn.closed) conn.receive(bytes);
      if (conn.closed && !socket.destroyed) socket.destroy();
    }
  }

  /** Stops the socket and serves no ring any more. */
  close(): void {
    this.server?.close();
    this.server = undefined;
    for (const domid of [...this.rings.keys()]) this.detachRing(domid);
  }
}
