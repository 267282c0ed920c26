/**
 * The path query (`dig CH TXT NAME`) and the canary zone, against a Veil in this process and a
 * fake upstream on loopback: a forwarded name, the same name from the cache, a local name, an
 * anonymized one (Veil's DNSCrypt listener behind Veil's relay on 127.0.0.2), and a client
 * outside the block's acl, which is REFUSED.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QClass, QType, rcodeName } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { fullRcode } from '../../core/dns/wire.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { parsePathAnswer } from '../../cli/path.js';
import { dnscryptStamp, makeProviderKeys, relayStamp, type ProviderKeys } from '../../test/helpers/dnscrypt.js';
import { freePort } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

let id = 1;
const pathQuery = (name: string) => buildQuery(name, QType.TXT, { id: id++, qclass: QClass.CH, edns: true });

/** The TXT strings of a path answer as key → value. */
function facts(answer: Buffer): Record<string, string> {
  assert.equal(rcodeName(fullRcode(answer)), 'NOERROR');
  return parsePathAnswer(answer);
}

describe('the path query', () => {
  let origin: FakeDns;
  let veil: TestServer;
  let udp: { host: string; port: number };

  before(async () => {
    origin = await startFakeDns((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 300, data: '192.0.2.7' }]));
    veil = await startTestServer(
      `. {
  listen udp://127.0.0.1:0 tcp://127.0.0.1:0
  acl {
    allow 127.0.0.1
    deny *
  }
  path
  cache
  hosts {
    192.0.2.10 web.veil.test
  }
  forward {
    server origin udp://127.0.0.1:${origin.port}
  }
}`,
      { registry: testRegistry() },
    );
    udp = veil.address('udp://127.0.0.1:0');
  });
  after(async () => {
    await veil?.stop();
    await origin?.close();
  });

  // Names reach the origin in random case (DNS 0x20): counted without it.
  const asked = (name: string) => origin.queries.filter((q) => q.packet.questions![0]!.name.toLowerCase() === name.toLowerCase()).length;

  it('a forwarded name: which listener, block, upstream and protocol; plain DNS says so', async () => {
    const f = facts(await queryUdp(udp.host, udp.port, pathQuery('fresh.path.test')));
    assert.equal(f.listener, `udp://127.0.0.1:${udp.port}`);
    assert.equal(f.transport, 'udp');
    assert.equal(f.client, '127.0.0.1');
    assert.equal(f.block, '.');
    assert.equal(f.query, 'fresh.path.test. A');
    assert.equal(f.answered_by, 'upstream');
    assert.equal(f.cache, 'miss');
    assert.equal(f.left_veil, 'yes');
    assert.equal(f.upstream, 'origin');
    assert.equal(f.protocol, 'udp');
    assert.equal(f.address, `127.0.0.1:${origin.port}`);
    assert.equal(f.relay, 'none');
    assert.equal(f.encrypted, 'no');
    assert.equal(f.padded, 'no');
    assert.equal(f.rcode, 'NOERROR');
    assert.equal(f.upstreams, '1 usable of 1, 0 through relays');
    assert.equal(asked('fresh.path.test'), 1, 'the name itself was resolved upstream');
    assert.equal(origin.queries.filter((q) => q.packet.questions![0]!.class === 'CH').length, 0, 'the path query itself is never forwarded');
  });

  it('the same name again: from the cache, and nothing leaves', async () => {
    const before = asked('fresh.path.test');
    const f = facts(await queryUdp(udp.host, udp.port, pathQuery('fresh.path.test')));
    assert.equal(f.answered_by, 'cache');
    assert.equal(f.cache, 'hit');
    assert.equal(f.left_veil, 'no');
    assert.equal(f.upstream, undefined);
    assert.equal(asked('fresh.path.test'), before);
  });

  it('a name a client asked first is a cache hit for the path query too (same cache key)', async () => {
    await queryUdp(udp.host, udp.port, buildQuery('asked.path.test', QType.A, { id: id++, edns: true }));
    const f = facts(await queryUdp(udp.host, udp.port, pathQuery('asked.path.test')));
    assert.equal(f.cache, 'hit');
  });

  it('a local name: answered by hosts, never left Veil; over TCP the transport says tcp', async () => {
    const tcp = veil.address('tcp://127.0.0.1:0');
    const [answer] = await queryTcp(tcp.host, tcp.port, [pathQuery('web.veil.test')]);
    const f = facts(answer!);
    assert.equal(f.transport, 'tcp');
    assert.equal(f.listener, `tcp://127.0.0.1:${tcp.port}`);
    assert.equal(f.answered_by, 'hosts');
    assert.equal(f.left_veil, 'no');
    assert.equal(asked('web.veil.test'), 0);
  });

  it('the canary: any name under the zone answers 192.0.2.1 and is remembered; others are not seen', async () => {
    const canary = 'c0ffee42.canary.veil.test';
    const answer = dnsPacket.decode(await queryUdp(udp.host, udp.port, buildQuery(canary, QType.A, { id: id++ })));
    assert.deepEqual(answer.answers?.map((a) => (a as { data: string }).data), ['192.0.2.1']);
    const seen = facts(await queryUdp(udp.host, udp.port, pathQuery(canary)));
    assert.equal(seen.canary, 'seen');
    assert.equal(seen.seen_transport, 'udp');
    assert.equal(seen.seen_client, '127.0.0.1');
    const unseen = facts(await queryUdp(udp.host, udp.port, pathQuery('deadbeef.canary.veil.test')));
    assert.equal(unseen.canary, 'not seen');
    assert.equal(asked(canary), 0, 'canary names are never forwarded');
  });

  it('CH queries other than TXT, and version.bind / id.server, are refused; nothing is forwarded', async () => {
    const before = origin.queries.length;
    for (const query of [buildQuery('example.org', QType.A, { id: id++, qclass: QClass.CH }), pathQuery('version.bind'), pathQuery('id.server')]) {
      assert.equal(rcodeName(fullRcode(await queryUdp(udp.host, udp.port, query))), 'REFUSED');
    }
    assert.equal(origin.queries.length, before);
  });

  it('a client the acl does not admit gets REFUSED, and learns nothing', async () => {
    const answer = await sendUdpRaw(udp.host, udp.port, pathQuery('fresh.path.test'), 2000, '127.0.0.2');
    assert.ok(answer, 'an answer came');
    assert.equal(rcodeName(fullRcode(answer)), 'REFUSED');
    assert.equal(dnsPacket.decode(answer).answers?.length ?? 0, 0);
  });

  it('an upstream that fails: the error is said, and the block has no usable upstream left', async () => {
    const dead = await freePort();
    const broken = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  path\n  forward {\n    server gone udp://127.0.0.1:${dead}\n  }\n  loadbalance {\n    max_fails 1\n  }\n}`,
      { registry: testRegistry(), queryTimeoutMs: 1500 },
    );
    try {
      const at = broken.address('udp://127.0.0.1:0');
      const f = facts(await queryUdp(at.host, at.port, pathQuery('nowhere.path.test'), 5000));
      assert.match(f.error ?? '', /./);
      assert.equal(f.left_veil, 'tried');
      assert.equal(f.upstreams, '0 usable of 1, 0 through relays');
    } finally {
      await broken.stop();
    }
  });
});

