/**
 * `xl console`: attach to a domain's console socket, as xenconsole attaches
 * to the pty xenconsoled offers.
 *
 * What the domain's console says goes to standard output (first what it has
 * said so far, which the console daemon replays); what is typed goes to the
 * domain. On a terminal, input is raw (keys as typed, Ctrl-C included) and
 * Enter sends `\n`, the end of line pvkit guests read. Ctrl-] (0x1d) detaches,
 * as in xl, on a terminal or not. Without a terminal, standard input and
 * output are piped through; the end of standard input stops the typing,
 * and the session lasts until the console goes or Ctrl-] is read.
 *
 * @module
 */
import { createConnection } from "node:net";
import type { CliIo } from "./io.js";
import { CliError } from "./io.js";

/** Ctrl-]: xl's detach key. */
export const DETACH_KEY = 0x1d;

/** How a console session ended. */
export type ConsoleEnd = "detached" | "closed";

/**
 * Attaches `io` to the console socket at `path` until the console closes
 * or Ctrl-] is typed.
 * @throws CliError if the socket cannot be reached.
 */
export async function attachConsole(path: string, io: CliIo, label: string): Promise<ConsoleEnd> {
  const socket = await new Promise<ReturnType<typeof createConnection>>((resolve, reject) => {
    const s = createConnection(path);
    s.once("error", (e: NodeJS.ErrnoException) =>
      reject(new CliError(`xl console: cannot attach to the console of ${label} at ${path}: ${e.code === "ENOENT" ? "no such socket (has the domain gone?)" : e.message}`)),
    );
    s.once("connect", () => resolve(s));
  });
  const stdin = io.stdin;
  const tty = stdin.isTTY === true && typeof stdin.setRawMode === "function";
  if (tty) stdin.setRawMode!(true);

  return new Promise<ConsoleEnd>((resolve) => {
    let ended = false;
    const finish = (how: ConsoleEnd) => {
      if (ended) return;
      ended = true;
      stdin.off("data", onInput);
      stdin.off("end", onInputEnd);
      if (tty) stdin.setRawMode!(false);
      stdin.pause();
      socket.destroy();
      resolve(how);
    };
    const onInput = (chunk: Buffer | string) => {
      let bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const detach = bytes.indexOf(DETACH_KEY);
      if (detach >= 0) bytes = bytes.subarray(0, detach);
      if (tty) bytes = Buffer.from(bytes.map((b) => (b === 0x0d ? 0x0a : b)));
      if (bytes.byteLength > 0 && !socket.destroyed) socket.write(bytes);
      if (detach >= 0) finish("detached");
    };
    const onInputEnd = () => {
      // Nothing more to type; keep showing the console until it goes.
      stdin.off("data", onInput);
    };
    // Node's raw mode keeps the terminal's ONLCR, so the guest's bare \n still ends a line.
    socket.on("data", (chunk: Buffer) => void io.stdout.write(chunk));
    socket.on("close", () => finish("closed"));
    socket.on("error", () => finish("closed"));
    stdin.on("data", onInput);
    stdin.on("end", onInputEnd);
    stdin.resume();
  });
}
