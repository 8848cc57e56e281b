/**
 * `event_channel.h`: the operations of `__HYPERVISOR_event_channel_op`, the
 * status codes of a port, the argument structs of every operation, and the
 * constants of the 2-level and FIFO event ABIs.
 *
 * An event channel is a port in one domain that, when signalled, sets a
 * pending bit and may upcall a vCPU. Ports are connected to another domain's
 * port (interdomain), to a virtual IRQ, to a physical IRQ, or to another vCPU
 * of the same domain (IPI).
 *
 * @module
 */
import { constants } from "./constants.js";
import { array, bytes, struct, u16, u32, u64, u8 } from "./layout.js";

/**
 * Commands of `__HYPERVISOR_event_channel_op` (`EVTCHNOP_*`). Each takes a
 * pointer to the struct of the same name (`EVTCHNOP.send` takes an
 * {@link evtchn_send}).
 */
export const EVTCHNOP = constants("event_channel.h", "EVTCHNOP_", {
  /** Connect a fresh local port to a remote domain's unbound port offered to us. */
  bind_interdomain: 0,
  /** Bind a virtual IRQ to a fresh port on a given vCPU. */
  bind_virq: 1,
  /** Bind a physical IRQ to a fresh port (privileged or delegated domains). */
  bind_pirq: 2,
  /** Close a port; an interdomain peer goes back to unbound. */
  close: 3,
  /** Signal the other end of an interdomain or IPI port. */
  send: 4,
  /** Report the state of a port of this domain (or any domain, if privileged). */
  status: 5,
  /** Allocate a port that a named remote domain may later bind to. */
  alloc_unbound: 6,
  /** Allocate a port for inter-processor interrupts to a vCPU of this domain. */
  bind_ipi: 7,
  /** Change the vCPU that is notified when a port becomes pending. */
  bind_vcpu: 8,
  /** Clear a port's mask bit and re-deliver it if it was pending. */
  unmask: 9,
  /** Close all ports of a domain. */
  reset: 10,
  /** Switch to the FIFO event ABI by registering a vCPU's control block. */
  init_control: 11,
  /** Add a page of event words to the FIFO event array. */
  expand_array: 12,
  /** Set the FIFO priority of a port. */
  set_priority: 13,
});

/** `evtchn_status.status` values (`EVTCHNSTAT_*`): what a port is bound to. */
export const EVTCHNSTAT = constants("event_channel.h", "EVTCHNSTAT_", {
  /** Not in use. */
  closed: 0,
  /** Waiting for a remote domain to bind to it. */
  unbound: 1,
  /** Connected to a port of another domain. */
  interdomain: 2,
  /** Bound to a physical IRQ line. */
  pirq: 3,
  /** Bound to a virtual IRQ. */
  virq: 4,
  /** Bound to a vCPU of this domain for IPIs. */
  ipi: 5,
});

/** `evtchn_bind_pirq.flags` (`BIND_PIRQ__*`). */
export const BIND_PIRQ = constants("event_channel.h", "BIND_PIRQ__", {
  /** The IRQ may be shared with other domains. */
  WILL_SHARE: 1,
});

/**
 * Ports available with the 2-level event ABI: one bit per port in the 64 words
 * of 64 bits of `shared_info.evtchn_pending`, so 4096 on x86_64.
 */
export const EVTCHN_2L_NR_CHANNELS = 4096;

/**
 * Constants of the FIFO event ABI (`EVTCHN_FIFO_*`). Priorities run from 0
 * (highest) to 15 (lowest). `PENDING`, `MASKED`, `LINKED` and `BUSY` are bit
 * numbers in a 32-bit event word whose low `LINK_BITS` bits link to the next
 * port of the queue.
 */
export const EVTCHN_FIFO = constants("event_channel.h", "EVTCHN_FIFO_", {
  PRIORITY_MAX: 0,
  PRIORITY_DEFAULT: 7,
  PRIORITY_MIN: 15,
  MAX_QUEUES: 16,
  PENDING: 31,
  MASKED: 30,
  LINKED: 29,
  BUSY: 28,
  LINK_BITS: 17,
  LINK_MASK: 0x1ffff,
  NR_CHANNELS: 0x20000,
});

/**
 * `EVTCHNOP_alloc_unbound`: allocate a port in `dom` (`DOMID_SELF`, or any
 * domain for a privileged caller) that only `remote_dom` may bind to. Returns
 * the new port in `port`.
 */
export const evtchn_alloc_unbound = struct("struct evtchn_alloc_unbound", 8, {
  dom: u16(0),
  remote_dom: u16(2),
  port: u32(4),
});

/**
 * `EVTCHNOP_bind_interdomain`: connect a fresh local port to `remote_port` of
 * `remote_dom`, which must be unbound and offered to the caller. Returns the
 * local port in `local_port`.
 */
export const evtchn_bind_interdomain = struct("struct evtchn_bind_interdomain", 12, {
  remote_dom: u16(0),
  remote_port: u32(4),
  local_port: u32(8),
});

