/**
 * Command-line options as GNU `getopt_long` reads them, which is how xl
 * (and xentop) read theirs: short options in an option string (`"d:w:c:"`,
 * a colon after a letter that takes a value), long options by name, values
 * as `-dVALUE`, `-d VALUE`, `--name=VALUE` or `--name VALUE`, flags
 * combined (`-bc`), options and operands in any order, and `--` ending the
 * options.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/** A long option: the short letter it stands for. */
export interface LongOption {
  /** The short option letter it means. */
  readonly short: string;
  /** Whether it takes a value. */
  readonly arg: boolean;
}

/** The options of a command. */
export interface OptionSpec {
  /** getopt's option string: letters, each followed by `:` if it takes a value. */
  readonly short: string;
  /** Long options by name (without `--`). */
  readonly long?: Readonly<Record<string, LongOption>>;
}

/** One option as given: its letter and its value, if it takes one. */
export interface GivenOption {
  /** The short letter (a long option is reported by its letter). */
  readonly name: string;
  /** Its value. */
  readonly value?: string;
}

/** What {@link getopt} read. */
export interface ParsedArgs {
  /** Options in the order given. */
  readonly options: readonly GivenOption[];
  /** Everything else, in order. */
  readonly operands: readonly string[];
}

/** Whether `letter` takes a value in `short`; undefined if it is no option. */
function takesValue(short: string, letter: string): boolean | undefined {
  if (letter === ":") return undefined;
  const i = short.indexOf(letter);
  if (i < 0) return undefined;
  return short[i + 1] === ":";
}

/**
 * Reads `argv` against `spec`. Left: a message naming the bad option
 * (`` option `x' not supported. ``, as xl words it, or one naming the option
 * that needs a value).
 */
export function getopt(argv: readonly string[], spec: OptionSpec): E.Either<string, ParsedArgs> {
  const options: GivenOption[] = [];
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const long = spec.long?.[name];
      if (long === undefined) return E.left(`option \`--${name}' not supported.`);
      if (!long.arg) {
        if (eq >= 0) return E.left(`option \`--${name}' takes no value (given "${a.slice(eq + 1)}")`);
        options.push({ name: long.short });
      } else if (eq >= 0) options.push({ name: long.short, value: a.slice(eq + 1) });
      else if (i + 1 < argv.length) options.push({ name: long.short, value: argv[++i]! });
      else return E.left(`option \`--${name}' requires a value`);
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const letter = a[j]!;
        const arg = takesValue(spec.short, letter);
        if (arg === undefined) return E.left(`option \`${letter}' not supported.`);
        if (!arg) {
          options.push({ name: letter });
          continue;
        }
        if (j + 1 < a.length) options.push({ name: letter, value: a.slice(j + 1) });
        else if (i + 1 < argv.length) options.push({ name: letter, value: argv[++i]! });
        else return E.left(`option \`${letter}' requires a value`);
        break;
      }
      continue;
    }
    operands.push(a);
  }
  return E.right({ options, operands });
}

/** Whether option `name` was given. */
export function hasOption(args: ParsedArgs, name: string): boolean {
  return args.options.some((o) => o.name === name);
}

/** How many times option `name` was given. */
export function countOption(args: ParsedArgs, name: string): number {
  return args.options.filter((o) => o.name === name).length;
}

/** The value of the last `name` option, if given. */
export function optionValue(args: ParsedArgs, name: string): string | undefined {
  let v: string | undefined;
  for (const o of args.options) if (o.name === name) v = o.value;
  return v;
}
