/**
 * A domU for the console example, by `role=` on its command line:
 *
 * - `role=echo`: greets, then reads lines typed at its console and prints
 *   each back upper-cased; the line `exit` ends it.
 * - `role=flood lines=N`: prints N lines as fast as its console ring lets it.
 * - `role=vandal`: says one line, then corrupts its console ring's indexes
 *   (`out_prod` far past `out_cons`) and rings dom0, which must drop this
 *   console and no other.
 */
import { PAGE_SIZE, xencons_interface } from "@pvkit/abi";
import { kernelMain, type Kernel } from "@pvkit/kernel";

async function echo(k: Kernel): Promise<void> {
  const port = k.startInfo.console_domU_evtchn;
  const decoder = new TextDecoder();
  await k.print('echo: ready; type a line ("exit" ends)');
  let pending = "";
  for (;;) {
    const bytes = k.console.read();
    if (bytes.byteLength === 0) {
      await k.events.wait(port);
      continue;
    }
    pending += decoder.decode(bytes, { stream: true });
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const line = pending.slice(0, nl).replace(/\r$/, "");
      pending = pending.slice(nl + 1);
      if (line === "exit") {
        await k.print("echo: bye");
        return;
      }
      await k.print(`> ${line.toUpperCase()}`);
    }
  }
}

async function flood(k: Kernel): Promise<void> {
  const n = Number(k.arg("lines") ?? "1000");
  for (let i = 0; i < n; i++) await k.print(`flood ${String(i).padStart(6, "0")} ${"~".repeat(64)}`);
}

async function vandal(k: Kernel): Promise<void> {
  const port = k.startInfo.console_domU_evtchn;
  const page = k.memory.memory.page(k.memory.pfnOf(Number(k.startInfo.console_domU_mfn))! * PAGE_SIZE);
  const f = xencons_interface.fields;
  await k.print("vandal: breaking my console ring");
  await k.until(port, () => f.out_cons.get(page, 0) === f.out_prod.get(page, 0)); // dom0 has read it
  f.out_prod.set(page, 0, f.out_cons.get(page, 0) + 100_000);
  k.events.notify(port);
  await k.sleep(1_000_000);
}

export default kernelMain(async (k) => {
  switch (k.arg("role")) {
    case "echo":
      return echo(k);
    case "flood":
      return flood(k);
    case "vandal":
      return vandal(k);
    default:
      throw new Error(`unknown role ${k.arg("role")}`);
  }
});
