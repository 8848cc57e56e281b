#!/usr/bin/env node
/**
 * The `pvkit` executable: {@link pvkitMain} on the process's arguments.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { processIo } from "../cli/io.js";
import { pvkitMain } from "../cli/pvkit.js";

const code = await pvkitMain(process.argv.slice(2), { ...processIo(), self: fileURLToPath(import.meta.url) });
process.exitCode = code;
// A host's sockets may outlive a dom0 that was stopped where it was: leave once output has drained.
setTimeout(() => process.exit(code), 1000).unref();
