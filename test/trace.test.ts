/**
 * trace: spans exported over OTLP/HTTP to a real receiver (an HTTP server decoding the JSON the
 * exporter sends), their attributes and parent links, sampling, and the configuration.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { buildChain } from '../core/chain.js';
import { ManualClock } from '../core/clock.js';
import { RequestContext } from '../core/context.js';
import { readQuestion } from '../core/dns/wire.js';
import type { Next, Plugin, PluginDefinition } from '../core/plugin.js';
import { queryTcp, queryUdp } from '../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { buildConfig } from '../core/server.js';
import { MemoryLogger } from '../core/logger.js';
import { SpanKindNumber, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './helpers/otlp.js';
import { testRegistry } from './helpers/plugins.js';
import { makeTempDir, runVeil } from './helpers/veil-process.js';

/** A UDP port nobody listens on: queries to it fail at once (ICMP port unreachable). */
async function closedUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

function corefile(receiver: OtlpReceiver, forward: string, traceOptions = 'sample 1'): string {
  return `. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    trace {
        endpoint ${receiver.url}
        service veil-test
        ${traceOptions}
    }
    errors
    fakefilter
    fakecache
    hosts {
        192.0.2.10 web.veil.test
    }
    ${forward}
}`;
}

/** The spans of the trace whose server span asked for `name`, each with its parent. */
function traceOf(spans: ReceivedSpan[], name: string): { root: ReceivedSpan; all: ReceivedSpan[]; byName: (n: string) => ReceivedSpan[] } {
  const roots = spans.filter((s) => s.kind === SpanKindNumber.SERVER && s.attributes['dns.question.name'] === name);
  assert.equal(roots.length, 1, `one server span for ${name}, got ${roots.length}`);
  const root = roots[0]!;
  const all = spans.filter((s) => s.traceId === root.traceId);
  return { root, all, byName: (n) => all.filter((s) => s.name === n) };
}

/** Span names from the root down to `span`, following parentSpanId. */
function pathTo(all: ReceivedSpan[], span: ReceivedSpan): string[] {
  const path = [span.name];
  let current = span;
  while (current.parentSpanId) {
    const parent = all.find((s) => s.spanId === current.parentSpanId);
    assert.ok(parent, `the parent of ${current.name} is in the same trace`);
    path.unshift(parent.name);
    current = parent;
  }
  return path;
}

