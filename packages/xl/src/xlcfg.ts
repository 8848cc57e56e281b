/**
 * The xl.cfg file syntax (`xl.cfg(5)`, "SYNTAX"), as Xen's libxlu reads it
 * (`tools/libs/util/libxlu_cfg_l.l` and `libxlu_cfg_y.y`):
 *
 * ```
 * # a comment, to the end of the line
 * name = "web"; type = "pv"          # settings end at a newline or ';'
 * memory = 0x100                     # numbers: decimal, 0x hex, 0 octal
 * disk = [ 'file.img,raw,xvda,rw',   # lists may span lines,
 *          'cdrom.iso,,xvdc,cdrom',  # hold strings, numbers and lists,
 *        ]                           # and end with a comma
 * extra += " console=hvc0"           # += appends to a string or a list
 * ```
 *
 * A key is `[a-z][._0-9a-z]*`; a string is quoted with `"` or `'`, stays on
 * one line and takes the escapes `\"` `\'` `\\` `\a` `\b` `\f` `\n` `\r` `\t`
 * `\v`, `\xHH` and `\ooo`. Blanks are spaces and tabs. The last setting of a
 * key wins; `+=` appends to the setting before it (two strings are joined,
 * two lists concatenated).
 *
 * {@link parseCfg} turns a text into a {@link CfgMap}: each key's value, with
 * where it came from. {@link applyOverrides} applies the `KEY=VALUE`
 * arguments of `xl create` after the file. Every syntax error is reported
 * with its place, `example.cfg:3:9: expected a value after '=', found the end
 * of the line`, and all of a text's errors are reported at once (after an
 * error the parser resumes at the next line, as libxlu does).
 *
 * Where pvkit differs from libxlu (Xen 4.17):
 *
 * - A number must be a whole C integer literal: libxlu's lexer takes any
 *   `[0-9][0-9a-fx]*` as a number token (`12abc` too) and only fails when a
 *   key reads it as a number; pvkit refuses it where it is written.
 * - Numeric escapes mean what they mean in C. libxlu's `\x` never succeeds
 *   (its length check cannot pass) and its `\ooo` reads digits as decimal and
 *   then drops the character, so a config meant for real xl should not use
 *   them.
 * - A comment may end the file without a newline (libxlu wants the newline).
 * - `+=` with a number is refused where it is written; libxlu joins the
 *   digits as text and refuses the result when the key is read as a number.
 * - Each `xl create` override is parsed on its own. xl appends all of them,
 *   one per line, to the file's text and parses the whole, so a list split
 *   over two arguments parses there and not here; xl's errors in an override
 *   carry line numbers past the end of the file, pvkit's name the argument.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/** A place in a configuration text: 1-based line and column, 0-based offset (UTF-16 units). */
export interface CfgPosition {
  /** Line, from 1. */
  readonly line: number;
  /** Column, from 1; a tab counts as one. */
  readonly column: number;
  /** Offset of the character in the text, from 0. */
  readonly offset: number;
}

/** Where something was written: the text's name (a file name or a command-line argument) and its span. */
export interface CfgLocation {
  /** The name of the text, as given to {@link parseCfg} (e.g. the file name). */
  readonly source: string;
  /** Its first character. */
  readonly start: CfgPosition;
  /** Just past its last character. */
  readonly end: CfgPosition;
}

/** A quoted string, its escapes decoded. */
export interface CfgString {
  /** Discriminant. */
  readonly kind: "string";
  /** The text between the quotes, escapes decoded. */
  readonly value: string;
  /** Where it was written. */
  readonly loc: CfgLocation;
}

/** A number: decimal, `0x` hexadecimal or `0` octal, as C's `strtol(s, &end, 0)` reads it. */
export interface CfgNumber {
  /** Discriminant. */
  readonly kind: "number";
  /** Its value. */
  readonly value: number;
  /** The digits as written (`0x100`); xl reads them as this text when a key wants a string. */
  readonly text: string;
  /** Where it was written. */
  readonly loc: CfgLocation;
}

/** A list `[ v, v, ... ]` of strings, numbers and lists. */
export interface CfgList {
  /** Discriminant. */
  readonly kind: "list";
  /** The items, each with its own location. */
  readonly items: readonly CfgValue[];
  /** From its `[` to its `]` (for a list made by `+=`, the list appended last). */
  readonly loc: CfgLocation;
}

/** A setting's value. */
export type CfgValue = CfgString | CfgNumber | CfgList;

/** A parsed configuration: each key's final value, keys in the order they were first set. */
export type CfgMap = ReadonlyMap<string, CfgValue>;

