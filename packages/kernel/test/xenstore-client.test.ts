import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { PAGE_SIZE, XS } from "@pvkit/abi";
import { xenstoreDaemon } from "@pvkit/ring";
import { RingXsTransport, XsClient, XsDecoder, isXsError, type Events, type XsError, type XsTransport } from "@pvkit/kernel";
import { connectXenstoreSocket, xenstoredSocketPath } from "../src/xenstore-socket.js";

// ---------------------------------------------------------------------------
// A fake daemon: decodes requests on its own (not with the client's decoder),
// answers from a handler, and delivers replies in chunks of a chosen size.
// ---------------------------------------------------------------------------

interface Req {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
  raw: Uint8Array;
}

type Reply = { type: number; payload: string | Uint8Array; reqId?: number; txId?: number };
type Handler = (r: Req) => Reply[] | undefined;

const enc = new TextEncoder();
const dec = new TextDecoder();

function frame(type: number, reqId: number, txId: number, payload: string | Uint8Array): Uint8Array {
  const body = typeof payload === "string" ? enc.encode(payload) : payload;
  const out = new Uint8Array(16 + body.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, reqId, true);
  v.setUint32(8, txId, true);
  v.setUint32(12, body.byteLength, true);
  out.set(body, 16);
  return out;
}

class FakeDaemon implements XsTransport {
  readonly requests: Req[] = [];
  /** Replies not yet delivered (when `hold` is set). */
  readonly outbox: Uint8Array[] = [];
  hold = false;
  chunk = Infinity;
  closed = false;
  private deliver: (b: Uint8Array) => void = () => {};

  constructor(public handler: Handler = () => [{ type: -1, payload: "OK\0" }]) {}

  send(bytes: Uint8Array): void {
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(bytes.byteLength).toBe(16 + v.getUint32(12, true)); // one whole message per send
    const r: Req = { type: v.getUint32(0, true), reqId: v.getUint32(4, true), txId: v.getUint32(8, true), payload: bytes.slice(16), raw: bytes.slice() };
    this.requests.push(r);
    const replies = this.handler(r) ?? [];
    for (const rep of replies) this.push(frame(rep.type === -1 ? r.type : rep.type, rep.reqId ?? r.reqId, rep.txId ?? r.txId, rep.payload));
    if (!this.hold) queueMicrotask(() => this.flush());
  }

  /** Queues raw bytes for the client (watch events, replies out of order). */
  push(bytes: Uint8Array): void {
    this.outbox.push(bytes);
  }

  flush(): void {
    const all = this.outbox.splice(0);
    for (const b of all) {
      for (let at = 0; at < b.byteLength; at += Math.min(this.chunk, b.byteLength)) this.deliver(b.subarray(at, Math.min(b.byteLength, at + this.chunk)));
    }
  }

  onData(handler: (bytes: Uint8Array) => void): void {
    this.deliver = handler;
  }

  close(): void {
    this.closed = true;
  }
}

function watchEvent(path: string, token: string): Uint8Array {
  return frame(XS.WATCH_EVENT, 0, 0, `${path}\0${token}\0`);
}

function right<T>(e: E.Either<XsError, T>): T {
  if (E.isLeft(e)) throw new Error(`expected Right, got ${e.left.message}`);
  return e.right;
}

