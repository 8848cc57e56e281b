/** Domain lifecycle: INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET. */
import { describe, expect, it } from "vitest";
import { DOMID, XS } from "@pvkit/abi";
import { Xenstored, encodeMessage } from "../../src/xenstore/index.js";
import { OK, bed, err, list, rq, run, txStart, val } from "./harness.js";

function setup(hooksThrow = false) {
  const calls: string[] = [];
  const b = bed({
    hooks: {
      introduce: (domid, mfn, port) => {
        calls.push(`introduce ${domid} ${mfn} ${port}`);
        if (hooksThrow) throw new Error("cannot map");
      },
      release: (domid) => {
        calls.push(`release ${domid}`);
        if (hooksThrow) throw new Error("cannot unmap");
      },
    },
  });
  const dom0 = b.client(0);
  return { b, dom0, calls };
}

describe("INTRODUCE", () => {
  it("calls the hook, records the domain and fires @introduceDomain", () => {
    const { b, dom0, calls } = setup();
    run([[dom0, rq.watch("@introduceDomain", "in"), OK]]);
    dom0.events();
    run([
      [dom0, rq.isIntroduced(5), list("F")],
      [dom0, rq.introduce(5, 1234, 7), OK],
      [dom0, rq.isIntroduced(5), list("T")],
      [dom0, rq.isIntroduced(0), list("T")],
      [dom0, rq.isIntroduced(DOMID.SELF), list("T")],
      [dom0, rq.isIntroduced(6), list("F")],
      [dom0, rq.isIntroduced("x"), err("EINVAL")],
      [dom0, rq.raw(XS.IS_DOMAIN_INTRODUCED, "5"), err("EINVAL")],
      [dom0, rq.read("/local/domain/5"), err("ENOENT")], // the toolstack creates the home, not xenstored
    ]);
    expect(calls).toEqual(["introduce 5 1234 7"]);
    expect(dom0.events()).toEqual([["@introduceDomain", "in"]]);
    expect([b.d.isIntroduced(5), b.d.isIntroduced(0), b.d.isIntroduced(6)]).toEqual([true, true, false]);
  });

  it.each([
    ["too few arguments", rq.raw(XS.INTRODUCE, "5\x001\0")],
    ["a non-numeric domid", rq.raw(XS.INTRODUCE, "x\x001\x001\0")],
    ["domid 0", rq.introduce(0, 1, 1)],
    ["a reserved domid", rq.introduce(DOMID.FIRST_RESERVED, 1, 1)],
    ["port 0", rq.introduce(5, 1, 0)],
    ["a non-numeric port", rq.raw(XS.INTRODUCE, "5\x001\x00p\0")],
    ["a non-numeric mfn", rq.raw(XS.INTRODUCE, "5\x000x10\x001\0")],
  ])("refuses %s with EINVAL", (_name, req) => {
    const { dom0, calls } = setup();
    run([[dom0, req, err("EINVAL")]]);
    expect(calls).toEqual([]);
  });

  it("accepts a signed mfn, as the protocol's decimal mfn is signed", () => {
    const { dom0, calls } = setup();
    run([[dom0, rq.raw(XS.INTRODUCE, "5\0-1\x003\0extra\0"), OK]]);
    expect(calls).toEqual(["introduce 5 -1 3"]);
  });

  it("answers EIO when the hook refuses, and introduces nothing", () => {
    const { b, dom0 } = setup(true);
    run([[dom0, rq.watch("@introduceDomain", "in"), OK]]);
    dom0.events();
    run([[dom0, rq.introduce(5, 1, 1), err("EIO")]]);
    expect(b.d.isIntroduced(5)).toBe(false);
    expect(dom0.events()).toEqual([]);
    expect(b.log.some((l) => l.includes("cannot map"))).toBe(true);
  });

  it("again resets the domain's watches and transactions, without an event", () => {
    const { b, dom0, calls } = setup();
    run([
      [dom0, rq.introduce(5, 1, 1), OK],
      [dom0, rq.mkdir("/local/domain/5"), OK],
      [dom0, rq.setPerms("/local/domain/5", "n5"), OK],
      [dom0, rq.watch("@introduceDomain", "in"), OK],
    ]);
    const dom5 = b.client(5);
    run([[dom5, rq.watch("x", "t"), OK]]);
    const tx = txStart(dom5);
    dom0.events();
    dom5.events();
    run([[dom0, rq.introduce(5, 2, 9), OK]]);
    expect(calls).toEqual(["introduce 5 1 1", "introduce 5 2 9"]);
    expect(dom0.events()).toEqual([]);
    run([
      [dom5, rq.read("x"), err("ENOENT"), tx],
      [dom0, rq.write("/local/domain/5/x", ""), OK],
    ]);
    expect(dom5.events()).toEqual([]);
    expect(dom5.conn.closed).toBe(false);
  });
});

