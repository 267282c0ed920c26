/**
 * Veil's DNSCrypt client against Veil's DNSCrypt listener, in one process over loopback sockets:
 * UDP and TCP, the TCP retry after truncation, ephemeral keys, certificates and their refresh,
 * and what happens without a certificate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { queryTcp, queryUdp } from '../core/testing/client.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { dnscryptStamp, makeProviderKeys, type ProviderKeys } from './helpers/dnscrypt.js';
import { testRegistry } from './helpers/plugins.js';

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
    try {
      const before = resolver.veil.logs.length;
      const answers = await queryTcp(client.tcp.host, client.tcp.port, [buildQuery('big.veil.test', QType.TXT, { id: 9 })], 5000);
      assert.equal(decode(answers[0]!).answers?.length, 1);
      assert.equal((decode(answers[0]!).answers![0] as { data: Buffer[] }).data.length, 12);
      assert.equal(resolver.veil.logs.length, before);
    } finally {
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
