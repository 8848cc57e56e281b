/** Every quota: its default, its error, and dom0's exemption. */
import { describe, expect, it } from "vitest";
import { XENSTORE } from "@pvkit/abi";
import { DEFAULT_QUOTA, QUOTA_ERRORS, resolveQuota } from "../../src/xenstore/index.js";
import { OK, bed, err, homes, rq, run, txStart, val } from "./harness.js";

function setup(quota: Parameters<typeof bed>[0] extends infer O ? (O extends { quota?: infer Q } ? Q : never) : never) {
  const b = bed({ quota });
  const dom0 = b.client(0);
  const dom1 = b.client(1);
  homes(dom0, 1);
  return { b, dom0, dom1 };
}

describe("quota settings", () => {
  it("default to C xenstored's", () => {
    expect(DEFAULT_QUOTA).toEqual({
      maxNodesPerDomain: 1000,
      maxEntrySize: 2048,
      maxWatches: 128,
      maxTransactions: 10,
      maxPermsPerNode: 5,
      maxTransactionNodes: 1024,
      maxPathLength: XENSTORE.REL_PATH_MAX,
    });
    expect(QUOTA_ERRORS.maxWatches).toBe("E2BIG");
    expect(Object.values(QUOTA_ERRORS).filter((e) => e === "ENOSPC")).toHaveLength(5);
  });

  it("take overrides and refuse nonsense", () => {
    expect(resolveQuota({ maxWatches: 3 }).maxWatches).toBe(3);
    expect(() => resolveQuota({ maxWatches: -1 })).toThrow(RangeError);
    expect(() => resolveQuota({ maxNodesPerDomain: 1.5 })).toThrow(RangeError);
  });
});

describe("node quota (ENOSPC)", () => {
  it("limits the nodes a domain owns, counting implicit parents; dom0 is exempt", () => {
    const { dom0, dom1 } = setup({ maxNodesPerDomain: 5 });
    run([
      // dom1 owns its home: 1 node.
      [dom1, rq.write("a", ""), OK],
      [dom1, rq.write("b", ""), OK],
      [dom1, rq.write("c", ""), OK],
      [dom1, rq.write("d/e", ""), err("ENOSPC")], // 2 more would make 6
      [dom1, rq.read("d"), err("ENOENT")],
      [dom1, rq.mkdir("d"), OK], // 5
      [dom1, rq.write("e", ""), err("ENOSPC")],
      [dom1, rq.write("a", "rewriting is fine"), OK],
      [dom1, rq.rm("a"), OK], // 4
      [dom1, rq.write("e", ""), OK], // 5
      [dom0, rq.write("/local/domain/1/by-dom0", ""), OK], // dom0 may push dom1 over
      [dom0, rq.control("quota", "1"), val("Domain 1:\nnodes           :        6\nwatches         :        0\ntransactions    :        0\n\0")],
      [dom1, rq.write("f", ""), err("ENOSPC")],
      [dom0, rq.write("/dom0/has/no/limit", ""), OK],
    ]);
  });

  it("is checked again when a transaction commits", () => {
    const { dom1 } = setup({ maxNodesPerDomain: 4 });
    run([[dom1, rq.mkdir("sub"), OK]]); // 2
    const tx = txStart(dom1);
    run([
      [dom1, rq.write("sub/t1", ""), OK, tx], // 3 in the transaction's view
      [dom1, rq.write("o1", ""), OK], // 3 live
      [dom1, rq.write("o2", ""), OK], // 4 live
      [dom1, rq.txEnd(true), err("ENOSPC"), tx],
      [dom1, rq.read("sub/t1"), err("ENOENT")],
    ]);
  });
});

describe("entry size quota (ENOSPC)", () => {
  it("refuses node records reaching the limit, for unprivileged writers only", () => {
    const { dom0, dom1 } = setup({});
    // A record is 24 bytes of header, 8 per permission entry, the value and the child names.
    const fits = 2048 - 24 - 8 - 1;
    run([
      [dom1, rq.write("v", "x".repeat(fits)), OK],
      [dom1, rq.write("v", "x".repeat(fits + 1)), err("ENOSPC")],
      [dom1, rq.write("new", "x".repeat(fits + 1)), err("ENOSPC")],
      [dom1, rq.read("new"), err("ENOENT")],
      [dom0, rq.write("/local/domain/1/v", "x".repeat(4000)), OK],
      [dom1, rq.setPerms("p", "n1"), err("ENOENT")],
      [dom1, rq.write("p", "x".repeat(fits - 16)), OK],
      [dom1, rq.setPerms("p", "n1", "r2", "r3"), OK],
      [dom1, rq.setPerms("p", "n1", "r2", "r3", "r4"), err("ENOSPC")],
    ]);
  });

  it("counts child names in the parent's record", () => {
    const { dom1 } = setup({ maxEntrySize: 24 + 8 + 20 });
    run([
      [dom1, rq.mkdir("d/aaaaaaaaa"), OK], // "aaaaaaaaa\0": 10 bytes of d's record
      [dom1, rq.mkdir("d/bbbbbbbb"), OK], // 19
      [dom1, rq.mkdir("d/c"), err("ENOSPC")], // "c\0" would make d's record 53 bytes
    ]);
  });
});

