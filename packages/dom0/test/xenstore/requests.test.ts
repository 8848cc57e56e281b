/**
 * Every request type's success and error answers, as tables of
 * (connection, request, expected reply).
 */
import { describe, expect, it } from "vitest";
import { DOMID, XENSTORE, XS } from "@pvkit/abi";
import { OK, bed, err, homes, list, rq, run, satisfies, text, val } from "./harness.js";

function setup() {
  const b = bed();
  const dom0 = b.client(0);
  const dom1 = b.client(1);
  const dom2 = b.client(2);
  const dom3 = b.client(3);
  homes(dom0, 1, 2);
  return { b, dom0, dom1, dom2, dom3 };
}

describe("READ and WRITE", () => {
  it("store and return raw values, relative paths and permission answers", () => {
    const { dom0, dom1, dom2 } = setup();
    run([
      [dom0, rq.write("/a", "hello"), OK],
      [dom0, rq.read("/a"), val("hello")],
      [dom0, rq.write("/a", ""), OK],
      [dom0, rq.read("/a"), val("")],
      [dom0, rq.write("/bin", "x\0y\xff\0"), OK],
      [dom0, rq.read("/bin"), val("x\0y\xff\0")],
      [dom0, rq.raw(XS.WRITE, "/c\0"), OK],
      [dom0, rq.read("/c"), val("")],
      [dom0, rq.read("/missing"), err("ENOENT")],
      [dom0, rq.read("/missing/deeper"), err("ENOENT")],
      [dom0, rq.read("data"), err("ENOENT")], // dom0's relative paths are under /local/domain/0
      // Nodes under / inherit n0: nobody else may read them, or learn whether they exist.
      [dom1, rq.read("/a"), err("EACCES")],
      [dom1, rq.read("/missing"), err("EACCES")],
      [dom1, rq.write("/a", "x"), err("EACCES")],
      [dom1, rq.write("/new", "x"), err("EACCES")],
      // A domain's home is its own.
      [dom1, rq.write("data", "v"), OK],
      [dom1, rq.read("data"), val("v")],
      [dom1, rq.read("/local/domain/1/data"), val("v")],
      [dom1, rq.read("missing"), err("ENOENT")],
      [dom1, rq.read("/local/domain/2/x"), err("EACCES")],
      [dom2, rq.read("/local/domain/1/data"), err("EACCES")],
      [dom2, rq.write("/local/domain/1/data", "x"), err("EACCES")],
      // dom0 bypasses every check.
      [dom0, rq.read("/local/domain/1/data"), val("v")],
      [dom0, rq.write("/local/domain/1/data", "w"), OK],
      [dom1, rq.read("data"), val("w")],
    ]);
  });

  it.each([
    ["a trailing slash", rq.read("/a/")],
    ["a double slash", rq.read("//a")],
    ["a space", rq.read("/a b")],
    ["a dot", rq.read("/a.b")],
    ["the empty path", rq.read("")],
    ["a special path", rq.read("@introduceDomain")],
    ["a missing NUL", rq.raw(XS.READ, "/a")],
    ["two arguments", rq.raw(XS.READ, "/a\0/b\0")],
    ["bytes after the NUL", rq.raw(XS.READ, "/a\0junk")],
    ["an empty payload", rq.raw(XS.READ, "")],
    ["WRITE without a NUL", rq.raw(XS.WRITE, "/a")],
    ["WRITE to a bad path", rq.write("/a//b", "x")],
    ["WRITE to a special path", rq.write("@releaseDomain", "x")],
    ["an over-long path", rq.read("/" + "x".repeat(XENSTORE.ABS_PATH_MAX))],
  ])("answer EINVAL for %s", (_name, req) => {
    const { dom0 } = setup();
    run([[dom0, req, err("EINVAL")]]);
  });
});

