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
 * Everything here is pure: text in, values or errors out. The `pvkit` host
 * and the `xl` command line come with their issue.
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
