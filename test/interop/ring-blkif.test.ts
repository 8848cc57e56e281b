/**
 * Interop: pvkit's TypeScript front ring against a blkif back end compiled
 * from Xen's own io/ring.h and io/blkif.h macros (blkif-back.c).
 *
 * Each round the TypeScript front end puts a batch of varied requests and
 * pushes them; the C back end consumes the page, logs what it read and writes
 * responses; the front end reads them back. The rings start just below 2^32,
 * so the indexes wrap during the run, and the notify decisions of both sides
 * are checked against each other's event indexes.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { BLKIF_MAX, BLKIF_OP, BLKIF_RSP, PAGE_SIZE, blkif_request, blkif_response, blkif_sring } from "@pvkit/abi";
import { FrontRing, structCodec } from "@pvkit/ring";
import { XEN_PREAMBLE, compileC, haveXenHeaders, requireXenHeaders, runC } from "../support/c.js";

const codecs = { request: structCodec(blkif_request), response: structCodec(blkif_response) };
type Req = ReturnType<typeof codecs.request.read>;

/** The C harness's answer to a request, computed the same way in TypeScript. */
function expectedStatus(req: Req): number {
  if (req.operation === BLKIF_OP.FLUSH_DISKCACHE) return BLKIF_RSP.EOPNOTSUPP;
  return req.sector_number % 3n === 0n ? BLKIF_RSP.ERROR : BLKIF_RSP.OKAY;
}

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s);
}

function makeRequest(next: () => number, id: bigint): Req {
  const ops = [BLKIF_OP.READ, BLKIF_OP.WRITE, BLKIF_OP.FLUSH_DISKCACHE];
  const operation = ops[next() % ops.length]!;
  const nr = operation === BLKIF_OP.FLUSH_DISKCACHE ? 0 : 1 + (next() % BLKIF_MAX.SEGMENTS_PER_REQUEST);
  const seg = Array.from({ length: nr }, () => {
    const first = next() % 8;
    return { gref: next() % 0x10000, first_sect: first, last_sect: first + (next() % (8 - first)) };
  });
  return { operation, nr_segments: nr, handle: next() % 0xffff, id, sector_number: BigInt(next()) * 97n, seg };
}

function logLine(r: Req): string {
  const segs = r.seg.slice(0, r.nr_segments).map((s) => ` ${s.gref}:${s.first_sect}:${s.last_sect}`);
  return `REQ ${r.operation} ${r.nr_segments} ${r.handle} ${r.id} ${r.sector_number}${segs.join("")}`;
}

describe.skipIf(!haveXenHeaders && !process.env["CI"])("TypeScript front ring ↔ C back ring built from io/ring.h", () => {
  let harness = "";
  beforeAll(() => {
    requireXenHeaders();
    const source = readFileSync(new URL("./blkif-back.c", import.meta.url), "utf8");
    harness = compileC("blkif-back", XEN_PREAMBLE + source);
  }, 120_000);

  it.each([
    { pages: 1, start: 0xffff_ffc0, rounds: 14, seed: 1 },
    { pages: 2, start: 0xffff_ff80, rounds: 6, seed: 2 },
    { pages: 4, start: 0x7fff_fff0, rounds: 3, seed: 3 },
  ])("$pages page(s) from index $start: every request read by C, every C response read by TypeScript", ({ pages, start, rounds, seed }) => {
    const next = rng(seed);
    const mem = new Uint8Array(pages * PAGE_SIZE);
    const header = new DataView(mem.buffer);
    const f = blkif_sring.fields;
    f.req_prod.set(header, 0, start);
    f.rsp_prod.set(header, 0, start);
    f.req_event.set(header, 0, (start + 1) >>> 0);
    f.rsp_event.set(header, 0, (start + 1) >>> 0);
    const front = FrontRing.attach(mem, codecs, start);

    let id = 0n;
    let wrapped = false;
    for (let round = 0; round < rounds; round++) {
      const batch = 1 + (next() % front.size);
      const sent: Req[] = [];
      for (let i = 0; i < batch; i++) {
        const req = makeRequest(next, id++);
        front.putRequest(req);
        sent.push(req);
      }
      const before = front.reqProdPvt;
      // The C back end re-armed req_event at its last final check, so this push must notify.
      expect(front.pushRequests()).toBe(true);
      if (before < start) wrapped = true;

      const { stdout, stderr } = runC(harness, [String(pages)], mem);
      const log = stderr.trim().split("\n");
      expect(log[0]).toBe(`SIZE ${front.size}`);
      expect(log.filter((l) => l.startsWith("REQ"))).toEqual(sent.map(logLine));
      // C pushed once, and that push notified us: we re-armed rsp_event after the previous round.
      expect(log.filter((l) => l.startsWith("PUSH"))).toEqual(["PUSH 1"]);
      mem.set(stdout);

      // C's final check left req_event one past what it consumed.
      expect(f.req_event.get(header, 0)).toBe((front.reqProdPvt + 1) >>> 0);
      const got = [];
      for (let r; (r = front.takeResponse()) !== undefined; ) got.push(r);
      expect(got.map((r) => [r.id, r.operation, r.status])).toEqual(sent.map((r) => [r.id, r.operation, expectedStatus(r)]));
      expect(front.finalCheckForResponses()).toBe(false);
      expect(f.rsp_event.get(header, 0)).toBe((front.rspCons + 1) >>> 0);
    }
    if (start > 0xf000_0000) expect(wrapped).toBe(true); // the indexes really crossed 2^32
  });
});
