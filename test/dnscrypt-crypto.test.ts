/**
 * DNSCrypt's bytes against the reference vectors (test/fixtures/dnscrypt-vectors.json, made with
 * libsodium and checked with an independent implementation), and the bad input every decoder
 * must refuse.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { buildCertAnswer, buildCertQuery, certificatesFromAnswer, certQuestion } from '../lib/dnscrypt/cert-query.js';
import { parseCertificate, selectCertificate, signCertificate, verifyCertificate } from '../lib/dnscrypt/certificate.js';
import { EsVersion } from '../lib/dnscrypt/constants.js';
import { open, pad, responseLength, seal, sharedKey, tcpQueryLength, udpQueryLength, unpad, x25519KeyPair, x25519PublicKey } from '../lib/dnscrypt/crypto.js';
import { decryptQuery, decryptResponse, encryptQuery, encryptResponse, readQueryEnvelope } from '../lib/dnscrypt/packet.js';
import { parseProviderKey, providerKeyPair } from '../lib/dnscrypt/provider-key.js';
import { bytesToIp, ipToBytes, readRelayHeader, relayHeader } from '../lib/dnscrypt/relay-header.js';
import { loadSodium, sodium } from '../lib/dnscrypt/sodium.js';
import { ManualClock } from '../core/clock.js';
import { SharedKeyCache, CERT_LIFETIME_S, ResolverCertificates, ROTATE_EVERY_S } from '../plugins/dnscrypt/resolver-certs.js';
import { ROOT } from './helpers/veil-process.js';
import { X25519_SMALL_ORDER } from './helpers/x25519.js';

// DNSCrypt keys and boxes need libsodium, which Veil loads only when a configuration uses it.
await loadSodium();

const V = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/dnscrypt-vectors.json'), 'utf8')) as Record<string, string>;
const hex = (name: string): Buffer => Buffer.from(V[name]!, 'hex');

const NOW = 1_700_000_100;
const provider = providerKeyPair(hex('provider_seed'));

describe('DNSCrypt vectors', () => {
  it('HChaCha20 from the draft appendix', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const input = Buffer.from(Array.from({ length: 16 }, (_, i) => i));
    assert.equal(Buffer.from(sodium().crypto_core_hchacha20(input, key, null as never)).toString('hex'), V.hchacha20_draft);
  });

  it('the provider key from its seed', () => {
    assert.equal(provider.publicKey.toString('hex'), V.provider_pk);
  });

  it('the certificate: fields, signature, and signing it again gives the same bytes', () => {
    const cert = parseCertificate(hex('cert'));
    assert.equal(cert.bytes.length, Number(V.cert_len));
    assert.equal(cert.esVersion, EsVersion.xchacha20poly1305);
    assert.equal(cert.resolverPublicKey.toString('hex'), V.resolver_pk);
    assert.equal(cert.clientMagic.toString('hex'), V.resolver_pk!.slice(0, 16));
    assert.deepEqual([cert.serial, cert.tsStart, cert.tsEnd], [1, 1_700_000_000, 1_700_086_400]);
    assert.equal(verifyCertificate(cert, provider.publicKey), true);
    const again = signCertificate({ esVersion: 2, resolverPublicKey: cert.resolverPublicKey, clientMagic: cert.clientMagic, serial: 1, tsStart: 1_700_000_000, tsEnd: 1_700_086_400 }, provider.secretKey);
    assert.equal(again.toString('hex'), V.cert);
  });

  it('shared keys for both es-versions, the same from either side', () => {
    assert.equal(x25519PublicKey(hex('client_sk')).toString('hex'), V.client_pk);
    assert.equal(x25519PublicKey(hex('resolver_sk')).toString('hex'), V.resolver_pk);
    assert.equal(Buffer.from(sodium().crypto_scalarmult(hex('client_sk'), hex('resolver_pk'))).toString('hex'), V.x25519_raw);
    assert.equal(sharedKey(2, hex('client_sk'), hex('resolver_pk'))!.toString('hex'), V.shared_xchacha);
    assert.equal(sharedKey(2, hex('resolver_sk'), hex('client_pk'))!.toString('hex'), V.shared_xchacha);
    assert.equal(sharedKey(1, hex('client_sk'), hex('resolver_pk'))!.toString('hex'), V.shared_xsalsa);
    assert.equal(sharedKey(1, hex('resolver_sk'), hex('client_pk'))!.toString('hex'), V.shared_xsalsa);
  });

  const clientKeys = (es: 1 | 2) => ({
    esVersion: es,
    clientMagic: hex('resolver_pk').subarray(0, 8),
    clientPublicKey: hex('client_pk'),
    sharedKey: sharedKey(es, hex('client_sk'), hex('resolver_pk'))!,
  });

  it('the query packet (es-version 2), padded to 256 bytes', () => {
    const packet = encryptQuery(clientKeys(2), hex('client_nonce'), hex('query'), 256);
    assert.equal(packet.length, Number(V.query_packet_len));
    assert.equal(packet.toString('hex'), V.query_packet);
  });

  it('the query packet (es-version 1)', () => {
    assert.equal(encryptQuery(clientKeys(1), hex('client_nonce'), hex('query'), 256).toString('hex'), V.query_packet_xsalsa);
  });

  it('the server decrypts the query packet of either es-version', () => {
    const packet = hex('query_packet');
    const envelope = readQueryEnvelope(packet)!;
    assert.equal(envelope.clientPublicKey.toString('hex'), V.client_pk);
    assert.equal(envelope.clientNonce.toString('hex'), V.client_nonce);
    assert.equal(decryptQuery(2, sharedKey(2, hex('resolver_sk'), envelope.clientPublicKey)!, packet)!.toString('hex'), V.query);
    assert.equal(decryptQuery(1, sharedKey(1, hex('resolver_sk'), hex('client_pk'))!, hex('query_packet_xsalsa'))!.toString('hex'), V.query);
  });

  it('the response packet: made by the server, opened by the client', () => {
    const shared = sharedKey(2, hex('resolver_sk'), hex('client_pk'))!;
    const packet = encryptResponse(2, shared, hex('client_nonce'), hex('resolver_nonce'), hex('response'), 64);
    assert.equal(packet.length, Number(V.response_packet_len));
    assert.equal(packet.toString('hex'), V.response_packet);
    assert.equal(decryptResponse(2, clientKeys(2).sharedKey, hex('client_nonce'), packet)!.toString('hex'), V.response);
  });

  it('relay headers for IPv4 and IPv6, and back', () => {
    assert.equal(relayHeader('192.0.2.1', 443).toString('hex'), V.anon_hdr_192_0_2_1_443);
    assert.equal(relayHeader('2001:db8::1', 8443).toString('hex'), V.anon_hdr_2001db8_1_8443);
    const relayed = readRelayHeader(Buffer.concat([hex('anon_hdr_192_0_2_1_443'), hex('query_packet')]))!;
    assert.deepEqual([relayed.host, relayed.port, relayed.inner.toString('hex')], ['192.0.2.1', 443, V.query_packet]);
    const v6 = readRelayHeader(hex('anon_hdr_2001db8_1_8443'))!;
    assert.deepEqual([v6.host, v6.port, v6.inner.length], ['2001:db8:0:0:0:0:0:1', 8443, 0]);
    assert.equal(ipToBytes('::ffff:10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
    assert.equal(bytesToIp(ipToBytes('fe80::1:2')), 'fe80:0:0:0:0:0:1:2');
  });

  it('the certificate answer: certificates read back from the reference layout (compressed)', () => {
    const query = hex('cert_query');
    const answer = Buffer.from(
      'abcd8180000100010000000001320d646e7363727970742d63657274076578616d706c6503636f6d0000100001c00c0010000100007080007d7c' + V.cert,
      'hex',
    );
    assert.deepEqual(certificatesFromAnswer(query, answer).map((c) => c.toString('hex')), [V.cert]);
    // and the uncompressed form dns-packet writes
    assert.deepEqual(certificatesFromAnswer(query, hex('cert_response')).map((c) => c.toString('hex')), [V.cert]);
  });

  it('a certificate answer Veil builds is the reference layout', () => {
    const query = hex('cert_query');
    const built = buildCertAnswer(query, certQuestion(query)!, [hex('cert')], 28800);
    assert.equal(
      built.toString('hex'),
      'abcd8180000100010000000001320d646e7363727970742d63657274076578616d706c6503636f6d0000100001c00c0010000100007080007d7c' + V.cert,
    );
  });
});

describe('padding', () => {
  it('pads with 0x80 then zeros and unpads', () => {
    const padded = pad(Buffer.from('abc'), 64);
    assert.equal(padded.length, 64);
    assert.equal(padded[3], 0x80);
    assert.deepEqual(unpad(padded), Buffer.from('abc'));
  });

  it('refuses padding without 0x80, with another byte, or all zeros', () => {
    assert.equal(unpad(Buffer.from([1, 2, 3, 0, 0])), null);
    assert.equal(unpad(Buffer.from([1, 2, 0x81, 0])), null);
    assert.equal(unpad(Buffer.alloc(64)), null);
    assert.equal(unpad(Buffer.alloc(0)), null);
  });

  it('UDP queries: multiples of 64, at least the minimum', () => {
    assert.equal(udpQueryLength(29, 256), 256);
    assert.equal(udpQueryLength(300, 256), 320);
    assert.equal(udpQueryLength(319, 256), 320);
    assert.equal(udpQueryLength(320, 256), 384);
  });

  it('TCP queries and responses: multiples of 64 with 1 to 256 bytes of padding', () => {
    for (const length of [12, 29, 63, 64, 100, 500, 1000]) {
      for (let random = 0; random < 256; random += 17) {
        const padded = tcpQueryLength(length, random);
        assert.equal(padded % 64, 0);
        assert.ok(padded - length >= 1 && padded - length <= 256, `${length} → ${padded}`);
        const response = responseLength(length, random, 65535);
        assert.ok(response % 64 === 0 && response - length >= 1 && response - length <= 256);
      }
    }
  });

  it('a response never outgrows its limit, and still has room for 0x80', () => {
    assert.equal(responseLength(100, 255, 150), 128);
    assert.equal(responseLength(100, 255, 101), 101);
    assert.equal(responseLength(127, 3, 130), 128);
  });
});

describe('bad input is refused', () => {
  const keys = { esVersion: 2 as const, clientMagic: hex('resolver_pk').subarray(0, 8), clientPublicKey: hex('client_pk'), sharedKey: Buffer.from(V.shared_xchacha!, 'hex') };
  const serverKey = sharedKey(2, hex('resolver_sk'), hex('client_pk'))!;

  it('tampered ciphertext, tag or nonce in a query', () => {
    for (const offset of [45, 55, 100, 323]) {
      const packet = hex('query_packet');
      packet[offset]! ^= 0x01;
      assert.equal(decryptQuery(2, serverKey, packet), null, `byte ${offset}`);
    }
  });

  it('tampered, misdirected or short responses', () => {
    const good = hex('response_packet');
    const tampered = Buffer.from(good);
    tampered[80]! ^= 0x40;
    assert.equal(decryptResponse(2, keys.sharedKey, hex('client_nonce'), tampered), null);
    const wrongMagic = Buffer.from(good);
    wrongMagic[0] = 0x73;
    assert.equal(decryptResponse(2, keys.sharedKey, hex('client_nonce'), wrongMagic), null);
    const otherNonce = Buffer.from(hex('client_nonce'));
    otherNonce[0]! ^= 1;
    assert.equal(decryptResponse(2, keys.sharedKey, otherNonce, good), null);
    assert.equal(decryptResponse(2, keys.sharedKey, hex('client_nonce'), good.subarray(0, 60)), null);
    assert.equal(decryptResponse(2, keys.sharedKey, hex('client_nonce'), Buffer.alloc(0)), null);
    // right key but the other es-version's construction
    assert.equal(decryptResponse(1, keys.sharedKey, hex('client_nonce'), good), null);
  });

  it('short query packets have no envelope', () => {
    assert.equal(readQueryEnvelope(Buffer.alloc(80)), null);
    assert.notEqual(readQueryEnvelope(Buffer.alloc(81)), null);
  });

  it('a box whose plaintext is not padded is refused after authentication', () => {
    const nonce = Buffer.alloc(24);
    const box = seal(2, serverKey, nonce, Buffer.alloc(64, 0x41));
    assert.notEqual(open(2, serverKey, nonce, box), null);
    const packet = Buffer.concat([keys.clientMagic, keys.clientPublicKey, nonce.subarray(0, 12), box]);
    assert.equal(decryptQuery(2, serverKey, packet), null);
  });

  it('low-order public keys give no shared key (either es-version)', () => {
    for (const key of X25519_SMALL_ORDER) {
      assert.equal(sharedKey(2, hex('resolver_sk'), key), null, key.toString('hex'));
      assert.equal(sharedKey(1, hex('resolver_sk'), key), null, key.toString('hex'));
    }
    assert.equal(sharedKey(2, hex('resolver_sk'), Buffer.alloc(31, 9)), null);
  });

  it('certificates: expired, not yet valid, badly signed, wrong magic, short, unknown es-version', () => {
    const resolver = x25519KeyPair();
    const make = (fields: Partial<Parameters<typeof signCertificate>[0]>, signer = provider.secretKey) =>
      signCertificate({ esVersion: 2, resolverPublicKey: resolver.publicKey, clientMagic: resolver.publicKey.subarray(0, 8), serial: 5, tsStart: NOW - 100, tsEnd: NOW + 100, ...fields }, signer);
    const expired = make({ tsStart: NOW - 1000, tsEnd: NOW - 1 });
    const future = make({ tsStart: NOW + 10, tsEnd: NOW + 1000 });
    const backwards = make({ tsStart: NOW + 10, tsEnd: NOW - 10 });
    const otherProvider = providerKeyPair(Buffer.alloc(32, 7));
    const badlySigned = make({}, otherProvider.secretKey);
    const tampered = make({});
    tampered[112] = 9; // serial changed after signing
    const wrongMagic = Buffer.from(make({}));
    wrongMagic[0] = 0x58;
    const es3 = Buffer.from(make({}));
    es3.writeUInt16BE(3, 4);
    const selection = selectCertificate([expired, future, backwards, badlySigned, tampered, wrongMagic, es3, make({}).subarray(0, 100)], provider.publicKey, NOW);
    assert.equal(selection.chosen, null);
    assert.equal(selection.refused.length, 8);
    assert.match(selection.refused.join('\n'), /expired/);
    assert.match(selection.refused.join('\n'), /not valid before/);
    assert.match(selection.refused.join('\n'), /signature does not verify/);
    assert.match(selection.refused.join('\n'), /does not start with "DNSC"/);
    assert.match(selection.refused.join('\n'), /unsupported es-version 3/);
    assert.match(selection.refused.join('\n'), /shorter than 124/);
    // the last second of validity still counts (ts-end is inclusive)
    assert.notEqual(selectCertificate([make({ tsEnd: NOW })], provider.publicKey, NOW).chosen, null);
  });

  it('selection: highest serial first, then the higher es-version', () => {
    const resolver = x25519KeyPair();
    const make = (serial: number, esVersion: 1 | 2) =>
      signCertificate({ esVersion, resolverPublicKey: resolver.publicKey, clientMagic: resolver.publicKey.subarray(0, 8), serial, tsStart: NOW - 10, tsEnd: NOW + 10 }, provider.secretKey);
    const pick = (...certs: Buffer[]) => {
      const chosen = selectCertificate(certs, provider.publicKey, NOW).chosen!;
      return [chosen.serial, chosen.esVersion];
    };
    assert.deepEqual(pick(make(1, 2), make(2, 1)), [2, 1]);
    assert.deepEqual(pick(make(2, 1), make(1, 2)), [2, 1]);
    assert.deepEqual(pick(make(3, 2), make(3, 1)), [3, 2]);
    assert.deepEqual(pick(make(3, 1), make(3, 2)), [3, 2]);
  });

  it('certificate answers to another query, or not answers at all, are refused', () => {
    const query = buildCertQuery('2.dnscrypt-cert.example.com', 0x1111);
    assert.equal(query.length, 1024);
    const other = buildCertAnswer(hex('cert_query'), certQuestion(hex('cert_query'))!, [hex('cert')], 60);
    assert.throws(() => certificatesFromAnswer(query, other), /does not match/);
    assert.throws(() => certificatesFromAnswer(query, query), /not a DNS response/);
    assert.throws(() => certificatesFromAnswer(query, Buffer.alloc(5)), /not a DNS response/);
  });

  it('certificate questions: only plain TXT IN queries', () => {
    const decoded = dnsPacket.decode(hex('cert_query'));
    assert.equal(certQuestion(hex('cert_query'))!.name, '2.dnscrypt-cert.example.com.');
    assert.equal(certQuestion(dnsPacket.encode({ ...decoded, questions: [{ name: '2.dnscrypt-cert.example.com', type: 'A' }] })), null);
    assert.equal(certQuestion(hex('cert_response')), null);
    assert.equal(certQuestion(Buffer.alloc(11)), null);
    assert.equal(certQuestion(hex('query_packet')), null);
  });

  it('provider key files: hex or raw seeds and secret keys, nothing else', () => {
    const seed = hex('provider_seed');
    assert.deepEqual(parseProviderKey(Buffer.from(`${seed.toString('hex')}\n`)), seed);
    assert.deepEqual(parseProviderKey(seed), seed);
    assert.deepEqual(parseProviderKey(provider.secretKey), seed);
    assert.throws(() => parseProviderKey(Buffer.from('not a key')), /not a provider key/);
  });
});

describe('the listener’s short-term keys', () => {
  it('a new certificate each rotation: serial up, windows overlapping, the newest served, expired ones forgotten', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const certs = new ResolverCertificates(provider, clock);
    const first = certs.rotate();
    clock.advance(ROTATE_EVERY_S * 1000);
    const second = certs.rotate();
    assert.ok(second.cert.serial > first.cert.serial);
    assert.ok(second.cert.tsStart < first.cert.tsEnd, 'validity windows overlap');
    assert.ok(second.cert.tsEnd - clock.now() / 1000 >= 23 * 3600, 'a fresh certificate is good for about a day');
    assert.equal(verifyCertificate(second.cert, provider.publicKey), true);
    assert.deepEqual(certs.served, [second.cert.bytes]);
    // queries made with the older certificate still decrypt…
    assert.equal(certs.lookup(Buffer.concat([first.cert.clientMagic, Buffer.alloc(100)])), first);
    // …until it expires
    clock.advance((CERT_LIFETIME_S - ROTATE_EVERY_S + 1) * 1000);
    assert.equal(certs.lookup(Buffer.concat([first.cert.clientMagic, Buffer.alloc(100)])), undefined);
    certs.rotate();
    assert.equal(certs.all.includes(first), false, 'its secret key is dropped at the next rotation');
    assert.equal(certs.all.length, 2);
  });

  it('caches shared keys per client key, and refuses low-order client keys', () => {
    const certs = new ResolverCertificates(provider, new ManualClock());
    const entry = certs.rotate();
    const client = x25519KeyPair();
    assert.equal(certs.cachedKey(entry, client.publicKey), undefined);
    const key = certs.computeKey(entry, client.publicKey)!;
    assert.equal(certs.cachedKey(entry, client.publicKey), key);
    assert.deepEqual(key, sharedKey(2, client.secretKey, entry.cert.resolverPublicKey));
    for (const low of X25519_SMALL_ORDER) {
      assert.equal(certs.computeKey(entry, low), null);
      assert.equal(certs.cachedKey(entry, low), undefined);
    }
  });

  it('issue 24 finding 5: the shared-key cache is bounded, and keys seen once cannot push out keys in use', () => {
    const cache = new SharedKeyCache();
    const key = Buffer.alloc(32, 1);
    cache.add('returning client', key);
    assert.equal(cache.get('returning client'), key, 'seen again: kept');
    for (let i = 0; i < 100_000; i++) cache.add(`flood ${i}`, Buffer.alloc(0));
    assert.equal(cache.get('returning client'), key, 'still there after 100,000 keys seen once');
    assert.ok(cache.size <= 15_000, `${cache.size} entries`);
    assert.equal(cache.get('flood 0'), undefined, 'the oldest of the flood went first');
    assert.ok(cache.get('flood 99999'));
  });
});
