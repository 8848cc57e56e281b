/**
 * Unit tests of {@link FlatGuestMemory} and {@link GuestFault}
 * (`src/platform.ts`): construction checks, page views that alias guest
 * memory, byte copies across page boundaries, and faults outside the mapping.
 */
import { describe, expect, it } from "vitest";
import { FlatGuestMemory, GuestFault, PAGE_SIZE, vcpu_info } from "../src/index.js";

const BASE_VA = 0x40000;
const PAGES = 3;
const END_VA = BASE_VA + PAGES * PAGE_SIZE;

const mem = (): FlatGuestMemory => FlatGuestMemory.ofPages(PAGES, BASE_VA);

/** Runs `f`, which must throw a GuestFault, and returns the fault. */
function fault(f: () => unknown): GuestFault {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(GuestFault);
    return e as GuestFault;
  }
  throw new Error("expected a GuestFault");
}

describe("FlatGuestMemory construction", () => {
  it.each([1, PAGE_SIZE - 1, PAGE_SIZE + 1, 2 * PAGE_SIZE + 512])("rejects %s bytes (not whole pages)", (length) => {
    expect(() => new FlatGuestMemory(new Uint8Array(length))).toThrow(RangeError);
    expect(() => new FlatGuestMemory(new Uint8Array(length))).toThrow(/whole pages/);
  });

  it.each([1, 0x800, PAGE_SIZE + 8, BASE_VA - 1])("rejects base address %s (not page-aligned)", (baseVa) => {
    expect(() => new FlatGuestMemory(new Uint8Array(PAGE_SIZE), baseVa)).toThrow(RangeError);
    expect(() => new FlatGuestMemory(new Uint8Array(PAGE_SIZE), baseVa)).toThrow(/page boundary/);
  });

  it("maps the given bytes at the given base without copying", () => {
    const bytes = new Uint8Array(2 * PAGE_SIZE);
    const m = new FlatGuestMemory(bytes, BASE_VA);
    bytes[PAGE_SIZE + 5] = 0x7e;
    expect(m.read(BASE_VA + PAGE_SIZE + 5, 1)).toEqual(Uint8Array.of(0x7e));
    m.write(BASE_VA + 3, Uint8Array.of(9));
    expect(bytes[3]).toBe(9);
  });

  it("maps at virtual address 0 by default", () => {
    const m = new FlatGuestMemory(new Uint8Array(PAGE_SIZE));
    m.write(0, Uint8Array.of(1));
    expect(m.read(0, 1)).toEqual(Uint8Array.of(1));
    expect(fault(() => m.read(PAGE_SIZE, 1)).va).toBe(PAGE_SIZE);
  });

  it("maps the bytes of a Uint8Array that is itself a window into a larger buffer", () => {
    const backing = new Uint8Array(4 * PAGE_SIZE);
    const m = new FlatGuestMemory(backing.subarray(PAGE_SIZE, 3 * PAGE_SIZE), BASE_VA);
    m.write(BASE_VA, Uint8Array.of(0x11));
    m.page(BASE_VA + PAGE_SIZE).setUint8(0, 0x22);
    expect(backing[PAGE_SIZE]).toBe(0x11);
    expect(backing[2 * PAGE_SIZE]).toBe(0x22);
    expect(backing[0]).toBe(0);
  });
});

