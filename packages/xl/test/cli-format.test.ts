/**
 * What xl prints, table-driven against real xl's formats. Where xl prints
 * with `printf`, a C program with xl's own format strings (from
 * `tools/xl/xl_info.c`, `xl_vcpu.c`, `xl_sched.c`, `xl_block.c`,
 * `xl_nic.c`, and `xentop.c`'s summary) prints the same rows, and the
 * outputs must be byte for byte the same; the rest are tables of
 * (values, expected text) taken from xl's code and manual.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { BlockInfo, DomainSummaryResult, NicInfo, VcpuInfo } from "@pvkit/xl";
import {
  BLOCK_LIST_HEADER,
  cFixed,
  formatBlock,
  formatInfo,
  formatList,
  formatListLong,
  formatNic,
  formatSchedDomain,
  formatSchedPool,
  formatUptime,
  formatVcpu,
  formatXentop,
  NETWORK_LIST_HEADER,
  parseMemSizeKiB,
  SCHED_CREDIT_HEADER,
  uptimeString,
  VCPU_LIST_HEADER,
  xentopState,
  type XentopDomain,
} from "../src/cli/format.js";

const haveGcc = spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;

/** Runs a C program whose `main` body is `body` and returns what it printed. */
function runC(body: string): string {
  const dir = mkdtempSync(join(tmpdir(), "pvkit-xl-format-"));
  writeFileSync(join(dir, "f.c"), `#include <stdio.h>\n#include <stdint.h>\nint main(void) {\n${body}\nreturn 0;\n}\n`);
  execFileSync("gcc", ["-std=gnu11", "-w", "-o", join(dir, "f"), join(dir, "f.c")]);
  return execFileSync(join(dir, "f"), { encoding: "utf8" });
}

const cstr = (s: string) => JSON.stringify(s);

const DOMAINS: DomainSummaryResult[] = [
  { domid: 0, name: "Domain-0", memKiB: 768 * 1024, maxMemKiB: 768 * 1024, vcpus: 4, state: "r-----", cpuNs: 11794_312_456_789 },
  { domid: 1, name: "win", memKiB: 1019 * 1024 + 512, maxMemKiB: 2048 * 1024, vcpus: 1, state: "--p---", cpuNs: 300_000_000 },
  { domid: 2, name: "linux", memKiB: 2048 * 1024, maxMemKiB: 2048 * 1024, vcpus: 2, state: "-b----", cpuNs: 5624_249_999_999 },
  { domid: 3, name: "crashed", memKiB: 4096, maxMemKiB: 4096, vcpus: 1, state: "---sc-", cpuNs: 50_000_000 },
  { domid: 32767, name: "a-domain-name-longer-than-the-forty-columns-of-xl", memKiB: 123_456_789, maxMemKiB: 123_456_789, vcpus: 32, state: "-b---d", cpuNs: 16_777_217_000_000_000 },
];

const VCPUS: VcpuInfo[] = [
  { domid: 0, name: "Domain-0", vcpu: 0, cpu: 1, state: "r--", online: true, running: true, blocked: false, cpuNs: 11_794_300_000_000, affinity: "all" },
  { domid: 0, name: "Domain-0", vcpu: 1, cpu: 0, state: "-b-", online: true, running: false, blocked: true, cpuNs: 0, affinity: "0-1" },
  { domid: 2, name: "linux", vcpu: 3, cpu: -1, state: "--p", online: false, running: false, blocked: false, cpuNs: 1_234_567_890, affinity: "all" },
];

const DISKS: BlockInfo[] = [
  { devid: 51712, backendDomid: 0, state: 4, backendState: 4, eventChannel: 11, backendPath: "/local/domain/0/backend/vbd/2/51712", vdev: "xvda", ringRef: 8, target: "/srv/a.img", mode: "w" },
  { devid: 51728, backendDomid: 0, state: 1, backendState: 2, eventChannel: -1, backendPath: "/local/domain/0/backend/vbd/2/51728", vdev: "xvdb", ringRef: -1, target: "/srv/b.img", mode: "r" },
];

