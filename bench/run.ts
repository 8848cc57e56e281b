/**
 * `npm run bench`: the cost of pvkit's paths, as ratios against
 * baselines measured in the same run.
 *
 * - blkif ring, field codec: a round trip of requests and responses through
 *   FrontRing/BackRing with a codec that touches only the fields a back end
 *   needs, against the baseline of writing and reading the same fields into
 *   the same slots with no protocol at all. The ratio is the protocol's
 *   overhead (index arithmetic, atomics, overflow checks).
 * - blkif ring, structCodec: the same with whole-struct decode and encode,
 *   against the same baseline.
 * - console byte ring: bytes through write/read, against a baseline of the
 *   same two copies with plain Uint8Array.set.
 * - hypercall dispatch: `xen_version` through the hypervisor's table (trace
 *   off), against calling a function that returns the same number.
 * - the evtchn-pingpong example end to end (host boot, dom0 building two
 *   domUs, 1000 round trips over an interdomain channel with block, wake
 *   and upcall each way, teardown), against 1000 round trips of two async
 *   functions passing the turn with bare promises: what the whole
 *   paravirtual path costs over JavaScript's own scheduling.
 *
 * Each case runs interleaved with its baseline for several rounds and the
 * median ratio is reported, so a burst of load on a shared machine moves
 * both sides alike.
 */
import { HYPERVISOR, PAGE_SIZE, XENVER, blkif_request, blkif_response, SRING_HEADER_SIZE } from "@pvkit/abi";
import { Hypervisor, type Domain } from "@pvkit/hypervisor";
import { BackRing, FrontRing, consoleBackend, consoleGuest, structCodec, type Codec } from "@pvkit/ring";

const ROUNDS = 7;
const OPS = 200_000;

const ids = blkif_request.fields.id;
const sector = blkif_request.fields.sector_number;
const op = blkif_request.fields.operation;
const rspId = blkif_response.fields.id;
const rspStatus = blkif_response.fields.status;

/** What a lean back end reads of a request: operation, id, sector. */
interface LeanReq {
  operation: number;
  id: bigint;
  sector: bigint;
}
const leanRequest: Codec<LeanReq> = {
  size: blkif_request.size,
  read: (v, o) => ({ operation: op.get(v, o), id: ids.get(v, o), sector: sector.get(v, o) }),
  write: (v, o, r) => {
    op.set(v, o, r.operation);
    ids.set(v, o, r.id);
    sector.set(v, o, r.sector);
  },
};
const leanResponse: Codec<{ id: bigint; status: number }> = {
  size: blkif_response.size,
  read: (v, o) => ({ id: rspId.get(v, o), status: rspStatus.get(v, o) }),
  write: (v, o, r) => {
    rspId.set(v, o, r.id);
    rspStatus.set(v, o, r.status);
  },
};

function time(fn: () => number): { ns: number; check: number } {
  const t0 = process.hrtime.bigint();
  const check = fn();
  return { ns: Number(process.hrtime.bigint() - t0), check };
}

/** Baseline: the same field writes and reads into the same slots, no protocol. */
function baselineSlots(): number {
  const page = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
  const v = new DataView(page.buffer);
  let sum = 0;
  for (let i = 0; i < OPS; i++) {
    const slot = SRING_HEADER_SIZE + (i & 31) * 112;
    leanRequest.write(v, slot, { operation: 0, id: BigInt(i), sector: BigInt(i) });
    const r = leanRequest.read(v, slot);
    leanResponse.write(v, slot, { id: r.id, status: 0 });
    sum += Number(leanResponse.read(v, slot).id & 1n);
  }
  return sum;
}

function ringRoundTrip<Req, Rsp>(codecs: { request: Codec<Req>; response: Codec<Rsp> }, mk: (i: number) => Req, answer: (r: Req) => Rsp, idOf: (r: Rsp) => bigint): () => number {
  return () => {
    const page = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
    const front = FrontRing.init(page, codecs);
    const back = BackRing.attach(page, codecs);
    let sum = 0;
    for (let i = 0; i < OPS; ) {
      const batch = Math.min(front.freeRequests, OPS - i);
      for (let k = 0; k < batch; k++) front.putRequest(mk(i + k));
      front.pushRequests();
      for (let r; (r = back.takeRequest()) !== undefined; ) back.putResponse(answer(r));
      back.pushResponses();
      for (let r; (r = front.takeResponse()) !== undefined; ) sum += Number(idOf(r) & 1n);
      i += batch;
    }
    return sum;
  };
}

const fieldRing = ringRoundTrip(
  { request: leanRequest, response: leanResponse },
  (i) => ({ operation: 0, id: BigInt(i), sector: BigInt(i) }),
  (r) => ({ id: r.id, status: 0 }),
  (r) => r.id,
);
const full = { request: structCodec(blkif_request), response: structCodec(blkif_response) };
const structRing = ringRoundTrip(
  full,
  (i) => ({ operation: 0, nr_segments: 1, handle: 0, id: BigInt(i), sector_number: BigInt(i), seg: [{ gref: i & 0xffff, first_sect: 0, last_sect: 7 }] }),
  (r) => ({ id: r.id, operation: r.operation, status: 0 }),
  (r) => r.id,
);

