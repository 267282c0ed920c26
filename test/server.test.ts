/**
 * The server in-process over real loopback sockets: the door (malformed input, rcodes,
 * truncation), routing by zone, the chain (order from data, failures contained), TCP pipelining.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../core/dns/constants.js';
import { fullRcode } from '../core/dns/wire.js';
import { buildQuery } from '../core/dns/message.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { checkCorefile } from '../core/testing/config.js';
import { expectConfigError, testRegistry, tracer } from './helpers/plugins.js';

const decode = (b: Buffer) => dnsPacket.decode(b);
const rcode = (b: Buffer) => rcodeName(fullRcode(b));

describe('the door: what reaches the chain and what does not', () => {
  let veil: TestServer;
  let udp: { host: string; port: number };
  before(async () => {
    veil = await startTestServer('. {\n  listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n  big 10\n}', { registry: testRegistry() });
    udp = veil.address('udp://127.0.0.1:0');
  });
  after(() => veil.stop());

  it('answers a normal query', async () => {
    const answer = decode(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 7 })));
    assert.equal(answer.id, 7);
    assert.equal((answer.answers![0] as any).data, '192.0.2.10');
  });

  it('is silent for fewer than 12 bytes and for responses', async () => {
    assert.equal(await sendUdpRaw(udp.host, udp.port, Buffer.from([1, 2, 3])), null);
    const response = buildQuery('web.veil.test', QType.A);
    response[2]! |= 0x80;
    assert.equal(await sendUdpRaw(udp.host, udp.port, response), null);
  });

  const formerr: Array<[string, Buffer]> = [
    ['QDCOUNT 0', Buffer.from([0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['a header promising a question that is not there', Buffer.from([0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])],
    ['a compression pointer loop in the question', Buffer.from([0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1])],
    ['two questions', Buffer.concat([buildQuery('a.test', 1, { id: 0xabcd }).subarray(0, 4), Buffer.from([0, 2]), buildQuery('a.test', 1).subarray(6)])],
    ['an OPT record that runs past the end', Buffer.concat([buildQuery('a.test', 1, { id: 0xabcd, edns: true }).subarray(0, -2)])],
  ];
  for (const [label, bytes] of formerr) {
    it(`FORMERR for ${label}`, async () => {
      const answer = await sendUdpRaw(udp.host, udp.port, bytes, 1000);
      assert.ok(answer, 'expected an answer');
      assert.equal(answer.readUInt16BE(0), 0xabcd);
      assert.equal(answer[3]! & 0x0f, 1);
      assert.ok(answer[2]! & 0x80);
    });
  }

  it('NOTIMP for other opcodes, BADVERS for EDNS version 1', async () => {
    const notify = buildQuery('a.test', 1, { id: 9 });
    notify[2] = (4 << 3) | 1;
    assert.equal((await queryUdp(udp.host, udp.port, notify))[3]! & 0x0f, 4);
    const v1 = buildQuery('a.test', 1, { id: 10, edns: true });
    v1[v1.length - 5] = 1; // the version byte of the OPT TTL field
    assert.equal(rcode(await queryUdp(udp.host, udp.port, v1)), 'BADVERS');
  });

  it('survives random bytes and still answers', async () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(random() * 100) }, () => Math.floor(random() * 256)));
      await sendUdpRaw(udp.host, udp.port, bytes, 5);
    }
    const answer = decode(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 11 })));
    assert.equal(answer.answers!.length, 1);
  });

  it('truncates for UDP clients (512 without EDNS, their size with it) and not over TCP', async () => {
    const plain = await queryUdp(udp.host, udp.port, buildQuery('big.test', QType.TXT, { id: 1 }));
    assert.ok(plain.length <= 512);
    assert.ok(decode(plain).flag_tc);
    const edns = await queryUdp(udp.host, udp.port, buildQuery('big.test', QType.TXT, { id: 2, edns: { udpSize: 4096 } }));
    assert.ok(!decode(edns).flag_tc, 'fits in 4096');
    assert.ok(edns.length > 1232);
    const small = await queryUdp(udp.host, udp.port, buildQuery('big.test', QType.TXT, { id: 3, edns: { udpSize: 1232 } }));
    assert.ok(small.length <= 1232 && decode(small).flag_tc);
    const tcp = veil.address('tcp://127.0.0.1:0');
    const [full] = await queryTcp(tcp.host, tcp.port, [buildQuery('big.test', QType.TXT, { id: 4 })]);
    assert.ok(!decode(full!).flag_tc && full!.length > 2000);
  });

  it('REFUSED for names no block serves and for names no upstream covers', async () => {
    assert.equal(rcode(await queryUdp(udp.host, udp.port, buildQuery('unknown.test', QType.A, { id: 12 }))), 'REFUSED');
  });
});

describe('TCP (RFC 7766)', () => {
  let veil: TestServer;
  let tcp: { host: string; port: number };
  before(async () => {
    veil = await startTestServer('. {\n  listen tcp://127.0.0.1:0 {\n    idle_timeout 500ms\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n    192.0.2.20 slow.veil.test\n  }\n  slow 150\n}', { registry: testRegistry() });
    tcp = veil.address('tcp://127.0.0.1:0');
  });
  after(() => veil.stop());

  it('answers 20 pipelined queries on one connection, each with its own ID', async () => {
    const queries = Array.from({ length: 20 }, (_, i) => buildQuery('web.veil.test', QType.A, { id: 1000 + i }));
    const answers = await queryTcp(tcp.host, tcp.port, queries);
    assert.deepEqual(answers.map((a) => decode(a).id).sort(), queries.map((q) => q.readUInt16BE(0)).sort());
    for (const answer of answers) assert.equal((decode(answer).answers![0] as any).data, '192.0.2.10');
  });

  it('answers out of order: a slow query does not hold up a fast one', async () => {
    // slow.other.test is not in hosts, so it reaches the slow plugin and waits there
    const answers = await queryTcp(tcp.host, tcp.port, [buildQuery('slow.other.test', QType.A, { id: 1 }), buildQuery('web.veil.test', QType.A, { id: 2 })]);
    assert.deepEqual(answers.map((a) => decode(a).id), [2, 1]);
  });

  it('closes a connection whose message never completes, and keeps serving', async () => {
    const net = await import('node:net');
    const socket = net.connect(tcp.port, tcp.host);
    await new Promise((r) => socket.once('connect', r));
    socket.write(Buffer.from([0xff, 0xff, 1, 2, 3])); // promises 65535 bytes, sends 3
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    assert.ok(closed, 'server closed the half-sent connection');
    const [answer] = await queryTcp(tcp.host, tcp.port, [buildQuery('web.veil.test', QType.A, { id: 5 })]);
    assert.equal(decode(answer!).id, 5);
  });
});

describe('connection limits', () => {
  it('idle connections make room for new clients at max_connections', async () => {
    const veil = await startTestServer('. {\n  listen tcp://127.0.0.1:0 {\n    max_connections 50\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}', { registry: testRegistry() });
    const tcp = veil.address('tcp://127.0.0.1:0');
    const net = await import('node:net');
    const idle = await Promise.all(
      Array.from({ length: 200 }, () => new Promise<import('node:net').Socket>((resolve) => {
        const s = net.connect(tcp.port, tcp.host, () => resolve(s));
        s.on('error', () => {});
      })),
    );
    try {
      const [answer] = await queryTcp(tcp.host, tcp.port, [buildQuery('web.veil.test', QType.A, { id: 77 })]);
      assert.equal(decode(answer!).id, 77);
      const stillOpen = idle.filter((s) => !s.destroyed && s.readyState === 'open').length;
      assert.ok(stillOpen <= 200);
    } finally {
      for (const s of idle) s.destroy();
      await veil.stop();
    }
  });
});

describe('default listeners', () => {
  it('a block without listen serves UDP and TCP on its key\'s port, on every interface', async () => {
    const { freePort } = await import('./helpers/peers.js');
    const port = await freePort();
    const veil = await startTestServer(`.:${port} {\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}`, { registry: testRegistry() });
    try {
      assert.deepEqual([...veil.server.bound.keys()].sort(), [`tcp://0.0.0.0:${port}`, `udp://0.0.0.0:${port}`]);
      const answer = decode(await queryUdp('127.0.0.1', port, buildQuery('web.veil.test', QType.A, { id: 1 })));
      assert.equal((answer.answers![0] as any).data, '192.0.2.10');
      const [viaTcp] = await queryTcp('127.0.0.1', port, [buildQuery('web.veil.test', QType.A, { id: 2 })]);
      assert.equal(decode(viaTcp!).id, 2);
    } finally {
      await veil.stop();
    }
  });
});

describe('routing by zone', () => {
  it('sends each name to the block with the longest matching zone', async () => {
    const origin = await startFakeDns();
    const corp = await startFakeDns();
    const veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${origin.port}\n}\ncorp.test {\n  forward . 127.0.0.1:${corp.port}\n}\nsub.corp.test {\n  hosts {\n    192.0.2.99 a.sub.corp.test\n  }\n}`,
      { registry: testRegistry() },
    );
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('www.example.test', QType.A, { id: 1 }));
      await queryUdp(udp.host, udp.port, buildQuery('host.CORP.test', QType.A, { id: 2 }));
      const sub = decode(await queryUdp(udp.host, udp.port, buildQuery('a.sub.corp.test', QType.A, { id: 3 })));
      assert.deepEqual(origin.queries.map((q) => q.packet.questions![0]!.name.toLowerCase()), ['www.example.test']);
      assert.deepEqual(corp.queries.map((q) => q.packet.questions![0]!.name.toLowerCase()), ['host.corp.test']);
      assert.equal((sub.answers![0] as any).data, '192.0.2.99');
    } finally {
      await veil.stop();
      await origin.close();
      await corp.close();
    }
  });
});

describe('the chain', () => {
  it('runs plugins in the order of core/order.ts, whatever the Corefile order', async () => {
    const trail: string[] = [];
    const registry = testRegistry([tracer('t_first', trail, { before: 'log' }), tracer('t_second', trail, { after: 'hosts' }), tracer('t_middle', trail, { after: 'errors' })]);
    const veil = await startTestServer('. {\n  listen udp://127.0.0.1:0\n  t_second\n  t_middle\n  t_first\n  hosts {\n    192.0.2.1 x.test\n  }\n}', { registry });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('y.test', QType.A, { id: 1 }));
      assert.deepEqual(trail, ['t_first', 't_middle', 't_second']);
    } finally {
      await veil.stop();
    }
  });

  it('a plugin that throws makes that query SERVFAIL, is logged with its name, and others still work', async () => {
    const veil = await startTestServer('. {\n  listen udp://127.0.0.1:0\n  hosts {\n    192.0.2.1 ok.test\n    192.0.2.2 bad.test\n  }\n  boom bad.test.\n}', { registry: testRegistry() });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      // hosts answers first for known names; boom sits after hosts, so ask for a type hosts passes on
      assert.equal(rcode(await queryUdp(udp.host, udp.port, buildQuery('bad2.test', QType.A, { id: 1 }))), 'REFUSED');
      const veil2 = await startTestServer('. {\n  listen udp://127.0.0.1:0\n  boom bad.test.\n  hosts {\n    192.0.2.1 ok.test\n  }\n}', { registry: testRegistry() });
      try {
        const u2 = veil2.address('udp://127.0.0.1:0');
        assert.equal(rcode(await queryUdp(u2.host, u2.port, buildQuery('bad.test', QType.A, { id: 2 }))), 'SERVFAIL');
        assert.ok(veil2.logs.some((l) => l.includes('plugin/boom: bad.test. A: kaboom')), veil2.logs.join('\n'));
        assert.equal(rcode(await queryUdp(u2.host, u2.port, buildQuery('ok.test', QType.A, { id: 3 }))), 'NOERROR');
      } finally {
        await veil2.stop();
      }
    } finally {
      await veil.stop();
    }
  });
});

describe('configuration checks before anything binds', () => {
  const cases: Array<[string, string, number, number, RegExp]> = [
    ['an unknown directive, with a suggestion', '. {\n  forwrd . 127.0.0.1\n}', 2, 3, /unknown directive "forwrd" \(did you mean "forward"\?\)/],
    ['a bad listen address', '. {\n  listen udp://127.0.0.1:99999\n}', 2, 10, /listen: port 99999 is out of range/],
    ['a hostname as listen address', '. {\n  listen udp://localhost:53\n}', 2, 10, /listen: "localhost" is not an IP address/],
    ['an unknown listen scheme', '. {\n  listen quic://127.0.0.1:53\n}', 2, 10, /listen: unknown listener scheme "quic"/],
    ['an option no listed scheme knows', '. {\n  listen udp://127.0.0.1:53 {\n    idle_timout 5s\n  }\n}', 3, 5, /listen: unknown option "idle_timout"/],
    ['a zone served twice on one listener', '. {\n  listen udp://127.0.0.1:5353\n}\n. {\n  listen udp://127.0.0.1:5353\n}', 4, 1, /zone \. is served twice/],
    ['a plaintext upstream on the internet', '. {\n  forward . 9.9.9.9\n}', 2, 13, /forward: 9\.9\.9\.9 \(9\.9\.9\.9\) is on the public internet: plaintext DNS to it is a DNS leak/],
    ['a forward upstream given by name', '. {\n  forward {\n    server a udp://dns.example:53\n  }\n}', 3, 14, /forward: "dns.example" is not an IP address/],
    ['a tls upstream in forward', '. {\n  forward {\n    server a tls://192.0.2.1:853\n  }\n}', 3, 14, /use the dot plugin/],
    ['an unknown option', '. {\n  forward . 127.0.0.1 {\n    timout 2s\n  }\n}', 3, 5, /forward: unknown option "timout" \(did you mean "timeout"\?\)/],
    ['a bad duration', '. {\n  forward . 127.0.0.1 {\n    timeout 2parsecs\n  }\n}', 3, 13, /forward: "2parsecs" is not a duration/],
    ['an address where the zone goes', '. {\n  forward 127.0.0.1:53\n}', 2, 11, /first argument is the zone/],
    ['hosts without entries', '. {\n  hosts\n}', 2, 3, /hosts: no entries/],
    ['a bad hosts entry', '. {\n  hosts {\n    192.0.2.300 a.test\n  }\n}', 3, 5, /hosts: "192.0.2.300" is not an IP address/],
    ['no server blocks', '# nothing\n', 1, 1, /no server blocks/],
  ];
  for (const [label, text, line, column, message] of cases) {
    it(`refuses ${label}`, async () => {
      await expectConfigError(text, line, column, message);
    });
  }

  it('accepts insecure on a public plaintext upstream', async () => {
    await checkCorefile('. {\n  forward {\n    server quad9 udp://9.9.9.9:53 insecure\n  }\n}', { registry: testRegistry() });
    await checkCorefile('. {\n  forward . 9.9.9.9 1.1.1.1 insecure\n}', { registry: testRegistry() });
  });
});

describe('reload', () => {
  let origin: FakeDns;
  before(async () => {
    origin = await startFakeDns();
  });
  after(() => origin.close());

  it('swaps the configuration on the same sockets, and keeps the old one when the new one is bad', async () => {
    const first = '. {\n  listen udp://127.0.0.1:0\n  hosts {\n    192.0.2.1 a.test\n  }\n}';
    const veil = await startTestServer(first, { registry: testRegistry() });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      const ask = async () => decode(await queryUdp(udp.host, udp.port, buildQuery('a.test', QType.A, { id: 1 })));
      assert.equal((((await ask()).answers![0]) as any).data, '192.0.2.1');
      assert.equal(await veil.reload(first.replace('192.0.2.1', '192.0.2.2')), true);
      assert.equal((((await ask()).answers![0]) as any).data, '192.0.2.2');
      assert.equal(await veil.reload(first.replace('hosts', 'hostz')), false);
      assert.ok(veil.logs.some((l) => l.includes('reload failed') && l.includes('unknown directive "hostz"')));
      assert.equal((((await ask()).answers![0]) as any).data, '192.0.2.2', 'old configuration still serves');
      // A new listener that cannot bind (port taken by the one we have, different protocol key) keeps the old.
      const taken = udp.port;
      assert.equal(await veil.reload(`${first}\nother.test {\n  listen udp://127.0.0.1:${taken}\n}`), false);
      assert.equal((((await ask()).answers![0]) as any).data, '192.0.2.2');
    } finally {
      await veil.stop();
    }
  });
});