describe("MKDIR", () => {
  it("creates missing parents, leaves existing nodes alone and checks write access", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.mkdir("/m/n/o"), OK],
      [dom0, rq.read("/m/n"), val("")],
      [dom0, rq.read("/m/n/o"), val("")],
      [dom0, rq.write("/m/n", "keep"), OK],
      [dom0, rq.mkdir("/m/n"), OK],
      [dom0, rq.read("/m/n"), val("keep")],
      [dom1, rq.mkdir("/m/x"), err("EACCES")],
      [dom1, rq.mkdir("/m/n"), err("EACCES")],
      [dom1, rq.mkdir("sub/dir"), OK],
      [dom1, rq.directory("sub"), list("dir")],
      [dom0, rq.raw(XS.MKDIR, "/m\0extra"), err("EINVAL")],
      [dom0, rq.mkdir("/m/"), err("EINVAL")],
    ]);
  });
});

describe("RM", () => {
  it("removes subtrees; a missing node is fine if its parent exists", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.write("/r/a/b", "1"), OK],
      [dom0, rq.write("/r/a/c", "2"), OK],
      [dom0, rq.rm("/r/a/zz"), OK],
      [dom0, rq.rm("/r/q/zz"), err("ENOENT")],
      [dom0, rq.rm("/"), err("EINVAL")],
      [dom1, rq.rm("/r/a"), err("EACCES")],
      [dom1, rq.rm("/r/zz"), err("EACCES")],
      [dom0, rq.rm("/r/a"), OK],
      [dom0, rq.read("/r/a/b"), err("ENOENT")],
      [dom0, rq.read("/r/a"), err("ENOENT")],
      [dom0, rq.directory("/r"), val("")],
      [dom1, rq.write("x/y/z", "1"), OK],
      [dom1, rq.rm("x"), OK],
      [dom1, rq.directory(""), err("EINVAL")],
      [dom1, rq.directory("/local/domain/1"), val("")],
      [dom0, rq.raw(XS.RM, "/r"), err("EINVAL")],
    ]);
  });
});

describe("DIRECTORY", () => {
  it("lists children in creation order, each with its NUL", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.directory("/"), list("tool", "local")],
      [dom0, rq.directory("/local/domain"), list("1", "2")],
      [dom0, rq.write("/d/zeta", ""), OK],
      [dom0, rq.write("/d/alpha", ""), OK],
      [dom0, rq.write("/d/mid/deeper", ""), OK],
      [dom0, rq.directory("/d"), list("zeta", "alpha", "mid")],
      [dom0, rq.directory("/d/zeta"), val("")],
      [dom0, rq.directory("/nope"), err("ENOENT")],
      [dom1, rq.directory("/d"), err("EACCES")],
      [dom1, rq.directory("/tool/xenstored"), err("EACCES")],
    ]);
  });

  it("answers E2BIG when the list does not fit one payload", () => {
    const { dom0 } = setup();
    for (let i = 0; i < 100; i++) dom0.call(rq.mkdir(`/big/${"n".repeat(40)}${String(i).padStart(3, "0")}`));
    run([[dom0, rq.directory("/big"), err("E2BIG")]]);
  });
});

