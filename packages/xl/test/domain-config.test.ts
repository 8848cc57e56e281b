/**
 * What a configuration means to pvkit: defaults, every supported key, every
 * refusal, and the libxl JSON `xl create -n` prints. Debian's example
 * configs (xen-utils-common, /etc/xen/xlexample.*) are read at test time:
 * the PV one must decode in dry-run mode, the PVH and HVM ones be refused.
 */
import { existsSync, readFileSync } from "node:fs";
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import {
  applyOverrides,
  decodeDomainConfig,
  DomainConfigCodec,
  isKernelModule,
  libxlDomainConfigJson,
  parseCfg,
  parseDomainConfig,
  stringifyLibxlJson,
  type DecodeOptions,
  type ParseDomainConfigOptions,
  type DecodedDomainConfig,
  type DomainConfig,
} from "@pvkit/xl";

const KERNEL = 'kernel = "@pvkit/domu/hello"';

function decode(text: string, options: ParseDomainConfigOptions = {}): DecodedDomainConfig {
  const r = parseDomainConfig(text, "t.cfg", options);
  if (E.isLeft(r)) throw new Error(r.left.map((e) => e.message).join("\n"));
  return r.right;
}

function errorsOf(text: string, options: DecodeOptions = {}): string[] {
  const r = parseDomainConfig(text, "t.cfg", options);
  if (E.isRight(r)) throw new Error(`expected errors, got ${JSON.stringify(r.right.config)}`);
  return r.left.map((e) => e.message);
}

const DEFAULTS: DomainConfig = {
  name: "web",
  type: "pv",
  kernel: { kind: "module", specifier: "@pvkit/domu/hello" },
  memory: 32,
  maxmem: 32,
  vcpus: 1,
  maxvcpus: 1,
  cpuWeight: 256,
  cap: 0,
  onPoweroff: "destroy",
  onReboot: "restart",
  onCrash: "destroy",
  onWatchdog: "destroy",
  disks: [],
  vifs: [],
  explicit: ["name", "kernel"],
};

describe("defaults", () => {
  it("a name and a kernel are enough: libxl's defaults for the rest", () => {
    const { config, warnings } = decode(`name = "web"\n${KERNEL}`);
    expect(config).toEqual(DEFAULTS);
    expect(warnings).toEqual([]);
    expect(DomainConfigCodec.is(config)).toBe(true);
  });

  it.each<[string, string, Partial<DomainConfig>]>([
    ["type defaults to pv; an explicit pv is the same", 'type = "pv"', { type: "pv" }],
    ["memory alone sets maxmem", "memory = 128", { memory: 128, maxmem: 128 }],
    ["maxmem alone sets memory (a guest not ballooned down)", "maxmem = 256", { memory: 256, maxmem: 256 }],
    ["vcpus alone sets maxvcpus", "vcpus = 4", { vcpus: 4, maxvcpus: 4 }],
    ["maxvcpus alone sets vcpus", "maxvcpus = 4", { vcpus: 4, maxvcpus: 4 }],
    ["extra is the command line", 'extra = "root=/dev/xvda1"', { cmdline: "root=/dev/xvda1" }],
    ["cmdline is the command line", 'cmdline = "console=hvc0"', { cmdline: "console=hvc0" }],
    ["numbers may be strings, as xl reads them", 'memory = "0x100"', { memory: 256, maxmem: 256 }],
    ["numbers may be octal", "memory = 0200", { memory: 128, maxmem: 128 }],
  ])("%s", (_what, line, want) => {
    expect(decode(`name = "web"\n${KERNEL}\n${line}`).config).toMatchObject(want);
  });
});

