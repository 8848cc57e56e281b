/**
 * Ring 0: machine memory, domains and vCPUs, the hypercall table, event
 * channels, grant tables, memory reservations, scheduling, time, the
 * engines that drive it all, and the trace.
 *
 * A guest never imports this package: it is handed a platform
 * (`@pvkit/abi`'s `Platform`) whose hypercall entry leads here.
 *
 * @packageDocumentation
 */
export * from "./machine.js";
export * from "./domain.js";
export * from "./p2m.js";
export * from "./guest-memory.js";
export * from "./hypercall.js";
export * from "./hypervisor.js";
export * from "./trace.js";
export * from "./invariants.js";
export * from "./credit.js";
export * from "./engine.js";
export * from "./sched-ops.js";
export * from "./dom0-build.js";
export * from "./grant-table.js";
export { consoleInput } from "./misc-ops.js";
export * from "./event-channel.js";