describe("DIRECTORY_PART", () => {
  it("prefixes the generation count and ends the list with an empty name", () => {
    const { b, dom0, dom1 } = setup();
    run([
      [dom0, rq.write("/dp/a", ""), OK],
      [dom0, rq.write("/dp/bb", ""), OK],
    ]);
    const gen = b.d.store.get("/dp")?.generation;
    run([
      [dom0, rq.directoryPart("/dp", 0), val(`${gen}\0a\0bb\0\0`)],
      [dom0, rq.directoryPart("/dp", 2), val(`${gen}\0bb\0\0`)],
      [dom0, rq.directoryPart("/dp", 5), val(`${gen}\0\0`)],
      [dom0, rq.directoryPart("/dp", 99), val(`${gen}\0\0`)],
      [dom0, rq.directoryPart("/dp/a", 0), val(`${b.d.store.get("/dp/a")?.generation}\0\0`)],
      [dom0, rq.directoryPart("/nope", 0), err("ENOENT")],
      [dom1, rq.directoryPart("/dp", 0), err("EACCES")],
      [dom0, rq.directoryPart("/dp", "x"), err("EINVAL")],
      [dom0, rq.directoryPart("/dp", "-1"), err("EINVAL")],
      [dom0, rq.raw(XS.DIRECTORY_PART, "/dp\0"), err("EINVAL")],
      [dom0, rq.raw(XS.DIRECTORY_PART, "/dp\x000\0x\0"), err("EINVAL")],
    ]);
  });

  it("pages a list longer than one payload; the generation changes with the list", () => {
    const { b, dom0 } = setup();
    const names = Array.from({ length: 150 }, (_, i) => `child-${String(i).padStart(3, "0")}-${"x".repeat(40)}`);
    for (const n of names) dom0.call(rq.mkdir(`/many/${n}`));
    const full = names.map((n) => `${n}\0`).join("");
    expect(full.length).toBeGreaterThan(XENSTORE.PAYLOAD_MAX);
    const gen = String(b.d.store.get("/many")?.generation);
    let got = "";
    let pages = 0;
    for (;;) {
      const r = dom0.call(rq.directoryPart("/many", got.length));
      expect(r.type).toBe(XS.DIRECTORY_PART);
      expect(r.payload.length).toBeLessThanOrEqual(XENSTORE.PAYLOAD_MAX);
      const t = text(r);
      expect(t.startsWith(`${gen}\0`)).toBe(true);
      const body = t.slice(gen.length + 1);
      pages++;
      if (body.endsWith("\0\0") || body === "\0") {
        got += body.slice(0, -1);
        break;
      }
      got += body;
    }
    expect(pages).toBeGreaterThan(1);
    expect(got).toBe(full);
    dom0.call(rq.mkdir("/many/one-more"));
    run([[dom0, rq.directoryPart("/many", 0), satisfies((r) => expect(text(r).startsWith(`${gen}\0`)).toBe(false))]]);
  });
});

describe("GET_PERMS and SET_PERMS", () => {
  it("set lists, owner first, and enforce them", () => {
    const { dom0, dom1, dom2, dom3 } = setup();
    run([
      [dom0, rq.getPerms("/"), list("n0")],
      [dom0, rq.mkdir("/p"), OK],
      [dom0, rq.getPerms("/p"), list("n0")],
      [dom0, rq.setPerms("/p", "n0", "r1", "b2"), OK],
      [dom0, rq.getPerms("/p"), list("n0", "r1", "b2")],
      [dom1, rq.getPerms("/p"), list("n0", "r1", "b2")],
      [dom1, rq.read("/p"), val("")],
      [dom1, rq.write("/p", "x"), err("EACCES")],
      [dom2, rq.write("/p", "x"), OK],
      [dom2, rq.read("/p"), val("x")],
      [dom2, rq.setPerms("/p", "n0", "b2"), err("EACCES")], // write access is not ownership
      [dom3, rq.getPerms("/p"), err("EACCES")],
      [dom3, rq.read("/p"), err("EACCES")],
      [dom0, rq.setPerms("/p"), err("EINVAL")],
      [dom0, rq.setPerms("/p", "x0"), err("EINVAL")],
      [dom0, rq.setPerms("/p", "n0", "r"), err("EINVAL")],
      [dom0, rq.setPerms("/nope", "n0"), err("ENOENT")],
      [dom0, rq.setPerms("/p/", "n0"), err("EINVAL")],
      [dom0, rq.getPerms("/nope"), err("ENOENT")],
      [dom0, rq.raw(XS.GET_PERMS, "/p"), err("EINVAL")],
      // An owning domU may change the rest of the list but not the owner.
      [dom1, rq.write("data", "v"), OK],
      [dom1, rq.setPerms("data", "n1", "r2"), OK],
      [dom2, rq.read("/local/domain/1/data"), val("v")],
      [dom1, rq.setPerms("data", "n2"), err("EPERM")],
      [dom1, rq.getPerms("data"), list("n1", "r2")],
      // dom0 may give a node away.
      [dom0, rq.setPerms("/local/domain/1/data", "r2"), OK],
      [dom2, rq.write("/local/domain/1/data", "mine"), OK],
      [dom1, rq.read("data"), val("mine")],
      [dom1, rq.write("data", "x"), err("EACCES")],
    ]);
  });

  it("set and get the special paths' permissions, which only their owner may change", () => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.getPerms("@introduceDomain"), list("n0")],
      [dom1, rq.getPerms("@introduceDomain"), err("EACCES")],
      [dom0, rq.setPerms("@introduceDomain", "n0", "r1"), OK],
      [dom0, rq.getPerms("@introduceDomain"), list("n0", "r1")],
      [dom1, rq.getPerms("@introduceDomain"), list("n0", "r1")],
      [dom1, rq.setPerms("@releaseDomain", "n1"), err("EACCES")],
      [dom1, rq.setPerms("@introduceDomain", "n1"), err("EACCES")],
      [dom0, rq.setPerms("@other", "n0"), err("EINVAL")],
      [dom0, rq.getPerms("@other"), err("EINVAL")],
    ]);
  });
});

