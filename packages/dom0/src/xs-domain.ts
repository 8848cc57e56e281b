/**
 * What the toolstack writes to XenStore for each domain, as libxl does
 * (`libxl__domain_make`, `libxl__build_post`):
 *
 * ```
 * /local/domain/<id>                 n0 r<id>   (dom0 owns it; the guest may read)
 *   name, domid, vm
 *   memory/static-max, memory/target (KiB)
 *   console/ring-ref, console/port, console/type, console/limit
 *   store/ring-ref, store/port
 *   cpu/<n>/availability
 *   control/, data/, device/, error/, drivers/, attr/   owned by the guest
 *   control/shutdown, control/platform-feature-*       where dom0 and xl ask the guest to act
 * ```
 *
 * then `XS_INTRODUCE domid store_mfn store_port`, which tells xenstored to
 * start serving the guest's ring. On the way out, `XS_RELEASE` removes it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { PAGE_SIZE } from "@pvkit/abi";
import type { XsClient, XsError, XsPerms, XsTx } from "@pvkit/kernel";
import type { BuiltDomain } from "./builder.js";

/** What XenStore says of a domain beyond what the builder knows. */
export interface DomainRecord {
  /** The domain's name. */
  readonly name: string;
  /** Its memory in pages. */
  readonly pages: number;
  /** Its vCPUs. */
  readonly vcpus: number;
}

/** The directories a guest owns and may write in its home. */
export const GUEST_WRITABLE = ["control", "data", "device", "error", "drivers", "attr"] as const;

/** Writes `/local/domain/<id>` for a built domain and introduces it to xenstored. */
export function publishDomain(xs: XsClient, d: BuiltDomain, rec: DomainRecord): TE.TaskEither<XsError, void> {
  const home = `/local/domain/${d.domid}`;
  const readOnly: XsPerms = { owner: 0, others: "n", entries: [{ domid: d.domid, access: "r" }] };
  const guestOwned: XsPerms = { owner: d.domid, others: "n", entries: [] };
  const kib = String(rec.pages * (PAGE_SIZE / 1024));
  const keys: [string, string][] = [
    ["name", rec.name],
    ["domid", String(d.domid)],
    ["vm", `/vm/${d.domid}`],
    ["memory/static-max", kib],
    ["memory/target", kib],
    ["console/ring-ref", String(d.p2m[d.layout.consolePfn])],
    ["console/port", String(d.consolePort)],
    ["console/type", "xenconsoled"],
    ["console/limit", "1048576"],
    ["store/ring-ref", String(d.p2m[d.layout.storePfn])],
    ["store/port", String(d.storePort)],
    ...Array.from({ length: rec.vcpus }, (_, n): [string, string] => [`cpu/${n}/availability`, "online"]),
  ];
  const body = (tx: XsTx) =>
    pipe(
      xs.mkdir(home, tx),
      TE.chain(() => xs.setPerms(home, readOnly, tx)),
      TE.chain(() => TE.sequenceSeqArray(keys.map(([k, v]) => xs.write(`${home}/${k}`, v, tx)))),
      TE.chain(() => TE.sequenceSeqArray(GUEST_WRITABLE.map((dir) => pipe(xs.mkdir(`${home}/${dir}`, tx), TE.chain(() => xs.setPerms(`${home}/${dir}`, guestOwned, tx)))))),
      TE.chain(() => xs.write(`${home}/control/platform-feature-multiprocessor-suspend`, "1", tx)),
      TE.map(() => undefined),
    );
  return pipe(
    xs.transaction(body),
    TE.chain(() => xs.introduce(d.domid, d.p2m[d.layout.storePfn]!, d.storePort)),
  );
}

/** Writes dom0's own home, as libxl does for the initial domain. */
export function publishDom0(xs: XsClient, pages: number): TE.TaskEither<XsError, void> {
  return pipe(
    TE.sequenceSeqArray([
      xs.write("/local/domain/0/name", "Domain-0"),
      xs.write("/local/domain/0/domid", "0"),
      xs.write("/local/domain/0/memory/target", String(pages * (PAGE_SIZE / 1024))),
      xs.mkdir("/local/domain/0/control"),
    ]),
    TE.map(() => undefined),
  );
}

