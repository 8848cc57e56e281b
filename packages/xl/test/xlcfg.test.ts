/**
 * The xl.cfg syntax: every value form, comments, lists over several lines,
 * escapes, `+=`, `xl create` overrides, and errors with their places.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { applyOverrides, formatCfgValue, parseCfg, parseCInteger, quoteCfgString, type CfgMap, type CfgValue } from "@pvkit/xl";

/** A value without its locations, for comparing. */
type Plain = string | number | Plain[];
const plain = (v: CfgValue): Plain => (v.kind === "list" ? v.items.map(plain) : v.value);
const plainMap = (m: CfgMap): Record<string, Plain> => Object.fromEntries([...m].map(([k, v]) => [k, plain(v)]));

function parsed(text: string): Record<string, Plain> {
  const r = parseCfg(text, "t.cfg");
  if (E.isLeft(r)) throw new Error(r.left.map((e) => e.message).join("\n"));
  return plainMap(r.right);
}

function errorsOf(text: string): string[] {
  const r = parseCfg(text, "t.cfg");
  if (E.isRight(r)) throw new Error(`expected errors, parsed ${JSON.stringify(plainMap(r.right))}`);
  return r.left.map((e) => e.message);
}

describe("values", () => {
  it.each<[string, string, Record<string, Plain>]>([
    ["a double-quoted string", 'name = "web"', { name: "web" }],
    ["a single-quoted string", "name = 'web'", { name: "web" }],
    ["an empty string", "vif = ''", { vif: "" }],
    ["a decimal number", "memory = 256", { memory: 256 }],
    ["zero", "cap = 0", { cap: 0 }],
    ["a hex number", "memory = 0x100", { memory: 256 }],
    ["an octal number (leading 0, as strtol)", "memory = 0400", { memory: 256 }],
    ["a list of strings", "disk = [ 'a', 'b' ]", { disk: ["a", "b"] }],
    ["an empty list", "disk = []", { disk: [] }],
    ["a list with a trailing comma", "disk = [ 'a', ]", { disk: ["a"] }],
    ["a list of numbers and strings", 'x = [ 1, "two", 0x3 ]', { x: [1, "two", 3] }],
    ["nested lists (vnuma)", 'vnuma = [ ["pnode=0","size=512"], ["pnode=1"] ]', { vnuma: [["pnode=0", "size=512"], ["pnode=1"]] }],
    ["no blanks at all", "memory=128", { memory: 128 }],
    ["tabs as blanks", "memory\t=\t128", { memory: 128 }],
    ["keys with '_' and '.'", "cpu_weight = 512\nvif.default.bridge = 'br0'", { cpu_weight: 512, "vif.default.bridge": "br0" }],
    ["settings separated by ';'", 'name = "a"; memory = 64;vcpus=2', { name: "a", memory: 64, vcpus: 2 }],
    ["a trailing ';'", "memory = 64;", { memory: 64 }],
    ["empty statements", ";;\n;\nmemory = 64", { memory: 64 }],
    ["no newline at the end", 'name = "x"', { name: "x" }],
    ["the last setting wins", 'name = "a"\nname = "b"', { name: "b" }],
  ])("%s", (_what, text, want) => {
    expect(parsed(text)).toEqual(want);
  });

  it("keeps the digits of a number as written", () => {
    const r = parseCfg("memory = 0x100", "t.cfg");
    expect(E.isRight(r) && r.right.get("memory")).toMatchObject({ kind: "number", value: 256, text: "0x100" });
  });

  it("records where each value is", () => {
    const r = parseCfg('# header\nname = "web"\ndisk = [\n  \'a\',\n  \'b\' ]', "web.cfg");
    if (E.isLeft(r)) throw new Error("parse failed");
    expect(r.right.get("name")!.loc).toEqual({ source: "web.cfg", start: { line: 2, column: 8, offset: 16 }, end: { line: 2, column: 13, offset: 21 } });
    const disk = r.right.get("disk")!;
    expect(disk.loc.start).toMatchObject({ line: 3, column: 8 });
    expect(disk.loc.end).toMatchObject({ line: 5, column: 8 });
    expect(disk.kind === "list" && disk.items.map((i) => [i.loc.start.line, i.loc.start.column])).toEqual([
      [4, 3],
      [5, 3],
    ]);
  });
});

