/** Transactions: isolation, commit, conflicts, abort, ids. */
import { describe, expect, it } from "vitest";
import { XS } from "@pvkit/abi";
import { OK, bed, err, homes, list, rq, run, txStart, val } from "./harness.js";

function setup() {
  const b = bed();
  const dom0 = b.client(0);
  const other = b.client(0);
  const dom1 = b.client(1);
  homes(dom0, 1);
  return { b, dom0, other, dom1 };
}

describe("transactions", () => {
  it("answer TRANSACTION_START with a decimal id and a NUL", () => {
    const { dom0 } = setup();
    run([
      [dom0, rq.txStart(), list("1")],
      [dom0, rq.txStart(), list("2")],
    ]);
  });

  it("are isolated: a transaction sees its snapshot, others see its writes only after commit", () => {
    const { dom0, other } = setup();
    run([[dom0, rq.write("/t", "0"), OK]]);
    const tx = txStart(dom0);
    run([
      [other, rq.write("/t", "1"), OK],
      [other, rq.write("/later", "x"), OK],
      [dom0, rq.read("/t"), val("0"), tx],
      [dom0, rq.read("/later"), err("ENOENT"), tx],
      [dom0, rq.read("/t"), val("1")],
      [dom0, rq.write("/u", "tx"), OK, tx],
      [dom0, rq.read("/u"), val("tx"), tx],
      [dom0, rq.directory("/"), list("tool", "local", "t", "u"), tx],
      [other, rq.read("/u"), err("ENOENT")],
      [dom0, rq.read("/u"), err("ENOENT")],
      // It read /t, which changed since: the commit fails and nothing is applied.
      [dom0, rq.txEnd(true), err("EAGAIN"), tx],
      [other, rq.read("/u"), err("ENOENT")],
      [dom0, rq.txEnd(true), err("ENOENT"), tx],
    ]);
  });

  it("commit when nothing they read or wrote changed, whatever else did", () => {
    const { dom0, other } = setup();
    run([
      [dom0, rq.mkdir("/x"), OK],
      [dom0, rq.write("/local/domain/1/data", "0"), OK],
    ]);
    const tx = txStart(dom0);
    run([
      [dom0, rq.write("/x/a", "1"), OK, tx],
      [dom0, rq.rm("/local/domain/1/nothing"), OK, tx],
      [other, rq.write("/y", "2"), OK],
      [other, rq.write("/local/domain/1/data", "3"), OK], // a new value, not a new child of the home the tx read
      [dom0, rq.txEnd(true), OK, tx],
      [other, rq.read("/x/a"), val("1")],
      [other, rq.read("/y"), val("2")],
    ]);
  });

  it("fail with EAGAIN on write-write conflicts: the first to commit wins", () => {
    const { dom0, other } = setup();
    run([[dom0, rq.write("/k", "0"), OK]]);
    const t1 = txStart(dom0);
    const t2 = txStart(other);
    run([
      [dom0, rq.write("/k", "one"), OK, t1],
      [other, rq.write("/k", "two"), OK, t2],
      [dom0, rq.txEnd(true), OK, t1],
      [other, rq.txEnd(true), err("EAGAIN"), t2],
      [other, rq.read("/k"), val("one")],
    ]);
  });

  it("fail with EAGAIN when a node they found missing appears, or one they read is removed", () => {
    const { dom0, other } = setup();
    run([[dom0, rq.write("/gone", "0"), OK]]);
    const t1 = txStart(dom0);
    run([
      [dom0, rq.read("/appears"), err("ENOENT"), t1],
      [other, rq.write("/appears", "now"), OK],
      [dom0, rq.txEnd(true), err("EAGAIN"), t1],
    ]);
    const t2 = txStart(dom0);
    run([
      [dom0, rq.read("/gone"), val("0"), t2],
      [other, rq.rm("/gone"), OK],
      [dom0, rq.txEnd(true), err("EAGAIN"), t2],
    ]);
  });

  it("fail with EAGAIN if a node's child list they relied on changed", () => {
    const { dom0, other } = setup();
    run([[dom0, rq.mkdir("/dir"), OK]]);
    const tx = txStart(dom0);
    run([
      [dom0, rq.directory("/dir"), val(""), tx],
      [other, rq.mkdir("/dir/new"), OK],
      [dom0, rq.txEnd(true), err("EAGAIN"), tx],
    ]);
  });

  it("abort with F, discarding their writes", () => {
    const { dom0, other } = setup();
    const tx = txStart(dom0);
    run([
      [dom0, rq.write("/ab", "x"), OK, tx],
      [dom0, rq.txEnd(false), OK, tx],
      [other, rq.read("/ab"), err("ENOENT")],
      [dom0, rq.read("/ab"), err("ENOENT"), tx],
    ]);
  });

  it("replay removals and permission changes at commit", () => {
    const { dom0, dom1 } = setup();
    run([[dom1, rq.write("a/b/c", "1"), OK]]);
    const tx = txStart(dom1);
    run([
      [dom1, rq.rm("a/b"), OK, tx],
      [dom1, rq.setPerms("a", "n1", "r2"), OK, tx],
      [dom1, rq.read("a/b/c"), err("ENOENT"), tx],
      [dom1, rq.read("a/b/c"), val("1")],
      [dom1, rq.txEnd(true), OK, tx],
      [dom1, rq.read("a/b/c"), err("ENOENT")],
      [dom1, rq.getPerms("a"), list("n1", "r2")],
      [dom0, rq.control("check"), OK],
    ]);
  });

  it("reject bad ends, unknown ids, other connections' ids and nesting", () => {
    const { dom0, other } = setup();
    const tx = txStart(dom0);
    run([
      [dom0, rq.txEnd(true), err("ENOENT")], // tx_id 0
      [dom0, rq.raw(XS.TRANSACTION_END, "X\0"), err("EINVAL"), tx],
      [dom0, rq.raw(XS.TRANSACTION_END, "T"), err("EINVAL"), tx],
      [dom0, rq.raw(XS.TRANSACTION_END, "TT\0"), err("EINVAL"), tx],
      [dom0, rq.read("/"), err("ENOENT"), tx + 1],
      [other, rq.read("/"), err("ENOENT"), tx],
      [other, rq.txEnd(true), err("ENOENT"), tx],
      [dom0, rq.txStart(), err("EBUSY"), tx],
      [dom0, rq.txStart(), err("ENOENT"), 77],
      [dom0, rq.watch("/w", "t"), OK, tx],
      [dom0, rq.txEnd(false), OK, tx],
    ]);
  });

  it("let a domain see its own transaction's view in relative terms too", () => {
    const { dom1 } = setup();
    const tx = txStart(dom1);
    run([
      [dom1, rq.write("data", "v"), OK, tx],
      [dom1, rq.read("data"), val("v"), tx],
      [dom1, rq.read("data"), err("ENOENT")],
      [dom1, rq.txEnd(true), OK, tx],
      [dom1, rq.read("data"), val("v")],
    ]);
  });

  it("close with the connection", () => {
    const { b, dom0 } = setup();
    const c = b.client(0);
    const tx = txStart(c);
    run([[c, rq.write("/closing", "x"), OK, tx]]);
    c.conn.close();
    expect(c.conn.closed).toBe(true);
    run([[dom0, rq.read("/closing"), err("ENOENT")]]);
  });
});
