/**
 * Scheduling and time hypercalls: `sched_op`, `set_timer_op`, `vcpu_op`.
 *
 * A vCPU gives up its pCPU three ways: `SCHEDOP_yield` (stay runnable, let
 * others run), `SCHEDOP_block` (sleep until an event; it also re-enables
 * event upcalls, and returns at once if one is already waiting) and
 * `SCHEDOP_poll` (sleep until one of the given ports is pending, even a
 * masked one, or a timeout). The hypercall returns immediately; the engine
 * takes the vCPU off its pCPU and runs it again when it is woken.
 *
 * Timers: one single-shot timer per vCPU (`set_timer_op` or
 * `VCPUOP_set_singleshot_timer`, an absolute system time in ns) and one
 * periodic timer (`VCPUOP_set_periodic_timer`, at least 1 ms); each raises
 * `VIRQ_TIMER` on its vCPU. Watchdogs (`SCHEDOP_watchdog`) shut their domain
 * down with `SHUTDOWN_watchdog` unless re-armed in time.
 *
 * @module
 */
import {
  RUNSTATE,
  SCHEDOP,
  SHUTDOWN,
  VCPUOP,
  VCPU_SSHOTTMR,
  VIRQ,
  XEN_ERRNO,
  sched_poll,
  sched_remote_shutdown,
  sched_shutdown,
  sched_watchdog,
  vcpu_info,
  vcpu_runstate_info,
  vcpu_set_periodic_timer,
  vcpu_set_singleshot_timer,
  zeroStruct,
} from "@pvkit/abi";
import { copyFromGuest, readGuestStruct, u64ToNumber, writeGuestStruct } from "./guest-memory.js";
import type { ShutdownReason } from "./domain.js";
import { localEventsPending, portState, sendVirq } from "./event-channel.js";
import type { HypercallContext } from "./hypercall.js";

const { EINVAL, EFAULT, ENOSYS, ESRCH, EPERM, ENOENT, ETIME, ENOSPC } = XEN_ERRNO;

/** Most ports one `SCHEDOP_poll` may wait on ("fairly arbitrary", says Xen). */
export const POLL_MAX_PORTS = 128;

/** Watchdog timers per domain (`NR_DOMAIN_WATCHDOG_TIMERS`). */
export const NR_DOMAIN_WATCHDOG_TIMERS = 2;

/** Longest periodic timer period accepted: Xen's `STIME_DELTA_MAX` is larger, pvkit's clock is a safe integer of ns. */
const STIME_DELTA_MAX = Number.MAX_SAFE_INTEGER;

const MILLISECOND = 1_000_000;
const SECOND = 1_000_000_000;

/** `__HYPERVISOR_sched_op(cmd, arg)`. */
export function schedOp(ctx: HypercallContext, cmd: number, arg: number): number {
  const { hv, domain: d, vcpu: v } = ctx;
  switch (cmd) {
    case SCHEDOP.yield:
      hv.hooks.deschedule(v);
      return 0;

    case SCHEDOP.block: {
      // Blocking re-enables event delivery first, so a guest cannot sleep with upcalls masked.
      const info = hv.vcpuInfoView(v);
      if (info !== undefined) vcpu_info.fields.evtchn_upcall_mask.set(info, 0, 0);
      hv.block(v);
      return 0;
    }

    case SCHEDOP.shutdown: {
      const s = readGuestStruct(hv.machine, d, arg, sched_shutdown);
      if (s === undefined) return -EFAULT;
      const reason = sched_shutdown.fields.reason.get(s, 0);
      if (reason > SHUTDOWN.MAX) return -EINVAL;
      hv.shutdown(d, reason as ShutdownReason);
      return 0;
    }

    case SCHEDOP.remote_shutdown: {
      const s = readGuestStruct(hv.machine, d, arg, sched_remote_shutdown);
      if (s === undefined) return -EFAULT;
      const target = hv.domains.get(sched_remote_shutdown.fields.domain_id.get(s, 0));
      if (target === undefined || target.dead) return -ESRCH;
      // Xen's xsm_schedop_shutdown is XSM_DM_PRIV: not even on itself does a domU pass.
      if (!hv.allows(d, "sched:remote_shutdown", "dm_priv", target)) return -EPERM;
      const reason = sched_remote_shutdown.fields.reason.get(s, 0);
      if (reason > SHUTDOWN.MAX) return -EINVAL;
      hv.shutdown(target, reason as ShutdownReason);
      return 0;
    }

    case SCHEDOP.poll:
      return poll(ctx, arg);

    case SCHEDOP.watchdog: {
      const s = readGuestStruct(hv.machine, d, arg, sched_watchdog);
      if (s === undefined) return -EFAULT;
      return watchdog(ctx, sched_watchdog.fields.id.get(s, 0), sched_watchdog.fields.timeout.get(s, 0));
    }

    default:
      return -ENOSYS;
  }
}

