/**
 * The cryptography of DNSCrypt v2 (spec §11): an X25519 shared key per (client key, resolver
 * key), turned into a box key by HSalsa20 (es-version 1) or HChaCha20 (es-version 2), then
 * NaCl-style boxes (tag first) with 24-byte nonces. Padding is ISO/IEC 7816-4: 0x80 then zeros.
 */
import { Buffer } from 'node:buffer';
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

// ---- boxes -----------------------------------------------------------------------------------
//
// Every packet's box goes through libsodium's raw exports, on scratch space of our own inside its
// memory. The wrappers' functions (`crypto_box_easy_afternm` & co) allocate inside it, copy each
// argument in, allocate the result outside, copy it out and free, on every call: that was most
// of what a query's crypto cost (about 3.5 µs a box against 1.5 µs for the box itself, 512
// bytes of XChaCha20-Poly1305). Here the padded plaintext is written straight into the scratch
// and the box read straight into its packet; the message inside an answer is unpadded in place
// and only it is copied out.

/** The few raw exports used (emscripten's: a 64-bit length is passed as two 32-bit halves). */
interface RawBoxExports {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _crypto_box_easy_afternm(c: number, m: number, mlenLow: number, mlenHigh: number, n: number, k: number): number;
  _crypto_box_open_easy_afternm(m: number, c: number, clenLow: number, clenHigh: number, n: number, k: number): number;
  _crypto_box_curve25519xchacha20poly1305_easy_afternm(c: number, m: number, mlenLow: number, mlenHigh: number, n: number, k: number): number;
  _crypto_box_curve25519xchacha20poly1305_open_easy_afternm(m: number, c: number, clenLow: number, clenHigh: number, n: number, k: number): number;
}

/**
 * The largest input (plaintext, or box) the scratch takes: any DNS message (65,535 bytes) with
 * its padding and tag. Larger ones cannot be sent or received; they would still be boxed by the
 * wrappers (the path kept for them) rather than refused here.
 */
const SCRATCH_INPUT = 65_536 + 1024;

interface Scratch {
  raw: RawBoxExports;
  key: number;
  nonce: number;
  input: number;
  output: number;
}

let scratch: Scratch | null = null;

/** The scratch space, allocated once (~130 KB of libsodium's memory, kept for the process's life). */
function boxScratch(): Scratch {
  if (scratch) return scratch;
  const raw = (sodium() as unknown as { libsodium: RawBoxExports }).libsodium;
  const base = raw._malloc(32 + NONCE_SIZE + 2 * (SCRATCH_INPUT + 16));
  if (base === 0) throw new Error('libsodium: out of memory for the box scratch space');
  const key = base;
  const nonce = key + 32;
  const input = nonce + NONCE_SIZE;
  scratch = { raw, key, nonce, input, output: input + SCRATCH_INPUT + 16 };
  return scratch;
}

/**
 * Boxes the `length` bytes of plaintext already at `s.input` (key and nonce written too): the
 * box, tag first, is at `s.output`, `length + 16` bytes.
 */
function boxScratchInput(s: Scratch, esVersion: EsVersionNumber, length: number): void {
  const failed =
    esVersion === EsVersion.xchacha20poly1305
      ? s.raw._crypto_box_curve25519xchacha20poly1305_easy_afternm(s.output, s.input, length, 0, s.nonce, s.key)
      : s.raw._crypto_box_easy_afternm(s.output, s.input, length, 0, s.nonce, s.key);
  if (failed !== 0) throw new Error('libsodium: boxing failed');
}

/** Opens the `length`-byte box at `s.input` into `s.output`; false when it does not authenticate. */
function openScratchInput(s: Scratch, esVersion: EsVersionNumber, length: number): boolean {
  const result =
    esVersion === EsVersion.xchacha20poly1305
      ? s.raw._crypto_box_curve25519xchacha20poly1305_open_easy_afternm(s.output, s.input, length, 0, s.nonce, s.key)
      : s.raw._crypto_box_open_easy_afternm(s.output, s.input, length, 0, s.nonce, s.key);
  return result === 0;
}

/** Writes key and nonce into the scratch; the heap is read anew each time (it may have grown). */
function loadKeyAndNonce(s: Scratch, key: Buffer, nonce: Buffer): Uint8Array {
  const heap = s.raw.HEAPU8;
  heap.set(key, s.key);
  heap.set(nonce, s.nonce);
  return heap;
}

