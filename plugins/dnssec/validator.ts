/**
 * The validator: decides whether an answer is secure, insecure or bogus (RFC 4035 §5), fetching
 * the DS and DNSKEY records it needs through `lookup` (the block's own upstreams).
 *
 * The chain of trust is walked top-down, one label at a time, from the closest trust anchor to
 * the zone that signed the data (or, for unsigned data, to the data's name): a DS query for
 * each name on the way says whether it is a signed zone (DS, then its DNSKEY set validated
 * against it), an unsigned delegation (insecure from there down), or a name inside the zone
 * above (walk on). What is learned is kept in the ZoneCache, so a warm validator asks nothing.
 */
import { Buffer } from 'node:buffer';
import { Rcode } from '../../core/dns/constants.js';
import { DIGESTS, dsDigest, readDnskey, readDs, ZONE_KEY, type Dnskey, type Ds } from './crypto.js';
import { Proofs } from './denial.js';
import type { TrustAnchor } from './anchors.js';
import { isAtOrBelow, isBelow, labelCount, lowerName, nameText, parentName, readWireName, suffixName, type WireName } from './names.js';
import { groupRRsets, rrsetTtl, Type, type Message, type RRset, type Rr } from './records.js';
import { describe, signedOwner, usableKey, verifyRRset } from './rrsig.js';
import { bogus, Ede, insecure, SECURE, worse, type Verdict, type WorkBudget } from './verdict.js';
import { ZoneCache, type ZoneState } from './zone-cache.js';

/** Asks the block's upstreams (DO=1, CD=1) for `name`/`type`; rejects when nobody answers. */
export type Lookup = (name: WireName, type: number) => Promise<Message>;

export interface ValidatorOptions {
  anchors: ReadonlyMap<string, TrustAnchor>;
  /** Negative trust anchors (RFC 7646): names at or below them are not validated. */
  negative: readonly WireName[];
  algorithms: ReadonlySet<number>;
}

/** A zone as far as validation is concerned: secure with its keys, or why not. */
type SecureZone = { kind: 'secure'; zone: WireName; keys: readonly Dnskey[] };
type Resolved = SecureZone | { kind: 'insecure' | 'bogus'; verdict: Verdict };

export interface Outcome {
  verdict: Verdict;
  /** For a secure answer: the records that were validated (the rest are not passed on). */
  answer: Rr[];
  authority: Rr[];
}

/** CNAME and DNAME links followed in one answer. */
const MAX_CHAIN = 16;
/** How long a failed DS or DNSKEY lookup is remembered. */
const LOOKUP_FAILURE_SECONDS = 5;

/** One query's validation: its lookups, its work budget, and the zones it already resolved. */
interface Run {
  lookup: Lookup;
  budget: WorkBudget;
  zones: Map<string, Promise<Resolved>>;
  /** The last name whose zone was looked up: what a bogus verdict is about. */
  lastZone: string;
}

export class Validator {
  constructor(
    private readonly options: ValidatorOptions,
    readonly cache: ZoneCache,
    private readonly nowSeconds: () => number,
    /** Told when the trust anchor's own keys fail only on time: the clock is likely wrong. */
    private readonly onClockProblem: (message: string) => void = () => {},
  ) {}

