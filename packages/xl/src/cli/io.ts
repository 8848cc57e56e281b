/**
 * What a command runs with: its output streams, input, environment and
 * working directory, so that tests can run the commands in-process.
 *
 * @module
 */

/** Somewhere to write text or bytes. */
export interface Output {
  /** Writes a chunk. */
  write(chunk: string | Uint8Array): unknown;
  /** True when it is a terminal. */
  readonly isTTY?: boolean;
}

/** Where input comes from: a readable stream, possibly a terminal. */
export type Input = NodeJS.ReadableStream & {
  /** True when it is a terminal. */
  readonly isTTY?: boolean;
  /** Switches a terminal to raw mode (keys as typed, no line editing, no echo). */
  setRawMode?(raw: boolean): unknown;
};

/** A command's world. */
export interface CliIo {
  /** Standard output. */
  readonly stdout: Output;
  /** Standard error. */
  readonly stderr: Output;
  /** Standard input. */
  readonly stdin: Input;
  /** The environment (`PVKIT_RUN_DIR`...). */
  readonly env: NodeJS.ProcessEnv;
  /** The working directory, from which relative paths are taken. */
  readonly cwd: string;
}

/** The process's own world. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}

/** A command failing: `message` goes to standard error, `code` is the exit status (2 for usage errors, as xl). */
export class CliError extends Error {
  /** Creates an error with exit status `code` (default 1). */
  constructor(
    message: string,
    /** The exit status. */
    readonly code: number = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** A usage error: exit status 2, as xl's option parser gives. */
export function usageError(message: string): CliError {
  return new CliError(message, 2);
}