describe('trace: spans over OTLP/HTTP', () => {
  let receiver: OtlpReceiver;
  let origin: FakeDns;
  let veil: TestServer;
  let deadPort: number;

  before(async () => {
    receiver = await startOtlpReceiver();
    origin = await startFakeDns();
    deadPort = await closedUdpPort();
    veil = await startTestServer(
      corefile(
        receiver,
        `forward {
        server dead udp://127.0.0.1:${deadPort}
        server origin udp://127.0.0.1:${origin.port}
        timeout 500ms
    }`,
      ),
      { registry: testRegistry() },
    );
    const udp = veil.address('udp://127.0.0.1:0');
    const tcp = veil.address('tcp://127.0.0.1:0');
    await queryUdp(udp.host, udp.port, buildQuery('forwarded.example', QType.A, { id: 1 }));
    await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 2 }));
    await queryTcp(tcp.host, tcp.port, [buildQuery('www.cached.test', QType.A, { id: 3 })]);
    await queryUdp(udp.host, udp.port, buildQuery('ads.blocked.test', QType.AAAA, { id: 4 }));
    // Stopping flushes what the batch processor holds.
    await veil.stop();
    await receiver.waitFor((spans) => spans.filter((s) => s.kind === SpanKindNumber.SERVER).length >= 4);
  });

  after(async () => {
    await receiver.close();
    await origin.close();
  });

  it('exports a server span per query with the DNS attributes, under the service name', () => {
    const { root } = traceOf(receiver.spans, 'forwarded.example');
    assert.equal(root.name, 'dns query');
    assert.equal(root.parentSpanId, '');
    assert.equal(root.service, 'veil-test');
    assert.equal(root.attributes['dns.question.type'], 'A');
    assert.equal(root.attributes['dns.response.code'], 'NOERROR');
    assert.equal(root.attributes['network.transport'], 'udp');
    assert.equal(root.attributes['veil.cache.hit'], false);
    assert.equal(root.attributes['veil.blocked'], false);
    assert.equal(root.attributes['veil.upstream'], 'origin');
    assert.equal(root.attributes['veil.upstream.attempts'], 2);
    assert.equal(receiver.rejected, 0);
  });

  it('does not record the client address unless asked', () => {
    for (const span of receiver.spans) assert.equal(span.attributes['client.address'], undefined);
  });

  it('a forwarded query after a failed attempt: a span per link and a client span per attempt, each under the upstream stage', () => {
    const { all, byName } = traceOf(receiver.spans, 'forwarded.example');
    const [dead] = byName('exchange dead');
    const [good] = byName('exchange origin');
    assert.ok(dead && good, `attempt spans present: ${all.map((s) => s.name).join(', ')}`);
    assert.deepEqual(pathTo(all, dead), ['dns query', 'errors', 'fakefilter', 'fakecache', 'hosts', 'upstream', 'exchange dead']);
    assert.deepEqual(pathTo(all, good), ['dns query', 'errors', 'fakefilter', 'fakecache', 'hosts', 'upstream', 'exchange origin']);
    assert.equal(dead.kind, SpanKindNumber.CLIENT);
    assert.equal(dead.attributes['veil.attempt'], 1);
    assert.equal(dead.status, 2, 'the failed attempt is an error');
    assert.equal(dead.attributes['server.address'], '127.0.0.1');
    assert.equal(dead.attributes['server.port'], deadPort);
    assert.equal(good.attributes['veil.attempt'], 2);
    assert.equal(good.attributes['veil.upstream.protocol'], 'udp');
    assert.equal(good.attributes['dns.response.code'], 'NOERROR');
    assert.equal(good.attributes['server.port'], origin.port);
    assert.notEqual(good.status, 2);
    assert.ok(dead.endNs <= good.startNs, 'the retry starts after the failed attempt ends');
    const [upstream] = byName('upstream');
    assert.equal(upstream!.attributes['veil.answered'], true);
    assert.equal(byName('hosts')[0]!.attributes['veil.answered'], false);
  });

  it('a query hosts answers: spans down to hosts, none for upstreams', () => {
    const { root, all, byName } = traceOf(receiver.spans, 'web.veil.test');
    assert.deepEqual(all.map((s) => s.name).sort(), ['dns query', 'errors', 'fakecache', 'fakefilter', 'hosts'].sort());
    const hosts = byName('hosts')[0]!;
    assert.deepEqual(pathTo(all, hosts), ['dns query', 'errors', 'fakefilter', 'fakecache', 'hosts']);
    assert.equal(hosts.attributes['veil.answered'], true);
    assert.equal(root.attributes['veil.answered_by'], 'hosts');
  });

  it('a cached query (synthetic cache plugin): cache hit on the server span, no spans below the cache', () => {
    const { root, all, byName } = traceOf(receiver.spans, 'www.cached.test');
    assert.equal(root.attributes['veil.cache.hit'], true);
    assert.equal(root.attributes['network.transport'], 'tcp');
    assert.deepEqual(all.map((s) => s.name).sort(), ['dns query', 'errors', 'fakecache', 'fakefilter'].sort());
    assert.deepEqual(pathTo(all, byName('fakecache')[0]!), ['dns query', 'errors', 'fakefilter', 'fakecache']);
  });

  it('a blocked query (synthetic filter plugin): blocked and the list on the server span', () => {
    const { root, all } = traceOf(receiver.spans, 'ads.blocked.test');
    assert.equal(root.attributes['veil.blocked'], true);
    assert.equal(root.attributes['veil.blocked_by'], 'test-list');
    assert.equal(root.attributes['dns.response.code'], 'NXDOMAIN');
    assert.equal(root.attributes['dns.question.type'], 'AAAA');
    assert.deepEqual(all.map((s) => s.name).sort(), ['dns query', 'errors', 'fakefilter'].sort());
  });

  it('every span of a trace ends within its parent', () => {
    for (const span of receiver.spans) {
      if (!span.parentSpanId) continue;
      const parent = receiver.spans.find((s) => s.spanId === span.parentSpanId)!;
      assert.ok(span.startNs >= parent.startNs && span.endNs <= parent.endNs, `${span.name} inside ${parent.name}`);
    }
  });
});

