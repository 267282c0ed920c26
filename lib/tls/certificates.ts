/**
 * The checks DoT and DoH upstreams make beyond the usual chain and name verification: SPKI pins
 * (RFC 7858 §4.2: base64 SHA-256 of the leaf's SubjectPublicKeyInfo; the leaf only, because with
 * pins alone the chain is not verified and any certificate could be appended to it) and the
 * certificate hashes of a DNS stamp (SHA-256 of the TBSCertificate of one certificate in the
 * verified chain).
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { PeerCertificate, DetailedPeerCertificate } from 'node:tls';

const sha256 = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();

/** SHA-256 of the DER SubjectPublicKeyInfo of a DER certificate. */
export function spkiSha256(der: Buffer): Buffer {
  return sha256(new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' }));
}

/** SHA-256 of the TBSCertificate (the signed part) of a DER certificate, as DNS stamps carry. */
export function tbsSha256(der: Buffer): Buffer {
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm, signatureValue }
  const certificate = readTlv(der, 0);
  const tbs = readTlv(der, certificate.contentStart);
  return sha256(der.subarray(certificate.contentStart, tbs.end));
}

function readTlv(der: Buffer, offset: number): { contentStart: number; end: number } {
  if (offset + 2 > der.length || der[offset] !== 0x30) throw new Error('certificate is not a DER SEQUENCE');
  let length = der[offset + 1]!;
  let pos = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || pos + bytes > der.length) throw new Error('certificate has a bad DER length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[pos++]!;
  }
  if (pos + length > der.length) throw new Error('certificate runs past its end');
  return { contentStart: pos, end: pos + length };
}

/** The DER certificates the server sent, leaf first (a self-signed root ends the walk). */
export function chainOf(leaf: DetailedPeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  const seen = new Set<PeerCertificate>();
  let current: DetailedPeerCertificate | undefined = leaf;
  while (current?.raw && !seen.has(current) && chain.length < 16) {
    seen.add(current);
    chain.push(current.raw);
    current = current.issuerCertificate;
  }
  return chain;
}

export interface CertificateExpectations {
  /** SHA-256 SPKI pins: the leaf must match one, when any are given. */
  pins: readonly Buffer[];
  /** Stamp hashes: some certificate of the chain must match one, when any are given. */
  certHashes: readonly Buffer[];
}

/** Why the server's certificate fails the expectations, or null when it passes. */
export function certificateProblem(leaf: DetailedPeerCertificate | null, expect: CertificateExpectations): string | null {
  if (expect.pins.length === 0 && expect.certHashes.length === 0) return null;
  if (!leaf?.raw) return 'the server sent no certificate';
  if (expect.pins.length > 0) {
    const pin = spkiSha256(leaf.raw);
    if (!expect.pins.some((p) => p.equals(pin))) return `the certificate's public key matches no pin_sha256 (its pin is ${pin.toString('base64')})`;
  }
  if (expect.certHashes.length > 0) {
    const hashes = chainOf(leaf).map(tbsSha256);
    if (!hashes.some((h) => expect.certHashes.some((e) => e.equals(h)))) return "no certificate in the server's chain matches the stamp's hashes";
  }
  return null;
}
