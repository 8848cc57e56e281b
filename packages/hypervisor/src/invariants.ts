/**
 * The invariant checker: call it from any test, after anything.
 *
 * Frames: every frame is free (no owner, no references) or owned by exactly
 * one domain that still exists (live or dying); a frame's reference count is
 * at most one for its owner's slot (a P2M entry, the shared_info page or a
 * grant-table frame: exactly one while it is in that slot, none once given
 * back) plus one per mapping of it in any address space. A frame in a P2M is
 * RAM; shared_info and grant-table frames are xenheap pages. A domain's
 * `tot_pages` is the number of RAM frames it owns, counted afresh from the
 * frame table, and is at least the number of its P2M entries (a page given
 * back stays counted while a mapping holds it).
 *
 * Each subsystem adds its own: event channels (interdomain ports are
 * symmetric, counts add up), grant tables (each live mapping has its
 * maptrack entry and the granter's in-use flags).
 *
 * @module
 */
import { FRAME_FREE } from "./machine.js";
import type { Hypervisor } from "./hypervisor.js";
import { evtchnInvariants } from "./event-channel.js";
import { grantInvariants } from "./grant-table.js";

/** Every violated invariant, as a sentence; empty when all hold. */
export function checkInvariants(hv: Hypervisor): string[] {
  return [...frameInvariants(hv), ...evtchnInvariants(hv), ...grantInvariants(hv)];
}

function frameInvariants(hv: Hypervisor): string[] {
  const m = hv.machine;
  const problems: string[] = [];
  const expected = new Uint32Array(m.frames);
  const slot = (mfn: number, what: string, domid: number, xenheap: boolean) => {
    if (!m.valid(mfn)) return problems.push(`domain ${domid}: ${what} names frame ${mfn}, which does not exist`);
    if (m.owner[mfn] !== domid) problems.push(`domain ${domid}: ${what} is frame ${mfn}, owned by ${m.owner[mfn]}`);
    if ((m.xenheap[mfn] === 1) !== xenheap) problems.push(`domain ${domid}: ${what} is frame ${mfn}, which is ${xenheap ? "RAM, not a xenheap page" : "a xenheap page, not RAM"}`);
    expected[mfn]!++;
  };
  const ram = new Map<number, number>();
  for (let mfn = 0; mfn < m.frames; mfn++) {
    const owner = m.owner[mfn]!;
    if (owner !== FRAME_FREE && m.xenheap[mfn] === 0) ram.set(owner, (ram.get(owner) ?? 0) + 1);
  }
  for (const d of hv.domains.values()) {
    d.p2m.forEach((mfn, pfn) => slot(mfn, `pfn ${pfn}`, d.domid, false));
    const owned = ram.get(d.domid) ?? 0;
    if (owned !== d.totPages) problems.push(`domain ${d.domid}: tot_pages ${d.totPages} but it owns ${owned} RAM frames`);
    if (d.p2m.count > d.totPages) problems.push(`domain ${d.domid}: ${d.p2m.count} pfns populated, more than tot_pages ${d.totPages}`);
    if (d.sharedInfoMfn >= 0) slot(d.sharedInfoMfn, "shared_info", d.domid, true);
    for (const [i, mfn] of (hv.grants.get(d)?.frames ?? []).entries()) slot(mfn, `grant frame ${i}`, d.domid, true);
    for (const [vpn, map] of d.mappings) {
      if (!m.valid(map.mfn) || m.refCount[map.mfn] === 0) problems.push(`domain ${d.domid}: va page ${vpn} maps frame ${map.mfn}, which is free`);
      else expected[map.mfn]!++;
    }
  }
  for (let mfn = 0; mfn < m.frames; mfn++) {
    const owner = m.owner[mfn]!;
    const refs = m.refCount[mfn]!;
    if ((owner === FRAME_FREE) !== (refs === 0)) problems.push(`frame ${mfn}: owner ${owner} with ${refs} references`);
    if (owner !== FRAME_FREE && !hv.domains.has(owner)) problems.push(`frame ${mfn}: owned by ${owner}, which no longer exists`);
    if (refs !== expected[mfn]) problems.push(`frame ${mfn}: ${refs} references, but ${expected[mfn]} holders`);
    if (owner === FRAME_FREE && m.xenheap[mfn] !== 0) problems.push(`frame ${mfn}: free but marked xenheap`);
  }
  return problems;
}
