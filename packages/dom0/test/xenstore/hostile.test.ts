/**
 * Hostile input: broken framing, over-long headers, garbage payloads and
 * failing transports. Nothing may escape `receive`, disturb another
 * connection, or change the store beyond what the sender may change.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "@pvkit/hypervisor";
import fc from "fast-check";
import { XENSTORE, XS } from "@pvkit/abi";
import { MessageReader, Xenstored, binaryToBytes, bytesToBinary, encodeMessage, formatPerms, type Store } from "../../src/xenstore/index.js";
import { OK, bed, err, homes, rq, run, val, type Client } from "./harness.js";

function header(type: number, reqId: number, txId: number, len: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, reqId, true);
  v.setUint32(8, txId, true);
  v.setUint32(12, len, true);
  return h;
}

describe("hostile framing", () => {
  it("waits on a truncated header or payload, then answers", () => {
    const b = bed();
    const dom0 = b.client(0);
    const bytes = encodeMessage({ type: XS.READ, reqId: 3, txId: 0, payload: binaryToBytes("/tool\0") });
    dom0.raw(bytes.subarray(0, 9));
    expect(dom0.inbox).toEqual([]);
    dom0.raw(bytes.subarray(9, 18));
    expect(dom0.inbox).toEqual([]);
    expect(dom0.conn.closed).toBe(false);
    dom0.raw(bytes.subarray(18));
    expect(dom0.inbox.map((m) => [m.type, m.reqId])).toEqual([[XS.READ, 3]]);
  });

  it("answers several requests in one chunk, in order", () => {
    const b = bed();
    const dom0 = b.client(0);
    const msgs = [rq.write("/a", "1"), rq.read("/a"), rq.read("/nope"), rq.directory("/")].map((r, i) => encodeMessage({ type: r.type, reqId: i, txId: 0, payload: r.payload }));
    dom0.raw(new Uint8Array(msgs.flatMap((m) => [...m])));
    expect(dom0.inbox.map((m) => [m.reqId, m.type, bytesToBinary(m.payload)])).toEqual([
      [0, XS.WRITE, "OK\0"],
      [1, XS.READ, "1"],
      [2, XS.ERROR, "ENOENT\0"],
      [3, XS.DIRECTORY, "tool\0a\0"],
    ]);
  });

  it("closes a connection that announces more than XENSTORE_PAYLOAD_MAX, and only that one", () => {
    const b = bed();
    const dom0 = b.client(0);
    const bad = b.client(3);
    run([[bad, rq.watch("/x", "t"), OK]]);
    bad.events();
    bad.raw(header(XS.WRITE, 1, 0, XENSTORE.PAYLOAD_MAX + 1));
    expect(bad.conn.closed).toBe(true);
    expect(bad.inbox).toEqual([]);
    expect(b.log.some((l) => l.includes("protocol error") && l.includes("4097"))).toBe(true);
    bad.raw(encodeMessage({ type: XS.READ, reqId: 1, txId: 0, payload: binaryToBytes("/\0") }));
    expect(bad.inbox).toEqual([]);
    run([
      [dom0, rq.write("/x", "still here"), OK],
      [dom0, rq.read("/x"), val("still here")],
    ]);
    expect(b.d.connections().map((c) => c.domid)).toEqual([0]);
  });

  it("stops at the bad header: requests before it in the same chunk are answered, those after are not", () => {
    const b = bed();
    const dom0 = b.client(0);
    const good = encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: binaryToBytes("/before\0x") });
    const after = encodeMessage({ type: XS.WRITE, reqId: 2, txId: 0, payload: binaryToBytes("/after\0x") });
    dom0.raw(new Uint8Array([...good, ...header(XS.READ, 9, 0, 0xffffffff), ...after]));
    expect(dom0.inbox.map((m) => m.reqId)).toEqual([1]);
    expect(dom0.conn.closed).toBe(true);
    expect(b.d.read("/before")).toBeDefined();
    expect(b.d.read("/after")).toBeUndefined();
  });

  it("accepts a payload of exactly XENSTORE_PAYLOAD_MAX", () => {
    const b = bed();
    const dom0 = b.client(0);
    const value = "v".repeat(XENSTORE.PAYLOAD_MAX - "/big\0".length);
    run([
      [dom0, rq.write("/big", value), OK],
      [dom0, rq.read("/big"), val(value)],
    ]);
  });

  it("closes a connection whose transport throws, without disturbing the others", () => {
    const d = new Xenstored();
    const out: Uint8Array[] = [];
    const reader = new MessageReader();
    const dom0 = d.connect(0, (bytes) => out.push(bytes));
    let explode = false;
    const flaky = d.connect(0, () => {
      if (explode) throw new Error("EPIPE");
    });
    flaky.receive(encodeMessage({ type: XS.WATCH, reqId: 1, txId: 0, payload: binaryToBytes("/x\0t\0") }));
    explode = true;
    dom0.receive(encodeMessage({ type: XS.WRITE, reqId: 2, txId: 0, payload: binaryToBytes("/x\0v") }));
    expect(flaky.closed).toBe(true);
    expect(reader.feed(out[0] as Uint8Array).map((m) => [m.type, m.reqId])).toEqual([[XS.WRITE, 2]]);
    expect(d.connections()).toEqual([dom0]);
  });

  it("ignores handle() for a closed or foreign connection", () => {
    const d = new Xenstored();
    const other = new Xenstored();
    const sent: Uint8Array[] = [];
    const c = d.connect(0, (b) => sent.push(b));
    const msg = { type: XS.WRITE, reqId: 1, txId: 0, payload: binaryToBytes("/x\0v") };
    other.handle(c, msg);
    expect(other.read("/x")).toBeUndefined();
    c.close();
    c.close();
    d.handle(c, msg);
    c.receive(encodeMessage(msg));
    expect(sent).toEqual([]);
    expect(d.read("/x")).toBeUndefined();
  });
});


const VOCAB = ["/", "/local", "/local/domain/7", "/local/domain/8", "/tool/xenstored", "/witness", "x", "data", "a/b", "@introduceDomain", "@releaseDomain", "@x", "//", "/bad/", "\0", "\0", "\0", "T", "F", "n7", "b8", "r0", "w1", "n0", "1", "0", "8", "-1", "99999999999", "check", "log", "on", " ", "\xff"];

const PATHS = ["x", "data", "a/b", "a", "/local/domain/8/x", "/local/domain/8", "/local/domain/7/y", "/witness", "/tool", "/", "@introduceDomain", "tok", "n8", "b0", "T", "F", "0"];

/** Messages that look like requests but are mostly nonsense, sometimes with broken headers. */
function garbage(rand: () => number, n: number): Uint8Array[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.03) {
      chunks.push(header(pick([XS.READ, XS.WRITE, 77]), 1, 0, XENSTORE.PAYLOAD_MAX + 1 + Math.floor(rand() * 1e6)));
      continue;
    }
    if (r < 0.1) {
      chunks.push(Uint8Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256)));
      continue;
    }
    let payload = "";
    if (rand() < 0.5) {
      // Plausible: a well-formed argument list, mostly paths.
      const args = Math.floor(rand() * 3) + 1;
      for (let p = 0; p < args; p++) payload += `${pick(PATHS)}\0`;
      if (rand() < 0.3) payload += pick(VOCAB);
    } else {
      const parts = Math.floor(rand() * 6);
      for (let p = 0; p < parts; p++) payload += pick(VOCAB);
    }
    if (rand() < 0.1) payload += "z".repeat(Math.floor(rand() * 4000));
    payload = payload.slice(0, XENSTORE.PAYLOAD_MAX);
    const type = rand() < 0.9 ? Math.floor(rand() * 24) : Math.floor(rand() * 0x10000);
    const txId = pick([0, 0, 0, 1, 2, 3, Math.floor(rand() * 2 ** 32)]);
    const msg = encodeMessage({ type, reqId: Math.floor(rand() * 2 ** 32), txId, payload: binaryToBytes(payload) });
    // Deliver in random pieces.
    let at = 0;
    while (at < msg.length) {
      const take = 1 + Math.floor(rand() * (msg.length - at));
      chunks.push(msg.subarray(at, at + take));
      at += take;
    }
  }
  return chunks;
}

