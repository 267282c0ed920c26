/**
 * The cryptography of DNSCrypt v2 (spec §11): an X25519 shared key per (client key, resolver
 * key), turned into a box key by HSalsa20 (es-version 1) or HChaCha20 (es-version 2), then
 * NaCl-style boxes (tag first) with 24-byte nonces. Padding is ISO/IEC 7816-4: 0x80 then zeros.
 */
import { randomFillSync } from 'node:crypto';
import { EsVersion, MAX_PADDING, NONCE_SIZE, PADDING_BLOCK, type EsVersionNumber } from './constants.js';
import { sodium } from './sodium.js';

export interface KeyPair {
  publicKey: Buffer;
  secretKey: Buffer;
}

const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** A fresh X25519 key pair. */
export function x25519KeyPair(): KeyPair {
  const pair = sodium().crypto_box_keypair();
  return { publicKey: asBuffer(pair.publicKey), secretKey: asBuffer(pair.privateKey) };
}

/** The X25519 public key of a secret key. */
export function x25519PublicKey(secretKey: Buffer): Buffer {
  return asBuffer(sodium().crypto_scalarmult_base(secretKey));
}

/**
 * The box key shared by `secretKey` and the peer's `publicKey`, or null when the peer's key is
 * unusable (wrong length, or of low order: the X25519 result would be all zeros).
 */
export function sharedKey(esVersion: EsVersionNumber, secretKey: Buffer, publicKey: Buffer): Buffer | null {
  if (publicKey.length !== 32 || secretKey.length !== 32) return null;
  try {
    const key =
      esVersion === EsVersion.xchacha20poly1305
        ? sodium().crypto_box_curve25519xchacha20poly1305_beforenm(publicKey, secretKey)
        : sodium().crypto_box_beforenm(publicKey, secretKey);
    return asBuffer(key);
  } catch {
    return null;
  }
}

/** `tag(16) || ciphertext` of `plaintext` under the shared key and a 24-byte nonce. */
export function seal(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const box =
    esVersion === EsVersion.xchacha20poly1305
      ? sodium().crypto_box_curve25519xchacha20poly1305_easy_afternm(plaintext, nonce, key)
      : sodium().crypto_box_easy_afternm(plaintext, nonce, key);
  return asBuffer(box);
}

/** The plaintext of `tag || ciphertext`, or null when it does not authenticate. */
export function open(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, box: Buffer): Buffer | null {
  if (box.length < 16 || nonce.length !== NONCE_SIZE) return null;
  try {
    const plain =
      esVersion === EsVersion.xchacha20poly1305
        ? sodium().crypto_box_curve25519xchacha20poly1305_open_easy_afternm(box, nonce, key)
        : sodium().crypto_box_open_easy_afternm(box, nonce, key);
    return asBuffer(plain);
  } catch {
    return null;
  }
}

// ---- padding ----------------------------------------------------------------------------------

/** `msg || 0x80 || 0x00…`, `length` bytes in all (length > msg.length). */
export function pad(msg: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  msg.copy(out, 0);
  out[msg.length] = 0x80;
  return out;
}

/** The message inside padded plaintext, or null when the padding is not 0x80 then zeros. */
export function unpad(padded: Buffer): Buffer | null {
  let i = padded.length - 1;
  // Bounded: a valid padding is at most MAX_PADDING bytes, but longer runs of zeros are only
  // rejected once found, so scanning the whole buffer is the bound.
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) return null;
  return padded.subarray(0, i);
}

const roundUp = (n: number): number => Math.ceil(n / PADDING_BLOCK) * PADDING_BLOCK;

/** UDP query plaintext length: a multiple of 64, at least `minimum`, with room for 0x80. */
export function udpQueryLength(messageLength: number, minimum: number): number {
  return Math.max(minimum, roundUp(messageLength + 1));
}

/**
 * TCP query plaintext length: a multiple of 64 with 1 to 256 bytes of padding, the amount
 * random (spec §3) so lengths tell an observer less. `random` is a byte.
 */
export function tcpQueryLength(messageLength: number, random: number): number {
  const base = roundUp(messageLength + 1);
  const extraBlocks = Math.floor((MAX_PADDING - (base - messageLength)) / PADDING_BLOCK);
  return base + PADDING_BLOCK * (random % (extraBlocks + 1));
}

/**
 * Response plaintext length (spec §8): a multiple of 64, 1 to 256 bytes of padding chosen by
 * `prf` (constant for a given shared key and nonce), and never more than `maximum`. When even
 * the next multiple of 64 does not fit, the padding fills exactly up to `maximum`.
 */
export function responseLength(messageLength: number, prf: number, maximum: number): number {
  const ideal = tcpQueryLength(messageLength, prf);
  if (ideal <= maximum) return ideal;
  const fitting = Math.floor(maximum / PADDING_BLOCK) * PADDING_BLOCK;
  return fitting > messageLength ? fitting : maximum;
}

// ---- randomness -------------------------------------------------------------------------------

const pool = Buffer.allocUnsafe(8192);
let poolOffset = pool.length;

/** `size` random bytes written into `target` at `offset`, from a CSPRNG block refilled as used. */
export function randomInto(target: Buffer, offset: number, size: number): void {
  if (poolOffset + size > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  pool.copy(target, offset, poolOffset, poolOffset + size);
  poolOffset += size;
}

export function randomByte(): number {
  if (poolOffset + 1 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  return pool[poolOffset++]!;
}
