/** Watches: registration, matching, relative paths, permissions, special events. */
import { describe, expect, it } from "vitest";
import { XS } from "@pvkit/abi";
import { encodeMessage, splitStrings } from "../../src/xenstore/index.js";
import { OK, bed, err, homes, rq, run, txStart } from "./harness.js";

function setup() {
  const b = bed();
  const dom0 = b.client(0);
  const dom1 = b.client(1);
  homes(dom0, 1);
  return { b, dom0, dom1 };
}

describe("WATCH", () => {
  it("replies OK, then fires once with the watched path, even if it does not exist", () => {
    const { dom0 } = setup();
    dom0.raw(encodeMessage({ type: XS.WATCH, reqId: 5, txId: 0, payload: rq.watch("/nothing/here", "tok").payload }));
    expect(dom0.inbox.map((m) => [m.type, m.reqId, splitStrings(m.payload).strings])).toEqual([
      [XS.WATCH, 5, ["OK"]],
      [XS.WATCH_EVENT, 0, ["/nothing/here", "tok"]],
    ]);
  });

  it("fires for changes at or below the path, not for siblings or parents", () => {
    const { dom0 } = setup();
    run([[dom0, rq.watch("/w", "t"), OK]]);
    expect(dom0.events()).toEqual([["/w", "t"]]);
    const cases: [ReturnType<typeof rq.write>, [string, string][]][] = [
      [rq.write("/w/a/b", "1"), [["/w/a/b", "t"]]],
      [rq.write("/w", "v"), [["/w", "t"]]],
      [rq.write("/wx", "v"), []],
      [rq.write("/", "v"), []],
      [rq.mkdir("/w/new"), [["/w/new", "t"]]],
      [rq.mkdir("/w/new"), []], // exists already: nothing changes
      [rq.setPerms("/w/a", "n0", "r1"), [["/w/a", "t"]]],
      [rq.rm("/w/nope"), []],
      [rq.rm("/w/a"), [["/w/a", "t"]]], // /w/a/b goes too, but only watches exactly on it fire for it
    ];
    for (const [req, want] of cases) {
      dom0.call(req);
      expect(dom0.events()).toEqual(want);
    }
  });

  it("sends a change's events before the reply to the request that caused it", () => {
    const { dom0 } = setup();
    run([[dom0, rq.watch("/w", "t"), OK]]);
    dom0.events();
    dom0.raw(encodeMessage({ type: XS.WRITE, reqId: 9, txId: 0, payload: rq.write("/w/x", "1").payload }));
    expect(dom0.inbox.map((m) => m.type)).toEqual([XS.WATCH_EVENT, XS.WRITE]);
  });

  it("fires, on removal of an ancestor, each existing watched node and the watches above", () => {
    const { dom0 } = setup();
    run([
      [dom0, rq.write("/w/a/b", "1"), OK],
      [dom0, rq.watch("/w/a/b", "exact"), OK],
      [dom0, rq.watch("/w", "above"), OK],
      [dom0, rq.watch("/w/a/zz", "missing"), OK],
      [dom0, rq.watch("/", "root"), OK],
    ]);
    dom0.events();
    run([[dom0, rq.rm("/w"), OK]]);
    expect(dom0.events()).toEqual([
      ["/w/a/b", "exact"],
      ["/w", "above"],
      ["/w", "root"],
    ]);
  });

  it("gives relative watches relative events", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom1, rq.watch("data", "rel"), OK],
      [dom1, rq.watch("/local/domain/1/data", "abs"), OK],
    ]);
    expect(dom1.events()).toEqual([
      ["data", "rel"],
      ["/local/domain/1/data", "abs"],
    ]);
    run([[dom1, rq.write("data/x", "1"), OK]]);
    expect(dom1.events()).toEqual([
      ["data/x", "rel"],
      ["/local/domain/1/data/x", "abs"],
    ]);
    run([[dom0, rq.write("/local/domain/1/data", "2"), OK]]);
    expect(dom1.events()).toEqual([
      ["data", "rel"],
      ["/local/domain/1/data", "abs"],
    ]);
  });

  it("sends events only to connections that may read the node or its parent", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom1, rq.watch("/", "all"), OK],
      [dom0, rq.mkdir("/pub"), OK],
      [dom0, rq.setPerms("/pub", "n0", "r1"), OK],
      [dom0, rq.mkdir("/pub2"), OK],
      [dom0, rq.setPerms("/pub2", "n0", "r1"), OK],
    ]);
    dom1.events();
    const cases: [ReturnType<typeof rq.write>, [string, string][]][] = [
      [rq.write("/secret", "s"), []],
      [rq.write("/secret/deeper", "s"), []],
      [rq.write("/pub/x", "1"), [["/pub/x", "all"]]], // readable: inherits n0 r1
      [rq.mkdir("/pub/hidden"), [["/pub/hidden", "all"]]],
      [rq.setPerms("/pub/hidden", "n0"), [["/pub/hidden", "all"]]], // readable before the change
      [rq.write("/pub/hidden", "v"), [["/pub/hidden", "all"]]], // the parent is readable
      [rq.write("/pub/hidden/deep", "v"), []], // neither it nor its parent is
      [rq.setPerms("/pub2", "n0"), [["/pub2", "all"]]],
      [rq.write("/pub2", "v"), []],
      [rq.rm("/pub"), [["/pub", "all"]]],
    ];
    for (const [req, want] of cases) {
      dom0.call(req);
      expect(dom1.events(), JSON.stringify(req.payload)).toEqual(want);
    }
  });

  it("refuses duplicates and bad paths, accepts any @ name", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom1, rq.watch("/w", "t"), OK],
      [dom1, rq.watch("/w", "t"), err("EEXIST")],
      [dom1, rq.watch("/local/domain/1/x", "t"), OK],
      [dom1, rq.watch("x", "t"), err("EEXIST")], // the same path, given relative
      [dom1, rq.watch("/w", "other"), OK],
      [dom1, rq.watch("/w/", "t"), err("EINVAL")],
      [dom1, rq.watch("", "t"), err("EINVAL")],
      [dom1, rq.watch("/a b", "t"), err("EINVAL")],
      [dom1, rq.watch("@anything", "t"), OK],
      [dom1, rq.raw(XS.WATCH, "/w\0"), err("EINVAL")],
      [dom1, rq.raw(XS.WATCH, "/w\0t\0extra\0"), err("EINVAL")],
      [dom1, rq.raw(XS.WATCH, "/w\0t"), err("EINVAL")],
      [dom0, rq.watch("/w", "t"), OK], // watches are per connection
    ]);
  });

  it("UNWATCH removes exactly the matching watch", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom1, rq.watch("data", "a"), OK],
      [dom1, rq.watch("data", "b"), OK],
      [dom1, rq.unwatch("data", "zz"), err("ENOENT")],
      [dom1, rq.unwatch("/other", "a"), err("ENOENT")],
      [dom1, rq.unwatch("/local/domain/1/data", "a"), OK],
      [dom1, rq.unwatch("data", "a"), err("ENOENT")],
      [dom1, rq.raw(XS.UNWATCH, "data\0"), err("EINVAL")],
    ]);
    dom1.events();
    run([[dom0, rq.write("/local/domain/1/data", "1"), OK]]);
    expect(dom1.events()).toEqual([["data", "b"]]);
  });

  it("RESET_WATCHES drops every watch and transaction of the connection", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom1, rq.watch("data", "a"), OK],
      [dom1, rq.watch("/local/domain/1", "b"), OK],
    ]);
    const tx = txStart(dom1);
    dom1.events();
    run([
      [dom1, rq.raw(XS.RESET_WATCHES, ""), OK],
      [dom1, rq.read("/local/domain/1"), err("ENOENT"), tx],
      [dom0, rq.write("/local/domain/1/data", "1"), OK],
      [dom1, rq.unwatch("data", "a"), err("ENOENT")],
    ]);
    expect(dom1.events()).toEqual([]);
  });

  it("fires changes made in a transaction only when it commits", () => {
    const { dom0 } = setup();
    run([[dom0, rq.watch("/t", "t"), OK]]);
    dom0.events();
    const tx = txStart(dom0);
    run([
      [dom0, rq.write("/t/x", "1"), OK, tx],
      [dom0, rq.mkdir("/t/y"), OK, tx],
    ]);
    expect(dom0.events()).toEqual([]);
    run([[dom0, rq.txEnd(true), OK, tx]]);
    expect(dom0.events()).toEqual([
      ["/t/x", "t"],
      ["/t/y", "t"],
    ]);
    const aborted = txStart(dom0);
    run([
      [dom0, rq.write("/t/z", "1"), OK, aborted],
      [dom0, rq.txEnd(false), OK, aborted],
    ]);
    expect(dom0.events()).toEqual([]);
  });

  it("drops events that would not fit a payload", () => {
    const { dom0 } = setup();
    const token = "t".repeat(4000);
    run([
      [dom0, rq.watch("/p", token), OK],
      [dom0, rq.watch("/p", "short"), OK],
    ]);
    expect(dom0.events()).toEqual([
      ["/p", token],
      ["/p", "short"],
    ]);
    const deep = "/p/" + "q".repeat(100);
    run([[dom0, rq.write(deep, ""), OK]]);
    expect(dom0.events()).toEqual([[deep, "short"]]);
  });
});

describe("special watches", () => {
  it("fire @introduceDomain and @releaseDomain for readers of their permissions", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.watch("@introduceDomain", "in"), OK],
      [dom0, rq.watch("@releaseDomain", "out"), OK],
      [dom0, rq.watch("/", "root"), OK],
      [dom1, rq.watch("@introduceDomain", "in1"), OK],
    ]);
    expect(dom0.events()).toEqual([
      ["@introduceDomain", "in"],
      ["@releaseDomain", "out"],
      ["/", "root"],
    ]);
    expect(dom1.events()).toEqual([["@introduceDomain", "in1"]]);
    run([[dom0, rq.introduce(5, 100, 3), OK]]);
    expect(dom0.events()).toEqual([["@introduceDomain", "in"]]);
    expect(dom1.events()).toEqual([]); // @introduceDomain is n0 by default
    run([
      [dom0, rq.setPerms("@introduceDomain", "n0", "r1"), OK],
      [dom0, rq.introduce(6, 100, 3), OK],
    ]);
    expect(dom1.events()).toEqual([["@introduceDomain", "in1"]]);
    dom0.events();
    run([[dom0, rq.release(5), OK]]);
    expect(dom0.events()).toEqual([["@releaseDomain", "out"]]);
  });
});
