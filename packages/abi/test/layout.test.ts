/**
 * Unit tests of the layout machinery (`src/layout.ts`): scalar accessors,
 * byte arrays, nested structs and arrays, the `struct()` bounds check, and the
 * whole-struct helpers `decodeStruct`, `encodeStruct` and `zeroStruct`,
 * exercised over the real layouts of `shared_info`, `start_info` and
 * `blkif_request`.
 *
 * The conformance test already checks every offset and size against Xen's C
 * headers; these tests check that the accessors read and write the bytes those
 * offsets describe.
 */
import { describe, expect, it } from "vitest";
import {
  array,
  blkif_request,
  blkif_request_segment,
  blkif_response,
  bytes,
  decodeStruct,
  encodeStruct,
  i16,
  i32,
  i64,
  i8,
  nested,
  shared_info,
  start_info,
  struct,
  u16,
  u32,
  u64,
  u8,
  vcpu_info,
  zeroStruct,
  FlatGuestMemory,
  PAGE_SIZE,
  type BigIntField,
  type NumberField,
} from "../src/index.js";

/** Byte every test buffer starts filled with, so untouched bytes are visible. */
const SENTINEL = 0xa5;

function filled(length: number, byte = SENTINEL): { raw: Uint8Array; view: DataView } {
  const raw = new Uint8Array(length).fill(byte);
  return { raw, view: new DataView(raw.buffer) };
}

/** Indexes of the bytes of `raw` that differ from `byte`. */
function changedBytes(raw: Uint8Array, byte = SENTINEL): number[] {
  const out: number[] = [];
  raw.forEach((b, i) => {
    if (b !== byte) out.push(i);
  });
  return out;
}

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

const BASE = 40;

describe("number fields", () => {
  const cases: [string, NumberField, number, number[]][] = [
    ["u8", u8(3), 0xab, [0xab]],
    ["i8", i8(3), -2, [0xfe]],
    ["u16", u16(6), 0x1234, [0x34, 0x12]],
    ["i16", i16(6), -2, [0xfe, 0xff]],
    ["u32", u32(4), 0x12345678, [0x78, 0x56, 0x34, 0x12]],
    ["u32 high bit", u32(4), 0xdeadbeef, [0xef, 0xbe, 0xad, 0xde]],
    ["i32", i32(12), -0x12345678, [0x88, 0xa9, 0xcb, 0xed]],
  ];

  it.each(cases)("%s writes little-endian at base + offset and nowhere else", (_name, field, value, expected) => {
    const { raw, view } = filled(96);
    field.set(view, BASE, value);
    const want = new Uint8Array(96).fill(SENTINEL);
    want.set(expected, BASE + field.offset);
    expect(raw).toEqual(want);
    expect(field.size).toBe(expected.length);
  });

  it.each(cases)("%s reads little-endian from base + offset", (_name, field, value, expected) => {
    const { raw, view } = filled(96, 0);
    raw.set(expected, BASE + field.offset);
    expect(field.get(view, BASE)).toBe(value);
    // The same bytes at the struct's base (not base + offset) are not what it reads.
    const other = filled(96, 0);
    other.raw.set(expected, BASE);
    if (field.offset !== 0) expect(field.get(other.view, BASE)).toBe(0);
  });

  it.each([
    ["u8 all ones", u8(0), [0xff], 255],
    ["i8 all ones", i8(0), [0xff], -1],
    ["i8 min", i8(0), [0x80], -128],
    ["u16 all ones", u16(0), [0xff, 0xff], 65535],
    ["i16 all ones", i16(0), [0xff, 0xff], -1],
    ["i16 min", i16(0), [0x00, 0x80], -32768],
    ["u32 all ones", u32(0), [0xff, 0xff, 0xff, 0xff], 0xffffffff],
    ["i32 all ones", i32(0), [0xff, 0xff, 0xff, 0xff], -1],
    ["i32 min", i32(0), [0x00, 0x00, 0x00, 0x80], -0x80000000],
  ] as [string, NumberField, number[], number][])("%s decodes by signedness", (_name, field, raw, expected) => {
    const { raw: buf, view } = filled(8, 0);
    buf.set(raw, 2);
    expect(field.get(view, 2)).toBe(expected);
  });

  it.each([
    ["i8", i8(1), [-128, -1, 127]],
    ["i16", i16(2), [-32768, -1, -12345, 32767]],
    ["i32", i32(4), [-0x80000000, -1, -123456789, 0x7fffffff]],
  ] as [string, NumberField, number[]][])("%s round-trips negative values", (_name, field, values) => {
    const { view } = filled(32);
    for (const v of values) {
      field.set(view, 8, v);
      expect(field.get(view, 8)).toBe(v);
    }
  });
});