describe("permission inheritance and dom0 bypass", () => {
  it("gives new nodes the parent's perms, owned by an unprivileged creator", () => {
    const { dom0, dom1, dom2 } = setup();
    run([
      [dom0, rq.setPerms("/local/domain/1", "n0", "b1", "r2"), OK],
      [dom1, rq.write("/local/domain/1/x/y", "v"), OK],
      [dom0, rq.getPerms("/local/domain/1/x"), list("n1", "b1", "r2")],
      [dom0, rq.getPerms("/local/domain/1/x/y"), list("n1", "b1", "r2")],
      [dom0, rq.write("/local/domain/1/z", "v"), OK],
      [dom0, rq.getPerms("/local/domain/1/z"), list("n0", "b1", "r2")],
      [dom0, rq.mkdir("/fresh/deep"), OK],
      [dom0, rq.getPerms("/fresh/deep"), list("n0")],
      [dom2, rq.read("/local/domain/1/x/y"), val("v")],
      [dom2, rq.write("/local/domain/1/x/y", "no"), err("EACCES")],
      [dom1, rq.setPerms("x/y", "n1"), OK],
      [dom2, rq.read("/local/domain/1/x/y"), err("EACCES")],
      [dom2, rq.read("/local/domain/1/x/nope"), err("ENOENT")],
      [dom0, rq.read("/local/domain/1/x/y"), val("v")],
      [dom0, rq.write("/local/domain/1/x/y", "dom0"), OK],
      [dom0, rq.setPerms("/local/domain/1/x/y", "n5"), OK],
      [dom0, rq.rm("/local/domain/1/x"), OK],
    ]);
  });

  it("treats a connection opened as privileged like dom0", () => {
    const { b, dom0 } = setup();
    const priv = b.client(9, true);
    run([
      [dom0, rq.write("/secret", "s"), OK],
      [priv, rq.read("/secret"), val("s")],
      [priv, rq.write("/made-by-9/x", ""), OK],
      [dom0, rq.getPerms("/made-by-9/x"), list("n0")],
      [priv, rq.isIntroduced(0), list("T")],
      [priv, rq.control("check"), OK],
    ]);
  });
});

describe("GET_DOMAIN_PATH", () => {
  it.each([
    [5, list("/local/domain/5")],
    [0, list("/local/domain/0")],
    [65535, list("/local/domain/65535")],
    [65536, err("EINVAL")],
    ["x", err("EINVAL")],
    ["", err("EINVAL")],
  ] as const)("of %j", (domid, want) => {
    const { dom1 } = setup();
    run([[dom1, rq.getDomainPath(domid), want]]);
  });
});