function left<T>(e: E.Either<unknown, T>): XsError {
  if (E.isRight(e)) throw new Error(`expected Left, got ${String(e.right)}`);
  if (!isXsError(e.left)) throw new Error(`not an XsError: ${JSON.stringify(e.left)}`);
  return e.left;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

// ---------------------------------------------------------------------------

describe("XsClient request encoding", () => {
  /** Runs `op` against a daemon answering `reply` and returns the one request it sent. */
  async function sent(op: (xs: XsClient) => Promise<unknown>, reply: string | Uint8Array = "OK\0"): Promise<Req> {
    const d = new FakeDaemon(() => [{ type: -1, payload: reply }]);
    const xs = new XsClient(d);
    await op(xs);
    expect(d.requests).toHaveLength(1);
    return d.requests[0]!;
  }

  const cases: [string, (xs: XsClient) => Promise<unknown>, number, string, (string | Uint8Array)?][] = [
    ["read", (xs) => xs.read("/local/domain/1/name")(), XS.READ, "/local/domain/1/name\0", "vm"],
    ["readBytes", (xs) => xs.readBytes("name")(), XS.READ, "name\0", "vm"],
    ["write (no NUL after the value)", (xs) => xs.write("/a/b", "hello")(), XS.WRITE, "/a/b\0hello"],
    ["write of bytes with NULs", (xs) => xs.write("/a", new Uint8Array([1, 0, 2]))(), XS.WRITE, "/a\0\x01\x00\x02"],
    ["write of the empty value", (xs) => xs.write("/a", "")(), XS.WRITE, "/a\0"],
    ["mkdir", (xs) => xs.mkdir("/a/b")(), XS.MKDIR, "/a/b\0"],
    ["rm", (xs) => xs.rm("/a/b")(), XS.RM, "/a/b\0"],
    ["directory", (xs) => xs.directory("/local")(), XS.DIRECTORY, "/local\0", "domain\0"],
    ["getPerms", (xs) => xs.getPerms("/a")(), XS.GET_PERMS, "/a\0", "n0\0r1\0"],
    ["setPerms", (xs) => xs.setPerms("/a", { owner: 1, others: "n", entries: [{ domid: 0, access: "r" }, { domid: 2, access: "b" }] })(), XS.SET_PERMS, "/a\0n1\0r0\0b2\0"],
    ["getDomainPath", (xs) => xs.getDomainPath(7)(), XS.GET_DOMAIN_PATH, "7\0", "/local/domain/7\0"],
    ["introduce", (xs) => xs.introduce(3, 0x1234, 5)(), XS.INTRODUCE, "3\x004660\x005\0"],
    ["release", (xs) => xs.release(3)(), XS.RELEASE, "3\0"],
    ["isDomainIntroduced", (xs) => xs.isDomainIntroduced(3)(), XS.IS_DOMAIN_INTRODUCED, "3\0", "T\0"],
    ["resetWatches", (xs) => xs.resetWatches()(), XS.RESET_WATCHES, "\0"],
    ["transactionStart", (xs) => xs.transactionStart()(), XS.TRANSACTION_START, "\0", "17\0"],
    ["transactionEnd commit", (xs) => xs.transactionEnd({ id: 17 }, true)(), XS.TRANSACTION_END, "T\0"],
    ["transactionEnd abort", (xs) => xs.transactionEnd({ id: 17 }, false)(), XS.TRANSACTION_END, "F\0"],
    ["unwatch", (xs) => xs.unwatch("/a", "tok")(), XS.UNWATCH, "/a\0tok\0"],
  ];

  for (const [name, op, type, payload, reply] of cases) {
    it(`${name}: header and payload byte for byte`, async () => {
      const r = await sent(op, reply);
      const tx = name.startsWith("transactionEnd") ? 17 : 0;
      expect([...r.raw]).toEqual([...frame(type, r.reqId, tx, payload)]);
      expect(r.reqId).not.toBe(0);
    });
  }

  it("watch: path and token, each NUL-terminated", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const w = xs.watch("/local/domain/1/device", "my-token");
    expect(right(await w.registered)).toBeUndefined();
    expect([...d.requests[0]!.raw]).toEqual([...frame(XS.WATCH, d.requests[0]!.reqId, 0, "/local/domain/1/device\0my-token\0")]);
  });

  it("requests in a transaction carry its tx_id", async () => {
    const d = new FakeDaemon(() => [{ type: -1, payload: "v" }]);
    const xs = new XsClient(d);
    await xs.read("/a", { id: 42 })();
    expect(d.requests[0]!.txId).toBe(42);
  });

  it("nothing is sent until the task runs (TaskEither is lazy)", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const t = xs.write("/a", "1");
    expect(d.requests).toHaveLength(0);
    await t();
    expect(d.requests).toHaveLength(1);
  });

  it("a payload over XENSTORE_PAYLOAD_MAX fails with E2BIG and is never sent", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const e = left(await xs.write("/a", "x".repeat(4096))());
    expect(e.name).toBe("E2BIG");
    expect(d.requests).toHaveLength(0);
    right(await xs.write("/a", "x".repeat(4096 - 3))()); // exactly 4096 bytes of payload is allowed
  });
});

