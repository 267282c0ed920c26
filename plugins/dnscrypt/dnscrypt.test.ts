/**
 * Veil's DNSCrypt client against Veil's DNSCrypt listener, in one process over loopback sockets:
 * UDP and TCP, the TCP retry after truncation, ephemeral keys, certificates and their refresh,
 * and what happens without a certificate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import type { RequestContext } from '../../core/context.js';
import { isTruncated } from '../../core/dns/wire.js';
import { rcodeName } from '../../core/dns/constants.js';
import { fullRcode } from '../../core/dns/wire.js';
import { dnscryptCertificate, queryDone, queryRejected } from '../../core/events.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { answerFor, startFakeDns } from '../../core/testing/fake-dns.js';
import { buildCertQuery, certificatesFromAnswer } from '../../lib/dnscrypt/cert-query.js';
import { selectCertificate, signCertificate, type CertificateFields } from '../../lib/dnscrypt/certificate.js';
import { seal, sharedKey, x25519KeyPair } from '../../lib/dnscrypt/crypto.js';
import { decryptResponse, encryptQuery } from '../../lib/dnscrypt/packet.js';
import { providerKeyPair, type ProviderKeyPair } from '../../lib/dnscrypt/provider-key.js';
import type { DnscryptUpstream } from './upstream.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { dnscryptStamp, makeProviderKeys, type ProviderKeys } from '../../test/helpers/dnscrypt.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const PROVIDER = '2.dnscrypt-cert.veil.test';
const decode = (b: Buffer) => dnsPacket.decode(b);
const firstData = (b: Buffer) => (decode(b).answers?.[0] as { data?: unknown } | undefined)?.data;

async function startResolver(keys: ProviderKeys, extra = ''): Promise<{ veil: TestServer; port: number }> {
  const veil = await startTestServer(
    `. {
    listen dnscrypt://127.0.0.1:0 {
        provider ${PROVIDER}
        key ${keys.keyFile}
    }
    hosts {
        192.0.2.10 web.veil.test
    }
    big 12
${extra}}`,
    { registry: testRegistry() },
  );
  return { veil, port: veil.address('dnscrypt://127.0.0.1:0').port };
}

async function startClient(stamp: string, options = ''): Promise<{ veil: TestServer; udp: { host: string; port: number }; tcp: { host: string; port: number } }> {
  const veil = await startTestServer(
    `. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    dnscrypt {
        server resolver ${stamp}
${options}
    }
}`,
    { registry: testRegistry() },
  );
  return { veil, udp: veil.address('udp://127.0.0.1:0'), tcp: veil.address('tcp://127.0.0.1:0') };
}

describe('Veil client → Veil DNSCrypt listener', () => {
  let keys: ProviderKeys;
  let resolver: { veil: TestServer; port: number };
  before(async () => {
    keys = makeProviderKeys();
    resolver = await startResolver(keys);
  });
  after(async () => {
    await resolver.veil.stop();
    keys.cleanup();
  });

  it('answers over UDP with the certificate fetched at start', async () => {
    const client = await startClient(dnscryptStamp(`127.0.0.1:${resolver.port}`, keys.publicKey, PROVIDER));
    try {
      const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('web.veil.test', QType.A, { id: 7 }), 5000);
      assert.equal(decode(answer).id, 7);
      assert.equal(firstData(answer), '192.0.2.10');
      assert.ok(client.veil.logs.some((l) => /resolver: certificate serial \d+, es-version 2/.test(l)), client.veil.logs.join('\n'));
    } finally {
      await client.veil.stop();
    }
  });

  it('a large answer comes back truncated over UDP, whole through the TCP retry', async () => {
    const client = await startClient(dnscryptStamp(`127.0.0.1:${resolver.port}`, keys.publicKey, PROVIDER));
    const seen: Array<{ datagram: boolean; truncated: boolean; transport: string }> = [];
    const watch = ({ ctx, response }: { ctx: RequestContext; response: Buffer | null }) => {
      if (response && ctx.name === 'big.veil.test.' && ctx.transport === 'dnscrypt') seen.push({ datagram: ctx.datagram, truncated: isTruncated(response), transport: ctx.transport });
    };
    queryDone.subscribe(watch);
    try {
      const answers = await queryTcp(client.tcp.host, client.tcp.port, [buildQuery('big.veil.test', QType.TXT, { id: 9 })], 5000);
      assert.equal((decode(answers[0]!).answers![0] as { data: Buffer[] }).data.length, 12);
      assert.deepEqual(seen, [
        { datagram: true, truncated: true, transport: 'dnscrypt' },
        { datagram: false, truncated: false, transport: 'dnscrypt' },
      ]);
    } finally {
      queryDone.unsubscribe(watch);
      await client.veil.stop();
    }
  });

  it('tcp_only and ephemeral_keys', async () => {
    const client = await startClient(dnscryptStamp(`127.0.0.1:${resolver.port}`, keys.publicKey, PROVIDER), '        tcp_only\n        ephemeral_keys');
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('web.veil.test', QType.A, { id: 100 + i }), 5000);
        assert.equal(firstData(answer), '192.0.2.10');
      }
    } finally {
      await client.veil.stop();
    }
  });
});

/** A hand-driven client: the listener's certificate and keys to build packets with. */
async function rawClient(port: number, publicKey: Buffer) {
  const certAnswer = await queryUdp('127.0.0.1', port, buildCertQuery(PROVIDER, 0x4242), 3000);
  const certs = certificatesFromAnswer(buildCertQuery(PROVIDER, 0x4242), certAnswer);
  const cert = selectCertificate(certs, publicKey, Math.floor(Date.now() / 1000)).chosen!;
  const pair = x25519KeyPair();
  const keys = { esVersion: cert.esVersion, clientMagic: cert.clientMagic, clientPublicKey: pair.publicKey, sharedKey: sharedKey(cert.esVersion, pair.secretKey, cert.resolverPublicKey)! };
  const nonce = () => Buffer.from(Array.from({ length: 12 }, () => Math.floor(Math.random() * 256)));
  return { cert, certs, keys, nonce };
}

