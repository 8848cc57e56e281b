/**
 * What the console daemon keeps of a guest's output: the bytes cut into
 * lines, each stamped with the virtual time its first byte reached dom0, and
 * a bounded history of those lines. Pure: time is passed in.
 *
 * @module
 */

/** One line of a guest's console output. */
export interface ConsoleLine {
  /** System time (ns since the host booted) when dom0 read the line's first byte. */
  readonly tNs: number;
  /** The text, without its `\n` (or `\r\n`). */
  readonly line: string;
}

/** Longest line kept whole by default, in UTF-16 code units; a longer one is cut into several. */
export const MAX_LINE = 8192;

/**
 * Cuts a byte stream into lines. Bytes are UTF-8; a character split across
 * two reads is put back together. A `\r` before the `\n` is dropped, as a
 * terminal would not show it either. A line longer than `maxLine` is cut
 * there, so a guest that never writes a newline cannot grow the daemon's
 * memory.
 */
export class LineAssembler {
  private readonly decoder = new TextDecoder();
  private partial = "";
  private partialT: number | undefined;

  /** Cuts lines at `maxLine` code units. */
  constructor(readonly maxLine: number = MAX_LINE) {}

  /** The text of the line begun and not yet ended. */
  get pending(): string {
    return this.partial;
  }

  /** Adds `bytes`, read at `tNs`; returns the lines they completed. */
  push(bytes: Uint8Array, tNs: number): ConsoleLine[] {
    const text = this.decoder.decode(bytes, { stream: true });
    const lines: ConsoleLine[] = [];
    for (let from = 0; from < text.length; ) {
      const nl = text.indexOf("\n", from);
      this.partialT ??= tNs;
      this.partial += text.slice(from, nl < 0 ? text.length : nl);
      while (this.partial.length > this.maxLine) {
        lines.push({ tNs: this.partialT, line: this.partial.slice(0, this.maxLine) });
        this.partial = this.partial.slice(this.maxLine);
        this.partialT = tNs;
      }
      if (nl < 0) break;
      const line = this.partial.endsWith("\r") ? this.partial.slice(0, -1) : this.partial;
      lines.push({ tNs: this.partialT, line });
      this.partial = "";
      this.partialT = undefined;
      from = nl + 1;
    }
    return lines;
  }

  /** Ends the stream: returns the unterminated last line, if there is one. */
  end(): ConsoleLine | undefined {
    const rest = this.partial + this.decoder.decode();
    const t = this.partialT;
    this.partial = "";
    this.partialT = undefined;
    return rest === "" ? undefined : { tNs: t ?? 0, line: rest };
  }
}

/** UTF-8 length of `s`, without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      n += 4; // a surrogate pair
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * The last lines of a console, as many as fit in `maxBytes` (each line
 * counted with its newline). The oldest go first; a single line longer than
 * the whole budget is kept alone, so the latest output is always there.
 */
export class ConsoleHistory {
  private lines: ConsoleLine[] = [];
  private sizes: number[] = [];
  private head = 0;
  private total = 0;

  /** Keeps about `maxBytes` of lines. */
  constructor(readonly maxBytes: number) {}

  /** Bytes the kept lines take. */
  get bytes(): number {
    return this.total;
  }

  /** Adds a line, dropping the oldest past the budget. */
  add(line: ConsoleLine): void {
    const size = utf8Length(line.line) + 1;
    this.lines.push(line);
    this.sizes.push(size);
    this.total += size;
    while (this.total > this.maxBytes && this.lines.length - this.head > 1) {
      this.total -= this.sizes[this.head]!;
      this.head++;
    }
    // Compact now and then, so dropping from the front stays cheap.
    if (this.head > 1024 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }

  /** The kept lines, oldest first. */
  toArray(): ConsoleLine[] {
    return this.lines.slice(this.head);
  }
}
