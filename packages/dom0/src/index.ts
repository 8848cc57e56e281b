/**
 * The privileged kernel's libraries: xenstored, the console daemon
 * (xenconsoled), the back ends (blkback, netback) and the bridge, the
 * toolstack (domctl, sysctl and foreign memory, as libxenctrl), the domain
 * builder (as libxenguest), what libxl writes to XenStore, the domain
 * manager (libxl's role, {@link Libxl}) and the control socket `xl` talks to
 * ({@link ControlServer}).
 *
 * The dom0 kernel itself is the module `@pvkit/dom0/kernel`.
 *
 * @packageDocumentation
 */
export * from "./toolstack.js";
export * from "./builder.js";
export * from "./manifest.js";
export { dom0Main } from "./kernel.js";
export * from "./xenstore/index.js";
export * from "./xenstored.js";
export * from "./xs-domain.js";
export * from "./console/index.js";
export * from "./netback/index.js";
export * from "./blkback/index.js";
export type { Backends } from "./backends.js";
export { driverDomainMain, closeNetback } from "./netback/driver-domain.js";
export * from "./control-protocol.js";
export * from "./libxl.js";
export * from "./control.js";