const CHUNK = 64;
const BYTES = 64 << 20;
function baselineBytes(): number {
  const ring = new Uint8Array(2048);
  const src = new Uint8Array(CHUNK).fill(7);
  const dst = new Uint8Array(CHUNK);
  let sum = 0;
  for (let done = 0, at = 0; done < BYTES; done += CHUNK, at = (at + CHUNK) & 2047) {
    ring.set(src, at);
    dst.set(ring.subarray(at, at + CHUNK));
    sum += dst[0]!;
  }
  return sum;
}
function consoleBytes(): number {
  const page = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
  const guest = consoleGuest(page);
  const daemon = consoleBackend(page);
  const src = new Uint8Array(CHUNK).fill(7);
  const dst = new Uint8Array(CHUNK);
  let sum = 0;
  for (let done = 0; done < BYTES; done += CHUNK) {
    guest.tx.write(src);
    daemon.rx.readInto(dst);
    sum += dst[0]!;
  }
  return sum;
}

const CALLS = 300_000;
const hv = new Hypervisor({ frames: 256, trace: false });
const dom = hv.createDomain({ maxPages: 8, maxVcpus: 1, privileged: false }) as Domain;
const xenVersionBaseline = (op: number, cmd: number) => (op === HYPERVISOR.xen_version && cmd === XENVER.version ? (4 << 16) | 17 : -38);
function baselineCalls(): number {
  let sum = 0;
  for (let i = 0; i < CALLS; i++) sum += xenVersionBaseline(HYPERVISOR.xen_version, XENVER.version) & 1;
  return sum;
}
function hypercalls(): number {
  let sum = 0;
  const v = dom.vcpus[0]!;
  for (let i = 0; i < CALLS; i++) sum += hv.hypercall(v, HYPERVISOR.xen_version, XENVER.version, 0) & 1;
  return sum;
}

const ROUND_TRIPS = 1_000;
/** Baseline: two async tasks handing a turn back and forth with bare promises, ROUND_TRIPS times. */
async function baselinePromisePingPong(): Promise<number> {
  let wakePong: (() => void) | undefined;
  let wakePing: (() => void) | undefined;
  let trips = 0;
  const pong = (async () => {
    for (let i = 0; i < ROUND_TRIPS; i++) {
      await new Promise<void>((r) => (wakePong = r));
      wakePing?.();
    }
  })();
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const back = new Promise<void>((r) => (wakePing = r));
    await Promise.resolve();
    wakePong?.();
    await back;
    trips++;
  }
  await pong;
  return trips;
}

/** The whole stack: the evtchn-pingpong example (boot dom0, build two domUs, 1000 round trips, tear down). */
async function examplePingPong(): Promise<number> {
  const url = new URL("../../examples/dist/evtchn-pingpong/main.js", import.meta.url).href;
  const { runPingPong } = (await import(url)) as { runPingPong: (seed: number, count: number) => Promise<{ console: string[] }> };
  const { console: lines } = await runPingPong(1, ROUND_TRIPS);
  return lines.some((l) => l.includes(`ping: ${ROUND_TRIPS} round trips`)) ? ROUND_TRIPS : 0;
}

async function compareAsync(name: string, baseline: () => Promise<number>, subject: () => Promise<number>, unit: string, perRound: number): Promise<void> {
  const ratios: number[] = [];
  const rates: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    const b = await baseline();
    const t1 = process.hrtime.bigint();
    const s = await subject();
    const t2 = process.hrtime.bigint();
    if (b !== s) throw new Error(`${name}: subject and baseline disagree (${s} vs ${b})`);
    if (round === 0) continue;
    ratios.push(Number(t2 - t1) / Number(t1 - t0));
    rates.push(perRound / (Number(t2 - t1) / 1e9));
  }
  console.log(`${name.padEnd(34)} ${median(ratios).toFixed(2).padStart(6)}× baseline   (${(median(rates) / 1e3).toFixed(1)} k${unit}/s this run)`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function compare(name: string, baseline: () => number, subject: () => number, unit: string, perRound: number): void {
  const ratios: number[] = [];
  const rates: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const b = time(baseline);
    const s = time(subject);
    if (b.check !== s.check) throw new Error(`${name}: subject and baseline disagree (${s.check} vs ${b.check})`);
    if (round === 0) continue; // warm-up
    ratios.push(s.ns / b.ns);
    rates.push(perRound / (s.ns / 1e9));
  }
  console.log(`${name.padEnd(34)} ${median(ratios).toFixed(2).padStart(6)}× baseline   (${(median(rates) / 1e6).toFixed(1)} M${unit}/s this run)`);
}

console.log(`pvkit benchmarks: median of ${ROUNDS - 1} rounds, each interleaved with its baseline`);
compare("blkif round trip, field codec", baselineSlots, fieldRing, " req", OPS);
compare("blkif round trip, structCodec", baselineSlots, structRing, " req", OPS);
compare("console byte ring, 64-byte writes", baselineBytes, consoleBytes, "B", BYTES);
compare("hypercall dispatch (xen_version)", baselineCalls, hypercalls, " call", CALLS);
await compareAsync("evtchn-pingpong example, whole stack", baselinePromisePingPong, examplePingPong, " round trip", ROUND_TRIPS);
