import { describe, expect, it } from "vitest";
import { PAGE_SIZE, XENSTORE, xencons_interface, xenstore_domain_interface } from "@pvkit/abi";
import { RingProtocolError, consoleBackend, consoleGuest, xenstoreDaemon, xenstoreGuest } from "@pvkit/ring";

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

describe("console page", () => {
  it("guest output lands in `out` at the masked producer index and the daemon reads it", () => {
    const page = new Uint8Array(PAGE_SIZE);
    const guest = consoleGuest(page);
    expect(guest.tx.write(text("hello\n"))).toBe(6);
    const v = new DataView(page.buffer);
    expect(xencons_interface.fields.out_prod.get(v, 0)).toBe(6);
    expect(str(page.subarray(1024, 1030))).toBe("hello\n");
    expect(str(consoleBackend(page).rx.read())).toBe("hello\n");
    expect(xencons_interface.fields.out_cons.get(v, 0)).toBe(6);
  });

  it("typed input travels the other way through `in`", () => {
    const page = new Uint8Array(PAGE_SIZE);
    expect(consoleBackend(page).tx.write(text("ls\r"))).toBe(3);
    expect(str(page.subarray(0, 3))).toBe("ls\r");
    expect(str(consoleGuest(page).rx.read())).toBe("ls\r");
  });

  it("writes only what fits and says how much", () => {
    const page = new Uint8Array(PAGE_SIZE);
    const guest = consoleGuest(page);
    expect(guest.tx.write(new Uint8Array(3000).fill(65))).toBe(2048);
    expect(guest.tx.free()).toBe(0);
    expect(guest.tx.write(text("x"))).toBe(0);
    expect(consoleBackend(page).rx.read(100).length).toBe(100);
    expect(guest.tx.free()).toBe(100);
  });

  it("wraps its data at the ring's size with indexes past 2^32", () => {
    const page = new Uint8Array(PAGE_SIZE);
    const v = new DataView(page.buffer);
    const start = 0xffff_fffc;
    xencons_interface.fields.out_cons.set(v, 0, start);
    xencons_interface.fields.out_prod.set(v, 0, start);
    consoleGuest(page).tx.write(text("abcdefgh"));
    expect(xencons_interface.fields.out_prod.get(v, 0)).toBe(4);
    expect(str(page.subarray(1024 + 2044, 1024 + 2048))).toBe("abcd"); // (2^32 - 4) & 2047 = 2044
    expect(str(page.subarray(1024, 1028))).toBe("efgh");
    expect(str(consoleBackend(page).rx.read())).toBe("abcdefgh");
  });
});

describe("xenstore page", () => {
  it("a request written by the guest is read whole by the daemon, a reply goes back", () => {
    const page = new Uint8Array(PAGE_SIZE);
    const guest = xenstoreGuest(page);
    const daemon = xenstoreDaemon(page);
    guest.tx.write(text("request"));
    const head = new Uint8Array(3);
    expect(daemon.rx.peek(head)).toBe(3);
    expect(str(head)).toBe("req");
    expect(daemon.rx.queued()).toBe(7); // peeking consumed nothing
    expect(str(daemon.rx.read())).toBe("request");
    daemon.tx.write(text("reply"));
    expect(str(page.subarray(1024, 1029))).toBe("reply");
    expect(str(guest.rx.read())).toBe("reply");
  });

  it("masks indexes with XENSTORE_RING_SIZE - 1", () => {
    const page = new Uint8Array(PAGE_SIZE);
    const v = new DataView(page.buffer);
    xenstore_domain_interface.fields.req_cons.set(v, 0, 1020);
    xenstore_domain_interface.fields.req_prod.set(v, 0, 1020);
    xenstoreGuest(page).tx.write(text("12345678"));
    expect(str(page.subarray(1020, 1024))).toBe("1234");
    expect(str(page.subarray(0, 4))).toBe("5678");
    expect(XENSTORE.RING_SIZE).toBe(1024);
  });

  it.each([
    ["prod far ahead of cons", 0, 5000],
    ["prod one past a full ring", 0, 1025],
    ["prod behind cons", 100, 50],
  ])("a hostile guest's %s is a protocol error, not a read outside the ring", (_n, cons, prod) => {
    const page = new Uint8Array(PAGE_SIZE);
    const v = new DataView(page.buffer);
    xenstore_domain_interface.fields.req_cons.set(v, 0, cons);
    xenstore_domain_interface.fields.req_prod.set(v, 0, prod);
    const daemon = xenstoreDaemon(page);
    expect(() => daemon.rx.read()).toThrow(RingProtocolError);
    expect(() => daemon.rx.queued()).toThrow(/xenstore req ring/);
    expect(xenstore_domain_interface.fields.req_cons.get(v, 0)).toBe(cons); // nothing consumed
  });

  it("a hostile daemon's rsp indexes are refused by the guest too", () => {
    const page = new Uint8Array(PAGE_SIZE);
    xenstore_domain_interface.fields.rsp_prod.set(new DataView(page.buffer), 0, 4096);
    expect(() => xenstoreGuest(page).rx.read()).toThrow(RingProtocolError);
    expect(() => xenstoreGuest(page).tx.write(text("x"))).not.toThrow();
  });
});