/** Tells xenstored a domain is gone (`XS_RELEASE`); its home goes with it. */
export function releaseDomain(xs: XsClient, domid: number): Promise<E.Either<XsError, void>> {
  return xs.release(domid)();
}

/** A split device as the toolstack creates it (libxl's `device_add`). */
export interface DeviceSpec {
  /** The device type: `vbd`, `vif`, `console`, ... */
  readonly type: string;
  /** The device id in the frontend (a vbd's virtual-device number, a vif's handle). */
  readonly devid: number;
  /** The domain the frontend runs in. */
  readonly frontendDomid: number;
  /** The domain the backend runs in: dom0, or a driver domain. */
  readonly backendDomid: number;
  /** Extra keys of the frontend directory (e.g. `virtual-device`, `mac`). */
  readonly frontend?: Readonly<Record<string, string>>;
  /** Extra keys of the backend directory (e.g. `params`, `mode`, `bridge`). */
  readonly backend?: Readonly<Record<string, string>>;
}

/** Where a device's two directories are. */
export function devicePaths(d: DeviceSpec): { readonly frontend: string; readonly backend: string } {
  return {
    frontend: `/local/domain/${d.frontendDomid}/device/${d.type}/${d.devid}`,
    backend: `/local/domain/${d.backendDomid}/backend/${d.type}/${d.frontendDomid}/${d.devid}`,
  };
}

/**
 * Creates both directories of a device in one transaction, as libxl does:
 * the frontend's owned by the frontend domain and readable by the backend's,
 * the backend's the other way round; both `state` Initialising, the backend
 * `online`. The drivers' xenbus watches take it from there.
 */
export function addDevice(xs: XsClient, d: DeviceSpec): TE.TaskEither<XsError, void> {
  return xs.transaction((tx) => writeDevice(xs, d, tx));
}

/** {@link addDevice}'s writes, inside the caller's transaction `tx`. */
export function writeDevice(xs: XsClient, d: DeviceSpec, tx: XsTx): TE.TaskEither<XsError, void> {
  const { frontend, backend } = devicePaths(d);
  const writeAll = (dir: string, keys: Readonly<Record<string, string>>) => TE.sequenceSeqArray(Object.entries(keys).map(([k, v]) => xs.write(`${dir}/${k}`, v, tx)));
  return pipe(
    xs.mkdir(frontend, tx),
    TE.chain(() => xs.setPerms(frontend, { owner: d.frontendDomid, others: "n", entries: [{ domid: d.backendDomid, access: "r" }] }, tx)),
    TE.chain(() => writeAll(frontend, { backend, "backend-id": String(d.backendDomid), state: "1", ...d.frontend })),
    TE.chain(() => xs.mkdir(backend, tx)),
    TE.chain(() => xs.setPerms(backend, { owner: d.backendDomid, others: "n", entries: [{ domid: d.frontendDomid, access: "r" }] }, tx)),
    TE.chain(() => writeAll(backend, { frontend, "frontend-id": String(d.frontendDomid), online: "1", state: "1", ...d.backend })),
    TE.map(() => undefined),
  );
}

/**
 * Starts removing a device, as libxl's `device_remove` does: the backend is
 * taken offline and asked to close (`online` 0, `state` Closing); the drivers
 * tear down. {@link forgetDevice} then removes both directories.
 */
export function removeDevice(xs: XsClient, d: DeviceSpec): TE.TaskEither<XsError, void> {
  const { backend } = devicePaths(d);
  return xs.transaction((tx) =>
    pipe(
      xs.write(`${backend}/online`, "0", tx),
      TE.chain(() => xs.write(`${backend}/state`, "5", tx)),
    ),
  );
}

/** Removes both directories of a device once its drivers have closed. */
export function forgetDevice(xs: XsClient, d: DeviceSpec): TE.TaskEither<XsError, void> {
  const { frontend, backend } = devicePaths(d);
  return pipe(
    xs.rm(frontend),
    TE.chain(() => xs.rm(backend)),
  );
}
