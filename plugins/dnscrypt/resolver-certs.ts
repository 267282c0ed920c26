/**
 * The serving side's short-term keys (spec §13): a new X25519 key pair and signed certificate
 * every ROTATE_EVERY_S, each valid for CERT_LIFETIME_S so that validity windows overlap; the
 * serial grows with every certificate; keys of expired certificates are dropped. Only the newest
 * certificate is served, every unexpired one still decrypts. Shared keys are cached per
 * certificate and client key (clients reuse their key across queries), in a bounded cache where
 * a flood of keys seen once cannot push out the keys of clients that come back.
 */
import type { Clock } from '../../core/clock.js';
import { parseCertificate, signCertificate, type Certificate } from '../../lib/dnscrypt/certificate.js';
import { ANON_MAGIC, CLIENT_MAGIC_SIZE, EsVersion } from '../../lib/dnscrypt/constants.js';
import { sharedKey, x25519KeyPair } from '../../lib/dnscrypt/crypto.js';
import type { ProviderKeyPair } from '../../lib/dnscrypt/provider-key.js';

/** A certificate lives a day (ts-end = ts-start + lifetime)… */
export const CERT_LIFETIME_S = 24 * 3600;
/** …and a new one comes every 8 hours, so three overlap. */
export const ROTATE_EVERY_S = 8 * 3600;
/** Starts an hour back, for clients whose clocks run late. */
const BACKDATE_S = 3600;
/** Shared keys kept per certificate for client keys seen once… */
const NEW_KEYS = 5_000;
/** …and for client keys seen again (the clients that reuse their key). */
const KEPT_KEYS = 10_000;

/**
 * A segmented cache of shared keys: a key enters `fresh`; used again while there, it moves to
 * `kept`. Each is a Map in insertion (FIFO, for `fresh`) or last-use (LRU, for `kept`) order,
 * so that every step, eviction included, is O(1). Keys used once — all a flood of made-up
 * client keys can produce — only ever evict each other.
 */
export class SharedKeyCache {
  private readonly fresh = new Map<string, Buffer>();
  private readonly kept = new Map<string, Buffer>();

  get(id: string): Buffer | undefined {
    const kept = this.kept.get(id);
    if (kept) {
      this.kept.delete(id);
      this.kept.set(id, kept);
      return kept;
    }
    const fresh = this.fresh.get(id);
    if (fresh) {
      this.fresh.delete(id);
      if (this.kept.size >= KEPT_KEYS) this.kept.delete(this.kept.keys().next().value!);
      this.kept.set(id, fresh);
    }
    return fresh;
  }

  add(id: string, key: Buffer): void {
    if (this.fresh.size >= NEW_KEYS) this.fresh.delete(this.fresh.keys().next().value!);
    this.fresh.set(id, key);
  }

  get size(): number {
    return this.fresh.size + this.kept.size;
  }
}

export interface ResolverCertificate {
  cert: Certificate;
  secretKey: Buffer;
  sharedKeys: SharedKeyCache;
}

export class ResolverCertificates {
  private certs: ResolverCertificate[] = [];
  private readonly byMagic = new Map<string, ResolverCertificate>();
  private serial = 0;

  constructor(
    private readonly provider: ProviderKeyPair,
    private readonly clock: Clock,
  ) {}

  /** Signs a new certificate with a new key pair and forgets expired ones. */
  rotate(): ResolverCertificate {
    const now = Math.floor(this.clock.now() / 1000);
    this.certs = this.certs.filter((c) => c.cert.tsEnd >= now);
    let pair = x25519KeyPair();
    while (!usableMagic(pair.publicKey.subarray(0, CLIENT_MAGIC_SIZE)) || this.byMagic.has(magicKey(pair.publicKey))) pair = x25519KeyPair();
    this.serial = Math.max(this.serial + 1, now);
    const bytes = signCertificate(
      {
        esVersion: EsVersion.xchacha20poly1305,
        resolverPublicKey: pair.publicKey,
        clientMagic: pair.publicKey.subarray(0, CLIENT_MAGIC_SIZE),
        serial: this.serial,
        tsStart: now - BACKDATE_S,
        tsEnd: now + CERT_LIFETIME_S,
      },
      this.provider.secretKey,
    );
    const entry: ResolverCertificate = { cert: parseCertificate(bytes), secretKey: pair.secretKey, sharedKeys: new SharedKeyCache() };
    this.certs.push(entry);
    this.byMagic.clear();
    for (const c of this.certs) this.byMagic.set(magicKey(c.cert.clientMagic), c);
    return entry;
  }

  /** What a certificate query is answered with: the newest certificate. */
  get served(): Buffer[] {
    const newest = this.certs[this.certs.length - 1];
    return newest ? [newest.cert.bytes] : [];
  }

  get all(): readonly ResolverCertificate[] {
    return this.certs;
  }

  /** The unexpired certificate whose client magic starts `packet`. */
  lookup(packet: Buffer): ResolverCertificate | undefined {
    const found = this.byMagic.get(packet.toString('latin1', 0, CLIENT_MAGIC_SIZE));
    if (!found || found.cert.tsEnd < this.clock.now() / 1000) return undefined;
    return found;
  }

  /** The shared key with a client's public key if it is cached (no key exchange). */
  cachedKey(entry: ResolverCertificate, clientPublicKey: Buffer): Buffer | undefined {
    return entry.sharedKeys.get(clientPublicKey.toString('latin1'));
  }

  /** Computes (an X25519 key exchange) and caches the shared key; null for a low-order key. */
  computeKey(entry: ResolverCertificate, clientPublicKey: Buffer): Buffer | null {
    const key = sharedKey(entry.cert.esVersion, entry.secretKey, clientPublicKey);
    if (key) entry.sharedKeys.add(clientPublicKey.toString('latin1'), key);
    return key;
  }
}

const magicKey = (bytes: Buffer): string => bytes.toString('latin1', 0, CLIENT_MAGIC_SIZE);

/**
 * A client magic must not start with seven zero bytes (QUIC could be mistaken for it), nor be
 * the relay magic's 0xff run, nor "PQResume" (newer servers' resume magic).
 */
function usableMagic(magic: Buffer): boolean {
  if (magic.subarray(0, 7).every((b) => b === 0)) return false;
  if (magic.compare(ANON_MAGIC, 0, 8) === 0) return false;
  return magic.toString('latin1') !== 'PQResume';
}
