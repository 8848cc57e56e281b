import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const packages = readdirSync(new URL("./packages", import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the sources, so `npm test` needs no prior build.
    // Exact matches only: a subpath import (`@pvkit/kernel/xenstore-socket`) resolves through the package's exports.
    alias: packages.map((p) => ({
      find: new RegExp(`^@pvkit/${p}$`),
      replacement: fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url)),
    })),
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 30_000,
    pool: "forks",
  },
});
