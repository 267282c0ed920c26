/**
 * ODoH's formats and crypto (lib/odoh) against the published vectors: RFC 9230 Appendix A
 * (configs, key id, queries opened, answers sealed byte for byte and opened as the client does)
 * and RFC 9180 A.1 for the HPKE suite under them; then hostile bytes, each refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, Aes128Gcm } from '@hpke/core';
import { encodeConfigs, parseConfigs } from '../lib/odoh/configs.js';
import { openQuery, OdohCryptoError, PendingQuery, sealQuery, sealResponse, sealResponsePlaintext } from '../lib/odoh/crypto.js';
import { deriveTargetKey, formatKeyFile, parseKeyFile } from '../lib/odoh/keys.js';
import { encodeMessage, MessageType, OdohFormatError, parseMessage, parsePlaintext, plaintextWithPadding } from '../lib/odoh/message.js';

const hex = (text: string): Buffer => Buffer.from(text, 'hex');

/** RFC 9230 Appendix A: kem 0x0020, kdf 0x0001, aead 0x0001; transactions 0, 5 and 15. */
const RFC9230 = {
  publicKeySeed: 'c9d84d04e6369fccb8a4d5a264001491221f1b97d9b80dd32c35834bb4462383',
  keyId: '9265d14d640ff991b31892f36326ab601ea84d61964fc7a9c7f981a5313e58b9',
  odohConfigs: '002c000100280020000100010020c6a793bedbd601c25970b1cc46bea80fdb1a8ec51540d79e4f9f17b8baa9da33',
  transactions: [
    {
      query: '9db1072b0ab473d1e4b74b09637d5f8f253ad4047426ab4dfcc58350bb67b60c',
      queryPadding: 0,
      response: '9db1072b0ab473d1e4b74b09637d5f8f253ad4047426ab4dfcc58350bb67b60c9db1072b0ab473d1e4b74b09637d5f8f253ad4047426ab4dfcc58350bb67b60c',
      responsePadding: 0,
      obliviousQuery:
        '0100209265d14d640ff991b31892f36326ab601ea84d61964fc7a9c7f981a5313e58b90054655d2fa2b2271e40b5a78745e41e6d6c5c181fd1fcffcc30fc451d5ec7fdcc5a6ae0da1cba2bd379da93d02d0e42a3849ec6ba53a54c7c8216f0d3cc2cef30ac54f824f5d8b57657d8c7b95e2c0276580b3851d9',
      obliviousResponse:
        '0200100f474d14998a841b15f84388a8af1881005413556bcd8d86194fb47a51982b715b7f253f4f3ea14d89a5dd9d2b67e6c13b0b7eb7ae740c09d915ef77461956ba8acac5c5f1d8965ca0888b1c0aa2a0084b4c2c375b74e1c3d4e51ad3fe8080b7941fd5719df5',
    },
    {
      query: '6537c42600c6a3c6db735f8fb9e8e3618acf7508bb315a8862360c4b18dc83b8',
      queryPadding: 32,
      response: '6537c42600c6a3c6db735f8fb9e8e3618acf7508bb315a8862360c4b18dc83b86537c42600c6a3c6db735f8fb9e8e3618acf7508bb315a8862360c4b18dc83b8',
      responsePadding: 64,
      obliviousQuery:
        '0100209265d14d640ff991b31892f36326ab601ea84d61964fc7a9c7f981a5313e58b90074e743c3dcfadd8b146103a69f59544d25eeb7de64772910b4413c94c5716ae94743655e725a6d5e00e29e05fa812108b03d9913450b08b0ab04a7eeec65e13ab52adcfac71b1ea280cbfd9c5865022835addc74f6f71d5c28358b121fae3150470324d4f4ecd0e49b729b74e525bed627e2668aa0',
      obliviousResponse:
        '0200104463598990890a8bf9051685d6694597009499a1d75c78516db57ef3ffcfddc137ac801acf4a8632a1238ca4b21facded26bc60fe132a1d44725f42fff07b11a10d00760592200c8aebd441a16b4902506c529a11e40af23634645e9d1be643274a5ab65cf4fff9346f9a47cc752b885d242b65ebf62b6ace2ae6d8544cbe64310fcfdb85ad0272b142d6a39de262577bdd6c7b573ccb6e9f194c91e1034b40b57e10700a130',
    },
    {
      query: '2486d426a22fd2d56fa027ea800e676cf15698792e878c8366aa35211f9faceb',
      queryPadding: 96,
      response: '2486d426a22fd2d56fa027ea800e676cf15698792e878c8366aa35211f9faceb2486d426a22fd2d56fa027ea800e676cf15698792e878c8366aa35211f9faceb',
      responsePadding: 404,
      obliviousQuery:
        '0100209265d14d640ff991b31892f36326ab601ea84d61964fc7a9c7f981a5313e58b900b49f8ab654e033fcf4b421441f67c0a792690ef3fcafb26e8684c8bd335dc6d561d9355baf8b1365da53b4d39617e51ee7814831b02841b1c618dd93de6205f90adf312079a9b93ac57eaec5ffdd53c2354992f0f3231307e009380f171f2228c639bf4c1af262c0e41552d44f9a5a08cebc13df248cfddea8e77e6ac43cf99bdc18c46fff587141c57dd66b3723df4cfa03501693751ff19ee82aad5bcb3760080d871a83e3690a7a724f49816d2bcc6861a331b9',
      obliviousResponse:
        '020010a1a577d296df4c780daecb27de39babc01e858e92949d238e774070c07fe36b9c479176ae8511ee6e5cccd0d653a5c5400bb8411488914db3c40cd808c746c1cf5cc0fde2f4eb966b02c823ec0282c30c9dcd5fc619505d163454f45a189db3c1e7fda97dc55608c2adca39402f643f00f19a29aaa4975f8249f0804cb61231142c4ef93b6a06663db8bd55423f7c29c5a49fe7d510b9c1e2f5c81485c4bc4dd97b17983d45615b16c2f38719b8859a34d553d4e9e989b3dfbd063c89de6139efdf6ceed9a5ed364237a283e6932420700d11da4cac143c49e5095b3772993f915d32c3db880040964b1fc0c4a69e14d40d3d8ee9c2f68dc1d836aae2b02b0cf3bcdd6896890d34c71291cc0e1cb44e60ab03e92713035a84da93d34270077ecc3a735690f94a0ae698663ed53b713ba48c12d3167a46898b70ebfb1e604454d0a77c7ae75cfe7dc7ca7b1ceca00df3ed35b43d75975d8ebc79a8d31bee409101bd3100ff55cfa9eb3e5aee46b39fda19666d2587bd755c69e90beb93effb8214fe34f9551d67b083efdd9e4032fe0b8ba1549e07ea215611fd7a0bdb87393cf28f5175a6e46a6ca65184ad161c79eba089522b5d60e510b85c60b130d9dd6359f0fe984cebf2b8943c1b5b6c96f0c9e8338c7d9d12b9986d2fa40b2d0866521c28bf43c5940d2a91d3da5630a5493ce574121ec504e3eb68d9f',
    },
  ],
};

