/**
 * The XenStore daemon's core, as pure modules: paths, permissions, quotas,
 * the persistent store, transactions, watches, wire framing, and the
 * daemon that ties them to connections. No I/O, timers or hypercalls: a
 * transport feeds bytes in and gets bytes out.
 *
 * @module
 */
export * from "./wire.js";
export * from "./path.js";
export * from "./perms.js";
export * from "./quota.js";
export * from "./store.js";
export * from "./transaction.js";
export * from "./watch.js";
export * from "./daemon.js";