describe('the DNSCrypt listener and hostile or odd clients', () => {
  let keys: ProviderKeys;
  let resolver: { veil: TestServer; port: number };
  const rejected: string[] = [];
  const onRejected = ({ reason }: { reason: string }) => rejected.push(reason);
  before(async () => {
    keys = makeProviderKeys();
    resolver = await startResolver(keys);
    queryRejected.subscribe(onRejected);
  });
  after(async () => {
    queryRejected.unsubscribe(onRejected);
    await resolver.veil.stop();
    keys.cleanup();
  });

  it('serves one signed, valid certificate over UDP and over TCP', async () => {
    const { certs, cert } = await rawClient(resolver.port, keys.publicKey);
    assert.equal(certs.length, 1);
    assert.equal(cert.esVersion, 2);
    assert.ok(cert.tsEnd - cert.tsStart >= 24 * 3600, 'a day of validity at least');
    const [overTcp] = await queryTcp('127.0.0.1', resolver.port, [buildCertQuery(PROVIDER.toUpperCase(), 0x77)], 3000);
    assert.deepEqual(certificatesFromAnswer(buildCertQuery(PROVIDER.toUpperCase(), 0x77), overTcp!), certs);
  });

  it('drops, silently and counted: short packets, plain DNS, tampered ciphertext, wrong magic, low-order keys', async () => {
    const { keys: k, nonce } = await rawClient(resolver.port, keys.publicKey);
    const good = encryptQuery(k, nonce(), buildQuery('web.veil.test', QType.A, { id: 1 }), 256);
    const tampered = Buffer.from(good);
    tampered[100]! ^= 0xff;
    const wrongMagic = Buffer.from(good);
    wrongMagic[0]! ^= 0xff;
    const lowOrder = Buffer.from(good);
    Buffer.alloc(32).copy(lowOrder, 8);
    const badPadding = Buffer.concat([good.subarray(0, 52), seal(2, k.sharedKey, Buffer.concat([good.subarray(40, 52), Buffer.alloc(12)]), Buffer.alloc(64, 0x41))]);
    const otherProvider = buildCertQuery('2.dnscrypt-cert.other.test', 5);
    rejected.length = 0;
    for (const packet of [Buffer.alloc(0), Buffer.from('hi'), buildQuery('web.veil.test', QType.A, { id: 3 }), tampered, wrongMagic, lowOrder, badPadding, otherProvider, good.subarray(0, 70)]) {
      assert.equal(await sendUdpRaw('127.0.0.1', resolver.port, packet, 150), null, `${packet.length}-byte packet was answered`);
    }
    assert.deepEqual(rejected.sort(), [
      'dnscrypt: certificate query for another provider',
      'dnscrypt: not DNSCrypt',
      'dnscrypt: not DNSCrypt',
      'dnscrypt: not DNSCrypt',
      'dnscrypt: short packet',
      'dnscrypt: short packet',
      'dnscrypt: undecryptable',
      'dnscrypt: undecryptable',
      'dnscrypt: weak client key',
    ]);
    // and the listener still serves
    const answer = await sendUdpRaw('127.0.0.1', resolver.port, good, 2000);
    assert.equal(firstData(decryptResponse(2, k.sharedKey, good.subarray(40, 52), answer!)!), '192.0.2.10');
  });

  it('over UDP the encrypted answer is never larger than the query: TC instead', async () => {
    const { keys: k, nonce } = await rawClient(resolver.port, keys.publicKey);
    const query = buildQuery('big.veil.test', QType.TXT, { id: 11, edns: { udpSize: 4096 } });
    const n = nonce();
    const packet = encryptQuery(k, n, query, 256);
    const answer = (await sendUdpRaw('127.0.0.1', resolver.port, packet, 2000))!;
    assert.ok(answer.length <= packet.length, `${answer.length} > ${packet.length}`);
    const plain = decryptResponse(2, k.sharedKey, n, answer)!;
    assert.equal(isTruncated(plain), true);
    assert.equal(decode(plain).id, 11);
    // the same query over TCP gets it all
    const n2 = nonce();
    const [framed] = await queryTcp('127.0.0.1', resolver.port, [encryptQuery(k, n2, query, 256)], 3000);
    assert.equal((decode(decryptResponse(2, k.sharedKey, n2, framed!)!).answers![0] as { data: Buffer[] }).data.length, 12);
  });
});

