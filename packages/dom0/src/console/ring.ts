/**
 * The console daemon's data path: one guest's console page (`io/console.h`,
 * `struct xencons_interface`) as the daemon sees it. It takes what the guest
 * wrote to `out`, and writes what is typed at the console to `in`, keeping
 * what does not fit until the guest makes room.
 *
 * It knows nothing of hypercalls, sockets or time: it works over any page
 * and signals the guest through a {@link ConsoleChannel}, so a test can run
 * it against `consoleGuest` on a plain buffer.
 *
 * @module
 */
import { xencons_interface } from "@pvkit/abi";
import { consoleBackend, type ByteRingPair } from "@pvkit/ring";

/** How the data path signals the guest: `EVTCHNOP_send` on the console channel, or a fake in tests. */
export interface ConsoleChannel {
  /** Tells the guest that the page changed. */
  notify(): void;
}

/** Bytes the guest's `out` ring holds (`sizeof(intf->out)`). */
export const CONSOLE_OUT_SIZE = xencons_interface.fields.out.size;

/** Bytes the guest's `in` ring holds (`sizeof(intf->in)`). */
export const CONSOLE_IN_SIZE = xencons_interface.fields.in.size;

/** One guest's console page, from the daemon's side. */
export class ConsoleRing {
  private readonly rings: ByteRingPair;
  private readonly pending: Uint8Array[] = [];
  private pendingBytes = 0;

  /**
   * @param page the guest's console page (at least `xencons_interface.size` bytes)
   * @param channel signals the guest
   */
  constructor(
    page: Uint8Array,
    private readonly channel: ConsoleChannel,
  ) {
    this.rings = consoleBackend(page);
  }

  /** Typed bytes still waiting for room in the guest's `in` ring. */
  get pendingInput(): number {
    return this.pendingBytes;
  }

  /**
   * Takes what the guest has written to `out` — at most one ring's worth, so
   * a guest that keeps writing cannot keep the daemon here — and, if
   * anything was taken, tells the guest there is room again.
   * @throws `RingProtocolError` if the guest's indexes are impossible; nothing is consumed then.
   */
  readOutput(): Uint8Array {
    const bytes = this.rings.rx.read(CONSOLE_OUT_SIZE);
    if (bytes.byteLength > 0) this.channel.notify();
    return bytes;
  }

  /**
   * Queues `bytes` as console input and writes what fits now.
   * @returns the bytes written to the ring now (the rest waits for {@link ConsoleRing.flushInput}).
   * @throws `RingProtocolError` as {@link ConsoleRing.flushInput} does.
   */
  queueInput(bytes: Uint8Array): number {
    if (bytes.byteLength === 0) return 0;
    this.pending.push(bytes.slice());
    this.pendingBytes += bytes.byteLength;
    return this.flushInput();
  }

  /**
   * Writes as much queued input as the guest's `in` ring has room for and
   * notifies the guest if any moved. Called when the guest signals, since it
   * does after reading.
   * @returns the bytes written.
   * @throws `RingProtocolError` if the guest's `in` indexes are impossible.
   */
  flushInput(): number {
    let moved = 0;
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.rings.tx.write(head);
      moved += n;
      if (n < head.byteLength) {
        this.pending[0] = head.subarray(n);
        break;
      }
      this.pending.shift();
    }
    this.pendingBytes -= moved;
    if (moved > 0) this.channel.notify();
    return moved;
  }

  /** Forgets queued input (the console is going away). */
  discardInput(): void {
    this.pending.length = 0;
    this.pendingBytes = 0;
  }
}
