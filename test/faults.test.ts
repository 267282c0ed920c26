/**
 * Fault injection between Veil and plain DNS upstreams: a proxy on loopback drops, delays,
 * corrupts, resets and closes. Expected: failover or retry within the query's deadline, pools
 * recover, every query gets an answer (SERVFAIL at worst), nothing is left pending.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { fullRcode } from '../core/dns/wire.js';
import { queryUdp } from '../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { PlainDnsUpstream } from '../plugins/forward/upstream.js';
import { delay, dropAll, pass, startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { testRegistry } from './helpers/plugins.js';

const a = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as any)?.data as string | undefined;
const rcode = (b: Buffer) => rcodeName(fullRcode(b));

describe('faults between Veil and its upstreams', () => {
  let origin: FakeDns;
  let backup: FakeDns;
  let proxy: FaultProxy;
  let veil: TestServer;
  let ask: (name: string) => Promise<Buffer>;

  before(async () => {
    origin = await startFakeDns((q) => {
      const name = q.packet.questions![0]!.name;
      // Names come in random case (DNS 0x20).
      if (name.toLowerCase().startsWith('big.') && q.transport === 'udp') return dnsPacket.encode({ id: q.packet.id, type: 'response', flags: dnsPacket.TRUNCATED_RESPONSE, questions: q.packet.questions });
      return answerFor(q, [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }]);
    });
    backup = await startFakeDns((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: '192.0.2.2' }]));
    proxy = await startFaultProxy(origin.port);
    veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  forward {\n    server primary udp://127.0.0.1:${proxy.port}\n    server backup udp://127.0.0.1:${backup.port}\n    timeout 400ms\n  }\n}`,
      { registry: testRegistry(), queryTimeoutMs: 3000 },
    );
    const udp = veil.address('udp://127.0.0.1:0');
    let id = 0;
    ask = (name) => queryUdp(udp.host, udp.port, buildQuery(name, QType.A, { id: ++id & 0xffff }), 5000);
  });
  after(async () => {
    await veil.stop();
    await proxy.close();
    await origin.close();
    await backup.close();
  });

  const cases: Array<[string, () => void, string, string]> = [
    ['no fault: the primary answers', () => proxy.setFault(pass), 'x.test', '192.0.2.1'],
    ['dropped answers: the backup answers after the primary\'s timeout', () => proxy.setFault(dropAll), 'x.test', '192.0.2.2'],
    ['a short delay: still the primary', () => proxy.setFault(delay(100)), 'x.test', '192.0.2.1'],
    ['a delay past the attempt timeout: the backup', () => proxy.setFault(delay(1500)), 'x.test', '192.0.2.2'],
    [
      'answers with a wrong ID: ignored, the backup',
      () => proxy.setFault({ answer: (b) => (b.length >= 2 ? Buffer.concat([Buffer.from([b[0]! ^ 0xff, b[1]!]), b.subarray(2)]) : b) }),
      'x.test',
      '192.0.2.2',
    ],
    [
      'answers to another question: ignored, the backup',
      () => proxy.setFault({ answer: (b) => Buffer.from(b.toString('latin1').replace(/\x01x\x04/i, '\x01y\x04'), 'latin1') }),
      'x.test',
      '192.0.2.2',
    ],
    [
      'SERVFAIL from the primary: the backup',
      () => proxy.setFault({ answer: (b) => { const c = Buffer.from(b); c[3] = (c[3]! & 0xf0) | 2; return c; } }),
      'x.test',
      '192.0.2.2',
    ],
    [
      'REFUSED from the primary: the backup',
      () => proxy.setFault({ answer: (b) => { const c = Buffer.from(b); c[3] = (c[3]! & 0xf0) | 5; return c; } }),
      'x.test',
      '192.0.2.2',
    ],
    [
      'a truncated answer, then the TCP connection reset mid-answer once: retried on a new connection',
      () => {
        let resets = 0;
        proxy.setFault({ answer: (b, transport) => (transport === 'tcp' && resets++ === 0 ? 'reset' : b) });
      },
      'big.x.test',
      '192.0.2.1',
    ],
    [
      'the TCP connection reset every time: the backup',
      () => proxy.setFault({ answer: (b, transport) => (transport === 'tcp' ? 'reset' : b) }),
      'big.x.test',
      '192.0.2.2',
    ],
  ];
  for (const [label, setup, name, expected] of cases) {
    it(label, async () => {
      setup();
      assert.equal(a(await ask(name)), expected);
    });
  }

  it('every upstream failing: SERVFAIL within the deadline, never silence', async () => {
    proxy.setFault(dropAll);
    const veil2 = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  forward {\n    server primary udp://127.0.0.1:${proxy.port}\n    timeout 300ms\n  }\n}`, { registry: testRegistry(), queryTimeoutMs: 1000 });
    try {
      const udp = veil2.address('udp://127.0.0.1:0');
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => queryUdp(udp.host, udp.port, buildQuery(`n${i}.test`, QType.A, { id: i }), 5000)));
      assert.ok(answers.every((x) => rcode(x) === 'SERVFAIL'));
      const upstream = veil2.server.config!.blocks[0]!.upstreams.get('primary') as PlainDnsUpstream;
      assert.equal(upstream.inflight, 0, 'nothing left pending');
    } finally {
      await veil2.stop();
    }
  });

  it('the far side closing idle TCP connections: the next query opens a new one', async () => {
    proxy.setFault({ idleCloseMs: 100 });
    const veil2 = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  forward {\n    server primary tcp://127.0.0.1:${proxy.port}\n  }\n}`, { registry: testRegistry() });
    try {
      const udp = veil2.address('udp://127.0.0.1:0');
      assert.equal(a(await queryUdp(udp.host, udp.port, buildQuery('one.test', QType.A, { id: 1 }))), '192.0.2.1');
      const before = proxy.seen.connections;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(a(await queryUdp(udp.host, udp.port, buildQuery('two.test', QType.A, { id: 2 }))), '192.0.2.1');
      assert.ok(proxy.seen.connections > before, 'a new connection was opened');
    } finally {
      await veil2.stop();
      proxy.setFault(pass);
    }
  });
});