describe("watch quota (E2BIG)", () => {
  it("limits watches per connection; dom0 is exempt", () => {
    const { b, dom0, dom1 } = setup({ maxWatches: 2 });
    run([
      [dom1, rq.watch("a", "1"), OK],
      [dom1, rq.watch("b", "2"), OK],
      [dom1, rq.watch("c", "3"), err("E2BIG")],
      [dom1, rq.watch("a", "1"), err("EEXIST")],
      [dom1, rq.unwatch("a", "1"), OK],
      [dom1, rq.watch("c", "3"), OK],
      [b.client(1), rq.watch("c", "3"), OK],
      [dom0, rq.watch("/1", "1"), OK],
      [dom0, rq.watch("/2", "2"), OK],
      [dom0, rq.watch("/3", "3"), OK],
    ]);
  });
});

describe("transaction quota (ENOSPC)", () => {
  it("limits open transactions per connection; dom0 is exempt", () => {
    const { dom0, dom1 } = setup({ maxTransactions: 2 });
    const t1 = txStart(dom1);
    txStart(dom1);
    run([
      [dom1, rq.txStart(), err("ENOSPC")],
      [dom1, rq.txEnd(false), OK, t1],
      [dom1, rq.txStart(), val("3\0")],
      [dom0, rq.txStart(), val("1\0")],
      [dom0, rq.txStart(), val("2\0")],
      [dom0, rq.txStart(), val("3\0")],
    ]);
  });

  it("limits the nodes one transaction may touch", () => {
    const { dom0, dom1 } = setup({ maxTransactionNodes: 3 });
    for (const n of ["x1", "x2", "x3", "x4"]) run([[dom1, rq.write(n, n), OK]]);
    const tx = txStart(dom1);
    run([
      [dom1, rq.read("x1"), val("x1"), tx],
      [dom1, rq.read("x2"), val("x2"), tx],
      [dom1, rq.read("x3"), val("x3"), tx],
      [dom1, rq.read("x4"), err("ENOSPC"), tx],
      [dom1, rq.read("x1"), val("x1"), tx],
      [dom1, rq.write("x2", "changed"), OK, tx],
      [dom1, rq.txEnd(true), OK, tx],
      [dom1, rq.read("x2"), val("changed")],
    ]);
    const t0 = txStart(dom0);
    run([
      [dom0, rq.read("/local/domain/1/x1"), val("x1"), t0],
      [dom0, rq.read("/local/domain/1/x2"), val("changed"), t0],
      [dom0, rq.read("/local/domain/1/x3"), val("x3"), t0],
      [dom0, rq.read("/local/domain/1/x4"), val("x4"), t0],
    ]);
  });
});

describe("permission-list quota (ENOSPC)", () => {
  it("limits SET_PERMS entries; dom0 is exempt", () => {
    const { dom0, dom1 } = setup({});
    run([
      [dom1, rq.write("p", ""), OK],
      [dom1, rq.setPerms("p", "n1", "r2", "r3", "r4", "r5"), OK],
      [dom1, rq.setPerms("p", "n1", "r2", "r3", "r4", "r5", "r6"), err("ENOSPC")],
      [dom1, rq.setPerms("p", "n1", "r2", "r3", "r4", "r5", "bogus"), err("ENOSPC")],
      [dom0, rq.setPerms("/local/domain/1/p", "n1", "r2", "r3", "r4", "r5", "r6"), OK],
    ]);
  });
});

describe("path length quota (EINVAL)", () => {
  it("limits path length below the home for unprivileged domains", () => {
    const { dom0, dom1 } = setup({ maxPathLength: 20 });
    run([
      [dom1, rq.write("a".repeat(20), ""), OK],
      [dom1, rq.write("a".repeat(21), ""), err("EINVAL")],
      [dom1, rq.write("/local/domain/1/" + "b".repeat(21), ""), err("EINVAL")],
      [dom1, rq.read("/tool/xenstored/and/more"), err("EINVAL")],
      [dom1, rq.watch("c".repeat(21), "t"), err("EINVAL")],
      [dom0, rq.write("/local/domain/1/" + "d".repeat(40), ""), OK],
    ]);
  });
});