describe("every supported key", () => {
  const text = [
    'name = "web"',
    'type = "pv"',
    'kernel = "file:///opt/pvkit/kernels/web.mjs"',
    'cmdline = "role=web"',
    "memory = 64",
    "maxmem = 128",
    "vcpus = 2",
    "maxvcpus = 4",
    "cpu_weight = 512",
    "cap = 50",
    'on_poweroff = "preserve"',
    'on_reboot = "destroy"',
    'on_crash = "restart"',
    'on_watchdog = "preserve"',
    "disk = [ '/srv/web.img,raw,xvda,rw', '/srv/data.img,,xvdb,ro' ]",
    "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr1', '' ]",
  ].join("\n");

  it("decodes them all", () => {
    const { config, warnings } = decode(text);
    expect(config).toEqual({
      name: "web",
      type: "pv",
      kernel: { kind: "module", specifier: "file:///opt/pvkit/kernels/web.mjs" },
      cmdline: "role=web",
      memory: 64,
      maxmem: 128,
      vcpus: 2,
      maxvcpus: 4,
      cpuWeight: 512,
      cap: 50,
      onPoweroff: "preserve",
      onReboot: "destroy",
      onCrash: "restart",
      onWatchdog: "preserve",
      disks: [
        { target: "/srv/web.img", format: "raw", vdev: "xvda", access: "rw", devtype: "disk", directIoSafe: false },
        { target: "/srv/data.img", format: "raw", vdev: "xvdb", access: "ro", devtype: "disk", directIoSafe: false },
      ],
      vifs: [{ mac: "00:16:3e:00:00:01", bridge: "xenbr1", unknown: [] }, { unknown: [] }],
      explicit: ["name", "type", "kernel", "cmdline", "memory", "maxmem", "vcpus", "maxvcpus", "cpu_weight", "cap", "on_poweroff", "on_reboot", "on_crash", "on_watchdog", "disk", "vif"],
    });
    expect(warnings).toEqual([]);
    expect(DomainConfigCodec.is(config)).toBe(true);
  });

  it("prints the libxl JSON xl create -n prints", () => {
    expect(libxlDomainConfigJson(decode(text).config)).toEqual({
      c_info: { type: "pv", name: "web" },
      b_info: {
        max_vcpus: 4,
        avail_vcpus: [0, 1],
        max_memkb: 131072,
        target_memkb: 65536,
        sched_params: { weight: 512, cap: 50 },
        kernel: "file:///opt/pvkit/kernels/web.mjs",
        cmdline: "role=web",
        "type.pv": {},
        arch_arm: {},
        arch_x86: {},
      },
      disks: [
        { pdev_path: "/srv/web.img", vdev: "xvda", format: "raw", readwrite: 1 },
        { pdev_path: "/srv/data.img", vdev: "xvdb", format: "raw" },
      ],
      nics: [
        { devid: 0, mac: "00:16:3e:00:00:01", bridge: "xenbr1" },
        { devid: 1 },
      ],
      // on_reboot = "destroy" is libxl's initial value, which its JSON writer leaves out.
      on_poweroff: "preserve",
      on_watchdog: "preserve",
      on_crash: "restart",
      on_soft_reset: "soft_reset",
    });
  });

  it("leaves out what libxl would default, and prints it all in list mode", () => {
    const { config } = decode(`name = "web"\n${KERNEL}`);
    expect(libxlDomainConfigJson(config, { uuid: "6b1c3e2c-47f4-4a45-a0b5-2f3ad4f1a7a1" })).toEqual({
      c_info: { type: "pv", name: "web", uuid: "6b1c3e2c-47f4-4a45-a0b5-2f3ad4f1a7a1" },
      b_info: { sched_params: {}, kernel: "@pvkit/domu/hello", "type.pv": {}, arch_arm: {}, arch_x86: {} },
      on_reboot: "restart",
      on_soft_reset: "soft_reset",
    });
    expect(libxlDomainConfigJson(config, { mode: "list" })["b_info"]).toEqual({
      max_vcpus: 1,
      avail_vcpus: [0],
      max_memkb: 32768,
      target_memkb: 32768,
      sched_params: { weight: 256, cap: 0 },
      kernel: "@pvkit/domu/hello",
      "type.pv": {},
      arch_arm: {},
      arch_x86: {},
    });
  });

  it("cmdline wins over extra, with a warning, as in xl", () => {
    const { config, warnings } = decode(`name = "web"\n${KERNEL}\nextra = "a"\ncmdline = "b"`);
    expect(config.cmdline).toBe("b");
    expect(warnings).toEqual(["t.cfg:4:11: extra= ignored in favour of cmdline="]);
  });

  it.each([
    ["/opt/kernels/web.js", true],
    ["./web.mjs", true],
    ["../kernels/web.js", true],
    ["file:///opt/kernels/web.mjs", true],
    ["@pvkit/domu/hello", true],
    ["@pvkit/domu", true],
    ["my-kernel", true],
    ["my-kernel/server", true],
    ["/boot/vmlinuz", false],
    ["/boot/vmlinuz-6.1.0-amd64", false],
    ["./vmlinuz", false],
    ["file:///boot/vmlinuz", false],
    ["https://example.org/web.js", false],
    ["data:text/javascript,export default 1", false],
    ["C:\\kernels\\web.js", false],
    ["@pvkit/Domu", false],
    ["", false],
  ])("isKernelModule(%j) is %s", (kernel, want) => {
    expect(isKernelModule(kernel)).toBe(want);
  });

  it("vif warnings carry their place", () => {
    const { warnings } = decode(`name = "web"\n${KERNEL}\nvif = [ 'bridge=xenbr0,foo=1,model=e1000' ]`);
    expect(warnings).toEqual(['t.cfg:3:9: vif[0]: unrecognized argument "foo=1" (kept, not used)', "t.cfg:3:9: vif[0]: type= and model= apply to HVM guests only; ignored"]);
  });

  it("disk remarks carry their place", () => {
    const { warnings } = decode(`name = "web"\n${KERNEL}\ndisk = [ 'phy:/srv/web.img,xvda,w,backendtype=qdisk,script=block-x' ]`);
    expect(warnings).toEqual([
      't.cfg:3:10: disk[0]: prefix "phy:" is deprecated and ignored',
      "t.cfg:3:10: disk[0]: backendtype=qdisk ignored: pvkit's dom0 serves disks with its own blkback",
      "t.cfg:3:10: disk[0]: script=block-x not run: pvkit has no hotplug scripts",
    ]);
  });

  it("applies xl create's overrides after the file", () => {
    const { config } = decode(`name = "web"\n${KERNEL}\nmemory = 64`, { overrides: ["memory=256", "vif=['bridge=xenbr1']"] });
    expect(config).toMatchObject({ memory: 256, maxmem: 256, vifs: [{ bridge: "xenbr1", unknown: [] }] });
  });
});

