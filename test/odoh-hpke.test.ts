/**
 * Veil's HPKE (lib/odoh/hpke.ts) against RFC 9180's vectors and against @hpke/core as an oracle:
 * every suite ODoH may name, sealed by one and opened by the other both ways, with equal
 * exported secrets; then keys and messages that must be refused (small-order points, points
 * off the curve, altered ciphertexts).
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Aes128Gcm, Aes256Gcm, CipherSuite, DhkemP256HkdfSha256, DhkemX25519HkdfSha256, HkdfSha256, HkdfSha384, HkdfSha512 } from '@hpke/core';
import { AeadId, HpkeError, HpkeSuite, hmac, hpkePrimitives, KdfId, KemId, newP256Key, p256Key, type RecipientKey } from '../lib/odoh/hpke.js';
import { loadRawCrypto } from '../lib/odoh/raw-crypto.js';

const hex = (text: string): Buffer => Buffer.from(text, 'hex');

describe('HPKE: the primitives', () => {
  // test/odoh-raw-crypto.test.ts runs this file again with VEIL_RAW_CRYPTO=off and looks for this test's name.
  it(`HPKE uses ${hpkePrimitives}'s primitives, as VEIL_RAW_CRYPTO and the build say`, () => {
    assert.equal(hpkePrimitives, process.env.VEIL_RAW_CRYPTO !== 'off' && loadRawCrypto() ? 'openssl' : 'node:crypto');
  });
});

describe('HPKE: RFC 9180 A.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM), base mode', () => {
  const suite = HpkeSuite.of(KemId.x25519, KdfId.sha256, AeadId.aes128gcm)!;
  const recipient = suite.deriveX25519KeyPair(hex('6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037'));
  const ephemeral = suite.deriveX25519KeyPair(hex('7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234'));
  const info = hex('4f6465206f6e2061204772656369616e2055726e');
  const pt = hex('4265617574792069732074727574682c20747275746820626561757479');

  it('derives the published key pairs, encapsulated key, ciphertext and exported secret', () => {
    assert.equal(recipient.publicKey.toString('hex'), '3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d');
    const { enc, context } = suite.setupSender(recipient.publicKey, info, ephemeral);
    assert.equal(enc.toString('hex'), '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431');
    assert.equal(context.seal(Buffer.from('Count-0'), pt).toString('hex'), 'f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a');
    assert.equal(context.export(Buffer.alloc(0), 32).toString('hex'), '3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee');
  });

  it('the recipient opens the published ciphertext', () => {
    const context = suite.setupRecipient(hex('37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431'), recipient, info);
    const ct = hex('f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a');
    assert.deepEqual(context.open(Buffer.from('Count-0'), ct), pt);
    assert.equal(context.export(Buffer.alloc(0), 32).toString('hex'), '3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee');
  });
});

const KEMS = [
  { id: KemId.x25519, name: 'X25519', make: () => new DhkemX25519HkdfSha256() },
  { id: KemId.p256, name: 'P-256', make: () => new DhkemP256HkdfSha256() },
];
const KDFS = [
  { id: KdfId.sha256, name: 'SHA-256', make: () => new HkdfSha256() },
  { id: KdfId.sha384, name: 'SHA-384', make: () => new HkdfSha384() },
  { id: KdfId.sha512, name: 'SHA-512', make: () => new HkdfSha512() },
];
const AEADS = [
  { id: AeadId.aes128gcm, name: 'AES-128-GCM', make: () => new Aes128Gcm() },
  { id: AeadId.aes256gcm, name: 'AES-256-GCM', make: () => new Aes256Gcm() },
];

describe('HPKE: the same bytes as @hpke/core, every suite, both ways', () => {
  for (const kem of KEMS) {
    for (const kdf of KDFS) {
      for (const aead of AEADS) {
        it(`${kem.name}, HKDF-${kdf.name}, ${aead.name}`, async () => {
          const ours = HpkeSuite.of(kem.id, kdf.id, aead.id)!;
          const theirs = new CipherSuite({ kem: kem.make(), kdf: kdf.make(), aead: aead.make() });
          const pair = await theirs.kem.deriveKeyPair(Buffer.alloc(32, kem.id + kdf.id + aead.id));
          const publicKey = Buffer.from(await theirs.kem.serializePublicKey(pair.publicKey));
          const scalar = Buffer.from(await theirs.kem.serializePrivateKey(pair.privateKey));
          const key: RecipientKey = kem.id === KemId.p256 ? p256Key(scalar) : ours.deriveX25519KeyPair(Buffer.alloc(32, kem.id + kdf.id + aead.id));
          assert.deepEqual(key.publicKey, publicKey, 'the same key pair');
          const info = Buffer.from('odoh query');
          for (let i = 0; i < 3; i++) {
            const message = Buffer.from(`message ${i} `.repeat(i * 20 + 1));
            const aad = Buffer.from([i]);
            // Ours seals, theirs opens.
            const sent = ours.setupSender(publicKey, info);
            const sealed = sent.context.seal(aad, message);
            const opener = await theirs.createRecipientContext({ recipientKey: pair.privateKey, enc: sent.enc, info });
            assert.deepEqual(Buffer.from(await opener.open(sealed, aad)), message);
            assert.deepEqual(Buffer.from(await opener.export(Buffer.from('odoh response'), 16)), sent.context.export(Buffer.from('odoh response'), 16));
            // Theirs seals, ours opens (two messages: the sequence number counts).
            const sender = await theirs.createSenderContext({ recipientPublicKey: pair.publicKey, info });
            const first = Buffer.from(await sender.seal(message, aad));
            const second = Buffer.from(await sender.seal(aad, message));
            const context = ours.setupRecipient(Buffer.from(sender.enc), key, info);
            assert.deepEqual(context.open(aad, first), message);
            assert.deepEqual(context.open(message, second), aad);
            assert.deepEqual(context.export(Buffer.alloc(0), 40), Buffer.from(await sender.export(new Uint8Array(0), 40)));
          }
        });
      }
    }
  }
});

describe('HPKE: what must be refused', () => {
  const x25519 = HpkeSuite.of(KemId.x25519, KdfId.sha256, AeadId.aes128gcm)!;
  const p256 = HpkeSuite.of(KemId.p256, KdfId.sha256, AeadId.aes128gcm)!;

  it('an X25519 public key of small order (the DH result is zero, RFC 9180 §7.1.4)', () => {
    // 0 and 1 are points of small order; X25519 with them gives all zeros.
    for (const point of [Buffer.alloc(32), Buffer.concat([Buffer.from([1]), Buffer.alloc(31)])]) {
      assert.throws(() => x25519.setupSender(point, Buffer.alloc(0)), HpkeError);
      assert.throws(() => x25519.setupRecipient(point, x25519.deriveX25519KeyPair(Buffer.alloc(32, 1)), Buffer.alloc(0)), HpkeError);
    }
  });

  it('a P-256 point that is not on the curve, compressed, or of the wrong length', () => {
    const key = newP256Key();
    const offCurve = Buffer.from(key.publicKey);
    offCurve[64] ^= 1;
    for (const bad of [offCurve, Buffer.concat([Buffer.from([2]), key.publicKey.subarray(1, 33)]), key.publicKey.subarray(0, 64)]) {
      assert.throws(() => p256.setupSender(bad, Buffer.alloc(0)), HpkeError);
      assert.throws(() => p256.setupRecipient(bad, key, Buffer.alloc(0)), HpkeError);
    }
  });

  it('a ciphertext altered anywhere, cut, or read with other associated data; a key of the other KEM', () => {
    const key = x25519.deriveX25519KeyPair(Buffer.alloc(32, 9));
    const { enc, context } = x25519.setupSender(key.publicKey, Buffer.from('i'));
    const sealed = context.seal(Buffer.from('aad'), Buffer.from('a secret query'));
    for (let at = 0; at < sealed.length; at++) {
      const altered = Buffer.from(sealed);
      altered[at] ^= 0x40;
      assert.throws(() => x25519.setupRecipient(enc, key, Buffer.from('i')).open(Buffer.from('aad'), altered), HpkeError, `byte ${at}`);
    }
    assert.throws(() => x25519.setupRecipient(enc, key, Buffer.from('i')).open(Buffer.from('aad'), sealed.subarray(0, 15)), HpkeError);
    assert.throws(() => x25519.setupRecipient(enc, key, Buffer.from('i')).open(Buffer.from('other'), sealed), HpkeError);
    assert.throws(() => x25519.setupRecipient(enc, key, Buffer.from('other info')).open(Buffer.from('aad'), sealed), HpkeError);
    assert.throws(() => p256.setupRecipient(enc, key, Buffer.from('i')), HpkeError);
  });
});

describe('HPKE: HMAC from two hashes', () => {
  it('equals node:crypto createHmac for keys shorter than, equal to and longer than a block, every hash', () => {
    for (const hash of ['sha256', 'sha384', 'sha512'] as const) {
      for (const keyLength of [0, 1, 32, 63, 64, 65, 127, 128, 129, 300]) {
        for (const dataLength of [0, 1, 55, 64, 200]) {
          const key = randomBytes(keyLength);
          const data = randomBytes(dataLength);
          assert.deepEqual(hmac(hash, key, data), createHmac(hash, key).update(data).digest(), `${hash} key ${keyLength} data ${dataLength}`);
        }
      }
    }
  });
});
