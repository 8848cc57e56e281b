/**
 * `io/netif.h`: the network device protocol between netfront and netback.
 *
 * Two rings per device. On the TX ring the front end offers frames to send:
 * each request grants a page holding `size` bytes at `offset`; a frame larger
 * than a slot continues in the next requests, flagged `NETTXF_more_data`, and
 * the first request's `size` is the whole frame's length. The back end answers
 * each request with its `id` and a `NETIF_RSP_*` status.
 *
 * On the RX ring the front end posts empty granted pages; with
 * `feature-rx-copy` the back end copies each received frame into them by
 * grant copy and answers with the `offset` and, in `status`, the byte count
 * (or a negative `NETIF_RSP_*` error).
 *
 * The XenStore keys of the handshake are in {@link NETIF_XENSTORE_KEYS}.
 *
 * @module
 */
import { constants } from "../constants.js";
import { bytes, i16, nested, struct, u16, u32, u8 } from "../layout.js";
import { sring } from "./ring.js";

/** Protocol limits and extra-info types (`XEN_NETIF_*`). */
export const XEN_NETIF = constants("io/netif.h", "XEN_NETIF_", {
  /** Slots a back end must accept for one frame. */
  NR_SLOTS_MIN: 18,
  /** Largest frame on the TX ring. */
  MAX_TX_SIZE: 0xffff,
  EXTRA_TYPE_NONE: 0,
  EXTRA_TYPE_GSO: 1,
  EXTRA_TYPE_MCAST_ADD: 2,
  EXTRA_TYPE_MCAST_DEL: 3,
  EXTRA_TYPE_HASH: 4,
  EXTRA_TYPE_MAX: 5,
  /** Another extra-info slot follows this one. */
  EXTRA_FLAG_MORE: 1 << 0,
  GSO_TYPE_NONE: 0,
  GSO_TYPE_TCPV4: 1,
  GSO_TYPE_TCPV6: 2,
});

/** `netif_tx_request.flags` bits (`NETTXF_*`). */
export const NETTXF = constants("io/netif.h", "NETTXF_", {
  /** The protocol checksum field is blank: the back end must fill it. */
  csum_blank: 1 << 0,
  /** The packet's checksum has been validated. */
  data_validated: 1 << 1,
  /** The frame continues in the next request. */
  more_data: 1 << 2,
  /** An extra-info slot follows. */
  extra_info: 1 << 3,
});

/** `netif_rx_response.flags` bits (`NETRXF_*`). */
export const NETRXF = constants("io/netif.h", "NETRXF_", {
  data_validated: 1 << 0,
  csum_blank: 1 << 1,
  /** The frame continues in the next response. */
  more_data: 1 << 2,
  extra_info: 1 << 3,
  gso_prefix: 1 << 4,
});

/** Response statuses (`NETIF_RSP_*`); an RX response's positive status is a byte count. */
export const NETIF_RSP = constants("io/netif.h", "NETIF_RSP_", {
  /** The frame was dropped (e.g. it failed validation). */
  DROPPED: -2,
  ERROR: -1,
  OKAY: 0,
  /** A response to an extra-info slot, which carries no status. */
  NULL: 1,
});

/** A TX request: `size` bytes at `offset` in the granted page `gref`. */
export const netif_tx_request = struct("struct netif_tx_request", 12, {
  gref: u32(0),
  offset: u16(4),
  flags: u16(6),
  id: u16(8),
  size: u16(10),
});

/** An extra-info slot following a request flagged `*_extra_info`. */
export const netif_extra_info = struct("struct netif_extra_info", 8, {
  type: u8(0),
  flags: u8(1),
  gso_size: u16(2, "u.gso.size"),
  gso_type: u8(4, "u.gso.type"),
  gso_features: u16(6, "u.gso.features"),
  mcast_addr: bytes(2, 6, "u.mcast.addr"),
  hash_type: u8(2, "u.hash.type"),
  hash_algorithm: u8(3, "u.hash.algorithm"),
  hash_value: bytes(4, 4, "u.hash.value"),
});

/** A TX response: the request's `id` and a status. */
export const netif_tx_response = struct("struct netif_tx_response", 4, {
  id: u16(0),
  status: i16(2),
});

/** An RX request: an empty page `gref` posted for the back end to fill. */
export const netif_rx_request = struct("struct netif_rx_request", 8, {
  id: u16(0),
  pad: u16(2),
  gref: u32(4),
});

/** An RX response: where the data starts, flags, and the byte count or error. */
export const netif_rx_response = struct("struct netif_rx_response", 8, {
  id: u16(0),
  offset: u16(2),
  flags: u16(4),
  status: i16(6),
});

/** One slot of the TX ring. */
export const netif_tx_sring_entry = struct("union netif_tx_sring_entry", 12, {
  req: nested(0, netif_tx_request),
  rsp: nested(0, netif_tx_response),
});

/** One slot of the RX ring. */
export const netif_rx_sring_entry = struct("union netif_rx_sring_entry", 8, {
  req: nested(0, netif_rx_request),
  rsp: nested(0, netif_rx_response),
});

/** The TX shared ring (`struct netif_tx_sring`). */
export const netif_tx_sring = sring("struct netif_tx_sring", netif_tx_sring_entry);

/** The RX shared ring (`struct netif_rx_sring`). */
export const netif_rx_sring = sring("struct netif_rx_sring", netif_rx_sring_entry);

/**
 * XenStore keys of the netif handshake, as `io/netif.h` documents them. The
 * back end writes under `backend/vif/<domid>/<devid>`, the front end under
 * `device/vif/<devid>`.
 */
export const NETIF_XENSTORE_KEYS = {
  /** Both: the interface's MAC address, "aa:bb:cc:dd:ee:ff". */
  mac: "mac",
  /** Backend: 1 if it can fill RX buffers by grant copy. */
  featureRxCopy: "feature-rx-copy",
  /** Frontend: 1 to ask for RX by grant copy. */
  requestRxCopy: "request-rx-copy",
  /** Frontend: 1 if it notifies the back end when it posts RX buffers. */
  featureRxNotify: "feature-rx-notify",
  /** Both: 1 if frames may span several slots (`NETTXF_more_data`). */
  featureSg: "feature-sg",
  /** Both: 1 if TCPv4 segmentation offload is supported. */
  featureGsoTcpv4: "feature-gso-tcpv4",
  /** Both: 1 if IPv4 checksum offload is turned off. */
  featureNoCsumOffload: "feature-no-csum-offload",
  /** Backend: 1 if TX and RX may use separate event channels. */
  featureSplitEventChannels: "feature-split-event-channels",
  /** Frontend: grant ref of the TX ring page. */
  txRingRef: "tx-ring-ref",
  /** Frontend: grant ref of the RX ring page. */
  rxRingRef: "rx-ring-ref",
  /** Frontend: the (shared) event channel port. */
  eventChannel: "event-channel",
  /** Frontend: the TX event channel with split channels. */
  eventChannelTx: "event-channel-tx",
  /** Frontend: the RX event channel with split channels. */
  eventChannelRx: "event-channel-rx",
  /** Backend: the bridge (or script) the interface is attached to. */
  bridge: "bridge",
} as const;