describe("comments and lists over lines", () => {
  it.each<[string, string, Record<string, Plain>]>([
    ["a comment line", "# a comment\nmemory = 64", { memory: 64 }],
    ["a comment after a value", 'name = "x" # the name', { name: "x" }],
    ["a '#' inside a string is not a comment", 'extra = "a # b"', { extra: "a # b" }],
    ["a comment at the end of the file without newline", "memory = 64\n# end", { memory: 64 }],
    ["blank lines", "\n\n  \nmemory = 64\n\n", { memory: 64 }],
    [
      "a list over several lines with comments",
      "disk = [\n  '/a,raw,xvda,rw', # root\n\n  # swap:\n  '/b,raw,xvdb,rw',\n]\nmemory = 64",
      { disk: ["/a,raw,xvda,rw", "/b,raw,xvdb,rw"], memory: 64 },
    ],
    ["a newline right after '['", "vif = [\n'']", { vif: [""] }],
    ["a newline before ','", "x = [ 'a'\n , 'b' ]", { x: ["a", "b"] }],
  ])("%s", (_what, text, want) => {
    expect(parsed(text)).toEqual(want);
  });
});

describe("escapes", () => {
  it.each<[string, string, string]>([
    ["a double quote", String.raw`x = "say \"hi\""`, 'say "hi"'],
    ["a single quote in single quotes", String.raw`x = 'it\'s'`, "it's"],
    ["the other quote needs no escape", `x = "it's"; y = 'say "hi"'`, "it's"],
    ["a backslash", String.raw`x = "a\\b"`, "a\\b"],
    ["C control escapes", String.raw`x = "\a\b\f\n\r\t\v"`, "\x07\b\f\n\r\t\v"],
    ["a hex escape", String.raw`x = "\x41\x7a"`, "Az"],
    ["a one-digit hex escape", String.raw`x = "\x9!"`, "\t!"],
    ["an octal escape", String.raw`x = "\101\0"`, "A\0"],
  ])("%s", (_what, text, want) => {
    expect(parsed(text)["x"]).toBe(want);
  });

  it("formatCfgValue writes back what parses to the same value", () => {
    const text = String.raw`a = "q\"\\\n\t\x01"; b = [ 1, 'two', [ "three" ] ]; c = 0x10`;
    const r = parseCfg(text, "t.cfg");
    if (E.isLeft(r)) throw new Error("parse failed");
    const again = [...r.right].map(([k, v]) => `${k} = ${formatCfgValue(v)}`).join("\n");
    expect(parsed(again)).toEqual(plainMap(r.right));
    expect(quoteCfgString('a"b')).toBe(String.raw`"a\"b"`);
  });
});

describe("+=", () => {
  it.each<[string, string, Record<string, Plain>]>([
    ["joins strings", 'extra = "root=/dev/xvda1"\nextra += " console=hvc0"', { extra: "root=/dev/xvda1 console=hvc0" }],
    ["concatenates lists", "disk = [ 'a' ]\ndisk += [ 'b', 'c' ]", { disk: ["a", "b", "c"] }],
    ["sets a key that was not set", "disk += [ 'a' ]", { disk: ["a"] }],
    ["applies to the latest setting", "x = 'a'\nx = 'b'\nx += 'c'", { x: "bc" }],
  ])("%s", (_what, text, want) => {
    expect(parsed(text)).toEqual(want);
  });

  it.each<[string, string, string]>([
    ["numbers", "memory = 64\nmemory += 64", "t.cfg:2:11: memory: can't use += with numbers"],
    ["a list to a string", "x = 'a'\nx += [ 'b' ]", `t.cfg:2:6: x: can't add a [list] to a "string" (set at t.cfg:1:5)`],
  ])("refuses %s", (_what, text, want) => {
    expect(errorsOf(text)).toEqual([want]);
  });
});