/** A fake DNSCrypt provider that serves whatever certificates the test gives it (and nothing else). */
async function certServer(provider: ProviderKeyPair) {
  const resolverKeys = x25519KeyPair();
  let certs: Buffer[] = [];
  const fake = await startFakeDns((q) => (q.packet.questions?.[0]?.type === 'TXT' ? answerFor(q, certs.map((c) => ({ type: 'TXT', name: q.packet.questions![0]!.name, ttl: 60, data: [c] }))) : null));
  const now = () => Math.floor(Date.now() / 1000);
  return {
    fake,
    stamp: dnscryptStamp(`127.0.0.1:${fake.port}`, provider.publicKey, PROVIDER),
    make: (fields: Partial<CertificateFields>, signer = provider.secretKey) =>
      signCertificate({ esVersion: 2, resolverPublicKey: resolverKeys.publicKey, clientMagic: resolverKeys.publicKey.subarray(0, 8), serial: 1, tsStart: now() - 60, tsEnd: now() + 3600, ...fields }, signer),
    serve(next: Buffer[]) {
      certs = next;
    },
  };
}

describe('certificates as the client takes them', () => {
  const provider = providerKeyPair(Buffer.alloc(32, 3));
  const upstreamOf = (veil: TestServer) => veil.server.config!.blocks[0]!.upstreams.get('resolver') as DnscryptUpstream;

  it('an unreachable server does not stop start; its queries fail at once, and nothing leaves in plaintext', async () => {
    const server = await certServer(provider);
    server.serve([]); // answers the certificate query with nothing usable
    const client = await startClient(server.stamp);
    try {
      const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('secret.example', QType.A, { id: 5 }), 5000);
      assert.equal(rcodeName(fullRcode(answer)), 'SERVFAIL');
      assert.ok(server.fake.queries.length >= 1);
      for (const q of server.fake.queries) assert.equal(q.packet.questions![0]!.name, PROVIDER, 'only certificate queries reach the server');
      assert.ok(client.veil.logs.some((l) => /no certificate .*queries to it fail/.test(l)), client.veil.logs.join('\n'));
    } finally {
      await client.veil.stop();
      await server.fake.close();
    }
    // a port where nothing listens at all
    const nowhere = await startClient(dnscryptStamp('127.0.0.1:9', provider.publicKey, PROVIDER));
    await nowhere.veil.stop();
  });

  it('expired, not-yet-valid and badly signed certificates are refused', async () => {
    const server = await certServer(provider);
    const now = Math.floor(Date.now() / 1000);
    const other = providerKeyPair(Buffer.alloc(32, 4));
    server.serve([server.make({ tsStart: now - 7200, tsEnd: now - 3600 }), server.make({ tsStart: now + 3600, tsEnd: now + 7200 }), server.make({ serial: 9 }, other.secretKey)]);
    const client = await startClient(server.stamp);
    try {
      const upstream = upstreamOf(client.veil);
      await upstream.refresh();
      assert.equal(upstream.certificate, null);
      const log = client.veil.logs.join('\n');
      assert.match(log, /expired/);
      assert.match(log, /not valid before/);
      assert.match(log, /signature does not verify/);
    } finally {
      await client.veil.stop();
      await server.fake.close();
    }
  });

  it('takes the highest serial, publishes it, and keeps a valid certificate when a refresh fails', async () => {
    const server = await certServer(provider);
    const published: Array<{ upstream: string; serial: number; esVersion: number }> = [];
    const onCert = (m: { upstream: string; serial: number; esVersion: number }) => published.push({ upstream: m.upstream, serial: m.serial, esVersion: m.esVersion });
    dnscryptCertificate.subscribe(onCert);
    server.serve([server.make({ serial: 1 }), server.make({ serial: 2, esVersion: 1 })]);
    const client = await startClient(server.stamp);
    try {
      const upstream = upstreamOf(client.veil);
      await upstream.refresh();
      assert.deepEqual([upstream.certificate?.serial, upstream.certificate?.esVersion], [2, 1]);
      server.serve([server.make({ serial: 3 })]);
      await upstream.refresh();
      assert.equal(upstream.certificate?.serial, 3);
      const publishedBefore = published.length;
      server.serve([]);
      await upstream.refresh();
      assert.equal(upstream.certificate?.serial, 3, 'a failed refresh keeps the valid certificate');
      assert.ok(client.veil.logs.some((l) => /refresh failed .*keeping serial 3/.test(l)));
      assert.equal(published.length, publishedBefore, 'nothing published for a failed refresh');
      const distinct = published.filter((p, i) => p.upstream === 'resolver' && (i === 0 || p.serial !== published[i - 1]!.serial)).map((p) => [p.serial, p.esVersion]);
      assert.deepEqual(distinct, [
        [2, 1],
        [3, 2],
      ]);
    } finally {
      dnscryptCertificate.unsubscribe(onCert);
      await client.veil.stop();
      await server.fake.close();
    }
  });

  it('refreshes early when the certificate is about to end', async () => {
    const server = await certServer(provider);
    const now = Math.floor(Date.now() / 1000);
    server.serve([server.make({ tsStart: now - 10, tsEnd: now + 4 })]);
    const client = await startClient(server.stamp, '        cert_refresh 4h');
    try {
      const started = Date.now();
      while (server.fake.queries.length < 2 && Date.now() - started < 8000) await new Promise((r) => setTimeout(r, 50));
      assert.ok(server.fake.queries.length >= 2, 'a second certificate query within the last tenth of the certificate');
    } finally {
      await client.veil.stop();
      await server.fake.close();
    }
  });
});
