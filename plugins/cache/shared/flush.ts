/**
 * What a flush of one name removes. An entry's key is a digest of its whole question, so the
 * questions are listed: the name with each type below (Unbound's `flush` list and a few more),
 * class IN, and every combination of the key bits (DO, CD, EDNS).
 */
import { QClass } from '../../../core/dns/constants.js';
import { buildQuery } from '../../../core/dns/message.js';

export const FLUSHED_TYPES: readonly number[] = [
  1, // A
  28, // AAAA
  5, // CNAME
  39, // DNAME
  2, // NS
  6, // SOA
  15, // MX
  16, // TXT
  12, // PTR
  33, // SRV
  35, // NAPTR
  64, // SVCB
  65, // HTTPS
  257, // CAA
  43, // DS
  48, // DNSKEY
];

/** The key bits' combinations: DO 1, CD 2, EDNS 4. */
export const KEY_BITS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7];

/** A query per flushed type for `name` (the question ends the message). Throws for a name that is not one. */
export function flushedQuestions(name: string): Buffer[] {
  return FLUSHED_TYPES.map((type) => buildQuery(name, type, { qclass: QClass.IN }));
}
