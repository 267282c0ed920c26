/**
 * Fault injection between Veil and its encrypted upstreams (DoT, DoH, DNSCrypt): the fault proxy
 * passes the TLS or DNSCrypt bytes through and, per test, resets a connection mid-answer, closes
 * idle connections from the far side, puts a TLS alert where the answer was, flips a bit in a
 * record, drops or corrupts datagrams; the scripted servers answer SERVFAIL or REFUSED, with a
 * wrong ID or question, send GOAWAY before answering or reset the stream. Expected every time:
 * a retry on a fresh connection or the next upstream answers within the query's deadline,
 * nothing is left pending, the pool recovers once the fault is gone, and no DNS message crosses
 * the proxy in plaintext. (Cases the protocol suites already cover — GOAWAY after an answer,
 * HTTP errors, oversized bodies, silent servers, a server killed under load — are not repeated.)
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { fullRcode } from '../core/dns/wire.js';
import { queryTcp, queryUdp } from '../core/testing/client.js';
import { answerFor as fakeAnswer, startFakeDns, type FakeDns, type FakeQuery } from '../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import type { StreamPool } from '../core/upstream/stream-pool.js';
import type { DohUpstream } from '../plugins/doh/client/upstream.js';
import { dnscryptStamp, makeProviderKeys, type ProviderKeys } from './helpers/dnscrypt.js';
import { answerFor as dohAnswer, startFakeDoh, type FakeDoh } from './helpers/fake-doh.js';
import { startFakeDot, type FakeDot } from './helpers/fake-dot.js';
import { pass, startFaultProxy, type Fault, type FaultProxy } from './helpers/fault-proxy.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

const firstA = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as { data?: string } | undefined)?.data;
const rcode = (b: Buffer) => rcodeName(fullRcode(b));
/** A label that must never be seen in the clear between Veil and its upstreams. */
const CANARY = 'canary-in-the-clear';

/** A TLS fatal alert record (handshake_failure), in the clear as a server sends it before keys. */
const TLS_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
const isAppData = (chunk: Buffer) => chunk[0] === 0x17;

/** How many times an armed fault struck (a test whose fault never struck proves nothing). */
let struck = 0;

/** Faults that strike once (the next answer only) or every time, armed by the test. */
function onAnswers(fate: (chunk: Buffer) => ReturnType<NonNullable<Fault['answer']>>, times = 1): Fault {
  let left = times;
  return {
    answer: (chunk, transport) => {
      if (transport === 'tcp' && !isAppData(chunk)) return chunk;
      if (left <= 0) return chunk;
      left--;
      struck++;
      return fate(chunk);
    },
  };
}
const resetMidAnswer = (times = 1) => onAnswers((chunk) => ({ thenReset: chunk.subarray(0, Math.max(1, chunk.length >> 1)) }), times);
const alertInstead = (times = 1) => onAnswers(() => TLS_ALERT, times);
const flipBit = (times = 1) =>
  onAnswers((chunk) => {
    const out = Buffer.from(chunk);
    out[out.length - 5] = out[out.length - 5]! ^ 0x10;
    return out;
  }, times);

function assertNoPlaintext(proxy: FaultProxy): void {
  const all = Buffer.concat(proxy.sent);
  assert.ok(all.length > 0, 'traffic went through the proxy');
  assert.equal(all.includes(Buffer.from(CANARY.slice(0, 12))), false, 'a query name crossed the proxy in plaintext');
}

let certs: TestCerts;
before(() => {
  certs = makeTestCerts();
});
after(() => rmSync(certs.dir, { recursive: true, force: true }));

