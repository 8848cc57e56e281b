/**
 * Example tests run the built examples (`tsc -b` output), because the kernels
 * are loaded as modules by URL, as the engine loads them on a real host.
 * `npm test` builds first; a bare `vitest` run without a build skips them
 * (and under CI, where they must run, fails).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** True when the examples are built. */
export const examplesBuilt = existsSync(fileURLToPath(new URL("./dist/support.js", import.meta.url)));

/** Whether to skip the built-example tests. */
export const skipUnbuilt = !examplesBuilt && !process.env["CI"];
