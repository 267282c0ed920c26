/**
 * OpenSSL's HMAC, AES-GCM and X25519 on raw bytes (native/raw-crypto.c), for HPKE (hpke.ts).
 * node:crypto on OpenSSL 3.5 looks each algorithm up again on every call and wraps every key in
 * a KeyObject; for ODoH's small messages that was most of the work (an AES-GCM seal 11.9 µs
 * against 1.0 here, an X25519 public key's import 17.8, an HMAC 4.4 against 0.9; Node 24,
 * 2026-12-05, docs/benchmarks.md). The addon calls the same OpenSSL, so the bytes are the same.
 * Null when it is not built here (no C compiler or no OpenSSL headers beside Node's) or when
 * VEIL_RAW_CRYPTO=off: hpke.ts then uses node:crypto.
 */
import { createRequire } from 'node:module';

/** A private X25519 key held by the addon (freed with the object). */
export type RawX25519Key = { readonly __rawX25519Key: unique symbol };

export interface RawCrypto {
  /**
   * hash: 0 SHA-256, 1 SHA-384, 2 SHA-512. With `out` (exactly the hash's length) the MAC is
   * written there and `out` returned: into a pooled `Buffer.allocUnsafe` an HMAC takes 0.4 µs,
   * into a Buffer the addon makes 1.2 (a malloc and a prototype change).
   */
  hmac(hash: number, key: Buffer, data: Buffer, out?: Buffer): Buffer;
  /** AES-128-GCM or AES-256-GCM by the key's length; the 16-byte tag after the ciphertext. */
  aeadSeal(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer;
  /** Null when the message does not open (altered, cut, another key or associated data). */
  aeadOpen(key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer): Buffer | null;
  /** A fresh key pair's Diffie-Hellman with `peer`: the shared secret, then the fresh public key (64 bytes); null for a small-order point. */
  x25519Ephemeral(peer: Buffer): Buffer | null;
  x25519Key(privateKey: Buffer): RawX25519Key;
  x25519Public(key: RawX25519Key): Buffer;
  /** Null for a small-order point (the result would be all zeros). */
  x25519Derive(key: RawX25519Key, peer: Buffer): Buffer | null;
}

export function loadRawCrypto(): RawCrypto | null {
  if (process.env.VEIL_RAW_CRYPTO === 'off') return null;
  try {
    return createRequire(import.meta.url)('../../native/raw-crypto.node') as RawCrypto;
  } catch {
    return null; // not built here
  }
}
