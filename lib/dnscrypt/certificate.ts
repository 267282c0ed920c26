/**
 * DNSCrypt resolver certificates (spec §12): what a client checks and chooses among, and what a
 * server signs.
 *
 *     0   4  "DNSC"           72  32 resolver public key (X25519)
 *     4   2  es-version       104  8 client magic
 *     6   2  minor version    112  4 serial
 *     8  64  Ed25519 signature 116 4 ts-start   120 4 ts-end (inclusive)   124… extensions
 *
 * The signature covers bytes 72 to the end, extensions included.
 */
import { Buffer } from 'node:buffer';
import { CERT_MAGIC, CERT_SIGNED_START, CERT_SIZE, EsVersion, type EsVersionNumber } from './constants.js';
import { sodium } from './sodium.js';

export interface Certificate {
  esVersion: EsVersionNumber;
  minorVersion: number;
  signature: Buffer;
  resolverPublicKey: Buffer;
  clientMagic: Buffer;
  serial: number;
  /** Unix seconds. */
  tsStart: number;
  /** Unix seconds, inclusive. */
  tsEnd: number;
  /** The whole certificate as received or made. */
  bytes: Buffer;
}

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
}

/** Reads a certificate's fields. Throws CertificateError for anything not a v2 certificate. */
export function parseCertificate(bytes: Buffer): Certificate {
  if (bytes.length < CERT_SIZE) throw new CertificateError(`certificate is ${bytes.length} bytes, shorter than ${CERT_SIZE}`);
  if (!bytes.subarray(0, 4).equals(CERT_MAGIC)) throw new CertificateError('certificate does not start with "DNSC"');
  const esVersion = bytes.readUInt16BE(4);
  if (esVersion !== EsVersion.xsalsa20poly1305 && esVersion !== EsVersion.xchacha20poly1305) {
    throw new CertificateError(`unsupported es-version ${esVersion}`);
  }
  return {
    esVersion,
    minorVersion: bytes.readUInt16BE(6),
    signature: bytes.subarray(8, 72),
    resolverPublicKey: bytes.subarray(72, 104),
    clientMagic: bytes.subarray(104, 112),
    serial: bytes.readUInt32BE(112),
    tsStart: bytes.readUInt32BE(116),
    tsEnd: bytes.readUInt32BE(120),
    bytes,
  };
}

/** True when the provider's Ed25519 key signed the certificate. */
export function verifyCertificate(cert: Certificate, providerPublicKey: Buffer): boolean {
  if (providerPublicKey.length !== 32) return false;
  try {
    return sodium().crypto_sign_verify_detached(cert.signature, cert.bytes.subarray(CERT_SIGNED_START), providerPublicKey);
  } catch {
    return false;
  }
}

export interface CertificateFields {
  esVersion: EsVersionNumber;
  resolverPublicKey: Buffer;
  clientMagic: Buffer;
  serial: number;
  tsStart: number;
  tsEnd: number;
}

/** A signed certificate; `providerSecretKey` is the 64-byte Ed25519 secret key (seed || public). */
export function signCertificate(fields: CertificateFields, providerSecretKey: Buffer): Buffer {
  const out = Buffer.alloc(CERT_SIZE);
  CERT_MAGIC.copy(out, 0);
  out.writeUInt16BE(fields.esVersion, 4);
  out.writeUInt16BE(0, 6);
  fields.resolverPublicKey.copy(out, 72);
  fields.clientMagic.copy(out, 104);
  out.writeUInt32BE(fields.serial >>> 0, 112);
  out.writeUInt32BE(fields.tsStart >>> 0, 116);
  out.writeUInt32BE(fields.tsEnd >>> 0, 120);
  const signature = sodium().crypto_sign_detached(out.subarray(CERT_SIGNED_START), providerSecretKey);
  Buffer.from(signature).copy(out, 8);
  return out;
}

export interface Selection {
  /** The certificate to use, or null when none is usable. */
  chosen: Certificate | null;
  /** Why each certificate not chosen was refused (for the log). */
  refused: string[];
}

/**
 * Spec §1.3 as dnscrypt-proxy applies it: every certificate must parse, be signed by the
 * provider, have ts-start < ts-end and be valid now; among those the highest serial wins, and on
 * an equal serial the higher es-version (XChaCha20 over XSalsa20).
 */
export function selectCertificate(candidates: readonly Buffer[], providerPublicKey: Buffer, nowSeconds: number): Selection {
  let chosen: Certificate | null = null;
  const refused: string[] = [];
  for (const bytes of candidates) {
    let cert: Certificate;
    try {
      cert = parseCertificate(bytes);
    } catch (err) {
      refused.push((err as Error).message);
      continue;
    }
    const label = `certificate serial ${cert.serial} (es-version ${cert.esVersion})`;
    if (!verifyCertificate(cert, providerPublicKey)) {
      refused.push(`${label}: signature does not verify with the provider key`);
      continue;
    }
    if (cert.tsStart >= cert.tsEnd) {
      refused.push(`${label}: validity ends before it starts`);
      continue;
    }
    if (nowSeconds < cert.tsStart) {
      refused.push(`${label}: not valid before ${new Date(cert.tsStart * 1000).toISOString()}`);
      continue;
    }
    if (nowSeconds > cert.tsEnd) {
      refused.push(`${label}: expired at ${new Date(cert.tsEnd * 1000).toISOString()}`);
      continue;
    }
    if (chosen && (cert.serial < chosen.serial || (cert.serial === chosen.serial && cert.esVersion <= chosen.esVersion))) continue;
    chosen = cert;
  }
  return { chosen, refused };
}