describe("syntax errors name the place and what was expected", () => {
  it.each<[string, string, string]>([
    ["a missing value", "memory =", "t.cfg:1:9: expected a value after '=', found the end of the file"],
    ["a missing value before the end of the line", "memory =\nvcpus = 1", "t.cfg:1:9: expected a value after '=', found the end of the line"],
    ["an unquoted string", "name = web", `t.cfg:1:8: expected a value after '=', found 'web': strings must be quoted, as in "web"`],
    ["a missing '='", 'name "web"', `t.cfg:1:6: expected '=' after the key 'name', found the string "web"`],
    ["a key with a capital", 'Name = "web"', "t.cfg:1:1: invalid key 'Name': a key is lowercase letters, digits, '_' and '.', starting with a letter"],
    ["a statement with no key", "= 5", "t.cfg:1:1: expected a key (KEY = VALUE), found '='"],
    ["two values", "vcpus = 2 3", "t.cfg:1:11: expected ';' or the end of the line after the value of 'vcpus', found the number 3"],
    ["an unterminated string", 'name = "web', 't.cfg:1:8: unterminated string: no closing " before the end of the line (strings cannot span lines)'],
    ["a bad escape", String.raw`extra = "a\qb"`, String.raw`t.cfg:1:11: invalid escape '\q' in a string (xl knows \" \' \\ \a \b \f \n \r \t \v \xHH \ooo)`],
    ["a \\x without digits", String.raw`extra = "\xg"`, String.raw`t.cfg:1:10: invalid escape '\x': it needs one or two hex digits`],
    ["digits and letters", "memory = 12abc", "t.cfg:1:10: invalid number '12abc' (an xl number is decimal, 0x hex or 0 octal digits, nothing else)"],
    ["a fraction", "memory = 1.5", "t.cfg:1:10: invalid number '1.5' (an xl number is decimal, 0x hex or 0 octal digits, nothing else)"],
    ["capital hex digits", "memory = 0x1F", "t.cfg:1:10: invalid number '0x1F' (xl reads only lowercase hex digits: write 0x1f)"],
    ["a bad octal number", "memory = 09", "t.cfg:1:10: invalid number '09' (a leading 0 makes a number octal)"],
    ["a negative number", "cap = -5", `t.cfg:1:7: unexpected character "-" (xl.cfg is not Python: see xl.cfg(5) for its syntax)`],
    ["Python", "memory = int(5)", `t.cfg:1:10: expected a value after '=', found 'int': strings must be quoted, as in "int"`],
    ["a missing ',' in a list", "disk = [ 'a' 'b' ]", "t.cfg:1:14: expected ',' or ']' in the list opened at 1:8, found the string 'b'"],
    ["a list with only a comma", "disk = [ , ]", "t.cfg:1:10: expected a value or ']' in the list opened at 1:8, found ','"],
    ["an unclosed list at the end", "disk = [ 'a',", "t.cfg:1:14: expected a value or ']' in the list opened at 1:8, found the end of the file"],
    ["an unclosed list before the next setting", "disk = [ 'a',\nmemory = 64", "t.cfg:2:1: missing ']' for the list opened at 1:8, before the next setting 'memory'"],
    ["CRLF line endings", 'name = "x"\r\n', "t.cfg:1:11: carriage return: xl.cfg files must have Unix (LF) line endings, not CRLF"],
    ["a character outside any token", 'name = "x" @', `t.cfg:1:12: unexpected character "@"`],
  ])("%s", (_what, text, want) => {
    expect(errorsOf(text)).toEqual([want]);
  });

  it("a string over two lines is an error on each", () => {
    expect(errorsOf("name = 'a\nb'")).toEqual([
      "t.cfg:1:8: unterminated string: no closing ' before the end of the line (strings cannot span lines)",
      "t.cfg:2:2: unterminated string: no closing ' before the end of the line (strings cannot span lines)",
    ]);
  });

  it("reports every error of a file and goes on after each", () => {
    const text = ["name = web", "memory = 64", "vcpus = ", "disk = [ 'a',", "  'b' 'c' ]", "cap = 0x1G", "maxmem = 128"].join("\n");
    expect(errorsOf(text)).toEqual([
      `t.cfg:1:8: expected a value after '=', found 'web': strings must be quoted, as in "web"`,
      "t.cfg:3:9: expected a value after '=', found the end of the line",
      "t.cfg:5:7: expected ',' or ']' in the list opened at 4:8, found the string 'c'",
      "t.cfg:6:7: invalid number '0x1G' (an xl number is decimal, 0x hex or 0 octal digits, nothing else)",
    ]);
  });

  it("gives each error its structured place", () => {
    const r = parseCfg("memory =", "web.cfg");
    expect(E.isLeft(r) && r.left[0]).toMatchObject({ source: "web.cfg", line: 1, column: 9 });
  });
});