describe("dispatch", () => {
  it.each([
    ["WATCH_EVENT", XS.WATCH_EVENT],
    ["ERROR", XS.ERROR],
    ["the unused type 20", 20],
    ["XS_TYPE_COUNT", XS.TYPE_COUNT],
    ["a large type", 9999],
    ["XS_INVALID", XS.INVALID],
  ])("answers ENOSYS to %s", (_name, type) => {
    const { dom0, dom1 } = setup();
    run([
      [dom0, rq.raw(type, "/\0"), err("ENOSYS")],
      [dom1, rq.raw(type, ""), err("ENOSYS")],
    ]);
  });

  it.each([
    ["INTRODUCE", rq.introduce(5, 1, 1)],
    ["RELEASE", rq.release(1)],
    ["RESUME", rq.resume(1)],
    ["SET_TARGET", rq.setTarget(1, 2)],
    ["IS_DOMAIN_INTRODUCED", rq.isIntroduced(1)],
    ["CONTROL", rq.control("check")],
  ])("answers EACCES to %s from an unprivileged connection", (_name, req) => {
    const { dom1 } = setup();
    run([[dom1, req, err("EACCES")]]);
  });

  it("answers ENOENT to an unknown transaction id, except for WATCH and UNWATCH", () => {
    const { dom0 } = setup();
    run([
      [dom0, rq.read("/"), err("ENOENT"), 42],
      [dom0, rq.write("/x", "1"), err("ENOENT"), 42],
      [dom0, rq.getDomainPath(1), err("ENOENT"), 42],
      [dom0, rq.watch("/x", "t"), OK, 42],
      [dom0, rq.unwatch("/x", "t"), OK, 42],
      [dom0, rq.read("/x"), err("ENOENT")],
    ]);
  });

  it("echoes req_id and tx_id in replies", () => {
    const { dom0 } = setup();
    const r = dom0.call(rq.read("/"), 0);
    expect([r.type, r.txId]).toEqual([XS.READ, 0]);
    expect(r.reqId).toBeGreaterThanOrEqual(100);
  });
});

describe("CONTROL", () => {
  it("supports check, log, print, quota and help; anything else is EINVAL", () => {
    const { b, dom0 } = setup();
    run([
      [dom0, rq.control("check"), OK],
      [dom0, rq.control("check", "extra"), err("EINVAL")],
      [dom0, rq.control("log", "on"), OK],
      [dom0, rq.read("/tool"), val("")],
      [dom0, rq.control("log", "off"), OK],
      [dom0, rq.control("log", "maybe"), err("EINVAL")],
      [dom0, rq.control("log"), err("EINVAL")],
      [dom0, rq.control("print", "hello there"), OK],
      [dom0, rq.control("print"), err("EINVAL")],
      [dom0, rq.control("help"), val("check\t\nlog\ton|off\nprint\t<string>\nquota\t[<domid>]\nhelp\t\n")],
      [dom0, rq.control("quota"), satisfies((r) => expect(text(r)).toMatch(/^Quota settings:\nnodes {11}: {5}1000\n.*watches {9}: {6}128\n/s))],
      [dom0, rq.control("quota", "1"), satisfies((r) => expect(text(r)).toBe("Domain 1:\nnodes           :        1\nwatches         :        0\ntransactions    :        0\n\0"))],
      [dom0, rq.control("quota", "77"), err("ENOENT")],
      [dom0, rq.control("quota", "x"), err("EINVAL")],
      [dom0, rq.control("live-update", "-a"), err("EINVAL")],
      [dom0, rq.control("nonsense"), err("EINVAL")],
      [dom0, rq.raw(XS.CONTROL, ""), err("EINVAL")],
      [dom0, rq.raw(XS.CONTROL, "check"), err("EINVAL")],
    ]);
    expect(b.log).toContain("control: hello there");
    expect(b.log.some((l) => l.startsWith("IN ") && l.includes("READ (/tool )"))).toBe(true);
    expect(b.log.some((l) => l.startsWith("OUT") && l.includes("READ ()"))).toBe(true);
    expect(DOMID.SELF).toBe(0x7ff0);
  });
});
