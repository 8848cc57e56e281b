/**
 * ICMPv4 (RFC 792) echo request and reply, the messages of `ping`:
 *
 * ```
 * |     Type      |     Code      |          Checksum             |
 * |           Identifier          |        Sequence Number        |
 * |     Data ...
 * ```
 *
 * The checksum is the Internet checksum (RFC 1071) of the whole message,
 * taken with the checksum field zero. A reply echoes the request's
 * identifier, sequence number and data.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { checksumValid, internetChecksum } from "./checksum.js";

/** ICMP message types the stack uses. */
export const ICMP_TYPE = Object.freeze({
  /** Echo Reply. */
  ECHO_REPLY: 0,
  /** Destination Unreachable. */
  DEST_UNREACH: 3,
  /** Echo (request). */
  ECHO_REQUEST: 8,
});

/** Bytes of the echo header (type, code, checksum, identifier, sequence). */
export const ICMP_ECHO_HLEN = 8;

/** An echo request or reply. */
export interface IcmpEcho {
  /** {@link ICMP_TYPE}.ECHO_REQUEST or ECHO_REPLY. */
  readonly type: number;
  /** Always 0 for echo. */
  readonly code: number;
  /** Identifier (ping uses its process id). */
  readonly id: number;
  /** Sequence number. */
  readonly seq: number;
  /** The data, echoed by the reply. */
  readonly data: Uint8Array;
}

/** Builds an echo message with its checksum. */
export function encodeIcmpEcho(m: IcmpEcho): Uint8Array {
  const out = new Uint8Array(ICMP_ECHO_HLEN + m.data.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, m.type);
  v.setUint8(1, m.code);
  v.setUint16(4, m.id & 0xffff);
  v.setUint16(6, m.seq & 0xffff);
  out.set(m.data, ICMP_ECHO_HLEN);
  v.setUint16(2, internetChecksum(out));
  return out;
}

/** Decodes an ICMP message as echo: Left if short, of another type, or with a bad checksum. */
export function decodeIcmpEcho(bytes: Uint8Array): E.Either<string, IcmpEcho> {
  if (bytes.length < ICMP_ECHO_HLEN) return E.left(`ICMP message of ${bytes.length} bytes`);
  if (!checksumValid(bytes)) return E.left("bad ICMP checksum");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint8(0);
  if (type !== ICMP_TYPE.ECHO_REQUEST && type !== ICMP_TYPE.ECHO_REPLY) return E.left(`ICMP type ${type} is not echo`);
  return E.right({ type, code: v.getUint8(1), id: v.getUint16(4), seq: v.getUint16(6), data: bytes.subarray(ICMP_ECHO_HLEN) });
}
