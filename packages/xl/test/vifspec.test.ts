/**
 * vifspecs: the examples of xl-network-configuration(5), the rate cases of
 * Xen's own `tools/xl/check-xl-vif-parse` (expected output: the libxl JSON
 * of the NIC), unknown keys and errors.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { libxlDeviceNicJson, parseMac, parseVifRate, parseVifSpec, stringifyLibxlJson, XEN_OUI, type VifSpec } from "@pvkit/xl";

function vif(spec: string): { spec: VifSpec; warnings: readonly string[] } {
  const r = parseVifSpec(spec);
  if (E.isLeft(r)) throw new Error(`${spec}: ${r.left.join("; ")}`);
  return r.right;
}

describe("the man page's examples", () => {
  it.each<[string, VifSpec]>([
    ["mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0", { mac: "00:16:3e:74:3d:76", model: "rtl8139", bridge: "xenbr0", unknown: [] }],
    ["mac=00:16:3E:74:34:32", { mac: "00:16:3e:74:34:32", unknown: [] }],
    ["", { unknown: [] }],
    ["mac=00:16:3e:5f:48:e4,bridge=xenbr1", { mac: "00:16:3e:5f:48:e4", bridge: "xenbr1", unknown: [] }],
    ["rate=10Mb/s", { rate: { text: "10Mb/s", bytesPerInterval: 62500, intervalUsecs: 50000 }, unknown: [] }],
    ["rate=250KB/s", { rate: { text: "250KB/s", bytesPerInterval: 12500, intervalUsecs: 50000 }, unknown: [] }],
    // "20,000 bytes replenished every 20,000 us"
    ["rate=1MB/s@20ms", { rate: { text: "1MB/s@20ms", bytesPerInterval: 20000, intervalUsecs: 20000 }, unknown: [] }],
  ])("%j", (spec, want) => {
    expect(vif(spec).spec).toEqual(want);
  });

  it("an empty vifspec is every default: no MAC, for the toolstack to pick in Xen's OUI", () => {
    expect(vif("").spec.mac).toBeUndefined();
    expect(XEN_OUI).toBe("00:16:3e");
  });
});

describe("every key", () => {
  it("reads them all", () => {
    const { spec, warnings } = vif(
      "mac=0:16:3e:1:2:3, bridge=br1,gatewaydev=eth0,type=vif,model=e1000,vifname=web0,script=vif-route,ip=10.0.0.2,backend=netdom,rate=8Gb/s@1s,devid=3,mtu=9000,untrusted",
    );
    expect(spec).toEqual({
      mac: "00:16:3e:01:02:03",
      bridge: "br1",
      gatewaydev: "eth0",
      type: "vif",
      model: "e1000",
      vifname: "web0",
      script: "vif-route",
      ip: "10.0.0.2",
      backend: "netdom",
      rate: { text: "8Gb/s@1s", bytesPerInterval: 1_000_000_000, intervalUsecs: 1_000_000 },
      devid: 3,
      mtu: 9000,
      trusted: false,
      unknown: [],
    });
    expect(warnings).toEqual([]);
  });

  it.each<[string, Partial<VifSpec>, string[]]>([
    ["netdev=eth1", { gatewaydev: "eth1" }, ["netdev= is deprecated, use gatewaydev="]],
    ["accel=foo", {}, ["accel=foo: the accel parameter for vifs is not supported, ignored"]],
    ["foo=bar,baz", { unknown: ["foo=bar", "baz"] }, ['unrecognized argument "foo=bar" (kept, not used)', 'unrecognized argument "baz" (kept, not used)']],
    ["forwarddev=eth2,colo_sock_mirror_id=m", { colo: { forwarddev: "eth2", colo_sock_mirror_id: "m" } }, []],
    ["mac=01:00:5e:00:00:01", { mac: "01:00:5e:00:00:01" }, ["mac=01:00:5e:00:00:01: a multicast address (bit 0 of the first byte is set)"]],
    [",,bridge=xenbr0,,", { bridge: "xenbr0" }, []],
    ["bridge=a,bridge=b", { bridge: "b" }, []],
  ])("%j", (spec, want, warnings) => {
    const r = vif(spec);
    expect(r.spec).toMatchObject(want);
    expect(r.warnings).toEqual(warnings);
  });
});

describe("rates, as check-xl-vif-parse expects them", () => {
  const json = (bytes: number, usecs: number) => `{\n    "rate_bytes_per_interval": ${bytes},\n    "rate_interval_usecs": ${usecs}\n}\n`;
  it.each<[string[], string]>([
    [["16000000b/s", "16000000b/s@50ms", "2000000B/s", "2000000B/s@50ms"], json(100000, 50000)],
    [["16Kb/s", "16Kb/s@50ms", "2KB/s", "2KB/s@50ms"], json(100, 50000)],
    [["16Mb/s", "16Mb/s@50ms", "2MB/s", "2MB/s@50ms"], json(100000, 50000)],
    [["8Gb/s", "8Gb/s@50ms", "1GB/s", "1GB/s@50ms"], json(50000000, 50000)],
    [["80Mb/s@1s", "10MB/s@1s"], json(10000000, 1000000)],
  ])("%j", (rates, want) => {
    for (const rate of rates) expect(stringifyLibxlJson(libxlDeviceNicJson(vif(`rate=${rate}`).spec))).toBe(want);
  });

  it.each([
    "foo",
    "10MB",
    "10MB/m",
    "10ZB",
    "10ZB/s",
    "4294967296b/s",
    "4294967296Kb/s",
    "4294967296Gb/s",
    "0B/s",
    "10Mb/s@foo",
    "10MB/s@10h",
    "1B/s@4294967296us",
    "1B/s@4294968ms",
    "1B/s@4295s",
    "1B/s@0us",
    "4294967295GB/s@5us",
    "4296MB/s@4294s",
    "@",
  ])("refuses rate=%s", (rate) => {
    expect(E.isLeft(parseVifRate(rate))).toBe(true);
    expect(E.isLeft(parseVifSpec(`rate=${rate}`))).toBe(true);
  });

  it("names the problem", () => {
    expect(parseVifRate("10ZB/s")).toEqual(E.left(['invalid rate "10ZB/s" (RATE/s, RATE in B, KB, MB, GB or b, Kb, Mb, Gb)']));
    expect(parseVifRate("0B/s")).toEqual(E.left(['rate overflow in "0B/s"']));
    expect(parseVifRate("1B/s@10h")).toEqual(E.left(['invalid replenishment interval "10h" (a number of s, ms or us)']));
  });

  it.each([
    ["trusted", '{\n    "trusted": "True"\n}\n'],
    ["untrusted", '{\n    "trusted": "False"\n}\n'],
  ])("%s prints as check-xl-vif-parse expects", (spec, want) => {
    expect(stringifyLibxlJson(libxlDeviceNicJson(vif(spec).spec))).toBe(want);
  });
});

describe("errors name the item", () => {
  it.each<[string, string[]]>([
    ["mac=00:16:3e:zz:00:01", ["mac=00:16:3e:zz:00:01: not a MAC address (six hex bytes separated by colons, e.g. 00:16:3e:74:3d:76)"]],
    ["mac=00:16:3e:00:01", ["mac=00:16:3e:00:01: not a MAC address (six hex bytes separated by colons, e.g. 00:16:3e:74:3d:76)"]],
    ["mac=00-16-3e-00-00-01", ["mac=00-16-3e-00-00-01: not a MAC address (six hex bytes separated by colons, e.g. 00:16:3e:74:3d:76)"]],
    ["type=virtio", ["type=virtio: invalid (vif or ioemu)"]],
    ["mtu=abc", ["mtu=abc: not a valid mtu (68 to 65535)"]],
    ["mtu=70000", ["mtu=70000: not a valid mtu (68 to 65535)"]],
    ["devid=-1", ["devid=-1: not a valid devid (a device number from 0)"]],
    ["rate=fast,mac=x", ['rate=fast: invalid rate "fast" (RATE/s, RATE in B, KB, MB, GB or b, Kb, Mb, Gb)', "mac=x: not a MAC address (six hex bytes separated by colons, e.g. 00:16:3e:74:3d:76)"]],
  ])("%j", (spec, errors) => {
    const r = parseVifSpec(spec);
    expect(E.isLeft(r) && r.left).toEqual(errors);
  });

  it.each([
    ["00:16:3E:74:3d:76", "00:16:3e:74:3d:76"],
    ["0:16:3e:a:b:c", "00:16:3e:0a:0b:0c"],
    ["00:16:3e:74:3d", undefined],
    ["00:16:3e:74:3d:76:77", undefined],
    ["00:16:3e:74:3d:100", undefined],
  ])("parseMac(%j)", (text, want) => {
    expect(parseMac(text)).toBe(want);
  });
});
