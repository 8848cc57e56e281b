/**
 * The console daemon (xenconsoled's role): the data path over a guest's
 * console page ({@link ConsoleRing}), lines and history ({@link LineAssembler},
 * {@link ConsoleHistory}), the daemon ({@link ConsoleDaemon}) and its host
 * sockets.
 *
 * @module
 */
export * from "./ring.js";
export * from "./log.js";
export * from "./env.js";
export * from "./daemon.js";
export { MAX_CLIENT_BACKLOG, MAX_PENDING_INPUT } from "./sockets.js";
