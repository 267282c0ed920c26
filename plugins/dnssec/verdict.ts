/**
 * What validation concludes (RFC 4033 §5: secure, insecure, bogus), why (RFC 8914 Extended DNS
 * Error codes), and the budget every query's validation spends from.
 */

export type Security = 'secure' | 'insecure' | 'bogus';

/** RFC 8914 §4 and RFC 9276 §3.2: the codes validation reports. */
export const Ede = {
  OTHER: 0,
  UNSUPPORTED_DNSKEY_ALGORITHM: 1,
  UNSUPPORTED_DS_DIGEST: 2,
  INDETERMINATE: 5,
  BOGUS: 6,
  SIGNATURE_EXPIRED: 7,
  SIGNATURE_NOT_YET_VALID: 8,
  DNSKEY_MISSING: 9,
  RRSIGS_MISSING: 10,
  NO_ZONE_KEY_BIT: 11,
  NSEC_MISSING: 12,
  UNSUPPORTED_NSEC3_ITERATIONS: 27,
} as const;

export interface Verdict {
  security: Security;
  /** The Extended DNS Error code that says why (bogus always has one). */
  ede?: number;
  /** For the log and the EDE text. */
  why?: string;
  /** The zone the verdict is about, when known (bogus answers are logged once per zone). */
  zone?: string;
}

export const SECURE: Verdict = { security: 'secure' };

export function insecure(why: string, ede?: number): Verdict {
  return ede === undefined ? { security: 'insecure', why } : { security: 'insecure', why, ede };
}

export function bogus(ede: number, why: string): Verdict {
  return { security: 'bogus', ede, why };
}

/** The weaker of two verdicts: bogus over insecure over secure; the first reason wins a tie. */
export function worse(a: Verdict, b: Verdict): Verdict {
  const rank = (v: Verdict) => (v.security === 'bogus' ? 2 : v.security === 'insecure' ? 1 : 0);
  return rank(b) > rank(a) ? b : a;
}

/** Thrown when a query's validation would pass its work bound or its deadline. */
export class WorkExceeded extends Error {}

/**
 * Signature checks, DS digests and NSEC3 hashes one query may cost (KeyTrap, CVE-2023-50387;
 * NSEC3 hash exhaustion, CVE-2023-50868), and the query's deadline: past either, validation
 * stops and the answer is SERVFAIL.
 */
export class WorkBudget {
  private spent = 0;

  constructor(
    readonly limit: number,
    private readonly deadline: () => boolean,
  ) {}

  get used(): number {
    return this.spent;
  }

  spend(units = 1): void {
    this.spent += units;
    if (this.spent > this.limit) throw new WorkExceeded(`validation needs more than max_work ${this.limit} checks`);
    if (this.deadline()) throw new WorkExceeded('the query deadline passed during validation');
  }
}
