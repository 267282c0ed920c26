/**
 * What the cache keeps of an answer: the wire message itself, stored once, and where its TTLs
 * are. A hit copies the message and writes the TTLs minus the entry's age in place: no decoding
 * and no encoding on the hit path.
 */
import { HEADER_SIZE, QType, Rcode } from '../../core/dns/constants.js';
import { anCount, forEachRecord, isTruncated, qdCount, questionSectionEnd, rcodeOf, WireError } from '../../core/dns/wire.js';

export type EntryKind = 'success' | 'denial' | 'servfail';

export interface CacheEntry {
  readonly kind: EntryKind;
  readonly wire: Buffer;
  /** Offsets of the TTL fields (OPT excluded: its "TTL" holds flags). */
  readonly ttlOffsets: Uint32Array;
  /** The TTLs as received, in the same order. */
  readonly ttls: Uint32Array;
  /** End of the question section: its name is rewritten with the asking client's case. */
  readonly questionEnd: number;
  /** Monotonic ms when stored. */
  readonly storedAt: number;
  /** How long the entry is fresh, in seconds (the answer's TTL, clamped by the configuration). */
  readonly ttl: number;
  /** The largest TTL handed out (MAXTTL): clients keep the answer no longer than we do. */
  readonly maxTtl: number;
  /** For prefetch: hits in the current window, and when that window began. */
  hits: number;
  windowStart: number;
  refreshing: boolean;
}

export interface Analysis {
  kind: EntryKind;
  /** The TTL the answer itself gives: smallest record TTL, or the SOA's for a denial. */
  ttl: number;
  ttlOffsets: Uint32Array;
  ttls: Uint32Array;
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
  const ttls: number[] = [];
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
        ttls.push(ttl);
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
  return { kind, ttl, ttlOffsets: Uint32Array.from(offsets), ttls: Uint32Array.from(ttls), questionEnd };
}

/**
 * A copy of the stored answer for a client: each TTL is what is left of it after `ageSeconds`
 * (capped at MAXTTL, never below 0), or `fixedTtl` for every record (stale answers, RFC 8767
 * §4: 30 s); the question name in the client's own case.
 */
export function render(entry: CacheEntry, query: Buffer, queryQuestionEnd: number, ageSeconds: number, fixedTtl?: number): Buffer {
  const out = Buffer.allocUnsafe(entry.wire.length);
  entry.wire.copy(out);
  const { ttlOffsets, ttls } = entry;
  for (let i = 0; i < ttlOffsets.length; i++) {
    const ttl = fixedTtl ?? Math.max(0, Math.min(ttls[i]!, entry.maxTtl) - ageSeconds);
    out.writeUInt32BE(ttl, ttlOffsets[i]!);
  }
  // Same name, so the same length: only the case may differ (DNS 0x20 clients check it).
  if (queryQuestionEnd === entry.questionEnd) query.copy(out, HEADER_SIZE, HEADER_SIZE, queryQuestionEnd - 4);
  return out;
}
