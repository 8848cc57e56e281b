/**
 * The pong kernel: binds its end of ping's channel, rings once to say so,
 * then answers each ring with one of its own.
 */
import { kernelMain, orThrow } from "@pvkit/kernel";

export default kernelMain(async (k) => {
  const peer = Number(k.arg("peer"));
  const count = Number(k.arg("count") ?? 1000);
  const port = orThrow(k.events.bindInterdomain(peer, Number(k.arg("port"))));
  // Xen marks a freshly bound port pending, in case the peer rang before we bound: take that event first.
  await k.events.wait(port);
  orThrow(k.events.notify(port));
  for (let i = 0; i < count; i++) {
    await k.events.wait(port);
    orThrow(k.events.notify(port));
  }
  await k.print(`pong: answered ${count} rings from domain ${peer} on local port ${port}`);
});
