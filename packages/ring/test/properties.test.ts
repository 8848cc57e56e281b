/**
 * Property tests of the ring protocol: any interleaving of the two ends'
 * steps delivers every request and response exactly once, in order, and a
 * consumer that went to sleep after re-arming its event index is always
 * woken when work arrives: no notification is ever missed.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, SRING_HEADER_SIZE } from "@pvkit/abi";
import { BackRing, FrontRing, consoleBackend, consoleGuest, type RingCodecs } from "@pvkit/ring";

// 512-byte entries: a one-page ring of 4 slots, so "full" happens often.
const u32 = { size: 512, read: (v: DataView, o: number) => v.getUint32(o, true), write: (v: DataView, o: number, x: number) => v.setUint32(o, x, true) };
const codecs: RingCodecs<number, number> = { request: u32, response: u32 };

type Step = "fPut" | "fPush" | "fTake" | "fSleep" | "fWake" | "bTake" | "bRespond" | "bPush" | "bSleep" | "bWake";
const STEPS: Step[] = ["fPut", "fPush", "fTake", "fSleep", "fWake", "bTake", "bRespond", "bPush", "bSleep", "bWake"];

/** Both ends, each with a notion of sleeping on its event channel. */
class Model {
  readonly front: FrontRing<number, number>;
  readonly back: BackRing<number, number>;
  nextReq = 0;
  readonly backGot: number[] = [];
  readonly toAnswer: number[] = [];
  readonly frontGot: number[] = [];
  // Consumers start asleep: init/attach leave both event indexes armed at start + 1.
  backAwake = false;
  backPending = false;
  frontAwake = false;
  frontPending = false;

  constructor(start: number) {
    const mem = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
    const v = new DataView(mem.buffer);
    v.setUint32(0, start, true); // req_prod
    v.setUint32(4, (start + 1) >>> 0, true); // req_event
    v.setUint32(8, start, true); // rsp_prod
    v.setUint32(12, (start + 1) >>> 0, true); // rsp_event
    this.front = FrontRing.attach(mem, codecs, start);
    this.back = BackRing.attach(mem, codecs, start);
    expect(SRING_HEADER_SIZE + this.front.size * 512).toBeLessThanOrEqual(PAGE_SIZE);
  }

  step(s: Step): void {
    const { front, back } = this;
    switch (s) {
      case "fPut":
        if (!front.full) front.putRequest(this.nextReq++);
        break;
      case "fPush":
        if (front.pushRequests()) this.backPending = true;
        break;
      case "fTake":
        if (this.frontAwake) {
          const r = front.takeResponse();
          if (r !== undefined) this.frontGot.push(r);
        }
        break;
      case "fSleep":
        if (this.frontAwake && front.unconsumedResponses() === 0 && !front.finalCheckForResponses()) this.frontAwake = false;
        break;
      case "fWake":
        if (this.frontPending) [this.frontPending, this.frontAwake] = [false, true];
        break;
      case "bTake":
        if (this.backAwake) {
          const r = back.takeRequest();
          if (r !== undefined) {
            this.backGot.push(r);
            this.toAnswer.push(r);
          }
        }
        break;
      case "bRespond": {
        const r = this.toAnswer.shift();
        if (r !== undefined) back.putResponse(r);
        break;
      }
      case "bPush":
        if (back.pushResponses()) this.frontPending = true;
        break;
      case "bSleep":
        if (this.backAwake && back.unconsumedRequests() === 0 && !back.finalCheckForRequests()) this.backAwake = false;
        break;
      case "bWake":
        if (this.backPending) [this.backPending, this.backAwake] = [false, true];
        break;
    }
  }

