/**
 * The `xl` toolstack's configuration, read as Xen's own tools read it: the
 * xl.cfg file syntax and `xl create`'s command-line overrides
 * ({@link parseCfg}, {@link applyOverrides}), DISKSPECs
 * ({@link parseDiskSpec}) and vifspecs ({@link parseVifSpec}), and what a
 * configuration means to pvkit: the PV domain to build
 * ({@link decodeDomainConfig}, {@link parseDomainConfig}) and the libxl JSON
 * that `xl create -n` prints for it ({@link libxlDomainConfigJson},
 * {@link stringifyLibxlJson}).
 *
 * The parsers are pure: text in, values or errors out. On them stand the
 * `pvkit` host ({@link startHost}, configured by {@link parseHostConfig})
 * and the `xl` command line ({@link xlMain}, {@link pvkitMain}), which
 * talks to dom0's toolstack over the control socket
 * ({@link ControlClient}).
 *
 * ```ts
 * const r = parseDomainConfig(text, "web.cfg", { overrides: ["memory=256"] });
 * if (E.isLeft(r)) for (const e of r.left) console.error(e.message);
 * else process.stdout.write(stringifyLibxlJson(libxlDomainConfigJson(r.right.config)));
 * ```
 *
 * @packageDocumentation
 */
export * from "./xlcfg.js";
export * from "./diskspec.js";
export * from "./vifspec.js";
export * from "./domain-config.js";
export * from "./control-client.js";
export * from "./host-config.js";
export * from "./host.js";
export { xlMain, domainRef, xlHelp, XL_COMMANDS, type XlContext } from "./cli/xl.js";
export { pvkitMain, loadHostConfig, START_TIMEOUT_MS, type PvkitIo } from "./cli/pvkit.js";
export { CliError, usageError, processIo, type CliIo, type Input, type Output } from "./cli/io.js";