describe("RELEASE", () => {
  it("closes the domain's connections, removes its home, fires watches, calls the hook", () => {
    const { b, dom0, calls } = setup();
    run([
      [dom0, rq.introduce(5, 1, 1), OK],
      [dom0, rq.write("/local/domain/5/device/vif/0/state", "4"), OK],
      [dom0, rq.setPerms("/local/domain/5", "n5"), OK],
      [dom0, rq.write("/local/domain/0/backend/vif/5/0/state", "4"), OK],
    ]);
    const dom5 = b.client(5);
    const other5 = b.client(5);
    run([[dom5, rq.watch("device", "t"), OK]]);
    txStart(dom5);
    dom5.events();
    run([
      [dom0, rq.watch("@releaseDomain", "out"), OK],
      [dom0, rq.watch("/local/domain/5/device/vif/0/state", "fe"), OK],
      [dom0, rq.watch("/local/domain/5", "home"), OK],
    ]);
    dom0.events();
    dom0.raw(encodeMessage({ type: XS.RELEASE, reqId: 77, txId: 0, payload: rq.release(5).payload }));
    const order = dom0.inbox.map((m) => m.type);
    expect(order).toEqual([XS.WATCH_EVENT, XS.WATCH_EVENT, XS.WATCH_EVENT, XS.RELEASE]);
    dom0.inbox.pop();
    expect(dom0.events()).toEqual([
      ["/local/domain/5/device/vif/0/state", "fe"],
      ["/local/domain/5", "home"],
      ["@releaseDomain", "out"],
    ]);
    expect([dom5.conn.closed, other5.conn.closed]).toEqual([true, true]);
    expect(b.d.connections().map((c) => c.domid)).toEqual([0]);
    expect(b.d.read("/local/domain/5")).toBeUndefined();
    expect(b.d.read("/local/domain/0/backend/vif/5/0/state")).toEqual(new Uint8Array([0x34]));
    expect(b.d.isIntroduced(5)).toBe(false);
    expect(calls).toEqual(["introduce 5 1 1", "release 5"]);
    run([
      [dom0, rq.release(5), err("ENOENT")],
      [dom0, rq.isIntroduced(5), list("F")],
      [dom0, rq.control("check"), OK],
      [dom0, rq.control("quota", "5"), err("ENOENT")],
    ]);
    expect(b.log.filter((l) => l.includes("check:"))).toEqual([]);
    // Bytes sent by a released domain's connection are ignored.
    dom5.raw(encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: rq.write("x", "1").payload }));
    expect(dom5.inbox).toEqual([]);
  });

  it.each([
    ["domid 0", rq.release(0), "EINVAL"],
    ["a non-numeric domid", rq.release("abc"), "EINVAL"],
    ["a missing NUL", rq.raw(XS.RELEASE, "5"), "EINVAL"],
    ["an unknown domain", rq.release(9), "ENOENT"],
  ])("refuses %s", (_name, req, e) => {
    const { dom0 } = setup();
    run([[dom0, req, err(e)]]);
  });

  it("still succeeds when the hook throws, and logs it", () => {
    const b = bed({
      hooks: {
        release: () => {
          throw new Error("boom");
        },
      },
    });
    const dom0 = b.client(0);
    run([
      [dom0, rq.introduce(3, 1, 1), OK],
      [dom0, rq.release(3), OK],
    ]);
    expect(b.log.some((l) => l.includes("boom"))).toBe(true);
    expect(b.d.isIntroduced(3)).toBe(false);
    expect(dom0.conn.closed).toBe(false);
  });
});

describe("RESUME and SET_TARGET", () => {
  it("RESUME needs an introduced domain other than 0", () => {
    const { dom0 } = setup();
    run([
      [dom0, rq.resume(5), err("ENOENT")],
      [dom0, rq.introduce(5, 1, 1), OK],
      [dom0, rq.resume(5), OK],
      [dom0, rq.resume(0), err("EINVAL")],
      [dom0, rq.resume("x"), err("EINVAL")],
    ]);
  });

  it("SET_TARGET lets a device model act with its guest's rights", () => {
    const { b, dom0 } = setup();
    run([
      [dom0, rq.introduce(5, 1, 1), OK],
      [dom0, rq.introduce(6, 1, 1), OK],
      [dom0, rq.write("/local/domain/5/private", "p"), OK],
      [dom0, rq.setPerms("/local/domain/5", "n5"), OK],
      [dom0, rq.setPerms("/local/domain/5/private", "n5"), OK],
    ]);
    const dm = b.client(6);
    run([
      [dm, rq.read("/local/domain/5/private"), err("EACCES")],
      [dom0, rq.setTarget(6, 5), OK],
      [dm, rq.read("/local/domain/5/private"), val("p")],
      [dm, rq.setPerms("/local/domain/5/private", "n5", "r6"), OK],
      [dom0, rq.setTarget(6, 9), err("ENOENT")],
      [dom0, rq.setTarget(9, 5), err("ENOENT")],
      [dom0, rq.raw(XS.SET_TARGET, "6\0"), err("EINVAL")],
      [dom0, rq.raw(XS.SET_TARGET, "6\0x\0"), err("EINVAL")],
    ]);
  });
});

describe("connect", () => {
  it("accepts real domids only and numbers connections uniquely", () => {
    const d = new Xenstored();
    const send = (): void => {};
    expect(() => d.connect(-1, send)).toThrow(RangeError);
    expect(() => d.connect(DOMID.FIRST_RESERVED, send)).toThrow(RangeError);
    expect(() => d.connect(1.5, send)).toThrow(RangeError);
    const a = d.connect(0, send);
    const c = d.connect(4, send);
    expect([a.privileged, c.privileged, d.connect(4, send, { privileged: true }).privileged]).toEqual([true, false, true]);
    expect(a.id).not.toBe(c.id);
    expect(d.limits.maxWatches).toBe(128);
  });
});