describe('trace: sampling and privacy', () => {
  let receiver: OtlpReceiver;
  let origin: FakeDns;
  before(async () => {
    receiver = await startOtlpReceiver();
    origin = await startFakeDns();
  });
  after(async () => {
    await receiver.close();
    await origin.close();
  });

  it('sample 0 exports nothing', async () => {
    const veil = await startTestServer(corefile(receiver, `forward . 127.0.0.1:${origin.port}`, 'sample 0'), { registry: testRegistry() });
    const udp = veil.address('udp://127.0.0.1:0');
    for (let i = 0; i < 20; i++) await queryUdp(udp.host, udp.port, buildQuery(`n${i}.example`, QType.A, { id: i }));
    await veil.stop();
    assert.equal(receiver.spans.length, 0);
  });

  it('client_address records the client IP and port', async () => {
    const veil = await startTestServer(corefile(receiver, `forward . 127.0.0.1:${origin.port}`, 'sample 1\n        client_address'), { registry: testRegistry() });
    const udp = veil.address('udp://127.0.0.1:0');
    await queryUdp(udp.host, udp.port, buildQuery('who.example', QType.A));
    await veil.stop();
    await receiver.waitFor((spans) => spans.some((s) => s.kind === SpanKindNumber.SERVER));
    const root = receiver.spans.find((s) => s.kind === SpanKindNumber.SERVER)!;
    assert.equal(root.attributes['client.address'], '127.0.0.1');
    assert.equal(typeof root.attributes['client.port'], 'number');
  });

  it('names the answering link even when it is the first after trace', async () => {
    receiver.spans.length = 0;
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n trace {\n endpoint ${receiver.url}\n sample 1\n }\n hosts {\n 192.0.2.1 first.test\n }\n}`, {
      registry: testRegistry(),
    });
    const udp = veil.address('udp://127.0.0.1:0');
    await queryUdp(udp.host, udp.port, buildQuery('first.test', QType.A));
    await veil.stop();
    await receiver.waitFor((spans) => spans.length === 2);
    const { root, byName } = traceOf(receiver.spans, 'first.test');
    assert.equal(root.attributes['veil.answered_by'], 'hosts');
    assert.equal(byName('hosts')[0]!.attributes['veil.answered'], true);
    assert.equal(byName('hosts')[0]!.parentSpanId, root.spanId);
  });

  it('a collector that is down costs nothing but a warning: queries are answered', async () => {
    const down = await startOtlpReceiver();
    const url = down.url;
    await down.close();
    const veil = await startTestServer(
      `. {\n listen udp://127.0.0.1:0\n trace {\n endpoint ${url}\n sample 1\n }\n forward . 127.0.0.1:${origin.port}\n}`,
      { registry: testRegistry() },
    );
    const udp = veil.address('udp://127.0.0.1:0');
    const answer = await queryUdp(udp.host, udp.port, buildQuery('up.example', QType.A, { id: 9 }));
    assert.equal(answer.readUInt16BE(0), 9);
    await veil.stop();
    assert.ok(veil.logs.some((l) => /plugin\/trace: could not export 1 span\(s\)|plugin\/trace: could not export \d+ span/.test(l)), veil.logs.join('\n'));
  });
});