  async validate(msg: Message, lookup: Lookup, budget: WorkBudget): Promise<Outcome> {
    const run: Run = { lookup, budget, zones: new Map(), lastZone: nameText(msg.qname) };
    // RRSIGs are not signed themselves (RFC 4035 §3.2.1): asked for by type, they are passed on as they are.
    if (msg.qtype === Type.RRSIG) return { verdict: insecure('RRSIG records asked for by type are not validated'), answer: msg.answer, authority: msg.authority };
    const answerSets = groupRRsets(msg.answer);
    const authoritySets = groupRRsets(msg.authority);
    const kept = new Set<RRset>();
    let verdict: Verdict = SECURE;
    let sname = msg.qname;
    let answered = false;

    for (let step = 0; step < MAX_CHAIN && !answered; step++) {
      const here = answerSets.filter((s) => s.owner.equals(sname));
      const direct = msg.qtype === Type.ANY ? here : here.filter((s) => s.type === msg.qtype);
      if (direct.length > 0) {
        for (const set of direct) {
          verdict = worse(verdict, await this.checkData(set, sname, authoritySets, kept, run));
        }
        answered = true;
        break;
      }
      const dname = answerSets.find((s) => s.type === Type.DNAME && isBelow(sname, s.owner));
      if (dname) {
        verdict = worse(verdict, await this.checkData(dname, sname, authoritySets, kept, run));
        const target = synthesize(sname, dname);
        if (!target) return this.outcome(bogus(Ede.BOGUS, 'the DNAME cannot be applied to the name'), kept, run);
        // RFC 6672 §5.3.3: the CNAME beside a DNAME is made by the server, so it is unsigned; it must agree.
        const cname = here.find((s) => s.type === Type.CNAME);
        if (cname) {
          if (!cnameTarget(cname)?.equals(target)) return this.outcome(bogus(Ede.BOGUS, 'the CNAME made from a DNAME points elsewhere'), kept, run);
          kept.add(cname);
        }
        sname = target;
        continue;
      }
      const cname = here.find((s) => s.type === Type.CNAME);
      if (cname) {
        verdict = worse(verdict, await this.checkData(cname, sname, authoritySets, kept, run));
        const target = cnameTarget(cname);
        if (!target) return this.outcome(bogus(Ede.BOGUS, 'a CNAME without a target'), kept, run);
        sname = target;
        continue;
      }
      break;
    }

    if (!answered) {
      if (msg.rcode === Rcode.NXDOMAIN) verdict = worse(verdict, await this.checkDenial(sname, msg.qtype, true, authoritySets, kept, run));
      else if (msg.rcode === Rcode.NOERROR) verdict = worse(verdict, await this.checkDenial(sname, msg.qtype, false, authoritySets, kept, run));
    }
    return this.outcome(verdict, kept, run);
  }

  private outcome(verdict: Verdict, kept: Set<RRset>, run: Run): Outcome {
    if (verdict.security === 'bogus' && verdict.zone === undefined) verdict = { ...verdict, zone: run.lastZone };
    const answer: Rr[] = [];
    const authority: Rr[] = [];
    for (const set of kept) {
      const list = set.rrs[0]?.section === 1 ? authority : answer;
      list.push(...set.rrs, ...set.sigs.map((s) => s.rr));
    }
    return { verdict, answer, authority };
  }

  // ---- one RRset -------------------------------------------------------------------------------

  /**
   * Validates an RRset of the answer; when it was expanded from a wildcard, checks the proof
   * that no closer name exists (records from `authoritySets`).
   */
  private async checkData(set: RRset, sname: WireName, authoritySets: RRset[], kept: Set<RRset>, run: Run): Promise<Verdict> {
    kept.add(set);
    if (set.sigs.length === 0) {
      const zone = await this.zoneOf(set.type === Type.DS ? parentName(set.owner) : set.owner, run);
      if (zone.kind === 'secure') return bogus(Ede.RRSIGS_MISSING, `no RRSIG for ${describe(set)} in the signed zone ${nameText(zone.zone)}`);
      return zone.verdict;
    }
    const signer = signerOf(set);
    if (!signer) return bogus(Ede.BOGUS, `the RRSIGs of ${describe(set)} name a signer that is not a zone above it`);
    const zone = await this.zoneOf(signer, run);
    if (zone.kind !== 'secure') return zone.verdict;
    if (!zone.zone.equals(signer)) return bogus(Ede.DNSKEY_MISSING, `${describe(set)} is signed by ${nameText(signer)}, which is not a signed zone`);
    const result = verifyRRset(set, zone.zone, zone.keys, this.nowSeconds(), this.options.algorithms, run.budget);
    if (result.verdict.security !== 'secure') return result.verdict;
    capTtls(set, result.ttl!);
    const source = signedOwner(set.owner, result.sig!);
    if (source.equals(set.owner)) return SECURE;
    // Expanded from the wildcard *.ce: prove that the name itself does not exist.
    const ce = suffixName(set.owner, result.sig!.labels);
    const proofs = await this.verifiedProofs(zone, authoritySets, kept, run);
    if (!(proofs instanceof Proofs)) return proofs;
    return proofs.tooManyIterations() ?? proofs.wildcardAnswer(sname, ce);
  }