describe('the path query of an anonymized name', () => {
  const PROVIDER = '2.dnscrypt-cert.path.test';
  let keys: ProviderKeys;
  let resolver: TestServer;
  let relay: TestServer;
  let client: TestServer;

  before(async () => {
    keys = makeProviderKeys();
    resolver = await startTestServer(
      `. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${PROVIDER}\n    key ${keys.keyFile}\n  }\n  hosts {\n    192.0.2.20 hidden.path.test\n  }\n}`,
      { registry: testRegistry() },
    );
    const resolverPort = resolver.address('dnscrypt://127.0.0.1:0').port;
    const relayPort = await freePort();
    relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${resolverPort}\n    allow_private\n  }\n}`, { registry: testRegistry() });
    client = await startTestServer(
      `. {
  listen udp://127.0.0.1:0
  path
  dnscrypt {
    server hidden ${dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, PROVIDER)}
  }
  anonymize {
    relay r1 ${relayStamp(`127.0.0.2:${relayPort}`)}
    route hidden via r1
  }
}`,
      { registry: testRegistry() },
    );
  });
  after(async () => {
    await client?.stop();
    await relay?.stop();
    await resolver?.stop();
    keys?.cleanup();
  });

  it('names the DNSCrypt server and the relay, encrypted and padded', async () => {
    const at = client.address('udp://127.0.0.1:0');
    const f = facts(await queryUdp(at.host, at.port, pathQuery('hidden.path.test'), 5000));
    assert.equal(f.answered_by, 'upstream');
    assert.equal(f.upstream, 'hidden');
    assert.equal(f.protocol, 'dnscrypt');
    assert.equal(f.relay, 'r1');
    assert.equal(f.encrypted, 'yes');
    assert.equal(f.padded, 'yes');
    assert.equal(f.rcode, 'NOERROR');
    assert.equal(f.upstreams, '1 usable of 1, 1 through relays');
  });
});
