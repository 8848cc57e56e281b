/**
 * The console example's dom0: it builds the domains its boot module lists,
 * serves their consoles with the console daemon — optionally on host
 * sockets — and tears each domain down when it shuts down, powering off
 * when the last has gone.
 *
 * Each line a domU writes reaches Xen's console as
 * `[<name> +<virtual ns>] <line>`.
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { PathReporter } from "io-ts/lib/PathReporter.js";
import { SHUTDOWN, VIRQ, keyOf } from "@pvkit/abi";
import { ConsoleDaemon, Toolstack, buildDomain, createDomain } from "@pvkit/dom0";
import { kernelMain, orThrow } from "@pvkit/kernel";

/** The boot module: the domUs to build, and where the console sockets go (none without `socketDir`). */
export const ConsoleExampleConfig = t.intersection([
  t.type({ domains: t.array(t.type({ name: t.string, kernel: t.string, pages: t.number, cmdline: t.string })) }),
  t.partial({ socketDir: t.string }),
]);

/** The boot module, decoded. */
export type ConsoleExampleConfig = t.TypeOf<typeof ConsoleExampleConfig>;

export default kernelMain(async (k) => {
  const si = k.startInfo;
  const decoded = ConsoleExampleConfig.decode(JSON.parse(new TextDecoder().decode(k.memory.memory.read(Number(si.mod_start), Number(si.mod_len)))));
  if (E.isLeft(decoded)) throw new Error(`bad boot module: ${PathReporter.report(decoded).join("; ")}`);
  const config = decoded.right;
  const ts = new Toolstack(k);
  const consoles = new ConsoleDaemon(k, {
    ...(config.socketDir !== undefined && { socketDir: config.socketDir }),
    sink: (name, _domid, line, tNs) => void k.print(`[${name} +${tNs}ns] ${line}`),
    log: (message) => void k.print(`dom0: ${message}`),
  });

  const live = new Map<number, string>();
  for (const d of config.domains) {
    const domid = orThrow(createDomain(k, d));
    const built = buildDomain(k, domid, d);
    if (E.isLeft(built)) throw new Error(`building ${d.name}: ${built.left.message}`);
    const info = orThrow(consoles.connect(domid, d.name, built.right.consolePort));
    live.set(domid, d.name);
    if (info.socket !== undefined) await k.print(`dom0: console of ${d.name} at ${info.socket}`);
  }
  const domExc = orThrow(k.events.bindVirq(VIRQ.DOM_EXC));
  for (const [domid, name] of live) {
    orThrow(ts.unpause(domid));
    await k.print(`dom0: started ${name} as domain ${domid}`);
  }

  while (live.size > 0) {
    await k.events.wait(domExc);
    for (const [domid, name] of [...live]) {
      const info = ts.domainInfo(domid);
      const reason = E.isRight(info) ? Toolstack.shutdownReason(info.right) : undefined;
      if (reason === undefined) continue;
      consoles.disconnect(domid);
      orThrow(ts.destroy(domid));
      live.delete(domid);
      await k.print(`dom0: ${name} (domain ${domid}) shut down: ${keyOf(SHUTDOWN, reason) ?? reason}`);
    }
    if (consoles.failure !== undefined) throw new Error(`console sockets: ${consoles.failure.message}`);
  }
  consoles.close();
  await k.print("dom0: every domain has shut down");
});
