/**
 * Xen's public ABI for x86_64, in TypeScript: constants with Xen's numbers and
 * names, the byte layouts of the structs guests and the hypervisor share, and
 * the platform contract a guest kernel is given.
 *
 * Everything here is checked against `/usr/include/xen` by the conformance
 * test, so a page written with these layouts is read correctly by C code built
 * against Xen's headers.
 *
 * @packageDocumentation
 */
export * from "./constants.js";
export * from "./layout.js";
export * from "./errno.js";
export * from "./xen.js";
export * from "./arch-x86.js";
export * from "./event_channel.js";
export * from "./grant_table.js";
export * from "./sched.js";
export * from "./memory.js";
export * from "./vcpu.js";
export * from "./callback.js";
export * from "./version.js";
export * from "./domctl.js";
export * from "./sysctl.js";
export * from "./io/ring.js";
export * from "./io/blkif.js";
export * from "./io/netif.js";
export * from "./io/console.js";
export * from "./io/xs_wire.js";
export * from "./io/xenbus.js";
export * from "./platform.js";
export * from "./boot.js";
