/**
 * HPKE (RFC 9180) as ODoH uses it: base mode, one message each way, on node:crypto, synchronous.
 * KEMs DHKEM(X25519, HKDF-SHA256) and DHKEM(P-256, HKDF-SHA256); KDFs HKDF-SHA256/384/512;
 * AEADs AES-128-GCM and AES-256-GCM.
 *
 * Why our own and not @hpke/core: its WebCrypto calls are asynchronous, each a trip through
 * the thread pool; sealing a query cost 0.62 ms of CPU and opening one 0.45 ms, and ODoH through
 * a relay ran at 0.07× of DoH to the same target (bench odoh-forward, 2026-12-04). The same
 * steps here are a few synchronous calls (measured in docs/benchmarks.md). @hpke/core stays as
 * the oracle the tests compare against, beside RFC 9180's own vectors.
 *
 * The primitives (HMAC, AES-GCM, X25519) are OpenSSL's through native/raw-crypto.c when it is
 * built (raw-crypto.ts says why), else node:crypto's; `hpkePrimitives` says which.
 */
import { Buffer } from 'node:buffer';
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hash as digest,
  timingSafeEqual,
  type ECDH,
  type KeyObject,
} from 'node:crypto';
import { loadRawCrypto, type RawX25519Key } from './raw-crypto.js';

const raw = loadRawCrypto();
/** Which primitives this process uses: OpenSSL's directly, or through node:crypto. */
export const hpkePrimitives: 'openssl' | 'node:crypto' = raw ? 'openssl' : 'node:crypto';

export const KemId = { p256: 0x0010, x25519: 0x0020 } as const;
export const KdfId = { sha256: 0x0001, sha384: 0x0002, sha512: 0x0003 } as const;
export const AeadId = { aes128gcm: 0x0001, aes256gcm: 0x0002 } as const;

const VERSION = Buffer.from('HPKE-v1');
const TAG_LENGTH = 16;
const NONCE_LENGTH = 12;
const EMPTY = Buffer.alloc(0);

/** A message that does not open, or a key that does not work: the caller sees one kind of failure. */
export class HpkeError extends Error {
  override readonly name = 'HpkeError';
}

type Hash = 'sha256' | 'sha384' | 'sha512';

function i2osp(value: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  out.writeUIntBE(value, 0, length);
  return out;
}

const HASH_INDEX: Record<Hash, number> = { sha256: 0, sha384: 1, sha512: 2 };

/**
 * HMAC (RFC 2104): OpenSSL's, else from two one-shot hashes. Why not createHmac: it builds a
 * key object per call and cost 14 µs against 4 µs for this (Node 24, 2026-12-04), and a query
 * takes eight of them.
 */
export function hmac(hash: Hash, key: Buffer, data: Buffer): Buffer {
  if (raw) return raw.hmac(HASH_INDEX[hash], key, data, Buffer.allocUnsafe(HASH_LENGTH[hash]));
  const block = hash === 'sha256' ? 64 : 128;
  const k = key.length > block ? digest(hash, key, 'buffer') : key;
  const inner = Buffer.alloc(block + data.length, 0x36);
  const outer = Buffer.alloc(block + HASH_LENGTH[hash], 0x5c);
  for (let i = 0; i < k.length; i++) {
    inner[i]! ^= k[i]!;
    outer[i]! ^= k[i]!;
  }
  data.copy(inner, block);
  digest(hash, inner, 'buffer').copy(outer, block);
  return digest(hash, outer, 'buffer');
}

const HASH_LENGTH: Record<Hash, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** HKDF-Extract (RFC 5869 §2.2): an empty salt is as good as a zero one of the hash's length. */
function extract(hash: Hash, salt: Buffer, ikm: Buffer): Buffer {
  return hmac(hash, salt, ikm);
}

/** HKDF-Expand (RFC 5869 §2.3). */
function expand(hash: Hash, prk: Buffer, info: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let previous: Buffer = EMPTY;
  let total = 0;
  for (let counter = 1; total < length; counter++) {
    previous = hmac(hash, prk, Buffer.concat([previous, info, Buffer.from([counter])]));
    blocks.push(previous);
    total += previous.length;
  }
  return Buffer.concat(blocks, total).subarray(0, length);
}

/** LabeledExtract and LabeledExpand (§4) under one suite id. */
class LabeledKdf {
  constructor(
    readonly hash: Hash,
    readonly hashLength: number,
    private readonly suiteId: Buffer,
  ) {}

  extract(salt: Buffer, label: string, ikm: Buffer): Buffer {
    return extract(this.hash, salt, Buffer.concat([VERSION, this.suiteId, Buffer.from(label), ikm]));
  }

