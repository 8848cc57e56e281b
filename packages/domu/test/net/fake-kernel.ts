/**
 * Test doubles for a front end's xenbus side: a XenStore client wired
 * straight to an in-process xenstored, and a kernel that records pages,
 * grants and event-channel ports.
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE } from "@pvkit/abi";
import { XsClient, grantError, type Kernel } from "@pvkit/kernel";
import type { Xenstored } from "@pvkit/dom0";

/** A XenStore client of `domid` connected straight to `daemon`, replies delivered on a later microtask. */
export function client(daemon: Xenstored, domid: number): XsClient {
  let deliver: (b: Uint8Array) => void = () => {};
  const conn = daemon.connect(domid, (bytes) => {
    const copy = bytes.slice();
    queueMicrotask(() => deliver(copy));
  });
  return new XsClient({ send: (b) => conn.receive(b), onData: (h) => (deliver = h), close: () => conn.close() });
}

/**
 * A fake kernel for a front end's xenbus side: it records the pages it
 * allocates, the grants it makes (a ref in `stillMapped` cannot be ended, as
 * a peer's live mapping prevents) and the event-channel ports it opens.
 * `sleep` is a wall-clock timeout unless given (a test that must not wait on
 * time passes one that never resolves).
 */
export function fakeKernel(opts: { readonly sleep?: (ns: number) => Promise<void> } = {}) {
  const pages = new Map<number, Uint8Array>();
  let nextPfn = 100;
  const free: number[] = [];
  const grants = new Map<number, { pfn: number; domid: number; readonly: boolean }>();
  let nextRef = 8;
  const stillMapped = new Set<number>();
  const ports = new Set<number>();
  let nextPort = 10;
  const k = {
    memory: {
      allocPage: () => {
        const pfn = free.pop() ?? nextPfn++;
        pages.set(pfn, new Uint8Array(PAGE_SIZE));
        return pfn;
      },
      freePage: (pfn: number) => {
        if (!pages.delete(pfn)) throw new Error(`double free of ${pfn}`);
        free.push(pfn);
      },
      mfnOf: (pfn: number) => pfn + 0x1000,
      memory: { page: (va: number) => new DataView(pages.get(va / PAGE_SIZE)!.buffer) },
    },
    grants: {
      grantAccess: (domid: number, mfn: number, readonly = false) => {
        const ref = nextRef++;
        grants.set(ref, { pfn: mfn - 0x1000, domid, readonly });
        return E.right(ref);
      },
      endAccess: (ref: number) => {
        if (stillMapped.has(ref)) return E.left(grantError("end_foreign_access", -1));
        return grants.delete(ref) ? E.right(undefined) : E.left(grantError("end_foreign_access", -4));
      },
    },
    events: {
      allocUnbound: () => {
        ports.add(nextPort);
        return E.right(nextPort++);
      },
      close: (p: number) => (ports.delete(p) ? E.right(0) : E.left(grantError("EVTCHNOP_close", -22))),
      on: () => {},
      off: () => {},
      notify: () => E.right(0),
    },
    clock: { now: () => 0 },
    sleep: opts.sleep ?? ((ns: number) => new Promise<void>((r) => setTimeout(r, ns / 1e6))),
    print: async () => {},
  };
  return { k: k as unknown as Kernel, pages, grants, ports, stillMapped };
}
