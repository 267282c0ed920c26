/**
 * The serving side's short-term keys (spec §13): a new X25519 key pair and signed certificate
 * every ROTATE_EVERY_S, each valid for CERT_LIFETIME_S so that validity windows overlap; the
 * serial grows with every certificate; keys of expired certificates are dropped. Only the newest
 * certificate is served, every unexpired one still decrypts. Shared keys are cached per
 * certificate and client key (clients reuse their key across queries).
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
/** Shared keys kept per certificate; the oldest go first. */
const SHARED_KEY_CACHE = 10_000;

export interface ResolverCertificate {
  cert: Certificate;
  secretKey: Buffer;
  sharedKeys: Map<string, Buffer>;
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
    const entry: ResolverCertificate = { cert: parseCertificate(bytes), secretKey: pair.secretKey, sharedKeys: new Map() };
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

  /** The shared key with a client's public key, or null for an unusable (low-order) key. */
  sharedKey(entry: ResolverCertificate, clientPublicKey: Buffer): Buffer | null {
    const id = clientPublicKey.toString('latin1');
    const cached = entry.sharedKeys.get(id);
    if (cached) return cached;
    const key = sharedKey(entry.cert.esVersion, entry.secretKey, clientPublicKey);
    if (!key) return null;
    if (entry.sharedKeys.size >= SHARED_KEY_CACHE) entry.sharedKeys.delete(entry.sharedKeys.keys().next().value!);
    entry.sharedKeys.set(id, key);
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