  /**
   * Lets both ends run to quiescence the way event-driven drivers do: a
   * sleeping end runs only after a notification. A missed notification
   * leaves work stranded, which the property then sees.
   */
  drain(): void {
    for (let round = 0; round < 100; round++) {
      // Requests the back end took finish their I/O and are answered whether or not it sleeps.
      while (this.toAnswer.length > 0) this.step("bRespond");
      this.step("bPush");
      this.step("fPush");
      this.step("bWake");
      if (this.backAwake) {
        do {
          for (let r; (r = this.back.takeRequest()) !== undefined; ) this.backGot.push(r), this.toAnswer.push(r);
          while (this.toAnswer.length > 0) this.step("bRespond");
          this.step("bPush");
        } while (this.back.finalCheckForRequests());
        this.backAwake = false;
      }
      this.step("fWake");
      if (this.frontAwake) {
        do for (let r; (r = this.front.takeResponse()) !== undefined; ) this.frontGot.push(r);
        while (this.front.finalCheckForResponses());
        this.frontAwake = false;
      }
      if (!this.backPending && !this.frontPending) return;
    }
  }
}

const starts = fc.oneof(fc.constant(0), fc.integer({ min: 0xffff_fff0, max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }));

describe("ring protocol properties", () => {
  it("every pushed request is delivered once, in order, and answered once, in order, whatever the interleaving", () => {
    fc.assert(
      fc.property(starts, fc.array(fc.constantFrom(...STEPS), { maxLength: 300 }), (start, steps) => {
        const m = new Model(start);
        for (const s of steps) {
          m.step(s);
          // Safety: the back end never sees a request that was not produced, nor one twice.
          expect(m.backGot).toEqual(Array.from({ length: m.backGot.length }, (_, i) => i));
          expect(m.frontGot).toEqual(Array.from({ length: m.frontGot.length }, (_, i) => i));
        }
        m.drain();
        // Liveness: after the drain nothing is stranded, so no notification was lost.
        const all = Array.from({ length: m.nextReq }, (_, i) => i);
        expect(m.backGot).toEqual(all);
        expect(m.frontGot).toEqual(all);
        expect(m.back.unconsumedRequests()).toBe(0);
        expect(m.front.unconsumedResponses()).toBe(0);
      }),
      { numRuns: 400 },
    );
  });

  it("a consumer asleep after a final check is always notified by the next push", () => {
    fc.assert(
      fc.property(starts, fc.array(fc.constantFrom(...STEPS), { maxLength: 200 }), fc.integer({ min: 1, max: 4 }), (start, steps, burst) => {
        const m = new Model(start);
        for (const s of steps) m.step(s);
        m.drain();
        // Both ends are now asleep with their event indexes armed.
        expect([m.backAwake, m.frontAwake]).toEqual([false, false]);
        const n = Math.min(burst, m.front.freeRequests);
        if (n === 0) return;
        for (let i = 0; i < n; i++) m.front.putRequest(m.nextReq++);
        expect(m.front.pushRequests()).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("byte ring properties", () => {
  it("bytes arrive intact and in order through any sequence of partial writes and reads, across index wrap", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0xffff_f000, max: 0xffff_ffff }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { maxLength: 60 }),
        (start, ops) => {
          const page = new Uint8Array(PAGE_SIZE);
          const v = new DataView(page.buffer);
          v.setUint32(3080, start, true); // out_cons
          v.setUint32(3084, start, true); // out_prod
          const guest = consoleGuest(page);
          const daemon = consoleBackend(page);
          let sent = 0;
          const received: number[] = [];
          for (const [isWrite, n] of ops) {
            if (isWrite) {
              const chunk = Uint8Array.from({ length: n }, (_, i) => (sent + i) & 0xff);
              const wrote = guest.tx.write(chunk);
              expect(wrote).toBe(Math.min(n, 2048 - ((sent - received.length) | 0)));
              sent += wrote;
            } else {
              received.push(...daemon.rx.read(n));
            }
            expect(guest.tx.queued()).toBe(sent - received.length);
          }
          received.push(...daemon.rx.read());
          expect(received).toEqual(Array.from({ length: sent }, (_, i) => i & 0xff));
        },
      ),
      { numRuns: 300 },
    );
  });
});
