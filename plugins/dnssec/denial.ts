/**
 * Authenticated denial of existence: what verified NSEC (RFC 4035 §5.4, RFC 6840 §4) and NSEC3
 * (RFC 5155 §8, RFC 9276) records prove about a name. The records given here have already had
 * their signatures checked against the zone's keys; these functions only reason about names.
 */
import { Buffer } from 'node:buffer';
import { nsec3Hash } from './crypto.js';
import { commonAncestor, compareNames, isAtOrBelow, isBelow, labelCount, lowerName, readWireName, suffixName, wildcardOf, type WireName } from './names.js';
import { bitmapHas, Type, type RRset } from './records.js';
import { bogus, Ede, insecure, SECURE, type Verdict, type WorkBudget } from './verdict.js';

/**
 * NSEC3 iterations above this make a zone insecure (RFC 9276 §3.2 lets validators choose;
 * 150 is unbound's, so both give the same verdicts).
 */
export const MAX_NSEC3_ITERATIONS = 150;

export interface Nsec {
  owner: WireName;
  next: WireName;
  bitmap: Buffer;
}

export interface Nsec3 {
  owner: WireName;
  /** The hash the owner's first label spells (base32hex). */
  hash: Buffer;
  zone: WireName;
  algorithm: number;
  optOut: boolean;
  iterations: number;
  salt: Buffer;
  next: Buffer;
  bitmap: Buffer;
}

export function readNsec(owner: WireName, rdata: Buffer): Nsec | null {
  try {
    const next = readWireName(rdata, 0);
    return { owner, next: lowerName(next.name), bitmap: rdata.subarray(next.end) };
  } catch {
    return null;
  }
}

export function readNsec3(owner: WireName, rdata: Buffer): Nsec3 | null {
  if (rdata.length < 5 || owner.length < 2) return null;
  const saltLength = rdata[4]!;
  const hashAt = 5 + saltLength;
  if (hashAt >= rdata.length) return null;
  const hashLength = rdata[hashAt]!;
  const bitmapAt = hashAt + 1 + hashLength;
  if (hashLength === 0 || bitmapAt > rdata.length) return null;
  const hash = base32hexDecode(owner.subarray(1, 1 + owner[0]!).toString('latin1'));
  if (!hash || hash.length !== hashLength) return null;
  return {
    owner,
    hash,
    zone: owner.subarray(owner[0]! + 1),
    algorithm: rdata[0]!,
    optOut: (rdata[1]! & 0x01) !== 0,
    iterations: rdata.readUInt16BE(2),
    salt: rdata.subarray(5, hashAt),
    next: rdata.subarray(hashAt + 1, bitmapAt),
    bitmap: rdata.subarray(bitmapAt),
  };
}

const BASE32HEX = '0123456789abcdefghijklmnopqrstuv';