describe("XsClient reply decoding", () => {
  it("read gives the text, readBytes the raw bytes (NULs included)", async () => {
    const d = new FakeDaemon((r) => [{ type: -1, payload: dec.decode(r.payload) === "/t\0" ? "héllo" : new Uint8Array([0, 1, 0]) }]);
    const xs = new XsClient(d);
    expect(right(await xs.read("/t")())).toBe("héllo");
    expect([...right(await xs.readBytes("/b")())]).toEqual([0, 1, 0]);
  });

  it("directory splits the NUL-terminated names; an empty reply is no children", async () => {
    const d = new FakeDaemon((r) => [{ type: -1, payload: dec.decode(r.payload) === "/x\0" ? "a\0bb\0c\0" : "" }]);
    const xs = new XsClient(d);
    expect(right(await xs.directory("/x")())).toEqual(["a", "bb", "c"]);
    expect(right(await xs.directory("/empty")())).toEqual([]);
  });

  it("getPerms parses owner, others and entries", async () => {
    const d = new FakeDaemon(() => [{ type: -1, payload: "w1\0r0\0b7\0n9\0" }]);
    const xs = new XsClient(d);
    expect(right(await xs.getPerms("/x")())).toEqual({
      owner: 1,
      others: "w",
      entries: [
        { domid: 0, access: "r" },
        { domid: 7, access: "b" },
        { domid: 9, access: "n" },
      ],
    });
  });

  it("malformed permissions are EIO", async () => {
    const d = new FakeDaemon(() => [{ type: -1, payload: "q1\0" }]);
    const xs = new XsClient(d);
    expect(left(await xs.getPerms("/x")()).name).toBe("EIO");
  });

  it("getDomainPath, isDomainIntroduced and transactionStart", async () => {
    const answers: Record<number, string> = { [XS.GET_DOMAIN_PATH]: "/local/domain/4\0", [XS.IS_DOMAIN_INTRODUCED]: "F\0", [XS.TRANSACTION_START]: "4294967295\0" };
    const d = new FakeDaemon((r) => [{ type: -1, payload: answers[r.type]! }]);
    const xs = new XsClient(d);
    expect(right(await xs.getDomainPath(4)())).toBe("/local/domain/4");
    expect(right(await xs.isDomainIntroduced(4)())).toBe(false);
    expect(right(await xs.transactionStart()())).toEqual({ id: 0xffff_ffff });
  });

  it("DIRECTORY too big (E2BIG) falls back to DIRECTORY_PART, restarting when the generation changes", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `child-${i}`);
    const list = names.map((n) => `${n}\0`).join("");
    let gen = 5;
    let parts = 0;
    const d = new FakeDaemon((r) => {
      if (r.type === XS.DIRECTORY) return [{ type: XS.ERROR, payload: "E2BIG\0" }];
      const [, off] = dec.decode(r.payload).split("\0");
      const at = Number(off);
      parts++;
      if (parts === 2) gen = 6; // the node changed between the first and second part
      const piece = list.slice(at, at + 20);
      const last = at + 20 >= list.length;
      return [{ type: -1, payload: `${gen}\0${piece}${last ? "\0" : ""}` }];
    });
    const xs = new XsClient(d);
    expect(right(await xs.directory("/big")())).toEqual(names);
    const offsets = d.requests.filter((r) => r.type === XS.DIRECTORY_PART).map((r) => dec.decode(r.payload));
    expect(offsets[0]).toBe("/big\x000\0");
    expect(offsets[2]).toBe("/big\x000\0"); // restarted from 0
  });

  it("DIRECTORY_PART unsupported (ENOSYS) reports E2BIG, as xs.c does", async () => {
    const d = new FakeDaemon((r) => [{ type: XS.ERROR, payload: r.type === XS.DIRECTORY ? "E2BIG\0" : "ENOSYS\0" }]);
    const xs = new XsClient(d);
    expect(left(await xs.directory("/big")()).name).toBe("E2BIG");
  });
});

