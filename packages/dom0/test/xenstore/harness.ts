/**
 * A test bed for the XenStore daemon in the style of mirage ocaml-xenstore's
 * server tests: fake connections that collect what the daemon sends, request
 * builders, and tables of (connection, request, expected reply).
 *
 * ```ts
 * const b = bed();
 * const dom0 = b.client(0), dom1 = b.client(1);
 * run([
 *   [dom0, rq.write("/a", "hello"), OK],
 *   [dom1, rq.read("/a"), err("EACCES")],
 *   [dom0, rq.read("/a"), val("hello")],
 * ]);
 * ```
 */
import { expect } from "vitest";
import { XS } from "@pvkit/abi";
import {
  MessageReader,
  Xenstored,
  binaryToBytes,
  bytesToBinary,
  encodeMessage,
  joinStrings,
  splitStrings,
  type XenstoredOptions,
  type XsConnection,
  type XsMessage,
} from "../../src/xenstore/index.js";

/** A request: its type and payload. */
export interface Req {
  readonly type: number;
  readonly payload: Uint8Array;
}

/** A fake client: a connection whose output is decoded into `inbox`. */
export interface Client {
  readonly conn: XsConnection;
  readonly domid: number;
  /** Messages received and not yet taken. */
  readonly inbox: XsMessage[];
  /** Sends `req` (in transaction `txId`); returns its reply. Events stay in the inbox. */
  call(req: Req, txId?: number): XsMessage;
  /** Sends raw bytes. */
  raw(bytes: Uint8Array): void;
  /** Takes the watch events received so far, as [path, token]. */
  events(): [string, string][];
}

/** A daemon, its clients, and its log. */
export interface Bed {
  readonly d: Xenstored;
  readonly log: string[];
  client(domid: number, privileged?: boolean): Client;
}

export function bed(opts: Omit<XenstoredOptions, "log"> = {}): Bed {
  const log: string[] = [];
  const d = new Xenstored({ ...opts, log: (l) => log.push(l) });
  return {
    d,
    log,
    client(domid, privileged) {
      const inbox: XsMessage[] = [];
      const reader = new MessageReader();
      const conn = d.connect(domid, (bytes) => inbox.push(...reader.feed(bytes)), privileged === undefined ? {} : { privileged });
      let reqId = 100;
      return {
        conn,
        domid,
        inbox,
        call(req, txId = 0) {
          const id = reqId++;
          conn.receive(encodeMessage({ type: req.type, reqId: id, txId, payload: req.payload }));
          const i = inbox.findIndex((m) => m.type !== XS.WATCH_EVENT && m.reqId === id);
          if (i < 0) throw new Error(`no reply to request ${id} (type ${req.type})`);
          const [reply] = inbox.splice(i, 1);
          return reply as XsMessage;
        },
        raw(bytes) {
          conn.receive(bytes);
        },
        events() {
          const out: [string, string][] = [];
          for (let i = 0; i < inbox.length; ) {
            const m = inbox[i] as XsMessage;
            if (m.type === XS.WATCH_EVENT) {
              const [p, t] = splitStrings(m.payload).strings;
              out.push([p as string, t as string]);
              inbox.splice(i, 1);
            } else i++;
          }
          return out;
        },
      };
    },
  };
}

const s = (...parts: string[]): Uint8Array => joinStrings(parts);