async function veilWith(directives: string): Promise<TestServer & { ask(name: string, tcp?: boolean): Promise<Buffer> }> {
  const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n${directives}\n}`, { registry: testRegistry(), queryTimeoutMs: 3000 });
  const udp = veil.address('udp://127.0.0.1:0');
  const tcp = veil.address('tcp://127.0.0.1:0');
  let id = 1;
  return Object.assign(veil, {
    ask: (name: string, overTcp = false) => {
      const query = buildQuery(name, QType.A, { id: id++ & 0xffff });
      return overTcp ? queryTcp(tcp.host, tcp.port, [query], 5000).then(([answer]) => answer!) : queryUdp(udp.host, udp.port, query, 5000);
    },
  });
}

describe('faults between Veil and DoT upstreams', () => {
  let primary: FakeDot;
  let backup: FakeDot;
  let proxy: FaultProxy;
  let veil: Awaited<ReturnType<typeof veilWith>>;
  const answering = (address: string) => (q: FakeQuery) => fakeAnswer(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: address }]);

  before(async () => {
    primary = await startFakeDot({ cert: certs.chain, key: certs.key }, answering('192.0.2.1'));
    backup = await startFakeDot({ cert: certs.chain, key: certs.key }, answering('192.0.2.2'));
    proxy = await startFaultProxy(primary.port);
    const opts = `      server_name dns.test\n      ca ${certs.ca}\n      read_timeout 400ms`;
    veil = await veilWith(
      `  dot {\n    server primary tls://127.0.0.1:${proxy.port} {\n${opts}\n    }\n    server backup tls://127.0.0.1:${backup.port} {\n${opts}\n    }\n  }`,
    );
  });
  after(async () => {
    await veil.stop();
    await proxy.close();
    await primary.close();
    await backup.close();
  });

  const pool = () => (veil.server.config!.blocks[0]!.upstreams.get('primary') as unknown as { pool: StreamPool }).pool;

  async function expectAnswer(label: string, expected: string, tcp = false): Promise<void> {
    const answer = await veil.ask(`${CANARY}.${label}.test`, tcp);
    assert.equal(rcode(answer), 'NOERROR', label);
    assert.equal(firstA(answer), expected, label);
  }

  const cases: Array<[string, () => void, string]> = [
    ['reset mid-answer once: retried on another connection to the same server', () => proxy.setFault(resetMidAnswer()), '192.0.2.1'],
    ['reset mid-answer every time: the backup', () => proxy.setFault(resetMidAnswer(Infinity)), '192.0.2.2'],
    ['a TLS alert where the answer was, once: retried on another connection', () => proxy.setFault(alertInstead()), '192.0.2.1'],
    ['a TLS alert every time: the backup', () => proxy.setFault(alertInstead(Infinity)), '192.0.2.2'],
    ['a bit flipped in the answer record (bad MAC) once: retried on another connection', () => proxy.setFault(flipBit()), '192.0.2.1'],
    ['SERVFAIL from the server: the backup', () => primary.setHandler((q) => fakeAnswer(q, [], { rcode: 'SERVFAIL' })), '192.0.2.2'],
    ['REFUSED from the server: the backup', () => primary.setHandler((q) => fakeAnswer(q, [], { rcode: 'REFUSED' })), '192.0.2.2'],
    [
      'an answer with another ID: not taken; the backup after read_timeout',
      () => primary.setHandler((q) => { const out = answering('192.0.2.1')(q); out.writeUInt16BE((out.readUInt16BE(0) + 1) & 0xffff, 0); return out; }),
      '192.0.2.2',
    ],
    [
      'an answer to another question: not taken; the backup',
      () => primary.setHandler((q) => fakeAnswer({ ...q, packet: { ...q.packet, questions: [{ type: 'A', name: 'other.test' }] } }, [{ type: 'A', name: 'other.test', ttl: 5, data: '192.0.2.9' }])),
      '192.0.2.2',
    ],
  ];
  for (const [label, setup, expected] of cases) {
    it(label, async () => {
      await expectAnswer('warm', '192.0.2.1');
      const before = struck;
      setup();
      try {
        await expectAnswer('fault', expected);
        if (label.includes('once')) assert.equal(struck, before + 1, 'the fault struck');
      } finally {
        proxy.setFault(pass);
        primary.setHandler(answering('192.0.2.1'));
      }
      await expectAnswer('recovered', '192.0.2.1');
      assert.equal(pool().inflight, 0, 'nothing left pending');
    });
  }

  it('a TLS alert instead of the handshake: never connects, nothing sent, the backup answers', async () => {
    proxy.setFault({ answer: (chunk) => (chunk[0] === 0x16 ? TLS_ALERT : chunk) });
    const fresh = await veilWith(`  dot {\n    server primary tls://127.0.0.1:${proxy.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n    server backup tls://127.0.0.1:${backup.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }`);
    try {
      const before = primary.queries.length;
      await expectAnswerFrom(fresh, '192.0.2.2');
      assert.equal(primary.queries.length, before, 'the primary never saw a query');
    } finally {
      proxy.setFault(pass);
      await fresh.stop();
    }
  });

  it('the far side closing idle connections (as Cloudflare does after 10 s): the next query opens a new one, no failover', async () => {
    proxy.setFault({ idleCloseMs: 150 });
    try {
      await expectAnswer('idle1', '192.0.2.1');
      const connections = proxy.seen.connections;
      await new Promise((r) => setTimeout(r, 400));
      await expectAnswer('idle2', '192.0.2.1');
      assert.ok(proxy.seen.connections > connections, 'a new connection was opened');
    } finally {
      proxy.setFault(pass);
    }
  });

  it('many queries in flight when the connection is reset: every one answered', async () => {
    proxy.setFault(resetMidAnswer());
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => veil.ask(`${CANARY}.burst${i}.test`, i % 2 === 0)));
    proxy.setFault(pass);
    for (const answer of answers) assert.equal(rcode(answer), 'NOERROR');
    assert.equal(pool().inflight, 0);
  });

  it('nothing crossed the proxy in plaintext', () => assertNoPlaintext(proxy));

  async function expectAnswerFrom(server: Awaited<ReturnType<typeof veilWith>>, expected: string): Promise<void> {
    const answer = await server.ask(`${CANARY}.handshake.test`);
    assert.equal(rcode(answer), 'NOERROR');
    assert.equal(firstA(answer), expected);
  }
});