/**
 * `SCHEDOP_poll`: block until one of `ports` is pending or the absolute
 * `timeout` passes (0: no timeout). As Xen's `do_poll`: returns at once if an
 * event is already deliverable; else checks the ports in order
 * (`evtchn_port_poll`), answering `-EINVAL` at a port that is not valid or
 * not in use (closed, or the reserved port 0) and returning at once at one
 * already pending, before any later port is looked at.
 */
function poll(ctx: HypercallContext, arg: number): number {
  const { hv, domain: d, vcpu: v } = ctx;
  const s = readGuestStruct(hv.machine, d, arg, sched_poll);
  if (s === undefined) return -EFAULT;
  const nr = sched_poll.fields.nr_ports.get(s, 0);
  if (nr > POLL_MAX_PORTS) return -EINVAL;
  const raw = copyFromGuest(hv.machine, d, u64ToNumber(sched_poll.fields.ports.get(s, 0)), nr * 4);
  if (raw === undefined) return -EFAULT;
  const view = new DataView(raw.buffer);
  const ports = Array.from({ length: nr }, (_, i) => view.getUint32(i * 4, true));
  if (localEventsPending(hv, v)) return 0;
  for (const port of ports) {
    const state = portState(hv, d, port);
    if (state === undefined) return -EINVAL;
    if (state.pending) return 0;
  }
  const timeout = Number(sched_poll.fields.timeout.get(s, 0));
  if (timeout !== 0 && timeout <= hv.now) return 0;
  v.poll = { ports, deadline: timeout === 0 ? undefined : timeout };
  hv.setRunstate(v, RUNSTATE.blocked);
  hv.hooks.deschedule(v);
  return 0;
}

/** `SCHEDOP_watchdog`: id 0 allocates a watchdog, returning its id; a known id re-arms it, or with timeout 0 frees it. */
function watchdog(ctx: HypercallContext, id: number, timeoutSeconds: number): number {
  const { hv, domain: d } = ctx;
  if (id > NR_DOMAIN_WATCHDOG_TIMERS) return -EINVAL;
  if (id === 0) {
    const free = d.watchdogs.findIndex((w) => w === undefined);
    if (free < 0) return -ENOSPC;
    d.watchdogs[free] = hv.now + timeoutSeconds * SECOND;
    return free + 1;
  }
  if (d.watchdogs[id - 1] === undefined) return -EINVAL;
  d.watchdogs[id - 1] = timeoutSeconds === 0 ? undefined : hv.now + timeoutSeconds * SECOND;
  return 0;
}

/**
 * `__HYPERVISOR_set_timer_op(timeout)`: arm the calling vCPU's single-shot
 * timer at absolute system time `timeout` ns; 0 cancels it. A time already
 * past raises `VIRQ_TIMER` at once.
 */
