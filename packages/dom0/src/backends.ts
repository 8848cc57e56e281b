/**
 * What a running set of back ends looks like to the dom0 kernel that
 * started it.
 *
 * @module
 */

/** Back ends serving devices; {@link Backends.stop} tears them all down. */
export interface Backends {
  /** Disconnects every device and stops watching for new ones. */
  stop(): Promise<void>;
}
