/**
 * The HPKE cipher suites an ODoH config may name (RFC 9180 §7), and what each needs beside HPKE:
 * the hash of its KDF (key ids and the response keys, RFC 9230 §6.2 and §6.4, are plain HKDF)
 * and the sizes and Node cipher of its AEAD (answers are sealed with it directly, not by HPKE).
 *
 * HPKE itself is @hpke/core: RFC 9180 as written, tested against its vectors, on the runtime's
 * WebCrypto (X25519 and P-256 included in Node 24), with no native code of its own.
 */
import { Aes128Gcm, Aes256Gcm, CipherSuite, DhkemP256HkdfSha256, DhkemX25519HkdfSha256, HkdfSha256, HkdfSha384, HkdfSha512 } from '@hpke/core';

export const KemId = { p256: 0x0010, x25519: 0x0020 } as const;
export const KdfId = { sha256: 0x0001, sha384: 0x0002, sha512: 0x0003 } as const;
export const AeadId = { aes128gcm: 0x0001, aes256gcm: 0x0002 } as const;

/** The suite every ODoH deployment uses, and the one a Veil target offers. */
export const DEFAULT_SUITE = { kem: KemId.x25519, kdf: KdfId.sha256, aead: AeadId.aes128gcm } as const;

export interface SuiteIds {
  kem: number;
  kdf: number;
  aead: number;
}

export interface Suite extends SuiteIds {
  hpke: CipherSuite;
  /** Node's name of the KDF's hash. */
  hash: 'sha256' | 'sha384' | 'sha512';
  /** The KDF's output size (key ids are this long). */
  hashLength: number;
  /** Node's name of the AEAD cipher. */
  cipher: 'aes-128-gcm' | 'aes-256-gcm';
  keyLength: number;
  nonceLength: number;
  /** Bytes of an encapsulated key, at the start of a query's encrypted part. */
  encLength: number;
  publicKeyLength: number;
}

const KEMS: Record<number, { make: () => DhkemX25519HkdfSha256 | DhkemP256HkdfSha256; enc: number }> = {
  [KemId.x25519]: { make: () => new DhkemX25519HkdfSha256(), enc: 32 },
  [KemId.p256]: { make: () => new DhkemP256HkdfSha256(), enc: 65 },
};
const KDFS: Record<number, { make: () => HkdfSha256 | HkdfSha384 | HkdfSha512; hash: Suite['hash']; length: number }> = {
  [KdfId.sha256]: { make: () => new HkdfSha256(), hash: 'sha256', length: 32 },
  [KdfId.sha384]: { make: () => new HkdfSha384(), hash: 'sha384', length: 48 },
  [KdfId.sha512]: { make: () => new HkdfSha512(), hash: 'sha512', length: 64 },
};
const AEADS: Record<number, { make: () => Aes128Gcm | Aes256Gcm; cipher: Suite['cipher']; key: number }> = {
  [AeadId.aes128gcm]: { make: () => new Aes128Gcm(), cipher: 'aes-128-gcm', key: 16 },
  [AeadId.aes256gcm]: { make: () => new Aes256Gcm(), cipher: 'aes-256-gcm', key: 32 },
};

const suites = new Map<string, Suite>();

/** The suite for these ids, or null when one of them is not supported here. */
export function suiteFor(ids: SuiteIds): Suite | null {
  const key = `${ids.kem}/${ids.kdf}/${ids.aead}`;
  let suite = suites.get(key);
  if (suite) return suite;
  const kem = KEMS[ids.kem];
  const kdf = KDFS[ids.kdf];
  const aead = AEADS[ids.aead];
  if (!kem || !kdf || !aead) return null;
  suite = {
    kem: ids.kem,
    kdf: ids.kdf,
    aead: ids.aead,
    hpke: new CipherSuite({ kem: kem.make(), kdf: kdf.make(), aead: aead.make() }),
    hash: kdf.hash,
    hashLength: kdf.length,
    cipher: aead.cipher,
    keyLength: aead.key,
    nonceLength: 12,
    encLength: kem.enc,
    publicKeyLength: kem.enc,
  };
  suites.set(key, suite);
  return suite;
}

export function describeSuite(ids: SuiteIds): string {
  const name = (table: Record<string, number>, id: number) => Object.entries(table).find(([, v]) => v === id)?.[0] ?? `0x${id.toString(16).padStart(4, '0')}`;
  return `${name(KemId, ids.kem)}/${name(KdfId, ids.kdf)}/${name(AeadId, ids.aead)}`;
}