describe('faults between Veil and DoH upstreams', () => {
  let primary: FakeDoh;
  let backup: FakeDoh;
  let proxy: FaultProxy;
  let veil: Awaited<ReturnType<typeof veilWith>>;

  before(async () => {
    primary = await startFakeDoh({ cert: certs.chain, key: certs.key });
    primary.behave((req) => ({ body: dohAnswer(req.query, '192.0.2.1') }));
    backup = await startFakeDoh({ cert: certs.chain, key: certs.key });
    backup.behave((req) => ({ body: dohAnswer(req.query, '192.0.2.2') }));
    proxy = await startFaultProxy(primary.port);
    veil = await veilWith(
      `  doh {\n    server primary https://dns.test:${proxy.port}/dns-query {\n      bootstrap 127.0.0.1\n      ca ${certs.ca}\n      timeout 500ms\n    }\n    server backup https://dns.test:${backup.port}/dns-query {\n      bootstrap 127.0.0.1\n      ca ${certs.ca}\n    }\n  }`,
    );
  });
  after(async () => {
    await veil.stop();
    await proxy.close();
    await primary.close();
    await backup.close();
  });

  const normal = () => primary.behave((req) => ({ body: dohAnswer(req.query, '192.0.2.1') }));
  async function expectAnswer(label: string, expected: string | string[]): Promise<void> {
    const answer = await veil.ask(`${CANARY}.${label}.test`);
    assert.equal(rcode(answer), 'NOERROR', label);
    if (Array.isArray(expected)) assert.ok(expected.includes(firstA(answer)!), `${label}: ${firstA(answer)}`);
    else assert.equal(firstA(answer), expected, label);
  }

  // A lost session under a query may be retried on a new one or fail over: either answers.
  const either = ['192.0.2.1', '192.0.2.2'];
  const cases: Array<[string, () => void, string | string[]]> = [
    ['the connection reset mid-answer once: answered', () => proxy.setFault(resetMidAnswer()), either],
    ['the connection reset every time: the backup', () => proxy.setFault(resetMidAnswer(Infinity)), '192.0.2.2'],
    ['a TLS alert where the answer was, once: answered', () => proxy.setFault(alertInstead()), either],
    ['a bit flipped in a record (bad MAC), once: answered', () => proxy.setFault(flipBit()), either],
    ['GOAWAY before answering (the stream not processed): answered', () => primary.behave(() => ({ goawayFirst: true })), either],
    ['the stream reset with REFUSED_STREAM: the backup', () => primary.behave(() => ({ refuse: true })), '192.0.2.2'],
    ['SERVFAIL inside a 200: the backup', () => primary.behave((req) => ({ body: servfail(req.query) })), '192.0.2.2'],
    ['REFUSED inside a 200: the backup', () => primary.behave((req) => ({ body: servfail(req.query, 5) })), '192.0.2.2'],
  ];
  for (const [label, setup, expected] of cases) {
    it(label, async () => {
      await expectAnswer('warm', '192.0.2.1');
      const before = struck;
      setup();
      try {
        await expectAnswer('fault', expected);
        if (label.includes('once')) assert.equal(struck, before + 1, 'the fault struck');
      } finally {
        proxy.setFault(pass);
        normal();
      }
      await expectAnswer('recovered', '192.0.2.1');
    });
  }

  it('the far side closing idle sessions: the next query opens a new one, no failover', async () => {
    proxy.setFault({ idleCloseMs: 150 });
    try {
      await expectAnswer('idle1', '192.0.2.1');
      const connections = proxy.seen.connections;
      await new Promise((r) => setTimeout(r, 400));
      await expectAnswer('idle2', '192.0.2.1');
      assert.ok(proxy.seen.connections > connections, 'a new connection was opened');
    } finally {
      proxy.setFault(pass);
    }
  });

  it('many queries in flight when the session is reset: every one answered; one session left', async () => {
    proxy.setFault(resetMidAnswer());
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => veil.ask(`${CANARY}.burst${i}.test`, i % 2 === 0)));
    proxy.setFault(pass);
    for (const answer of answers) assert.equal(rcode(answer), 'NOERROR');
    const upstream = veil.server.config!.blocks[0]!.upstreams.get('primary') as unknown as DohUpstream;
    assert.ok(upstream.connections.openSessions <= 1, `${upstream.connections.openSessions} sessions open with pool 1`);
  });

  it('nothing crossed the proxy in plaintext', () => assertNoPlaintext(proxy));
});

