/**
 * Which answers the cache keeps, for how long, and where their TTLs are (so that a hit writes
 * them in place, without decoding or encoding the message).
 */
import { HEADER_SIZE, QType, Rcode } from '../../core/dns/constants.js';
import { anCount, forEachRecord, isTruncated, qdCount, questionSectionEnd, rcodeOf, WireError } from '../../core/dns/wire.js';
import type { EntryKind } from './store.js';

export interface Analysis {
  kind: EntryKind;
  /** The TTL the answer itself gives: smallest record TTL, or the SOA's for a denial. */
  ttl: number;
  /** Offsets of the TTL fields (OPT excluded: its "TTL" holds flags). */
  ttlOffsets: number[];
  questionEnd: number;
}

/**
 * Whether and how an answer may be cached: positive answers; NXDOMAIN and NODATA when they
 * carry a SOA (RFC 2308 §5: without one they are not cached); SERVFAIL, briefly. Never a
 * truncated answer, never other rcodes, never something malformed.
 */
export function analyze(answer: Buffer): Analysis | null {
  if (answer.length < HEADER_SIZE || isTruncated(answer) || qdCount(answer) !== 1) return null;
  const rcode = rcodeOf(answer);
  let kind: EntryKind;
  if (rcode === Rcode.SERVFAIL) kind = 'servfail';
  else if (rcode === Rcode.NXDOMAIN) kind = 'denial';
  else if (rcode === Rcode.NOERROR) kind = anCount(answer) > 0 ? 'success' : 'denial';
  else return null;
  const offsets: number[] = [];
  let minTtl = Infinity;
  let soaTtl = Infinity;
  let questionEnd: number;
  try {
    questionEnd = questionSectionEnd(answer);
    forEachRecord(
      answer,
      (rr) => {
        if (rr.type === QType.OPT) return;
        const ttl = answer.readUInt32BE(rr.fixed + 4);
        offsets.push(rr.fixed + 4);
        if (rr.section === 2) return;
        minTtl = Math.min(minTtl, ttl);
        if (rr.type === QType.SOA && rr.section === 1 && rr.rdataLength >= 20) {
          // RFC 2308 §5: a denial lives min(SOA TTL, SOA MINIMUM), MINIMUM being the last field.
          soaTtl = Math.min(ttl, answer.readUInt32BE(rr.rdataStart + rr.rdataLength - 4));
        }
      },
      questionEnd,
    );
  } catch (err) {
    if (err instanceof WireError) return null;
    throw err;
  }
  let ttl: number;
  if (kind === 'denial') {
    if (soaTtl === Infinity) return null;
    ttl = soaTtl;
  } else {
    ttl = minTtl === Infinity ? 0 : minTtl;
  }
  return { kind, ttl, ttlOffsets: offsets, questionEnd };
}
