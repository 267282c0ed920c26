/**
 * Where a relay (Anonymized DNSCrypt's, or an ODoH relay) may send packets. A relay open to any address would let anyone reach hosts
 * behind it (its loopback, its LAN) or use it against special-purpose ranges, so a destination
 * must be a global unicast address; loopback and private ranges only with `allow_private`;
 * unspecified, multicast, broadcast, reserved, documentation and translation ranges never.
 */

export type DestinationKind = 'global' | 'private' | 'forbidden';

type Range = readonly [prefix: readonly number[], bits: number];

const V4_PRIVATE: Range[] = [
  [[127], 8],
  [[10], 8],
  [[172, 16], 12],
  [[192, 168], 16],
  [[100, 64], 10],
];
const V4_FORBIDDEN: Range[] = [
  [[0], 8], // "this network"
  [[169, 254], 16], // link-local: meaningless away from the relay's own link
  [[192, 0, 0], 24], // IETF protocol assignments
  [[192, 0, 2], 24], // documentation
  [[198, 18], 15], // benchmarking
  [[198, 51, 100], 24], // documentation
  [[203, 0, 113], 24], // documentation
  [[224], 4], // multicast
  [[240], 4], // reserved, and the broadcast address
];

function inRange(bytes: Buffer, offset: number, [prefix, bits]: Range): boolean {
  for (let bit = 0; bit < bits; bit += 8) {
    const index = bit / 8;
    const take = Math.min(8, bits - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((bytes[offset + index]! & mask) !== ((prefix[index] ?? 0) & mask)) return false;
  }
  return true;
}

/** Classifies 16 address bytes (IPv4 as IPv4-mapped). */
export function destinationKind(address: Buffer): DestinationKind {
  const mapped = address.subarray(0, 10).every((b) => b === 0) && address[10] === 0xff && address[11] === 0xff;
  if (mapped) {
    if (V4_FORBIDDEN.some((r) => inRange(address, 12, r))) return 'forbidden';
    if (V4_PRIVATE.some((r) => inRange(address, 12, r))) return 'private';
    return 'global';
  }
  if (address.subarray(0, 15).every((b) => b === 0)) return address[15] === 1 ? 'private' : 'forbidden'; // ::1 and ::
  if (inRange(address, 0, [[0xfc], 7])) return 'private'; // unique local
  if (!inRange(address, 0, [[0x20], 3])) return 'forbidden'; // outside global unicast (link-local, multicast, IPv4-compatible…)
  if (inRange(address, 0, [[0x20, 0x01, 0x0d, 0xb8], 32])) return 'forbidden'; // documentation
  if (inRange(address, 0, [[0x20, 0x02], 16])) return 'forbidden'; // 6to4: an IPv4 address inside
  if (inRange(address, 0, [[0x20, 0x01, 0x00, 0x00], 32])) return 'forbidden'; // Teredo
  return 'global';
}