export function base32hexDecode(text: string): Buffer | null {
  const lower = text.toLowerCase();
  if (lower.length === 0) return null;
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of lower) {
    const v = BASE32HEX.indexOf(ch);
    if (v < 0) return null;
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

export function base32hexEncode(data: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32HEX[(value >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32HEX[(value << (5 - bits)) & 31];
  return out;
}

/** The proofs of one zone's denial, read from its verified NSEC and NSEC3 RRsets. */
export class Proofs {
  readonly nsecs: Nsec[] = [];
  readonly nsec3s: Nsec3[] = [];
  private readonly hashes = new Map<string, Buffer>();

  constructor(
    readonly zone: WireName,
    sets: readonly RRset[],
    private readonly budget: WorkBudget,
  ) {
    for (const set of sets) {
      for (const rr of set.rrs) {
        if (!isAtOrBelow(rr.owner, zone)) continue;
        if (rr.type === Type.NSEC) {
          const nsec = readNsec(rr.owner, rr.rdata);
          if (nsec) this.nsecs.push(nsec);
        } else if (rr.type === Type.NSEC3) {
          const nsec3 = readNsec3(rr.owner, rr.rdata);
          // RFC 5155 §8.1: unknown hash algorithms and flags are ignored; the owner sits right under the zone.
          if (nsec3 && nsec3.algorithm === 1 && (rr.rdata[1]! & 0xfe) === 0 && nsec3.zone.equals(zone)) this.nsec3s.push(nsec3);
        }
      }
    }
  }

  get empty(): boolean {
    return this.nsecs.length === 0 && this.nsec3s.length === 0;
  }

  /** RFC 9276: too many iterations and the zone's denials are not worth checking. */
  tooManyIterations(): Verdict | null {
    const high = this.nsec3s.find((n) => n.iterations > MAX_NSEC3_ITERATIONS);
    return high ? insecure(`NSEC3 with ${high.iterations} iterations (more than ${MAX_NSEC3_ITERATIONS})`, Ede.UNSUPPORTED_NSEC3_ITERATIONS) : null;
  }

  // ---- NSEC --------------------------------------------------------------------------------

  private nsecAt(name: WireName): Nsec | undefined {
    return this.nsecs.find((n) => n.owner.equals(name));
  }

  /** An NSEC proving that no name exists between its owner and its next name covers `name`. */
  private nsecCovering(name: WireName): Nsec | undefined {
    return this.nsecs.find((n) => {
      if (compareNames(n.owner, name) >= 0) return false;
      // Below a delegation or a DNAME the zone says nothing (RFC 6840 §4.1, RFC 6672 §5.3.4).
      if (isBelow(name, n.owner) && ((bitmapHas(n.bitmap, Type.NS) && !bitmapHas(n.bitmap, Type.SOA)) || bitmapHas(n.bitmap, Type.DNAME))) return false;
      const last = compareNames(n.owner, n.next) >= 0; // the last NSEC points back to the apex
      return last ? isAtOrBelow(name, this.zone) : compareNames(name, n.next) < 0;
    });
  }

  // ---- NSEC3 -------------------------------------------------------------------------------

  private hashOf(name: WireName, params: Nsec3): Buffer {
    const key = `${params.iterations}/${params.salt.toString('hex')}/${name.toString('latin1')}`;
    let hash = this.hashes.get(key);
    if (!hash) {
      this.budget.spend();
      hash = nsec3Hash(name, params.salt, params.iterations);
      this.hashes.set(key, hash);
    }
    return hash;
  }

  private nsec3Matching(name: WireName): Nsec3 | undefined {
    return this.nsec3s.find((n) => n.hash.equals(this.hashOf(name, n)));
  }

  private nsec3Covering(name: WireName): Nsec3 | undefined {
    return this.nsec3s.find((n) => {
      const h = this.hashOf(name, n);
      const afterOwner = Buffer.compare(n.hash, h) < 0;
      const beforeNext = Buffer.compare(h, n.next) < 0;
      return Buffer.compare(n.hash, n.next) < 0 ? afterOwner && beforeNext : afterOwner || beforeNext;
    });
  }

  /**
   * RFC 5155 §8.3: the closest encloser (an ancestor of `name` with a matching NSEC3, not a
   * delegation or DNAME seen from the parent side) and the NSEC3 covering the next closer name.
   */
  private closestEncloser(name: WireName): { ce: WireName; cover: Nsec3 } | null {
    const zoneLabels = labelCount(this.zone);
    for (let n = labelCount(name) - 1; n >= zoneLabels; n--) {
      const candidate = suffixName(name, n);
      const match = this.nsec3Matching(candidate);
      if (!match) continue;
      if (bitmapHas(match.bitmap, Type.DNAME)) return null;
      if (bitmapHas(match.bitmap, Type.NS) && !bitmapHas(match.bitmap, Type.SOA)) return null;
      const cover = this.nsec3Covering(suffixName(name, n + 1));
      return cover ? { ce: candidate, cover } : null;
    }
    return null;
  }

  // ---- proofs ------------------------------------------------------------------------------

  /** NXDOMAIN: `name` does not exist, and no wildcard could have answered for it. */
  nameError(name: WireName): Verdict {
    if (this.nsec3s.length > 0) {
      const ce = this.closestEncloser(name);
      if (!ce) return bogus(Ede.NSEC_MISSING, 'no NSEC3 closest encloser proof for the name error');
      if (!this.nsec3Covering(wildcardOf(ce.ce))) return bogus(Ede.NSEC_MISSING, 'no NSEC3 denies the wildcard');
      if (ce.cover.optOut) return insecure('the NSEC3 covering the name has opt-out');
      return SECURE;
    }
    const cover = this.nsecCovering(name);
    if (!cover || this.nsecAt(name)) return bogus(Ede.NSEC_MISSING, 'no NSEC denies the name');
    const ce = longer(commonAncestor(name, cover.owner), commonAncestor(name, cover.next));
    const wildcard = wildcardOf(ce);
    if (this.nsecAt(wildcard)) return bogus(Ede.BOGUS, 'NSEC shows a wildcard that should have answered');
    if (!this.nsecCovering(wildcard)) return bogus(Ede.NSEC_MISSING, 'no NSEC denies the wildcard');
    return SECURE;
  }

  /** NODATA: `name` exists (or a wildcard does) but has no `type`, nor a CNAME. */
  noData(name: WireName, type: number): Verdict {
    if (this.nsec3s.length > 0) {
      const match = this.nsec3Matching(name);
      if (match) return this.bitmapDenies(match.bitmap, type, name) ? SECURE : bogus(Ede.BOGUS, 'the NSEC3 for the name lists the type');
      const ce = this.closestEncloser(name);
      if (!ce) return bogus(Ede.NSEC_MISSING, 'no NSEC3 for the name nor a closest encloser proof');
      if (type === Type.DS && ce.cover.optOut) return insecure('an opt-out NSEC3 covers the DS name');
      const wildcard = this.nsec3Matching(wildcardOf(ce.ce));
      if (wildcard && this.bitmapDenies(wildcard.bitmap, type, name)) return SECURE;
      return bogus(Ede.NSEC_MISSING, 'no NSEC3 proves there is no data');
    }
    const at = this.nsecAt(name);
    if (at) return this.bitmapDenies(at.bitmap, type, name) ? SECURE : bogus(Ede.BOGUS, 'the NSEC for the name lists the type');
    const cover = this.nsecCovering(name);
    if (cover && isBelow(cover.next, name)) return SECURE; // an empty non-terminal
    if (cover) {
      const ce = longer(commonAncestor(name, cover.owner), commonAncestor(name, cover.next));
      const wildcard = this.nsecAt(wildcardOf(ce));
      if (wildcard && this.bitmapDenies(wildcard.bitmap, type, name)) return SECURE;
    }
    return bogus(Ede.NSEC_MISSING, 'no NSEC proves there is no data');
  }

  /**
   * A wildcard answered for `name` from `*.ce`: prove that `name` itself (and every name
   * between it and `ce`) does not exist (RFC 4035 §5.3.4, RFC 5155 §8.8).
   */
  wildcardAnswer(name: WireName, ce: WireName): Verdict {
    if (this.nsec3s.length > 0) {
      const cover = this.nsec3Covering(suffixName(name, labelCount(ce) + 1));
      if (!cover) return bogus(Ede.BOGUS, 'no NSEC3 proves the wildcard answer');
      return cover.optOut ? insecure('the NSEC3 proving the wildcard answer has opt-out') : SECURE;
    }
    const cover = this.nsecCovering(name);
    if (!cover) return bogus(Ede.BOGUS, 'no NSEC proves the wildcard answer');
    // the closest encloser the NSEC implies must be the wildcard's parent
    const implied = longer(commonAncestor(name, cover.owner), commonAncestor(name, cover.next));
    if (!implied.equals(ce) && isBelow(implied, ce)) return bogus(Ede.BOGUS, 'a closer name than the wildcard exists');
    return SECURE;
  }

  /**
   * For a DS query whose answer has no DS: is `name` an unsigned delegation (insecure), a name
   * inside the zone that is not a cut, or no name at all? Bogus when the proofs say nothing.
   */
  noDs(name: WireName): 'delegation' | 'inside' | 'nonexistent' | Verdict {
    if (this.nsec3s.length > 0) {
      const match = this.nsec3Matching(name);
      if (match) return this.classifyDsBitmap(match.bitmap);
      const ce = this.closestEncloser(name);
      if (!ce) return bogus(Ede.NSEC_MISSING, 'no NSEC3 proves there is no DS');
      // RFC 5155 §8.6: opt-out means an unsigned delegation may be there
      return ce.cover.optOut ? 'delegation' : 'nonexistent';
    }
    const at = this.nsecAt(name);
    if (at) return this.classifyDsBitmap(at.bitmap);
    const cover = this.nsecCovering(name);
    if (!cover) return bogus(Ede.NSEC_MISSING, 'no NSEC proves there is no DS');
    return isBelow(cover.next, name) ? 'inside' : 'nonexistent';
  }

  private classifyDsBitmap(bitmap: Buffer): 'delegation' | 'inside' | Verdict {
    if (bitmapHas(bitmap, Type.DS)) return bogus(Ede.BOGUS, 'the NSEC lists a DS that the answer lacks');
    // the child's apex NSEC cannot deny the DS that lives in the parent
    if (bitmapHas(bitmap, Type.SOA)) return bogus(Ede.BOGUS, 'a DS denial from the child side of the cut');
    return bitmapHas(bitmap, Type.NS) ? 'delegation' : 'inside';
  }

  private bitmapDenies(bitmap: Buffer, type: number, name: WireName): boolean {
    if (bitmapHas(bitmap, type) || bitmapHas(bitmap, Type.CNAME)) return false;
    const parentSide = bitmapHas(bitmap, Type.NS) && !bitmapHas(bitmap, Type.SOA);
    if (type === Type.DS) return !bitmapHas(bitmap, Type.SOA) || name.length === 1;
    return !parentSide;
  }
}

function longer(a: WireName, b: WireName): WireName {
  return labelCount(a) >= labelCount(b) ? a : b;
}
