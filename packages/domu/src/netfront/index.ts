/**
 * Netfront: the guest's side of Xen's network split driver — the
 * {@link Netfront} device (xenbus negotiation, and send/receive of Ethernet
 * frames for guest code) over a {@link NetfrontDataPath} (the TX and RX
 * rings of `io/netif.h`).
 *
 * @module
 */
export * from "./datapath.js";
export * from "./device.js";
