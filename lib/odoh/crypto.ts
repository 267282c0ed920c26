/**
 * Sealing and opening ODoH messages (RFC 9230 §6.3–6.4).
 *
 * A query is sealed with HPKE (base mode, info "odoh query") to the target's public key; the
 * additional data binds the message type and key id. The answer is not sealed by HPKE but
 * with a key both sides derive from the query's HPKE context:
 *
 *     secret = context.Export("odoh response", Nk)
 *     prk    = Extract(Q_plain || len(nonce) || nonce, secret)
 *     key    = Expand(prk, "odoh key", Nk);  aead_nonce = Expand(prk, "odoh nonce", Nn)
 *
 * with a fresh random nonce of max(Nn, Nk) bytes per answer, sent in the response's key id
 * field. So an answer opens only with the very query (padding included) it answers: a relay
 * that swaps, replays or alters an answer gets an authentication failure, never a wrong answer.
 */
import { Buffer } from 'node:buffer';
import { randomBuffer } from '../../core/util/random-pool.js';
import type { OdohConfig } from './configs.js';
import {
  associatedData,
  encodeMessage,
  encodePlaintext,
  MessageType,
  OdohFormatError,
  parseMessage,
  parsePlaintext,
  QUERY_PADDING_BLOCK,
  type ObliviousMessage,
} from './message.js';
import { hmac, HpkeError, openAead, sealAead, type HpkeContext, type RecipientKey } from './hpke.js';
import type { Suite } from './suite.js';

const QUERY_INFO = Buffer.from('odoh query');
const RESPONSE_INFO = Buffer.from('odoh response');
const TAG_LENGTH = 16;

/** A message that does not open: wrong key, altered bytes, or not an answer to this query. */
export class OdohCryptoError extends Error {
  override readonly name = 'OdohCryptoError';
}

/** What a client keeps between sealing a query and opening its answer. */
export class PendingQuery {
  constructor(
    private readonly suite: Suite,
    private readonly secret: Buffer,
    private readonly queryPlaintext: Buffer,
  ) {}

  /** The DNS answer inside `bytes`; throws OdohFormatError or OdohCryptoError. */
  openResponse(bytes: Buffer): Buffer {
    const message = parseMessage(bytes);
    if (message.type !== MessageType.response) throw new OdohFormatError('a query where an answer was expected');
    const nonceLength = Math.max(this.suite.nonceLength, this.suite.keyLength);
    if (message.keyId.length !== nonceLength) throw new OdohFormatError(`a response nonce of ${message.keyId.length} bytes, not ${nonceLength}`);
    const { key, nonce } = responseKey(this.suite, this.secret, this.queryPlaintext, message.keyId);
    const plaintext = openAnswer(this.suite, key, nonce, associatedData(MessageType.response, message.keyId), message.encrypted);
    return parsePlaintext(plaintext).dns;
  }
}

/** HPKE's sender set-up for one query to `config` (the costly half of sealing it): use it once. */
export interface PreparedSender {
  config: OdohConfig;
  enc: Buffer;
  context: HpkeContext;
}

/** SetupBaseS to the config's key under "odoh query"; throws OdohCryptoError when the key does not work. */
export function prepareSender(config: OdohConfig): PreparedSender {
  try {
    const { enc, context } = config.suite.hpke.setupSender(config.publicKey, QUERY_INFO);
    return { config, enc, context };
  } catch (err) {
    if (err instanceof HpkeError) throw new OdohCryptoError(`the target's key does not work: ${err.message}`);
    throw err;
  }
}

/**
 * Seals `dns` to the target's config; the plaintext is padded to a multiple of `block`. `sender`
 * is a set-up made ahead for this config (ready-senders.ts), never one used before; without it
 * one is made here.
 */
export function sealQuery(config: OdohConfig, dns: Buffer, block = QUERY_PADDING_BLOCK, sender = prepareSender(config)): { message: Buffer; pending: PendingQuery } {
  if (sender.config !== config) throw new Error('a sender set-up made for another ODoH config');
  const { suite } = config;
  const overhead = suite.encLength + TAG_LENGTH;
  const plaintext = encodePlaintext(dns, block, 0xffff - overhead);
  if (plaintext.length + overhead > 0xffff) throw new OdohFormatError('the query is too large to seal');
  const sealed = sender.context.seal(associatedData(MessageType.query, config.keyId), plaintext);
  const secret = sender.context.export(RESPONSE_INFO, suite.keyLength);
  const message = encodeMessage({ type: MessageType.query, keyId: config.keyId, encrypted: Buffer.concat([sender.enc, sealed]) });
  return { message, pending: new PendingQuery(suite, secret, plaintext) };
}

