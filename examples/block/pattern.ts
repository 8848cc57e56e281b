/**
 * The bytes the example's guest writes across its disk, and what the disk
 * should hold afterwards: the guest and the test agree on it by importing
 * this one module.
 */

/** The byte the guest writes at byte `offset` of the disk: different in every sector, never all zero. */
export function patternByte(offset: number): number {
  return ((offset >>> 9) * 131 + (offset & 0x1ff) * 7 + 1) & 0xff;
}

/** The pattern for `length` bytes from byte `offset` of the disk. */
export function patternAt(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = patternByte(offset + i);
  return out;
}

/** The range the guest discards after verifying the pattern: sectors `[start, start + count)`, scaled to the disk. */
export function discardRange(sectors: number): { readonly start: number; readonly count: number } {
  return { start: Math.floor(sectors / 4), count: Math.floor(sectors / 8) };
}

/** What a disk of `sectors` sectors holds after the guest's run: the pattern, with the discarded range zeroed. */
export function expectedDisk(sectors: number): Uint8Array {
  const bytes = patternAt(0, sectors * 512);
  const d = discardRange(sectors);
  bytes.fill(0, d.start * 512, (d.start + d.count) * 512);
  return bytes;
}

/** The first bytes of the example's read-only disk. */
export const READ_ONLY_LABEL = "pvkit read-only disk: the guest may read this, never change it";
