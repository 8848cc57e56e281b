/**
 * The first domU kernel: it introduces itself on its console, with what
 * `start_info` and the hypervisor told it, and powers off.
 *
 * @module
 */
import { HYPERVISOR, XENVER } from "@pvkit/abi";
import { kernelMain, type Kernel } from "@pvkit/kernel";

/** Prints the greeting; `name=` on the command line says who is speaking. */
export async function hello(k: Kernel): Promise<void> {
  const version = k.hypercall(HYPERVISOR.xen_version, XENVER.version, 0);
  const name = k.arg("name") ?? "a domU";
  await k.print(`Hello from ${name}!`);
  await k.print(`  Xen ${version >> 16}.${version & 0xffff}, ${k.memory.nrPages} pages (${k.memory.freePages} free), booted at ${k.clock.now()} ns`);
  await k.print(`  command line: ${k.cmdline}`);
}

/** The kernel entry. */
export default kernelMain(hello);