  expand(prk: Buffer, label: string, info: Buffer, length: number): Buffer {
    return expand(this.hash, prk, Buffer.concat([i2osp(length, 2), VERSION, this.suiteId, Buffer.from(label), info]), length);
  }
}

/** A recipient's private key, as the KEM that made it holds it, with its public key serialized. */
export interface RecipientKey {
  readonly kem: number;
  readonly publicKey: Buffer;
  /** X25519: a KeyObject; P-256: an ECDH holding the scalar. */
  readonly secret: KeyObject | ECDH;
}

interface Kem {
  readonly id: number;
  readonly encLength: number;
  /** A fresh ephemeral key pair's DH with `publicKey` (or the given one's: test vectors fix it): the DH output and the ephemeral public key. */
  ephemeralDh(publicKey: Buffer, ephemeral?: RecipientKey): { dh: Buffer; enc: Buffer };
  dh(key: RecipientKey, enc: Buffer): Buffer;
}

// The DER prefix that turns 32 raw X25519 bytes into PKCS #8 (RFC 8410).
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** Through JWK: OpenSSL 3 decodes it in 18.6 µs where DER (SPKI) takes 23.7 (Node 24, 2026-12-05); a target does one a query. */
function x25519Public(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new HpkeError(`an X25519 public key of ${raw.length} bytes`);
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** A recipient's key, imported once per Buffer that holds it (a target's config keeps one). */
const imported = new WeakMap<Buffer, KeyObject>();
function x25519Recipient(raw: Buffer): KeyObject {
  let key = imported.get(raw);
  if (!key) imported.set(raw, (key = x25519Public(raw)));
  return key;
}

/** The 32 raw bytes of an X25519 public key. Through JWK: a DER export costs ~20 times more (26 vs 1.2 µs here). */
function rawX25519Public(key: KeyObject): Buffer {
  const raw = Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url');
  if (raw.length !== 32) throw new HpkeError('an X25519 public key that does not export as 32 bytes');
  return raw;
}

/** X25519's output for a small-order point is all zeros: §7.1.4 says abort (OpenSSL refuses it too). */
function x25519Dh(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let dh: Buffer;
  try {
    dh = diffieHellman({ privateKey, publicKey });
  } catch (err) {
    throw new HpkeError(`X25519 failed (a small-order public key?): ${(err as Error).message}`);
  }
  if (timingSafeEqual(dh, Buffer.alloc(dh.length))) throw new HpkeError('a Diffie-Hellman result of zero (a small-order public key)');
  return dh;
}

const X25519: Kem = {
  id: KemId.x25519,
  encLength: 32,
  ephemeralDh(publicKey, ephemeral) {
    if (ephemeral) return { dh: X25519.dh(ephemeral, publicKey), enc: ephemeral.publicKey };
    if (raw) {
      if (publicKey.length !== 32) throw new HpkeError(`an X25519 public key of ${publicKey.length} bytes`);
      const both = raw.x25519Ephemeral(publicKey);
      if (!both) throw new HpkeError('a Diffie-Hellman result of zero (a small-order public key)');
      return { dh: both.subarray(0, 32), enc: both.subarray(32) };
    }
    const pair = generateKeyPairSync('x25519');
    return { dh: x25519Dh(pair.privateKey, x25519Recipient(publicKey)), enc: rawX25519Public(pair.publicKey) };
  },
  dh(key, enc) {
    if (raw) {
      if (enc.length !== 32) throw new HpkeError(`an X25519 public key of ${enc.length} bytes`);
      const dh = raw.x25519Derive(rawX25519Key(key.secret as KeyObject), enc);
      if (!dh) throw new HpkeError('a Diffie-Hellman result of zero (a small-order public key)');
      return dh;
    }
    return x25519Dh(key.secret as KeyObject, x25519Public(enc));
  },
};

/** A private key as the addon holds it, made once per KeyObject (a target's key serves every query). */
const rawKeys = new WeakMap<KeyObject, RawX25519Key>();
function rawX25519Key(secret: KeyObject): RawX25519Key {
  let key = rawKeys.get(secret);
  if (!key) rawKeys.set(secret, (key = raw!.x25519Key(Buffer.from(secret.export({ format: 'jwk' }).d ?? '', 'base64url'))));
  return key;
}

const P256: Kem = {
  id: KemId.p256,
  encLength: 65,
  ephemeralDh(publicKey, fixed) {
    if (fixed) return { dh: p256Dh(fixed.secret as ECDH, publicKey), enc: fixed.publicKey };
    const ephemeral = createECDH('prime256v1');
    ephemeral.generateKeys();
    const enc = ephemeral.getPublicKey(undefined, 'uncompressed');
    return { dh: p256Dh(ephemeral, publicKey), enc };
  },
  dh(key, enc) {
    return p256Dh(key.secret as ECDH, enc);
  },
};

