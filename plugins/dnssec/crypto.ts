/**
 * DNSSEC's cryptography through node:crypto: DNSKEY records as public keys, key tags (RFC 4034
 * Appendix B), DS digests (RFC 4034 §5.1.4, RFC 4509, RFC 6605) and signature checks for
 * RSA/SHA-1, RSA/SHA-256, RSA/SHA-512 (RFC 3110, 5702), ECDSA P-256 and P-384 (RFC 6605),
 * Ed25519 and Ed448 (RFC 8080).
 */
import { createHash, createPublicKey, generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import type { WireName } from './names.js';

export const Algorithm = {
  RSASHA1: 5,
  RSASHA1_NSEC3_SHA1: 7,
  RSASHA256: 8,
  RSASHA512: 10,
  ECDSAP256SHA256: 13,
  ECDSAP384SHA384: 14,
  ED25519: 15,
  ED448: 16,
} as const;

const ALGORITHM_NAMES: Record<number, string> = {
  5: 'RSASHA1', 7: 'RSASHA1-NSEC3-SHA1', 8: 'RSASHA256', 10: 'RSASHA512',
  13: 'ECDSAP256SHA256', 14: 'ECDSAP384SHA384', 15: 'ED25519', 16: 'ED448',
};

export function algorithmName(algorithm: number): string {
  return ALGORITHM_NAMES[algorithm] ?? String(algorithm);
}

/** The number for a mnemonic (`ECDSAP256SHA256`) or a number; undefined when unknown. */
export function algorithmNumber(text: string): number | undefined {
  if (/^\d{1,3}$/.test(text)) return Number(text);
  const upper = text.toUpperCase();
  for (const [n, name] of Object.entries(ALGORITHM_NAMES)) if (name === upper) return Number(n);
  return undefined;
}

let ed448: boolean | undefined;
/** Whether this Node's OpenSSL verifies Ed448. */
export function hasEd448(): boolean {
  if (ed448 === undefined) {
    try {
      generateKeyPairSync('ed448');
      ed448 = true;
    } catch {
      ed448 = false;
    }
  }
  return ed448;
}

/** Algorithms this build can verify. */
export function supportedAlgorithms(): number[] {
  const list: number[] = [5, 7, 8, 10, 13, 14, 15];
  if (hasEd448()) list.push(16);
  return list;
}

/** DS digest types (RFC 4034, 4509, 6605) and their node:crypto names. */
export const DIGESTS: Readonly<Record<number, string>> = { 1: 'sha1', 2: 'sha256', 4: 'sha384' };

export interface Dnskey {
  flags: number;
  protocol: number;
  algorithm: number;
  publicKey: Buffer;
  rdata: Buffer;
  tag: number;
}

/** Flags bit 7: a zone key, the only kind that may sign a zone's data (RFC 4034 §2.1.1). */
export const ZONE_KEY = 0x0100;
/** Flags bit 8: revoked (RFC 5011), never used to validate. */
export const REVOKED = 0x0080;

export function readDnskey(rdata: Buffer): Dnskey | null {
  if (rdata.length < 5) return null;
  return { flags: rdata.readUInt16BE(0), protocol: rdata[2]!, algorithm: rdata[3]!, publicKey: rdata.subarray(4), rdata, tag: keyTag(rdata) };
}

/** RFC 4034 Appendix B (algorithm 1, long gone, is not special-cased). */
export function keyTag(rdata: Buffer): number {
  let sum = 0;
  for (let i = 0; i < rdata.length; i++) sum += i & 1 ? rdata[i]! : rdata[i]! << 8;
  sum += (sum >> 16) & 0xffff;
  return sum & 0xffff;
}

export interface Ds {
  keyTag: number;
  algorithm: number;
  digestType: number;
  digest: Buffer;
}

export function readDs(rdata: Buffer): Ds | null {
  if (rdata.length < 5) return null;
  return { keyTag: rdata.readUInt16BE(0), algorithm: rdata[2]!, digestType: rdata[3]!, digest: rdata.subarray(4) };
}

/** The digest a DS record holds for `key` owned by `owner` (lower-case): null when unsupported. */
export function dsDigest(owner: WireName, key: Dnskey, digestType: number): Buffer | null {
  const name = DIGESTS[digestType];
  if (!name) return null;
  return createHash(name).update(owner).update(key.rdata).digest();
}

const keyObjects = new WeakMap<Dnskey, KeyObject | null>();

/** The DNSKEY as a node:crypto public key; null when malformed or of an unknown algorithm. */
export function publicKeyOf(key: Dnskey): KeyObject | null {
  if (keyObjects.has(key)) return keyObjects.get(key)!;
  let object: KeyObject | null = null;
  try {
    object = makePublicKey(key.algorithm, key.publicKey);
  } catch {
    object = null;
  }
  keyObjects.set(key, object);
  return object;
}

const b64url = (b: Buffer) => b.toString('base64url');

/** RSA moduli accepted: below 1024 bits is broken, above 4096 is a way to make us work (RFC 3110). */
const RSA_MIN_BITS = 1024;
const RSA_MAX_BITS = 4096;

function makePublicKey(algorithm: number, data: Buffer): KeyObject | null {
  switch (algorithm) {
    case Algorithm.RSASHA1:
    case Algorithm.RSASHA1_NSEC3_SHA1:
    case Algorithm.RSASHA256:
    case Algorithm.RSASHA512: {
      // RFC 3110 §2: exponent length in one byte, or zero and then two bytes.
      if (data.length < 3) return null;
      let pos = 1;
      let expLength = data[0]!;
      if (expLength === 0) {
        expLength = data.readUInt16BE(1);
        pos = 3;
      }
      if (expLength === 0 || pos + expLength >= data.length) return null;
      const e = data.subarray(pos, pos + expLength);
      let n = data.subarray(pos + expLength);
      while (n.length > 0 && n[0] === 0) n = n.subarray(1);
      const bits = n.length * 8 - Math.clz32(n[0] ?? 0) + 24;
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) return null;
      return createPublicKey({ key: { kty: 'RSA', n: b64url(n), e: b64url(e) }, format: 'jwk' });
    }
    case Algorithm.ECDSAP256SHA256:
    case Algorithm.ECDSAP384SHA384: {
      const size = algorithm === Algorithm.ECDSAP256SHA256 ? 32 : 48;
      if (data.length !== 2 * size) return null;
      const crv = size === 32 ? 'P-256' : 'P-384';
      return createPublicKey({ key: { kty: 'EC', crv, x: b64url(data.subarray(0, size)), y: b64url(data.subarray(size)) }, format: 'jwk' });
    }
    case Algorithm.ED25519:
      if (data.length !== 32) return null;
      return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(data) }, format: 'jwk' });
    case Algorithm.ED448:
      if (data.length !== 57 || !hasEd448()) return null;
      return createPublicKey({ key: { kty: 'OKP', crv: 'Ed448', x: b64url(data) }, format: 'jwk' });
    default:
      return null;
  }
}

/** Checks `signature` over `data` with `key` for the DNSSEC algorithm. Never throws. */
export function verifySignature(algorithm: number, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  try {
    switch (algorithm) {
      case Algorithm.RSASHA1:
      case Algorithm.RSASHA1_NSEC3_SHA1:
        return verify('sha1', data, key, signature);
      case Algorithm.RSASHA256:
        return verify('sha256', data, key, signature);
      case Algorithm.RSASHA512:
        return verify('sha512', data, key, signature);
      case Algorithm.ECDSAP256SHA256:
        return signature.length === 64 && verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      case Algorithm.ECDSAP384SHA384:
        return signature.length === 96 && verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      case Algorithm.ED25519:
      case Algorithm.ED448:
        return verify(null, data, key, signature);
      default:
        return false;
    }
  } catch {
    return false;
  }
}

/** RFC 5155 §5: the iterated, salted SHA-1 hash of a lower-case owner name. */
export function nsec3Hash(name: WireName, salt: Buffer, iterations: number): Buffer {
  let digest = createHash('sha1').update(name).update(salt).digest();
  for (let i = 0; i < iterations; i++) digest = createHash('sha1').update(digest).update(salt).digest();
  return digest;
}