function outside(store: Store, home: string): string[] {
  const out: string[] = [];
  for (const [p, n] of store.walk()) {
    if (p === home || p.startsWith(home + "/")) continue;
    out.push(`${p} ${n.generation} ${formatPerms(n.perms).join(",")} ${bytesToBinary(n.value)}`);
  }
  return out;
}

describe("fuzz", () => {
  it("random byte chunks never escape receive, nor disturb another connection or the store", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 12 }), (chunks) => {
        const b = bed();
        const dom0 = b.client(0);
        dom0.call(rq.write("/witness", "w"));
        const before = b.d.store;
        const evil = b.client(7);
        for (const c of chunks) expect(() => evil.raw(c)).not.toThrow();
        expect(b.d.store).toBe(before);
        run([[dom0, rq.read("/witness"), val("w")]]);
      }),
      { seed: 20240601, numRuns: 300 },
    );
  });

  it("structured garbage from a domain without a home changes nothing at all", () => {
    const rand = seededRandom(7);
    const b = bed();
    const dom0 = b.client(0);
    homes(dom0, 8);
    run([
      [dom0, rq.write("/witness", "w"), OK],
      [dom0, rq.watch("/", "all"), OK],
    ]);
    dom0.events();
    const before = b.d.store;
    let evil: Client = b.client(7);
    let closes = 0;
    for (let round = 0; round < 400; round++) {
      for (const chunk of garbage(rand, 3)) {
        expect(() => evil.raw(chunk)).not.toThrow();
        if (evil.conn.closed) {
          closes++;
          evil = b.client(7);
        }
      }
      evil.inbox.length = 0;
      if (round % 20 === 0) run([[dom0, rq.read("/witness"), val("w")]]);
    }
    expect(closes).toBeGreaterThan(0);
    expect(b.d.store).toBe(before);
    expect(dom0.events()).toEqual([]);
    run([
      [dom0, rq.control("check"), OK],
      [dom0, rq.read("/witness"), val("w")],
      [dom0, rq.write("/after", "ok"), OK],
    ]);
    expect(b.log.filter((l) => l.includes("check:") || l.includes("internal error"))).toEqual([]);
  });

  it("structured garbage from a domain with a home changes nothing outside it", () => {
    const rand = seededRandom(99);
    const b = bed();
    const dom0 = b.client(0);
    homes(dom0, 8);
    run([[dom0, rq.write("/witness", "w"), OK]]);
    const before = outside(b.d.store, "/local/domain/8");
    let evil: Client = b.client(8);
    const answers = new Map<string, number>();
    for (let round = 0; round < 400; round++) {
      for (const chunk of garbage(rand, 3)) {
        expect(() => evil.raw(chunk)).not.toThrow();
        if (evil.conn.closed) evil = b.client(8);
      }
      for (const m of evil.inbox) {
        const k = m.type === XS.ERROR ? bytesToBinary(m.payload) : String(m.type);
        answers.set(k, (answers.get(k) ?? 0) + 1);
      }
      evil.inbox.length = 0;
    }
    // The garbage reached the handlers: successes and many kinds of errors.
    for (const k of [String(XS.WRITE), String(XS.MKDIR), String(XS.TRANSACTION_START), String(XS.WATCH_EVENT), "EINVAL\0", "ENOENT\0", "EACCES\0", "ENOSYS\0"]) expect(answers.get(k) ?? 0, `${JSON.stringify(k)} in ${JSON.stringify([...answers])}`).toBeGreaterThan(0);
    // What lies outside the home is untouched (the home's own record may change: its children).
    expect(outside(b.d.store, "/local/domain/8")).toEqual(before);
    expect(formatPerms(b.d.store.get("/local/domain/8")?.perms ?? [{ domid: -1, perms: 0 }])[0]).toBe("n8");
    run([
      [dom0, rq.control("check"), OK],
      [dom0, rq.read("/witness"), val("w")],
      [dom0, rq.read("/local/domain/8/../x"), err("EINVAL")],
    ]);
    expect(b.log.filter((l) => l.includes("check:") || l.includes("internal error"))).toEqual([]);
  });
});