/** A target's key: the private half for HPKE, and the config it publishes. */
export interface TargetKey {
  config: OdohConfig;
  privateKey: RecipientKey;
}

export interface OpenedQuery {
  dns: Buffer;
  /** The whole plaintext (padding included): the answer's key is bound to it. */
  plaintext: Buffer;
  secret: Buffer;
  /** The encapsulated key: unique per sealed query (how replays are told). */
  enc: Buffer;
  suite: Suite;
}

/** Opens a query sealed to `key`. The caller has matched `message.keyId` to the key. */
export function openQuery(key: TargetKey, message: ObliviousMessage): OpenedQuery {
  const { suite } = key.config;
  if (message.type !== MessageType.query) throw new OdohFormatError('an answer where a query was expected');
  if (message.encrypted.length < suite.encLength + TAG_LENGTH) throw new OdohFormatError('the encrypted query is shorter than a key and a tag');
  const enc = message.encrypted.subarray(0, suite.encLength);
  let plaintext: Buffer;
  let secret: Buffer;
  try {
    const recipient = suite.hpke.setupRecipient(enc, key.privateKey, QUERY_INFO);
    plaintext = recipient.open(associatedData(MessageType.query, message.keyId), message.encrypted.subarray(suite.encLength));
    secret = recipient.export(RESPONSE_INFO, suite.keyLength);
  } catch (err) {
    throw new OdohCryptoError(`the query does not open: ${(err as Error).message}`);
  }
  return { dns: parsePlaintext(plaintext).dns, plaintext, secret, enc: Buffer.from(enc), suite };
}

/**
 * Seals an answer to the query it answers. `nonce` is random unless given (test vectors give
 * it); `block` pads the plaintext (RFC 8467's 468 bytes by default).
 */
export function sealResponse(query: Pick<OpenedQuery, 'plaintext' | 'secret' | 'suite'>, dns: Buffer, block: number, nonce?: Buffer): Buffer {
  return sealResponsePlaintext(query, encodePlaintext(dns, block, 0xffff - TAG_LENGTH), nonce);
}

/** The same with the plaintext (and so its padding) given whole. */
export function sealResponsePlaintext(query: Pick<OpenedQuery, 'plaintext' | 'secret' | 'suite'>, plaintext: Buffer, nonce?: Buffer): Buffer {
  const { suite } = query;
  if (plaintext.length + TAG_LENGTH > 0xffff) throw new OdohFormatError('the answer is too large to seal');
  const responseNonce = nonce ?? randomBuffer(Math.max(suite.nonceLength, suite.keyLength));
  const { key, nonce: aeadNonce } = responseKey(suite, query.secret, query.plaintext, responseNonce);
  const encrypted = sealAead(suite.cipher, key, aeadNonce, associatedData(MessageType.response, responseNonce), plaintext);
  return encodeMessage({ type: MessageType.response, keyId: responseNonce, encrypted });
}

function responseKey(suite: Suite, secret: Buffer, queryPlaintext: Buffer, responseNonce: Buffer): { key: Buffer; nonce: Buffer } {
  const salt = Buffer.allocUnsafe(queryPlaintext.length + 2 + responseNonce.length);
  queryPlaintext.copy(salt, 0);
  salt.writeUInt16BE(responseNonce.length, queryPlaintext.length);
  responseNonce.copy(salt, queryPlaintext.length + 2);
  // One Extract, two Expands from its PRK (RFC 5869); hkdfSync would redo the Extract for each.
  const prk = hmac(suite.hash, salt, secret);
  return { key: expandOnce(suite.hash, prk, KEY_INFO, suite.keyLength), nonce: expandOnce(suite.hash, prk, NONCE_INFO, suite.nonceLength) };
}

const KEY_INFO = Buffer.from('odoh key');
const NONCE_INFO = Buffer.from('odoh nonce');

/** HKDF-Expand for at most one hash's length: T(1) = HMAC(PRK, info || 0x01). */
function expandOnce(hash: Suite['hash'], prk: Buffer, info: Buffer, length: number): Buffer {
  return hmac(hash, prk, Buffer.concat([info, ONE])).subarray(0, length);
}

const ONE = Buffer.from([1]);

function openAnswer(suite: Suite, key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer): Buffer {
  try {
    return openAead(suite.cipher, key, nonce, aad, sealed);
  } catch (err) {
    if (err instanceof HpkeError) throw new OdohCryptoError('the answer does not open (altered, or not the answer to this query)');
    throw err;
  }
}