  /** NXDOMAIN or NODATA for `sname`: the zone's SOA and NSEC/NSEC3 records must prove it. */
  private async checkDenial(sname: WireName, qtype: number, nxdomain: boolean, authoritySets: RRset[], kept: Set<RRset>, run: Run): Promise<Verdict> {
    const signed = authoritySets.filter((s) => (s.type === Type.SOA || s.type === Type.NSEC || s.type === Type.NSEC3) && s.sigs.length > 0);
    let signer: WireName | null = null;
    for (const set of signed) {
      for (const sig of set.sigs) {
        if (isAtOrBelow(sname, sig.signer) && isAtOrBelow(set.owner, sig.signer) && (!signer || isBelow(sig.signer, signer))) signer = sig.signer;
      }
    }
    if (!signer) {
      for (const set of authoritySets) if (set.type === Type.SOA) kept.add(set);
      // Nothing signed: fine in an unsigned zone, bogus in a signed one.
      const zone = await this.zoneOf(qtype === Type.DS ? parentName(sname) : sname, run);
      if (zone.kind !== 'secure') return zone.verdict;
      return bogus(Ede.NSEC_MISSING, `no signed denial for ${nameText(sname)} in the signed zone ${nameText(zone.zone)}`);
    }
    const zone = await this.zoneOf(signer, run);
    if (zone.kind !== 'secure') return zone.verdict;
    if (!zone.zone.equals(signer)) return bogus(Ede.DNSKEY_MISSING, `the denial is signed by ${nameText(signer)}, which is not a signed zone`);
    const soa = authoritySets.find((s) => s.type === Type.SOA && s.owner.equals(signer));
    if (soa) {
      const result = verifyRRset(soa, zone.zone, zone.keys, this.nowSeconds(), this.options.algorithms, run.budget);
      if (result.verdict.security !== 'secure') return result.verdict;
      capTtls(soa, result.ttl!);
      kept.add(soa);
    }
    const proofs = await this.verifiedProofs(zone, authoritySets, kept, run);
    if (!(proofs instanceof Proofs)) return proofs;
    const iterations = proofs.tooManyIterations();
    if (iterations) return iterations;
    if (proofs.empty) return bogus(Ede.NSEC_MISSING, `no NSEC or NSEC3 for ${nameText(sname)}`);
    return nxdomain ? proofs.nameError(sname) : proofs.noData(sname, qtype);
  }

  /** The zone's NSEC and NSEC3 RRsets in `sets`, each verified; bogus if one fails. */
  private async verifiedProofs(zone: SecureZone, sets: RRset[], kept: Set<RRset> | null, run: Run): Promise<Proofs | Verdict> {
    const verified: RRset[] = [];
    for (const set of sets) {
      if (set.type !== Type.NSEC && set.type !== Type.NSEC3) continue;
      if (!set.sigs.some((s) => s.signer.equals(zone.zone))) continue;
      const result = verifyRRset(set, zone.zone, zone.keys, this.nowSeconds(), this.options.algorithms, run.budget);
      if (result.verdict.security !== 'secure') return result.verdict;
      capTtls(set, result.ttl!);
      verified.push(set);
      kept?.add(set);
    }
    return new Proofs(zone.zone, verified, run.budget);
  }

  // ---- the chain of trust ----------------------------------------------------------------------

  /** The closest enclosing zone of `name` as validation sees it; at most one walk per query and name. */
  private zoneOf(name: WireName, run: Run): Promise<Resolved> {
    const key = name.toString('latin1');
    run.lastZone = nameText(name);
    let pending = run.zones.get(key);
    if (!pending) {
      pending = this.walk(name, run);
      run.zones.set(key, pending);
    }
    return pending;
  }

