/**
 * The HPKE cipher suites an ODoH config may name (RFC 9180 §7), and what each needs beside HPKE:
 * the hash of its KDF (key ids and the response keys, RFC 9230 §6.2 and §6.4, are plain HKDF)
 * and the sizes and Node cipher of its AEAD (answers are sealed with it directly, not by HPKE).
 * HPKE itself is hpke.ts (synchronous, node:crypto).
 */
import { AeadId, HpkeSuite, KdfId, KemId } from './hpke.js';

export { AeadId, KdfId, KemId };

/** The suite every ODoH deployment uses, and the one a Veil target offers. */
export const DEFAULT_SUITE = { kem: KemId.x25519, kdf: KdfId.sha256, aead: AeadId.aes128gcm } as const;

export interface SuiteIds {
  kem: number;
  kdf: number;
  aead: number;
}

export interface Suite extends SuiteIds {
  hpke: HpkeSuite;
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

const suites = new Map<string, Suite>();

/** The suite for these ids, or null when one of them is not supported here. */
export function suiteFor(ids: SuiteIds): Suite | null {
  const key = `${ids.kem}/${ids.kdf}/${ids.aead}`;
  let suite = suites.get(key);
  if (suite) return suite;
  const hpke = HpkeSuite.of(ids.kem, ids.kdf, ids.aead);
  if (!hpke) return null;
  suite = {
    kem: ids.kem,
    kdf: ids.kdf,
    aead: ids.aead,
    hpke,
    hash: hpke.kdf.hash,
    hashLength: hpke.kdf.hashLength,
    cipher: hpke.cipher,
    keyLength: hpke.keyLength,
    nonceLength: hpke.nonceLength,
    encLength: hpke.kem.encLength,
    publicKeyLength: hpke.kem.encLength,
  };
  suites.set(key, suite);
  return suite;
}

export function describeSuite(ids: SuiteIds): string {
  const name = (table: Record<string, number>, id: number) => Object.entries(table).find(([, v]) => v === id)?.[0] ?? `0x${id.toString(16).padStart(4, '0')}`;
  return `${name(KemId, ids.kem)}/${name(KdfId, ids.kdf)}/${name(AeadId, ids.aead)}`;
}
