/**
 * The invariant checker: call it from any test, after anything.
 *
 * Frames: every frame is free (no owner, no references) or owned by exactly
 * one domain that still exists (live or dying); a frame's reference count is
 * exactly one for its owner's slot (a P2M entry, the shared_info page or a
 * grant-table frame) plus one per mapping of it in any address space; a
 * domain's `tot_pages` is the number of its P2M entries.
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
  const slot = (mfn: number, what: string, domid: number) => {
    if (!m.valid(mfn)) return problems.push(`domain ${domid}: ${what} names frame ${mfn}, which does not exist`);
    if (m.owner[mfn] !== domid) problems.push(`domain ${domid}: ${what} is frame ${mfn}, owned by ${m.owner[mfn]}`);
    expected[mfn]!++;
  };
  for (const d of hv.domains.values()) {
    let populated = 0;
    for (let pfn = 0; pfn < d.p2m.length; pfn++) {
      const mfn = d.p2m[pfn]!;
      if (mfn < 0) continue;
      populated++;
      slot(mfn, `pfn ${pfn}`, d.domid);
    }
    if (populated !== d.totPages) problems.push(`domain ${d.domid}: tot_pages ${d.totPages} but ${populated} pfns populated`);
    if (d.sharedInfoMfn >= 0) slot(d.sharedInfoMfn, "shared_info", d.domid);
    for (const [i, mfn] of (hv.grants.get(d)?.frames ?? []).entries()) slot(mfn, `grant frame ${i}`, d.domid);
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
  }
  return problems;
}