  private async walk(target: WireName, run: Run): Promise<Resolved> {
    const anchor = this.closestAnchor(target);
    if (!anchor) return { kind: 'insecure', verdict: insecure(`no trust anchor covers ${nameText(target)}`) };
    if (this.options.negative.some((nta) => isAtOrBelow(target, nta))) {
      return { kind: 'insecure', verdict: insecure(`${nameText(target)} is under a negative trust anchor`) };
    }
    const start = await this.anchorZone(anchor, run);
    if (start.kind !== 'secure') return start;
    let current: SecureZone = start;
    const total = labelCount(target);
    for (let n = labelCount(anchor.zone) + 1; n <= total; n++) {
      const child = suffixName(target, n);
      const state: ZoneState | 'nonexistent' = this.cache.get(child) ?? (await this.probe(child, current, run));
      if (state === 'nonexistent') break;
      if (state.kind === 'secure') current = state;
      else if (state.kind === 'inside') continue;
      else return state;
    }
    return current;
  }

  private closestAnchor(name: WireName): TrustAnchor | undefined {
    for (let n = labelCount(name); n >= 0; n--) {
      const anchor = this.options.anchors.get(nameText(suffixName(name, n)));
      if (anchor) return anchor;
    }
    return undefined;
  }

  /** The anchor zone's DNSKEY set, validated against the anchor's DS or DNSKEY records. */
  private async anchorZone(anchor: TrustAnchor, run: Run): Promise<Resolved> {
    const cached = this.cache.get(anchor.zone);
    if (cached && cached.kind !== 'inside') return cached;
    const resolved = await this.keysFor(anchor.zone, anchor.ds, anchor.keys, Infinity, run);
    if (resolved.kind === 'bogus' && (resolved.verdict.ede === Ede.SIGNATURE_EXPIRED || resolved.verdict.ede === Ede.SIGNATURE_NOT_YET_VALID)) {
      this.onClockProblem(
        `the trust anchor ${nameText(anchor.zone)}'s own keys fail on time alone (${resolved.verdict.why}); ` +
          `the system clock says ${new Date(this.nowSeconds() * 1000).toISOString()}: check it, every signed answer is bogus until it is right`,
      );
    }
    return resolved;
  }

  /**
   * A DS query for `child`, a name one label below the secure zone `parent`: a signed zone,
   * an unsigned delegation, a name inside `parent`, or no name at all. Cached.
   */
  private async probe(child: WireName, parent: SecureZone, run: Run): Promise<ZoneState | 'nonexistent'> {
    let msg: Message;
    try {
      msg = await run.lookup(child, Type.DS);
    } catch (err) {
      const state: ZoneState = { kind: 'bogus', verdict: bogus(Ede.DNSKEY_MISSING, `the DS lookup for ${nameText(child)} failed: ${(err as Error).message}`) };
      this.cache.set(child, state, LOOKUP_FAILURE_SECONDS);
      return state;
    }
    if (msg.rcode !== Rcode.NOERROR && msg.rcode !== Rcode.NXDOMAIN) {
      const state: ZoneState = { kind: 'bogus', verdict: bogus(Ede.DNSKEY_MISSING, `the DS lookup for ${nameText(child)} got rcode ${msg.rcode}`) };
      this.cache.set(child, state, LOOKUP_FAILURE_SECONDS);
      return state;
    }
    const answerSets = groupRRsets(msg.answer);
    const ds = answerSets.find((s) => s.type === Type.DS && s.owner.equals(child));
    if (ds) {
      const result = verifyRRset(ds, parent.zone, parent.keys, this.nowSeconds(), this.options.algorithms, run.budget);
      if (result.verdict.security !== 'secure') {
        const state: ZoneState = { kind: 'bogus', verdict: result.verdict };
        this.cache.set(child, state, rrsetTtl(ds));
        return state;
      }
      const records = ds.rrs.map((rr) => readDs(rr.rdata)).filter((d): d is Ds => d !== null);
      const state = await this.keysFor(child, records, [], result.ttl!, run);
      return state;
    }
    const cname = answerSets.find((s) => s.type === Type.CNAME && s.owner.equals(child));
    if (cname) {
      // A CNAME cannot stand at a zone cut. Unverified on purpose: this can only keep us in
      // the parent's (signed) zone, never make anything insecure.
      this.cache.set(child, { kind: 'inside' }, rrsetTtl(cname));
      return { kind: 'inside' };
    }
    const authoritySets = groupRRsets(msg.authority);
    const proofs = await this.verifiedProofs(parent, authoritySets, null, run);
    const ttl = denialTtl(authoritySets);
    if (!(proofs instanceof Proofs)) {
      const state: ZoneState = { kind: 'bogus', verdict: proofs };
      this.cache.set(child, state, ttl);
      return state;
    }
    const iterations = proofs.tooManyIterations();
    if (iterations) {
      const state: ZoneState = { kind: 'insecure', verdict: iterations };
      this.cache.set(child, state, ttl);
      return state;
    }
    if (proofs.empty) {
      const state: ZoneState = { kind: 'bogus', verdict: bogus(Ede.NSEC_MISSING, `no signed proof that ${nameText(child)} has no DS`) };
      this.cache.set(child, state, ttl);
      return state;
    }
    const found = proofs.noDs(child);
    if (found === 'nonexistent') return found;
    let state: ZoneState;
    if (found === 'inside') state = { kind: 'inside' };
    else if (found === 'delegation') state = { kind: 'insecure', verdict: insecure(`${nameText(child)} is an unsigned delegation`) };
    else state = found.security === 'insecure' ? { kind: 'insecure', verdict: found } : { kind: 'bogus', verdict: found };
    this.cache.set(child, state, ttl);
    return state;
  }

