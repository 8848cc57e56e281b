import { describe, expect, it } from "vitest";
import { XS_PERM, formatPerms, hasAccess, inheritPerms, ownedBy, parsePerm, parsePerms, permFor, permsEqual, type Accessor, type NodePerms } from "../../src/xenstore/index.js";

const { NONE, READ, WRITE, OWNER } = XS_PERM;
const RW = READ | WRITE;
const ALL = READ | WRITE | OWNER;

describe("permission strings", () => {
  it.each([
    ["n0", { domid: 0, perms: NONE }],
    ["r1", { domid: 1, perms: READ }],
    ["w22", { domid: 22, perms: WRITE }],
    ["b65535", { domid: 65535, perms: RW }],
    ["b65536", undefined],
    ["x1", undefined],
    ["r", undefined],
    ["r-1", undefined],
    ["r1x", undefined],
    ["R1", undefined],
    ["", undefined],
  ])("%j parses to %j", (s, want) => {
    expect(parsePerm(s)).toEqual(want);
  });

  it("parses and formats whole lists, owner first", () => {
    const p = parsePerms(["n0", "r1", "b2", "w3"]) as NodePerms;
    expect(formatPerms(p)).toEqual(["n0", "r1", "b2", "w3"]);
    expect(parsePerms([])).toBeUndefined();
    expect(parsePerms(["n0", "bogus"])).toBeUndefined();
    expect(permsEqual(p, parsePerms(["n0", "r1", "b2", "w3"]) as NodePerms)).toBe(true);
    expect(permsEqual(p, ownedBy(0))).toBe(false);
  });
});

describe("perm_for_conn", () => {
  const node = parsePerms(["r5", "n1", "w2", "b3"]) as NodePerms;
  const dom = (domid: number, extra: Partial<Accessor> = {}): Accessor => ({ domid, privileged: false, ...extra });
  it.each([
    ["the owner gets everything whatever its letter", dom(5), ALL],
    ["dom0 bypasses all checks", { domid: 0, privileged: true }, ALL],
    ["a privileged domU too", dom(9, { privileged: true }), ALL],
    ["a listed domain gets its letter: n", dom(1), NONE],
    ["w", dom(2), WRITE],
    ["b", dom(3), RW],
    ["anyone else gets the owner's letter", dom(4), READ],
    ["a domain targeting the owner acts as the owner", dom(8, { target: 5 }), ALL],
    ["a domain targeting a listed domain gets its letter", dom(8, { target: 3 }), RW],
  ])("%s", (_name, acc, want) => {
    expect(permFor(acc, node)).toBe(want);
  });

  it("checks all wanted rights", () => {
    expect(hasAccess(dom(3), node, RW)).toBe(true);
    expect(hasAccess(dom(3), node, WRITE | OWNER)).toBe(false);
    expect(hasAccess(dom(2), node, READ)).toBe(false);
  });

  it("new nodes inherit the parent's perms; unprivileged creators own them", () => {
    expect(formatPerms(inheritPerms(node, dom(7)))).toEqual(["r7", "n1", "w2", "b3"]);
    expect(formatPerms(inheritPerms(node, { domid: 0, privileged: true }))).toEqual(["r5", "n1", "w2", "b3"]);
  });
});