function p256Dh(ecdh: ECDH, publicKey: Buffer): Buffer {
  if (publicKey.length !== 65 || publicKey[0] !== 0x04) throw new HpkeError('a P-256 public key that is not an uncompressed point');
  try {
    return ecdh.computeSecret(publicKey); // checks the point is on the curve
  } catch (err) {
    throw new HpkeError(`a P-256 public key that is not on the curve: ${(err as Error).message}`);
  }
}

/** A P-256 key from its private scalar (32 bytes): for tests that fix keys. */
export function p256Key(scalar: Buffer): RecipientKey {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(scalar);
  return { kem: KemId.p256, publicKey: ecdh.getPublicKey(undefined, 'uncompressed'), secret: ecdh };
}

/** A fresh P-256 key pair (ODoH targets use X25519; a test plays a P-256 target). */
export function newP256Key(): RecipientKey {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { kem: KemId.p256, publicKey: ecdh.getPublicKey(undefined, 'uncompressed'), secret: ecdh };
}

const KEMS: Record<number, Kem> = { [KemId.x25519]: X25519, [KemId.p256]: P256 };
const KDFS: Record<number, { hash: Hash; length: number }> = {
  [KdfId.sha256]: { hash: 'sha256', length: 32 },
  [KdfId.sha384]: { hash: 'sha384', length: 48 },
  [KdfId.sha512]: { hash: 'sha512', length: 64 },
};
const AEADS: Record<number, { cipher: 'aes-128-gcm' | 'aes-256-gcm'; keyLength: number }> = {
  [AeadId.aes128gcm]: { cipher: 'aes-128-gcm', keyLength: 16 },
  [AeadId.aes256gcm]: { cipher: 'aes-256-gcm', keyLength: 32 },
};

export type AeadCipher = 'aes-128-gcm' | 'aes-256-gcm';

/** The addon picks the cipher by the key's length: a key of the other cipher's length is refused, as createCipheriv refuses it. */
function checkedKey(cipher: AeadCipher, key: Buffer): Buffer {
  if (key.length !== (cipher === 'aes-128-gcm' ? 16 : 32)) throw new HpkeError(`a ${cipher} key of ${key.length} bytes`);
  return key;
}

/** AES-GCM with a 16-byte tag after the ciphertext, as HPKE (and ODoH's answers) carry it. */
export function sealAead(cipher: AeadCipher, key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  if (raw) return raw.aeadSeal(checkedKey(cipher, key), nonce, aad, plaintext);
  const gcm = createCipheriv(cipher, key, nonce, { authTagLength: TAG_LENGTH });
  gcm.setAAD(aad);
  return Buffer.concat([gcm.update(plaintext), gcm.final(), gcm.getAuthTag()]);
}

/** Opens what sealAead sealed; an HpkeError for anything altered, cut or sealed otherwise. */
export function openAead(cipher: AeadCipher, key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer): Buffer {
  if (sealed.length < TAG_LENGTH) throw new HpkeError('a ciphertext shorter than its tag');
  if (raw) {
    const opened = raw.aeadOpen(checkedKey(cipher, key), nonce, aad, sealed);
    if (!opened) throw new HpkeError('the message does not open');
    return opened;
  }
  const gcm = createDecipheriv(cipher, key, nonce, { authTagLength: TAG_LENGTH });
  gcm.setAAD(aad);
  gcm.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  try {
    return Buffer.concat([gcm.update(sealed.subarray(0, sealed.length - TAG_LENGTH)), gcm.final()]);
  } catch {
    throw new HpkeError('the message does not open');
  }
}

/** An HPKE context after its key schedule (§5.1), for one message each way and exports. */
export class HpkeContext {
  private sequence = 0;

  constructor(
    private readonly suite: HpkeSuite,
    private readonly key: Buffer,
    private readonly baseNonce: Buffer,
    private readonly exporterSecret: Buffer,
  ) {}

  /** The nonce of the next message: base_nonce XOR the sequence number (§5.2). */
  private nextNonce(): Buffer {
    const nonce = Buffer.from(this.baseNonce);
    let seq = this.sequence++;
    for (let i = nonce.length - 1; seq > 0; i--, seq = Math.floor(seq / 256)) nonce[i]! ^= seq & 0xff;
    return nonce;
  }

  seal(aad: Buffer, plaintext: Buffer): Buffer {
    return sealAead(this.suite.cipher, this.key, this.nextNonce(), aad, plaintext);
  }

  open(aad: Buffer, sealed: Buffer): Buffer {
    return openAead(this.suite.cipher, this.key, this.nextNonce(), aad, sealed);
  }

  /** Export (§5.3): a secret both sides can derive from this context. */
  export(context: Buffer, length: number): Buffer {
    return this.suite.kdf.expand(this.exporterSecret, 'sec', context, length);
  }
}