  /**
   * `zone`'s DNSKEY set, fetched and validated against its DS records (or anchor keys): a key
   * the DS matches must sign the set (RFC 4035 §5.2). Cached.
   */
  private async keysFor(zone: WireName, dsRecords: readonly Ds[], anchorKeys: readonly Dnskey[], dsTtl: number, run: Run): Promise<Resolved> {
    const algorithms = this.options.algorithms;
    let ds = dsRecords.filter((d) => algorithms.has(d.algorithm) && DIGESTS[d.digestType] !== undefined);
    // RFC 4509 §3: with a SHA-256 (or better) DS at hand, SHA-1 ones are ignored (no downgrade).
    if (ds.some((d) => d.digestType !== 1)) ds = ds.filter((d) => d.digestType !== 1);
    const trusted = anchorKeys.filter((k) => usableKey(k, algorithms));
    if (ds.length === 0 && trusted.length === 0) {
      const unknownAlgorithm = dsRecords.some((d) => !algorithms.has(d.algorithm)) || anchorKeys.length > 0;
      const state: Resolved = {
        kind: 'insecure',
        verdict: insecure(`no DS of ${nameText(zone)} uses a supported algorithm and digest`, unknownAlgorithm ? Ede.UNSUPPORTED_DNSKEY_ALGORITHM : Ede.UNSUPPORTED_DS_DIGEST),
      };
      this.cache.set(zone, state, dsTtl === Infinity ? 3600 : dsTtl);
      return state;
    }
    let msg: Message;
    try {
      msg = await run.lookup(zone, Type.DNSKEY);
    } catch (err) {
      const state: Resolved = { kind: 'bogus', verdict: bogus(Ede.DNSKEY_MISSING, `the DNSKEY lookup for ${nameText(zone)} failed: ${(err as Error).message}`) };
      this.cache.set(zone, state, LOOKUP_FAILURE_SECONDS);
      return state;
    }
    const set = groupRRsets(msg.answer).find((s) => s.type === Type.DNSKEY && s.owner.equals(zone));
    let failure: Verdict = bogus(Ede.DNSKEY_MISSING, `no DNSKEY of ${nameText(zone)} matches its DS`);
    if (!set) {
      failure = bogus(Ede.DNSKEY_MISSING, `no DNSKEY set for ${nameText(zone)}`);
    } else {
      const keys = set.rrs.map((rr) => readDnskey(rr.rdata)).filter((k): k is Dnskey => k !== null);
      const now = this.nowSeconds();
      for (const key of keys) {
        if ((key.flags & ZONE_KEY) === 0 && ds.some((d) => d.keyTag === key.tag && d.algorithm === key.algorithm)) {
          failure = bogus(Ede.NO_ZONE_KEY_BIT, `the DNSKEY ${key.tag} of ${nameText(zone)} that its DS names is not a zone key`);
        }
        if (!this.entrusted(zone, key, ds, trusted, run)) continue;
        const result = verifyRRset(set, zone, [key], now, algorithms, run.budget);
        if (result.verdict.security === 'secure') {
          const state: Resolved = { kind: 'secure', zone, keys: keys.filter((k) => usableKey(k, algorithms)) };
          this.cache.set(zone, state, Math.min(result.ttl!, dsTtl));
          return state;
        }
        failure = result.verdict;
      }
    }
    const state: Resolved = { kind: 'bogus', verdict: failure };
    this.cache.set(zone, state, LOOKUP_FAILURE_SECONDS);
    return state;
  }