export function setTimerOp(ctx: HypercallContext, timeout: number): number {
  const { hv, vcpu: v } = ctx;
  if (!Number.isSafeInteger(timeout) || timeout < 0) return -EINVAL;
  if (timeout === 0) v.singleshotDeadline = undefined;
  else if (timeout <= hv.now) {
    v.singleshotDeadline = undefined;
    sendVirq(hv, v.domain, VIRQ.TIMER, v.id);
  } else v.singleshotDeadline = timeout;
  return 0;
}

/** `__HYPERVISOR_vcpu_op(cmd, vcpuid, arg)`: bring vCPUs up and down, their timers and runstate. */
export function vcpuOp(ctx: HypercallContext, cmd: number, vcpuid: number, arg: number): number {
  const { hv, domain: d } = ctx;
  const v = d.vcpus[vcpuid];
  if (!Number.isInteger(vcpuid) || v === undefined) return -ENOENT;
  switch (cmd) {
    case VCPUOP.up:
      if (v.runstate === RUNSTATE.offline) {
        hv.setRunstate(v, RUNSTATE.runnable);
        if (d.state === "running") hv.hooks.wake(v);
      }
      return 0;

    case VCPUOP.down:
      // As Xen's common_vcpu_op: taking down the last vCPU that is up powers the domain off.
      if (d.vcpus.every((o) => o === v || o.runstate === RUNSTATE.offline)) {
        hv.shutdown(d, SHUTDOWN.poweroff);
        return 0;
      }
      if (v.runstate !== RUNSTATE.offline) {
        hv.setRunstate(v, RUNSTATE.offline);
        hv.hooks.deschedule(v);
      }
      return 0;

    case VCPUOP.is_up:
      return v.runstate === RUNSTATE.offline ? 0 : 1;

    case VCPUOP.get_runstate_info: {
      const out = new DataView(new ArrayBuffer(vcpu_runstate_info.size));
      zeroStruct(vcpu_runstate_info, out);
      const f = vcpu_runstate_info.fields;
      f.state.set(out, 0, v.runstate);
      f.state_entry_time.set(out, 0, BigInt(v.runstateEntered));
      for (let s = 0; s < 4; s++) {
        const spent = v.runstateTime[s]! + (s === v.runstate ? hv.now - v.runstateEntered : 0);
        f.time.element.set(out, f.time.at(0, s), BigInt(spent));
      }
      return writeGuestStruct(hv.machine, d, arg, out) ? 0 : -EFAULT;
    }

    case VCPUOP.set_periodic_timer: {
      const s = readGuestStruct(hv.machine, d, arg, vcpu_set_periodic_timer);
      if (s === undefined) return -EFAULT;
      const period = Number(vcpu_set_periodic_timer.fields.period_ns.get(s, 0));
      if (period < MILLISECOND || period > STIME_DELTA_MAX) return -EINVAL;
      v.periodicPeriod = period;
      v.periodicNext = hv.now + period;
      return 0;
    }

    case VCPUOP.stop_periodic_timer:
      v.periodicPeriod = undefined;
      return 0;

    case VCPUOP.set_singleshot_timer: {
      if (v !== ctx.vcpu) return -EINVAL;
      const s = readGuestStruct(hv.machine, d, arg, vcpu_set_singleshot_timer);
      if (s === undefined) return -EFAULT;
      const at = Number(vcpu_set_singleshot_timer.fields.timeout_abs_ns.get(s, 0));
      const flags = vcpu_set_singleshot_timer.fields.flags.get(s, 0);
      if (at < hv.now) {
        if (flags & VCPU_SSHOTTMR.future) return -ETIME;
        v.singleshotDeadline = undefined;
        sendVirq(hv, d, VIRQ.TIMER, v.id);
        return 0;
      }
      v.singleshotDeadline = at;
      return 0;
    }

    case VCPUOP.stop_singleshot_timer:
      if (v !== ctx.vcpu) return -EINVAL;
      v.singleshotDeadline = undefined;
      return 0;

    default:
      return -ENOSYS;
  }
}
