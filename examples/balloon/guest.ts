/**
 * A domU whose memory the host moves with its balloon.
 *
 * The balloon itself needs nothing from this kernel: `kernelMain` starts it
 * in every domU with a XenStore page, and it follows `memory/target`. This
 * guest only makes it visible, and gives it something to push against. It
 * announces itself with `data/ready`, then takes commands in `data/command`
 * (written from outside, say with `xenstore-write`), each `<id> <verb> [n]`,
 * and answers each in `data/reply` as `<id> <answer>`:
 *
 * - `hold N`: allocate N pages and keep them, as a workload would; the
 *   balloon may not give them back.
 * - `release`: free the pages held and kick the balloon, which may be short
 *   of its target for want of them (as Linux frees ballooned pages and
 *   schedules the balloon worker).
 * - `status`: once the balloon has done what it can, its view:
 *   `current=<KiB> target=<KiB> status=<status> free=<pages>`.
 * - `exit`: power off.
 */
import * as E from "fp-ts/lib/Either.js";
import { balloonOf, kernelMain, openXenstore, type Kernel } from "@pvkit/kernel";

/** Answers one command; undefined for `exit`. */
async function answer(k: Kernel, held: number[], verb: string, arg: string | undefined): Promise<string | undefined> {
  const balloon = balloonOf(k);
  if (balloon === undefined) return "error no balloon (this domain has no XenStore page)";
  switch (verb) {
    case "hold": {
      const n = Number(arg);
      let got = 0;
      for (; got < n; got++) {
        const pfn = k.memory.allocPage();
        if (pfn === undefined) break;
        held.push(pfn);
      }
      return `held ${got} (${held.length} in all)`;
    }
    case "release": {
      const n = held.length;
      for (const pfn of held.splice(0)) k.memory.freePage(pfn);
      balloon.kick();
      return `released ${n}`;
    }
    case "status": {
      const status = await balloon.settled();
      return `current=${balloon.currentKiB} target=${balloon.targetKiB} status=${status} free=${k.memory.freePages}`;
    }
    case "exit":
      return undefined;
    default:
      return `error unknown command "${verb}"`;
  }
}

export default kernelMain(async (k) => {
  const xs = openXenstore(k);
  const balloon = balloonOf(k);
  await k.print(`balloon guest: ${balloon?.currentKiB ?? "?"} KiB, ${k.memory.freePages} pages free`);
  const held: number[] = [];
  const put = async (path: string, value: string) => {
    const r = await xs.write(path, value)();
    if (E.isLeft(r)) throw new Error(r.left.message);
  };
  await put("data/ready", "1");
  let last = "";
  for await (const _ of xs.watch("data/command", "command")) {
    const cmd = await xs.read("data/command")();
    if (E.isLeft(cmd) || cmd.right === last) continue;
    last = cmd.right;
    const [id, verb = "", arg] = cmd.right.trim().split(/\s+/);
    const reply = await answer(k, held, verb, arg);
    if (reply === undefined) return;
    await put("data/reply", `${id} ${reply}`);
  }
});
