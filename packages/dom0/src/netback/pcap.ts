/**
 * The classic libpcap capture file format, as tcpdump, tshark and
 * Wireshark read it:
 *
 * ```
 * global header (24 bytes)
 *   u32 magic_number   0xa1b2c3d4 (microsecond timestamps), in the writer's byte order
 *   u16 version_major  2
 *   u16 version_minor  4
 *   i32 thiszone       0 (timestamps are UTC)
 *   u32 sigfigs        0
 *   u32 snaplen        longest record kept
 *   u32 network        link type: LINKTYPE_ETHERNET = 1
 * then per packet a record header (16 bytes) and the bytes captured
 *   u32 ts_sec, u32 ts_usec, u32 incl_len (≤ snaplen), u32 orig_len
 * ```
 *
 * pvkit writes little-endian, as libpcap does on x86 hosts (the file
 * starts `d4 c3 b2 a1`), and stamps each packet with the host's *virtual*
 * time, so the same seed gives the same capture byte for byte.
 *
 * Writing is host I/O done by the guest kernel that owns the bridge (dom0
 * stands in for the host's OS): it is synchronous (`fs.writeSync`), so no
 * guest code ever resumes from a host promise.
 *
 * @module
 */
import { closeSync, openSync, writeSync } from "node:fs";
import * as E from "fp-ts/lib/Either.js";

/** The magic number of a microsecond-resolution capture. */
export const PCAP_MAGIC = 0xa1b2c3d4;
/** The format version written: 2.4. */
export const PCAP_VERSION = Object.freeze({ major: 2, minor: 4 });
/** Link type of Ethernet captures (`LINKTYPE_ETHERNET`, `DLT_EN10MB`). */
export const LINKTYPE_ETHERNET = 1;
/** The snapshot length written unless told otherwise: whole frames up to 64 KiB. */
export const PCAP_DEFAULT_SNAPLEN = 65535;
/** Bytes of the global header. */
export const PCAP_HEADER_SIZE = 24;
/** Bytes of a record header. */
export const PCAP_RECORD_HEADER_SIZE = 16;

/** The 24-byte global header. */
export function pcapHeader(snaplen = PCAP_DEFAULT_SNAPLEN, linktype = LINKTYPE_ETHERNET): Uint8Array {
  const out = new Uint8Array(PCAP_HEADER_SIZE);
  const v = new DataView(out.buffer);
  v.setUint32(0, PCAP_MAGIC, true);
  v.setUint16(4, PCAP_VERSION.major, true);
  v.setUint16(6, PCAP_VERSION.minor, true);
  v.setInt32(8, 0, true);
  v.setUint32(12, 0, true);
  v.setUint32(16, snaplen, true);
  v.setUint32(20, linktype, true);
  return out;
}

/** One record: its header (time `tsNs` in seconds and microseconds) and the frame, cut to `snaplen`. */
export function pcapRecord(tsNs: number, frame: Uint8Array, snaplen = PCAP_DEFAULT_SNAPLEN): Uint8Array {
  const incl = Math.min(frame.length, snaplen);
  const out = new Uint8Array(PCAP_RECORD_HEADER_SIZE + incl);
  const v = new DataView(out.buffer);
  const ns = Math.max(0, Math.floor(tsNs));
  v.setUint32(0, Math.floor(ns / 1e9), true);
  v.setUint32(4, Math.floor((ns % 1e9) / 1e3), true);
  v.setUint32(8, incl, true);
  v.setUint32(12, frame.length, true);
  out.set(frame.subarray(0, incl), PCAP_RECORD_HEADER_SIZE);
  return out;
}

/** Where a bridge sends what crosses it. */
export interface PacketSink {
  /** Records `frame`, seen at virtual time `tsNs`. */
  write(tsNs: number, frame: Uint8Array): void;
  /** Ends the capture. */
  close(): void;
}

/** A capture file, written as packets arrive (synchronously). */
export class PcapFile implements PacketSink {
  private fd: number | undefined;
  /** Records written. */
  records = 0;

  private constructor(
    fd: number,
    /** The file's path. */
    readonly path: string,
    /** Its snapshot length. */
    readonly snaplen: number,
  ) {
    this.fd = fd;
  }

  /** Creates (or truncates) `path` and writes the global header. @throws the file system's error */
  static create(path: string, snaplen = PCAP_DEFAULT_SNAPLEN): PcapFile {
    const fd = openSync(path, "w");
    writeSync(fd, pcapHeader(snaplen));
    return new PcapFile(fd, path, snaplen);
  }

  /** Appends one record; nothing after {@link PcapFile.close}. */
  write(tsNs: number, frame: Uint8Array): void {
    if (this.fd === undefined) return;
    writeSync(this.fd, pcapRecord(tsNs, frame, this.snaplen));
    this.records++;
  }

  /** Closes the file. */
  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A capture kept in memory (tests, or a bridge whose capture is read back in-process). */
export class PcapBuffer implements PacketSink {
  private readonly chunks: Uint8Array[];

  /** Starts with the global header. */
  constructor(readonly snaplen = PCAP_DEFAULT_SNAPLEN) {
    this.chunks = [pcapHeader(snaplen)];
  }

  /** Appends one record. */
  write(tsNs: number, frame: Uint8Array): void {
    this.chunks.push(pcapRecord(tsNs, frame, this.snaplen));
  }

  /** Nothing to release. */
  close(): void {}

  /** The file's bytes so far. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** One packet read back from a capture. */
export interface PcapPacket {
  /** Seconds part of the timestamp. */
  readonly tsSec: number;
  /** Microseconds part of the timestamp. */
  readonly tsUsec: number;
  /** The frame's length on the wire. */
  readonly origLen: number;
  /** The bytes captured. */
  readonly data: Uint8Array;
}

/** A capture read back. */
export interface PcapCapture {
  /** Format version. */
  readonly version: { readonly major: number; readonly minor: number };
  /** Snapshot length. */
  readonly snaplen: number;
  /** Link type. */
  readonly linktype: number;
  /** The packets, in order. */
  readonly packets: readonly PcapPacket[];
}

/** Reads a microsecond capture in either byte order; Left on a bad magic number or a truncated record. */
export function parsePcap(bytes: Uint8Array): E.Either<string, PcapCapture> {
  if (bytes.length < PCAP_HEADER_SIZE) return E.left("shorter than a pcap header");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = v.getUint32(0, true) === PCAP_MAGIC;
  if (!le && v.getUint32(0, false) !== PCAP_MAGIC) return E.left(`bad magic 0x${v.getUint32(0, true).toString(16)}`);
  const packets: PcapPacket[] = [];
  for (let at = PCAP_HEADER_SIZE; at < bytes.length; ) {
    if (at + PCAP_RECORD_HEADER_SIZE > bytes.length) return E.left(`truncated record header at ${at}`);
    const incl = v.getUint32(at + 8, le);
    const end = at + PCAP_RECORD_HEADER_SIZE + incl;
    if (end > bytes.length) return E.left(`truncated record at ${at}`);
    packets.push({ tsSec: v.getUint32(at, le), tsUsec: v.getUint32(at + 4, le), origLen: v.getUint32(at + 12, le), data: bytes.slice(at + PCAP_RECORD_HEADER_SIZE, end) });
    at = end;
  }
  return E.right({ version: { major: v.getUint16(4, le), minor: v.getUint16(6, le) }, snaplen: v.getUint32(16, le), linktype: v.getUint32(20, le), packets });
}
