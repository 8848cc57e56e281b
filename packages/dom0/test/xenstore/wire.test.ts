import { describe, expect, it } from "vitest";
import { XENSTORE, XS } from "@pvkit/abi";
import {
  MessageReader,
  XsProtocolError,
  binaryToBytes,
  bytesToBinary,
  encodeMessage,
  errorReply,
  isXsErrorName,
  joinStrings,
  messageTypeName,
  oneArg,
  splitStrings,
  watchEvent,
  type XsMessage,
} from "../../src/xenstore/index.js";

const msg = (type: number, payload: string, reqId = 7, txId = 0): XsMessage => ({ type, reqId, txId, payload: binaryToBytes(payload) });

describe("xsd_sockmsg framing", () => {
  it("encodes the header as four little-endian u32 and the payload after it", () => {
    const bytes = encodeMessage(msg(XS.WRITE, "/a\0b", 0x01020304, 5));
    expect([...bytes.subarray(0, 16)]).toEqual([11, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 4, 0, 0, 0]);
    expect(bytesToBinary(bytes.subarray(16))).toBe("/a\0b");
  });

  it("refuses to encode what does not fit the header or the payload limit", () => {
    expect(() => encodeMessage(msg(-1, ""))).toThrow(RangeError);
    expect(() => encodeMessage(msg(1, "", 2 ** 32))).toThrow(RangeError);
    expect(() => encodeMessage({ type: 1, reqId: 0, txId: 0, payload: new Uint8Array(XENSTORE.PAYLOAD_MAX + 1) })).toThrow(RangeError);
    expect(encodeMessage({ type: 1, reqId: 0, txId: 0, payload: new Uint8Array(XENSTORE.PAYLOAD_MAX) }).length).toBe(16 + XENSTORE.PAYLOAD_MAX);
  });

  const stream = [msg(XS.READ, "/a\0"), msg(XS.WRITE, "/b\0xyz", 8, 3), msg(XS.TRANSACTION_START, "", 9), msg(XS.DIRECTORY, "/\0", 10)];
  const bytes = new Uint8Array(stream.flatMap((m) => [...encodeMessage(m)]));

  it.each([
    ["all at once", [bytes.length]],
    ["byte by byte", Array.from({ length: bytes.length }, () => 1)],
    ["split inside a header", [5, 20, bytes.length]],
    ["split at every boundary", [16, 3, 16, 6, 16, 16, 2, bytes.length]],
    ["odd chunks", [7, 13, 29, 3, bytes.length]],
  ])("reassembles messages delivered %s", (_name, cuts) => {
    const r = new MessageReader();
    const got: XsMessage[] = [];
    let at = 0;
    for (const n of cuts) {
      got.push(...r.feed(bytes.subarray(at, Math.min(at + n, bytes.length))));
      at = Math.min(at + n, bytes.length);
      if (at === bytes.length) break;
    }
    expect(got.map((m) => [m.type, m.reqId, m.txId, bytesToBinary(m.payload)])).toEqual(stream.map((m) => [m.type, m.reqId, m.txId, bytesToBinary(m.payload)]));
    expect(r.partial).toBe(false);
  });

  it("waits on a truncated header or payload", () => {
    const r = new MessageReader();
    const one = encodeMessage(msg(XS.READ, "/abc\0"));
    expect(r.feed(one.subarray(0, 10))).toEqual([]);
    expect(r.partial).toBe(true);
    expect(r.feed(one.subarray(10, 18))).toEqual([]);
    expect(r.feed(one.subarray(18))).toHaveLength(1);
    expect(r.feed(new Uint8Array(0))).toEqual([]);
  });

  it("accepts a payload of exactly XENSTORE_PAYLOAD_MAX and fails on one byte more, for good", () => {
    const r = new MessageReader();
    expect(r.feed(encodeMessage({ type: 1, reqId: 0, txId: 0, payload: new Uint8Array(4096) }))[0]?.payload.length).toBe(4096);
    const hdr = new Uint8Array(16);
    new DataView(hdr.buffer).setUint32(12, XENSTORE.PAYLOAD_MAX + 1, true);
    expect(() => r.feed(hdr)).toThrow(XsProtocolError);
    expect(r.failed).toBe(true);
    expect(() => r.feed(encodeMessage(msg(XS.READ, "/\0")))).toThrow(XsProtocolError);
  });

  it("hands over the messages completed before a bad header with the error", () => {
    const r = new MessageReader();
    const hdr = new Uint8Array(16);
    new DataView(hdr.buffer).setUint32(12, 0xffffffff, true);
    const good = encodeMessage(msg(XS.READ, "/ok\0"));
    try {
      r.feed(new Uint8Array([...good, ...hdr, ...good]));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(XsProtocolError);
      expect((e as XsProtocolError).messages.map((m) => bytesToBinary(m.payload))).toEqual(["/ok\0"]);
    }
  });
});

describe("payload helpers", () => {
  it.each([
    ["a\0b\0", ["a", "b"], ""],
    ["a\0b", ["a"], "b"],
    ["", [], ""],
    ["\0\0", ["", ""], ""],
    ["/p\0v\0with\0nuls", ["/p", "v", "with"], "nuls"],
  ])("splitStrings(%j)", (payload, strings, rest) => {
    const r = splitStrings(binaryToBytes(payload));
    expect([r.strings, bytesToBinary(r.rest)]).toEqual([strings, rest]);
  });

  it.each([
    ["/a\0", "/a"],
    ["\0", ""],
    ["/a", undefined],
    ["", undefined],
    ["/a\0b\0", undefined],
    ["/a\0junk", undefined],
  ])("oneArg(%j) is %j", (payload, want) => {
    expect(oneArg(binaryToBytes(payload))).toBe(want);
  });

  it("keeps every byte value through binary strings", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(binaryToBytes(bytesToBinary(all))).toEqual(all);
    expect(() => binaryToBytes("\u0100")).toThrow(RangeError);
    expect(bytesToBinary(joinStrings(["x", "\xff"]))).toBe("x\0\xff\0");
  });

  it("builds error replies and events as xenstored does", () => {
    const e = errorReply({ reqId: 3, txId: 4 }, "ENOENT");
    expect([e.type, e.reqId, e.txId, bytesToBinary(e.payload)]).toEqual([XS.ERROR, 3, 4, "ENOENT\0"]);
    const w = watchEvent("/a", "tok");
    expect([w.type, w.reqId, w.txId, bytesToBinary(w.payload)]).toEqual([XS.WATCH_EVENT, 0, 0, "/a\0tok\0"]);
    expect([isXsErrorName("EAGAIN"), isXsErrorName("EQUOTA")]).toEqual([true, false]);
    expect([messageTypeName(XS.WRITE), messageTypeName(0), messageTypeName(99)]).toEqual(["WRITE", "CONTROL", "99"]);
  });
});