/** A problem with a configuration: its syntax here, its meaning in `domain-config`. */
export interface CfgError {
  /** The whole message, ready to print: `example.cfg:3:9: expected a value after '=', found the end of the line`. */
  readonly message: string;
  /** The name of the text concerned, when known. */
  readonly source?: string;
  /** The line concerned, when known. */
  readonly line?: number;
  /** The column concerned, when known. */
  readonly column?: number;
  /** The configuration key concerned, when there is one. */
  readonly key?: string;
}

/** `source:line:column` of a location's start, as messages print it. */
export function formatLocation(loc: CfgLocation): string {
  return `${loc.source}:${loc.start.line}:${loc.start.column}`;
}

/** A {@link CfgError} at `loc`, its message prefixed with the place. */
export function cfgError(loc: CfgLocation, message: string, key?: string): CfgError {
  return {
    message: `${formatLocation(loc)}: ${message}`,
    source: loc.source,
    line: loc.start.line,
    column: loc.start.column,
    ...(key === undefined ? {} : { key }),
  };
}

/**
 * Reads an integer as C's `strtol(s, &end, 0)` does when the whole string
 * must be a number (libxlu's `xlu_cfg_get_long`): leading blanks, a sign,
 * then `0x` hex, `0` octal or decimal, and nothing after. xl reads numbers
 * this way from strings too, so `memory = "256"` means 256. Undefined when
 * `s` is not such a number or is beyond `Number.MAX_SAFE_INTEGER`.
 */
export function parseCInteger(s: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (m === null) return undefined;
  const digits = m[2]!;
  const big = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith("0") ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  const signed = m[1] === "-" ? -big : big;
  if (signed > BigInt(Number.MAX_SAFE_INTEGER) || signed < -BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return Number(signed);
}

/** Writes a value back in xl.cfg syntax (strings double-quoted, escapes as needed). */
export function formatCfgValue(v: CfgValue): string {
  switch (v.kind) {
    case "number":
      return v.text;
    case "string":
      return quoteCfgString(v.value);
    case "list":
      return `[ ${v.items.map(formatCfgValue).join(", ")} ]`;
  }
}

/** A string in xl.cfg syntax: double-quoted, with `\"`, `\\` and C escapes for control characters. */
export function quoteCfgString(s: string): string {
  const named: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x07": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v" };
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    out += named[ch] ?? (code < 0x20 || code === 0x7f ? `\\${code.toString(8).padStart(3, "0")}` : ch);
  }
  return out + '"';
}

// ---------------------------------------------------------------------------
// Lexer

type TokenKind = "word" | "number" | "string" | "=" | "+=" | "," | "[" | "]" | ";" | "newline" | "eof" | "bad";

interface Token {
  readonly kind: TokenKind;
  readonly loc: CfgLocation;
  /** The source text of the token. */
  readonly text: string;
  /** A string's decoded value. */
  readonly value?: string;
  /** A number's value. */
  readonly num?: number;
  /** Why a `bad` token is bad. */
  readonly problem?: string;
}

/** A valid key, as libxlu's lexer has it. */
const KEY = /^[a-z][._0-9a-z]*$/;
const PYTHON_HINT = " (xl.cfg is not Python: see xl.cfg(5) for its syntax)";

class Lexer {
  private readonly lineStarts: number[] = [0];

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {
    for (let i = 0; i < text.length; i++) if (text[i] === "\n") this.lineStarts.push(i + 1);
  }

