// `npm run example -- <name>`: runs examples/<name> (after `tsc -b`), e.g. hello, evtchn-pingpong, grant-share, ring-demo.
import { existsSync, readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";

const name = process.argv[2];
const known = readdirSync(new URL("../examples/dist", import.meta.url)).filter((d) => existsSync(new URL(`../examples/dist/${d}/main.js`, import.meta.url)));
if (name === undefined || !known.includes(name)) {
  console.error(`usage: npm run example -- <name>, one of: ${known.join(", ")}`);
  process.exit(2);
}
const r = spawnSync(process.execPath, [new URL(`../examples/dist/${name}/main.js`, import.meta.url).pathname], { stdio: "inherit" });
process.exit(r.status ?? 1);
