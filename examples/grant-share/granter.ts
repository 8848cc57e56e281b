/**
 * The granter: shares two pages with its peer. The first it grants
 * read-write with a message in it; it tells the peer the grant reference by
 * printing it (dom0 links its console to the peer's). While the peer maps
 * the page, ending access is refused; once the peer has unmapped it and
 * copied a page of its own into the second grant, the granter checks both
 * and ends access.
 */
import * as E from "fp-ts/lib/Either.js";
import { PAGE_SIZE } from "@pvkit/abi";
import { kernelMain, orThrow } from "@pvkit/kernel";

export default kernelMain(async (k) => {
  const peer = Number(k.arg("peer"));
  const port = Number(k.arg("port"));
  const text = new TextEncoder();
  const shared = k.memory.allocPage()!;
  const target = k.memory.allocPage()!;
  k.memory.memory.write(shared * PAGE_SIZE, text.encode("a page from the granter\0"));
  const ref = orThrow(k.grants.grantAccess(peer, k.memory.mfnOf(shared)));
  const copyRef = orThrow(k.grants.grantAccess(peer, k.memory.mfnOf(target)));
  await k.print(`granter: grant-ref=${ref} copy-ref=${copyRef}`);

  await k.events.wait(port); // the peer has mapped the page
  const refused = k.grants.endAccess(ref);
  await k.print(`granter: end access while mapped: ${E.isLeft(refused) ? `refused (${refused.left.message})` : "ALLOWED — wrong"}`);
  orThrow(k.events.notify(port));

  await k.events.wait(port); // the peer has unmapped and copied
  const read = (pfn: number) => {
    const bytes = k.memory.memory.read(pfn * PAGE_SIZE, 64);
    return new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
  };
  await k.print(`granter: shared page now reads "${read(shared)}"`);
  await k.print(`granter: copied page reads "${read(target)}"`);
  orThrow(k.grants.endAccess(ref));
  orThrow(k.grants.endAccess(copyRef));
  await k.print("granter: both grants ended");
});
