/**
 * The provider's long-term Ed25519 key, which signs resolver certificates. On disk,
 * `provider.key` holds the 32-byte seed as hex (mode 0600) and `provider.pub` the public key as
 * hex; a raw 32-byte seed or 64-byte secret key (dnsdist's format) is read too.
 */
import { Buffer } from 'node:buffer';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sodium } from './sodium.js';

export interface ProviderKeyPair {
  /** 32 bytes. */
  publicKey: Buffer;
  /** 64 bytes: seed then public key, as libsodium signs with. */
  secretKey: Buffer;
}

/** The 32-byte seed in a key file's contents. Throws an Error saying what is wrong. */
export function parseProviderKey(contents: Buffer): Buffer {
  const text = contents.toString('latin1').trim();
  if (/^[0-9a-f]+$/i.test(text) && (text.length === 64 || text.length === 128)) return Buffer.from(text.slice(0, 64), 'hex');
  if (contents.length === 32 || contents.length === 64) return Buffer.from(contents.subarray(0, 32));
  throw new Error('not a provider key (expected a 32-byte Ed25519 seed as 64 hex digits, or a raw 32- or 64-byte key)');
}

export function providerKeyPair(seed: Buffer): ProviderKeyPair {
  const pair = sodium().crypto_sign_seed_keypair(seed);
  return { publicKey: Buffer.from(pair.publicKey), secretKey: Buffer.from(pair.privateKey) };
}

export function readProviderKeyFile(file: string): Buffer {
  return parseProviderKey(readFileSync(file));
}

export interface WrittenKeys {
  keyFile: string;
  publicFile: string;
  publicKey: Buffer;
}

/** Makes a new provider key pair in `dir`. Refuses to replace an existing key. */
export function writeProviderKeys(dir: string): WrittenKeys {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, 'provider.key');
  const publicFile = path.join(dir, 'provider.pub');
  if (existsSync(keyFile)) throw new Error(`${keyFile} exists already; move it away to make a new key (clients pin the old one)`);
  const seed = Buffer.from(sodium().randombytes_buf(32));
  const { publicKey } = providerKeyPair(seed);
  writeFileSync(keyFile, `${seed.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(keyFile, 0o600);
  writeFileSync(publicFile, `${publicKey.toString('hex')}\n`, { mode: 0o644 });
  return { keyFile, publicFile, publicKey };
}
