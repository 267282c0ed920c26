/**
 * Checking an RRset's signatures against a zone's keys (RFC 4035 §5.3): the RRSIG must match
 * the RRset and the zone, be inside its validity window, come from a zone key with the same
 * algorithm and key tag, and verify over the RRset in canonical form (RFC 4034 §3.1.8.1, §6).
 */
import { Buffer } from 'node:buffer';
import { typeName } from '../../core/dns/constants.js';
import { publicKeyOf, REVOKED, verifySignature, ZONE_KEY, type Dnskey } from './crypto.js';
import { isAtOrBelow, labelCount, nameText, suffixName, wildcardOf, type WireName } from './names.js';
import { canonicalRdata, type RRset, type Rrsig } from './records.js';
import { bogus, Ede, type Verdict, type WorkBudget } from './verdict.js';

/** Seconds of clock difference forgiven at each end of a signature's window. */
export function skewFor(sig: Rrsig): number {
  const validity = (sig.expiration - sig.inception) >>> 0;
  return Math.min(3600, Math.max(60, Math.floor(validity / 10)));
}

/** RFC 1982 serial arithmetic on 32-bit times: a <= b. */
function serialAtMost(a: number, b: number): boolean {
  return a === b || ((b - a) >>> 0) < 0x80000000;
}

export type WindowCheck = 'ok' | 'expired' | 'not-yet-valid';

export function checkWindow(sig: Rrsig, nowSeconds: number): WindowCheck {
  const now = nowSeconds >>> 0;
  const skew = skewFor(sig);
  if (!serialAtMost((sig.inception - skew) >>> 0, now)) return 'not-yet-valid';
  if (!serialAtMost(now, (sig.expiration + skew) >>> 0)) return 'expired';
  return 'ok';
}

/** The owner name the signature was made over: the wildcard when the answer was expanded from one. */
export function signedOwner(owner: WireName, sig: Rrsig): WireName {
  const count = labelCount(owner);
  return sig.labels < count ? wildcardOf(suffixName(owner, sig.labels)) : owner;
}

/** The bytes an RRSIG signs over `set` (RFC 4034 §3.1.8.1). */
export function signedData(set: RRset, sig: Rrsig): Buffer {
  const owner = signedOwner(set.owner, sig);
  const fixed = Buffer.allocUnsafe(8);
  fixed.writeUInt16BE(set.type, 0);
  fixed.writeUInt16BE(set.qclass, 2);
  fixed.writeUInt32BE(sig.originalTtl, 4);
  const rdatas = set.rrs.map((rr) => canonicalRdata(rr.type, rr.rdata)).sort(Buffer.compare);
  const parts: Buffer[] = [sig.signedPrefix];
  let previous: Buffer | null = null;
  for (const rdata of rdatas) {
    if (previous && previous.equals(rdata)) continue; // RFC 4034 §6.3: duplicates go
    previous = rdata;
    const length = Buffer.allocUnsafe(2);
    length.writeUInt16BE(rdata.length, 0);
    parts.push(owner, fixed, length, rdata);
  }
  return Buffer.concat(parts);
}

export interface SignedResult {
  verdict: Verdict;
  /** The signature that verified. */
  sig?: Rrsig;
  /** Seconds the validated RRset may be kept: its TTLs, the original TTL, the time to expiry. */
  ttl?: number;
}

/**
 * Failed signature checks one RRset may cost before it is bogus. Legitimate data fails almost
 * never; KeyTrap's (many signatures × many keys sharing a tag) fails on purpose. Unbound stops
 * such an RRset the same way.
 */
export const MAX_FAILED_CHECKS_PER_RRSET = 8;

/** Keys a zone may sign with: zone keys of protocol 3, not revoked. */
export function usableKey(key: Dnskey, algorithms: ReadonlySet<number>): boolean {
  return (key.flags & ZONE_KEY) !== 0 && (key.flags & REVOKED) === 0 && key.protocol === 3 && algorithms.has(key.algorithm);
}

/**
 * Verifies `set` with the keys of `zone`. A signature whose key is in `keys` and verifies makes
 * it secure; otherwise the verdict is bogus with the most telling reason. Each signature
 * checked spends one unit of `budget`.
 */
export function verifyRRset(set: RRset, zone: WireName, keys: readonly Dnskey[], nowSeconds: number, algorithms: ReadonlySet<number>, budget: WorkBudget): SignedResult {
  if (set.sigs.length === 0) return { verdict: bogus(Ede.RRSIGS_MISSING, `no RRSIG for ${describe(set)}`) };
  let timeFailure: WindowCheck | null = null;
  let keyFound = false;
  let tried = false;
  let failed = 0;
  for (const sig of set.sigs) {
    if (!sig.signer.equals(zone) || !isAtOrBelow(set.owner, zone)) continue;
    if (sig.labels > labelCount(set.owner)) continue;
    const window = checkWindow(sig, nowSeconds);
    if (window !== 'ok') {
      timeFailure ??= window;
      continue;
    }
    for (const key of keys) {
      if (key.tag !== sig.keyTag || key.algorithm !== sig.algorithm || !usableKey(key, algorithms)) continue;
      const object = publicKeyOf(key);
      if (!object) continue;
      keyFound = true;
      tried = true;
      budget.spend();
      if (verifySignature(sig.algorithm, object, signedData(set, sig), sig.signature)) {
        return { verdict: { security: 'secure' }, sig, ttl: signedTtl(set, sig, nowSeconds) };
      }
      if (++failed >= MAX_FAILED_CHECKS_PER_RRSET) {
        return { verdict: bogus(Ede.BOGUS, `${failed} signature checks of ${describe(set)} failed (a KeyTrap-style RRset?)`) };
      }
    }
  }
  if (!tried && timeFailure === 'expired') return { verdict: bogus(Ede.SIGNATURE_EXPIRED, `the signatures of ${describe(set)} have expired`) };
  if (!tried && timeFailure === 'not-yet-valid') return { verdict: bogus(Ede.SIGNATURE_NOT_YET_VALID, `the signatures of ${describe(set)} are not valid yet`) };
  if (!keyFound) {
    const fromZone = set.sigs.some((s) => s.signer.equals(zone));
    return fromZone
      ? { verdict: bogus(Ede.DNSKEY_MISSING, `no key of the zone matches the signatures of ${describe(set)}`) }
      : { verdict: bogus(Ede.RRSIGS_MISSING, `no RRSIG of the zone for ${describe(set)}`) };
  }
  return { verdict: bogus(Ede.BOGUS, `the signature of ${describe(set)} does not verify`) };
}

function signedTtl(set: RRset, sig: Rrsig, nowSeconds: number): number {
  const left = Math.max(0, (sig.expiration - (nowSeconds >>> 0)) | 0);
  let ttl = Math.min(sig.originalTtl, left);
  for (const rr of set.rrs) ttl = Math.min(ttl, rr.ttl);
  return ttl;
}

export function describe(set: { owner: WireName; type: number }): string {
  return `${nameText(set.owner)} ${typeName(set.type)}`;
}
