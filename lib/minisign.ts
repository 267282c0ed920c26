/**
 * Minisign signatures, as the public resolver and relay lists are signed.
 *
 *   public key   base64("Ed" || key id (8) || Ed25519 public key (32))
 *   .minisig     untrusted comment: …
 *                base64(algorithm (2) || key id (8) || signature (64))
 *                trusted comment: TEXT
 *                base64(global signature (64))
 *
 * Algorithm "Ed" signs the file itself (legacy); "ED" signs its BLAKE2b-512 hash. The global
 * signature covers signature || TEXT, so the trusted comment cannot be changed either.
 */
import { Buffer } from 'node:buffer';
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';

export class MinisignError extends Error {
  override readonly name = 'MinisignError';
}

export interface MinisignPublicKey {
  keyId: Buffer;
  key: KeyObject;
}

export interface MinisignSignature {
  algorithm: 'Ed' | 'ED';
  keyId: Buffer;
  signature: Buffer;
  trustedComment: string;
  globalSignature: Buffer;
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function strictBase64(text: string, what: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) throw new MinisignError(`${what} is not base64`);
  return Buffer.from(trimmed, 'base64');
}

/** Reads a public key: the base64 line alone, or a whole `.pub` file (comment line first). */
export function parsePublicKey(text: string): MinisignPublicKey {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('untrusted comment:'));
  if (lines.length !== 1) throw new MinisignError('a minisign public key is one base64 line');
  const raw = strictBase64(lines[0]!, 'minisign public key');
  if (raw.length !== 42 || raw.toString('latin1', 0, 2) !== 'Ed') throw new MinisignError('not a minisign Ed25519 public key (expected 42 bytes starting with "Ed")');
  return { keyId: raw.subarray(2, 10), key: createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw.subarray(10)]), format: 'der', type: 'spki' }) };
}

export function parseSignature(text: string): MinisignSignature {
  const lines = text.split(/\r?\n/);
  if (lines.length < 4 || !lines[0]!.startsWith('untrusted comment:')) throw new MinisignError('a .minisig file has four lines, the first an untrusted comment');
  const main = strictBase64(lines[1]!, 'signature line');
  if (main.length !== 74) throw new MinisignError(`signature line is ${main.length} bytes, not 74`);
  const algorithm = main.toString('latin1', 0, 2);
  if (algorithm !== 'Ed' && algorithm !== 'ED') throw new MinisignError(`unknown signature algorithm "${algorithm}"`);
  const comment = /^trusted comment: ?(.*)$/.exec(lines[2]!);
  if (!comment) throw new MinisignError('the third line must be the trusted comment');
  const globalSignature = strictBase64(lines[3]!, 'global signature');
  if (globalSignature.length !== 64) throw new MinisignError('global signature is not 64 bytes');
  return { algorithm, keyId: main.subarray(2, 10), signature: main.subarray(10), trustedComment: comment[1]!, globalSignature };
}

/** Key ids are shown the way minisign prints them: the 8 bytes reversed, in upper-case hex. */
export function formatKeyId(keyId: Buffer): string {
  return Buffer.from(keyId).reverse().toString('hex').toUpperCase();
}

/** Checks `data` against a signature; returns the trusted comment or throws MinisignError. */
export function verifyMinisign(data: Buffer, signatureText: string, publicKey: MinisignPublicKey): string {
  const sig = parseSignature(signatureText);
  if (!sig.keyId.equals(publicKey.keyId)) {
    throw new MinisignError(`signed by key ${formatKeyId(sig.keyId)}, but the configured key is ${formatKeyId(publicKey.keyId)}`);
  }
  const message = sig.algorithm === 'ED' ? createHash('blake2b512').update(data).digest() : data;
  if (!edVerify(null, message, publicKey.key, sig.signature)) throw new MinisignError('signature does not match the file');
  const global = Buffer.concat([sig.signature, Buffer.from(sig.trustedComment, 'utf8')]);
  if (!edVerify(null, global, publicKey.key, sig.globalSignature)) throw new MinisignError('the trusted comment has been changed');
  return sig.trustedComment;
}

/**
 * When the signer says it signed: the `timestamp:SECONDS` minisign writes into the trusted
 * comment (`timestamp:1700000000\tfile:public-resolvers.md\thashed`), or null without one. The
 * comment is covered by the global signature, so the time cannot be changed without the key.
 */
export function signedAt(trustedComment: string | null): number | null {
  const m = trustedComment === null ? null : /(?:^|\s)timestamp:(\d{1,15})(?=\s|$)/.exec(trustedComment);
  return m ? Number(m[1]) : null;
}

export interface MinisignKeyPair {
  publicKey: string;
  keyId: Buffer;
  secret: KeyObject;
}

/** A new key pair (for tests and for signing your own lists). */
export function generateMinisignKey(seed: Buffer, keyId: Buffer): MinisignKeyPair {
  if (seed.length !== 32 || keyId.length !== 8) throw new MinisignError('seed is 32 bytes and key id 8');
  const secret = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const raw = createPublicKey(secret).export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519_PREFIX.length);
  return { publicKey: Buffer.concat([Buffer.from('Ed'), keyId, raw]).toString('base64'), keyId, secret };
}

/** Signs `data` the way minisign does; `prehash` chooses the "ED" form. */
export function signMinisign(data: Buffer, key: MinisignKeyPair, trustedComment: string, prehash = true): string {
  const message = prehash ? createHash('blake2b512').update(data).digest() : data;
  const signature = edSign(null, message, key.secret);
  const global = edSign(null, Buffer.concat([signature, Buffer.from(trustedComment, 'utf8')]), key.secret);
  const main = Buffer.concat([Buffer.from(prehash ? 'ED' : 'Ed'), key.keyId, signature]);
  return `untrusted comment: signature from veil\n${main.toString('base64')}\ntrusted comment: ${trustedComment}\n${global.toString('base64')}\n`;
}