describe("FlatGuestMemory.ofPages", () => {
  it.each([
    [false, ArrayBuffer],
    [true, SharedArrayBuffer],
  ] as const)("shared=%s is backed by %o", (shared, Kind) => {
    const m = FlatGuestMemory.ofPages(2, BASE_VA, shared);
    expect(m.bytes.buffer).toBeInstanceOf(Kind);
    expect(m.bytes.byteLength).toBe(2 * PAGE_SIZE);
    expect(m.baseVa).toBe(BASE_VA);
    expect(m.bytes.every((b) => b === 0)).toBe(true);
  });

  it("defaults to an unshared buffer at address 0", () => {
    const m = FlatGuestMemory.ofPages(1);
    expect(m.baseVa).toBe(0);
    expect(m.bytes.buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it("page views of shared memory are over the SharedArrayBuffer", () => {
    const m = FlatGuestMemory.ofPages(2, 0, true);
    const v = m.page(PAGE_SIZE + 100);
    expect(v.buffer).toBe(m.bytes.buffer);
    expect(v.buffer).toBeInstanceOf(SharedArrayBuffer);
  });

  it("rejects an unaligned base address", () => {
    expect(() => FlatGuestMemory.ofPages(1, 0x123)).toThrow(RangeError);
  });
});

describe("FlatGuestMemory.page", () => {
  it.each([
    ["the first byte of the first page", BASE_VA, 0],
    ["the middle of the first page", BASE_VA + 0x123, 0],
    ["the last byte of the first page", BASE_VA + PAGE_SIZE - 1, 0],
    ["the first byte of the second page", BASE_VA + PAGE_SIZE, 1],
    ["the last byte of the last page", END_VA - 1, PAGES - 1],
  ])("at %s is the whole containing page", (_name, va, pageIndex) => {
    const m = mem();
    const v = m.page(va);
    expect(v.byteLength).toBe(PAGE_SIZE);
    expect(v.byteOffset - m.bytes.byteOffset).toBe(pageIndex * PAGE_SIZE);
  });

  it("aliases guest memory: writes through the view are seen by read", () => {
    const m = mem();
    const va = BASE_VA + PAGE_SIZE + 0x40;
    m.page(va).setUint32(va % PAGE_SIZE, 0xcafebabe, true);
    expect(Array.from(m.read(va, 4))).toEqual([0xbe, 0xba, 0xfe, 0xca]);
    // Nothing else in guest memory changed.
    expect(m.bytes.reduce((n, b) => n + (b === 0 ? 0 : 1), 0)).toBe(4);
  });

  it("aliases guest memory: writes are seen through a view taken earlier", () => {
    const m = mem();
    const va = BASE_VA + 2 * PAGE_SIZE + 0x80;
    const v = m.page(va);
    m.write(va, Uint8Array.of(1, 2, 3, 4));
    expect(v.getUint32(0x80, true)).toBe(0x04030201);
  });

  it("two views of the same page alias each other", () => {
    const m = mem();
    const a = m.page(BASE_VA + PAGE_SIZE);
    const b = m.page(BASE_VA + 2 * PAGE_SIZE - 1);
    a.setUint16(10, 0xabcd, true);
    expect(b.getUint16(10, true)).toBe(0xabcd);
  });

  it("lets a struct at va be accessed at va % PAGE_SIZE", () => {
    const m = mem();
    const va = BASE_VA + PAGE_SIZE + 3 * 64;
    vcpu_info.fields.evtchn_pending_sel.set(m.page(va), va % PAGE_SIZE, 1n << 40n);
    expect(Array.from(m.read(va + 8, 8))).toEqual([0, 0, 0, 0, 0, 1, 0, 0]);
  });
});

describe("FlatGuestMemory.read / write", () => {
  it("copy bytes across a page boundary", () => {
    const m = mem();
    const va = BASE_VA + PAGE_SIZE - 3;
    m.write(va, Uint8Array.of(1, 2, 3, 4, 5, 6));
    expect(Array.from(m.read(va, 6))).toEqual([1, 2, 3, 4, 5, 6]);
    const first = m.page(va);
    const second = m.page(va + 3);
    expect([first.getUint8(PAGE_SIZE - 3), first.getUint8(PAGE_SIZE - 1)]).toEqual([1, 3]);
    expect([second.getUint8(0), second.getUint8(2)]).toEqual([4, 6]);
  });

  it("read returns a copy", () => {
    const m = mem();
    m.write(BASE_VA + 16, Uint8Array.of(5, 6));
    const got = m.read(BASE_VA + 16, 2);
    got.fill(0xff);
    expect(Array.from(m.read(BASE_VA + 16, 2))).toEqual([5, 6]);
  });

  it("write copies: later changes to the source do not reach guest memory", () => {
    const m = mem();
    const src = Uint8Array.of(7, 8);
    m.write(BASE_VA, src);
    src[0] = 0;
    expect(Array.from(m.read(BASE_VA, 2))).toEqual([7, 8]);
  });

  it("reads and writes the whole mapping", () => {
    const m = mem();
    const all = Uint8Array.from({ length: PAGES * PAGE_SIZE }, (_, i) => (i * 7) & 0xff);
    m.write(BASE_VA, all);
    expect(m.read(BASE_VA, all.length)).toEqual(all);
  });

  it.each([
    ["at the exact end", END_VA],
    ["at the base", BASE_VA],
  ])("allow zero bytes %s", (_name, va) => {
    const m = mem();
    expect(() => m.write(va, new Uint8Array(0))).not.toThrow();
    expect(m.read(va, 0)).toEqual(new Uint8Array(0));
  });

  it("allow the last byte", () => {
    const m = mem();
    m.write(END_VA - 1, Uint8Array.of(0x5a));
    expect(m.read(END_VA - 1, 1)).toEqual(Uint8Array.of(0x5a));
  });
});

describe("GuestFault", () => {
  it.each([
    ["read below the base", (m: FlatGuestMemory) => m.read(BASE_VA - 1, 1), BASE_VA - 1, "read of 1 bytes"],
    ["read a page below the base", (m: FlatGuestMemory) => m.read(BASE_VA - PAGE_SIZE, 4), BASE_VA - PAGE_SIZE, "read of 4 bytes"],
    ["read at the end", (m: FlatGuestMemory) => m.read(END_VA, 1), END_VA, "read of 1 bytes"],
    ["read far past the end", (m: FlatGuestMemory) => m.read(END_VA + 0x10000, 8), END_VA + 0x10000, "read of 8 bytes"],
    ["read starting inside, running past the end", (m: FlatGuestMemory) => m.read(END_VA - 2, 4), END_VA - 2, "read of 4 bytes"],
    ["read of a negative length", (m: FlatGuestMemory) => m.read(BASE_VA + 8, -1), BASE_VA + 8, "read of -1 bytes"],
    ["read at a non-integer address", (m: FlatGuestMemory) => m.read(BASE_VA + 0.5, 1), BASE_VA + 0.5, "read of 1 bytes"],
    ["read at NaN", (m: FlatGuestMemory) => m.read(Number.NaN, 1), Number.NaN, "read of 1 bytes"],
    ["write below the base", (m: FlatGuestMemory) => m.write(BASE_VA - 4, new Uint8Array(8)), BASE_VA - 4, "write of 8 bytes"],
    ["write at the end", (m: FlatGuestMemory) => m.write(END_VA, Uint8Array.of(1)), END_VA, "write of 1 bytes"],
    ["write running past the end", (m: FlatGuestMemory) => m.write(END_VA - 1, Uint8Array.of(1, 2)), END_VA - 1, "write of 2 bytes"],
    ["empty write past the end", (m: FlatGuestMemory) => m.write(END_VA + 1, new Uint8Array(0)), END_VA + 1, "write of 0 bytes"],
    ["write at a non-integer address", (m: FlatGuestMemory) => m.write(BASE_VA + 1.25, Uint8Array.of(1)), BASE_VA + 1.25, "write of 1 bytes"],
    ["page at the end", (m: FlatGuestMemory) => m.page(END_VA), END_VA, "page access"],
    ["page below the base", (m: FlatGuestMemory) => m.page(BASE_VA - PAGE_SIZE), BASE_VA - PAGE_SIZE, "page access"],
  ])("%s faults with the address", (_name, access, va, what) => {
    const m = mem();
    const f = fault(() => access(m));
    expect(f.va).toBe(va);
    expect(f.name).toBe("GuestFault");
    expect(f).toBeInstanceOf(Error);
    expect(f.message).toContain(what);
    expect(f.message).toContain(`0x${va.toString(16)}`);
  });

  it.each([
    ["below the base", BASE_VA - 1],
    ["past the end", END_VA + 0x123],
  ])("page %s faults", (_name, va) => {
    const f = fault(() => mem().page(va));
    expect(f.message).toMatch(/^page fault: page access at guest virtual address 0x[0-9a-f]+$/);
  });

  it("formats the address in lower-case hex", () => {
    expect(new GuestFault(0xdeadb000, "write of 8 bytes").message).toBe(
      "page fault: write of 8 bytes at guest virtual address 0xdeadb000",
    );
  });

  it("a faulting write changes nothing", () => {
    const m = mem();
    expect(() => m.write(END_VA - 2, Uint8Array.of(1, 2, 3))).toThrow(GuestFault);
    expect(m.bytes.every((b) => b === 0)).toBe(true);
  });

  it("faults for memory mapped at a higher base when the address is below it", () => {
    const m = FlatGuestMemory.ofPages(1, 0x100000);
    expect(fault(() => m.read(0, 1)).va).toBe(0);
    expect(fault(() => m.page(0x100000 - 1)).message).toContain("page access");
  });
});

describe("FlatGuestMemory.page faults on the address asked for", () => {
  it.each([-1, -4095, 0.5, 1.5, Number.NaN])("page(%s) faults", (va) => {
    expect(() => FlatGuestMemory.ofPages(1).page(va)).toThrow(GuestFault);
  });

  it.each([PAGE_SIZE + 0x123, 2 * PAGE_SIZE - 1, 0x7000])("a fault at 0x%s reports that address, not its page", (va) => {
    try {
      FlatGuestMemory.ofPages(1).page(va);
      expect.unreachable();
    } catch (e) {
      expect((e as GuestFault).va).toBe(va);
      expect((e as GuestFault).message).toContain(`0x${va.toString(16)}`);
    }
  });
});
