import { describe, expect, it } from "vitest";
import {
  DEFAULT_QUOTA,
  GenerationCounter,
  Store,
  Transaction,
  TransactionTable,
  XS_PERM,
  binaryToBytes,
  bytesToBinary,
  formatPerms,
  nodeRecordSize,
  parsePerms,
  recordSize,
  type Accessor,
  type NodePerms,
  type OpContext,
  type StoreResult,
} from "../../src/xenstore/index.js";

const dom0: OpContext = { acc: { domid: 0, privileged: true }, quota: DEFAULT_QUOTA };
const domU = (domid: number): OpContext => ({ acc: { domid, privileged: false } as Accessor, quota: DEFAULT_QUOTA });
const v = (s: string): Uint8Array => binaryToBytes(s);

function ok(r: StoreResult): Store {
  if (!r.ok) throw new Error(`unexpected ${r.error}`);
  return r.store;
}

describe("the persistent store", () => {
  it("starts with xenstored's tree, owned by dom0", () => {
    const s = Store.initial();
    expect([...s.walk()].map(([p, n]) => [p, formatPerms(n.perms)])).toEqual([
      ["/", ["n0"]],
      ["/tool", ["n0"]],
      ["/tool/xenstored", ["n0"]],
    ]);
    expect(s.nodesOwnedBy(0)).toBe(3);
  });

  it("leaves old versions untouched and shares unchanged subtrees", () => {
    const s0 = ok(Store.initial().write("/a/x", v("1"), dom0));
    const s1 = ok(s0.write("/b/y", v("2"), dom0));
    expect(s0.get("/b")).toBeUndefined();
    expect(bytesToBinary(s1.get("/a/x")?.value ?? new Uint8Array())).toBe("1");
    expect(s1.get("/a")).toBe(s0.get("/a"));
    expect(s1.get("/tool")).toBe(s0.get("/tool"));
    expect(s1.root).not.toBe(s0.root);
  });

  it("stamps a fresh generation on each changed record, and on a parent whose child list changed", () => {
    const s0 = ok(Store.initial().write("/a/x", v("1"), dom0));
    const a0 = s0.get("/a")?.generation;
    const s1 = ok(s0.write("/a/x", v("2"), dom0));
    expect(s1.get("/a")?.generation).toBe(a0);
    expect(s1.get("/a/x")?.generation).toBeGreaterThan(s0.get("/a/x")?.generation ?? Infinity);
    const s2 = ok(s1.mkdir("/a/y", dom0));
    expect(s2.get("/a")?.generation).toBeGreaterThan(a0 ?? Infinity);
    const s3 = ok(s2.rm("/a/y", dom0));
    expect(s3.get("/a")?.generation).toBeGreaterThan(s2.get("/a")?.generation ?? Infinity);
  });

  it("keeps children in creation order", () => {
    let s = Store.initial();
    for (const n of ["c", "a", "b"]) s = ok(s.mkdir(`/d/${n}`, dom0));
    s = ok(s.write("/d/a", v("changed"), dom0));
    expect([...(s.get("/d")?.children.keys() ?? [])]).toEqual(["c", "a", "b"]);
  });

  it("counts nodes per owner and recounts them on check", () => {
    let s = ok(Store.initial().setPerms("/", parsePerms(["n0", "w5"]) as NodePerms, dom0));
    s = ok(s.write("/a/b/c", v(""), domU(5)));
    expect(s.nodesOwnedBy(5)).toBe(3);
    s = ok(s.setPerms("/a/b", parsePerms(["n7"]) as NodePerms, dom0));
    expect([s.nodesOwnedBy(5), s.nodesOwnedBy(7)]).toEqual([2, 1]);
    s = ok(s.rm("/a", dom0));
    expect([s.nodesOwnedBy(5), s.nodesOwnedBy(7), s.nodesOwnedBy(0)]).toEqual([0, 0, 3]);
    expect(s.check().problems).toEqual([]);
    expect(s.check().store).toBe(s);
  });

  it("reports changes: only the written path on create, children first on rm", () => {
    const r1 = Store.initial().write("/a/b/c", v("x"), dom0);
    expect(r1.ok && r1.changes.map((c) => [c.path, c.exact])).toEqual([["/a/b/c", false]]);
    const r2 = ok(r1).rm("/a", dom0);
    expect(r2.ok && r2.changes.map((c) => [c.path, c.exact])).toEqual([
      ["/a/b/c", true],
      ["/a/b", true],
      ["/a", false],
    ]);
  });

  it("sizes node records as xenstored's tdb does", () => {
    expect(nodeRecordSize(10, 2, ["ab", "c"])).toBe(24 + 16 + 10 + 3 + 2);
    const s = ok(Store.initial().write("/a", v("hello"), dom0));
    expect(recordSize(s.get("/a")!)).toBe(24 + 8 + 5);
    expect(recordSize(s.root)).toBe(24 + 8 + "tool\0a\0".length);
  });

  it("shares one generation counter between a store and what derives from it", () => {
    const clock = new GenerationCounter(100);
    const s = ok(Store.initial(clock).mkdir("/x", dom0));
    expect(s.clock).toBe(clock);
    expect(s.get("/x")?.generation).toBeGreaterThanOrEqual(100);
    expect(clock.peek).toBeGreaterThan(s.get("/x")?.generation ?? Infinity);
  });
});

