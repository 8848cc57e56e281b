/**
 * Unit tests of constant groups (`src/constants.ts`) and Xen error names
 * (`src/errno.ts`): freezing, group metadata, and reverse mapping from a value
 * to its C name, including aliases and unknown values.
 *
 * The numeric values themselves are checked against Xen's headers by the
 * conformance test and are not re-checked here.
 */
import { describe, expect, it } from "vitest";
import * as abi from "../src/index.js";
import {
  BLKIF_RSP,
  cName,
  constantGroupInfo,
  constants,
  DOMID,
  errnoName,
  GNTST,
  GTF,
  HYPERVISOR,
  keyOf,
  UVMF,
  XEN_ERRNO,
} from "../src/index.js";

type Group = Readonly<Record<string, number>>;

/** Every constant group the package exports, by export name. */
const exportedGroups: [string, Group][] = Object.entries(abi).flatMap(([name, v]): [string, Group][] =>
  constantGroupInfo(v) === undefined ? [] : [[name, v as Group]],
);

describe("constants()", () => {
  it("returns a frozen object: assignment, addition and deletion throw and change nothing", () => {
    const g = constants("probe.h", "PROBE_", { a: 1, b: 2 });
    const loose = g as Record<string, number>;
    expect(Object.isFrozen(g)).toBe(true);
    expect(() => {
      loose.a = 5;
    }).toThrow(TypeError);
    expect(() => {
      loose.c = 3;
    }).toThrow(TypeError);
    expect(() => {
      delete loose.b;
    }).toThrow(TypeError);
    expect(g).toEqual({ a: 1, b: 2 });
  });

  it("freezes a copy: the caller's object stays mutable and later changes do not leak in", () => {
    const source: Record<string, number> = { a: 1 };
    const g = constants("probe.h", "PROBE_", source);
    expect(g).not.toBe(source);
    expect(Object.isFrozen(source)).toBe(false);
    source.a = 9;
    source.z = 26;
    expect(g).toEqual({ a: 1 });
    expect(constantGroupInfo(source)).toBeUndefined();
  });

  it("keeps the declared key order", () => {
    const g = constants("probe.h", "PROBE_", { z: 1, a: 2, m: 3 });
    expect(Object.keys(g)).toEqual(["z", "a", "m"]);
  });

  it("every exported group is frozen", () => {
    expect(exportedGroups.length).toBeGreaterThan(10);
    for (const [name, g] of exportedGroups) expect(Object.isFrozen(g), name).toBe(true);
  });
});

describe("constantGroupInfo()", () => {
  it.each([
    ["XEN_ERRNO", XEN_ERRNO, "errno.h", "XEN_"],
    ["HYPERVISOR", HYPERVISOR, "xen.h", "__HYPERVISOR_"],
    ["GNTST", GNTST, "grant_table.h", "GNTST_"],
    ["BLKIF_RSP", BLKIF_RSP, "io/blkif.h", "BLKIF_RSP_"],
  ] as [string, Group, string, string][])("%s comes from %s with prefix %s", (_name, group, header, cPrefix) => {
    expect(constantGroupInfo(group)).toEqual({ header, cPrefix });
  });

  it("reports what a new group was declared with", () => {
    const g = constants("public/probe.h", "PROBEOP_", { go: 7 });
    expect(constantGroupInfo(g)).toEqual({ header: "public/probe.h", cPrefix: "PROBEOP_" });
  });

  it("keeps groups with equal contents apart", () => {
    const a = constants("a.h", "A_", { x: 1 });
    const b = constants("b.h", "B_", { x: 1 });
    expect(constantGroupInfo(a)?.cPrefix).toBe("A_");
    expect(constantGroupInfo(b)?.cPrefix).toBe("B_");
    expect(cName(a, 1)).toBe("A_x");
    expect(cName(b, 1)).toBe("B_x");
  });

  it.each([
    ["a plain object", { EINVAL: 22 }],
    ["a spread copy of a group", { ...XEN_ERRNO }],
    ["an empty object", {}],
    ["an array", [1, 2]],
    ["a number", 22],
    ["a string", "XEN_EINVAL"],
    ["null", null],
    ["undefined", undefined],
    ["a function", () => 0],
    ["a struct layout", abi.start_info],
  ])("is undefined for %s", (_name, value) => {
    expect(constantGroupInfo(value)).toBeUndefined();
  });
});

