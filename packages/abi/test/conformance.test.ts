/**
 * Conformance of @pvkit/abi with Xen's real public headers.
 *
 * Every export of the package is visited. A constant group is checked value by
 * value, a struct layout by `sizeof`, each member's `offsetof`, size and
 * signedness. The C program doing the checking is generated from the
 * TypeScript tables themselves, so a constant or layout added to the package
 * is checked without anyone remembering to list it; a bare exported number
 * must be named below with the C expression it stands for.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as abi from "../src/index.js";
import { constantGroupInfo, type Field, type StructLayout } from "../src/index.js";
import { compileC, haveXenHeaders, requireXenHeaders, runC, XEN_PREAMBLE } from "../../../test/support/c.js";

/** Exported plain numbers and the C expression each must equal. */
const BARE_NUMBERS: Record<string, string> = {
  PAGE_SIZE: "(1 << XEN_PAGE_SHIFT)",
  EVTCHN_2L_NR_CHANNELS: "EVTCHN_2L_NR_CHANNELS",
  SRING_HEADER_SIZE: "offsetof(struct blkif_sring, ring)",
};

interface CheckedConstant {
  readonly cName: string;
  readonly value: number;
}
interface CheckedMember {
  readonly cType: string;
  readonly member: string;
  readonly offset: number;
  readonly size: number;
  /** undefined for aggregates, where signedness does not apply */
  readonly signed: boolean | undefined;
}

function isLayout(v: unknown): v is StructLayout {
  return typeof v === "object" && v !== null && "cType" in v && "size" in v && "fields" in v;
}

function signedness(f: Field): boolean | undefined {
  if (f.kind === "array" || f.kind === "bytes" || f.kind === "struct") return undefined;
  return f.kind.startsWith("i");
}

/** Members of a layout, nested structs and array elements flattened into C designators. */
function members(layout: StructLayout, prefix = "", base = 0, out: CheckedMember[] = [], root = layout.cType): CheckedMember[] {
  for (const [name, f] of Object.entries(layout.fields)) {
    const designator = prefix + (f.cMember ?? name);
    const offset = base + f.offset;
    out.push({ cType: root, member: designator, offset, size: f.size, signed: signedness(f) });
    if (f.kind === "struct") members(f.layout, `${designator}.`, offset, out, root);
    if (f.kind === "array") {
      out.push({ cType: root, member: `${designator}[1]`, offset: offset + f.stride, size: f.element.size, signed: signedness(f.element) });
      if (f.element.kind === "struct") members(f.element.layout, `${designator}[0].`, offset, out, root);
    }
  }
  return out;
}

const constantsToCheck: CheckedConstant[] = [];
const layoutsToCheck: StructLayout[] = [];
const unchecked: string[] = [];
for (const [name, value] of Object.entries(abi)) {
  const group = constantGroupInfo(value);
  if (group) {
    for (const [k, v] of Object.entries(value as Record<string, number>)) constantsToCheck.push({ cName: group.cPrefix + k, value: v });
  } else if (isLayout(value)) {
    layoutsToCheck.push(value);
  } else if (typeof value === "number") {
    if (BARE_NUMBERS[name] === undefined) unchecked.push(name);
  }
}

function cProgram(): string {
  const lines = [XEN_PREAMBLE, "#define SIGNED(x) ((__typeof__(x))-1 < (__typeof__(x))0)", "int main(void) {"];
  for (const c of constantsToCheck) lines.push(`  printf("C %s %lld\\n", "${c.cName}", (long long)(${c.cName}));`);
  for (const [name, expr] of Object.entries(BARE_NUMBERS)) lines.push(`  printf("C %s %lld\\n", "${name}", (long long)(${expr}));`);
  for (const l of layoutsToCheck) lines.push(`  printf("S %s %zu\\n", "${l.cType}", sizeof(${l.cType}));`);
  for (const l of layoutsToCheck) {
    for (const m of members(l)) {
      const lvalue = `((${m.cType} *)0)->${m.member}`;
      const sign = m.signed === undefined ? "-1" : `SIGNED(${lvalue})`;
      lines.push(
        `  printf("O %s %s %zu %zu %d\\n", "${m.cType}", "${m.member}", offsetof(${m.cType}, ${m.member}), sizeof(${lvalue}), ${sign});`,
      );
    }
  }
  lines.push(`  for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)`);
  lines.push(`    printf("E %d %s\\n", xsd_errors[i].errnum, xsd_errors[i].errstring);`);
  lines.push("  return 0;", "}");
  return lines.join("\n");
}

describe.skipIf(!haveXenHeaders && !process.env["CI"])("conformance with /usr/include/xen", () => {
  const fromC = { constants: new Map<string, number>(), sizes: new Map<string, number>(), members: new Map<string, string>(), xsdErrors: [] as string[] };

  beforeAll(() => {
    requireXenHeaders();
    const out = runC(compileC("abi-conformance", cProgram())).stdout.toString();
    for (const line of out.split("\n")) {
      const [tag, ...rest] = line.split(" ");
      if (tag === "C") fromC.constants.set(rest[0]!, Number(rest[1]));
      if (tag === "S") fromC.sizes.set(rest.slice(0, -1).join(" "), Number(rest.at(-1)));
      if (tag === "O") fromC.members.set(`${rest.slice(0, -4).join(" ")} ${rest.at(-4)}`, rest.slice(-3).join(" "));
      if (tag === "E") fromC.xsdErrors.push(`${rest[0]} ${rest[1]}`);
    }
  }, 120_000);

  it("the package exports no bare number the C side does not check", () => {
    expect(unchecked).toEqual([]);
  });

  it("checks a meaningful number of constants and layouts", () => {
    // Guards against the export walk silently finding nothing.
    expect(constantsToCheck.length).toBeGreaterThan(300);
    expect(layoutsToCheck.length).toBeGreaterThan(25);
  });

  it("every constant has Xen's value", () => {
    const wrong = constantsToCheck.filter((c) => fromC.constants.get(c.cName) !== c.value).map((c) => `${c.cName}: pvkit ${c.value}, C ${fromC.constants.get(c.cName)}`);
    expect(wrong).toEqual([]);
  });

  it("every bare exported number has its C value", () => {
    const wrong = Object.entries(BARE_NUMBERS)
      .filter(([name]) => fromC.constants.get(name) !== (abi as unknown as Record<string, number>)[name])
      .map(([name]) => name);
    expect(wrong).toEqual([]);
  });

  it("every struct has Xen's sizeof", () => {
    const wrong = layoutsToCheck.filter((l) => fromC.sizes.get(l.cType) !== l.size).map((l) => `${l.cType}: pvkit ${l.size}, C ${fromC.sizes.get(l.cType)}`);
    expect(wrong).toEqual([]);
  });

  it("every member has Xen's offset, size and signedness", () => {
    const wrong: string[] = [];
    for (const l of layoutsToCheck) {
      for (const m of members(l)) {
        const want = `${m.offset} ${m.size} ${m.signed === undefined ? -1 : Number(m.signed)}`;
        const got = fromC.members.get(`${m.cType} ${m.member}`);
        if (got !== want) wrong.push(`${m.cType}.${m.member}: pvkit "${want}", C "${got}" (offset size signed)`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the xenstore error table matches xsd_errors[]", () => {
    expect(abi.XSD_ERRORS.map((e) => `${e.errnum} ${e.errstring}`)).toEqual(fromC.xsdErrors);
  });
});
