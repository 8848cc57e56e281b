/**
 * blkfront: the front end of Xen's block split driver (`io/blkif.h`), giving
 * guest code a block device — read, write, flush and discard sectors, with a
 * bounded queue — over a blkif ring to a back end in another domain.
 *
 * As Unikraft's driver does, it keeps the data path apart from the
 * negotiation:
 *
 * | file | what it is |
 * |------|------------|
 * | `requests.ts` | cutting transfers into requests and segments; the three request layouts |
 * | `datapath.ts` | {@link BlkfrontRing}: the queue, the ring, pages and grants, responses |
 * | `xenbus.ts` | {@link BlkfrontDevice}: the XenStore keys and states; {@link openBlkfront} |
 *
 * ```ts
 * import { kernelMain, openXenstore } from "@pvkit/kernel";
 * import { listVbds, openBlkfront } from "@pvkit/domu";
 *
 * export default kernelMain(async (k) => {
 *   const xs = openXenstore(k);
 *   const [id] = await listVbds(xs);
 *   const disk = await openBlkfront(k, xs, id!, { ringPageOrder: 1 });
 *   if (E.isLeft(disk)) throw new Error(disk.left.message);
 *   await disk.right.write(0, new Uint8Array(4096).fill(7));
 *   await disk.right.flush();
 *   const back = await disk.right.read(0, 8);
 *   await disk.right.close();
 * });
 * ```
 *
 * @module
 */
export * from "./requests.js";
export * from "./datapath.js";
export * from "./xenbus.js";