describe("cName()", () => {
  it.each([
    [XEN_ERRNO, 22, "XEN_EINVAL"],
    [XEN_ERRNO, 1, "XEN_EPERM"],
    // Aliases: the first declared name wins.
    [XEN_ERRNO, 11, "XEN_EAGAIN"],
    [XEN_ERRNO, 35, "XEN_EDEADLK"],
    [DOMID, 0x7ff0, "DOMID_FIRST_RESERVED"],
    [DOMID, 0x7fff, "DOMID_IDLE"],
    [UVMF, 0, "UVMF_NONE"],
    [GTF, 4, "GTF_readonly"],
    [HYPERVISOR, 29, "__HYPERVISOR_sched_op"],
    // Negative values in groups that hold them.
    [GNTST, -3, "GNTST_bad_gntref"],
    [BLKIF_RSP, -1, "BLKIF_RSP_ERROR"],
    [BLKIF_RSP, 0, "BLKIF_RSP_OKAY"],
    // Unknown values come back in decimal.
    [XEN_ERRNO, 4, "4"],
    [XEN_ERRNO, -22, "-22"],
    [XEN_ERRNO, 0, "0"],
    [HYPERVISOR, 11, "11"],
    [GNTST, 1, "1"],
  ] as [Group, number, string][])("cName(group, %s) with %s is %s", (group, value, expected) => {
    expect(cName(group, value)).toBe(expected);
  });

  it("uses no prefix for an object that is not a group", () => {
    expect(cName({ EINVAL: 22, EFOO: 22 }, 22)).toBe("EINVAL");
    expect(cName({ EINVAL: 22 }, 23)).toBe("23");
  });

  it("gives each exported group's values a name that maps back to the value", () => {
    for (const [name, g] of exportedGroups) {
      const prefix = constantGroupInfo(g)?.cPrefix ?? "";
      for (const v of Object.values(g)) {
        const c = cName(g, v);
        expect(c.startsWith(prefix), `${name}: ${c}`).toBe(true);
        expect(g[c.slice(prefix.length)], `${name}: ${c}`).toBe(v);
      }
    }
  });
});

describe("keyOf()", () => {
  it.each([
    [XEN_ERRNO, 22, "EINVAL"],
    [XEN_ERRNO, 11, "EAGAIN"],
    [XEN_ERRNO, 35, "EDEADLK"],
    [GNTST, -13, "no_space"],
    [DOMID, 0x7ff0, "FIRST_RESERVED"],
    [XEN_ERRNO, 4, undefined],
    [XEN_ERRNO, -22, undefined],
    [XEN_ERRNO, Number.NaN, undefined],
    [XEN_ERRNO, 22.5, undefined],
  ] as [Group, number, string | undefined][])("keyOf(group, %s) is %s", (group, value, expected) => {
    expect(keyOf(group, value)).toBe(expected);
  });

  it("returns the first declared key for every aliased value", () => {
    for (const [name, g] of exportedGroups) {
      const keys = Object.keys(g);
      keys.forEach((k, i) => {
        const found = keyOf(g, g[k] as number);
        expect(found, `${name}.${k}`).toBeDefined();
        // No earlier key than `found` has the value, and `found` is not after `k`.
        const j = keys.indexOf(found as string);
        expect(j, `${name}.${k}`).toBeLessThanOrEqual(i);
        expect(keys.slice(0, j).some((e) => g[e] === g[k]), `${name}.${k}`).toBe(false);
      });
    }
  });
});

describe("errnoName()", () => {
  it.each([
    [22, "EINVAL"],
    [-22, "EINVAL"],
    [1, "EPERM"],
    [-1, "EPERM"],
    [11, "EAGAIN"],
    [-11, "EAGAIN"],
    [-35, "EDEADLK"],
    [-38, "ENOSYS"],
    [111, "ECONNREFUSED"],
    // Not Xen errnos (EINTR, ERESTART are internal), or no errno at all.
    [4, "E4"],
    [-4, "E4"],
    [0, "E0"],
    [-1000, "E1000"],
  ])("errnoName(%s) is %s", (errno, expected) => {
    expect(errnoName(errno)).toBe(expected);
  });

  it("names every negated XEN_ERRNO value after an entry with that value", () => {
    for (const v of Object.values(XEN_ERRNO)) expect(XEN_ERRNO[errnoName(-v) as keyof typeof XEN_ERRNO]).toBe(v);
  });
});
