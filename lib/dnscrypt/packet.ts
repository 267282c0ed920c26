/**
 * DNSCrypt query and response packets (spec §2, §7), both directions:
 *
 *     query     client-magic(8) client-pk(32) client-nonce(12) tag(16) box(padded query)
 *     response  "r6fnvWj8"(8) client-nonce(12) resolver-nonce(12) tag(16) box(padded answer)
 *
 * A query's 24-byte nonce is the client half then 12 zeros; a response's is both halves.
 */
import { Buffer } from 'node:buffer';
import {
  CLIENT_MAGIC_SIZE,
  HALF_NONCE_SIZE,
  NONCE_SIZE,
  PUBLIC_KEY_SIZE,
  QUERY_HEADER_SIZE,
  QUERY_OVERHEAD,
  RESOLVER_MAGIC,
  RESPONSE_HEADER_SIZE,
  RESPONSE_OVERHEAD,
  type EsVersionNumber,
} from './constants.js';
import { openUnpadded, sealPaddedInto } from './crypto.js';

/** What a client needs to encrypt queries for one certificate. */
export interface ClientKeys {
  esVersion: EsVersionNumber;
  clientMagic: Buffer;
  clientPublicKey: Buffer;
  sharedKey: Buffer;
}

/**
 * Encrypts `query`, padded to `paddedLength` bytes, with the 12-byte client half-nonce. The
 * packet starts after `headroom` bytes left unwritten (for a relay header).
 */
export function encryptQuery(keys: ClientKeys, clientNonce: Buffer, query: Buffer, paddedLength: number, headroom = 0): Buffer {
  const nonce = queryNonce(clientNonce);
  const packet = Buffer.allocUnsafe(headroom + QUERY_OVERHEAD + paddedLength);
  keys.clientMagic.copy(packet, headroom);
  keys.clientPublicKey.copy(packet, headroom + CLIENT_MAGIC_SIZE);
  clientNonce.copy(packet, headroom + CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE, 0, HALF_NONCE_SIZE);
  sealPaddedInto(keys.esVersion, keys.sharedKey, nonce, query, paddedLength, packet, headroom + QUERY_HEADER_SIZE);
  return packet;
}

/**
 * One 24-byte nonce buffer for every query: its second half stays zero, and it is read at once
 * (boxes are synchronous), so no query needs a buffer of its own.
 */
const sharedQueryNonce = Buffer.alloc(NONCE_SIZE);

/** The client half-nonce followed by 12 zeros (the shared buffer: use it before the next call). */
function queryNonce(clientHalf: Buffer): Buffer {
  clientHalf.copy(sharedQueryNonce, 0, 0, HALF_NONCE_SIZE);
  return sharedQueryNonce;
}

/**
 * The DNS answer inside a response packet, or null when the packet is not the answer to the
 * query sent with `clientNonce`: wrong size or magic, another nonce, failed authentication, bad
 * padding, or less than a DNS header inside.
 */
export function decryptResponse(esVersion: EsVersionNumber, sharedKey: Buffer, clientNonce: Buffer, packet: Buffer): Buffer | null {
  if (packet.length < RESPONSE_OVERHEAD + 12 + 1) return null;
  if (packet.compare(RESOLVER_MAGIC, 0, 8, 0, 8) !== 0) return null;
  if (packet.compare(clientNonce, 0, HALF_NONCE_SIZE, 8, 8 + HALF_NONCE_SIZE) !== 0) return null;
  const answer = openUnpadded(esVersion, sharedKey, packet.subarray(8, RESPONSE_HEADER_SIZE), packet.subarray(RESPONSE_HEADER_SIZE));
  return answer && answer.length >= 12 ? answer : null;
}

/** The fields of a query packet a server needs before it can decrypt. Null when too short. */
export interface QueryEnvelope {
  clientMagic: Buffer;
  clientPublicKey: Buffer;
  clientNonce: Buffer;
}

export function readQueryEnvelope(packet: Buffer): QueryEnvelope | null {
  // The smallest query: header, tag, a 12-byte DNS header and one byte of padding.
  if (packet.length < QUERY_OVERHEAD + 12 + 1) return null;
  return {
    clientMagic: packet.subarray(0, CLIENT_MAGIC_SIZE),
    clientPublicKey: packet.subarray(CLIENT_MAGIC_SIZE, CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE),
    clientNonce: packet.subarray(CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE, QUERY_HEADER_SIZE),
  };
}

/** The DNS query inside, or null when it does not authenticate or unpad to a DNS header. */
export function decryptQuery(esVersion: EsVersionNumber, sharedKey: Buffer, packet: Buffer): Buffer | null {
  const nonce = queryNonce(packet.subarray(CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE, QUERY_HEADER_SIZE));
  const query = openUnpadded(esVersion, sharedKey, nonce, packet.subarray(QUERY_HEADER_SIZE));
  return query && query.length >= 12 ? query : null;
}

/** A response packet: `answer` padded to `paddedLength`, under both half-nonces. */
export function encryptResponse(esVersion: EsVersionNumber, sharedKey: Buffer, clientNonce: Buffer, resolverNonce: Buffer, answer: Buffer, paddedLength: number): Buffer {
  const packet = Buffer.allocUnsafe(RESPONSE_OVERHEAD + paddedLength);
  RESOLVER_MAGIC.copy(packet, 0);
  clientNonce.copy(packet, 8, 0, HALF_NONCE_SIZE);
  resolverNonce.copy(packet, 8 + HALF_NONCE_SIZE, 0, HALF_NONCE_SIZE);
  sealPaddedInto(esVersion, sharedKey, packet.subarray(8, RESPONSE_HEADER_SIZE), answer, paddedLength, packet, RESPONSE_HEADER_SIZE);
  return packet;
}
