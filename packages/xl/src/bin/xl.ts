#!/usr/bin/env node
/**
 * The `xl` executable: {@link xlMain} on the process's arguments.
 *
 * @module
 */
import { processIo } from "../cli/io.js";
import { xlMain } from "../cli/xl.js";

const code = await xlMain(process.argv.slice(2), processIo());
process.exitCode = code;
// Let pending output drain; then leave even if a handle (a paused stdin) would keep the process alive.
setTimeout(() => process.exit(code), 1000).unref();
