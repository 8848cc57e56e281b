/**
 * Command-line options as xl reads them (GNU getopt_long): option strings,
 * long options, values attached or apart, combined flags, permutation,
 * `--`, and the errors that name the bad option.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { getopt, type OptionSpec, type ParsedArgs } from "../src/cli/args.js";

const SCHED: OptionSpec = { short: "d:w:c:p:t:r:m:s", long: { domain: { short: "d", arg: true }, weight: { short: "w", arg: true }, schedparam: { short: "s", arg: false } } };
const CREATE: OptionSpec = { short: "Fnqf:pcdeVA", long: { dryrun: { short: "n", arg: false }, defconfig: { short: "f", arg: true } } };

const ok = (argv: string[], spec: OptionSpec): ParsedArgs => {
  const r = getopt(argv, spec);
  if (E.isLeft(r)) throw new Error(r.left);
  return r.right;
};

describe("getopt", () => {
  it.each<[string[], OptionSpec, ParsedArgs]>([
    [["-d", "web", "-w", "512"], SCHED, { options: [{ name: "d", value: "web" }, { name: "w", value: "512" }], operands: [] }],
    [["-dweb", "-w512"], SCHED, { options: [{ name: "d", value: "web" }, { name: "w", value: "512" }], operands: [] }],
    [["--domain=web", "--weight", "512"], SCHED, { options: [{ name: "d", value: "web" }, { name: "w", value: "512" }], operands: [] }],
    [["-s"], SCHED, { options: [{ name: "s" }], operands: [] }],
    // Options after operands, as GNU getopt permutes them: `xl create web.cfg -c`.
    [["web.cfg", "-c", "memory=64"], CREATE, { options: [{ name: "c" }], operands: ["web.cfg", "memory=64"] }],
    [["-cp", "web.cfg"], CREATE, { options: [{ name: "c" }, { name: "p" }], operands: ["web.cfg"] }],
    [["-qf", "web.cfg"], CREATE, { options: [{ name: "q" }, { name: "f", value: "web.cfg" }], operands: [] }],
    [["--dryrun", "web.cfg"], CREATE, { options: [{ name: "n" }], operands: ["web.cfg"] }],
    [["--", "-c", "x"], CREATE, { options: [], operands: ["-c", "x"] }],
    [["-"], CREATE, { options: [], operands: ["-"] }],
  ])("%j", (argv, spec, want) => {
    expect(ok(argv, spec)).toEqual(want);
  });

  it.each<[string[], OptionSpec, string]>([
    [["-x"], SCHED, "option `x' not supported."],
    [["-dweb", "-Z"], SCHED, "option `Z' not supported."],
    [["--cap=5"], SCHED, "option `--cap' not supported."],
    [["-d"], SCHED, "option `d' requires a value"],
    [["--domain"], SCHED, "option `--domain' requires a value"],
    [["--schedparam=yes"], SCHED, 'option `--schedparam\' takes no value (given "yes")'],
  ])("refuses %j", (argv, spec, message) => {
    expect(getopt(argv, spec)).toEqual(E.left(message));
  });
});
