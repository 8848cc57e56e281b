/**
 * The host configuration `pvkit up --config host.json` reads: the machine
 * the hypervisor models and what dom0 gets at boot.
 *
 * ```json
 * {
 *   "memory": 256,
 *   "pcpus": 2,
 *   "dom0": { "memory": 16 },
 *   "bridges": [{ "name": "xenbr0", "pcap": "xenbr0.pcap" }],
 *   "seed": 1
 * }
 * ```
 *
 * | key | meaning | default |
 * | --- | --- | --- |
 * | `memory` | machine memory, MiB | 256 |
 * | `pcpus` | simulated physical CPUs | 2 |
 * | `dom0.memory` | dom0's memory, MiB (less than `memory`) | 16 |
 * | `dom0.kernel` | dom0's kernel module: a path (relative to the file) or package specifier | `@pvkit/dom0/kernel` |
 * | `bridges` | the host bridges dom0's netback serves, each `{ name, pcap? }` (`pcap`: a capture file, relative to the file) | `[{ "name": "xenbr0" }]` |
 * | `seed` | the engine's seed (0 to 2³²-1) | 1 |
 * | `shutdownTimeout` | seconds dom0 waits, when the host stops, for guests to power off before destroying them (0 to 3600) | 30 |
 *
 * Every key is optional. Decoding is io-ts, and every problem is reported
 * at once, each naming its file, key and value:
 * `host.json: memory: expected a positive integer (MiB), got "lots"`. A key
 * pvkit does not know is an error, never silently dropped.
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { DEFAULT_SHUTDOWN_TIMEOUT_S } from "@pvkit/dom0";

/** A host bridge: its name, and a pcap file that records its traffic. */
export interface HostBridge {
  /** The bridge's name (`xenbr0`). */
  readonly name: string;
  /** A capture file of what crosses it (absolute once decoded). */
  readonly pcap?: string;
}

/** dom0 as the host boots it. */
export interface HostDom0 {
  /** Its memory, MiB. */
  readonly memory: number;
  /** Its kernel: a module URL, path or package specifier; default `@pvkit/dom0/kernel`. */
  readonly kernel?: string;
}

/** A decoded host configuration, every default applied. */
export interface HostConfig {
  /** Machine memory, MiB. */
  readonly memory: number;
  /** Simulated physical CPUs. */
  readonly pcpus: number;
  /** dom0. */
  readonly dom0: HostDom0;
  /** The host bridges. */
  readonly bridges: readonly HostBridge[];
  /** The engine's seed. */
  readonly seed: number;
  /** Seconds dom0 waits, when the host stops, for its guests to power off before destroying them. */
  readonly shutdownTimeout: number;
}

/** The configuration of a host started without `--config`. */
export const DEFAULT_HOST_CONFIG: HostConfig = { memory: 256, pcpus: 2, dom0: { memory: 16 }, bridges: [{ name: "xenbr0" }], seed: 1, shutdownTimeout: DEFAULT_SHUTDOWN_TIMEOUT_S };

/** Most machine memory a host may have, MiB (one `SharedArrayBuffer` holds it). */
export const MAX_HOST_MEMORY_MIB = 16384;
/** Most simulated physical CPUs. */
export const MAX_HOST_PCPUS = 64;

