/**
 * The privileged kernel's libraries: the toolstack (domctl, sysctl and
 * foreign memory, as libxenctrl), the domain builder (as libxenguest) and
 * the console relay. Issues to come add xenstored, the console daemon,
 * back ends and the bridge.
 *
 * The dom0 kernel itself is the module `@pvkit/dom0/kernel`.
 *
 * @packageDocumentation
 */
export * from "./toolstack.js";
export * from "./builder.js";
export * from "./console-relay.js";
export * from "./manifest.js";
export { dom0Main } from "./kernel.js";
export * from "./xenstore/index.js";
export * from "./xenstored.js";
export * from "./xs-domain.js";