describe("refusals name the key and the place", () => {
  const base = `name = "web"\n${KERNEL}\n`;
  it.each<[string, string, string[]]>([
    ["type = hvm", 'type = "hvm"', ['t.cfg:3:8: type: "hvm" is refused: pvkit runs PV guests only, not HVM (write type = "pv" or leave type out)']],
    ["type = pvh", "type = 'pvh'", ['t.cfg:3:8: type: "pvh" is refused: pvkit runs PV guests only, not PVH (write type = "pv" or leave type out)']],
    ["an unknown type", 'type = "kvm"', ['t.cfg:3:8: type: invalid domain type "kvm" (xl knows "pv", "pvh" and "hvm"; pvkit runs "pv")']],
    ["a Linux kernel", 'kernel = "/boot/vmlinuz"', ["t.cfg:3:10: kernel: /boot/vmlinuz is not a pvkit kernel module (a .js/.mjs file or package specifier)"]],
    ["maxmem below memory", "memory = 128\nmaxmem = 64", ["t.cfg:4:10: maxmem: 64 MiB is less than memory (128 MiB); maxmem must be at least memory"]],
    ["maxvcpus below vcpus", "vcpus = 4\nmaxvcpus = 2", ["t.cfg:4:12: maxvcpus: 2 is less than vcpus (4); maxvcpus must be at least vcpus"]],
    ["no memory", "memory = 0", ["t.cfg:3:10: memory: 0 is out of range (MiB, at least 1)"]],
    ["no vcpus", "vcpus = 0", ["t.cfg:3:9: vcpus: 0 is out of range (1 to 32: a pvkit guest's vcpu_info lives in shared_info, XEN_LEGACY_MAX_VCPUS)"]],
    ["too many vcpus", "maxvcpus = 33", ["t.cfg:3:12: maxvcpus: 33 is out of range (1 to 32: a pvkit guest's vcpu_info lives in shared_info, XEN_LEGACY_MAX_VCPUS)"]],
    ["a weight of 0", "cpu_weight = 0", ["t.cfg:3:14: cpu_weight: 0 is out of range (1 to 65535)"]],
    ["a weight above 65535", "cpu_weight = 65536", ["t.cfg:3:14: cpu_weight: 65536 is out of range (1 to 65535)"]],
    ["a negative cap", 'cap = "-1"', ["t.cfg:3:7: cap: -1 is out of range (0 to 65535 % of one CPU; 0 is no cap)"]],
    ["a cap above 65535", "cap = 65536", ["t.cfg:3:7: cap: 65536 is out of range (0 to 65535 % of one CPU; 0 is no cap)"]],
    ["a word for a number", 'memory = "lots"', ['t.cfg:3:10: memory: expected a number, found the string "lots"']],
    ["a list for a number", "memory = [ 1 ]", ["t.cfg:3:10: memory: expected a number, found a list"]],
    ["a list for a name", "name = [ 'a' ]", ["t.cfg:3:8: name: expected a name, found a list (the key takes a single value)"]],
    ["a bad name", 'name = "my vm"', ['t.cfg:3:8: name: "my vm" is not a pvkit domain name (1 to 64 letters, digits, \'_\', \'.\', \'-\')']],
    ["an xl action pvkit lacks", 'on_crash = "coredump-destroy"', ['t.cfg:3:12: on_crash: "coredump-destroy" is an xl action pvkit does not support (pvkit supports destroy, restart and preserve)']],
    ["rename-restart", 'on_reboot = "rename-restart"', ['t.cfg:3:13: on_reboot: "rename-restart" is an xl action pvkit does not support (pvkit supports destroy, restart and preserve)']],
    ["soft-reset", 'on_watchdog = "soft-reset"', ['t.cfg:3:15: on_watchdog: "soft-reset" is an xl action pvkit does not support (pvkit supports destroy, restart and preserve)']],
    [
      "an unknown action",
      'on_poweroff = "halt"',
      ['t.cfg:3:15: on_poweroff: unknown action "halt" (xl knows destroy, restart, rename-restart, preserve, coredump-destroy, coredump-restart, soft-reset)'],
    ],
    ["a string for a list", "disk = '/srv/web.img,raw,xvda,rw'", ['t.cfg:3:8: disk: expected a list [ \'DISKSPEC\', ... ], found the string "/srv/web.img,raw,xvda,rw"']],
    ["a list in the disk list", "disk = [ [ 'a' ] ]", ["t.cfg:3:10: disk[0]: expected a diskspec string, found a list"]],
    ["a bad diskspec", "disk = [ '/srv/a.img,raw,xvda', '/srv/b.img,qcow3,xvdb' ]", ['t.cfg:3:33: disk[1]: "/srv/b.img,qcow3,xvdb": unknown format "qcow3" (xl knows raw, qcow, qcow2, vhd, qed, empty)']],
    ["a qcow2 image", "disk = [ '/srv/a.qcow2,qcow2,xvda' ]", ["t.cfg:3:10: disk[0]: format qcow2 is not supported by pvkit (raw images only)"]],
    ["an empty cdrom", "disk = [ ',,hdc:cdrom,r' ]", ["t.cfg:3:10: disk[0]: an empty cdrom drive is not supported by pvkit (give it an image)"]],
    ["an empty target", "disk = [ ',raw,xvda' ]", ["t.cfg:3:10: disk[0]: the target is empty: a disk needs an image file"]],
    ["virtio disks", "disk = [ '/srv/a.img,raw,xvda,specification=virtio' ]", ["t.cfg:3:10: disk[0]: specification=virtio is not supported by pvkit (its disks are Xen blkif devices)"]],
    ["a vdev that is no disk name", "disk = [ '/srv/a.img,raw,cdrom0' ]", ['t.cfg:3:10: disk[0]: vdev "cdrom0" is not a Xen virtual disk name (xvdX, hdX, sdX or dN; see xen-vbd-interface(7))']],
    ["a vdev used twice", "disk = [ '/srv/a.img,raw,xvda', '/srv/b.img,raw,xvda' ]", ["t.cfg:3:33: disk[1]: vdev xvda is already used by disk[0]"]],
    ["a bad vifspec", "vif = [ 'mac=00:16:3e:zz:00:01' ]", ['t.cfg:3:9: vif[0]: "mac=00:16:3e:zz:00:01": mac=00:16:3e:zz:00:01: not a MAC address (six hex bytes separated by colons, e.g. 00:16:3e:74:3d:76)']],
    ["a devid used twice", "vif = [ '', 'devid=0' ]", ["t.cfg:3:13: vif[1]: devid 0 is already used by vif[0]"]],
    ["COLO on a vif", "vif = [ 'forwarddev=eth1' ]", ["t.cfg:3:9: vif[0]: COLO settings (forwarddev) are not supported by pvkit"]],
    ["a command line too long for start_info", `extra = "${"x".repeat(1024)}"`, ["t.cfg:3:9: extra: 1024 bytes do not fit start_info's cmd_line (MAX_GUEST_CMDLINE is 1024 bytes with its NUL)"]],
  ])("%s", (_what, line, want) => {
    expect(errorsOf(base + line)).toEqual(want);
  });

  it("names unsupported keys, all at once", () => {
    const errors = errorsOf(`${base}builder = "hvm"\nmemory = 64\nvfb = [ 'vnc=1' ]`);
    expect(errors).toEqual([
      "t.cfg: unsupported key(s): builder, vfb (at t.cfg:3:11, t.cfg:5:7); pvkit reads only name, type, kernel, cmdline, extra, memory, maxmem, vcpus, maxvcpus, cpu_weight, cap, on_poweroff, on_reboot, on_crash, on_watchdog, disk, vif",
    ]);
    expect(errors[0]).toContain("unsupported key(s): builder, vfb");
  });

  it.each<[string, string, string[]]>([
    ["no name", KERNEL, ['t.cfg: name: missing: every domain needs a name (name = "...")']],
    ["no kernel", 'name = "web"', ['t.cfg: kernel: missing: pvkit boots a kernel module (kernel = "@pvkit/domu/hello")']],
  ])("%s", (_what, text, want) => {
    expect(errorsOf(text)).toEqual(want);
  });

  it("reports every problem of a configuration at once", () => {
    expect(errorsOf('type = "hvm"\nmemory = "lots"\nvcpus = 4\nmaxvcpus = 2\nsdl = 1')).toEqual([
      "t.cfg: unsupported key(s): sdl (at t.cfg:5:7); pvkit reads only name, type, kernel, cmdline, extra, memory, maxmem, vcpus, maxvcpus, cpu_weight, cap, on_poweroff, on_reboot, on_crash, on_watchdog, disk, vif",
      't.cfg:1:8: type: "hvm" is refused: pvkit runs PV guests only, not HVM (write type = "pv" or leave type out)',
      't.cfg:2:10: memory: expected a number, found the string "lots"',
      't.cfg: name: missing: every domain needs a name (name = "...")',
      't.cfg: kernel: missing: pvkit boots a kernel module (kernel = "@pvkit/domu/hello")',
      "t.cfg:4:12: maxvcpus: 2 is less than vcpus (4); maxvcpus must be at least vcpus",
    ]);
  });

  it("gives each error its key and place as fields", () => {
    const r = parseDomainConfig(`${base}type = "hvm"`, "t.cfg");
    expect(E.isLeft(r) && r.left[0]).toMatchObject({ key: "type", source: "t.cfg", line: 3, column: 8 });
  });

  it("reports syntax errors before meaning", () => {
    expect(errorsOf(`${base}memory =`)).toEqual(["t.cfg:3:9: expected a value after '=', found the end of the file"]);
  });

  it("dry run: a foreign kernel is recorded with a warning", () => {
    const { config, warnings } = decode('name = "web"\nkernel = "/boot/vmlinuz"', { allowForeignKernel: true });
    expect(config.kernel).toEqual({ kind: "foreign", path: "/boot/vmlinuz" });
    expect(warnings).toEqual(["t.cfg:2:10: kernel: /boot/vmlinuz is not a pvkit kernel module (a .js/.mjs file or package specifier); recorded for the dry run only"]);
  });

  it("dry run refuses everything else as before", () => {
    expect(errorsOf('name = "web"\nkernel = "/boot/vmlinuz"\ntype = "hvm"', { allowForeignKernel: true })).toEqual([
      't.cfg:3:8: type: "hvm" is refused: pvkit runs PV guests only, not HVM (write type = "pv" or leave type out)',
    ]);
  });

  it("decodes a map built by hand with overrides", () => {
    const r = E.chain((m: Parameters<typeof decodeDomainConfig>[0]) => applyOverrides(m, ['kernel="./k.js"']))(parseCfg('name = "web"', "t.cfg"));
    expect(E.isRight(r) && E.isRight(decodeDomainConfig(r.right))).toBe(true);
  });
});

