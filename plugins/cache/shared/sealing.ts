/**
 * What makes the shared cache private: whoever reads Valkey sees neither the names asked nor
 * the answers.
 *
 * - **Keys** are HMAC-SHA-512 of the question (name in lower case, type, class), the key bits
 *   (DO, CD, EDNS), the server block and the fleet's generation, under a key derived from the
 *   fleet's secret. The first 16 bytes name the entry in Valkey; the next 32 are the entry's
 *   own AES-256 key, which Valkey never sees.
 * - **Values** are the answer's wire sealed with AES-256-GCM under that entry key, so a value
 *   moved under another key does not open (its key derives another AES key), and garbage or a
 *   value from another version never opens either. Each entry key seals only the answers of its
 *   one question, so GCM's random 96-bit nonces stay far from their birthday bound however many
 *   answers the fleet writes.
 * - **Fleet messages** (flushes, list refreshes) are sealed under a key of their own: a name
 *   being flushed is not readable on the channel, and whoever can only write to Valkey cannot
 *   make the fleet flush.
 *
 * Sizes are rounded up to SIZE_STEP bytes, so a value tells its answer's size only roughly.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
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
const OVERHEAD = 1 + NONCE_BYTES + GCM_TAG_BYTES;
/** The sealed text starts with the entry's TTL (u32) and the answer's length (u16). */
const PLAIN_HEADER = 6;

/** The keys a fleet derives from its one secret; each used for one purpose only. */
export class FleetKeys {
  private readonly names: Buffer;
  private readonly messages: Buffer;
  /** The Valkey key holding the fleet's generation, and the fleet's pub/sub channel. */
  readonly generationKey: string;
  readonly channel: string;

  constructor(secret: Buffer) {
    if (secret.length !== SECRET_BYTES) throw new Error(`a fleet secret is ${SECRET_BYTES} bytes, not ${secret.length}`);
    const derive = (purpose: string) => Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `veil shared cache v${FORMAT_VERSION}: ${purpose}`, 32));
    this.names = derive('entry names');
    this.messages = derive('fleet messages');
    // Two fleets with different secrets on one Valkey stay apart, and neither name says whose it is.
    const fleetTag = createHmac('sha256', this.names).update('fleet').digest().subarray(0, 9).toString('base64url');
    this.generationKey = `${KEY_PREFIX}g:${fleetTag}`;
    this.channel = `${KEY_PREFIX}f:${fleetTag}`;
  }

  /**
   * The Valkey key of a question and the AES key of its value. `msg` holds the question at
   * HEADER_SIZE..questionEnd (a query, or an answer to it); its name is folded to lower case.
   */
  entry(msg: Buffer, questionEnd: number, bits: number, block: string, generation: number): { key: string; aesKey: Buffer } {
    const question = Buffer.from(msg.subarray(HEADER_SIZE, questionEnd));
    const nameEnd = question.length - 4;
    for (let i = 0; i < nameEnd; i++) {
      const c = question[i]!;
      if (c >= 0x41 && c <= 0x5a) question[i] = c | 0x20;
    }
    const head = Buffer.alloc(7);
    head.writeUInt32BE(generation >>> 0, 0);
    head.writeUInt8(bits, 4);
    head.writeUInt16BE(Buffer.byteLength(block), 5);
    const digest = createHmac('sha512', this.names).update(head).update(block).update(question).digest();
    return { key: KEY_PREFIX + digest.subarray(0, TAG_BYTES).toString('base64url'), aesKey: digest.subarray(TAG_BYTES, TAG_BYTES + 32) };
  }

  /** A fleet message, sealed; `open` gives it back only if the fleet's secret sealed it. */
  sealMessage(text: string): Buffer {
    return seal(this.messages, Buffer.from(text, 'utf8'), this.channel);
  }

  openMessage(sealed: Buffer): string | null {
    const plain = open(this.messages, sealed, this.channel);
    return plain ? plain.toString('utf8') : null;
  }
}

/** A value for Valkey: the answer and its TTL in seconds, padded and sealed under the entry's key. */
export function sealAnswer(aesKey: Buffer, key: string, answer: Buffer, ttl: number): Buffer {
  const length = PLAIN_HEADER + answer.length;
  const plain = Buffer.alloc(Math.ceil(length / SIZE_STEP) * SIZE_STEP);
  plain.writeUInt32BE(ttl, 0);
  plain.writeUInt16BE(answer.length, 4);
  answer.copy(plain, PLAIN_HEADER);
  return seal(aesKey, plain, key);
}

/** The answer and TTL a value holds; null for anything that was not sealed under this key. */
export function openAnswer(aesKey: Buffer, key: string, value: Buffer): { answer: Buffer; ttl: number } | null {
  const plain = open(aesKey, value, key);
  if (!plain || plain.length < PLAIN_HEADER) return null;
  const length = plain.readUInt16BE(4);
  if (PLAIN_HEADER + length > plain.length || length < HEADER_SIZE) return null;
  return { ttl: plain.readUInt32BE(0), answer: plain.subarray(PLAIN_HEADER, PLAIN_HEADER + length) };
}

/** version ‖ nonce ‖ AES-256-GCM(plain) ‖ tag, with the version and `context` as associated data. */
function seal(aesKey: Buffer, plain: Buffer, context: string): Buffer {
  const out = Buffer.allocUnsafe(OVERHEAD + plain.length);
  out[0] = FORMAT_VERSION;
  randomBytes(NONCE_BYTES).copy(out, 1);
  const cipher = createCipheriv('aes-256-gcm', aesKey, out.subarray(1, 1 + NONCE_BYTES));
  cipher.setAAD(associatedData(context));
  const body = cipher.update(plain);
  cipher.final();
  body.copy(out, 1 + NONCE_BYTES);
  cipher.getAuthTag().copy(out, 1 + NONCE_BYTES + body.length);
  return out;
}

function open(aesKey: Buffer, sealed: Buffer, context: string): Buffer | null {
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