describe("XsClient errors", () => {
  it("XS_ERROR payloads become named errors with op, path and -errno", async () => {
    const d = new FakeDaemon(() => [{ type: XS.ERROR, payload: "ENOENT\0" }]);
    const xs = new XsClient(d);
    const e = left(await xs.read("/no/such")());
    expect(e).toMatchObject({ op: "XS_READ", name: "ENOENT", code: -2, path: "/no/such" });
    expect(e.message).toBe("XS_READ /no/such: ENOENT");
  });

  it.each([
    ["EACCES", -13],
    ["EEXIST", -17],
    ["EAGAIN", -11],
    ["E2BIG", -7],
    ["EPERM", -1],
    ["EISCONN", -106],
  ] as const)("%s maps to %d", async (name, code) => {
    const d = new FakeDaemon(() => [{ type: XS.ERROR, payload: `${name}\0` }]);
    const xs = new XsClient(d);
    expect(left(await xs.write("/a", "b")())).toMatchObject({ name, code, op: "XS_WRITE" });
  });

  it("an unknown error name becomes EINVAL, keeping the name in the message", async () => {
    const d = new FakeDaemon(() => [{ type: XS.ERROR, payload: "EWHATEVER\0" }]);
    const xs = new XsClient(d);
    const e = left(await xs.rm("/a")());
    expect(e.name).toBe("EINVAL");
    expect(e.message).toContain("EWHATEVER");
  });

  it("a reply of the wrong type is EIO", async () => {
    const d = new FakeDaemon(() => [{ type: XS.WRITE, payload: "OK\0" }]);
    const xs = new XsClient(d);
    expect(left(await xs.read("/a")()).name).toBe("EIO");
  });

  it("closing fails requests in flight with EIO, and later ones at once", async () => {
    const d = new FakeDaemon(() => []);
    const xs = new XsClient(d);
    const p = xs.read("/a")();
    await tick();
    expect(xs.inFlight).toBe(1);
    xs.close();
    expect(left(await p).name).toBe("EIO");
    expect(d.closed).toBe(true);
    expect(left(await xs.read("/a")()).name).toBe("EIO");
  });

  it("a send that throws fails that request with EIO", async () => {
    const t: XsTransport = {
      send: () => {
        throw new Error("wire cut");
      },
      onData: () => {},
    };
    const e = left(await new XsClient(t).read("/a")());
    expect(e.name).toBe("EIO");
    expect(e.message).toContain("wire cut");
  });

  it("a header announcing more than XENSTORE_PAYLOAD_MAX closes the connection", async () => {
    const d = new FakeDaemon(() => []);
    d.hold = true;
    const xs = new XsClient(d);
    const p = xs.read("/a")();
    await tick();
    const bad = frame(XS.READ, d.requests[0]!.reqId, 0, "");
    new DataView(bad.buffer).setUint32(12, 4097, true);
    d.push(bad);
    d.flush();
    expect(left(await p).name).toBe("EIO");
    expect(xs.closed).toBe(true);
    expect(d.closed).toBe(true);
  });

  it("a transport that closes from its side fails requests in flight", async () => {
    let closeIt: (e?: Error) => void = () => {};
    const t: XsTransport = { send: () => {}, onData: () => {}, onClose: (h) => (closeIt = h) };
    const xs = new XsClient(t);
    const p = xs.read("/a")();
    await tick();
    closeIt(new Error("peer went away"));
    const e = left(await p);
    expect(e.name).toBe("EIO");
    expect(e.message).toContain("peer went away");
  });
});

