/**
 * Compiling and running small C programs against Xen's real public headers,
 * for the conformance and interop tests.
 *
 * The headers come from Debian's `libxen-dev` (`/usr/include/xen`); the test
 * command installs it when it runs as root. Without it the C-backed tests are
 * skipped on a developer's machine and fail under CI, where they must run.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where the real headers live. */
export const XEN_INCLUDE = "/usr/include/xen";

/** True when gcc and the Xen headers are both present. */
export const haveXenHeaders: boolean =
  existsSync(join(XEN_INCLUDE, "xen.h")) && spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;

/** Under CI a missing toolchain is a failure, not a reason to skip. */
export function requireXenHeaders(): void {
  if (!haveXenHeaders && process.env["CI"]) {
    throw new Error(`CI must run the C-backed tests: install gcc and libxen-dev (${XEN_INCLUDE}/xen.h is missing)`);
  }
}

/**
 * The preamble every harness starts with: tools-level interface version (so
 * domctl/sysctl are visible and the newest layouts apply), barriers for
 * io/ring.h, and the headers pvkit mirrors.
 */
export const XEN_PREAMBLE = `
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define xen_mb()  __sync_synchronize()
#define xen_rmb() __sync_synchronize()
#define xen_wmb() __sync_synchronize()
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/callback.h>
#include <xen/version.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>
#include <xen/io/xenbus.h>
`;

/** Compiles `source` with gcc into a fresh temporary directory and returns the binary's path. */
export function compileC(name: string, source: string): string {
  const dir = mkdtempSync(join(tmpdir(), `pvkit-${name}-`));
  const src = join(dir, `${name}.c`);
  const bin = join(dir, name);
  writeFileSync(src, source);
  try {
    execFileSync("gcc", ["-std=gnu11", "-O1", "-Wall", "-Werror", "-Wno-unused-function", "-o", bin, src], {
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`gcc failed on ${src}:\n${err.stderr?.toString() ?? String(e)}`);
  }
  return bin;
}

/** Runs a compiled harness with `input` on stdin; returns its stdout and stderr, throws on a non-zero exit. */
export function runC(bin: string, args: readonly string[] = [], input?: Uint8Array): { stdout: Buffer; stderr: string } {
  const r = spawnSync(bin, args, { input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${bin} exited ${r.status}: ${r.stderr.toString()}`);
  return { stdout: r.stdout, stderr: r.stderr.toString() };
}