const NICS: NicInfo[] = [
  { devid: 0, backendDomid: 0, state: 4, backendState: 4, eventChannel: 12, backendPath: "/local/domain/0/backend/vif/2/0", mac: "00:16:3e:00:02:00", bridge: "xenbr0", txRingRef: 9, rxRingRef: 10 },
  { devid: 1, backendDomid: 3, state: 1, backendState: 2, eventChannel: -1, backendPath: "/local/domain/3/backend/vif/2/1", mac: "00:16:3e:5f:48:e4", bridge: "lan", txRingRef: -1, rxRingRef: -1 },
];

describe.skipIf(!haveGcc && !process.env["CI"])("xl's printf formats, printed by C", () => {
  it("xl list (list_domains)", () => {
    const rows = DOMAINS.map(
      (d) =>
        `printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f\\n", ${cstr(d.name)}, ${d.domid}, (unsigned long)(${d.memKiB}ULL / 1024), ${d.vcpus}, ${[...d.state].map((c) => `'${c}'`).join(", ")}, ((float)${d.cpuNs}ULL / 1e9));`,
    );
    const c = runC(`printf("Name                                        ID   Mem VCPUs\\tState\\tTime(s)\\n");\n${rows.join("\n")}`);
    expect(formatList(DOMAINS)).toBe(c);
  });

  it("xl list -Z -c -n (the extra columns)", () => {
    const rows = DOMAINS.map(
      (d) =>
        `printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", ${cstr(d.name)}, ${d.domid}, (unsigned long)(${d.memKiB}ULL / 1024), ${d.vcpus}, ${[...d.state].map((c) => `'${c}'`).join(", ")}, ((float)${d.cpuNs}ULL / 1e9)); printf(" %16s", "-"); printf("%16s", "Pool-0"); putchar(' '); printf("all"); putchar('\\n');`,
    );
    const header = `printf("Name                                        ID   Mem VCPUs\\tState\\tTime(s)"); printf("   Security Label"); printf("         Cpupool"); printf(" NODE Affinity"); printf("\\n");`;
    expect(formatList(DOMAINS, { context: true, cpupool: true, numa: true })).toBe(runC(`${header}\n${rows.join("\n")}`));
  });

  it("xl vcpu-list (print_vcpuinfo)", () => {
    const rows = VCPUS.map((v) => {
      const head = `printf("%-32s %5u %5u", ${cstr(v.name)}, ${v.domid}, ${v.vcpu});`;
      const state = v.online ? `printf("%5u %3c%c- ", ${v.cpu}, '${v.running ? "r" : "-"}', '${v.blocked ? "b" : "-"}');` : `printf("%5c %3c%cp ", '-', '-', '-');`;
      return `${head} ${state} printf("%9.1f  ", ((float)${v.cpuNs}ULL / 1e9)); printf("%s / %s\\n", ${cstr(v.affinity)}, "all");`;
    });
    const header = `printf("%-32s %5s %5s %5s %5s %9s %s\\n", "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)");`;
    expect(VCPU_LIST_HEADER + VCPUS.map((v) => formatVcpu(v)).join("")).toBe(runC(`${header}\n${rows.join("\n")}`));
  });

  it("xl sched-credit (sched_credit_domain_output, sched_credit_pool_output)", () => {
    const entries = [
      { domid: 0, name: "Domain-0", weight: 256, cap: 0 },
      { domid: 7, name: "a-long-name-of-more-than-thirty-three-columns", weight: 65535, cap: 400 },
    ];
    const c = runC(
      [
        `printf("Cpupool %s: tslice=%dms ratelimit=%dus migration-delay=%dus\\n", "Pool-0", 30, 1000, 0);`,
        `printf("Cpupool %s: [sched params unavailable]\\n", "Pool-0");`,
        `printf("%-33s %4s %6s %4s\\n", "Name", "ID", "Weight", "Cap");`,
        ...entries.map((e) => `printf("%-33s %4d %6d %4d\\n", ${cstr(e.name)}, ${e.domid}, ${e.weight}, ${e.cap});`),
      ].join("\n"),
    );
    const ts = formatSchedPool({ name: "Pool-0", tsliceMs: 30, ratelimitUs: 1000, migrationDelayUs: 0 }) + formatSchedPool(undefined) + SCHED_CREDIT_HEADER + entries.map(formatSchedDomain).join("");
    expect(ts).toBe(c);
  });

  it("xl block-list (main_blocklist)", () => {
    const c = runC(
      [
        `printf("%-5s %-3s %-6s %-5s %-6s %-8s %-30s\\n", "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path");`,
        ...DISKS.map((b) => `printf("%-5d %-3d %-6d %-5d %-6d %-8d %-30s\\n", ${b.devid}, ${b.backendDomid}, 2, ${b.state}, ${b.eventChannel}, ${b.ringRef}, ${cstr(b.backendPath)});`),
      ].join("\n"),
    );
    expect(BLOCK_LIST_HEADER + DISKS.map((b) => formatBlock(b, 2)).join("")).toBe(c);
  });

  it("xl network-list (main_networklist)", () => {
    const c = runC(
      [
        `printf("%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s\\n", "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path");`,
        ...NICS.map(
          (n) =>
            `printf("%-3d %-2d ", ${n.devid}, ${n.backendDomid}); printf("%s", ${cstr(n.mac)}); printf("%6d %5d %6d %5d/%-11d %-30s\\n", ${n.devid}, ${n.state}, ${n.eventChannel}, ${n.txRingRef}, ${n.rxRingRef}, ${cstr(n.backendPath)});`,
        ),
      ].join("\n"),
    );
    expect(NETWORK_LIST_HEADER + NICS.map(formatNic).join("")).toBe(c);
  });

  it("%.1f rounds as glibc does, ties to even", () => {
    const values = [6.25, 6.35, 0.05, 0.15, 0.25, 1.05, 2.5, 3.5, 99.95, 12345.65, 0, 1e-9, 1234567.25];
    const c = runC(values.map((v) => `printf("%.1f|%.0f\\n", (double)(${v}), (double)(${v}));`).join("\n"));
    expect(values.map((v) => `${cFixed(v, 1)}|${cFixed(v, 0)}\n`).join("")).toBe(c);
  });
});