  position(offset: number): CfgPosition {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - this.lineStarts[lo]! + 1, offset };
  }

  private loc(start: number, end: number): CfgLocation {
    return { source: this.source, start: this.position(start), end: this.position(end) };
  }

  private tok(kind: TokenKind, start: number, end: number, extra: Partial<Pick<Token, "value" | "num" | "problem">> = {}): Token {
    return { kind, loc: this.loc(start, end), text: this.text.slice(start, end), ...extra };
  }

  tokens(): Token[] {
    const s = this.text;
    const out: Token[] = [];
    let i = 0;
    while (i < s.length) {
      const c = s[i]!;
      if (c === " " || c === "\t") {
        i++;
      } else if (c === "\n") {
        out.push(this.tok("newline", i, i + 1));
        i++;
      } else if (c === "\r") {
        out.push(this.tok("bad", i, i + 1, { problem: "carriage return: xl.cfg files must have Unix (LF) line endings, not CRLF" }));
        i++;
      } else if (c === "#") {
        while (i < s.length && s[i] !== "\n") i++;
      } else if (/[A-Za-z_]/.test(c)) {
        let j = i + 1;
        while (j < s.length && /[A-Za-z0-9_.]/.test(s[j]!)) j++;
        out.push(this.tok("word", i, j));
        i = j;
      } else if (/[0-9]/.test(c)) {
        let j = i + 1;
        while (j < s.length && /[A-Za-z0-9_.]/.test(s[j]!)) j++;
        out.push(this.number(i, j));
        i = j;
      } else if (c === '"' || c === "'") {
        const t = this.string(i);
        out.push(t);
        i = t.loc.end.offset;
      } else if (c === "=" || c === "," || c === "[" || c === "]" || c === ";") {
        out.push(this.tok(c, i, i + 1));
        i++;
      } else if (c === "+" && s[i + 1] === "=") {
        out.push(this.tok("+=", i, i + 2));
        i += 2;
      } else {
        const ch = String.fromCodePoint(s.codePointAt(i)!);
        const hint = "+-.():{}".includes(ch) ? PYTHON_HINT : "";
        out.push(this.tok("bad", i, i + ch.length, { problem: `unexpected character ${JSON.stringify(ch)}${hint}` }));
        i += ch.length;
      }
    }
    out.push(this.tok("eof", s.length, s.length));
    return out;
  }

  private number(start: number, end: number): Token {
    const text = this.text.slice(start, end);
    const valid = /^(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$/.test(text);
    if (!valid) {
      let why = "an xl number is decimal, 0x hex or 0 octal digits, nothing else";
      if (/^(0x[0-9a-f]+|[1-9][0-9]*)$/.test(text.toLowerCase())) why = `xl reads only lowercase hex digits: write ${text.toLowerCase()}`;
      else if (/^0[0-9]+$/.test(text)) why = "a leading 0 makes a number octal";
      return this.tok("bad", start, end, { problem: `invalid number '${text}' (${why})` });
    }
    const value = parseCInteger(text);
    if (value === undefined) return this.tok("bad", start, end, { problem: `number '${text}' is too large` });
    return this.tok("number", start, end, { num: value });
  }

  private string(start: number): Token {
    const s = this.text;
    const quote = s[start]!;
    let j = start + 1;
    while (j < s.length && s[j] !== quote && s[j] !== "\n") {
      if (s[j] === "\\" && j + 1 < s.length && s[j + 1] !== "\n") j += 2;
      else if (s[j] === "\\") break;
      else j++;
    }
    if (s[j] !== quote) {
      return this.tok("bad", start, j, { problem: `unterminated string: no closing ${quote} before the end of the line (strings cannot span lines)` });
    }
    const decoded = decodeEscapes(s, start + 1, j);
    if (typeof decoded !== "string") {
      const at = this.loc(decoded.at, decoded.at);
      return { kind: "bad", loc: { ...this.loc(start, j + 1), start: at.start }, text: s.slice(start, j + 1), problem: decoded.problem };
    }
    return this.tok("string", start, j + 1, { value: decoded });
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', "'": "'", "\\": "\\", a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };

/** Decodes the escapes of `s[from, to)`; on a bad escape, where it is and why. */
function decodeEscapes(s: string, from: number, to: number): string | { at: number; problem: string } {
  let out = "";
  let i = from;
  while (i < to) {
    const c = s[i]!;
    if (c !== "\\") {
      out += c;
      i++;
      continue;
    }
    const n = s[i + 1]!;
    const simple = SIMPLE_ESCAPES[n];
    if (simple !== undefined) {
      out += simple;
      i += 2;
    } else if (n === "x") {
      const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 2, Math.min(to, i + 4)));
      if (m === null) return { at: i, problem: "invalid escape '\\x': it needs one or two hex digits" };
      out += String.fromCharCode(parseInt(m[0], 16));
      i += 2 + m[0].length;
    } else if (/[0-7]/.test(n)) {
      const m = /^[0-7]{1,3}/.exec(s.slice(i + 1, Math.min(to, i + 4)))!;
      const code = parseInt(m[0], 8);
      if (code > 0xff) return { at: i, problem: `invalid escape '\\${m[0]}': an octal escape is at most \\377` };
      out += String.fromCharCode(code);
      i += 1 + m[0].length;
    } else {
      return { at: i, problem: `invalid escape '\\${n}' in a string (xl knows \\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v \\xHH \\ooo)` };
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Parser

interface Statement {
  readonly key: string;
  readonly keyLoc: CfgLocation;
  readonly op: "=" | "+=";
  readonly value: CfgValue;
}

function describe(t: Token, endOfText: string): string {
  switch (t.kind) {
    case "newline":
      return "the end of the line";
    case "eof":
      return endOfText;
    case "string":
      return `the string ${t.text.length > 40 ? `${t.text.slice(0, 37)}...` : t.text}`;
    case "number":
      return `the number ${t.text}`;
    case "word":
      return `'${t.text}'`;
    default:
      return `'${t.text}'`;
  }
}

class Parser {
  private i = 0;
  private depth = 0;
  readonly errors: CfgError[] = [];
  readonly statements: Statement[] = [];

  constructor(
    private readonly toks: readonly Token[],
    private readonly override: boolean,
  ) {}

  private peek(k = 0): Token {
    return this.toks[Math.min(this.i + k, this.toks.length - 1)]!;
  }

  private next(): Token {
    const t = this.peek();
    if (this.i < this.toks.length - 1) this.i++;
    return t;
  }

  private fail(t: Token, message: string): undefined {
    this.errors.push(cfgError(t.loc, t.kind === "bad" ? t.problem! : message));
    return undefined;
  }

  private found(t: Token): string {
    return describe(t, this.override ? "the end of the argument" : "the end of the file");
  }

  parse(): void {
    while (this.peek().kind !== "eof") {
      const t = this.peek();
      if (t.kind === "newline" || t.kind === ";") {
        this.next();
        continue;
      }
      if (!this.statement()) this.recover();
    }
  }

  private statement(): boolean {
    const k = this.next();
    if (k.kind !== "word") return this.fail(k, `expected a key (KEY = VALUE), found ${this.found(k)}`) ?? false;
    if (!KEY.test(k.text)) {
      return this.fail(k, `invalid key '${k.text}': a key is lowercase letters, digits, '_' and '.', starting with a letter`) ?? false;
    }
    const op = this.next();
    if (op.kind !== "=" && op.kind !== "+=") return this.fail(op, `expected '=' after the key '${k.text}', found ${this.found(op)}`) ?? false;
    const value = this.value(`after '${op.kind}'`, k.text);
    if (value === undefined) return false;
    const end = this.peek();
    if (end.kind !== "newline" && end.kind !== ";" && end.kind !== "eof") {
      return this.fail(end, `expected ';' or the end of the line after the value of '${k.text}', found ${this.found(end)}`) ?? false;
    }
    this.statements.push({ key: k.text, keyLoc: k.loc, op: op.kind, value });
    return true;
  }

  private value(context: string, key?: string): CfgValue | undefined {
    const t = this.next();
    switch (t.kind) {
      case "string":
        return { kind: "string", value: t.value!, loc: t.loc };
      case "number":
        return { kind: "number", value: t.num!, text: t.text, loc: t.loc };
      case "[":
        return this.list(t);
      case "word": {
        const shell = this.override && key !== undefined ? ` (did the shell eat the quotes? write '${key}="${t.text}"')` : "";
        return this.fail(t, `expected a value ${context}, found ${this.found(t)}: strings must be quoted, as in "${t.text}"${shell}`);
      }
      default:
        const hint = t.kind === "newline" || t.kind === "eof" ? "" : ` (a value is a "string", 'string', number or [list])`;
        return this.fail(t, `expected a value ${context}, found ${this.found(t)}${hint}`);
    }
  }

  private skipNewlines(): void {
    while (this.peek().kind === "newline") this.next();
  }

  private list(open: Token): CfgList | undefined {
    const where = `in the list opened at ${open.loc.start.line}:${open.loc.start.column}`;
    const items: CfgValue[] = [];
    this.depth++;
    this.skipNewlines();
    for (;;) {
      if (this.peek().kind === "]") break;
      const t = this.peek();
      if (this.atNextSetting()) return this.fail(t, `missing ']' for the list opened at ${open.loc.start.line}:${open.loc.start.column}, before the next setting '${t.text}'`);
      if (t.kind !== "string" && t.kind !== "number" && t.kind !== "[" && t.kind !== "bad") {
        this.next();
        const hint = t.kind === "word" ? `: strings must be quoted, as in "${t.text}"` : "";
        return this.fail(t, `expected a value or ']' ${where}, found ${this.found(t)}${hint}`);
      }
      const v = this.value(where);
      if (v === undefined) return undefined;
      items.push(v);
      this.skipNewlines();
      const sep = this.peek();
      if (sep.kind === ",") {
        this.next();
        this.skipNewlines();
      } else if (this.atNextSetting()) {
        return this.fail(sep, `missing ']' for the list opened at ${open.loc.start.line}:${open.loc.start.column}, before the next setting '${sep.text}'`);
      } else if (sep.kind !== "]") {
        this.next();
        return this.fail(sep, `expected ',' or ']' ${where}, found ${this.found(sep)}`);
      }
    }
    const close = this.next();
    this.depth--;
    return { kind: "list", items, loc: { source: open.loc.source, start: open.loc.start, end: close.loc.end } };
  }

  /** Whether the next tokens start a setting on a new line (`key =` after a newline). */
  private atNextSetting(): boolean {
    const a = this.peek();
    const b = this.peek(1);
    return this.toks[this.i - 1]?.kind === "newline" && a.kind === "word" && (b.kind === "=" || b.kind === "+=");
  }

  /** After an error: skip to the end of the statement, out of any list it opened, or to the next line that starts a setting. */
  private recover(): void {
    let depth = this.depth;
    this.depth = 0;
    if ((depth <= 0 && this.toks[this.i - 1]?.kind === "newline") || this.atNextSetting()) return;
    for (;;) {
      const t = this.next();
      if (t.kind === "eof") return;
      if (t.kind === "[") depth++;
      if (t.kind === "]") depth--;
      if (t.kind === "newline" && (depth <= 0 || this.atNextSetting())) return;
    }
  }
}

function statementsOf(text: string, source: string, override: boolean): E.Either<CfgError[], Statement[]> {
  const parser = new Parser(new Lexer(text, source).tokens(), override);
  parser.parse();
  return parser.errors.length > 0 ? E.left(parser.errors) : E.right(parser.statements);
}

/** Applies settings in order onto `map` (the last `=` wins; `+=` appends), collecting the errors of `+=`. */
function apply(map: Map<string, CfgValue>, statements: readonly Statement[], errors: CfgError[]): void {
  for (const s of statements) {
    const prev = map.get(s.key);
    if (s.op === "=" || prev === undefined) {
      map.set(s.key, s.value);
    } else if (prev.kind === "number" || s.value.kind === "number") {
      errors.push(cfgError(s.value.loc, `${s.key}: can't use += with numbers`, s.key));
    } else if (prev.kind === "string" && s.value.kind === "string") {
      map.set(s.key, { ...s.value, value: prev.value + s.value.value });
    } else if (prev.kind === "list" && s.value.kind === "list") {
      map.set(s.key, { ...s.value, items: [...prev.items, ...s.value.items] });
    } else {
      const what = (v: CfgValue) => (v.kind === "list" ? "a [list]" : 'a "string"');
      errors.push(cfgError(s.value.loc, `${s.key}: can't add ${what(s.value)} to ${what(prev)} (set at ${formatLocation(prev.loc)})`, s.key));
    }
  }
}

/**
 * Parses an xl.cfg text. `source` names it in messages (the file name, as
 * `xl` prints it). Left: every syntax error, each with its line and column.
 */
export function parseCfg(text: string, source = "xl.cfg"): E.Either<CfgError[], CfgMap> {
  return E.chain((statements: Statement[]) => {
    const map = new Map<string, CfgValue>();
    const errors: CfgError[] = [];
    apply(map, statements, errors);
    return errors.length > 0 ? E.left(errors) : E.right(map);
  })(statementsOf(text, source, false));
}

/**
 * Applies `xl create`'s command-line overrides after a parsed file, in order:
 * each argument is `KEY=VALUE` settings in the file's syntax (several may be
 * joined with `;`, as `xl(1)` suggests for shells: `'cpus="0-3"; memory=512'`),
 * so strings keep their quotes (`name="web"`, `vif=['bridge=xenbr1']`) and
 * numbers go bare (`memory=256`). A later setting replaces the file's and
 * `+=` appends to it.
 *
 * An argument that is not valid syntax is refused, as xl refuses it (xl adds
 * the arguments to the file's text and fails to parse the whole); the error
 * names the argument, and an unquoted string gets a hint, since the usual
 * cause is a shell that ate the quotes (`name="web"` typed bare).
 */
export function applyOverrides(base: CfgMap, overrides: readonly string[]): E.Either<CfgError[], CfgMap> {
  const map = new Map(base);
  const errors: CfgError[] = [];
  for (const arg of overrides) {
    const source = `command-line override ${JSON.stringify(arg)}`;
    if (!arg.includes("=")) {
      errors.push({ message: `${source}: not a KEY=VALUE setting`, source });
      continue;
    }
    const parsed = statementsOf(arg, source, true);
    if (E.isLeft(parsed)) errors.push(...parsed.left);
    else apply(map, parsed.right, errors);
  }
  return errors.length > 0 ? E.left(errors) : E.right(map);
}