describe('RFC 9230 Appendix A', () => {
  it('derives the configs and key id from the seed', async () => {
    const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
    assert.equal(encodeConfigs([key.config.contents]).toString('hex'), RFC9230.odohConfigs);
    assert.equal(key.config.keyId.toString('hex'), RFC9230.keyId);
    const parsed = parseConfigs(hex(RFC9230.odohConfigs));
    assert.equal(parsed.usable.length, 1);
    assert.equal(parsed.usable[0]!.keyId.toString('hex'), RFC9230.keyId);
  });

  for (const [i, t] of RFC9230.transactions.entries()) {
    it(`transaction ${i}: the target opens the query and seals the answer byte for byte; the client opens it`, async () => {
      const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
      const message = parseMessage(hex(t.obliviousQuery));
      assert.equal(message.keyId.toString('hex'), RFC9230.keyId);
      const opened = await openQuery(key, message);
      assert.equal(opened.dns.toString('hex'), t.query);
      assert.equal(parsePlaintext(opened.plaintext).padding, t.queryPadding);

      const expected = hex(t.obliviousResponse);
      const nonce = parseMessage(expected).keyId;
      const sealed = sealResponsePlaintext(opened, plaintextWithPadding(hex(t.response), t.responsePadding), nonce);
      assert.equal(sealed.toString('hex'), t.obliviousResponse);

      // The client's side: the same export secret and query plaintext open the vector's answer.
      const pending = new PendingQuery(opened.suite, opened.secret, opened.plaintext);
      assert.equal(pending.openResponse(expected).toString('hex'), t.response);
    });
  }

  it('a query the client seals opens at the target, and the answer opens at the client', async () => {
    const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
    const dns = hex(RFC9230.transactions[0]!.query);
    const { message, pending } = await sealQuery(key.config, dns);
    const opened = await openQuery(key, parseMessage(message));
    assert.deepEqual(opened.dns, dns);
    assert.equal(opened.plaintext.length % 128, 0, 'queries are padded to 128 bytes');
    const answer = Buffer.from('an answer of some sort');
    const sealed = sealResponse(opened, answer, 468);
    assert.equal(parseMessage(sealed).encrypted.length, 468 + 16, 'answers are padded to 468 bytes');
    assert.deepEqual(pending.openResponse(sealed), answer);
  });
});

