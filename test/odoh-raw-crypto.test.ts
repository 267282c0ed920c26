/**
 * native/raw-crypto.c (lib/odoh/raw-crypto.ts): OpenSSL's HMAC, AES-GCM and X25519 on raw bytes,
 * checked against node:crypto on random inputs, every length from empty up; what must not open
 * or must be refused (altered and cut messages, small-order points, keys and nonces of the wrong
 * length, arguments of the wrong type) without a crash; OpenSSL's error queue left empty after
 * a failure (node:crypto would report a stale error as its own); and the node:crypto path that
 * serves without the addon, through the HPKE and ODoH tests run again with VEIL_RAW_CRYPTO=off.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHmac, createPrivateKey, diffieHellman, generateKeyPairSync, randomBytes, randomInt, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hpkePrimitives } from '../lib/odoh/hpke.js';
import { loadRawCrypto } from '../lib/odoh/raw-crypto.js';
import { hasCompiler } from './helpers/peers.js';
import { X25519_SMALL_ORDER } from './helpers/x25519.js';

const dist = join(fileURLToPath(import.meta.url), '..', '..');
const raw = loadRawCrypto();
const notBuilt = raw ? false : 'skipped: native/raw-crypto.c not built here (no C compiler or OpenSSL headers, or VEIL_RAW_CRYPTO=off)';

const HASHES = ['sha256', 'sha384', 'sha512'] as const;
/** The DER prefix that makes 32 raw bytes an X25519 private key (RFC 8410). */
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

function nodeSeal(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const gcm = createCipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, nonce, { authTagLength: 16 });
  gcm.setAAD(aad);
  return Buffer.concat([gcm.update(plaintext), gcm.final(), gcm.getAuthTag()]);
}

