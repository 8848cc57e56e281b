/**
 * The `io/ring.h` protocol and the console and XenStore byte rings, over any
 * pages.
 *
 * The protocol takes memory it is given, moves indexes and copies entries. It
 * never allocates pages, grants them or sends events: pushes and final checks
 * return whether the peer must be notified, and the caller acts. That keeps
 * it usable from a guest kernel, a dom0 back end, a test or a C interop
 * harness alike.
 *
 * @packageDocumentation
 */
export * from "./pages.js";
export * from "./shared-ring.js";
export * from "./byte-ring.js";
