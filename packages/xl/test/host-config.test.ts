/**
 * The host configuration (`pvkit up --config host.json`): defaults, paths
 * taken from the file's directory, and every error naming its file, key
 * and value, all at once.
 */
import * as E from "fp-ts/lib/Either.js";
import { describe, expect, it } from "vitest";
import { DEFAULT_HOST_CONFIG, parseHostConfig, type HostConfig } from "@pvkit/xl";

const parse = (json: unknown) => parseHostConfig(typeof json === "string" ? json : JSON.stringify(json), "host.json", "/etc/pvkit");

describe("parseHostConfig", () => {
  it("an empty object is every default", () => {
    expect(parse({})).toEqual(E.right(DEFAULT_HOST_CONFIG));
  });

  it("reads every key, and takes relative paths from the file's directory", () => {
    const want: HostConfig = {
      memory: 512,
      pcpus: 4,
      dom0: { memory: 32, kernel: "/etc/pvkit/my-dom0.js" },
      bridges: [{ name: "xenbr0", pcap: "/etc/pvkit/caps/br0.pcap" }, { name: "lan" }],
      seed: 7,
      shutdownTimeout: 0,
    };
    expect(parse({ memory: 512, pcpus: 4, dom0: { memory: 32, kernel: "my-dom0.js" }, bridges: [{ name: "xenbr0", pcap: "caps/br0.pcap" }, { name: "lan" }], seed: 7, shutdownTimeout: 0 })).toEqual(E.right(want));
  });

  it("leaves a package specifier, an absolute path and a URL as they are", () => {
    for (const kernel of ["@pvkit/dom0/kernel", "/opt/dom0.js", "file:///opt/dom0.js"]) {
      expect(E.map((c: HostConfig) => c.dom0.kernel)(parse({ dom0: { kernel } }))).toEqual(E.right(kernel));
    }
  });

  it.each<[string, unknown, string[]]>([
    ["a word for memory", { memory: "lots" }, ['host.json: memory: expected a positive integer (MiB), at most 16384, got "lots"']],
    ["a fraction of a pCPU", { pcpus: 1.5 }, ["host.json: pcpus: expected a positive integer (pCPUs), at most 64, got 1.5"]],
    ["no pCPUs", { pcpus: 0 }, ["host.json: pcpus: expected a positive integer (pCPUs), at most 64, got 0"]],
    ["dom0 as a number", { dom0: 64 }, ["host.json: dom0: expected an object { memory?, kernel? }, got 64"]],
    ["dom0 memory as a string", { dom0: { memory: "64" } }, ['host.json: dom0.memory: expected a positive integer (MiB), got "64"']],
    ["a bridge with no name", { bridges: [{ pcap: "x.pcap" }] }, ["host.json: bridges[0].name: missing (expected a bridge { name, pcap? })"]],
    ["a bridge with a bad name", { bridges: [{ name: "br 0" }] }, ['host.json: bridges[0].name: expected a bridge name (1 to 64 letters, digits, \'_\', \'.\', \'-\'), got "br 0"']],
    ["bridges as an object", { bridges: { name: "xenbr0" } }, ['host.json: bridges: expected a list of bridges [{ name, pcap? }], got {"name":"xenbr0"}']],
    ["a negative seed", { seed: -1 }, ["host.json: seed: expected an integer from 0 to 4294967295, got -1"]],
    ["an hour and a second to shut down", { shutdownTimeout: 3601 }, ["host.json: shutdownTimeout: expected a number of seconds from 0 to 3600, got 3601"]],
    ["a misspelt key", { memroy: 64 }, ["host.json: memroy: unknown key (pvkit reads memory, pcpus, dom0, bridges, seed, shutdownTimeout)"]],
    ["an unknown dom0 key", { dom0: { vcpus: 2 } }, ["host.json: dom0.vcpus: unknown key (pvkit reads memory, kernel)"]],
    ["a list for the whole", [], ["host.json: expected an object { memory, pcpus, dom0, bridges, seed, shutdownTimeout }, got []"]],
    ["dom0 as big as the machine", { memory: 64, dom0: { memory: 64 } }, ["host.json: dom0.memory: dom0's 64 MiB leaves nothing for guests in a machine of 64 MiB (dom0.memory must be less than memory)"]],
    ["a machine smaller than dom0's default", { memory: 8 }, ["host.json: memory: dom0's 16 MiB leaves nothing for guests in a machine of 8 MiB (dom0.memory must be less than memory)"]],
    ["a bridge named twice", { bridges: [{ name: "a" }, { name: "a" }] }, ['host.json: bridges[1].name: bridge "a" is named twice']],
  ])("refuses %s, naming the key", (_, json, errors) => {
    expect(parse(json)).toEqual(E.left(errors));
  });

  it("refuses a file that is not JSON, with the parser's reason", () => {
    const r = parse("{ memory: 64 }");
    expect(E.isLeft(r) && r.left).toEqual([expect.stringMatching(/^host\.json: not JSON: .*position 2/)]);
  });

  it("reports every problem at once", () => {
    const r = parse({ memory: 0, pcpus: "two", extra: true, bridges: [{ name: "" }] });
    expect(E.isLeft(r) && r.left).toEqual([
      "host.json: extra: unknown key (pvkit reads memory, pcpus, dom0, bridges, seed, shutdownTimeout)",
      "host.json: memory: expected a positive integer (MiB), at most 16384, got 0",
      'host.json: pcpus: expected a positive integer (pCPUs), at most 64, got "two"',
      'host.json: bridges[0].name: expected a bridge name (1 to 64 letters, digits, \'_\', \'.\', \'-\'), got ""',
    ]);
  });
});
