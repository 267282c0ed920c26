/**
 * What makes the shared cache private: whoever reads Valkey sees neither the names asked nor
 * the answers.
 *
 * - **Keys** are HMAC-SHA-256 of the question (name in lower case, type, class), the key bits
 *   (DO, CD, EDNS), the server block and the fleet's generation, under a key derived from the
 *   fleet's secret, cut to 16 bytes.
 * - **Values** are the answer's wire sealed with AES-256-GCM under a second derived key, with
 *   the entry's Valkey key as associated data: a value moved under another key does not open,
 *   and neither does garbage, a damaged value or one of another format version.
 * - **Fleet messages** (flushes, list refreshes) are sealed under a third key: a name being
 *   flushed is not readable on the channel, and whoever can only write to Valkey cannot make
 *   the fleet flush.
 *
 * GCM's nonces are never reused under one key: each process takes 8 random bytes as its own
 * prefix and counts in the last 4 (a new prefix when the count wraps), NIST SP 800-38D's
 * deterministic construction; a fleet would need about 2^32 process starts for two prefixes to
 * meet. The derived keys are KeyObjects, made once: importing a raw key on every call cost more
 * than the sealing itself.
 *
 * Sizes are rounded up to SIZE_STEP bytes, so a value tells its answer's size only roughly.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { HEADER_SIZE } from '../../../core/dns/constants.js';

/** The first byte of every value and message: another version is a miss, never an answer. */
export const FORMAT_VERSION = 1;
/** In every key and channel name, so that a new format never reads the old one's data. */
export const KEY_PREFIX = `veil:${FORMAT_VERSION}:`;
export const SECRET_BYTES = 32;
const TAG_BYTES = 16;
const NONCE_BYTES = 12;
const GCM_TAG_BYTES = 16;
/** Plaintext sizes are padded to a multiple of this. */
export const SIZE_STEP = 128;
/** version, nonce, then the sealed text and its tag. */
export const OVERHEAD = 1 + NONCE_BYTES + GCM_TAG_BYTES;
/** The sealed text starts with the entry's TTL (u32) and the answer's length (u16). */
const PLAIN_HEADER = 6;

/** This process's nonces: a random prefix, then a counter. */
let noncePrefix = randomBytes(8);
let nonceCounter = 0;

function writeNonce(into: Buffer, at: number): void {
  if (nonceCounter === 0xffffffff) {
    noncePrefix = randomBytes(8);
    nonceCounter = 0;
  }
  noncePrefix.copy(into, at);
  into.writeUInt32BE(nonceCounter++, at + 8);
}

/** The keys a fleet derives from its one secret; each used for one purpose only. */
export class FleetKeys {
  private readonly names: KeyObject;
  private readonly values: KeyObject;
  private readonly messages: KeyObject;
  /** The Valkey key holding the fleet's generation, and the fleet's pub/sub channel. */
  readonly generationKey: string;
  readonly channel: string;

  constructor(secret: Buffer) {
    if (secret.length !== SECRET_BYTES) throw new Error(`a fleet secret is ${SECRET_BYTES} bytes, not ${secret.length}`);
    const derive = (purpose: string) => createSecretKey(Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `veil shared cache v${FORMAT_VERSION}: ${purpose}`, 32)));
    this.names = derive('entry names');
    this.values = derive('entry values');
    this.messages = derive('fleet messages');
    // Two fleets with different secrets on one Valkey stay apart, and neither name says whose it is.
    const fleetTag = createHmac('sha256', this.names).update('fleet').digest().subarray(0, 9).toString('base64url');
    this.generationKey = `${KEY_PREFIX}g:${fleetTag}`;
    this.channel = `${KEY_PREFIX}f:${fleetTag}`;
  }

  /**
   * The Valkey key of a question. `msg` holds the question at HEADER_SIZE..questionEnd (a
   * query, or an answer to it); its name counts in lower case.
   */
  entry(msg: Buffer, questionEnd: number, bits: number, block: string, generation: number): string {
    const question = Buffer.from(msg.subarray(HEADER_SIZE, questionEnd));
    const nameEnd = question.length - 4;
    for (let i = 0; i < nameEnd; i++) {
      const c = question[i]!;
      if (c >= 0x41 && c <= 0x5a) question[i] = c | 0x20;
    }
    const head = Buffer.allocUnsafe(7);
    head.writeUInt32BE(generation >>> 0, 0);
    head.writeUInt8(bits, 4);
    head.writeUInt16BE(Buffer.byteLength(block), 5);
    const digest = createHmac('sha256', this.names).update(head).update(block).update(question).digest();
    return KEY_PREFIX + digest.subarray(0, TAG_BYTES).toString('base64url');
  }

  /** A value for Valkey: the answer and its TTL in seconds, padded and sealed for `key` alone. */
  sealAnswer(key: string, answer: Buffer, ttl: number): Buffer {
    const length = PLAIN_HEADER + answer.length;
    const plain = Buffer.alloc(Math.ceil(length / SIZE_STEP) * SIZE_STEP);
    plain.writeUInt32BE(ttl, 0);
    plain.writeUInt16BE(answer.length, 4);
    answer.copy(plain, PLAIN_HEADER);
    return seal(this.values, plain, key);
  }

  /** The answer and TTL a value holds; null for anything that was not sealed for `key`. */
  openAnswer(key: string, value: Buffer): { answer: Buffer; ttl: number } | null {
    const plain = open(this.values, value, key);
    if (!plain || plain.length < PLAIN_HEADER) return null;
    const length = plain.readUInt16BE(4);
    if (PLAIN_HEADER + length > plain.length || length < HEADER_SIZE) return null;
    return { ttl: plain.readUInt32BE(0), answer: plain.subarray(PLAIN_HEADER, PLAIN_HEADER + length) };
  }

  /** A fleet message, sealed; `openMessage` gives it back only if the fleet's secret sealed it. */
  sealMessage(text: string): Buffer {
    return seal(this.messages, Buffer.from(text, 'utf8'), this.channel);
  }

  openMessage(sealed: Buffer): string | null {
    const plain = open(this.messages, sealed, this.channel);
    return plain ? plain.toString('utf8') : null;
  }
}

/** version ‖ nonce ‖ AES-256-GCM(plain) ‖ tag, with the version and `context` as associated data. */
function seal(aesKey: KeyObject, plain: Buffer, context: string): Buffer {
  const out = Buffer.allocUnsafe(OVERHEAD + plain.length);
  out[0] = FORMAT_VERSION;
  writeNonce(out, 1);
  const cipher = createCipheriv('aes-256-gcm', aesKey, out.subarray(1, 1 + NONCE_BYTES));
  cipher.setAAD(associatedData(context));
  const body = cipher.update(plain);
  cipher.final();
  body.copy(out, 1 + NONCE_BYTES);
  cipher.getAuthTag().copy(out, 1 + NONCE_BYTES + body.length);
  return out;
}

function open(aesKey: KeyObject, sealed: Buffer, context: string): Buffer | null {
  if (sealed.length < OVERHEAD || sealed[0] !== FORMAT_VERSION) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', aesKey, sealed.subarray(1, 1 + NONCE_BYTES));
    decipher.setAAD(associatedData(context));
    decipher.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_BYTES));
    const plain = decipher.update(sealed.subarray(1 + NONCE_BYTES, sealed.length - GCM_TAG_BYTES));
    decipher.final();
    return plain;
  } catch {
    return null; // tag mismatch: not ours, moved, or damaged
  }
}

function associatedData(context: string): Buffer {
  return Buffer.concat([Buffer.from([FORMAT_VERSION]), Buffer.from(context, 'utf8')]);
}
