/**
 * The ping kernel: waits until pong is connected, then rings the shared
 * event channel `count` times, each time waiting for pong's answer, and
 * reports the round-trip time in virtual nanoseconds.
 */
import { kernelMain, orThrow } from "@pvkit/kernel";

export default kernelMain(async (k) => {
  const port = Number(k.arg("port"));
  const count = Number(k.arg("count") ?? 1000);
  await k.events.wait(port); // pong's first ring: it has bound its end
  await k.print(`ping: pong is connected on port ${port}`);
  const start = k.clock.now();
  for (let i = 0; i < count; i++) {
    orThrow(k.events.notify(port));
    await k.events.wait(port);
  }
  const rtt = (k.clock.now() - start) / count;
  await k.print(`ping: ${count} round trips, ${k.events.counts.get(port)} notifications received, mean RTT ${Math.round(rtt)} ns`);
});