describe("the DomainConfig codec", () => {
  it.each<[string, unknown]>([
    ["a type other than pv", { ...DEFAULTS, type: "hvm" }],
    ["too many vcpus", { ...DEFAULTS, maxvcpus: 64 }],
    ["a fractional memory", { ...DEFAULTS, memory: 1.5 }],
    ["an unknown action", { ...DEFAULTS, onCrash: "coredump-destroy" }],
    ["a bad disk", { ...DEFAULTS, disks: [{ vdev: "xvda" }] }],
    ["an unknown explicit key", { ...DEFAULTS, explicit: ["builder"] }],
  ])("refuses %s", (_what, value) => {
    expect(E.isLeft(DomainConfigCodec.decode(value))).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Debian's example configurations

const EXAMPLES = "/etc/xen";
const haveExamples = existsSync(`${EXAMPLES}/xlexample.pvlinux`);
if (!haveExamples && process.env["CI"]) {
  throw new Error(`CI must run the xl.cfg example tests: ${EXAMPLES}/xlexample.pvlinux is missing (the test setup installs xen-utils-common)`);
}
const describeExamples = haveExamples ? describe : describe.skip;
const readExample = (name: string) => readFileSync(`${EXAMPLES}/${name}`, "utf8");

describeExamples(`Debian's examples in ${EXAMPLES} (skipped without xen-utils-common)`, () => {
  const PVLINUX_JSON = `{
    "c_info": {
        "type": "pv",
        "name": "example.pvlinux"
    },
    "b_info": {
        "max_vcpus": 2,
        "avail_vcpus": [
            0,
            1
        ],
        "max_memkb": 131072,
        "target_memkb": 131072,
        "sched_params": {

        },
        "kernel": "/boot/vmlinuz",
        "cmdline": "root=/dev/xvda1",
        "type.pv": {

        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "disks": [
        {
            "pdev_path": "/dev/vg/guest-volume",
            "vdev": "xvda",
            "format": "raw",
            "readwrite": 1
        }
    ],
    "nics": [
        {
            "devid": 0
        }
    ],
    "on_reboot": "restart",
    "on_soft_reset": "soft_reset"
}
`;

  it("xlexample.pvlinux uses only keys pvkit reads", () => {
    const r = parseCfg(readExample("xlexample.pvlinux"), "xlexample.pvlinux");
    expect(E.isRight(r) && [...r.right.keys()]).toEqual(["name", "kernel", "extra", "memory", "vcpus", "vif", "disk"]);
  });

  it("xlexample.pvlinux parses in dry-run mode and gives xl's JSON", () => {
    const r = parseDomainConfig(readExample("xlexample.pvlinux"), `${EXAMPLES}/xlexample.pvlinux`, { allowForeignKernel: true });
    if (E.isLeft(r)) throw new Error(r.left.map((e) => e.message).join("\n"));
    expect(r.right.config).toMatchObject({ name: "example.pvlinux", kernel: { kind: "foreign", path: "/boot/vmlinuz" }, cmdline: "root=/dev/xvda1", memory: 128, vcpus: 2 });
    expect(r.right.warnings).toEqual([`${EXAMPLES}/xlexample.pvlinux:17:10: kernel: /boot/vmlinuz is not a pvkit kernel module (a .js/.mjs file or package specifier); recorded for the dry run only`]);
    expect(stringifyLibxlJson(libxlDomainConfigJson(r.right.config))).toBe(PVLINUX_JSON);
  });

  it("xlexample.pvlinux is refused outside dry-run mode, for its Linux kernel", () => {
    const r = parseDomainConfig(readExample("xlexample.pvlinux"), "xlexample.pvlinux");
    expect(E.isLeft(r) && r.left.map((e) => e.message)).toEqual(["xlexample.pvlinux:17:10: kernel: /boot/vmlinuz is not a pvkit kernel module (a .js/.mjs file or package specifier)"]);
  });

  it("xlexample.pvlinux with a pvkit kernel given on the command line decodes", () => {
    const r = parseDomainConfig(readExample("xlexample.pvlinux"), "xlexample.pvlinux", { overrides: ['kernel="@pvkit/domu/hello"'] });
    expect(E.isRight(r) && r.right.config.kernel).toEqual({ kind: "module", specifier: "@pvkit/domu/hello" });
  });

  it.each([
    ["xlexample.pvhlinux", "pvh", "PVH", 9],
    ["xlexample.hvm", "hvm", "HVM", 9],
  ])("%s is refused with the type message, even in dry-run mode", (file, type, upper, line) => {
    const r = parseDomainConfig(readExample(file), file, { allowForeignKernel: true });
    expect(E.isLeft(r) && r.left.map((e) => e.message)).toContain(`${file}:${line}:8: type: "${type}" is refused: pvkit runs PV guests only, not ${upper} (write type = "pv" or leave type out)`);
  });
});