describe("transactions over the store", () => {
  it("see their snapshot, replay onto the live store and detect conflicts", () => {
    const live0 = ok(Store.initial().write("/a", v("0"), dom0));
    const tx = new Transaction(1, live0);
    const r = tx.read((s, o) => s.lookup("/a", XS_PERM.READ, { acc: dom0.acc, observe: o }));
    expect(r.ok && r.value.ok).toBe(true);
    expect(tx.apply((s, o) => s.write("/b", v("tx"), { ...dom0, observe: o })).ok).toBe(true);
    expect(tx.updates).toBe(1);
    expect(tx.accessCount).toBe(3); // /a, /b (missing), and / (its parent)
    // Creating /b read /, so adding /c (which changes /'s child list) conflicts.
    const live1 = ok(live0.write("/c", v("other"), dom0));
    expect(tx.conflict(live1)).toBe("/");
    // A transaction that only read /a does not conflict with changes elsewhere.
    const tx2 = new Transaction(2, live0);
    tx2.read((s, o) => s.lookup("/a", XS_PERM.READ, { acc: dom0.acc, observe: o }));
    const live2 = ok(live0.write("/tool/x", v(""), dom0));
    expect(tx2.conflict(live2)).toBeUndefined();
    const c = tx2.commit(live2);
    expect(c.ok && c.store).toBe(live2);
    const live3 = ok(live0.write("/a", v("1"), dom0));
    expect(tx2.commit(live3)).toEqual({ ok: false, error: "EAGAIN" });
  });

  it("refuse an access beyond the node limit and record nothing of it", () => {
    const base = Store.initial();
    const tx = new Transaction(1, base, 2);
    // Creating /a/b reads /a/b, /a and /: three nodes.
    expect(tx.apply((s, o) => s.write("/a/b", v(""), { ...dom0, observe: o }))).toEqual({ ok: false, error: "ENOSPC" });
    expect(tx.accessCount).toBe(0);
    expect(tx.updates).toBe(0);
    expect(tx.view).toBe(base);
    expect(tx.apply((s, o) => s.write("/a", v(""), { ...dom0, observe: o })).ok).toBe(true);
    expect(tx.accessCount).toBe(2);
  });

  it("get per-connection ids that skip 0 and open ones", () => {
    const t = new TransactionTable();
    const s = Store.initial();
    expect([t.start(s).id, t.start(s).id]).toEqual([1, 2]);
    expect(t.end(1)?.id).toBe(1);
    expect(t.end(1)).toBeUndefined();
    expect(t.start(s).id).toBe(3);
    expect(t.size).toBe(2);
    t.clear();
    expect(t.size).toBe(0);
  });
});
