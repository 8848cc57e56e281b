/**
 * The console daemon's data path on a plain page: the guest's side is
 * `consoleGuest`, the daemon's {@link ConsoleRing}, and the event channel a
 * counter.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, xencons_interface } from "@pvkit/abi";
import { RingProtocolError, consoleGuest } from "@pvkit/ring";
import { CONSOLE_IN_SIZE, CONSOLE_OUT_SIZE, ConsoleRing } from "@pvkit/dom0";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function pair(start = 0) {
  const page = new Uint8Array(PAGE_SIZE);
  const v = new DataView(page.buffer);
  const f = xencons_interface.fields;
  for (const idx of [f.in_cons, f.in_prod, f.out_cons, f.out_prod]) v.setUint32(idx.offset, start, true);
  const channel = { notified: 0, notify() { this.notified++; } };
  return { page, view: v, guest: consoleGuest(page), ring: new ConsoleRing(page, channel), channel };
}

describe("ConsoleRing", () => {
  it("has Xen's ring sizes", () => {
    expect(CONSOLE_IN_SIZE).toBe(1024);
    expect(CONSOLE_OUT_SIZE).toBe(2048);
  });

  it("takes what the guest wrote and notifies once; an empty ring costs no notification", () => {
    const { guest, ring, channel } = pair();
    expect(ring.readOutput().byteLength).toBe(0);
    expect(channel.notified).toBe(0);
    guest.tx.write(enc("hello\nwor"));
    guest.tx.write(enc("ld\n"));
    expect(dec(ring.readOutput())).toBe("hello\nworld\n");
    expect(channel.notified).toBe(1);
    expect(guest.tx.free()).toBe(CONSOLE_OUT_SIZE);
  });

  it("takes at most one ring's worth per call, across the wrap of the indexes", () => {
    const { guest, ring } = pair(0xffff_fc00);
    const all = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    const got: number[] = [];
    let at = 0;
    while (got.length < all.length) {
      at += guest.tx.write(all.subarray(at));
      const chunk = ring.readOutput();
      expect(chunk.byteLength).toBeLessThanOrEqual(CONSOLE_OUT_SIZE);
      got.push(...chunk);
    }
    expect(Uint8Array.from(got)).toEqual(all);
  });

  it("writes typed input that fits, keeps the rest, and flushes it when the guest has read", () => {
    const { guest, ring, channel } = pair();
    const text = "x".repeat(1500);
    expect(ring.queueInput(enc(text))).toBe(CONSOLE_IN_SIZE);
    expect(ring.pendingInput).toBe(1500 - CONSOLE_IN_SIZE);
    expect(channel.notified).toBe(1);
    expect(ring.flushInput()).toBe(0); // still no room
    expect(channel.notified).toBe(1);
    let got = dec(guest.rx.read());
    expect(ring.flushInput()).toBe(1500 - CONSOLE_IN_SIZE);
    expect(channel.notified).toBe(2);
    got += dec(guest.rx.read());
    expect(got).toBe(text);
    expect(ring.pendingInput).toBe(0);
  });

  it("keeps the order of input queued in several pieces, and copies what it is given", () => {
    const { guest, ring } = pair();
    const buf = enc("a".repeat(1000));
    ring.queueInput(buf);
    ring.queueInput(enc("b".repeat(100)));
    buf.fill(0x7a); // the caller reusing its buffer changes nothing queued
    ring.queueInput(enc("c".repeat(10)));
    let got = "";
    for (let i = 0; i < 3; i++) {
      got += dec(guest.rx.read());
      ring.flushInput();
    }
    expect(got).toBe("a".repeat(1000) + "b".repeat(100) + "c".repeat(10));
    ring.queueInput(enc("dropped"));
    ring.discardInput();
    expect(ring.pendingInput).toBe(0);
  });

  it.each([
    ["out", "out_prod", "out_cons", (r: ConsoleRing) => r.readOutput()],
    ["in", "in_prod", "in_cons", (r: ConsoleRing) => r.queueInput(new Uint8Array(2000))],
  ] as const)("refuses hostile %s indexes with RingProtocolError and moves nothing", (_ring, prodName, consName, act) => {
    const { view, ring, channel } = pair();
    const f = xencons_interface.fields;
    f[prodName].set(view, 0, 7000);
    f[consName].set(view, 0, 10);
    const before = new Uint8Array(view.buffer.slice(0));
    expect(() => act(ring)).toThrow(RingProtocolError);
    expect(new Uint8Array(view.buffer)).toEqual(before);
    expect(channel.notified).toBe(0);
  });

  it("delivers every byte once and in order, whatever the interleaving (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.array(fc.tuple(fc.constantFrom("gw", "dr", "dt", "gr", "df"), fc.integer({ min: 1, max: 1600 })), { maxLength: 60 }), (start, steps) => {
        const { guest, ring } = pair(start);
        let outSent = 0;
        const outGot: number[] = [];
        let inSent = 0;
        const inGot: number[] = [];
        for (const [s, n] of steps) {
          if (s === "gw") outSent += guest.tx.write(Uint8Array.from({ length: n }, (_, i) => (outSent + i) & 0xff));
          if (s === "dr") outGot.push(...ring.readOutput());
          if (s === "dt") {
            ring.queueInput(Uint8Array.from({ length: n }, (_, i) => (inSent + i) & 0xff));
            inSent += n;
          }
          if (s === "gr") inGot.push(...guest.rx.read());
          if (s === "df") ring.flushInput();
        }
        outGot.push(...ring.readOutput());
        for (let i = 0; i < 100 && inGot.length < inSent; i++) {
          inGot.push(...guest.rx.read());
          ring.flushInput();
        }
        expect(outGot).toEqual(Array.from({ length: outSent }, (_, i) => i & 0xff));
        expect(inGot).toEqual(Array.from({ length: inSent }, (_, i) => i & 0xff));
      }),
    );
  });
});
