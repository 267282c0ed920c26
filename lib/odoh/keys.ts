/**
 * A target's keys. Each is derived from a 32-byte seed with HPKE's DeriveKeyPair (RFC 9180
 * §7.1.3), so a key file holds just the seed, and the RFC's vectors (given as seeds) check the
 * derivation. Keys made at start have a random seed that never leaves memory.
 *
 * The key file (`veil odoh keygen`):
 *
 *     # Veil ODoH target key (x25519/sha256/aes128gcm). Secret: keep it on this server only.
 *     seed 0123…(64 hex digits)
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { encodeContents, parseContents, type OdohConfig } from './configs.js';
import type { TargetKey } from './crypto.js';
import { DEFAULT_SUITE, suiteFor } from './suite.js';

export const SEED_LENGTH = 32;

export function deriveTargetKey(seed: Buffer): TargetKey {
  const privateKey = suiteFor(DEFAULT_SUITE)!.hpke.deriveX25519KeyPair(seed);
  const config = parseContents(encodeContents(DEFAULT_SUITE, privateKey.publicKey)) as OdohConfig;
  return { config, privateKey };
}

export function newSeed(): Buffer {
  return randomBytes(SEED_LENGTH);
}

export function formatKeyFile(seed: Buffer): string {
  return `# Veil ODoH target key (x25519/sha256/aes128gcm). Secret: keep it on this server only.\nseed ${seed.toString('hex')}\n`;
}

/** The seed of a key file's text; throws an Error saying what is wrong (line numbers from 1). */
export function parseKeyFile(text: string): Buffer {
  let seed: Buffer | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^seed\s+([0-9a-fA-F]+)$/.exec(line);
    if (!m) throw new Error(`line ${i + 1}: expected "seed HEX"`);
    if (seed) throw new Error(`line ${i + 1}: a second seed`);
    if (m[1]!.length !== SEED_LENGTH * 2) throw new Error(`line ${i + 1}: the seed is ${m[1]!.length / 2} bytes, not ${SEED_LENGTH}`);
    seed = Buffer.from(m[1]!, 'hex');
  }
  if (!seed) throw new Error('no "seed HEX" line (make one with veil odoh keygen)');
  return seed;
}

/** Writes a new key file readable by its owner only; returns its seed. */
export function writeKeyFile(file: string): Buffer {
  const seed = newSeed();
  writeFileSync(file, formatKeyFile(seed), { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return seed;
}