/** A copy of the query turned into an answer with `rcode` (SERVFAIL by default). */
function servfail(query: Buffer, code = 2): Buffer {
  const out = Buffer.from(query);
  out[2] = out[2]! | 0x80;
  out[3] = (out[3]! & 0xf0) | code;
  return out;
}

describe('faults between Veil and DNSCrypt upstreams', () => {
  let keys: ProviderKeys;
  let primary: TestServer;
  let backup: TestServer;
  let proxy: FaultProxy;
  let veil: Awaited<ReturnType<typeof veilWith>>;
  let tcpOnly: Awaited<ReturnType<typeof veilWith>>;
  const PROVIDER = '2.dnscrypt-cert.faults.test';

  const origins: FakeDns[] = [];
  /** A Veil DNSCrypt resolver whose answers all carry `address`. */
  async function resolver(address: string): Promise<TestServer> {
    const origin = await startFakeDns((q) => fakeAnswer(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: address }]));
    origins.push(origin);
    return startTestServer(`. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${PROVIDER}\n    key ${keys.keyFile}\n  }\n  forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry() });
  }

  before(async () => {
    keys = makeProviderKeys();
    primary = await resolver('192.0.2.1');
    backup = await resolver('192.0.2.2');
    proxy = await startFaultProxy(primary.address('dnscrypt://127.0.0.1:0').port);
    const stamp = (port: number) => dnscryptStamp(`127.0.0.1:${port}`, keys.publicKey, PROVIDER);
    const servers = `    server primary ${stamp(proxy.port)}\n    server backup ${stamp(backup.address('dnscrypt://127.0.0.1:0').port)}`;
    veil = await veilWith(`  dnscrypt {\n${servers}\n  }`);
    tcpOnly = await veilWith(`  dnscrypt {\n${servers}\n    tcp_only\n  }`);
  });
  after(async () => {
    await veil?.stop();
    await tcpOnly?.stop();
    await proxy?.close();
    await primary.stop();
    await backup.stop();
    for (const origin of origins) await origin.close();
    keys.cleanup();
  });

  async function expectAnswer(label: string, expected: string, client = veil): Promise<void> {
    const answer = await client.ask(`${CANARY}.${label}.test`);
    assert.equal(rcode(answer), 'NOERROR', label);
    assert.equal(firstA(answer), expected, label);
  }

  const cases: Array<[string, Fault, string]> = [
    ['answers dropped: the backup after the timeout', { answer: (chunk, transport) => (transport === 'udp' ? null : chunk) }, '192.0.2.2'],
    ['answers corrupted (they fail authentication and are ignored): the backup', { answer: (chunk, transport) => (transport === 'udp' ? flip(chunk) : chunk) }, '192.0.2.2'],
    ['answers cut short: the backup', { answer: (chunk, transport) => (transport === 'udp' ? chunk.subarray(0, 60) : chunk) }, '192.0.2.2'],
    ['(tcp_only) TCP reset mid-answer: the backup', { answer: (chunk, transport) => (transport === 'tcp' ? { thenReset: chunk.subarray(0, 10) } : chunk) }, '192.0.2.2'],
    ['(tcp_only) TCP answers corrupted: the backup', { answer: (chunk, transport) => (transport === 'tcp' ? flip(chunk) : chunk) }, '192.0.2.2'],
  ];
  for (const [label, fault, expected] of cases) {
    it(label, async () => {
      const client = label.startsWith('(tcp_only)') ? tcpOnly : veil;
      await expectAnswer('warm', '192.0.2.1', client);
      proxy.setFault(fault);
      try {
        await expectAnswer('fault', expected, client);
      } finally {
        proxy.setFault(pass);
      }
      await expectAnswer('recovered', '192.0.2.1', client);
    });
  }

  it('nothing crossed the proxy in plaintext', () => assertNoPlaintext(proxy));
});

function flip(chunk: Buffer): Buffer {
  const out = Buffer.from(chunk);
  out[out.length - 1] = out[out.length - 1]! ^ 1;
  return out;
}
