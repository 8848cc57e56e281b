/**
 * The Internet checksum (RFC 1071), as IPv4 headers and ICMP messages carry
 * it: the one's complement of the one's complement sum of the data taken as
 * big-endian 16-bit words, an odd last byte padded with a zero byte.
 *
 * A receiver checks a header by summing it *with* its checksum field: the
 * folded sum of correct data is `0xffff`, so {@link internetChecksum} over
 * it gives 0.
 *
 * @module
 */

/**
 * The folded 16-bit one's complement sum of `bytes[start..end)`, added to
 * `initial` (a partial sum, e.g. of a pseudo-header).
 */
export function onesComplementSum(bytes: Uint8Array, start = 0, end = bytes.length, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < end) sum += bytes[i]! << 8;
  // Fold the carries back in (end-around carry) until the sum fits 16 bits.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The Internet checksum of `bytes[start..end)`: the one's complement of their one's complement sum. */
export function internetChecksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return ~onesComplementSum(bytes, start, end) & 0xffff;
}

/** Whether `bytes[start..end)`, checksum field included, sums correctly (its checksum is 0). */
export function checksumValid(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
  return internetChecksum(bytes, start, end) === 0;
}
