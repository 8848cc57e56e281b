/**
 * netfront's and netback's data paths end to end, without a hypervisor:
 * each guest's pages live in a fake grant table, events are queued and
 * pumped, and two vifs are ports of one bridge. Frames of every size cross
 * intact (over several slots with feature-sg), flow control holds under a
 * burst, and what a guest without feature-sg cannot take is dropped by
 * netback, not by the guest.
 */
import { describe, expect, it } from "vitest";
import { GNTST, PAGE_SIZE } from "@pvkit/abi";
import { Bridge, VifDataPath, type VifIo } from "@pvkit/dom0";
import { NetfrontDataPath, type NetBuffer } from "@pvkit/domu";

/** One guest's grant table. */
class Guest {
  readonly grants = new Map<number, { page: Uint8Array; readonly: boolean }>();
  private next = 8;
  page(readonly: boolean): NetBuffer {
    const page = new Uint8Array(PAGE_SIZE);
    const ref = this.next++;
    this.grants.set(ref, { page, readonly });
    return { ref, page };
  }
  io(): VifIo {
    return {
      readFrontend: (segs) => segs.map((s) => this.grants.get(s.gref)?.page.slice(s.offset, s.offset + s.len) ?? GNTST.bad_gntref),
      writeFrontend: (segs) =>
        segs.map((s) => {
          const g = this.grants.get(s.gref);
          if (g === undefined || g.readonly) return GNTST.general_error;
          g.page.set(s.data.subarray(0, s.len), s.offset);
          return GNTST.okay;
        }),
    };
  }
}

function lan() {
  const bridge = new Bridge("xenbr0");
  const events: (() => void)[] = [];
  const pump = () => {
    for (let n = 0; events.length > 0; n++) {
      if (n > 100_000) throw new Error("event storm");
      events.shift()!();
    }
  };
  const nic = (name: string, opts: { sg?: boolean; rx?: number; tx?: number } = {}) => {
    const guest = new Guest();
    const sg = opts.sg ?? true;
    const txRing = guest.page(false);
    const rxRing = guest.page(false);
    const got: Uint8Array[] = [];
    const broken: string[] = [];
    let back: VifDataPath;
    const front = new NetfrontDataPath({
      txRing: txRing.page,
      rxRing: rxRing.page,
      txBuffers: Array.from({ length: opts.tx ?? 32 }, () => guest.page(true)),
      rxBuffers: Array.from({ length: opts.rx ?? 32 }, () => guest.page(false)),
      sg,
      notify: () => events.push(() => back.event()),
      onFrame: (f) => got.push(f),
      onBroken: (r) => broken.push(`front: ${r}`),
    });
    back = new VifDataPath({
      name,
      txRing: txRing.page,
      rxRing: rxRing.page,
      io: guest.io(),
      sg,
      notifyTx: () => events.push(() => front.event()),
      notifyRx: () => events.push(() => front.event()),
      onBroken: (r) => broken.push(`back: ${r}`),
    });
    back.output = (f) => bridge.input(back, f);
    bridge.attach(back);
    back.event();
    return { front, back, got, broken };
  };
  return { bridge, nic, pump };
}

const MAC_A = [0, 0x16, 0x3e, 0, 0, 0xa];
const MAC_B = [0, 0x16, 0x3e, 0, 0, 0xb];
function frame(len: number, dst: number[], src: number[], seed = 0): Uint8Array {
  const f = new Uint8Array(len).map((_, i) => (i * 31 + seed) & 0xff);
  f.set(dst, 0);
  f.set(src, 6);
  return f;
}

describe("netfront ⇄ netback over a bridge", () => {
  it("carries frames of every size intact, over several slots where needed", () => {
    const { nic, pump, bridge } = lan();
    const a = nic("vif1.0");
    const b = nic("vif2.0");
    // b announces itself with a broadcast: a receives it, and the bridge learns where b is.
    expect(b.front.transmit(frame(60, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], MAC_B))).toBe("sent");
    pump();
    expect(a.got).toHaveLength(1);
    const sizes = [14, 60, 1514, 4095, 4096, 4097, 8192, 9000, 65535];
    for (const [i, len] of sizes.entries()) {
      const f = frame(len, MAC_B, MAC_A, i);
      expect(a.front.transmit(f)).toBe("sent");
      pump();
      expect(b.got.at(-1)).toEqual(f);
    }
    expect(b.got).toHaveLength(sizes.length);
    expect(a.front.stats.txFrames).toBe(sizes.length);
    expect(b.back.stats.rxFrames).toBe(sizes.length);
    expect(bridge.stats.forwarded).toBe(sizes.length);
    expect(a.front.txInFlight).toBe(0);
    expect([...a.broken, ...b.broken]).toEqual([]);
  });

  it("holds a burst with flow control: the sender waits for TX buffers, netback for RX buffers", () => {
    const { nic, pump } = lan();
    const a = nic("vif1.0", { tx: 8 });
    const b = nic("vif2.0", { rx: 4 });
    b.front.transmit(frame(60, MAC_A, MAC_B));
    pump();
    const sent: Uint8Array[] = [];
    let busy = 0;
    for (let i = 0; sent.length < 300; i++) {
      const f = frame(1500, MAC_B, MAC_A, i);
      const r = a.front.transmit(f);
      if (r === "sent") sent.push(f);
      else {
        expect(r).toBe("busy");
        busy++;
        pump();
      }
    }
    pump();
    expect(busy).toBeGreaterThan(0);
    expect(b.got).toEqual(sent);
    expect(b.back.stats.rxDropped.size).toBe(0);
  });

  it("netback drops what a guest without feature-sg cannot take; that guest cannot send it either", () => {
    const { nic, pump } = lan();
    const a = nic("vif1.0");
    const b = nic("vif2.0", { sg: false });
    b.front.transmit(frame(60, MAC_A, MAC_B));
    pump();
    a.front.transmit(frame(4096, MAC_B, MAC_A));
    a.front.transmit(frame(4097, MAC_B, MAC_A));
    pump();
    expect(b.got.map((f) => f.length)).toEqual([4096]);
    expect(Object.fromEntries(b.back.stats.rxDropped)).toEqual({ "frame larger than a page without feature-sg": 1 });
    expect(b.front.transmit(frame(4097, MAC_A, MAC_B))).toBe("too-large");
    expect(b.front.transmit(new Uint8Array(13))).toBe("too-short");
  });
});