describe("64-bit fields", () => {
  it.each([
    ["u64", u64(8), 0x0102030405060708n, [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]],
    ["u64 max", u64(8), 0xffffffffffffffffn, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
    ["i64 -2", i64(16), -2n, [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
    ["i64 min", i64(16), -(2n ** 63n), [0, 0, 0, 0, 0, 0, 0, 0x80]],
  ] as [string, BigIntField, bigint, number[]][])("%s writes little-endian at base + offset", (_name, field, value, expected) => {
    const { raw, view } = filled(96);
    field.set(view, BASE, value);
    const want = new Uint8Array(96).fill(SENTINEL);
    want.set(expected, BASE + field.offset);
    expect(raw).toEqual(want);
    expect(field.get(view, BASE)).toBe(value);
  });

  it.each([
    ["u64", u64(0), 2n ** 53n + 1n],
    ["u64", u64(0), 2n ** 64n - 1n],
    ["u64", u64(0), 0x8000000000000001n],
    ["i64", i64(0), 2n ** 53n + 1n],
    ["i64", i64(0), -(2n ** 53n) - 1n],
    ["i64", i64(0), -(2n ** 63n)],
    ["i64", i64(0), 2n ** 63n - 1n],
    ["i64", i64(0), -1n],
  ] as [string, BigIntField, bigint][])("%s round-trips %s exactly", (_name, field, value) => {
    const { view } = filled(32);
    field.set(view, 12, value);
    const got = field.get(view, 12);
    expect(typeof got).toBe("bigint");
    expect(got).toBe(value);
  });

  it("reads the same eight bytes as u64 or i64 by signedness", () => {
    const { view } = filled(16, 0xff);
    expect(u64(4).get(view, 0)).toBe(2n ** 64n - 1n);
    expect(i64(4).get(view, 0)).toBe(-1n);
  });
});

describe("bytes fields", () => {
  const field = bytes(4, 6);

  it("get returns a copy of the bytes at base + offset", () => {
    const { raw, view } = filled(64);
    raw.set([1, 2, 3, 4, 5, 6], BASE + 4);
    const got = field.get(view, BASE);
    expect(Array.from(got)).toEqual([1, 2, 3, 4, 5, 6]);
    got[0] = 99;
    got.fill(7);
    expect(Array.from(raw.subarray(BASE + 4, BASE + 10))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(field.get(view, BASE))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("get is not affected by later writes to the buffer", () => {
    const { raw, view } = filled(64);
    const got = field.get(view, BASE);
    raw.fill(0);
    expect(Array.from(got)).toEqual(new Array(6).fill(SENTINEL));
  });

  it.each([
    [[], [0, 0, 0, 0, 0, 0]],
    [[9], [9, 0, 0, 0, 0, 0]],
    [[1, 2, 3], [1, 2, 3, 0, 0, 0]],
    [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]],
  ])("set %j writes %j, zero-filling the rest and nothing outside", (input, expected) => {
    const { raw, view } = filled(64);
    field.set(view, BASE, Uint8Array.from(input));
    expect(Array.from(raw.subarray(BASE + 4, BASE + 10))).toEqual(expected);
    expect(raw[BASE + 3]).toBe(SENTINEL);
    expect(raw[BASE + 10]).toBe(SENTINEL);
    expect(changedBytes(raw).every((i) => i >= BASE + 4 && i < BASE + 10)).toBe(true);
  });

  it("set rejects input longer than the field with a RangeError and writes nothing", () => {
    const { raw, view } = filled(64);
    expect(() => field.set(view, BASE, new Uint8Array(7))).toThrow(RangeError);
    expect(() => field.set(view, BASE, new Uint8Array(7))).toThrow(/7 bytes do not fit a 6-byte field/);
    expect(changedBytes(raw)).toEqual([]);
  });
});

describe("nested structs and arrays", () => {
  it.each([
    ["shared_info.vcpu_info[0]", shared_info.fields.vcpu_info.at(BASE, 0), BASE],
    ["shared_info.vcpu_info[3]", shared_info.fields.vcpu_info.at(BASE, 3), BASE + 3 * 64],
    ["shared_info.vcpu_info[31]", shared_info.fields.vcpu_info.at(BASE, 31), BASE + 31 * 64],
    ["shared_info.evtchn_pending[5]", shared_info.fields.evtchn_pending.at(BASE, 5), BASE + 2048 + 5 * 8],
    ["shared_info.evtchn_mask[63]", shared_info.fields.evtchn_mask.at(BASE, 63), BASE + 2560 + 63 * 8],
    ["shared_info.arch", shared_info.fields.arch.at(BASE), BASE + 3088],
    ["blkif_request.seg[0]", blkif_request.fields.seg.at(BASE, 0), BASE + 24],
    ["blkif_request.seg[10]", blkif_request.fields.seg.at(BASE, 10), BASE + 24 + 80],
    ["vcpu_info.time", vcpu_info.fields.time.at(BASE), BASE + 32],
  ])("%s is at the expected offset", (_name, got, expected) => {
    expect(got).toBe(expected);
  });

  it("writes through an array element and a nested struct land where decodeStruct reads them", () => {
    const raw = new Uint8Array(BASE + shared_info.size);
    const view = new DataView(raw.buffer);
    const v3 = shared_info.fields.vcpu_info.at(BASE, 3);
    vcpu_info.fields.evtchn_upcall_pending.set(view, v3, 1);
    vcpu_info.fields.time.layout.fields.system_time.set(view, vcpu_info.fields.time.at(v3), 0x1122334455667788n);
    shared_info.fields.evtchn_pending.element.set(view, shared_info.fields.evtchn_pending.at(BASE, 2), 1n << 63n);

    expect(raw[BASE + 3 * 64]).toBe(1);
    expect(raw[BASE + 3 * 64 + 32 + 16]).toBe(0x88);
    expect(raw[BASE + 2048 + 2 * 8 + 7]).toBe(0x80);

    const si = decodeStruct(shared_info, view, BASE);
    expect(si.vcpu_info.map((v) => v.evtchn_upcall_pending)).toEqual(Array.from({ length: 32 }, (_, i) => (i === 3 ? 1 : 0)));
    expect(si.vcpu_info[3]?.time.system_time).toBe(0x1122334455667788n);
    expect(si.vcpu_info[2]?.time.system_time).toBe(0n);
    expect(si.evtchn_pending.filter((w) => w !== 0n)).toEqual([1n << 63n]);
    expect(si.evtchn_pending[2]).toBe(1n << 63n);
  });

  it("array() rejects an element not described at offset 0", () => {
    expect(() => array(0, 4, u32(4))).toThrow(RangeError);
    expect(() => array(0, 4, nested(8, blkif_request_segment))).toThrow(RangeError);
  });

  it("array() spans length elements of the element's size", () => {
    const a = array(16, 5, u16(0));
    expect([a.size, a.stride, a.length]).toEqual([10, 2, 5]);
    expect(a.at(100, 4)).toBe(100 + 16 + 8);
  });
});

describe("struct()", () => {
  it.each([
    ["a field past the end", { ok: u32(0), late: u32(6) }, /struct probe\.late/],
    ["a field at a negative offset", { early: u8(-1) }, /struct probe\.early/],
    ["a u64 at the last byte", { big: u64(7) }, /struct probe\.big/],
    ["bytes running past the end", { name: bytes(4, 5) }, /struct probe\.name/],
    ["an array running past the end", { xs: array(0, 3, u32(0)) }, /struct probe\.xs/],
    ["a nested struct running past the end", { seg: nested(4, blkif_request_segment) }, /struct probe\.seg/],
  ])("rejects %s with a RangeError naming struct and field", (_name, fields, message) => {
    expect(() => struct("struct probe", 8, fields)).toThrow(RangeError);
    expect(() => struct("struct probe", 8, fields)).toThrow(message);
  });

  it("reports the offending byte range and sizeof", () => {
    expect(() => struct("struct probe", 8, { late: u32(6) })).toThrow("struct probe.late: bytes 6..10 lie outside sizeof 8");
  });

  it("accepts fields that end exactly at sizeof", () => {
    const s = struct("struct probe", 8, { a: u32(0), b: u32(4), all: bytes(0, 8), seg: nested(0, blkif_request_segment) });
    expect(s.size).toBe(8);
    expect(Object.keys(s.fields)).toEqual(["a", "b", "all", "seg"]);
  });
});

/** A blkif_request with every field, and all 11 segments, set to distinct values. */
function fullRequest() {
  return {
    operation: 1,
    nr_segments: 11,
    handle: 0xbeef,
    id: 0xfedcba9876543210n,
    sector_number: 2n ** 53n + 7n,
    seg: Array.from({ length: 11 }, (_, i) => ({ gref: 0x80000000 + i * 0x01010101, first_sect: i % 8, last_sect: 7 - (i % 4) })),
  };
}

describe("decodeStruct / encodeStruct", () => {
  it("round-trip a fully populated blkif_request with 11 segments", () => {
    const { view } = filled(BASE + blkif_request.size + 8);
    const req = fullRequest();
    encodeStruct(blkif_request, view, BASE, req);
    expect(decodeStruct(blkif_request, view, BASE)).toEqual(req);
  });

  it("place a blkif_request's fields at their C offsets", () => {
    const { raw, view } = filled(BASE + blkif_request.size + 8);
    encodeStruct(blkif_request, view, BASE, fullRequest());
    const at = (off: number, n: number) => Array.from(raw.subarray(BASE + off, BASE + off + n));
    expect(at(0, 4)).toEqual([1, 11, 0xef, 0xbe]);
    // Padding between handle and id is not a field, so it is not written.
    expect(at(4, 4)).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    expect(at(8, 8)).toEqual([0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
    expect(at(16, 8)).toEqual([7, 0, 0, 0, 0, 0, 0x20, 0]);
    // seg[10]: gref 0x8a0a0a0a, first_sect 2, last_sect 5, then 2 bytes of padding.
    expect(at(24 + 80, 8)).toEqual([0x0a, 0x0a, 0x0a, 0x8a, 2, 5, SENTINEL, SENTINEL]);
    expect(raw[BASE + blkif_request.size]).toBe(SENTINEL);
  });

  it("round-trip a start_info with magic, command line and the console union", () => {
    const raw = new Uint8Array(BASE + start_info.size);
    const view = new DataView(raw.buffer);
    const magic = ascii("xen-3.0-x86_64");
    const cmdLine = ascii("console=hvc0 root=/dev/xvda1 ro");
    encodeStruct(start_info, view, BASE, {
      magic,
      nr_pages: 0x40000n,
      shared_info: 0x1234000n,
      flags: 0,
      store_mfn: 0xfeffen,
      store_evtchn: 1,
      console_domU_mfn: 0x0000000b_fffff000n,
      console_domU_evtchn: 2,
      pt_base: 0xffffffff80000000n,
      nr_pt_frames: 6n,
      mfn_list: 0xffffffff80400000n,
      mod_start: 0n,
      mod_len: 0n,
      cmd_line: cmdLine,
      first_p2m_pfn: 0n,
      nr_p2m_frames: 0n,
    });

    const si = decodeStruct(start_info, view, BASE);
    expect(si.magic.length).toBe(32);
    expect(Array.from(si.magic.subarray(0, magic.length))).toEqual(Array.from(magic));
    expect(si.magic.subarray(magic.length).every((b) => b === 0)).toBe(true);
    expect(new TextDecoder().decode(si.cmd_line.subarray(0, si.cmd_line.indexOf(0)))).toBe("console=hvc0 root=/dev/xvda1 ro");
    expect(si.cmd_line.length).toBe(1024);
    expect(si.pt_base).toBe(0xffffffff80000000n);
    expect(si.store_evtchn).toBe(1);
    expect(si.console_domU_mfn).toBe(0x0000000b_fffff000n);
    expect(si.console_domU_evtchn).toBe(2);
    // The dom0 view of the union reads the same 8 bytes as two u32s.
    expect(si.console_dom0_info_off).toBe(0xfffff000);
    expect(si.console_dom0_info_size).toBe(0xb);

    // Re-encoding the decoded object into a zeroed buffer reproduces the bytes exactly.
    const copy = new Uint8Array(BASE + start_info.size);
    encodeStruct(start_info, new DataView(copy.buffer), BASE, si);
    expect(copy.subarray(BASE)).toEqual(raw.subarray(BASE));
  });

  it.each([
    [0x00000001_00000002n, 2, 1],
    [0xffffffff_00000000n, 0, 0xffffffff],
    [0x00000000_ffffffffn, 0xffffffff, 0],
    [0x89abcdef_01234567n, 0x01234567, 0x89abcdef],
  ])("start_info console_domU_mfn %s reads as dom0 info_off %s / info_size %s", (mfn, off, size) => {
    const { view } = filled(start_info.size);
    start_info.fields.console_domU_mfn.set(view, 0, mfn);
    expect(start_info.fields.console_dom0_info_off.get(view, 0)).toBe(off);
    expect(start_info.fields.console_dom0_info_size.get(view, 0)).toBe(size);
    // And the other way round.
    const other = filled(start_info.size);
    encodeStruct(start_info, other.view, 0, { console_dom0_info_off: off, console_dom0_info_size: size });
    expect(decodeStruct(start_info, other.view, 0).console_domU_mfn).toBe(mfn);
  });

  it("writing the dom0 console view leaves console_domU_evtchn alone", () => {
    const { view } = filled(start_info.size, 0);
    start_info.fields.console_domU_evtchn.set(view, 0, 77);
    encodeStruct(start_info, view, 0, { console_dom0_info_off: 0xffffffff, console_dom0_info_size: 0xffffffff });
    expect(decodeStruct(start_info, view, 0).console_domU_evtchn).toBe(77);
  });

  it("encodeStruct leaves unmentioned fields and bytes untouched", () => {
    const { raw, view } = filled(BASE + blkif_request.size + 8);
    encodeStruct(blkif_request, view, BASE, { id: 0n, handle: 0 });
    expect(changedBytes(raw)).toEqual([BASE + 2, BASE + 3, ...Array.from({ length: 8 }, (_, i) => BASE + 8 + i)]);
  });

  it("encodeStruct writes only the array elements given", () => {
    const { raw, view } = filled(BASE + blkif_request.size);
    encodeStruct(blkif_request, view, BASE, { seg: [{ gref: 0, first_sect: 0, last_sect: 0 }] });
    expect(changedBytes(raw)).toEqual([0, 1, 2, 3, 4, 5].map((i) => BASE + 24 + i));
  });

  it("encodeStruct writes only the nested fields given", () => {
    const raw = new Uint8Array(shared_info.size).fill(SENTINEL);
    const view = new DataView(raw.buffer);
    encodeStruct(shared_info, view, 0, { arch: { max_pfn: 0n } });
    expect(changedBytes(raw)).toEqual(Array.from({ length: 8 }, (_, i) => 3088 + i));
  });

  it("encodeStruct skips fields whose value is undefined", () => {
    const { raw, view } = filled(blkif_request.size);
    encodeStruct(blkif_request, view, 0, { id: undefined, operation: 0 });
    expect(changedBytes(raw)).toEqual([0]);
  });

  it("encodeStruct accepts a number for a 64-bit field", () => {
    const { view } = filled(blkif_request.size);
    encodeStruct(blkif_request, view, 0, { sector_number: 4096 });
    expect(blkif_request.fields.sector_number.get(view, 0)).toBe(4096n);
  });

  it("encodeStruct throws a TypeError naming an unknown field", () => {
    const { raw, view } = filled(blkif_request.size);
    expect(() => encodeStruct(blkif_request, view, 0, { sectors: 1 })).toThrow(TypeError);
    expect(() => encodeStruct(blkif_request, view, 0, { sectors: 1 })).toThrow("struct blkif_request has no field sectors");
    expect(changedBytes(raw)).toEqual([]);
    expect(() => encodeStruct(blkif_request, view, 0, { seg: [{ sect: 2 }] })).toThrow(TypeError);
    expect(() => encodeStruct(blkif_request, view, 0, { seg: [{ sect: 2 }] })).toThrow(
      "struct blkif_request_segment has no field sect",
    );
  });

  it("encodeStruct rejects an array longer than the field", () => {
    const { raw, view } = filled(blkif_request.size);
    const seg = Array.from({ length: 12 }, () => ({ gref: 1 }));
    expect(() => encodeStruct(blkif_request, view, 0, { seg })).toThrow(RangeError);
    expect(() => encodeStruct(blkif_request, view, 0, { seg })).toThrow("12 elements do not fit an array of 11");
    expect(changedBytes(raw)).toEqual([]);
  });

  it("encodeStruct rejects over-long bytes", () => {
    const { view } = filled(start_info.size);
    expect(() => encodeStruct(start_info, view, 0, { magic: new Uint8Array(33) })).toThrow(RangeError);
  });
});

describe("zeroStruct", () => {
  it.each([
    ["blkif_response", blkif_response, 16],
    ["blkif_request", blkif_request, 112],
    ["vcpu_info", vcpu_info, 64],
  ] as const)("zeroes the %s bytes at base and not one more", (_name, layout, size) => {
    const { raw, view } = filled(BASE + size + 16, 0xff);
    zeroStruct(layout, view, BASE);
    expect(raw.subarray(BASE, BASE + size).every((b) => b === 0)).toBe(true);
    expect(raw[BASE - 1]).toBe(0xff);
    expect(raw[BASE + size]).toBe(0xff);
    expect(changedBytes(raw, 0xff)).toHaveLength(size);
  });

  it("defaults base to 0", () => {
    const { raw, view } = filled(32, 0xff);
    zeroStruct(blkif_response, view);
    expect(changedBytes(raw, 0xff)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });
});

describe("a DataView with a non-zero byteOffset into a SharedArrayBuffer", () => {
  const VIEW_OFFSET = 64;
  function shared() {
    const sab = new SharedArrayBuffer(VIEW_OFFSET + 256 + 64);
    const raw = new Uint8Array(sab).fill(SENTINEL);
    return { raw, view: new DataView(sab, VIEW_OFFSET, 256) };
  }

  it("scalar accessors address bytes relative to the view", () => {
    const { raw, view } = shared();
    blkif_request.fields.handle.set(view, 8, 0x0102);
    blkif_request.fields.id.set(view, 8, 0x1122334455667788n);
    expect(Array.from(raw.subarray(VIEW_OFFSET + 8 + 2, VIEW_OFFSET + 8 + 4))).toEqual([0x02, 0x01]);
    expect(raw[VIEW_OFFSET + 8 + 8]).toBe(0x88);
    expect(raw[VIEW_OFFSET + 8 + 15]).toBe(0x11);
  });

  it("encodeStruct and decodeStruct round-trip relative to the view", () => {
    const { raw, view } = shared();
    const req = fullRequest();
    encodeStruct(blkif_request, view, 8, req);
    expect(decodeStruct(blkif_request, view, 8)).toEqual(req);
    expect(raw[VIEW_OFFSET + 8]).toBe(1);
    expect(raw[VIEW_OFFSET + 8 + 1]).toBe(11);
    expect(raw.subarray(0, VIEW_OFFSET + 8).every((b) => b === SENTINEL)).toBe(true);
  });

  it("bytes get and set address bytes relative to the view, and get copies", () => {
    const { raw, view } = shared();
    const f = bytes(4, 8);
    f.set(view, 16, Uint8Array.from([1, 2, 3]));
    expect(Array.from(raw.subarray(VIEW_OFFSET + 20, VIEW_OFFSET + 28))).toEqual([1, 2, 3, 0, 0, 0, 0, 0]);
    expect(raw[VIEW_OFFSET + 19]).toBe(SENTINEL);
    expect(raw[VIEW_OFFSET + 28]).toBe(SENTINEL);
    const got = f.get(view, 16);
    expect(Array.from(got)).toEqual([1, 2, 3, 0, 0, 0, 0, 0]);
    got.fill(9);
    expect(raw[VIEW_OFFSET + 20]).toBe(1);
  });

  it("zeroStruct zeroes relative to the view", () => {
    const { raw, view } = shared();
    zeroStruct(blkif_response, view, 8);
    expect(changedBytes(raw)).toEqual(Array.from({ length: 16 }, (_, i) => VIEW_OFFSET + 8 + i));
  });
});

describe("accesses stay inside the view they are given", () => {
  // A page view from guest memory must never let a struct spill into the next page.
  const twoPages = () => {
    const m = FlatGuestMemory.ofPages(2);
    m.bytes.fill(0xff);
    return { m, v: m.page(0) };
  };

  it("zeroStruct refuses a struct that runs past the end of the view", () => {
    const { m, v } = twoPages();
    expect(() => zeroStruct(blkif_response, v, PAGE_SIZE - 8)).toThrow(RangeError);
    expect(m.bytes[PAGE_SIZE]).toBe(0xff);
    expect(m.bytes[PAGE_SIZE - 1]).toBe(0xff);
  });

  it.each(["get", "set"] as const)("a bytes field's %s refuses to run past the end of the view", (op) => {
    const { m, v } = twoPages();
    const magic = start_info.fields.magic;
    expect(() => (op === "get" ? magic.get(v, PAGE_SIZE - 16) : magic.set(v, PAGE_SIZE - 16, new Uint8Array(32)))).toThrow(RangeError);
    expect(m.bytes.subarray(PAGE_SIZE - 16, PAGE_SIZE + 16).every((b) => b === 0xff)).toBe(true);
  });

  it.each(["constructor", "toString", "__proto__", "hasOwnProperty"])("encodeStruct names an unknown field %s even when Object.prototype has it", (name) => {
    const v = new DataView(new ArrayBuffer(blkif_request.size));
    expect(() => encodeStruct(blkif_request, v, 0, JSON.parse(`{"${name}": 1}`))).toThrow(`struct blkif_request has no field ${name}`);
  });

  it("encodeStruct with an unknown field writes nothing", () => {
    const v = new DataView(new ArrayBuffer(blkif_request.size));
    expect(() => encodeStruct(blkif_request, v, 0, { id: 5n, nonsense: 1 } as never)).toThrow(/no field nonsense/);
    expect(new Uint8Array(v.buffer).every((b) => b === 0)).toBe(true);
  });
});