/**
 * `EVTCHNOP_bind_virq`: bind virtual IRQ `virq` (a `VIRQ` value) to a
 * fresh port delivered to `vcpu`. A per-vCPU VIRQ may be bound once per vCPU,
 * a global one once per domain. Returns the port in `port`.
 */
export const evtchn_bind_virq = struct("struct evtchn_bind_virq", 12, {
  virq: u32(0),
  vcpu: u32(4),
  port: u32(8),
});

/**
 * `EVTCHNOP_bind_pirq`: bind physical IRQ `pirq` to a fresh port, possibly
 * shared (`BIND_PIRQ.WILL_SHARE`). Returns the port in `port`.
 */
export const evtchn_bind_pirq = struct("struct evtchn_bind_pirq", 12, {
  pirq: u32(0),
  flags: u32(4),
  port: u32(8),
});

/**
 * `EVTCHNOP_bind_ipi`: allocate a port that, when sent on by this domain,
 * notifies its `vcpu`. Returns the port in `port`.
 */
export const evtchn_bind_ipi = struct("struct evtchn_bind_ipi", 8, {
  vcpu: u32(0),
  port: u32(4),
});

/**
 * `EVTCHNOP_close`: close `port` of the caller. The remote end of an
 * interdomain channel reverts to unbound and may be bound again.
 */
export const evtchn_close = struct("struct evtchn_close", 4, {
  port: u32(0),
});

/** `EVTCHNOP_send`: notify the other end of `port` (interdomain or IPI). */
export const evtchn_send = struct("struct evtchn_send", 4, {
  port: u32(0),
});

/**
 * `EVTCHNOP_status`: the state of `port` in `dom` ({@link EVTCHNSTAT} in
 * `status`, the notified vCPU in `vcpu`). The rest depends on the status: the
 * domain allowed to bind an unbound port, the peer of an interdomain port, or
 * the IRQ number of a pirq or virq port. Only a privileged caller may ask
 * about a domain other than itself.
 */
export const evtchn_status = struct("struct evtchn_status", 24, {
  dom: u16(0),
  port: u32(4),
  status: u32(8),
  vcpu: u32(12),
  unbound_dom: u16(16, "u.unbound.dom"),
  interdomain_dom: u16(16, "u.interdomain.dom"),
  interdomain_port: u32(20, "u.interdomain.port"),
  pirq: u32(16, "u.pirq"),
  virq: u32(16, "u.virq"),
});

/**
 * `EVTCHNOP_bind_vcpu`: notify `vcpu` instead when `port` becomes pending.
 * Works for interdomain, unbound, global-VIRQ and pirq ports; per-vCPU VIRQs
 * and IPIs stay where they were bound.
 */
export const evtchn_bind_vcpu = struct("struct evtchn_bind_vcpu", 8, {
  port: u32(0),
  vcpu: u32(4),
});

/**
 * `EVTCHNOP_unmask`: clear the mask bit of `port` and, if it is pending,
 * raise the upcall as if it had just been sent.
 */
export const evtchn_unmask = struct("struct evtchn_unmask", 4, {
  port: u32(0),
});

/**
 * `EVTCHNOP_reset`: close every port of `dom` (`DOMID_SELF`, or any domain
 * for a privileged caller), as when a domain is rebuilt in place.
 */
export const evtchn_reset = struct("struct evtchn_reset", 2, {
  dom: u16(0),
});

/**
 * `EVTCHNOP_init_control`: register the FIFO control block of `vcpu`, at
 * byte `offset` of frame `control_gfn`; the first call switches the domain to
 * the FIFO ABI. Returns the number of link bits in `link_bits`.
 */
export const evtchn_init_control = struct("struct evtchn_init_control", 24, {
  control_gfn: u64(0),
  offset: u32(8),
  vcpu: u32(12),
  link_bits: u8(16),
  _pad: bytes(17, 7),
});

/** `EVTCHNOP_expand_array`: add frame `array_gfn` to the FIFO event array. */
export const evtchn_expand_array = struct("struct evtchn_expand_array", 8, {
  array_gfn: u64(0),
});

/** `EVTCHNOP_set_priority`: move `port` to FIFO queue `priority` (0 highest, 15 lowest). */
export const evtchn_set_priority = struct("struct evtchn_set_priority", 8, {
  port: u32(0),
  priority: u32(4),
});

/**
 * The argument of the old `__HYPERVISOR_event_channel_op_compat` hypercall: a
 * command and the union of the per-command structs (`u`, at offset 4).
 */
export const evtchn_op = struct("struct evtchn_op", 28, {
  cmd: u32(0),
  u: bytes(4, 24, "u"),
});

/**
 * The per-vCPU control block of the FIFO ABI: a bit per queue in `ready`, and
 * the head port of each of the 16 priority queues.
 */
export const evtchn_fifo_control_block = struct("struct evtchn_fifo_control_block", 72, {
  ready: u32(0),
  _rsvd: u32(4),
  head: array(8, 16, u32(0)),
});
