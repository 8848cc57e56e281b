/**
 * The mapper: learns the grant references from its console (dom0 types the
 * granter's lines into it), maps the shared page, reads and answers the
 * message in place, unmaps, and moves a page of its own into the
 * granter's second page with a grant copy.
 */
import { PAGE_SIZE } from "@pvkit/abi";
import { kernelMain, orThrow } from "@pvkit/kernel";

export default kernelMain(async (k) => {
  const peer = Number(k.arg("peer"));
  const port = orThrow(k.events.bindInterdomain(peer, Number(k.arg("port"))));
  await k.events.wait(port); // the event Xen raises on binding
  const consolePort = k.startInfo.console_domU_evtchn;
  let typed = "";
  let refs: RegExpMatchArray | null = null;
  await k.until(consolePort, () => {
    typed += new TextDecoder().decode(k.console.read());
    refs = typed.match(/grant-ref=(\d+) copy-ref=(\d+)/);
    return refs !== null;
  });
  const [, ref, copyRef] = refs!;

  const m = orThrow(k.grants.map(peer, Number(ref)));
  const page = k.memory.memory.read(m.va, 64);
  await k.print(`mapper: mapped grant ${ref} of domain ${peer}: "${new TextDecoder().decode(page.subarray(0, page.indexOf(0)))}"`);
  orThrow(k.events.notify(port));
  await k.events.wait(port); // the granter tried to end access while we map it
  k.memory.memory.write(m.va, new TextEncoder().encode("answered in place by the mapper\0"));
  orThrow(k.grants.unmap(m));

  const mine = k.memory.allocPage()!;
  k.memory.memory.write(mine * PAGE_SIZE, new TextEncoder().encode("a page copied over by the mapper\0"));
  orThrow(k.grants.copy({ pfn: mine, offset: 0 }, { domid: peer, ref: Number(copyRef), offset: 0 }, PAGE_SIZE));
  await k.print(`mapper: unmapped, and copied a page into grant ${copyRef}`);
  orThrow(k.events.notify(port));
});