describe("xl list -l", () => {
  it("prints libxl's JSON of each domain the toolstack keeps a config for, memory as it is now", () => {
    const config = {
      name: "web",
      kernel: "file:///srv/web.js",
      memoryMiB: 64,
      maxMemMiB: 128,
      vcpus: 2,
      cmdline: "role=web",
      weight: 512,
      cap: 0,
      onPoweroff: "destroy" as const,
      onReboot: "restart" as const,
      onCrash: "preserve" as const,
      onWatchdog: "destroy" as const,
      disks: [{ target: "/srv/web.img", vdev: "xvda", mode: "w" as const }],
      vifs: [{ mac: "00:16:3e:00:00:01", bridge: "xenbr0" }],
    };
    const text = formatListLong([DOMAINS[0]!, { ...DOMAINS[2]!, domid: 5, memKiB: 32768, maxMemKiB: 131072, config }]);
    expect(text.endsWith("]\n\n")).toBe(true);
    expect(JSON.parse(text)).toEqual([
      {
        domid: 5,
        config: {
          c_info: { type: "pv", name: "web" },
          b_info: {
            max_vcpus: 2,
            avail_vcpus: [0, 1],
            max_memkb: 131072,
            target_memkb: 32768,
            sched_params: { weight: 512, cap: 0 },
            kernel: "file:///srv/web.js",
            cmdline: "role=web",
            "type.pv": {},
            arch_arm: {},
            arch_x86: {},
          },
          disks: [{ pdev_path: "/srv/web.img", vdev: "xvda", format: "raw", readwrite: 1 }],
          nics: [{ devid: 0, mac: "00:16:3e:00:00:01", bridge: "xenbr0" }],
          // libxl's JSON leaves out an action at its initial value, destroy.
          on_reboot: "restart",
          on_crash: "preserve",
          on_soft_reset: "soft_reset",
        },
      },
    ]);
  });
});

