/**
 * The console, guest side.
 *
 * dom0 writes straight to Xen's console with `CONSOLEIO_write`. A domU has a
 * console page shared with dom0's console daemon (`start_info.console`): it
 * writes into the page's `out` ring and notifies the console event channel;
 * when the ring is full it waits for the daemon to consume and notify back.
 * What is typed at the console arrives in the `in` ring.
 *
 * @module
 */
import { CONSOLEIO, HYPERVISOR } from "@pvkit/abi";
import { consoleGuest, type ByteRingPair } from "@pvkit/ring";
import type { Events } from "./events.js";
import { xenError, type Hypercaller } from "./hypercall.js";

/** Where a kernel's console output goes. */
export interface Console {
  /** Writes `text`; resolves once all of it is on its way. */
  write(text: string): Promise<void>;
  /** Bytes typed at the console since the last read (domU consoles; dom0 has none here). */
  read(): Uint8Array;
}

/** dom0's console: Xen's own, through `console_io`. */
export class HypervisorConsole implements Console {
  /** Writes through `hc`. */
  constructor(private readonly hc: Hypercaller) {}

  /** {@inheritDoc Console.write} */
  async write(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    const rc = this.hc.args.frame((a) => {
      const va = a.alloc(bytes.byteLength);
      a.memory.write(va, bytes);
      return this.hc.hypercall(HYPERVISOR.console_io, CONSOLEIO.write, bytes.byteLength, va);
    });
    if (rc < 0) throw new Error(xenError("CONSOLEIO_write", rc).message);
  }

  /** {@inheritDoc Console.read} */
  read(): Uint8Array {
    return new Uint8Array(0);
  }
}

/** A domU's console: the shared console page and its event channel. */
export class RingConsole implements Console {
  private readonly rings: ByteRingPair;

  /** Uses the console `page` and `port`, notifying through `events`. */
  constructor(
    page: Uint8Array,
    private readonly port: number,
    private readonly events: Events,
  ) {
    this.rings = consoleGuest(page);
  }

  /** {@inheritDoc Console.write} */
  async write(text: string): Promise<void> {
    let rest = new TextEncoder().encode(text);
    for (;;) {
      const n = this.rings.tx.write(rest);
      if (n > 0) this.events.notify(this.port);
      rest = rest.subarray(n);
      if (rest.byteLength === 0) return;
      await this.events.wait(this.port); // the daemon notifies once it has read
    }
  }

  /** {@inheritDoc Console.read} */
  read(): Uint8Array {
    const bytes = this.rings.rx.read();
    if (bytes.byteLength > 0) this.events.notify(this.port);
    return bytes;
  }
}