  /** Whether a DS record (digest checked) or an anchor key vouches for `key`. */
  private entrusted(zone: WireName, key: Dnskey, ds: readonly Ds[], anchorKeys: readonly Dnskey[], run: Run): boolean {
    if (!usableKey(key, this.options.algorithms)) return false;
    if (anchorKeys.some((k) => k.rdata.equals(key.rdata))) return true;
    for (const d of ds) {
      if (d.keyTag !== key.tag || d.algorithm !== key.algorithm) continue;
      run.budget.spend();
      if (dsDigest(zone, key, d.digestType)?.equals(d.digest)) return true;
    }
    return false;
  }
}

/** The signer of an RRset's signatures: a zone at or above it (strictly above for DS), the closest one. */
function signerOf(set: RRset): WireName | null {
  let best: WireName | null = null;
  for (const sig of set.sigs) {
    const ok = set.type === Type.DS ? isBelow(set.owner, sig.signer) : isAtOrBelow(set.owner, sig.signer);
    if (ok && (!best || isBelow(sig.signer, best))) best = sig.signer;
  }
  return best;
}

function cnameTarget(set: RRset): WireName | null {
  const rr = set.rrs[0];
  if (!rr || set.rrs.length !== 1) return null;
  try {
    return lowerName(readWireName(rr.rdata, 0).name);
  } catch {
    return null;
  }
}

/** RFC 6672 §2.2: the name with the DNAME's owner replaced by its target; null when too long. */
function synthesize(name: WireName, dname: RRset): WireName | null {
  const rr = dname.rrs[0];
  if (!rr || dname.rrs.length !== 1) return null;
  try {
    const target = lowerName(readWireName(rr.rdata, 0).name);
    const prefix = name.subarray(0, name.length - dname.owner.length);
    const out = Buffer.concat([prefix, target]);
    return out.length > 255 ? null : out;
  } catch {
    return null;
  }
}

/** RFC 4035 §5.3.3: a validated record is kept no longer than its signature allows. */
function capTtls(set: RRset, ttl: number): void {
  for (const rr of set.rrs) rr.ttl = Math.min(rr.ttl, ttl);
  for (const sig of set.sigs) sig.rr.ttl = Math.min(sig.rr.ttl, ttl);
}

/** How long a denial may be kept: RFC 2308, the SOA's TTL and MINIMUM; else the proofs' TTLs. */
function denialTtl(sets: RRset[]): number {
  let ttl = Infinity;
  for (const set of sets) {
    if (set.type === Type.SOA && set.rrs[0] && set.rrs[0].rdata.length >= 20) {
      ttl = Math.min(ttl, set.rrs[0].ttl, set.rrs[0].rdata.readUInt32BE(set.rrs[0].rdata.length - 4));
    } else if (set.type === Type.NSEC || set.type === Type.NSEC3) {
      ttl = Math.min(ttl, rrsetTtl(set));
    }
  }
  return ttl === Infinity ? 60 : ttl;
}