describe("xl uptime (uptime_to_string, print_domU_uptime)", () => {
  it.each<[number, boolean, string]>([
    [0, false, " 0:00:00"],
    [59, false, " 0:00:59"],
    [3661, false, " 1:01:01"],
    [36000, false, "10:00:00"],
    [86400 + 3600 + 5, false, "1 day,  1:00:05"],
    [3 * 86400 + 45296, false, "3 days, 12:34:56"],
    [3661, true, " 1:01"],
    [86400, true, "1 day,  0:00"],
    [2 * 86400 + 60, true, "2 days,  0:01"],
  ])("%i s (short: %s) is %j", (seconds, short, text) => {
    expect(uptimeString(seconds, short)).toBe(text);
  });

  it("prints `%-33s %4d %s` rows under a header, or xl's short lines", () => {
    const entries = [
      { domid: 0, name: "Domain-0", uptimeNs: 93_784_000_000_000 },
      { domid: 3, name: "web", uptimeNs: 65_500_000_000 },
    ];
    expect(formatUptime(entries, false, new Date())).toBe(
      [`${"Name".padEnd(33)}   ID Uptime`, `${"Domain-0".padEnd(33)}    0 1 day,  2:03:04`, `${"web".padEnd(33)}    3  0:01:05`, ""].join("\n"),
    );
    expect(formatUptime(entries, true, new Date(2024, 0, 1, 9, 5, 7))).toBe(" 09:05:07 up 1 day,  2:03, Domain-0 (0)\n 09:05:07 up  0:01, web (3)\n");
  });
});

describe("xl info", () => {
  const values = { host: "box", nr_cpus: 2, virt_caps: "", total_memory: 256, xen_major: 4, xen_minor: 17, xen_extra: ".0", xen_version: "4.17.0", pvkit_extra: "yes", xend_config_format: 4 };

  it("prints `name : value`, names padded to 23 columns in xl's order, unknown names after, xend_config_format last", () => {
    expect(formatInfo(values)).toBe(
      [
        "host                   : box",
        "nr_cpus                : 2",
        "virt_caps              :",
        "total_memory           : 256",
        "xen_major              : 4",
        "xen_minor              : 17",
        "xen_extra              : .0",
        "xen_version            : 4.17.0",
        "pvkit_extra            : yes",
        "xend_config_format     : 4",
        "",
      ].join("\n"),
    );
  });

  it("`xl info NAME` prints the values of the lines starting with NAME, as maybe_printf filters", () => {
    expect(formatInfo(values, "total_memory")).toBe("256\n");
    expect(formatInfo(values, "xen_m")).toBe("4\n17\n");
    expect(formatInfo(values, "virt_caps")).toBe("");
  });
});

describe("xl mem-set / mem-max sizes (parse_mem_size_kb)", () => {
  it.each<[string, number | undefined]>([
    ["256", 256 * 1024],
    ["256m", 256 * 1024],
    ["256M", 256 * 1024],
    ["2048k", 2048],
    ["1g", 1024 * 1024],
    ["1t", 1024 ** 3],
    ["1048576b", 1024],
    ["1500b", 1],
    ["lots", undefined],
    ["12q", undefined],
    ["1mb", undefined],
    ["-5", undefined],
    ["", undefined],
  ])("%j is %s KiB", (text, kib) => {
    expect(parseMemSizeKiB(text)).toBe(kib);
  });
});

