/**
 * The Oblivious DoH message formats (RFC 9230 §6.1–6.2), read by hand and bounded: every length
 * is checked against what is left before a byte is taken, and a message must end exactly where
 * its last field does.
 *
 *     struct {
 *        uint8  message_type;             // 0x01 query, 0x02 response
 *        opaque key_id<0..2^16-1>;        // the config's key id; a response's nonce
 *        opaque encrypted_message<1..2^16-1>;
 *     } ObliviousDoHMessage;
 *
 *     struct {
 *        opaque dns_message<1..2^16-1>;
 *        opaque padding<0..2^16-1>;       // zeros
 *     } ObliviousDoHMessagePlaintext;
 */
import { Buffer } from 'node:buffer';

export const OBLIVIOUS_MEDIA_TYPE = 'application/oblivious-dns-message';
/** Where a target serves its ObliviousDoHConfigs (RFC 9230 §6.3). */
export const CONFIGS_PATH = '/.well-known/odohconfigs';

export const MessageType = { query: 0x01, response: 0x02 } as const;

/** The largest ObliviousDoHMessage: a type, two full length-prefixed fields. HTTP bodies stop here. */
export const MAX_MESSAGE_BYTES = 1 + 2 + 0xffff + 2 + 0xffff;

/** Query plaintexts are padded to a multiple of this (RFC 8467's block for queries)… */
export const QUERY_PADDING_BLOCK = 128;
/** …and answers to a multiple of this (RFC 8467's recommended response block). */
export const RESPONSE_PADDING_BLOCK = 468;

export class OdohFormatError extends Error {
  override readonly name = 'OdohFormatError';
}

export interface ObliviousMessage {
  type: number;
  /** The key id of the config a query was sealed to; the response nonce of a response. */
  keyId: Buffer;
  encrypted: Buffer;
}

/** Reads one ObliviousDoHMessage; throws OdohFormatError unless the bytes are exactly one. */
export function parseMessage(bytes: Buffer): ObliviousMessage {
  if (bytes.length < 5) throw new OdohFormatError(`${bytes.length} bytes is shorter than an oblivious message`);
  const type = bytes[0]!;
  if (type !== MessageType.query && type !== MessageType.response) throw new OdohFormatError(`unknown message type ${type}`);
  const keyIdLength = bytes.readUInt16BE(1);
  const encryptedAt = 3 + keyIdLength + 2;
  if (encryptedAt > bytes.length) throw new OdohFormatError('the message ends inside its key id');
  const encryptedLength = bytes.readUInt16BE(3 + keyIdLength);
  if (encryptedLength === 0) throw new OdohFormatError('the encrypted message is empty');
  if (encryptedAt + encryptedLength !== bytes.length) {
    throw new OdohFormatError(encryptedAt + encryptedLength > bytes.length ? 'the message ends inside its encrypted part' : 'bytes after the end of the message');
  }
  return { type, keyId: bytes.subarray(3, 3 + keyIdLength), encrypted: bytes.subarray(encryptedAt) };
}

export function encodeMessage(message: ObliviousMessage): Buffer {
  if (message.keyId.length > 0xffff || message.encrypted.length === 0 || message.encrypted.length > 0xffff) {
    throw new OdohFormatError('a message field is empty or longer than 65535 bytes');
  }
  const out = Buffer.allocUnsafe(5 + message.keyId.length + message.encrypted.length);
  out[0] = message.type;
  out.writeUInt16BE(message.keyId.length, 1);
  message.keyId.copy(out, 3);
  out.writeUInt16BE(message.encrypted.length, 3 + message.keyId.length);
  message.encrypted.copy(out, 5 + message.keyId.length);
  return out;
}

/** The additional data sealed with a message: its type and its length-prefixed key id (or nonce). */
export function associatedData(type: number, keyId: Buffer): Buffer {
  const out = Buffer.allocUnsafe(3 + keyId.length);
  out[0] = type;
  out.writeUInt16BE(keyId.length, 1);
  keyId.copy(out, 3);
  return out;
}

/** A plaintext whose padding brings its size to a multiple of `block` (0: no padding). */
export function encodePlaintext(dns: Buffer, block: number, maxSize = 0xffff): Buffer {
  if (dns.length === 0 || dns.length > 0xffff) throw new OdohFormatError(`a DNS message of ${dns.length} bytes cannot be sent`);
  const bare = 4 + dns.length;
  let padding = block > 0 ? (block - (bare % block)) % block : 0;
  // Never more than the ciphertext may carry: padding is what gives way.
  if (bare + padding > maxSize) padding = Math.max(0, maxSize - bare);
  return plaintextWithPadding(dns, padding);
}

export function plaintextWithPadding(dns: Buffer, padding: number): Buffer {
  const out = Buffer.alloc(4 + dns.length + padding);
  out.writeUInt16BE(dns.length, 0);
  dns.copy(out, 2);
  out.writeUInt16BE(padding, 2 + dns.length);
  return out;
}

/** The DNS message inside a plaintext; throws unless the lengths add up and the padding is zeros. */
export function parsePlaintext(bytes: Buffer): { dns: Buffer; padding: number } {
  if (bytes.length < 4) throw new OdohFormatError('the plaintext is shorter than its two lengths');
  const dnsLength = bytes.readUInt16BE(0);
  if (dnsLength === 0) throw new OdohFormatError('the plaintext holds an empty DNS message');
  if (2 + dnsLength + 2 > bytes.length) throw new OdohFormatError('the plaintext ends inside its DNS message');
  const padding = bytes.readUInt16BE(2 + dnsLength);
  if (2 + dnsLength + 2 + padding !== bytes.length) throw new OdohFormatError('the padding length does not match the plaintext');
  for (let i = 4 + dnsLength; i < bytes.length; i++) {
    if (bytes[i] !== 0) throw new OdohFormatError('the padding is not zeros');
  }
  return { dns: bytes.subarray(2, 2 + dnsLength), padding };
}
