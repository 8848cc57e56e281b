/**
 * `io/xenbus.h`: the states a split device's two ends walk through.
 *
 * Each end publishes its state in its own XenStore directory (`state`) and
 * watches the other's. The usual path:
 *
 * ```
 * front: Initialising ─────────────► Initialised* ─► Connected ─► Closing ─► Closed
 * back:  Initialising ─► InitWait ────────────────► Connected ─► Closing ─► Closed
 * ```
 *
 * The back end publishes its features and goes to InitWait; the front end
 * reads them, grants its ring, allocates an event channel, writes `ring-ref`
 * and `event-channel` and goes to Initialised (\*some front ends go straight
 * to Connected); the back end maps the ring, binds the channel and goes to
 * Connected; then the front end does too. Either side leaving Connected starts
 * the teardown.
 *
 * @module
 */
import { constants } from "../constants.js";

/** `enum xenbus_state` (`XenbusState*`). */
export const XenbusState = constants("io/xenbus.h", "XenbusState", {
  Unknown: 0,
  /** Setting up: nothing published yet. */
  Initialising: 1,
  /** Back end only: published features, waiting for the front end's details. */
  InitWait: 2,
  /** Front end has published ring-ref and event-channel. */
  Initialised: 3,
  /** Both ends may move data. */
  Connected: 4,
  /** The device is being shut down. */
  Closing: 5,
  /** The device is gone; the other end may clean up. */
  Closed: 6,
  /** Being reconfigured (used by some devices, e.g. pcifront). */
  Reconfiguring: 7,
  /** Reconfiguration done. */
  Reconfigured: 8,
});