describe("XsClient framing and multiplexing", () => {
  it("replies delivered one byte at a time", async () => {
    const d = new FakeDaemon((r) => [{ type: -1, payload: r.type === XS.READ ? "value-of-some-length" : "a\0b\0" }]);
    d.chunk = 1;
    const xs = new XsClient(d);
    expect(right(await xs.read("/x")())).toBe("value-of-some-length");
    expect(right(await xs.directory("/x")())).toEqual(["a", "b"]);
  });

  it("several messages in one chunk, and messages split across chunks at every point", async () => {
    for (let cut = 1; cut < 40; cut++) {
      const d = new FakeDaemon(() => []);
      d.hold = true;
      const xs = new XsClient(d);
      const a = xs.read("/a")();
      const b = xs.read("/b")();
      await tick();
      const [ra, rb] = d.requests;
      const bytes = new Uint8Array([...frame(XS.READ, ra!.reqId, 0, "AAA"), ...frame(XS.READ, rb!.reqId, 0, "BBBB")]);
      d.push(bytes.subarray(0, cut));
      d.push(bytes.subarray(cut));
      d.flush();
      expect([right(await a), right(await b)]).toEqual(["AAA", "BBBB"]);
    }
  });

  it("concurrent requests get distinct req_ids and their own replies, whatever the order of the replies", async () => {
    const d = new FakeDaemon(() => []);
    d.hold = true;
    const xs = new XsClient(d);
    const ps = ["/one", "/two", "/three"].map((p) => xs.read(p)());
    await tick();
    const ids = d.requests.map((r) => r.reqId);
    expect(new Set(ids).size).toBe(3);
    // Answer in reverse order, each with the path it was asked for.
    for (const r of [...d.requests].reverse()) d.push(frame(XS.READ, r.reqId, 0, `answer ${dec.decode(r.payload).slice(0, -1)}`));
    d.chunk = 7;
    d.flush();
    expect((await Promise.all(ps)).map(right)).toEqual(["answer /one", "answer /two", "answer /three"]);
  });

  it("watch events interleaved with replies go to the watch; the replies still resolve", async () => {
    const d = new FakeDaemon(() => []);
    d.hold = true;
    const xs = new XsClient(d);
    const w = xs.watch("/dev", "T");
    const r1 = xs.read("/dev/a")();
    await tick();
    const [watchReq, readReq] = d.requests;
    // event before the WATCH reply, then the read reply, an event, the WATCH reply, another event
    d.push(watchEvent("/dev", "T"));
    d.push(frame(XS.READ, readReq!.reqId, 0, "A"));
    d.push(watchEvent("/dev/a", "T"));
    d.push(watchEvent("/other", "unknown-token")); // not ours: dropped
    d.push(frame(XS.WATCH, watchReq!.reqId, 0, "OK\0"));
    d.push(watchEvent("/dev/b", "T"));
    d.chunk = 5;
    d.flush();
    expect(right(await r1)).toBe("A");
    expect(right(await w.registered)).toBeUndefined();
    // answer the UNWATCH that leaving the loop sends
    d.hold = false;
    d.handler = () => [{ type: -1, payload: "OK\0" }];
    const seen: string[] = [];
    for await (const ev of w) {
      expect(ev.token).toBe("T");
      seen.push(ev.path);
      if (seen.length === 3) break;
    }
    expect(seen).toEqual(["/dev", "/dev/a", "/dev/b"]);
  });
});

