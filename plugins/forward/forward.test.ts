/** forward: plain DNS upstreams, against scriptable fake servers on loopback. */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { fullRcode } from '../../core/dns/wire.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { isPrivateAddress } from '../../core/net/address.js';
import { encodeStamp } from '../../lib/stamps.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { makeTempDir, runVeil } from '../../test/helpers/veil-process.js';

const decode = (b: Buffer) => dnsPacket.decode(b);
const rcode = (b: Buffer) => rcodeName(fullRcode(b));
const a = (b: Buffer) => (decode(b).answers?.[0] as any)?.data;

async function serve(forward: string, extra = ''): Promise<{ veil: TestServer; ask: (name: string, id?: number) => Promise<Buffer> }> {
  const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n  ${forward}\n${extra}}`, { registry: testRegistry(), queryTimeoutMs: 3000 });
  const udp = veil.address('udp://127.0.0.1:0');
  return { veil, ask: (name, id = 1) => queryUdp(udp.host, udp.port, buildQuery(name, QType.A, { id }), 5000) };
}

describe('forward over UDP', () => {
  let origin: FakeDns;
  before(async () => {
    origin = await startFakeDns();
  });
  after(() => origin.close());

  it('forwards with a fresh random ID and gives the client its own ID back', async () => {
    const { veil, ask } = await serve(`forward . 127.0.0.1:${origin.port}`);
    try {
      origin.queries.length = 0;
      for (let i = 0; i < 20; i++) {
        const answer = await ask('x.test', 4242);
        assert.equal(decode(answer).id, 4242);
        assert.equal(a(answer), '203.0.113.1');
      }
      const ids = new Set(origin.queries.map((q) => q.packet.id));
      assert.ok(ids.size >= 15, `upstream IDs should vary, saw ${[...ids].join(',')}`);
      assert.ok(!ids.has(4242) || ids.size > 1);
    } finally {
      await veil.stop();
    }
  });

  it('ignores answers with a wrong ID or question and takes the right one', async () => {
    origin.setHandler((q) => {
      const wrongId = answerFor({ ...q, packet: { ...q.packet, id: (q.packet.id! + 1) & 0xffff } }, [{ type: 'A', name: 'x.test', ttl: 1, data: '192.0.2.66' }]);
      const wrongQuestion = answerFor({ ...q, packet: { ...q.packet, questions: [{ type: 'A', name: 'evil.test' }] } }, [{ type: 'A', name: 'evil.test', ttl: 1, data: '192.0.2.67' }]);
      const socket = dgram.createSocket('udp4');
      socket.send(Buffer.concat([wrongId]), q.from.port, q.from.address, () => socket.send(wrongQuestion, q.from.port, q.from.address, () => socket.close()));
      return new Promise((resolve) => setTimeout(() => resolve(answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 1, data: '192.0.2.1' }])), 50));
    });
    const { veil, ask } = await serve(`forward . 127.0.0.1:${origin.port}`);
    try {
      assert.equal(a(await ask('x.test')), '192.0.2.1');
    } finally {
      await veil.stop();
      origin.setHandler((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 300, data: '203.0.113.1' }]));
    }
  });

  it('asks again over TCP when the UDP answer is truncated', async () => {
    origin.setHandler((q) => {
      const name = q.packet.questions![0]!.name;
      if (q.transport === 'udp') return dnsPacket.encode({ id: q.packet.id, type: 'response', flags: dnsPacket.TRUNCATED_RESPONSE, questions: q.packet.questions });
      return answerFor(q, [{ type: 'A', name, ttl: 1, data: '192.0.2.44' }]);
    });
    const { veil, ask } = await serve(`forward . 127.0.0.1:${origin.port}`);
    try {
      origin.queries.length = 0;
      assert.equal(a(await ask('tc.test')), '192.0.2.44');
      assert.deepEqual(origin.queries.map((q) => q.transport), ['udp', 'tcp']);
    } finally {
      await veil.stop();
    }
  });

  it('tcp:// upstreams use TCP only, pipelined on a kept connection', async () => {
    origin.setHandler((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 1, data: '192.0.2.45' }]));
    const { veil, ask } = await serve(`forward {\n    server o tcp://127.0.0.1:${origin.port}\n  }`);
    try {
      origin.queries.length = 0;
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(`n${i}.test`, i + 1)));
      assert.ok(answers.every((x) => a(x) === '192.0.2.45'));
      assert.ok(origin.queries.every((q) => q.transport === 'tcp'));
      const connections = new Set(origin.queries.map((q) => q.from.port));
      assert.ok(connections.size <= 2, `expected the pool's connections to be reused, saw ${connections.size}`);
    } finally {
      await veil.stop();
    }
  });
});

