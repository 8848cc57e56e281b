/**
 * The trace: a structured record of what the hypervisor did.
 *
 * Hypercalls (with their results), event sends and deliveries, grant
 * operations, scheduling decisions and domain state changes are recorded with
 * the virtual time they happened at. With the deterministic engine the same
 * topology and seed give the same records, so two traces can be compared
 * byte for byte ({@link Trace.serialize}). {@link toChromeTrace} turns a trace
 * into the Chrome trace-event JSON that Perfetto and `chrome://tracing` open.
 *
 * @module
 */

/** One traced happening. `t` is virtual time in nanoseconds. */
export type TraceRecord =
  | { readonly t: number; readonly kind: "hypercall"; readonly domid: number; readonly vcpu: number; readonly op: string; readonly args: readonly number[]; readonly result: number }
  | { readonly t: number; readonly kind: "evtchn_send"; readonly domid: number; readonly port: number; readonly toDomid: number; readonly toPort: number }
  | { readonly t: number; readonly kind: "evtchn_pending"; readonly domid: number; readonly port: number; readonly vcpu: number; readonly upcall: boolean }
  | { readonly t: number; readonly kind: "upcall"; readonly domid: number; readonly vcpu: number }
  | { readonly t: number; readonly kind: "grant"; readonly op: string; readonly domid: number; readonly granter: number; readonly ref: number; readonly status: number }
  | { readonly t: number; readonly kind: "schedule"; readonly pcpu: number; readonly domid: number; readonly vcpu: number; readonly ns: number }
  | { readonly t: number; readonly kind: "domain"; readonly domid: number; readonly state: string; readonly detail?: string }
  | { readonly t: number; readonly kind: "console"; readonly domid: number; readonly text: string };

/** An append-only record of {@link TraceRecord}s, optionally off. */
export class Trace {
  /** The records, in order. */
  readonly records: TraceRecord[] = [];
  /** Whether records are kept; switching off keeps the hot path cheap. */
  enabled: boolean;

  /** Creates a trace, recording unless `enabled` is false. */
  constructor(enabled = true) {
    this.enabled = enabled;
  }

  /** Appends a record if enabled. */
  record(r: TraceRecord): void {
    if (this.enabled) this.records.push(r);
  }

  /** The records as JSON lines: equal traces give equal strings. */
  serialize(): string {
    return this.records.map((r) => JSON.stringify(r)).join("\n");
  }
}

/** Chrome trace-event format (the JSON object form), as Perfetto reads it. */
export interface ChromeTrace {
  /** The events. */
  readonly traceEvents: readonly Record<string, unknown>[];
  /** Time unit shown. */
  readonly displayTimeUnit: "ns";
}

/**
 * The process Xen itself is shown as: its own domid, `DOMID_XEN`. The pCPU
 * tracks live there, and so do records Xen makes in its own name (its
 * console messages, logged with `DOMID_XEN`).
 */
export const PCPU_TRACE_PID = 0x7ff2;

/**
 * Converts records to Chrome trace events: one process per domain (pid =
 * domid, named "domain N"), one thread per vCPU, and one process named "Xen"
 * (pid {@link PCPU_TRACE_PID}, `DOMID_XEN`) for the hypervisor itself;
 * schedule slices become complete ("X") events on a track per pCPU under
 * Xen, everything else instant ("i") events. Timestamps are microseconds, as
 * the format wants.
 */
export function toChromeTrace(records: readonly TraceRecord[]): ChromeTrace {
  const events: Record<string, unknown>[] = [{ name: "process_name", ph: "M", pid: PCPU_TRACE_PID, args: { name: "Xen" } }];
  const pids = new Set<number>();
  for (const r of records) {
    const ts = r.t / 1000;
    // Xen's own records share its process, named once above.
    if ("domid" in r && r.domid !== PCPU_TRACE_PID) pids.add(r.domid);
    switch (r.kind) {
      case "schedule":
        events.push({ name: `d${r.domid}v${r.vcpu}`, cat: "schedule", ph: "X", ts, dur: r.ns / 1000, pid: PCPU_TRACE_PID, tid: r.pcpu });
        break;
      case "hypercall":
        events.push({ name: r.op, cat: "hypercall", ph: "i", s: "t", ts, pid: r.domid, tid: r.vcpu, args: { args: r.args, result: r.result } });
        break;
      default: {
        const { t: _t, kind, ...args } = r;
        const tid = "vcpu" in r ? r.vcpu : 0;
        events.push({ name: kind, cat: kind, ph: "i", s: "t", ts, pid: r.domid, tid, args });
      }
    }
  }
  for (const pid of pids) events.push({ name: "process_name", ph: "M", pid, args: { name: `domain ${pid}` } });
  return { traceEvents: events, displayTimeUnit: "ns" };
}