describe("XsClient watches", () => {
  it("leaving a for-await loop sends UNWATCH with the same path and token, and later events are dropped", async () => {
    const d = new FakeDaemon((r) => {
      const out: Reply[] = [{ type: -1, payload: "OK\0" }];
      if (r.type === XS.WATCH) {
        const [path, token] = dec.decode(r.payload).split("\0");
        out.push({ type: XS.WATCH_EVENT, payload: `${path}\0${token}\0`, reqId: 0 });
      }
      return out;
    });
    const xs = new XsClient(d);
    const w = xs.watch("/local/domain/1/device");
    expect(xs.activeWatches()).toEqual([{ path: "/local/domain/1/device", token: w.token }]);
    const paths: string[] = [];
    for await (const ev of w) {
      paths.push(ev.path); // the event fired when the watch is set
      break;
    }
    expect(paths).toEqual(["/local/domain/1/device"]);
    const unwatch = d.requests.find((r) => r.type === XS.UNWATCH);
    expect(unwatch).toBeDefined();
    expect(dec.decode(unwatch!.payload)).toBe(`/local/domain/1/device\0${w.token}\0`);
    expect(xs.activeWatches()).toEqual([]);
    d.push(watchEvent("/local/domain/1/device/x", w.token));
    d.flush();
    expect(w.pending).toBe(0);
    expect(await w.next()).toEqual({ value: undefined, done: true });
    // closing again sends nothing more
    await w.close();
    expect(d.requests.filter((r) => r.type === XS.UNWATCH)).toHaveLength(1);
  });

  it("generated tokens are distinct; a token in use fails with EEXIST without a request", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const a = xs.watch("/a");
    const b = xs.watch("/b");
    expect(a.token).not.toBe(b.token);
    const c = xs.watch("/c", a.token);
    expect(left(await c.registered).name).toBe("EEXIST");
    await expect(c.next()).rejects.toMatchObject({ xs: { name: "EEXIST" } });
    expect(d.requests.filter((r) => r.type === XS.WATCH)).toHaveLength(2);
  });

  it("a refused watch makes iteration throw the XsError", async () => {
    const d = new FakeDaemon(() => [{ type: XS.ERROR, payload: "EACCES\0" }]);
    const xs = new XsClient(d);
    const w = xs.watch("/secret");
    await expect(
      (async () => {
        for await (const _ of w) void _;
      })(),
    ).rejects.toMatchObject({ xs: { name: "EACCES", op: "XS_WATCH" } });
    expect(xs.activeWatches()).toEqual([]);
  });

  it("a waiting iteration ends when the connection closes", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const w = xs.watch("/a");
    const n = w.next();
    await tick();
    xs.close();
    expect(await n).toEqual({ value: undefined, done: true });
  });

  it("resetWatches ends every local watch", async () => {
    const d = new FakeDaemon();
    const xs = new XsClient(d);
    const w = xs.watch("/a");
    right(await xs.resetWatches()());
    expect(xs.activeWatches()).toEqual([]);
    expect(await w.next()).toEqual({ value: undefined, done: true });
  });
});