const show = (u: unknown): string => {
  if (u === undefined) return "nothing";
  const s = JSON.stringify(u);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** An integer in `[min, max]`, with a message saying what was expected. */
const int = (min: number, max: number, expected: string) =>
  new t.Type<number, number, unknown>(
    "Integer",
    (u): u is number => typeof u === "number" && Number.isInteger(u) && u >= min && u <= max,
    (u, c) => (typeof u === "number" && Number.isInteger(u) && u >= min && u <= max ? t.success(u) : t.failure(u, c, `expected ${expected}, got ${show(u)}`)),
    t.identity,
  );

const BRIDGE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const BridgeName = new t.Type<string, string, unknown>(
  "BridgeName",
  (u): u is string => typeof u === "string" && BRIDGE_NAME.test(u),
  (u, c) => (typeof u === "string" && BRIDGE_NAME.test(u) ? t.success(u) : t.failure(u, c, `expected a bridge name (1 to 64 letters, digits, '_', '.', '-'), got ${show(u)}`)),
  t.identity,
);

const Path = (what: string) =>
  new t.Type<string, string, unknown>(
    "Path",
    (u): u is string => typeof u === "string" && u !== "",
    (u, c) => (typeof u === "string" && u !== "" ? t.success(u) : t.failure(u, c, `expected ${what}, got ${show(u)}`)),
    t.identity,
  );

/**
 * An object of `required` and `optional` properties that refuses keys it
 * does not know (io-ts's own `type` ignores them): each unknown or missing
 * key is a failure at its own path.
 */
function strictObject<R extends t.Props, O extends t.Props>(required: R, optional: O, expected: string) {
  type A = t.TypeOfProps<R> & t.TypeOfPartialProps<O>;
  const props: t.Props = { ...required, ...optional };
  const known = Object.keys(props);
  return new t.Type<A, A, unknown>(
    "StrictObject",
    (u): u is A => typeof u === "object" && u !== null && !Array.isArray(u),
    (u, c) => {
      if (typeof u !== "object" || u === null || Array.isArray(u)) return t.failure(u, c, `expected ${expected}, got ${show(u)}`);
      const record = u as Record<string, unknown>;
      const errors: t.ValidationError[] = [];
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(record)) {
        if (!known.includes(key)) errors.push({ value: record[key], context: t.appendContext(c, key, t.unknown, record[key]), message: `unknown key (pvkit reads ${known.join(", ")})` });
      }
      for (const key of known) {
        const codec = props[key]!;
        if (record[key] === undefined) {
          if (key in required) errors.push({ value: undefined, context: t.appendContext(c, key, codec, undefined), message: `missing (expected ${expected})` });
          continue;
        }
        const r = codec.validate(record[key], t.appendContext(c, key, codec, record[key]));
        if (E.isLeft(r)) errors.push(...r.left);
        else out[key] = r.right;
      }
      return errors.length > 0 ? t.failures(errors) : t.success(out as A);
    },
    t.identity,
  );
}

/** A list of `item`s. */
function list<A>(item: t.Type<A, A, unknown>, expected: string) {
  return new t.Type<A[], A[], unknown>(
    "List",
    (u): u is A[] => Array.isArray(u),
    (u, c) => {
      if (!Array.isArray(u)) return t.failure(u, c, `expected ${expected}, got ${show(u)}`);
      const errors: t.ValidationError[] = [];
      const out: A[] = [];
      u.forEach((v, i) => {
        const r = item.validate(v, t.appendContext(c, String(i), item, v));
        if (E.isLeft(r)) errors.push(...r.left);
        else out.push(r.right);
      });
      return errors.length > 0 ? t.failures(errors) : t.success(out);
    },
    t.identity,
  );
}

const BridgeCodec = strictObject({ name: BridgeName }, { pcap: Path("a capture file path") }, "a bridge { name, pcap? }");

/** A host configuration file as written: every key optional. */
export interface HostConfigFile {
  /** Machine memory, MiB. */
  readonly memory?: number;
  /** Simulated physical CPUs. */
  readonly pcpus?: number;
  /** dom0's memory (MiB) and kernel. */
  readonly dom0?: { readonly memory?: number; readonly kernel?: string };
  /** The host bridges. */
  readonly bridges?: HostBridge[];
  /** The engine's seed. */
  readonly seed?: number;
  /** Seconds to wait for guests to power off when the host stops. */
  readonly shutdownTimeout?: number;
}

