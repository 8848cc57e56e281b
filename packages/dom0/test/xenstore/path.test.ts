import { describe, expect, it } from "vitest";
import { XENSTORE } from "@pvkit/abi";
import {
  basename,
  canonicalize,
  childPath,
  components,
  domainPath,
  isAtOrBelow,
  isSpecialPath,
  isValidNodePath,
  parentPath,
  quotaPathLength,
  relativeTo,
  resolvePath,
} from "../../src/xenstore/index.js";

describe("path validation (is_valid_nodename)", () => {
  it.each([
    ["/", true],
    ["/a", true],
    ["/local/domain/1/device/vif/0/state", true],
    ["/A-Z_a-z@0-9", true],
    ["", false],
    ["a", false],
    ["/a/", false],
    ["//", false],
    ["/a//b", false],
    ["/a b", false],
    ["/a.b", false],
    ["/a\0b", false],
    ["/é", false],
    ["/" + "x".repeat(XENSTORE.ABS_PATH_MAX - 1), true],
    ["/" + "x".repeat(XENSTORE.ABS_PATH_MAX), false],
  ])("%j valid: %s", (p, ok) => {
    expect(isValidNodePath(p)).toBe(ok);
  });
});

describe("canonicalisation", () => {
  it.each([
    ["/a/b", 3, "/a/b"],
    ["x/y", 3, "/local/domain/3/x/y"],
    ["@releaseDomain", 3, "@releaseDomain"],
    ["", 3, "/local/domain/3/"],
    ["x", 0, "/local/domain/0/x"],
  ])("%j from domain %d is %j", (p, d, want) => {
    expect(canonicalize(p, d)).toBe(want);
  });

  it.each([
    ["x/y", {}, { path: "/local/domain/3/x/y", relative: true }],
    ["/x", {}, { path: "/x", relative: false }],
    ["", {}, undefined],
    ["x/", {}, undefined],
    ["@introduceDomain", {}, undefined],
    ["@introduceDomain", { special: "special" }, { path: "@introduceDomain", relative: false }],
    ["@other", { special: "special" }, undefined],
    ["@other", { special: "watch" }, { path: "@other", relative: false }],
    ["@" + "x".repeat(XENSTORE.REL_PATH_MAX), { special: "watch" }, undefined],
    ["x".repeat(10), { maxPathLength: 10 }, { path: "/local/domain/3/" + "x".repeat(10), relative: true }],
    ["x".repeat(11), { maxPathLength: 10 }, undefined],
    ["/other/" + "x".repeat(4), { maxPathLength: 11 }, { path: "/other/xxxx", relative: false }],
    ["/other/" + "x".repeat(4), { maxPathLength: 10 }, undefined],
  ] as const)("resolvePath(%j, 3, %j)", (p, opts, want) => {
    expect(resolvePath(p, 3, opts)).toEqual(want);
  });

  it("measures the quota path length below /local/domain/<id>/", () => {
    expect(quotaPathLength("/local/domain/12/data/x")).toBe("data/x".length);
    expect(quotaPathLength("/local/domain/12")).toBe("/local/domain/12".length);
    expect(quotaPathLength("/tool/x")).toBe(7);
  });
});

describe("path arithmetic", () => {
  it.each([
    ["/", "/", "", []],
    ["/a", "/", "a", ["a"]],
    ["/a/b/c", "/a/b", "c", ["a", "b", "c"]],
  ])("%j: parent %j, basename %j, components %j", (p, parent, base, comps) => {
    expect([parentPath(p), basename(p), components(p)]).toEqual([parent, base, comps]);
  });

  it.each([
    ["/a/b", "/a", true],
    ["/a", "/a", true],
    ["/ab", "/a", false],
    ["/a", "/a/b", false],
    ["/anything", "/", true],
    ["@releaseDomain", "/", false],
  ])("%j at or below %j: %s", (p, a, want) => {
    expect(isAtOrBelow(p, a)).toBe(want);
  });

  it("joins, relativises and names homes", () => {
    expect([childPath("/", "a"), childPath("/a", "b")]).toEqual(["/a", "/a/b"]);
    expect(domainPath(7)).toBe("/local/domain/7");
    expect([relativeTo("/local/domain/7/x/y", "/local/domain/7"), relativeTo("/local/domain/7", "/local/domain/7"), relativeTo("/tool", "/local/domain/7")]).toEqual(["x/y", "", "/tool"]);
    expect([isSpecialPath("@introduceDomain"), isSpecialPath("@releaseDomain"), isSpecialPath("@x"), isSpecialPath("/a")]).toEqual([true, true, false, false]);
  });
});