export class HpkeSuite {
  readonly kem: Kem;
  readonly kdf: LabeledKdf;
  /** The KEM's own KDF (both KEMs here use HKDF-SHA256), under the KEM's suite id. */
  private readonly kemKdf: LabeledKdf;
  readonly cipher: AeadCipher;
  readonly keyLength: number;
  readonly nonceLength = NONCE_LENGTH;

  /** Null when one of the ids is not supported here. */
  static of(kemId: number, kdfId: number, aeadId: number): HpkeSuite | null {
    const kem = KEMS[kemId];
    const kdf = KDFS[kdfId];
    const aead = AEADS[aeadId];
    return kem && kdf && aead ? new HpkeSuite(kem, kdfId, kdf, aeadId, aead) : null;
  }

  private constructor(kem: Kem, kdfId: number, kdf: { hash: Hash; length: number }, aeadId: number, aead: { cipher: 'aes-128-gcm' | 'aes-256-gcm'; keyLength: number }) {
    this.kem = kem;
    this.kdf = new LabeledKdf(kdf.hash, kdf.length, Buffer.concat([Buffer.from('HPKE'), i2osp(kem.id, 2), i2osp(kdfId, 2), i2osp(aeadId, 2)]));
    this.kemKdf = new LabeledKdf('sha256', 32, Buffer.concat([Buffer.from('KEM'), i2osp(kem.id, 2)]));
    this.cipher = aead.cipher;
    this.keyLength = aead.keyLength;
  }

  /** SetupBaseS (§5.1.1): the encapsulated key to send, and the sender's context. */
  setupSender(recipientPublicKey: Buffer, info: Buffer, ephemeral?: RecipientKey): { enc: Buffer; context: HpkeContext } {
    const { dh, enc } = this.kem.ephemeralDh(recipientPublicKey, ephemeral);
    const shared = this.sharedSecret(dh, enc, recipientPublicKey);
    return { enc, context: this.keySchedule(shared, info) };
  }

  /** SetupBaseR (§5.1.1). */
  setupRecipient(enc: Buffer, key: RecipientKey, info: Buffer): HpkeContext {
    if (key.kem !== this.kem.id) throw new HpkeError('a key of another KEM');
    if (enc.length !== this.kem.encLength) throw new HpkeError(`an encapsulated key of ${enc.length} bytes, not ${this.kem.encLength}`);
    const shared = this.sharedSecret(this.kem.dh(key, enc), enc, key.publicKey);
    return this.keySchedule(shared, info);
  }

  /** ExtractAndExpand of DHKEM (§4.1), over enc || pkRm. */
  private sharedSecret(dh: Buffer, enc: Buffer, recipientPublicKey: Buffer): Buffer {
    const prk = this.kemKdf.extract(EMPTY, 'eae_prk', dh);
    return this.kemKdf.expand(prk, 'shared_secret', Buffer.concat([enc, recipientPublicKey]), 32);
  }

  /** The key schedule's context for `info` (mode_base, no PSK): the last one is kept (ODoH uses one info). */
  private scheduleContext(info: Buffer): Buffer {
    if (this.lastInfo?.equals(info)) return this.lastContext!;
    const pskIdHash = this.kdf.extract(EMPTY, 'psk_id_hash', EMPTY);
    const infoHash = this.kdf.extract(EMPTY, 'info_hash', info);
    this.lastInfo = Buffer.from(info);
    return (this.lastContext = Buffer.concat([Buffer.from([0x00]), pskIdHash, infoHash]));
  }

  private lastInfo: Buffer | null = null;
  private lastContext: Buffer | null = null;

  /** KeySchedule for mode_base (§5.1): no PSK. */
  private keySchedule(shared: Buffer, info: Buffer): HpkeContext {
    const kdf = this.kdf;
    const context = this.scheduleContext(info);
    const secret = kdf.extract(shared, 'secret', EMPTY);
    return new HpkeContext(this, kdf.expand(secret, 'key', context, this.keyLength), kdf.expand(secret, 'base_nonce', context, NONCE_LENGTH), kdf.expand(secret, 'exp', context, kdf.hashLength));
  }

  /** DeriveKeyPair for X25519 (§7.1.3): the key a seed makes, the same on every machine. */
  deriveX25519KeyPair(ikm: Buffer): RecipientKey {
    if (this.kem.id !== KemId.x25519) throw new HpkeError('keys are derived for X25519 only');
    const prk = this.kemKdf.extract(EMPTY, 'dkp_prk', ikm);
    const scalar = this.kemKdf.expand(prk, 'sk', EMPTY, 32);
    const secret = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, scalar]), format: 'der', type: 'pkcs8' });
    return { kem: KemId.x25519, publicKey: rawX25519Public(createPublicKey(secret)), secret };
  }
}
