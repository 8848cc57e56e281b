/**
 * XenStore permissions, as `xenstored_core.c` (`perm_for_conn`) and
 * `xenstore_lib.h` define them.
 *
 * A node's permissions are a list of entries `<letter><domid>`:
 *
 * | letter | access        | bits                         |
 * | ------ | ------------- | ---------------------------- |
 * | `n`    | none          | `XS_PERM_NONE` (0)           |
 * | `r`    | read          | `XS_PERM_READ` (1)           |
 * | `w`    | write         | `XS_PERM_WRITE` (2)          |
 * | `b`    | both          | `XS_PERM_READ\|XS_PERM_WRITE` |
 *
 * The first entry names the node's **owner**, and its letter is the access
 * of every domain not listed afterwards. Later entries grant their domain
 * exactly their letter. The owner always has read, write and the
 * `XS_PERM_OWNER` right (needed for `SET_PERMS`), whatever its letter says.
 * A privileged connection (dom0, or one connected as privileged) bypasses
 * every check. A domain given a target by `SET_TARGET` is also treated as
 * that target (a device model acting for its guest).
 *
 * `GET_PERMS` answers the entries as NUL-terminated strings
 * (`"n0\0r1\0"`); `SET_PERMS` takes `<path>|<perm>|+`. A malformed entry is
 * `EINVAL`; a missing right is `EACCES`.
 *
 * @module
 */

/** Permission bits (`XS_PERM_*` in `xenstore_lib.h`). */
export const XS_PERM = Object.freeze({
  NONE: 0x00,
  READ: 0x01,
  WRITE: 0x02,
  /** Client-side flag (`xs_write` may create). */
  ENOENT_OK: 0x04,
  /** The node's owner (or a privileged connection): may change permissions. */
  OWNER: 0x08,
  /** xenstored's mark for entries of vanished domains. */
  IGNORE: 0x10,
} as const);

/** One permission entry: a domain and its `XS_PERM_READ`/`XS_PERM_WRITE` bits. */
export interface PermEntry {
  /** The domain the entry is about. */
  readonly domid: number;
  /** `XS_PERM_NONE`, `XS_PERM_READ`, `XS_PERM_WRITE` or both. */
  readonly perms: number;
}

/** A node's permissions: the owner's entry first, then per-domain entries. */
export type NodePerms = readonly [PermEntry, ...PermEntry[]];

/** Who is asking: the connection's domain, its privilege and its target, if any. */
export interface Accessor {
  /** The connection's domain id. */
  readonly domid: number;
  /** True for dom0 and other privileged connections: all checks pass. */
  readonly privileged: boolean;
  /** The domain set by `SET_TARGET`, whose rights this one shares. */
  readonly target?: number | undefined;
}

/** The letter of a set of bits: `n`, `r`, `w` or `b`. */
export function permLetter(perms: number): "n" | "r" | "w" | "b" {
  const rw = perms & (XS_PERM.READ | XS_PERM.WRITE);
  return rw === (XS_PERM.READ | XS_PERM.WRITE) ? "b" : rw === XS_PERM.READ ? "r" : rw === XS_PERM.WRITE ? "w" : "n";
}

/** One entry as its string: `{ domid: 1, perms: READ }` → `"r1"`. */
export function formatPerm(e: PermEntry): string {
  return `${permLetter(e.perms)}${e.domid}`;
}

/** All entries as strings, owner first. */
export function formatPerms(p: NodePerms): string[] {
  return p.map(formatPerm);
}

const LETTERS: Readonly<Record<string, number>> = { n: XS_PERM.NONE, r: XS_PERM.READ, w: XS_PERM.WRITE, b: XS_PERM.READ | XS_PERM.WRITE };

/** The largest domid an entry may name (`domid_t` is 16 bits). */
export const MAX_PERM_DOMID = 0xffff;

/**
 * Parses one entry (`"b3"`); undefined unless it is a letter `nrwb` followed
 * by a decimal domid in 0..65535.
 */
export function parsePerm(s: string): PermEntry | undefined {
  const perms = LETTERS[s.charAt(0)];
  const digits = s.slice(1);
  if (perms === undefined || !/^\d{1,5}$/.test(digits)) return undefined;
  const domid = Number(digits);
  return domid <= MAX_PERM_DOMID ? { domid, perms } : undefined;
}

/** Parses a `SET_PERMS` list; undefined if it is empty or any entry is malformed. */
export function parsePerms(strings: readonly string[]): NodePerms | undefined {
  const out: PermEntry[] = [];
  for (const s of strings) {
    const e = parsePerm(s);
    if (e === undefined) return undefined;
    out.push(e);
  }
  const [first, ...rest] = out;
  return first === undefined ? undefined : [first, ...rest];
}

/** Permissions `n<owner>`: owned by `owner`, no access for anyone else. */
export function ownedBy(owner: number): NodePerms {
  return [{ domid: owner, perms: XS_PERM.NONE }];
}

/** The owner of a node with permissions `p`. */
export function ownerOf(p: NodePerms): number {
  return p[0].domid;
}

function names(acc: Accessor, domid: number): boolean {
  return domid === acc.domid || (acc.target !== undefined && domid === acc.target);
}

/**
 * The rights `acc` has on a node with permissions `p` (xenstored's
 * `perm_for_conn`): everything for privileged connections and the owner,
 * otherwise the first later entry naming the domain (or its target), else
 * the owner entry's letter. Only the owner gets `XS_PERM_OWNER`.
 */
export function permFor(acc: Accessor, p: NodePerms): number {
  const all = XS_PERM.READ | XS_PERM.WRITE | XS_PERM.OWNER;
  if (acc.privileged || names(acc, p[0].domid)) return all;
  for (let i = 1; i < p.length; i++) {
    const e = p[i] as PermEntry;
    if (names(acc, e.domid)) return e.perms & (XS_PERM.READ | XS_PERM.WRITE);
  }
  return p[0].perms & (XS_PERM.READ | XS_PERM.WRITE);
}

/** Whether `acc` has every right in `want` on a node with permissions `p`. */
export function hasAccess(acc: Accessor, p: NodePerms, want: number): boolean {
  return (permFor(acc, p) & want) === want;
}

/**
 * The permissions of a node created by `acc` under a parent with
 * permissions `parent` (xenstored's `construct_node`): a copy of the
 * parent's, except that an unprivileged creator becomes the owner.
 */
export function inheritPerms(parent: NodePerms, acc: Accessor): NodePerms {
  if (acc.privileged) return parent;
  const [first, ...rest] = parent;
  return [{ domid: acc.domid, perms: first.perms }, ...rest];
}

/** Whether two permission lists are identical. */
export function permsEqual(a: NodePerms, b: NodePerms): boolean {
  return a.length === b.length && a.every((e, i) => e.domid === b[i]?.domid && e.perms === b[i]?.perms);
}