describe('trace: the chain hook', () => {
  const ctxFor = (name: string) =>
    new RequestContext({
      query: buildQuery(name, QType.A),
      question: readQuestion(buildQuery(name, QType.A)),
      edns: null,
      client: { address: '127.0.0.1', port: 1, family: 'IPv4' },
      transport: 'udp',
      datagram: true,
      server: '.',
      zone: '.',
      clock: new ManualClock(),
      timeoutMs: 1000,
    });
  const passing = (name: string, seen: string[]): Plugin => ({ name, serve: (ctx, next) => (seen.push(name), next(ctx)) });
  const answer: Next = async () => Buffer.alloc(12);

  it('wraps every link after the wrapping plugin, the upstream stage included, and none before it', async () => {
    const wrappedNames: string[] = [];
    const seen: string[] = [];
    const wrapper: Plugin = {
      name: 'wrapper',
      wrapLink: (name, link, outermost) => {
        wrappedNames.push(`${name}${outermost ? ' (outermost)' : ''}`);
        return (ctx) => (seen.push(`>${name}`), link(ctx));
      },
    };
    const setupOnly: Plugin = { name: 'setup' };
    const chain = buildChain([passing('first', seen), wrapper, setupOnly, passing('a', seen), passing('b', seen)], answer);
    assert.deepEqual(wrappedNames.sort(), ['a (outermost)', 'b', 'upstream']);
    const ctx = ctxFor('x.example');
    await chain(ctx);
    assert.deepEqual(seen, ['first', '>a', 'a', '>b', 'b', '>upstream']);
    assert.equal(ctx.meta.answeredBy, 'upstream');
  });

  it('notes the link that answered, and forgets it when a link below fails', async () => {
    const answering: Plugin = { name: 'answers', serve: async () => Buffer.alloc(12) };
    const chain = buildChain([passing('a', []), answering, passing('never', [])], answer);
    const ctx = ctxFor('x.example');
    await chain(ctx);
    assert.equal(ctx.meta.answeredBy, 'answers');

    const rescuing: Plugin = { name: 'rescue', serve: (ctx, next) => next(ctx).catch(() => Buffer.alloc(12)) };
    const failingAfterAnswer: Plugin = {
      name: 'late',
      serve: async (ctx, next) => {
        await next(ctx);
        throw new Error('fails on the way up');
      },
    };
    const chain2 = buildChain([rescuing, failingAfterAnswer], answer);
    const ctx2 = ctxFor('y.example');
    await chain2(ctx2);
    assert.equal(ctx2.meta.answeredBy, 'rescue');
  });

  it('a block without trace leaves ctx.span undefined and builds no wrapped chain', async () => {
    let span: unknown = 'unset';
    const probe: PluginDefinition<null> = {
      name: 'probe',
      position: { after: 'hosts' },
      parse: () => null,
      create: () => ({ name: 'probe', serve: (ctx, next) => ((span = ctx.span), next(ctx)) }),
    };
    const origin = await startFakeDns();
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n probe\n forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry([probe]) });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('p.example', QType.A));
      assert.equal(span, undefined);
      assert.ok(veil.server.config!.blocks[0]!.plugins.every((p) => p.wrapLink === undefined));
    } finally {
      await veil.stop();
      await origin.close();
    }
  });
});

describe('trace: configuration', () => {
  const check = (text: string) => buildConfig(parseCorefileText(text, 'Corefile'), { registry: testRegistry(), logger: new MemoryLogger(), clock: new ManualClock() });
  const block = (inner: string) => `. {\n listen udp://127.0.0.1:0\n trace {\n${inner}\n }\n}`;

  it('accepts the documented options', () => {
    check(block('endpoint http://127.0.0.1:4318/v1/traces\nsample 0.5\nservice resolver-1\nclient_address'));
    check(`. {\n listen udp://127.0.0.1:0\n trace\n}`);
    check(block('endpoint https://[::1]:4318'));
    check(block('endpoint http://192.168.1.20:4318/v1/traces'));
    check(block('endpoint https://203.0.113.5:4318/v1/traces'));
    check(block('endpoint http://203.0.113.5:4318/v1/traces insecure'));
  });

  const bad: Array<[string, RegExp]> = [
    ['endpoint http://collector.example:4318/v1/traces', /Corefile:4:10: trace: "collector.example" is not an IP address/],
    ['endpoint udp://127.0.0.1:4318', /trace: the endpoint speaks OTLP over HTTP/],
    ['sample 2', /Corefile:4:8: trace: sample takes a ratio from 0 to 1/],
    ['sample 1%', /sample takes a ratio/],
    ['service', /service takes 1 argument, got 0/],
    ['client_address yes', /client_address takes 0 arguments/],
    ['endpont http://127.0.0.1:4318', /unknown option "endpont" \(did you mean "endpoint"\?\)/],
    ['endpoint http://127.0.0.1:4318 plaintext', /Corefile:4:32: trace: unexpected "plaintext" \(the only word allowed after the URL is "insecure"\)/],
  ];
  for (const [line, message] of bad) {
    it(`refuses "${line}"`, () => assert.throws(() => check(block(line)), message));
  }

  for (const host of ['203.0.113.5', '100.64.1.1', '[2001:db8::5]']) {
    it(`issue 24 low: veil check refuses a plaintext collector at ${host} without insecure (file:line:col)`, async () => {
      const dir = makeTempDir({ Corefile: block(`endpoint http://${host}:4318/v1/traces`) });
      try {
        const result = await runVeil(['check', 'Corefile'], dir);
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /Corefile:4:10: trace: \S+ is not on loopback or a private network .*spans carry the names queried, and http:\/\/ would send them in plaintext\. Use https:\/\/, or end the line with "insecure"/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('refuses arguments and a second trace', () => {
    assert.throws(() => check(`. {\n listen udp://127.0.0.1:0\n trace http://127.0.0.1:4318\n}`), /trace takes 0 arguments/);
    assert.throws(() => check(`. {\n listen udp://127.0.0.1:0\n trace\n trace\n}`), /trace is given twice/);
  });
});
