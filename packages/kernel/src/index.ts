/**
 * The guest kernel runtime, in the role Mini-OS plays for Xen: boot from
 * `start_info`, typed hypercalls returning `Either` with named Xen errors,
 * event channels with the 2-level upcall, grant tables, timers, pages,
 * the console, the XenStore client and the xenbus driver framework.
 *
 * A kernel is a module whose default export is its entry; see
 * {@link kernelMain} and the guide "Writing a kernel".
 *
 * @packageDocumentation
 */
export * from "./hypercall.js";
export * from "./events.js";
export * from "./grants.js";
export * from "./memory.js";
export * from "./time.js";
export * from "./console.js";
export * from "./kernel.js";
export * from "./xenstore.js";
export * from "./xenstore-ring.js";
export * from "./xenbus.js";
export * from "./balloon.js";