describe('RFC 9180 A.1 (DHKEM X25519, HKDF-SHA256, AES-128-GCM) through @hpke/core', () => {
  it('gives the published encapsulated key, ciphertext and exported secret', async () => {
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
    const recipient = await suite.kem.deriveKeyPair(hex('6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037'));
    assert.equal(Buffer.from(await suite.kem.serializePublicKey(recipient.publicKey)).toString('hex'), '3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d');
    const sender = await suite.createSenderContext({
      recipientPublicKey: recipient.publicKey,
      info: hex('4f6465206f6e2061204772656369616e2055726e'),
      ekm: hex('7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234'),
    });
    assert.equal(Buffer.from(sender.enc).toString('hex'), '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431');
    const ct = Buffer.from(await sender.seal(hex('4265617574792069732074727574682c20747275746820626561757479'), hex('436f756e742d30')));
    assert.equal(ct.toString('hex'), 'f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a');
    assert.equal(Buffer.from(await sender.export(new Uint8Array(0), 32)).toString('hex'), '3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee');
  });
});

describe('hostile bytes', () => {
  it('messages that are cut, padded out or of an unknown type are refused', () => {
    const good = hex(RFC9230.transactions[0]!.obliviousQuery);
    for (let cut = 0; cut < good.length; cut += 7) assert.throws(() => parseMessage(good.subarray(0, cut)), OdohFormatError, `cut at ${cut}`);
    assert.throws(() => parseMessage(Buffer.concat([good, Buffer.from([0])])), /after the end/);
    assert.throws(() => parseMessage(Buffer.concat([Buffer.from([3]), good.subarray(1)])), /unknown message type/);
    assert.throws(() => parseMessage(Buffer.from([1, 0, 0, 0, 0])), /empty/);
    assert.throws(() => parseMessage(Buffer.from([1, 0xff, 0xff, 0, 1, 0])), /inside its key id/);
  });

  it('plaintexts whose lengths do not add up, or whose padding is not zeros, are refused', () => {
    const plain = plaintextWithPadding(Buffer.from('abc'), 4);
    assert.deepEqual(parsePlaintext(plain).dns, Buffer.from('abc'));
    const dirty = Buffer.from(plain);
    dirty[dirty.length - 1] = 1;
    assert.throws(() => parsePlaintext(dirty), /not zeros/);
    assert.throws(() => parsePlaintext(plain.subarray(0, plain.length - 1)), /padding length/);
    assert.throws(() => parsePlaintext(Buffer.from([0, 0, 0, 0])), /empty DNS message/);
    assert.throws(() => parsePlaintext(Buffer.from([0, 9, 1])), OdohFormatError);
  });

  it('an altered query, or one sealed to another key, does not open', async () => {
    const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
    const good = hex(RFC9230.transactions[0]!.obliviousQuery);
    const altered = Buffer.from(good);
    altered[altered.length - 1]! ^= 1;
    assert.throws(() => openQuery(key, parseMessage(altered)), OdohCryptoError);
    const other = await deriveTargetKey(Buffer.alloc(32, 7));
    assert.throws(() => openQuery(other, parseMessage(good)), OdohCryptoError);
    // The key id is bound in: the same ciphertext under another key id does not open.
    const message = parseMessage(good);
    const renamed = parseMessage(encodeMessage({ ...message, keyId: Buffer.alloc(32, 1) }));
    assert.throws(() => openQuery(key, renamed), OdohCryptoError);
  });

  it('an answer that is altered, replayed from another query or of the wrong type does not open at the client', async () => {
    const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
    const first = await sealQuery(key.config, Buffer.from('first query'));
    const second = await sealQuery(key.config, Buffer.from('second query'));
    const openedFirst = await openQuery(key, parseMessage(first.message));
    const answerToFirst = sealResponse(openedFirst, Buffer.from('answer one'), 468);
    assert.throws(() => second.pending.openResponse(answerToFirst), OdohCryptoError, 'a replayed answer');
    const altered = Buffer.from(answerToFirst);
    altered[40]! ^= 0x80;
    assert.throws(() => first.pending.openResponse(altered), OdohCryptoError);
    assert.throws(() => first.pending.openResponse(first.message), /a query where an answer was expected/);
    assert.throws(() => first.pending.openResponse(answerToFirst.subarray(0, 30)), OdohFormatError);
  });

  it('configs: other versions and suites are skipped, broken lists refused', () => {
    const configs = hex(RFC9230.odohConfigs);
    const other = Buffer.from([0xff, 0x01, 0, 3, 1, 2, 3]);
    const body = Buffer.concat([other, configs.subarray(2)]);
    const two = Buffer.concat([Buffer.from([body.length >> 8, body.length & 0xff]), body]);
    const parsed = parseConfigs(two);
    assert.equal(parsed.usable.length, 1);
    assert.deepEqual(parsed.skipped, ['version 0xff01']);
    const p256 = Buffer.from(configs);
    p256[7] = 0x99; // an unknown KEM
    assert.equal(parseConfigs(p256).usable.length, 0);
    for (const bad of [configs.subarray(0, configs.length - 1), Buffer.from([0, 0]), Buffer.alloc(0), Buffer.concat([configs, Buffer.from([0])])]) {
      assert.throws(() => parseConfigs(bad), OdohFormatError);
    }
    const wrongKeyLength = Buffer.from(configs);
    wrongKeyLength[13] = 31;
    assert.throws(() => parseConfigs(wrongKeyLength), OdohFormatError);
  });

  it('key files: the seed round-trips, anything else is refused', () => {
    const seed = hex(RFC9230.publicKeySeed);
    assert.deepEqual(parseKeyFile(formatKeyFile(seed)), seed);
    assert.throws(() => parseKeyFile(''), /no "seed HEX"/);
    assert.throws(() => parseKeyFile('seed abcd\n'), /2 bytes, not 32/);
    assert.throws(() => parseKeyFile(`seed ${RFC9230.publicKeySeed}\nseed ${RFC9230.publicKeySeed}\n`), /second seed/);
    assert.throws(() => parseKeyFile('key 00\n'), /line 1/);
  });

  it('the message type is bound in: a query relabelled as an answer does not open', async () => {
    const key = await deriveTargetKey(hex(RFC9230.publicKeySeed));
    const message = parseMessage(hex(RFC9230.transactions[0]!.obliviousQuery));
    assert.throws(() => openQuery(key, { ...message, type: MessageType.response }), OdohFormatError);
  });
});