function checkKeyAndNonce(key: Buffer, nonce: Buffer): void {
  if (key.length !== 32 || nonce.length !== NONCE_SIZE) throw new RangeError('a box takes a 32-byte key and a 24-byte nonce');
}

/** `tag(16) || ciphertext` of `plaintext` under the shared key and a 24-byte nonce. */
export function seal(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  checkKeyAndNonce(key, nonce);
  if (plaintext.length > SCRATCH_INPUT) return sealByWrappers(esVersion, key, nonce, plaintext);
  const s = boxScratch();
  const heap = loadKeyAndNonce(s, key, nonce);
  heap.set(plaintext, s.input);
  boxScratchInput(s, esVersion, plaintext.length);
  return Buffer.from(s.raw.HEAPU8.subarray(s.output, s.output + plaintext.length + 16));
}

/**
 * Boxes `msg` padded to `paddedLength` (`msg || 0x80 || 0x00…`, as `pad`) and writes the box,
 * `paddedLength + 16` bytes, tag first, into `out` at `outOffset`: no padded copy, no box copy.
 */
export function sealPaddedInto(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, msg: Buffer, paddedLength: number, out: Buffer, outOffset: number): void {
  checkKeyAndNonce(key, nonce);
  if (paddedLength <= msg.length) throw new RangeError(`padded length ${paddedLength} leaves no room for the padding of ${msg.length} bytes`);
  if (paddedLength > SCRATCH_INPUT) {
    sealByWrappers(esVersion, key, nonce, pad(msg, paddedLength)).copy(out, outOffset);
    return;
  }
  const s = boxScratch();
  const heap = loadKeyAndNonce(s, key, nonce);
  heap.set(msg, s.input);
  heap[s.input + msg.length] = 0x80;
  heap.fill(0, s.input + msg.length + 1, s.input + paddedLength);
  boxScratchInput(s, esVersion, paddedLength);
  out.set(s.raw.HEAPU8.subarray(s.output, s.output + paddedLength + 16), outOffset);
}

/** The plaintext of `tag || ciphertext`, or null when it does not authenticate. */
export function open(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, box: Buffer): Buffer | null {
  if (box.length < 16 || nonce.length !== NONCE_SIZE || key.length !== 32) return null;
  if (box.length > SCRATCH_INPUT + 16) return openByWrappers(esVersion, key, nonce, box);
  const s = boxScratch();
  const heap = loadKeyAndNonce(s, key, nonce);
  heap.set(box, s.input);
  if (!openScratchInput(s, esVersion, box.length)) return null;
  return Buffer.from(s.raw.HEAPU8.subarray(s.output, s.output + box.length - 16));
}

/**
 * The message inside `tag || ciphertext` of padded plaintext, or null when it does not
 * authenticate or the padding is not 0x80 then zeros (as `unpad(open(…))`, copying only the
 * message out).
 */
export function openUnpadded(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, box: Buffer): Buffer | null {
  if (box.length < 16 || nonce.length !== NONCE_SIZE || key.length !== 32) return null;
  if (box.length > SCRATCH_INPUT + 16) {
    const plain = openByWrappers(esVersion, key, nonce, box);
    return plain && unpad(plain);
  }
  const s = boxScratch();
  let heap = loadKeyAndNonce(s, key, nonce);
  heap.set(box, s.input);
  if (!openScratchInput(s, esVersion, box.length)) return null;
  // Bounded by the plaintext's length, as in `unpad`. (The heap is read anew after each call.)
  heap = s.raw.HEAPU8;
  let i = s.output + box.length - 16 - 1;
  while (i >= s.output && heap[i] === 0) i--;
  if (i < s.output || heap[i] !== 0x80) return null;
  return Buffer.from(heap.subarray(s.output, i));
}

/** Inputs too large for the scratch: the wrappers allocate what they need. */
function sealByWrappers(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const box =
    esVersion === EsVersion.xchacha20poly1305
      ? sodium().crypto_box_curve25519xchacha20poly1305_easy_afternm(plaintext, nonce, key)
      : sodium().crypto_box_easy_afternm(plaintext, nonce, key);
  return asBuffer(box);
}

function openByWrappers(esVersion: EsVersionNumber, key: Buffer, nonce: Buffer, box: Buffer): Buffer | null {
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