/** The io-ts codec of a host configuration file, before defaults: every key optional, unknown keys refused. */
export const HostConfigCodec: t.Type<HostConfigFile, HostConfigFile, unknown> = strictObject(
  {},
  {
    memory: int(1, MAX_HOST_MEMORY_MIB, `a positive integer (MiB), at most ${MAX_HOST_MEMORY_MIB}`),
    pcpus: int(1, MAX_HOST_PCPUS, `a positive integer (pCPUs), at most ${MAX_HOST_PCPUS}`),
    dom0: strictObject({}, { memory: int(1, MAX_HOST_MEMORY_MIB, "a positive integer (MiB)"), kernel: Path("a kernel module path or package specifier") }, "an object { memory?, kernel? }"),
    bridges: list(BridgeCodec, "a list of bridges [{ name, pcap? }]"),
    seed: int(0, 0xffffffff, "an integer from 0 to 4294967295"),
    shutdownTimeout: int(0, 3600, "a number of seconds from 0 to 3600"),
  },
  "an object { memory, pcpus, dom0, bridges, seed, shutdownTimeout }",
);

/** A validation error as a line: `source: dom0.memory: message`. */
function report(source: string, e: t.ValidationError): string {
  const path = e.context
    .slice(1)
    .map((c) => c.key)
    .reduce((acc, key) => (/^\d+$/.test(key) ? `${acc}[${key}]` : acc === "" ? key : `${acc}.${key}`), "");
  return `${source}: ${path === "" ? "" : `${path}: `}${e.message ?? `invalid value ${show(e.value)}`}`;
}

/** A kernel or capture path in the file, made absolute against the file's directory (a package specifier or URL stays). */
function fromFile(baseDir: string, p: string, kind: "kernel" | "file"): string {
  if (isAbsolute(p) || /^[a-z][a-z0-9+.-]*:/i.test(p)) return p;
  // A package specifier (`@pvkit/dom0/kernel`) stays; a `.js`/`.mjs` file name is a path.
  if (kind === "kernel" && !p.startsWith("./") && !p.startsWith("../") && (p.startsWith("@") || !/\.m?js$/.test(p))) return p;
  return resolve(baseDir, p);
}

/**
 * Decodes a host configuration: JSON, then its shape (io-ts), then what
 * the values mean together (dom0 must leave room for guests; bridge names
 * are unique). `source` names the file in every message; relative paths in
 * it are taken from `baseDir` (default: the file's directory). Left: every
 * problem, one line each.
 */
export function parseHostConfig(text: string, source: string, baseDir: string = dirname(resolve(source))): E.Either<string[], HostConfig> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return E.left([`${source}: not JSON: ${(e as Error).message}`]);
  }
  const decoded = HostConfigCodec.decode(json);
  if (E.isLeft(decoded)) return E.left(decoded.left.map((e) => report(source, e)));
  const v = decoded.right;
  const d = DEFAULT_HOST_CONFIG;
  const memory = v.memory ?? d.memory;
  const dom0Memory = v.dom0?.memory ?? d.dom0.memory;
  const problems: string[] = [];
  if (dom0Memory >= memory) {
    const where = v.dom0?.memory !== undefined ? "dom0.memory" : "memory";
    problems.push(`${source}: ${where}: dom0's ${dom0Memory} MiB leaves nothing for guests in a machine of ${memory} MiB (dom0.memory must be less than memory)`);
  }
  const bridges = (v.bridges ?? d.bridges).map((b) => ({ name: b.name, ...(b.pcap === undefined ? {} : { pcap: fromFile(baseDir, b.pcap, "file") }) }));
  const seen = new Set<string>();
  bridges.forEach((b, i) => {
    if (seen.has(b.name)) problems.push(`${source}: bridges[${i}].name: bridge "${b.name}" is named twice`);
    seen.add(b.name);
  });
  if (problems.length > 0) return E.left(problems);
  const kernel = v.dom0?.kernel;
  return E.right({
    memory,
    pcpus: v.pcpus ?? d.pcpus,
    dom0: { memory: dom0Memory, ...(kernel === undefined ? {} : { kernel: fromFile(baseDir, kernel, "kernel") }) },
    bridges,
    seed: v.seed ?? d.seed,
    shutdownTimeout: v.shutdownTimeout ?? d.shutdownTimeout,
  });
}
