/**
 * DISKSPECs: the examples of xl-disk-configuration(5) and the cases of Xen's
 * own `tools/xl/check-xl-disk-parse`, whose expected output is the libxl
 * JSON of the disk (checked here through libxlDeviceDiskJson), and errors.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { libxlDeviceDiskJson, parseDiskSpec, stringifyLibxlJson, type DiskSpec, type LibxlJson } from "@pvkit/xl";

function disk(spec: string): { spec: DiskSpec; warnings: readonly string[] } {
  const r = parseDiskSpec(spec);
  if (E.isLeft(r)) throw new Error(`${spec}: ${r.left.join("; ")}`);
  return r.right;
}

const ISCSI = "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost";

// Groups of equivalent specs and the libxl_device_disk JSON xl prints for them (check-xl-disk-parse).
const CHECK_XL_DISK_PARSE: [string[], { [key: string]: LibxlJson }][] = [
  [
    ["/dev/vg/guest-volume,,hda", "/dev/vg/guest-volume,raw,hda,rw", "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume", "raw:/dev/vg/guest-volume,hda,w"],
    { pdev_path: "/dev/vg/guest-volume", vdev: "hda", format: "raw", readwrite: 1 },
  ],
  [
    [
      "/root/image.iso,,hdc,cdrom",
      "/root/image.iso,,hdc,,cdrom",
      "/root/image.iso,raw,hdc,devtype=cdrom",
      "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
      "raw:/root/image.iso,hdc:cdrom,ro",
    ],
    { pdev_path: "/root/image.iso", vdev: "hdc", format: "raw", removable: 1, is_cdrom: 1 },
  ],
  [["backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume"], { pdev_path: "/dev/vg/guest-volume", vdev: "xvdb", backend: "phy", format: "raw", readwrite: 1 }],
  [
    ["devtype=cdrom,,,hdc", ",,hdc:cdrom,r", ",hdc:cdrom,r", "vdev=hdc,access=r,devtype=cdrom,target=", ",empty,hdc:cdrom,r"],
    { pdev_path: "", vdev: "hdc", format: "empty", removable: 1, is_cdrom: 1 },
  ],
  [["vdev=hdc,access=r,devtype=cdrom,format=empty", "vdev=hdc,access=r,devtype=cdrom"], { vdev: "hdc", format: "empty", removable: 1, is_cdrom: 1 }],
  [
    [`iscsi:${ISCSI},xvda,w`, `vdev=xvda,access=w,script=block-iscsi,target=${ISCSI}`],
    { pdev_path: ISCSI, vdev: "xvda", format: "raw", script: "block-iscsi", readwrite: 1 },
  ],
  [["drbd:app01,hda,w"], { pdev_path: "app01", vdev: "hda", format: "raw", script: "block-drbd", readwrite: 1 }],
  [["discard,vdev=hda,target=/some/disk/image.raw"], { pdev_path: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: 1, discard_enable: "True" }],
  [["cdrom,no-discard,vdev=hda,target=/some/disk/image.iso"], { pdev_path: "/some/disk/image.iso", vdev: "hda", format: "raw", removable: 1, is_cdrom: 1, discard_enable: "False" }],
  [["trusted,vdev=hda,target=/some/disk/image.raw"], { pdev_path: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: 1, trusted: "True" }],
  [["untrusted,vdev=hda,target=/some/disk/image.raw"], { pdev_path: "/some/disk/image.raw", vdev: "hda", format: "raw", readwrite: 1, trusted: "False" }],
];

describe("Xen's check-xl-disk-parse cases give xl's JSON", () => {
  it.each(CHECK_XL_DISK_PARSE.flatMap(([specs, json]) => specs.map((s) => [s, json] as const)))("%s", (spec, json) => {
    expect(libxlDeviceDiskJson(disk(spec).spec)).toEqual(json);
  });

  it("prints as xl -N block-attach does", () => {
    expect(stringifyLibxlJson(libxlDeviceDiskJson(disk("/dev/vg/guest-volume,,hda").spec))).toBe(
      '{\n    "pdev_path": "/dev/vg/guest-volume",\n    "vdev": "hda",\n    "format": "raw",\n    "readwrite": 1\n}\n',
    );
  });
});

describe("the spec as pvkit reads it", () => {
  it.each<[string, string, DiskSpec]>([
    ["positional, all four", "/srv/web.img,raw,xvda,rw", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    ["positional, defaults for the empty ones", "/srv/web.img,,xvda", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    ["read-only as r", "/srv/web.img,raw,xvda,r", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "ro", devtype: "disk", directIoSafe: false }],
    ["read-only as ro", "/srv/web.img,raw,xvda,ro", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "ro", devtype: "disk", directIoSafe: false }],
    ["read-write as w", "/srv/web.img,raw,xvda,w", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    ["keywords in any order", "vdev=xvdb, access=ro, format=qcow2, target=/srv/data.qcow2", { target: "/srv/data.qcow2", format: "qcow2", vdev: "xvdb", access: "ro", devtype: "disk", directIoSafe: false }],
    ["target= takes commas", "vdev=xvda,target=/srv/a,b.img", { target: "/srv/a,b.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    ["the cdrom flag", "/iso/x.iso,,hdc,cdrom", { target: "/iso/x.iso", format: "raw", vdev: "hdc", access: "ro", devtype: "cdrom", directIoSafe: false }],
    ["devtype=disk", "/srv/web.img,raw,xvda,rw,devtype=disk", { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    [
      "backend, backendtype, script, specification, flags",
      "/srv/web.img,raw,xvda,rw,backend=stor,backendtype=qdisk,script=block-foo,specification=xen,direct-io-safe",
      { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", backend: "stor", backendtype: "qdisk", script: "block-foo", specification: "xen", directIoSafe: true },
    ],
    ["a deprecated phy: prefix", "phy:/dev/vg/web,xvda,w", { target: "/dev/vg/web", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    ["chained deprecated prefixes", "tap:aio:qcow2:/srv/web.qcow2,xvda,w", { target: "/srv/web.qcow2", format: "qcow2", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false }],
    [
      "COLO settings",
      "/srv/web.img,raw,xvda,rw,colo,colo-host=h,colo-port=9000,colo-export=e,active-disk=/a,hidden-disk=/h",
      { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false, colo: { enable: true, host: "h", port: 9000, export: "e", activeDisk: "/a", hiddenDisk: "/h" } },
    ],
  ])("%s: %s", (_what, spec, want) => {
    expect(disk(spec).spec).toEqual(want);
  });

  it.each<[string, string[]]>([
    ["/srv/web.img,raw,xvda,rw", []],
    ["phy:/dev/vg/web,xvda,w", ['prefix "phy:" is deprecated and ignored']],
    ["raw:/iso/x.iso,hdc:cdrom,r", ['prefix "raw:" is deprecated, use format=raw', '"hdc:cdrom": VDEV:TYPE is deprecated, use devtype=cdrom']],
    ["/iso/x.iso,raw,hdc,rw,cdrom", ["access=rw ignored: a cdrom is read-only"]],
  ])("warns of %s", (spec, warnings) => {
    expect(disk(spec).warnings).toEqual(warnings);
  });
});

describe("errors name the bad part", () => {
  it.each<[string, string[]]>([
    ["foo", ["no vdev specified"]],
    ["", ["no vdev specified"]],
    ["vdev=xvda", ["no target specified (and device not removable)"]],
    ["/srv/web.img,qcow3,xvda", ['unknown format "qcow3" (xl knows raw, qcow, qcow2, vhd, qed, empty)']],
    ["/srv/web.img,raw,xvda,rx", ['unknown access "rx" (rw, w, ro or r)']],
    ["/srv/web.img,raw,xvda,rw,ro", ['too many positional parameters: "ro" (the order is target, format, vdev, access)']],
    ["/srv/web.img,raw,xvda,devtype=floppy", ['unknown devtype "floppy" (cdrom or disk)']],
    ["/srv/web.img,raw,xvda,bogus=1", ['unknown parameter "bogus=1"']],
    ["/srv/web.img,raw,xvda,vdev=xvdb", ['vdev respecified: "xvdb" (already "xvda")']],
    ["/srv/web.img,raw,xvda,format=qcow2", ["format respecified: \"qcow2\" (already raw)"]],
    ["/srv/web.img,raw,xvda,backendtype=nbd", ['unknown backendtype "nbd" (xl knows phy, tap, qdisk, standalone)']],
    ["/srv/web.img,raw,xvda,specification=scsi", ['unknown specification "scsi" (xen or virtio)']],
    ["/srv/web.img,raw,xvda,colo-port=x", ['unknown value for colo-port: "x"']],
    ["foo:/srv/web.img,xvda", ['unknown deprecated disk prefix "foo:"']],
    ["/srv/web.img,raw,xvda,Foo=bar", ['bad disk syntax near "Foo=bar"']],
    [",hdc:tape,r", ['unknown device type "tape" in "hdc:tape" (cdrom or disk)']],
  ])("%j", (spec, errors) => {
    const r = parseDiskSpec(spec);
    expect(E.isLeft(r) && r.left).toEqual(errors);
  });
});
