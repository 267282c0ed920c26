/**
 * Certificate queries and answers: a plain DNS TXT query for the provider name
 * (`2.dnscrypt-cert.example.org`), answered with one TXT record per certificate.
 */
import { Buffer } from 'node:buffer';
import { HEADER_SIZE, QClass, QType } from '../../core/dns/constants.js';
import { padMessage } from '../../core/dns/edns.js';
import { buildQuery, buildReply, type WireRecord } from '../../core/dns/message.js';
import { forEachRecord, isResponse, opcodeOf, qdCount, readId, readQuestion, sameQuestion, type Question } from '../../core/dns/wire.js';
import { CERT_NAME_PREFIX } from './constants.js';

/**
 * Certificate queries are padded (EDNS Padding) to this many bytes, so that a relay, which
 * never sends back more than it received, lets the certificates through.
 */
export const CERT_QUERY_SIZE = 1024;

/** The TXT query for a provider's certificates, padded to `size` bytes (CERT_QUERY_SIZE). */
export function buildCertQuery(providerName: string, id: number, size = CERT_QUERY_SIZE): Buffer {
  return padMessage(buildQuery(providerName, QType.TXT, { id, edns: true }), size);
}

/**
 * The certificates in an answer to `query` (one per TXT record, its strings joined). Throws
 * when the message is not an answer to that query.
 */
export function certificatesFromAnswer(query: Buffer, answer: Buffer): Buffer[] {
  if (answer.length < HEADER_SIZE || !isResponse(answer)) throw new Error('the certificate answer is not a DNS response');
  if (readId(answer) !== readId(query) || !sameQuestion(query, answer)) throw new Error('the certificate answer does not match the query');
  const certs: Buffer[] = [];
  forEachRecord(answer, (rr) => {
    if (rr.section !== 0 || rr.type !== QType.TXT) return;
    const parts: Buffer[] = [];
    let pos = rr.rdataStart;
    const end = rr.rdataStart + rr.rdataLength;
    while (pos < end) {
      const length = answer[pos]!;
      if (pos + 1 + length > end) throw new Error('a TXT string runs past its record');
      parts.push(answer.subarray(pos + 1, pos + 1 + length));
      pos += 1 + length;
    }
    certs.push(Buffer.concat(parts));
  });
  return certs;
}

/** The question of a plain certificate query (QR clear, one TXT IN question), or null. */
export function certQuestion(packet: Buffer): Question | null {
  if (packet.length < HEADER_SIZE + 5 || isResponse(packet) || opcodeOf(packet) !== 0 || qdCount(packet) !== 1) return null;
  try {
    const question = readQuestion(packet);
    return question.type === QType.TXT && question.qclass === QClass.IN ? question : null;
  } catch {
    return null;
  }
}

/** True when `name` (canonical) is a protocol-2 certificate name: `2.dnscrypt-cert.…`. */
export function isCertName(name: string): boolean {
  return name.startsWith(CERT_NAME_PREFIX) && name.length > CERT_NAME_PREFIX.length + 1;
}

/** TXT RDATA holding one certificate, cut into character-strings of at most 255 bytes. */
function certRdata(cert: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let pos = 0; pos < cert.length; pos += 255) {
    const chunk = cert.subarray(pos, pos + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

/**
 * The answer to a certificate query (spec §1.5 as encrypted-dns-server does it): the query's
 * header and question, QR and RA set, RD and CD kept, one TXT record per certificate, nothing
 * else (no OPT echoed).
 */
export function buildCertAnswer(query: Buffer, question: Question, certs: readonly Buffer[], ttl: number): Buffer {
  const answers: WireRecord[] = certs.map((cert) => ({ type: QType.TXT, ttl, rdata: certRdata(cert) }));
  return buildReply(query, { questionEnd: question.end, answers });
}
