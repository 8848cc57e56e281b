import { describe, expect, it } from "vitest";
import { ConsoleHistory, LineAssembler, utf8Length } from "@pvkit/dom0";

const enc = (s: string) => new TextEncoder().encode(s);

describe("LineAssembler", () => {
  it.each([
    ["one line", [["hello\n", 5]], [{ tNs: 5, line: "hello" }], ""],
    ["several lines in one read", [["a\nb\nc\n", 5]], [{ tNs: 5, line: "a" }, { tNs: 5, line: "b" }, { tNs: 5, line: "c" }], ""],
    ["a line over two reads takes the time of its first byte", [["hel", 5], ["lo\nwo", 9]], [{ tNs: 5, line: "hello" }], "wo"],
    ["CRLF loses its CR", [["dos\r\n", 1]], [{ tNs: 1, line: "dos" }], ""],
    ["a lone CR stays", [["a\rb\n", 1]], [{ tNs: 1, line: "a\rb" }], ""],
    ["empty lines", [["\n\n", 3]], [{ tNs: 3, line: "" }, { tNs: 3, line: "" }], ""],
    ["nothing complete", [["abc", 2]], [], "abc"],
  ] as const)("%s", (_what, reads, lines, pending) => {
    const a = new LineAssembler();
    const got = reads.flatMap(([text, t]) => a.push(enc(text), t));
    expect(got).toEqual(lines);
    expect(a.pending).toBe(pending);
  });

  it("puts a UTF-8 character split across reads back together", () => {
    const a = new LineAssembler();
    const bytes = enc("héllo ✓\n");
    expect(a.push(bytes.subarray(0, 2), 1)).toEqual([]);
    expect(a.push(bytes.subarray(2, 9), 2)).toEqual([]);
    expect(a.push(bytes.subarray(9), 3)).toEqual([{ tNs: 1, line: "héllo ✓" }]);
  });

  it("cuts a line longer than maxLine, so a guest without newlines cannot grow the daemon", () => {
    const a = new LineAssembler(4);
    expect(a.push(enc("abcdefghij"), 1)).toEqual([
      { tNs: 1, line: "abcd" },
      { tNs: 1, line: "efgh" },
    ]);
    expect(a.push(enc("k\nlmnop\n"), 2)).toEqual([
      { tNs: 1, line: "ijk" },
      { tNs: 2, line: "lmno" },
      { tNs: 2, line: "p" },
    ]);
    expect(a.push(enc("wxyz\n"), 3)).toEqual([{ tNs: 3, line: "wxyz" }]);
  });

  it("ends with the unterminated last line, with the time of its first byte", () => {
    const a = new LineAssembler();
    a.push(enc("done\nlast"), 4);
    a.push(enc(" words"), 8);
    expect(a.end()).toEqual({ tNs: 4, line: "last words" });
    expect(a.end()).toBeUndefined();
  });
});

describe("ConsoleHistory", () => {
  it("keeps the latest lines within its budget, counting UTF-8 bytes and newlines", () => {
    const h = new ConsoleHistory(10);
    h.add({ tNs: 1, line: "aaaa" }); // 5
    h.add({ tNs: 2, line: "bbbb" }); // 10
    expect(h.toArray().map((l) => l.line)).toEqual(["aaaa", "bbbb"]);
    h.add({ tNs: 3, line: "é" }); // 3: aaaa goes
    expect(h.toArray()).toEqual([
      { tNs: 2, line: "bbbb" },
      { tNs: 3, line: "é" },
    ]);
    expect(h.bytes).toBe(8);
    h.add({ tNs: 4, line: "x".repeat(50) }); // alone over budget: kept alone
    expect(h.toArray().map((l) => l.tNs)).toEqual([4]);
  });

  it("stays cheap and correct over many lines", () => {
    const h = new ConsoleHistory(100);
    for (let i = 0; i < 10_000; i++) h.add({ tNs: i, line: String(i).padStart(9, "0") });
    expect(h.toArray().map((l) => l.tNs)).toEqual(Array.from({ length: 10 }, (_, i) => 9_990 + i));
  });

  it.each([
    ["", 0],
    ["abc", 3],
    ["é", 2],
    ["✓", 3],
    ["😀", 4],
  ])("utf8Length(%j) = %d", (s, n) => {
    expect(utf8Length(s)).toBe(n);
    expect(new TextEncoder().encode(s).byteLength).toBe(n);
  });
});