describe("XsClient transactions", () => {
  /** A daemon whose commits fail with EAGAIN `conflicts` times. */
  function conflicting(conflicts: number): FakeDaemon {
    let nextTx = 10;
    let left = conflicts;
    return new FakeDaemon((r) => {
      switch (r.type) {
        case XS.TRANSACTION_START:
          return [{ type: -1, payload: `${nextTx++}\0` }];
        case XS.TRANSACTION_END:
          if (dec.decode(r.payload) === "T\0" && left > 0) {
            left--;
            return [{ type: XS.ERROR, payload: "EAGAIN\0" }];
          }
          return [{ type: -1, payload: "OK\0" }];
        case XS.READ:
          return [{ type: -1, payload: "5" }];
        default:
          return [{ type: -1, payload: "OK\0" }];
      }
    });
  }

  const body = (xs: XsClient, runs: number[]) => (tx: { id: number }) =>
    pipe(
      TE.fromIO(() => void runs.push(tx.id)),
      TE.chain(() => xs.read("/counter", tx)),
      TE.chain((v) => xs.write("/counter", String(Number(v) + 1), tx)),
      TE.map(() => "done"),
    );

  it("commits when there is no conflict", async () => {
    const d = conflicting(0);
    const xs = new XsClient(d);
    const runs: number[] = [];
    expect(right(await xs.transaction(body(xs, runs))())).toBe("done");
    expect(runs).toEqual([10]);
    expect(d.requests.map((r) => r.type)).toEqual([XS.TRANSACTION_START, XS.READ, XS.WRITE, XS.TRANSACTION_END]);
    expect(d.requests.slice(1).every((r) => r.txId === 10)).toBe(true);
    expect(dec.decode(d.requests[3]!.payload)).toBe("T\0");
  });

  it("runs the whole body again after each EAGAIN and succeeds after N conflicts", async () => {
    const d = conflicting(3);
    const xs = new XsClient(d);
    const runs: number[] = [];
    expect(right(await xs.transaction(body(xs, runs), { maxRetries: 3 })())).toBe("done");
    expect(runs).toEqual([10, 11, 12, 13]);
    expect(d.requests.filter((r) => r.type === XS.TRANSACTION_START)).toHaveLength(4);
  });

  it("gives up with the EAGAIN after the retry budget", async () => {
    const d = conflicting(100);
    const xs = new XsClient(d);
    const runs: number[] = [];
    const e = left(await xs.transaction(body(xs, runs), { maxRetries: 2 })());
    expect(e).toMatchObject({ name: "EAGAIN", op: "XS_TRANSACTION_END" });
    expect(runs).toHaveLength(3);
  });

  it("aborts (F) when the body fails, and returns the body's error without retrying", async () => {
    const d = conflicting(0);
    const xs = new XsClient(d);
    let runs = 0;
    const r = await xs.transaction((tx) =>
      pipe(
        TE.fromIO(() => void runs++),
        TE.chainW(() => xs.write("/a", "1", tx)),
        TE.chainW(() => TE.left({ op: "mine", message: "body failed" })),
      ),
    )();
    expect(E.isLeft(r) && r.left.message).toBe("body failed");
    expect(runs).toBe(1);
    const end = d.requests.find((q) => q.type === XS.TRANSACTION_END)!;
    expect(dec.decode(end.payload)).toBe("F\0");
    expect(end.txId).toBe(10);
  });

  it("an EAGAIN inside the body also retries (after aborting)", async () => {
    let fails = 1;
    let tx = 1;
    const d = new FakeDaemon((r) => {
      if (r.type === XS.TRANSACTION_START) return [{ type: -1, payload: `${tx++}\0` }];
      if (r.type === XS.WRITE && fails-- > 0) return [{ type: XS.ERROR, payload: "EAGAIN\0" }];
      return [{ type: -1, payload: "OK\0" }];
    });
    const xs = new XsClient(d);
    right(await xs.transaction((t) => xs.write("/a", "1", t))());
    expect(d.requests.filter((r) => r.type === XS.TRANSACTION_END).map((r) => dec.decode(r.payload))).toEqual(["F\0", "T\0"]);
  });

  it("aborts and rethrows when the body throws", async () => {
    const d = conflicting(0);
    const xs = new XsClient(d);
    await expect(
      xs.transaction(() => () => {
        throw new Error("bug");
      })(),
    ).rejects.toThrow("bug");
    expect(dec.decode(d.requests.find((q) => q.type === XS.TRANSACTION_END)!.payload)).toBe("F\0");
  });
});

