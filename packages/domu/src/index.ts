/**
 * The unprivileged kernel: front ends and the application entry. The split
 * drivers come with their issue; for now it carries the first domU kernel,
 * `@pvkit/domu/hello`.
 *
 * @packageDocumentation
 */
export { hello } from "./hello.js";
export * from "./net/index.js";
export * from "./netfront/index.js";
export * from "./blkfront/index.js";
export * from "./hotplug.js";
