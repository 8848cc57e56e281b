/**
 * blkback: the back end of Xen's block split driver (`io/blkif.h`), serving
 * virtual block devices to front ends in other domains from raw image files
 * on the host or from memory.
 *
 * As in Linux and Unikraft, the driver is in two halves that share only
 * the mapped ring and the backing store:
 *
 * | file | what it is |
 * |------|------------|
 * | `request.ts` | the request slot's three layouts, copied out once and checked |
 * | `datapath.ts` | {@link BlkbackRing}: take, map, do the I/O, respond |
 * | `store.ts` | {@link BlockStore}: {@link FileBlockStore} and {@link MemoryBlockStore} |
 * | `host-io.ts` | {@link PirqHostIo}: host file I/O completed on dom0's vCPU through a host interrupt line |
 * | `xenbus.ts` | {@link BlkbackDevice}: the XenStore keys and states, mapping the ring, binding the channel |
 *
 * {@link startBlkback} is what the dom0 kernel runs: it watches
 * `backend/vbd` and makes a {@link BlkbackDevice} for each directory the
 * toolstack creates.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { BackendBus, type Kernel, type XsClient } from "@pvkit/kernel";
import { PirqHostIo } from "./host-io.js";
import { BlkbackDevice, kernelBlkbackPlatform, type BlkbackOptions } from "./xenbus.js";

export * from "./request.js";
export * from "./store.js";
export * from "./host-io.js";
export * from "./datapath.js";
export * from "./xenbus.js";

/** The running blkback: its devices, and how to stop it. A `Backends` for the dom0 kernel. */
export interface BlkbackService {
  /** The devices being served, by backend directory. */
  readonly devices: ReadonlyMap<string, BlkbackDevice>;
  /** The host I/O line, when this kernel has one (dom0 does). */
  readonly hostIo: PirqHostIo | undefined;
  /** Disconnects every device (waiting for its I/O in flight), stops watching, and closes the host I/O port. */
  stop(): Promise<void>;
}

/**
 * Starts blkback in kernel `k`: binds a host interrupt line for file I/O
 * (when the kernel has host lines, as dom0 does) and serves every
 * `backend/vbd/<frontend-domid>/<devid>` directory that appears.
 */
export function startBlkback(k: Kernel, xs: XsClient, options: BlkbackOptions = {}): BlkbackService {
  const bound = k.platform.hostIrqs === undefined ? undefined : PirqHostIo.bind(k);
  const hostIo = bound !== undefined && E.isRight(bound) ? bound.right : undefined;
  const platform = kernelBlkbackPlatform(k, hostIo);
  const bus = new BackendBus(xs, "vbd", (frontendId, id) => new BlkbackDevice(xs, platform, frontendId, id, options));
  bus.start();
  return {
    devices: bus.devices,
    hostIo,
    stop: async () => {
      await bus.stop();
      hostIo?.close();
    },
  };
}