describe("RingXsTransport", () => {
  /** A stand-in for the kernel's event channels: notify on the guest's port runs the daemon side. */
  function rig() {
    const page = new Uint8Array(PAGE_SIZE);
    const daemonRings = xenstoreDaemon(page);
    const handlers = new Map<number, () => void>();
    const waiters: (() => void)[] = [];
    let notifies = 0;
    const daemon = new FakeDaemon();
    const incoming = new XsDecoder();
    let stall = false;
    const pendingOut: Uint8Array[] = [];
    // The daemon side: consume req, answer into rsp, notify the guest.
    const serve = () => {
      if (stall) return;
      let moved = false;
      for (;;) {
        const b = daemonRings.rx.read();
        if (b.byteLength === 0) break;
        moved = true;
        for (const m of incoming.push(b)) daemon.send(frame(m.type, m.reqId, m.txId, m.payload));
      }
      pendingOut.push(...daemon.outbox.splice(0));
      while (pendingOut.length > 0) {
        const head = pendingOut[0]!;
        const n = daemonRings.tx.write(head);
        if (n > 0) moved = true;
        if (n < head.byteLength) {
          pendingOut[0] = head.subarray(n);
          break;
        }
        pendingOut.shift();
      }
      if (moved) queueMicrotask(fire);
    };
    const fire = () => {
      handlers.get(9)?.();
      for (const w of waiters.splice(0)) w();
    };
    daemon.hold = true;
    const events = {
      on: (port: number, h: () => void) => handlers.set(port, h),
      off: (port: number) => handlers.delete(port),
      notify: (port: number) => {
        expect(port).toBe(9);
        notifies++;
        queueMicrotask(serve);
        return E.right(0);
      },
      wait: () => new Promise<void>((r) => waiters.push(r)),
    } as unknown as Events;
    return {
      page,
      daemon,
      events,
      notifies: () => notifies,
      setStall: (s: boolean) => {
        stall = s;
        if (!s) serve();
      },
    };
  }

  it("writes requests into req, notifies, and reads replies from rsp", async () => {
    const r = rig();
    r.daemon.handler = (q) => [{ type: -1, payload: q.type === XS.READ ? "from-the-ring" : "OK\0" }];
    const xs = new XsClient(new RingXsTransport(r.page, 9, r.events));
    expect(right(await xs.read("/local/domain/1/name")())).toBe("from-the-ring");
    right(await xs.write("/a", "b")());
    expect(r.notifies()).toBeGreaterThanOrEqual(2);
  });

  it("a request bigger than the 1024-byte req ring goes in pieces, waiting for the daemon to consume", async () => {
    const r = rig();
    r.daemon.handler = (q) => [{ type: -1, payload: q.type === XS.READ ? "x".repeat(3000) : "OK\0" }];
    const xs = new XsClient(new RingXsTransport(r.page, 9, r.events));
    const value = "v".repeat(3500);
    right(await xs.write("/big", value)());
    const w = r.daemon.requests.find((q) => q.type === XS.WRITE)!;
    expect(dec.decode(w.payload)).toBe(`/big\0${value}`);
    // and a reply bigger than the rsp ring comes back in pieces too
    expect(right(await xs.read("/big")())).toHaveLength(3000);
  });

  it("writes wait while the ring is full and resume when the daemon catches up", async () => {
    const r = rig();
    r.setStall(true);
    const xs = new XsClient(new RingXsTransport(r.page, 9, r.events));
    const p = xs.write("/big", "z".repeat(2000))();
    await tick();
    expect(r.daemon.requests).toHaveLength(0);
    r.setStall(false);
    right(await p);
    expect(r.daemon.requests).toHaveLength(1);
  });
});

describe("connectXenstoreSocket", () => {
  it("the default path follows XENSTORED_PATH, then XENSTORED_RUNDIR", () => {
    expect(xenstoredSocketPath({ XENSTORED_PATH: "/tmp/xs.sock" })).toBe("/tmp/xs.sock");
    expect(xenstoredSocketPath({ XENSTORED_RUNDIR: "/run/x" })).toBe("/run/x/socket");
    expect(xenstoredSocketPath({})).toBe("/var/run/xenstored/socket");
  });

  it("speaks xs_wire over a Unix socket (path from XENSTORED_PATH by default)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pvkit-xs-"));
    const path = join(dir, "socket");
    const seen: string[] = [];
    const server = createServer((s: Socket) => {
      const decoder = new XsDecoder();
      s.on("data", (b) => {
        for (const m of decoder.push(new Uint8Array(b))) {
          seen.push(dec.decode(m.payload));
          const reply = m.type === XS.READ ? "over-the-socket" : "OK\0";
          const bytes = frame(m.type, m.reqId, m.txId, reply);
          // in two pieces, to exercise reassembly over a stream
          s.write(bytes.subarray(0, 5));
          setTimeout(() => s.write(bytes.subarray(5)), 5);
        }
      });
    });
    await new Promise<void>((r) => server.listen(path, r));
    const saved = process.env["XENSTORED_PATH"];
    process.env["XENSTORED_PATH"] = path;
    try {
      const xs = await connectXenstoreSocket();
      expect(right(await xs.read("/tool/x")())).toBe("over-the-socket");
      right(await xs.write("/tool/x", "1")());
      expect(seen).toEqual(["/tool/x\0", "/tool/x\x001"]);
      // the server going away fails what is in flight
      const p = xs.read("/never")();
      xs.close();
      expect(left(await p).name).toBe("EIO");
    } finally {
      if (saved === undefined) delete process.env["XENSTORED_PATH"];
      else process.env["XENSTORED_PATH"] = saved;
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects when nothing listens", async () => {
    await expect(connectXenstoreSocket("/nonexistent/dir/socket")).rejects.toThrow(/cannot connect to xenstored/);
  });
});
