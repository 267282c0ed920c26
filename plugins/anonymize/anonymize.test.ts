/**
 * Anonymized DNSCrypt with Veil on every side, in one process over loopback: a client routed
 * through Veil's relay (on its own address, 127.0.0.2) to Veil's DNSCrypt listener, the relay's
 * rules against hostile packets, skip_incompatible and the router's choices (the configuration:
 * setup.test.ts here and in plugins/dnscrypt).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import type { RequestContext } from '../../core/context.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryDone, relayEvent, upstreamAttempt } from '../../core/events.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import { buildCertQuery } from '../../lib/dnscrypt/cert-query.js';
import { ANON_MAGIC, RESOLVER_MAGIC } from '../../lib/dnscrypt/constants.js';
import { relayHeader } from '../../lib/dnscrypt/relay-header.js';
import { farthestRelays, RelayRouter } from './router.js';
import { dnscryptStamp, makeProviderKeys, relayStamp, type ProviderKeys } from '../../test/helpers/dnscrypt.js';
import { freePort } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const PROVIDER = '2.dnscrypt-cert.veil.test';
const decode = (b: Buffer) => dnsPacket.decode(b);
const firstData = (b: Buffer) => (decode(b).answers?.[0] as { data?: unknown } | undefined)?.data;

describe('Veil client → Veil relay (127.0.0.2) → Veil DNSCrypt listener', () => {
  let keys: ProviderKeys;
  let resolver: TestServer;
  let resolverPort: number;
  let relay: TestServer;
  let relayPort: number;
  const seenByResolver: Array<{ address: string; datagram: boolean }> = [];
  const watch = ({ ctx }: { ctx: RequestContext }) => {
    if (ctx.transport === 'dnscrypt') seenByResolver.push({ address: ctx.client.address, datagram: ctx.datagram });
  };

  before(async () => {
    keys = makeProviderKeys();
    resolver = await startTestServer(
      `. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${PROVIDER}\n    key ${keys.keyFile}\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n  big 12\n}`,
      { registry: testRegistry() },
    );
    resolverPort = resolver.address('dnscrypt://127.0.0.1:0').port;
    relayPort = await freePort();
    relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${resolverPort}\n    allow_private\n  }\n}`, { registry: testRegistry() });
    queryDone.subscribe(watch);
  });
  after(async () => {
    queryDone.unsubscribe(watch);
    await relay.stop();
    await resolver.stop();
    keys.cleanup();
  });

  async function client(options = '') {
    const veil = await startTestServer(
      `. {
  listen udp://127.0.0.1:0 tcp://127.0.0.1:0
  dnscrypt {
    server resolver ${dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, PROVIDER)}
${options}
  }
  anonymize {
    relay r1 ${relayStamp(`127.0.0.2:${relayPort}`)}
    route resolver via r1
  }
}`,
      { registry: testRegistry() },
    );
    return { veil, udp: veil.address('udp://127.0.0.1:0'), tcp: veil.address('tcp://127.0.0.1:0') };
  }

  it('over UDP: answered, and the resolver sees only the relay', async () => {
    const c = await client();
    const relayed: string[] = [];
    const onRelay = (m: { event: string; transport: string }) => relayed.push(`${m.event} ${m.transport}`);
    relayEvent.subscribe(onRelay);
    const meta: Array<string | undefined> = [];
    const onDone = ({ ctx }: { ctx: RequestContext }) => {
      if (ctx.transport === 'udp' && ctx.name === 'web.veil.test.') meta.push(ctx.meta.relay);
    };
    queryDone.subscribe(onDone);
    try {
      seenByResolver.length = 0;
      const answer = await queryUdp(c.udp.host, c.udp.port, buildQuery('web.veil.test', QType.A, { id: 21 }), 5000);
      assert.equal(firstData(answer), '192.0.2.10');
      assert.deepEqual(seenByResolver, [{ address: '127.0.0.2', datagram: true }]);
      assert.deepEqual(meta, ['r1'], 'the log line can say which relay carried the query');
      assert.ok(relayed.includes('forwarded udp'));
    } finally {
      relayEvent.unsubscribe(onRelay);
      queryDone.unsubscribe(onDone);
      await c.veil.stop();
    }
  });

  it('over TCP (tcp_only): the relay takes TCP and passes it on over UDP', async () => {
    const c = await client('    tcp_only');
    try {
      seenByResolver.length = 0;
      const answer = await queryUdp(c.udp.host, c.udp.port, buildQuery('web.veil.test', QType.A, { id: 22 }), 5000);
      assert.equal(firstData(answer), '192.0.2.10');
      const [big] = await queryTcp(c.tcp.host, c.tcp.port, [buildQuery('big.veil.test', QType.TXT, { id: 23 })], 5000);
      assert.equal((decode(big!).answers![0] as { data: Buffer[] }).data.length, 12, 'a 2.4 KB answer fits the large padding of relayed TCP queries');
      assert.deepEqual(seenByResolver, [
        { address: '127.0.0.2', datagram: true },
        { address: '127.0.0.2', datagram: true },
      ]);
    } finally {
      await c.veil.stop();
    }
  });

  it('issue 24 (same class): relays a route picked and left do not keep their sockets', async () => {
    const dead = await Promise.all([freePort(), freePort(), freePort(), freePort()]); // no relay there
    const veil = await startTestServer(
      `. {
  listen udp://127.0.0.1:0
  dnscrypt {
    server resolver ${dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, PROVIDER)}
  }
  anonymize {
    relay r1 127.0.0.2:${relayPort}
${dead.map((port, i) => `    relay d${i} 127.0.0.1:${port}`).join('\n')}
    route resolver via r1 ${dead.map((_, i) => `d${i}`).join(' ')}
  }
}`,
      { registry: testRegistry() },
    );
    try {
      const upstream = veil.server.config!.blocks[0]!.upstreams.get('resolver') as unknown as { refresh(): Promise<void>; channelCount: number };
      const counts: number[] = [];
      // Each refresh picks one of five relays at random; four of them never answer.
      for (let i = 0; i < 12; i++) {
        await upstream.refresh();
        counts.push(upstream.channelCount);
      }
      assert.ok(Math.max(...counts) <= 2, `channels open after each refresh: ${counts.join(' ')}`);
    } finally {
      await veil.stop();
    }
  });
});

describe('a routed server is never contacted directly, certificate queries included', () => {
  it('every packet the server gets comes from the relay', async () => {
    const keys = makeProviderKeys();
    const target = await startFakeDns(() => null); // never answers: the client keeps trying
    const relayPort = await freePort();
    const relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${target.port}\n    allow_private\n  }\n}`, { registry: testRegistry() });
    const c = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server far ${dnscryptStamp(`127.0.0.1:${target.port}`, keys.publicKey, PROVIDER)}\n  }\n  anonymize {\n    relay r1 127.0.0.2:${relayPort}\n    route * via r1\n  }\n}`,
      { registry: testRegistry() },
    );
    try {
      const udp = c.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('secret.example', QType.A, { id: 1 }), 8000);
      assert.ok(target.queries.length >= 1);
      for (const q of target.queries) {
        assert.equal(q.from.address, '127.0.0.2');
        assert.equal(q.packet.questions![0]!.name, PROVIDER);
        // The fragment probe's two sizes over UDP (3200 and 480 bytes with the relay header), 1024 over TCP.
        assert.ok([3172, 452, 1024].includes(q.wire.length), `certificate queries through a relay are padded (got ${q.wire.length} bytes)`);
      }
    } finally {
      await c.stop();
      await relay.stop();
      await target.close();
      keys.cleanup();
    }
  });
});

describe('skip_incompatible', () => {
  let keys: ProviderKeys;
  let resolver: TestServer;
  let resolverPort: number;
  before(async () => {
    keys = makeProviderKeys();
    resolver = await startTestServer(`. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${PROVIDER}\n    key ${keys.keyFile}\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}`, { registry: testRegistry() });
    resolverPort = resolver.address('dnscrypt://127.0.0.1:0').port;
  });
  after(async () => {
    await resolver.stop();
    keys.cleanup();
  });

  async function attempted(skip: boolean): Promise<{ attempts: string[]; logs: string[] }> {
    const dead = await freePort(); // no relay there
    const stamp = dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, PROVIDER);
    const veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server far ${stamp}\n    server near ${stamp}\n  }\n  anonymize {\n    relay gone 127.0.0.1:${dead}\n    route far via gone\n${skip ? '    skip_incompatible\n' : ''}  }\n}`,
      { registry: testRegistry() },
    );
    const attempts: string[] = [];
    const onAttempt = ({ upstream }: { upstream: Upstream }) => attempts.push(upstream.name);
    upstreamAttempt.subscribe(onAttempt);
    try {
      const far = veil.server.config!.blocks[0]!.upstreams.get('far') as unknown as { refresh(): Promise<void> };
      await far.refresh();
      const udp = veil.address('udp://127.0.0.1:0');
      assert.equal(firstData(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 3 }), 5000)), '192.0.2.10');
      return { attempts, logs: veil.logs };
    } finally {
      upstreamAttempt.unsubscribe(onAttempt);
      await veil.stop();
    }
  }

  it('without it, a server unreachable through its relays is reported and still tried (and never reached directly)', async () => {
    const { attempts, logs } = await attempted(false);
    assert.deepEqual(attempts, ['far', 'near']);
    assert.ok(logs.some((l) => /far: no certificate via relay gone/.test(l)), logs.join('\n'));
  });

  it('with it, that server is left out: no attempt at all', async () => {
    const { attempts, logs } = await attempted(true);
    assert.deepEqual(attempts, ['near']);
    assert.ok(logs.some((l) => /far: .*left out until it answers \(skip_incompatible\)/.test(l)), logs.join('\n'));
  });

  it('with it, the server comes back by itself once its relay answers (back-off, not the next refresh), said once each way', async () => {
    const relayPort = await freePort(); // nothing there yet
    const stamp = dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, PROVIDER);
    const veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server far ${stamp}\n  }\n  anonymize {\n    relay late 127.0.0.2:${relayPort}\n    route far via late\n    skip_incompatible\n  }\n}`,
      { registry: testRegistry() },
    );
    let relay: TestServer | null = null;
    try {
      const far = veil.server.config!.blocks[0]!.upstreams.get('far')!;
      const until = async (what: () => boolean, label: string) => {
        const started = Date.now();
        while (!what()) {
          if (Date.now() - started > 15_000) throw new Error(`${label}: ${veil.logs.join('\n')}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      await until(() => far.usable === false, 'left out');
      // A few retries fail before the relay comes (1 s, 2 s, …): each outage is said once.
      await new Promise((r) => setTimeout(r, 3500));
      relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${resolverPort}\n    allow_private\n  }\n}`, { registry: testRegistry() });
      await until(() => far.usable !== false, 'back');
      assert.equal(veil.logs.filter((l) => /far: no certificate via relay late/.test(l)).length, 1, veil.logs.join('\n'));
      assert.ok(veil.logs.some((l) => /far: certificate serial \d+.* via relay late/.test(l)), veil.logs.join('\n'));
      const udp = veil.address('udp://127.0.0.1:0');
      assert.equal(firstData(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 9 }), 5000)), '192.0.2.10');
    } finally {
      await relay?.stop();
      await veil.stop();
    }
  });
});

describe('the relay refuses what it must not pass on (dropped, counted, never answered)', () => {
  let relay: TestServer;
  let strict: TestServer;
  let relayPort: number;
  let strictPort: number;
  let echo: dgram.Socket;
  let echoPort: number;
  let target: FakeDns;
  const drops: string[] = [];
  const onRelay = (m: { event: string; reason?: string }) => {
    if (m.event === 'dropped') drops.push(m.reason!);
  };

  before(async () => {
    target = await startFakeDns();
    // A "server" that answers every datagram with the resolver magic, the query's nonce, and
    // twice the query's size: what a relay must never send back.
    echo = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => echo.bind(0, '127.0.0.1', resolve));
    echoPort = echo.address().port;
    echo.on('message', (msg, rinfo) => {
      const big = Buffer.alloc(msg.length * 2);
      RESOLVER_MAGIC.copy(big, 0);
      msg.copy(big, 8, 40, 52);
      echo.send(big, rinfo.port, rinfo.address);
      const wrongNonce = Buffer.alloc(msg.length - 10);
      RESOLVER_MAGIC.copy(wrongNonce, 0);
      echo.send(wrongNonce, rinfo.port, rinfo.address);
    });
    relayPort = await freePort();
    relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${relayPort} ${echoPort} ${target.port}\n    allow_private\n  }\n}`, { registry: testRegistry() });
    strictPort = await freePort();
    strict = await startTestServer(`. {\n  listen relay://127.0.0.3:${strictPort} {\n    allow_ports ${target.port}\n  }\n}`, { registry: testRegistry() });
    relayEvent.subscribe(onRelay);
  });
  after(async () => {
    relayEvent.unsubscribe(onRelay);
    await relay.stop();
    await strict.stop();
    echo.close();
    await target.close();
  });

  const dnscryptLike = (length = 200) => {
    const packet = Buffer.alloc(length, 0x5a);
    packet.write('veilmagc', 0, 'latin1');
    return packet;
  };

  it('each rule', async () => {
    const to = (host: string, port: number, inner: Buffer) => Buffer.concat([relayHeader(host, port), inner]);
    const cases: Array<[string, Buffer, string, number?]> = [
      ['no relay header', buildQuery('example.org', QType.A), 'no relay header'],
      ['short header', ANON_MAGIC, 'no relay header'],
      ['port not on the list', to('127.0.0.1', 53, dnscryptLike()), 'port not allowed'],
      ['the relay itself', to('127.0.0.2', relayPort, dnscryptLike()), 'to the relay itself'],
      ['multicast', to('224.0.0.251', target.port, dnscryptLike()), 'address not allowed'],
      ['documentation range', to('192.0.2.1', target.port, dnscryptLike()), 'address not allowed'],
      ['IPv6 unspecified', to('::', target.port, dnscryptLike()), 'address not allowed'],
      ['a loop through another relay', to('127.0.0.1', target.port, Buffer.concat([relayHeader('127.0.0.1', 443), dnscryptLike()])), 'relay loop'],
      ['QUIC-looking', to('127.0.0.1', target.port, Buffer.concat([Buffer.alloc(8), dnscryptLike()])), 'looks like QUIC'],
      ['too short for DNSCrypt', to('127.0.0.1', target.port, dnscryptLike(40)), 'not DNSCrypt'],
      ['a plain query, not for a certificate', to('127.0.0.1', target.port, buildQuery('example.org', QType.TXT, { id: 9 })), 'not a certificate query'],
      ['loopback without allow_private', to('127.0.0.1', target.port, dnscryptLike()), 'address not allowed', strictPort],
    ];
    for (const [label, packet, reason, port] of cases) {
      drops.length = 0;
      const answer = await sendUdpRaw(port === strictPort ? '127.0.0.3' : '127.0.0.2', port ?? relayPort, packet, 100);
      assert.equal(answer, null, `${label}: answered`);
      assert.deepEqual(drops, [reason], label);
    }
    assert.equal(target.queries.length, 0, 'nothing reached the target');
  });

  it('a certificate query passes; over TCP too', async () => {
    const query = buildCertQuery(PROVIDER, 0x99);
    const answer = await sendUdpRaw('127.0.0.2', relayPort, Buffer.concat([relayHeader('127.0.0.1', target.port), query]), 3000);
    assert.ok(answer, 'answered');
    assert.equal(decode(answer).id, 0x99);
    assert.ok(answer.length <= query.length);
    const [overTcp] = await queryTcp('127.0.0.2', relayPort, [Buffer.concat([relayHeader('127.0.0.1', target.port), buildCertQuery(PROVIDER, 0x9a)])], 3000);
    assert.equal(decode(overTcp!).id, 0x9a);
    assert.equal(target.queries.at(-1)!.transport, 'udp', 'the relay always speaks UDP to the server');
    assert.equal(target.queries.at(-1)!.from.address, '127.0.0.2');
  });

  it('the same packet three times at once: all passed on and answered (a key in flight on one socket goes on another, or on a socket of its own)', async () => {
    const before = target.queries.length;
    const packet = Buffer.concat([relayHeader('127.0.0.1', target.port), buildCertQuery(PROVIDER, 0x77)]);
    const answers = await Promise.all([1, 2, 3].map(() => sendUdpRaw('127.0.0.2', relayPort, packet, 3000)));
    for (const answer of answers) assert.equal(decode(answer!).id, 0x77);
    const seen = target.queries.slice(before);
    assert.equal(seen.length, 3);
    for (const query of seen) assert.equal(query.from.address, '127.0.0.2', 'from the relay’s address, pooled or not');
  });

  it('answers larger than the query, or with another nonce, are never sent back', async () => {
    drops.length = 0;
    const packet = Buffer.concat([relayHeader('127.0.0.1', echoPort), dnscryptLike(300)]);
    const [udpAnswer, tcpAnswer] = await Promise.all([
      sendUdpRaw('127.0.0.2', relayPort, packet, 6500),
      queryTcp('127.0.0.2', relayPort, [packet], 6500).then(
        () => 'answered',
        () => null,
      ),
    ]);
    assert.equal(udpAnswer, null);
    assert.equal(tcpAnswer, null);
    assert.deepEqual(drops, ['answer larger than the query', 'answer larger than the query']);
  });
});

describe('the router', () => {
  const relays = [
    { name: 'a', host: '198.51.100.7', port: 443 },
    { name: 'b', host: '9.9.9.9', port: 443 },
    { name: 'c', host: '10.0.0.1', port: 443 },
    { name: 'v6', host: '2001:db8::1', port: 443 },
  ];

  it('via *: relays of the same family sharing the fewest leading bits with the server', () => {
    assert.deepEqual(farthestRelays('198.51.100.1', relays).map((r) => r.name), ['b', 'c']);
    assert.deepEqual(farthestRelays('9.9.9.1', relays).map((r) => r.name), ['a']);
    assert.deepEqual(farthestRelays('10.1.1.1', relays).map((r) => r.name), ['a']);
    assert.deepEqual(farthestRelays('2001:db9::1', relays).map((r) => r.name), ['v6']);
    assert.deepEqual(farthestRelays('2001:db9::1', relays.slice(0, 3)), []);
  });

  it('never the direct path for a routed server: no relay left, or a provider name relays do not pass, is an error', () => {
    const router = new RelayRouter(new Map([['*', { relays: ['gone-from-the-lists'], wildcard: false }]]), { skipIncompatible: false });
    const server = { name: 's', host: '192.0.2.53', port: 443, providerName: '2.dnscrypt-cert.example.org' };
    assert.throws(() => router.route(server), /no relay available for s \(via gone-from-the-lists: not in the lists\)/);
    const routed = new RelayRouter(new Map([['*', { relays: [relays[0]!], wildcard: false }]]), { skipIncompatible: false });
    assert.equal(routed.route(server).relay?.name, 'a');
    assert.throws(() => routed.route({ ...server, providerName: 'dnscrypt.example.org' }), /provider name dnscrypt\.example\.org does not start with 2\.dnscrypt-cert\./);
  });

  it('a server’s own route before *, a random relay of the route, direct without a route', () => {
    const router = new RelayRouter(
      new Map([
        ['*', { relays: [relays[0]!], wildcard: false }],
        ['mine', { relays: [relays[1]!, relays[2]!], wildcard: false }],
      ]),
      { skipIncompatible: true },
    );
    const info = (name: string) => ({ name, host: '203.0.113.5', port: 443, providerName: PROVIDER });
    assert.equal(router.route(info('other')).relay!.name, 'a');
    assert.equal(router.route(info('other')).skipWhenUnreachable, true);
    const picked = new Set(Array.from({ length: 64 }, () => router.route(info('mine')).relay!.name));
    assert.deepEqual([...picked].sort(), ['b', 'c']);
    assert.equal(new RelayRouter(new Map([['x', { relays, wildcard: false }]]), { skipIncompatible: false }).route(info('y')).relay, null);
  });

  it('fragments_blocked: the route says so for the servers named, and only for them', () => {
    const router = new RelayRouter(new Map([['*', { relays: [relays[0]!], wildcard: false }]]), {
      skipIncompatible: false,
      fragmentsBlocked: new Set(['big']),
    });
    const info = (name: string) => ({ name, host: '203.0.113.5', port: 443, providerName: PROVIDER });
    assert.equal(router.route(info('big')).fragmentsBlocked, true);
    assert.equal(router.route(info('big')).relay!.name, 'a', 'still relayed: never the direct path');
    assert.equal(router.route(info('small')).fragmentsBlocked, false);
  });

  it('says once per change which relays a server goes through', () => {
    const lines: string[] = [];
    const router = new RelayRouter(new Map([['*', { relays: [relays[0]!, relays[1]!], wildcard: false }]]), {
      skipIncompatible: false,
      log: (line) => lines.push(line),
    });
    const info = (name: string) => ({ name, host: '203.0.113.5', port: 443, providerName: PROVIDER });
    for (let i = 0; i < 5; i++) router.route(info('s1'));
    router.route(info('s2'));
    assert.deepEqual(lines, ['s1 via a, b', 's2 via a, b']);
  });
});
