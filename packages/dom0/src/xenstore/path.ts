/**
 * XenStore paths: validation and canonicalisation, as `xenstored_core.c`
 * does them (`canonicalize`, `is_valid_nodename`, `valid_chars`).
 *
 * - A path is absolute if it starts with `/`. Any other path (except the
 *   special `@` names) is relative to the connection's home directory
 *   `/local/domain/<domid>`: `x/y` sent by domain 3 names
 *   `/local/domain/3/x/y`.
 * - A node path may contain only `A-Za-z0-9` and `-/_@`; it must start
 *   with `/`, must not contain `//`, and must not end in `/` unless it is
 *   `/` itself. The empty path is not a path.
 * - An absolute path is at most `XENSTORE_ABS_PATH_MAX` (3072) bytes.
 *   Relative paths should stay within `XENSTORE_REL_PATH_MAX` (2048); Xen
 *   enforces that for unprivileged domains as the path-length quota (the
 *   length below `/local/domain/<domid>/`, see {@link quotaPathLength}).
 * - Names starting with `@` are not nodes: `@introduceDomain` and
 *   `@releaseDomain` are special watch paths, fired by `INTRODUCE` and
 *   `RELEASE`. `WATCH` and `UNWATCH` accept any `@` name (as xenstored's
 *   `check_watch_path` does, up to `XENSTORE_REL_PATH_MAX` bytes), and
 *   `SET_PERMS`/`GET_PERMS` accept the two special ones; every other
 *   request answers `EINVAL` for them.
 *
 * A path that breaks any rule is answered with `EINVAL`.
 *
 * @module
 */
import { XENSTORE } from "@pvkit/abi";

/** The special watch paths and the requests that fire them. */
export const SPECIAL_PATHS = Object.freeze({
  /** Fired when a domain is introduced (`XS_INTRODUCE`). */
  introduceDomain: "@introduceDomain",
  /** Fired when a domain is released (`XS_RELEASE`) or goes away. */
  releaseDomain: "@releaseDomain",
} as const);

/** `"@introduceDomain"` or `"@releaseDomain"`. */
export type SpecialPath = (typeof SPECIAL_PATHS)[keyof typeof SPECIAL_PATHS];

/** Whether `path` is one of the two special watch paths. */
export function isSpecialPath(path: string): path is SpecialPath {
  return path === SPECIAL_PATHS.introduceDomain || path === SPECIAL_PATHS.releaseDomain;
}

/** A connection's home directory, the base of its relative paths: `/local/domain/<domid>`. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;

/** Whether every character of `path` is one Xen allows (`A-Za-z0-9-/_@`). */
export function hasValidChars(path: string): boolean {
  return VALID_CHARS.test(path);
}

/**
 * xenstored's `canonicalize`: a path starting with `/` or `@` is returned
 * unchanged, any other is joined to the home directory of `domid`.
 */
export function canonicalize(path: string, domid: number): string {
  if (path.startsWith("/") || path.startsWith("@")) return path;
  return `${domainPath(domid)}/${path}`;
}

/**
 * xenstored's `is_valid_nodename` for a canonical path: starts with `/`, no
 * trailing `/` (except `/`), no `//`, at most `XENSTORE_ABS_PATH_MAX`
 * bytes, only valid characters.
 */
export function isValidNodePath(path: string): boolean {
  if (!path.startsWith("/")) return false;
  if (path.endsWith("/") && path !== "/") return false;
  if (path.includes("//")) return false;
  if (path.length > XENSTORE.ABS_PATH_MAX) return false;
  return hasValidChars(path);
}

const LOCAL_DOMAIN = /^\/local\/domain\/\d{1,5}\//;

/**
 * The length Xen's path-length quota measures: the whole path, less a
 * leading `/local/domain/<domid>/` if there is one (`is_valid_nodename`
 * with `ACC_PATHLEN`).
 */
export function quotaPathLength(path: string): number {
  const m = LOCAL_DOMAIN.exec(path);
  return path.length - (m === null ? 0 : m[0].length);
}

/** A path accepted by {@link resolvePath}: canonical, and whether it was given relative. */
export interface ResolvedPath {
  /** The canonical absolute path (or the `@` name). */
  readonly path: string;
  /** True if the request gave it relative to the home directory. */
  readonly relative: boolean;
}

/** How {@link resolvePath} treats special names and long paths. */
export interface ResolveOptions {
  /** Accept `@` names: `"watch"` any (up to REL_PATH_MAX), `"special"` only the two special paths, `"none"` none (default). */
  readonly special?: "none" | "special" | "watch";
  /** If set, the most {@link quotaPathLength} may be (the unprivileged path-length quota). */
  readonly maxPathLength?: number | undefined;
}

/**
 * Canonicalises and validates a path from a request of domain `domid`;
 * undefined if it is invalid (the request is then answered `EINVAL`).
 */
export function resolvePath(raw: string, domid: number, opts: ResolveOptions = {}): ResolvedPath | undefined {
  const special = opts.special ?? "none";
  if (raw.startsWith("@")) {
    if (special === "watch") return raw.length <= XENSTORE.REL_PATH_MAX ? { path: raw, relative: false } : undefined;
    if (special === "special" && isSpecialPath(raw)) return { path: raw, relative: false };
    return undefined;
  }
  const path = canonicalize(raw, domid);
  if (!isValidNodePath(path)) return undefined;
  if (opts.maxPathLength !== undefined && quotaPathLength(path) > opts.maxPathLength) return undefined;
  return { path, relative: !raw.startsWith("/") };
}

/** The parent of a canonical path (`/a/b` → `/a`, `/a` → `/`); the root is its own parent. */
export function parentPath(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** The last component of a canonical path (`/a/b` → `b`; `""` for `/`). */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The child `name` of `parent`: `/a` + `b` → `/a/b`, `/` + `b` → `/b`. */
export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** The components of a canonical path: `/a/b` → `["a", "b"]`, `/` → `[]`. */
export function components(path: string): string[] {
  return path === "/" ? [] : path.slice(1).split("/");
}

/**
 * Whether `path` is `ancestor` or lies below it (xenstored's `is_child`;
 * every path is below `/`).
 */
export function isAtOrBelow(path: string, ancestor: string): boolean {
  if (ancestor === "/") return path.startsWith("/");
  return path === ancestor || path.startsWith(ancestor + "/");
}

/**
 * `path` as seen from `home`: the part after `home/`, or `""` for `home`
 * itself (xenstored's `get_watch_path` for relative watches). Paths not
 * below `home` come back unchanged.
 */
export function relativeTo(path: string, home: string): string {
  if (path === home) return "";
  if (path.startsWith(home + "/")) return path.slice(home.length + 1);
  return path;
}