describe('failover between upstreams', () => {
  let good: FakeDns;
  let silent: FakeDns;
  let failing: FakeDns;
  let deadPort: number;
  before(async () => {
    good = await startFakeDns();
    silent = await startFakeDns(() => null);
    failing = await startFakeDns((q) => answerFor(q, [], { rcode: 'SERVFAIL' }));
    const dead = await startFakeDns();
    deadPort = dead.port;
    await dead.close();
  });
  after(async () => {
    await good.close();
    await silent.close();
    await failing.close();
  });

  it('moves on from a closed port to the next server', async () => {
    const { veil, ask } = await serve(`forward {\n    server dead udp://127.0.0.1:${deadPort}\n    server good udp://127.0.0.1:${good.port}\n  }`);
    try {
      assert.equal(a(await ask('x.test')), '203.0.113.1');
    } finally {
      await veil.stop();
    }
  });

  it('moves on from a silent server after its timeout, within the deadline', async () => {
    const { veil, ask } = await serve(`forward {\n    server silent udp://127.0.0.1:${silent.port}\n    server good udp://127.0.0.1:${good.port}\n    timeout 300ms\n  }`);
    try {
      assert.equal(a(await ask('x.test')), '203.0.113.1');
      assert.ok(silent.queries.length >= 1);
    } finally {
      await veil.stop();
    }
  });

  it('moves on from SERVFAIL; with no better answer returns the upstream\'s own', async () => {
    const { veil, ask } = await serve(`forward {\n    server failing udp://127.0.0.1:${failing.port}\n    server good udp://127.0.0.1:${good.port}\n  }`);
    try {
      assert.equal(a(await ask('x.test')), '203.0.113.1');
    } finally {
      await veil.stop();
    }
    const only = await serve(`forward . 127.0.0.1:${failing.port}`);
    try {
      assert.equal(rcode(await only.ask('x.test')), 'SERVFAIL');
    } finally {
      await only.veil.stop();
    }
  });

  it('answers SERVFAIL when every upstream fails, and logs why', async () => {
    const { veil, ask } = await serve(`forward {\n    server silent udp://127.0.0.1:${silent.port}\n    timeout 200ms\n  }`);
    try {
      assert.equal(rcode(await ask('x.test')), 'SERVFAIL');
      assert.ok(veil.logs.some((l) => /plugin\/upstream: x\.test\. A: udp 127\.0\.0\.1:\d+: no answer within 200ms/.test(l)), veil.logs.join('\n'));
    } finally {
      await veil.stop();
    }
  });

  it('restricts upstreams to their zone (forward FROM)', async () => {
    const other = await startFakeDns((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 1, data: '192.0.2.200' }]));
    const { veil, ask } = await serve(`forward . 127.0.0.1:${good.port}\n  forward corp.test 127.0.0.1:${other.port}`);
    try {
      assert.equal(a(await ask('host.corp.test')), '192.0.2.200');
      assert.equal(a(await ask('example.test')), '203.0.113.1');
    } finally {
      await veil.stop();
      await other.close();
    }
  });
});

describe('forward over TCP from TCP clients', () => {
  it('serves a TCP client through a UDP upstream', async () => {
    const origin = await startFakeDns();
    const veil = await startTestServer(`. {\n  listen tcp://127.0.0.1:0\n  forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry() });
    try {
      const tcp = veil.address('tcp://127.0.0.1:0');
      const answers = await queryTcp(tcp.host, tcp.port, [buildQuery('a.test', QType.A, { id: 1 }), buildQuery('b.test', QType.A, { id: 2 })]);
      assert.deepEqual(answers.map((x) => decode(x).id).sort(), [1, 2]);
    } finally {
      await veil.stop();
      await origin.close();
    }
  });
});

describe('forward with a plain DNS stamp', () => {
  // Other stamps, bad ones, and public addresses without insecure: the setup table (setup.test.ts).
  it('a plain stamp is an upstream like udp://', async () => {
    const origin = await startFakeDns();
    try {
      const stamp = encodeStamp({ protocol: 'plain', props: { dnssec: false, noLogs: false, noFilter: false }, address: `127.0.0.1:${origin.port}` });
      const { veil, ask } = await serve(`forward {\n    server origin ${stamp}\n  }`);
      try {
        assert.equal(a(await ask('stamped.test')), '203.0.113.1');
      } finally {
        await veil.stop();
      }
    } finally {
      await origin.close();
    }
  });
});

describe('forward: which addresses are private enough for plaintext', () => {
  const cases: Array<[string, RegExp]> = [
    ['100.64.0.53', /^Corefile:3:13: forward: 100\.64\.0\.53 \(100\.64\.0\.53\) is in 100\.64\.0\.0\/10, the carrier's NAT network shared with its other customers, not a private network: plaintext DNS to it is a DNS leak/m],
    ['169.254.169.253', /^Corefile:3:13: forward: 169\.254\.169\.253 \(169\.254\.169\.253\) is link-local, not on a private network/m],
    ['[fe80::53]:53', /^Corefile:3:13: forward: \[fe80::53\]:53 \(fe80::53\) is link-local/m],
  ];
  for (const [address, message] of cases) {
    it(`issue 24 low: veil check refuses ${address} without insecure, accepts it with insecure`, async () => {
      const dir = makeTempDir({ Corefile: `. {\n  listen udp://127.0.0.1:0\n  forward . ${address}\n}\n`, 'Insecure.Corefile': `. {\n  listen udp://127.0.0.1:0\n  forward . ${address} insecure\n}\n` });
      try {
        const refused = await runVeil(['check', 'Corefile'], dir);
        assert.equal(refused.code, 1, refused.stderr);
        assert.match(refused.stderr, message);
        const accepted = await runVeil(['check', 'Insecure.Corefile'], dir);
        assert.equal(accepted.code, 0, accepted.stderr);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('loopback, RFC 1918 and fc00::/7 need no insecure; CGNAT and link-local are neither private nor loopback', () => {
    for (const address of ['127.0.0.1', '10.0.0.53', '172.31.255.1', '192.168.1.1', '::1', 'fd12::53', '::ffff:10.1.1.1']) assert.equal(isPrivateAddress(address), true, address);
    for (const address of ['100.64.0.1', '100.127.255.255', '169.254.1.1', 'fe80::1', '172.32.0.1', '9.9.9.9', '2001:db8::1']) assert.equal(isPrivateAddress(address), false, address);
  });
});