function rawPublic(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

function rawPrivate(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
}

describe('native/raw-crypto.c', () => {
  it('is built on Linux where a C compiler and Node\'s OpenSSL headers are, and HPKE uses it', {
    skip: process.platform !== 'linux' || !hasCompiler() || process.env.VEIL_RAW_CRYPTO === 'off' ? 'skipped: not Linux, no C compiler, or VEIL_RAW_CRYPTO=off' : false,
  }, () => {
    const headers = join(dist, '..', 'node_modules', 'node', 'node_modules', `node-${process.platform}-${process.arch}`, 'include', 'node', 'openssl', 'evp.h');
    if (!existsSync(headers)) return; // a Node without its OpenSSL headers: built nowhere
    assert.ok(raw, 'dist/native/raw-crypto.node did not load');
    assert.equal(hpkePrimitives, 'openssl');
  });

  it('HMAC equals node:crypto\'s for every hash, keys from empty to past a block, data from empty up', { skip: notBuilt }, () => {
    for (let i = 0; i < 300; i++) {
      const hash = i % 3;
      const key = randomBytes(i < 3 ? 0 : randomInt(0, 200));
      const data = randomBytes(randomInt(0, 600));
      const expected = createHmac(HASHES[hash]!, key).update(data).digest();
      assert.deepEqual(raw!.hmac(hash, key, data), expected, `case ${i}`);
      // Into a Buffer of the caller's (a slice of Node's pool, at an offset in it): the same MAC,
      // and the neighbours of the slice untouched.
      const pool = Buffer.alloc(expected.length + 16, 0xa5);
      const out = pool.subarray(8, 8 + expected.length);
      assert.equal(raw!.hmac(hash, key, data, out), out, `the given Buffer back, case ${i}`);
      assert.deepEqual(out, expected, `into a given Buffer, case ${i}`);
      assert.deepEqual([...pool.subarray(0, 8), ...pool.subarray(8 + expected.length)], new Array(16).fill(0xa5), `nothing written around it, case ${i}`);
    }
  });

  it('AES-128-GCM and AES-256-GCM seal as node:crypto does, open what they sealed, and nothing altered or cut', { skip: notBuilt }, () => {
    for (let i = 0; i < 200; i++) {
      const key = randomBytes(i % 2 ? 32 : 16);
      const nonce = randomBytes(12);
      const aad = randomBytes(randomInt(0, 40));
      const plaintext = randomBytes(i < 2 ? 0 : randomInt(0, 700));
      const sealed = raw!.aeadSeal(key, nonce, aad, plaintext);
      assert.deepEqual(sealed, nodeSeal(key, nonce, aad, plaintext), `case ${i}`);
      assert.deepEqual(raw!.aeadOpen(key, nonce, aad, sealed), plaintext);
      const altered = Buffer.from(sealed);
      altered[randomInt(0, altered.length)]! ^= 1 << randomInt(0, 8);
      assert.equal(raw!.aeadOpen(key, nonce, aad, altered), null, `altered, case ${i}`);
      assert.equal(raw!.aeadOpen(key, nonce, Buffer.concat([aad, Buffer.from([0])]), sealed), null, 'other associated data');
      const otherNonce = Buffer.from(nonce);
      otherNonce[0]! ^= 1;
      assert.equal(raw!.aeadOpen(key, otherNonce, aad, sealed), null, 'another nonce');
      assert.equal(raw!.aeadOpen(key, nonce, aad, sealed.subarray(0, randomInt(0, 16))), null, 'shorter than its tag');
      if (plaintext.length > 0) assert.equal(raw!.aeadOpen(key, nonce, aad, sealed.subarray(1)), null, 'cut at the front');
    }
  });

  it('X25519: the public key and the Diffie-Hellman of node:crypto; an ephemeral pair that the other side derives too', { skip: notBuilt }, () => {
    for (let i = 0; i < 20; i++) {
      const mine = generateKeyPairSync('x25519');
      const theirs = generateKeyPairSync('x25519');
      const key = raw!.x25519Key(rawPrivate(mine.privateKey));
      assert.deepEqual(raw!.x25519Public(key), rawPublic(mine.publicKey));
      assert.deepEqual(raw!.x25519Derive(key, rawPublic(theirs.publicKey)), diffieHellman({ privateKey: mine.privateKey, publicKey: theirs.publicKey }));
      const both = raw!.x25519Ephemeral(rawPublic(mine.publicKey))!;
      assert.equal(both.length, 64);
      assert.deepEqual(raw!.x25519Derive(key, both.subarray(32)), both.subarray(0, 32));
      assert.notDeepEqual(raw!.x25519Ephemeral(rawPublic(mine.publicKey))!.subarray(32), both.subarray(32), 'a fresh key each time');
    }
  });

  it('X25519 with a point of small order gives null (RFC 9180 §7.1.4), and leaves node:crypto working', { skip: notBuilt }, () => {
    const key = raw!.x25519Key(randomBytes(32));
    // A stale OpenSSL error would make node:crypto's key decoder throw "failed during derivation".
    const decodes = () => assert.ok(createPrivateKey({ key: Buffer.concat([X25519_PKCS8, Buffer.alloc(32, 1)]), format: 'der', type: 'pkcs8' }));
    for (const point of X25519_SMALL_ORDER) {
      assert.equal(raw!.x25519Derive(key, point), null, point.toString('hex'));
      decodes();
      assert.equal(raw!.x25519Ephemeral(point), null, point.toString('hex'));
      decodes();
    }
  });

  it('arguments of the wrong length or type throw an error, never crash', { skip: notBuilt }, () => {
    const key16 = randomBytes(16);
    const nonce = randomBytes(12);
    const empty = Buffer.alloc(0);
    const call = (fn: () => unknown) => assert.throws(fn, Error);
    for (const length of [0, 15, 17, 24, 31, 33]) {
      call(() => raw!.aeadSeal(randomBytes(length), nonce, empty, empty));
      call(() => raw!.aeadOpen(randomBytes(length), nonce, empty, randomBytes(32)));
      call(() => raw!.x25519Key(randomBytes(length)));
      call(() => raw!.x25519Ephemeral(randomBytes(length)));
      call(() => raw!.x25519Derive(raw!.x25519Key(randomBytes(32)), randomBytes(length)));
    }
    for (const length of [0, 8, 11, 13, 16]) call(() => raw!.aeadSeal(key16, randomBytes(length), empty, empty));
    const untyped = raw as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const bad of [undefined, null, 'text', 32, {}, [1, 2]]) {
      call(() => untyped.hmac!(0, bad, empty));
      call(() => untyped.aeadSeal!(key16, nonce, bad, empty));
      call(() => untyped.x25519Ephemeral!(bad));
      call(() => untyped.x25519Derive!(bad, randomBytes(32)));
      call(() => untyped.x25519Public!(bad));
    }
    // An output of any length but the hash's, or not a Buffer, is refused before anything is written.
    for (const [hash, length] of [[0, 31], [0, 33], [0, 48], [1, 32], [2, 0]] as const) call(() => raw!.hmac(hash, key16, empty, Buffer.alloc(length)));
    for (const bad of [null, 'text', 32, {}, new Array(32).fill(0)]) call(() => untyped.hmac!(0, key16, empty, bad));
    call(() => untyped.hmac!(0, key16, empty, Buffer.alloc(32), Buffer.alloc(32)));
    call(() => untyped.hmac!(3, empty, empty));
    call(() => untyped.hmac!(-1, empty, empty));
    call(() => untyped.aeadSeal!(key16, nonce, empty));
  });
});

describe('without the addon (VEIL_RAW_CRYPTO=off)', () => {
  it('the HPKE and ODoH tests pass on node:crypto', () => {
    const files = ['odoh-hpke.test.js', 'odoh-crypto.test.js'].map((file) => join(dist, 'test', file));
    // NODE_TEST_CONTEXT would make the inner runner report to this one's, not in TAP.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...files], { env: { ...env, VEIL_RAW_CRYPTO: 'off' }, encoding: 'utf8', timeout: 120_000 });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^# pass [1-9]\d*$/m);
    assert.match(run.stdout, /^# fail 0$/m);
    assert.match(run.stdout, /HPKE uses node:crypto's primitives/, 'the run checked which primitives it used');
  });
});
