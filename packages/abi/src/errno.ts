/**
 * `errno.h`: Xen's error numbers. A hypercall fails by returning the negated
 * value (`-XEN_ERRNO.EINVAL`, i.e. -22); the values match Linux's on x86.
 * `EINTR` and `ERESTART` are internal to Xen and never reach a guest, so they
 * are not here.
 *
 * @module
 */
import { constants, keyOf } from "./constants.js";

/** Xen error numbers (`XEN_E*`), positive; hypercalls return them negated. */
export const XEN_ERRNO = constants("errno.h", "XEN_", {
  /** Operation not permitted */
  EPERM: 1,
  /** No such file or directory */
  ENOENT: 2,
  /** No such process */
  ESRCH: 3,
  /** I/O error */
  EIO: 5,
  /** No such device or address */
  ENXIO: 6,
  /** Arg list too long */
  E2BIG: 7,
  /** Exec format error */
  ENOEXEC: 8,
  /** Bad file number */
  EBADF: 9,
  /** No child processes */
  ECHILD: 10,
  /** Try again */
  EAGAIN: 11,
  /** Operation would block.  Aliases EAGAIN */
  EWOULDBLOCK: 11,
  /** Out of memory */
  ENOMEM: 12,
  /** Permission denied */
  EACCES: 13,
  /** Bad address */
  EFAULT: 14,
  /** Device or resource busy */
  EBUSY: 16,
  /** File exists */
  EEXIST: 17,
  /** Cross-device link */
  EXDEV: 18,
  /** No such device */
  ENODEV: 19,
  /** Not a directory */
  ENOTDIR: 20,
  /** Is a directory */
  EISDIR: 21,
  /** Invalid argument */
  EINVAL: 22,
  /** File table overflow */
  ENFILE: 23,
  /** Too many open files */
  EMFILE: 24,
  /** No space left on device */
  ENOSPC: 28,
  /** Read-only file system */
  EROFS: 30,
  /** Too many links */
  EMLINK: 31,
  /** Math argument out of domain of func */
  EDOM: 33,
  /** Math result not representable */
  ERANGE: 34,
  /** Resource deadlock would occur */
  EDEADLK: 35,
  /** Resource deadlock would occur. Aliases EDEADLK */
  EDEADLOCK: 35,
  /** File name too long */
  ENAMETOOLONG: 36,
  /** No record locks available */
  ENOLCK: 37,
  /** Function not implemented */
  ENOSYS: 38,
  /** Directory not empty */
  ENOTEMPTY: 39,
  /** No data available */
  ENODATA: 61,
  /** Timer expired */
  ETIME: 62,
  /** Not a data message */
  EBADMSG: 74,
  /** Value too large for defined data type */
  EOVERFLOW: 75,
  /** Illegal byte sequence */
  EILSEQ: 84,
  /** Socket operation on non-socket */
  ENOTSOCK: 88,
  /** Message too large. */
  EMSGSIZE: 90,
  /** Operation not supported on transport endpoint */
  EOPNOTSUPP: 95,
  /** Address already in use */
  EADDRINUSE: 98,
  /** Cannot assign requested address */
  EADDRNOTAVAIL: 99,
  /** No buffer space available */
  ENOBUFS: 105,
  /** Transport endpoint is already connected */
  EISCONN: 106,
  /** Transport endpoint is not connected */
  ENOTCONN: 107,
  /** Connection timed out */
  ETIMEDOUT: 110,
  /** Connection refused */
  ECONNREFUSED: 111,
});

/** The name of a Xen error number, e.g. `EINVAL` for 22 (or -22); `E<n>` when unknown. */
export function errnoName(errno: number): string {
  return keyOf(XEN_ERRNO, Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}