/** Request builders, one per message type. */
export const rq = {
  read: (p: string): Req => ({ type: XS.READ, payload: s(p) }),
  write: (p: string, v: string): Req => ({ type: XS.WRITE, payload: binaryToBytes(`${p}\0${v}`) }),
  mkdir: (p: string): Req => ({ type: XS.MKDIR, payload: s(p) }),
  rm: (p: string): Req => ({ type: XS.RM, payload: s(p) }),
  directory: (p: string): Req => ({ type: XS.DIRECTORY, payload: s(p) }),
  directoryPart: (p: string, off: number | string): Req => ({ type: XS.DIRECTORY_PART, payload: s(p, String(off)) }),
  getPerms: (p: string): Req => ({ type: XS.GET_PERMS, payload: s(p) }),
  setPerms: (p: string, ...perms: string[]): Req => ({ type: XS.SET_PERMS, payload: s(p, ...perms) }),
  watch: (p: string, token: string): Req => ({ type: XS.WATCH, payload: s(p, token) }),
  unwatch: (p: string, token: string): Req => ({ type: XS.UNWATCH, payload: s(p, token) }),
  resetWatches: (): Req => ({ type: XS.RESET_WATCHES, payload: s("") }),
  txStart: (): Req => ({ type: XS.TRANSACTION_START, payload: s("") }),
  txEnd: (commit: boolean): Req => ({ type: XS.TRANSACTION_END, payload: s(commit ? "T" : "F") }),
  introduce: (domid: number, mfn: number, port: number): Req => ({ type: XS.INTRODUCE, payload: s(String(domid), String(mfn), String(port)) }),
  release: (domid: number | string): Req => ({ type: XS.RELEASE, payload: s(String(domid)) }),
  resume: (domid: number | string): Req => ({ type: XS.RESUME, payload: s(String(domid)) }),
  setTarget: (domid: number, target: number): Req => ({ type: XS.SET_TARGET, payload: s(String(domid), String(target)) }),
  getDomainPath: (domid: number | string): Req => ({ type: XS.GET_DOMAIN_PATH, payload: s(String(domid)) }),
  isIntroduced: (domid: number | string): Req => ({ type: XS.IS_DOMAIN_INTRODUCED, payload: s(String(domid)) }),
  control: (...args: string[]): Req => ({ type: XS.CONTROL, payload: s(...args) }),
  raw: (type: number, payload: string | Uint8Array): Req => ({ type, payload: typeof payload === "string" ? binaryToBytes(payload) : payload }),
};

/** What a reply should be. */
export type Expect =
  | { readonly kind: "ok"; readonly payload: string }
  | { readonly kind: "err"; readonly name: string }
  | { readonly kind: "check"; readonly check: (reply: XsMessage) => void };

/** `OK\0`. */
export const OK: Expect = { kind: "ok", payload: "OK\0" };
/** An `XS_ERROR` reply naming `name`. */
export const err = (name: string): Expect => ({ kind: "err", name });
/** A reply of the request's type whose payload is exactly `payload` (a binary string). */
export const val = (payload: string): Expect => ({ kind: "ok", payload });
/** A reply listing `strings`, each with its NUL. */
export const list = (...strings: string[]): Expect => ({ kind: "ok", payload: strings.map((x) => `${x}\0`).join("") });
/** Any reply passing `check`. */
export const satisfies = (check: (reply: XsMessage) => void): Expect => ({ kind: "check", check });

/** Asserts `reply` to `req` is `e`. */
export function expectReply(reply: XsMessage, req: Req, e: Expect, label = ""): void {
  const actual = reply.type === XS.ERROR ? { type: "ERROR", payload: bytesToBinary(reply.payload) } : { type: reply.type, payload: bytesToBinary(reply.payload) };
  switch (e.kind) {
    case "ok":
      expect(actual, label).toEqual({ type: req.type, payload: e.payload });
      break;
    case "err":
      expect(actual, label).toEqual({ type: "ERROR", payload: `${e.name}\0` });
      break;
    case "check":
      e.check(reply);
  }
}

/** One table row: who sends what (optionally in which transaction), and the expected reply. */
export type Row = readonly [Client, Req, Expect] | readonly [Client, Req, Expect, number];

/** Runs rows in order, checking each reply. */
export function run(rows: readonly Row[]): void {
  rows.forEach((row, i) => {
    const [c, req, e, tx] = row;
    const reply = c.call(req, tx ?? 0);
    expectReply(reply, req, e, `row ${i}: dom${c.domid} type ${req.type} ${JSON.stringify(bytesToBinary(req.payload))}`);
  });
}

/** The payload of a reply as a binary string. */
export function text(m: XsMessage): string {
  return bytesToBinary(m.payload);
}

/** Starts a transaction on `c` and returns its id. */
export function txStart(c: Client): number {
  const r = c.call(rq.txStart());
  expect(r.type).toBe(XS.TRANSACTION_START);
  return Number(text(r).replace(/\0$/, ""));
}

/** Sets up the usual domain layout: `/local/domain/<id>` owned by each domid, others without access. */
export function homes(dom0: Client, ...domids: number[]): void {
  for (const id of domids) {
    run([
      [dom0, rq.mkdir(`/local/domain/${id}`), OK],
      [dom0, rq.setPerms(`/local/domain/${id}`, `n${id}`), OK],
    ]);
  }
}