describe("xl create overrides", () => {
  const base = (() => {
    const r = parseCfg("name = \"web\"\nmemory = 128\ndisk = [ '/a,raw,xvda,rw' ]\n", "web.cfg");
    if (E.isLeft(r)) throw new Error("parse failed");
    return r.right;
  })();

  function overridden(args: string[]): Record<string, Plain> {
    const r = applyOverrides(base, args);
    if (E.isLeft(r)) throw new Error(r.left.map((e) => e.message).join("\n"));
    return plainMap(r.right);
  }

  it.each<[string, string[], Record<string, Plain>]>([
    ["a string", ['name="db"'], { name: "db", memory: 128, disk: ["/a,raw,xvda,rw"] }],
    ["a number", ["memory=256"], { name: "web", memory: 256, disk: ["/a,raw,xvda,rw"] }],
    ["a new key, after the file's", ["vif=['bridge=xenbr1']"], { name: "web", memory: 128, disk: ["/a,raw,xvda,rw"], vif: ["bridge=xenbr1"] }],
    ["several settings in one argument", ['vcpus=2; name="db"'], { name: "db", memory: 128, disk: ["/a,raw,xvda,rw"], vcpus: 2 }],
    ["+= onto the file's list", ["disk+=['/b,raw,xvdb,rw']"], { name: "web", memory: 128, disk: ["/a,raw,xvda,rw", "/b,raw,xvdb,rw"] }],
    ["later arguments win", ["memory=256", "memory=512"], { name: "web", memory: 512, disk: ["/a,raw,xvda,rw"] }],
    ["none", [], { name: "web", memory: 128, disk: ["/a,raw,xvda,rw"] }],
  ])("%s", (_what, args, want) => {
    expect(overridden(args)).toEqual(want);
  });

  it("does not change the parsed file", () => {
    overridden(["memory=1"]);
    expect(plain(base.get("memory")!)).toBe(128);
  });

  it("names the argument where an override's value came from", () => {
    const r = applyOverrides(base, ["memory=256"]);
    expect(E.isRight(r) && r.right.get("memory")!.loc.source).toBe('command-line override "memory=256"');
  });

  it.each<[string, string, string]>([
    // As with xl, whose parse of the file plus overrides fails: the shell ate the quotes.
    ["an unquoted string", "name=db", `command-line override "name=db":1:6: expected a value after '=', found 'db': strings must be quoted, as in "db" (did the shell eat the quotes? write 'name="db"')`],
    ["no '='", "memory", 'command-line override "memory": not a KEY=VALUE setting'],
    ["an unclosed list", "vif=['a'", `command-line override "vif=['a'":1:9: expected ',' or ']' in the list opened at 1:5, found the end of the argument`],
    ["+= on a number", "memory+=1", 'command-line override "memory+=1":1:9: memory: can\'t use += with numbers'],
  ])("refuses %s", (_what, arg, want) => {
    const r = applyOverrides(base, [arg]);
    expect(E.isLeft(r) && r.left.map((e) => e.message)).toEqual([want]);
  });
});

describe("parseCInteger (strtol base 0, whole string)", () => {
  it.each<[string, number | undefined]>([
    ["256", 256],
    [" 256", 256],
    ["+5", 5],
    ["-5", -5],
    ["0x10", 16],
    ["0X1f", 31],
    ["010", 8],
    ["0", 0],
    ["08", undefined],
    ["", undefined],
    ["12abc", undefined],
    ["256 ", undefined],
    ["0x", undefined],
    ["9007199254740991", 9007199254740991],
    ["9007199254740992", undefined],
  ])("%j", (text, want) => {
    expect(parseCInteger(text)).toBe(want);
  });
});