describe("xl top (xentop)", () => {
  it.each<[string, string]>([
    ["r-----", "-----r"],
    ["-b----", "--b---"],
    ["--p---", "----p-"],
    ["---sc-", "-s-c--"],
    ["---s--", "-s----"],
    ["-----d", "d-----"],
    ["---sr-", "-s----"],
  ])("xl's state %s is xentop's %s", (xl, top) => {
    expect(xentopState(xl)).toBe(top);
  });

  const host = { xenVersion: "4.17.0", nrCpus: 2, cpuMhz: 2400, totalMemKiB: 262144, freeMemKiB: 200000 };
  const dom0: XentopDomain = { domid: 0, name: "Domain-0", state: "r-----", cpuNs: 12_000_000_000, memKiB: 16384, maxMemKiB: 16384, vcpus: 1, nets: 0, netTxBytes: 0, netRxBytes: 0, vbds: 0 };
  const web: XentopDomain = {
    domid: 1,
    name: "webserver-number-one",
    state: "-b----",
    cpuNs: 1_500_000_000,
    memKiB: 65536,
    vcpus: 2,
    vcpuNs: [1_000_000_000, 500_000_000],
    nets: 1,
    netTxBytes: 2048,
    netRxBytes: 1_073_741_824_000,
    netDetail: [{ rxBytes: 1_073_741_824_000, rxPackets: 9, rxErrs: 0, rxDrop: 0, txBytes: 2048, txPackets: 3, txErrs: 0, txDrop: 0 }],
    vbds: 1,
    vbdDetail: [{ devid: 51712, oo: 0, rd: 12, wr: 3, rsect: 96, wsect: 24 }],
    vbdStats: { oo: 0, rd: 12, wr: 3, rsect: 96, wsect: 24 },
  };

  it("batch mode: the header and a row per domain, by name, columns as xentop's fields", () => {
    const previous = { domains: [{ ...web, cpuNs: 1_000_000_000 }, dom0], elapsedMs: 1000 };
    expect(formatXentop(host, [web, dom0], previous, new Date(), { batch: true })).toBe(
      [
        "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k)   NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID",
        "  Domain-0 -----r         12    0.0      16384    6.2      16384       6.2     1    0        0          0    0        0        0        0          0          0    0",
        "webserver- --b---          1   50.0      65536   25.0   no limit       n/a     2    1        2 1048576000    1        0       12        3         96         24    0",
        "",
      ].join("\n"),
    );
  });

  it("interactive: the summary first; -f, -z, -v, -n, -x add what xentop adds", () => {
    const text = formatXentop(host, [web, dom0], undefined, new Date(2024, 0, 1, 13, 4, 5), { fullName: true, dom0First: true, vcpus: true, networks: true, vbds: true });
    expect(text.split("\n").slice(0, 3)).toEqual([
      "xentop - 13:04:05   Xen 4.17.0",
      "2 domains: 1 running, 1 blocked, 0 paused, 0 crashed, 0 dying, 0 shutdown ",
      "Mem: 262144k total, 62144k used, 200000k free    CPUs: 2 @ 2400MHz",
    ]);
    expect(text).toContain("\nwebserver-number-one --b---");
    expect(text).toContain("\nVCPUs(sec):   0:          1s  1:          0s\n");
    expect(text).toContain("\nNet0 RX: 1073741824000bytes        9pkts        0err        0drop  TX:     2048bytes        3pkts        0err        0drop\n");
    expect(text).toContain("\nVBD BlkBack 51712 [ca: 0]  OO:        0   RD:       12   WR:        3   RSECT:         96   WSECT:         24\n");
    expect(text.indexOf("Domain-0")).toBeLessThan(text.indexOf("webserver-number-one"));
  });

  it("prints `-` for block counters it does not have, 0 for a domain without disks", () => {
    const { vbdStats: _, ...unknown } = web;
    const row = formatXentop(host, [unknown], undefined, new Date(), { batch: true }).split("\n")[1]!;
    expect(row.split(/\s+/).slice(13, 19)).toEqual(["1", "-", "-", "-", "-", "-"]);
  });
});
