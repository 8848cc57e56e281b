/**
 * A console relay, the first piece of what `xenconsoled` does: dom0 maps a
 * guest's console page through the reserved grant `GNTTAB_RESERVED_CONSOLE`,
 * binds the guest's console event channel, and on each event takes what the
 * guest wrote to `out`, notifying the guest that there is room again.
 * Complete lines go to a sink with the domain's name. The full console
 * daemon (timestamps, attaching, input) comes with the split-driver work.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { GNTTAB_RESERVED, PAGE_SIZE } from "@pvkit/abi";
import { consoleBackend, type ByteRingPair } from "@pvkit/ring";
import type { GrantMapping, Kernel, XenError } from "@pvkit/kernel";

/** Where relayed lines go. */
export type ConsoleSink = (name: string, domid: number, line: string) => void;

/** One guest's console, as dom0 serves it. */
export class ConsoleRelay {
  private readonly rings: ByteRingPair;
  private partial = "";
  private readonly decoder = new TextDecoder();

  private constructor(
    private readonly k: Kernel,
    readonly domid: number,
    readonly name: string,
    private readonly mapping: GrantMapping,
    /** dom0's end of the console event channel. */
    readonly port: number,
    private readonly sink: ConsoleSink,
  ) {
    const page = k.memory.memory.page(mapping.va);
    this.rings = consoleBackend(new Uint8Array(page.buffer, page.byteOffset, PAGE_SIZE));
    k.events.on(port, () => this.drain());
  }

  /** Connects to the console of `domid`, whose console port (its end) is `remotePort`. */
  static connect(k: Kernel, domid: number, name: string, remotePort: number, sink: ConsoleSink): E.Either<XenError, ConsoleRelay> {
    const mapped = k.grants.map(domid, GNTTAB_RESERVED.CONSOLE);
    if (E.isLeft(mapped)) return mapped;
    const port = k.events.bindInterdomain(domid, remotePort);
    if (E.isLeft(port)) {
      k.grants.unmap(mapped.right);
      return port;
    }
    const relay = new ConsoleRelay(k, domid, name, mapped.right, port.right, sink);
    relay.drain(); // anything written before we connected
    return E.right(relay);
  }

  /** Takes everything the guest wrote and passes on complete lines. */
  drain(): void {
    const bytes = this.rings.rx.read();
    if (bytes.byteLength === 0) return;
    this.k.events.notify(this.port);
    this.partial += this.decoder.decode(bytes, { stream: true });
    const lines = this.partial.split("\n");
    this.partial = lines.pop()!;
    for (const line of lines) this.sink(this.name, this.domid, line);
  }

  /** Writes `text` to the guest's console input. @returns the bytes that fitted. */
  type(text: string): number {
    const n = this.rings.tx.write(new TextEncoder().encode(text));
    if (n > 0) this.k.events.notify(this.port);
    return n;
  }

  /** Passes on a last unterminated line, unmaps the page and closes the channel. */
  close(): void {
    this.drain();
    if (this.partial !== "") this.sink(this.name, this.domid, this.partial);
    this.partial = "";
    this.k.events.close(this.port);
    this.k.grants.unmap(this.mapping);
  }
}
