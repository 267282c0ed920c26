/**
 * trace: spans exported through OpenTelemetry's Node SDK to real receivers (OTLP/HTTP protobuf,
 * the default; OTLP/HTTP JSON; gRPC), each decoding what arrived; their attributes and parent
 * links, sampling, the standard OTEL_* environment and the Corefile over it, a DoH caller's
 * traceparent, and the configuration's mistakes.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { buildChain } from '../../core/chain.js';
import { ManualClock } from '../../core/clock.js';
import { RequestContext } from '../../core/context.js';
import { readQuestion } from '../../core/dns/wire.js';
import type { Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { SpanKindNumber, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../test/helpers/otlp.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { makeTempDir, runVeil, startVeil } from '../../test/helpers/veil-process.js';
import { h1Call } from '../../test/helpers/doh-client.js';
import { parseTraceparent, parseTracestate } from '../../core/trace-context.js';
import { startFakeDoh, type FakeDoh } from '../../test/helpers/fake-doh.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';

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

describe('trace: spans over OTLP/HTTP protobuf', () => {
  let receiver: OtlpReceiver;
  let origin: FakeDns;
  let veil: TestServer;
  let deadPort: number;

  before(async () => {
    receiver = await startOtlpReceiver('http/protobuf');
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
    receiver = await startOtlpReceiver('http/protobuf');
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
    const down = await startOtlpReceiver('http/protobuf');
    const url = down.url;
    await down.close();
    const veil = await startTestServer(
      `. {\n listen udp://127.0.0.1:0\n trace {\n endpoint ${url}\n sample 1\n timeout 500ms\n }\n forward . 127.0.0.1:${origin.port}\n}`,
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
  // What parse accepts and refuses is the setup table (setup.test.ts); here, veil check itself.
  const block = (inner: string) => `. {\n listen udp://127.0.0.1:0\n trace {\n${inner}\n }\n}`;

  for (const host of ['203.0.113.5', '100.64.1.1', '[2001:db8::5]']) {
    it(`issue 24 low: veil check refuses a plaintext collector at ${host} without insecure (file:line:col)`, async () => {
      const dir = makeTempDir({ Corefile: block(`endpoint http://${host}:4318/v1/traces`) });
      try {
        const result = await runVeil(['check', 'Corefile'], dir);
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /Corefile:4:10: trace: \S+ is not on loopback or a private network .*telemetry carries the names queried, and http:\/\/ would send them in plaintext\. Use https:\/\/, or end the endpoint line with "insecure"/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('trace: the OTEL_* environment, other protocols, and the Corefile over them (bin/veil)', () => {
  let origin: FakeDns;
  before(async () => {
    origin = await startFakeDns();
  });
  after(async () => {
    await origin.close();
  });

  it('gRPC from the environment alone: endpoint, protocol, service, resource attributes, sampler, headers', async () => {
    const grpc = await startOtlpReceiver('grpc');
    const veil = await startVeil(`. {\n listen udp://127.0.0.1:0\n trace\n forward . 127.0.0.1:${origin.port}\n}`, {}, 'Corefile', undefined, {
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_ENDPOINT: grpc.url,
      OTEL_SERVICE_NAME: 'resolver-from-env',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test,host.role=dns',
      OTEL_TRACES_SAMPLER: 'always_on',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=home',
    });
    try {
      assert.match(veil.stderr(), /over grpc \(OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_ENDPOINT; sampler: OTEL_TRACES_SAMPLER=always_on\)/);
      const udp = veil.address('udp');
      await queryUdp(udp.host, udp.port, buildQuery('env.example', QType.A));
      await veil.stop();
      await grpc.waitFor((spans) => spans.some((s) => s.kind === SpanKindNumber.SERVER));
      const root = grpc.spans.find((s) => s.kind === SpanKindNumber.SERVER)!;
      assert.equal(root.attributes['dns.question.name'], 'env.example');
      assert.equal(root.service, 'resolver-from-env');
      assert.equal(root.resource['deployment.environment'], 'test');
      assert.equal(root.resource['host.role'], 'dns');
      assert.equal(root.resource['service.version'] !== undefined, true);
      assert.equal(grpc.lastHeaders['x-tenant'], 'home');
      assert.equal(grpc.rejected, 0);
    } finally {
      await veil.stop();
      await grpc.close();
    }
  });

  it('the Corefile overrides the environment: protocol, endpoint, service, sample, headers', async () => {
    const grpc = await startOtlpReceiver('grpc');
    const json = await startOtlpReceiver('http/json');
    const veil = await startVeil(
      `. {\n listen udp://127.0.0.1:0\n trace {\n protocol http/json\n endpoint ${json.url}\n service from-corefile\n sample 1\n header x-tenant corefile\n }\n forward . 127.0.0.1:${origin.port}\n}`,
      {},
      'Corefile',
      undefined,
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: grpc.url, OTEL_SERVICE_NAME: 'from-env', OTEL_TRACES_SAMPLER: 'always_off' },
    );
    try {
      const udp = veil.address('udp');
      await queryUdp(udp.host, udp.port, buildQuery('corefile.example', QType.A));
      await veil.stop();
      await json.waitFor((spans) => spans.some((s) => s.kind === SpanKindNumber.SERVER));
      const root = json.spans.find((s) => s.kind === SpanKindNumber.SERVER)!;
      assert.equal(root.service, 'from-corefile');
      assert.equal(json.lastHeaders['x-tenant'], 'corefile');
      assert.equal(grpc.spans.length, 0, 'nothing went where the environment pointed');
    } finally {
      await veil.stop();
      await grpc.close();
      await json.close();
    }
  });

  it("a DoH caller's traceparent: a sampled one is continued (same trace, its span the parent), an unsampled or malformed one is not", async () => {
    const receiver = await startOtlpReceiver('http/protobuf');
    // sample 0: only a caller's sampled traceparent makes a trace (the default sampler is parent-based).
    const veil = await startVeil(`. {\n listen http://127.0.0.1:0/dns-query\n trace {\n endpoint ${receiver.url}\n sample 0\n }\n forward . 127.0.0.1:${origin.port}\n}`);
    try {
      const { port } = veil.address('http');
      const ask = (name: string, headers: Record<string, string>) =>
        h1Call(`http://127.0.0.1:${port}`, { path: `/dns-query?dns=${buildQuery(name, QType.A).toString('base64url')}`, headers });
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parentId = '00f067aa0ba902b7';
      assert.equal((await ask('continued.example', { traceparent: `00-${traceId}-${parentId}-01`, tracestate: 'vendor=abc' })).status, 200);
      assert.equal((await ask('unsampled.example', { traceparent: `00-${traceId}-${parentId}-00` })).status, 200);
      assert.equal((await ask('malformed.example', { traceparent: `00-${'0'.repeat(32)}-${parentId}-01` })).status, 200);
      assert.equal((await ask('nothing.example', {})).status, 200);
      await veil.stop();
      await receiver.waitFor((spans) => spans.some((s) => s.kind === SpanKindNumber.SERVER));
      const roots = receiver.spans.filter((s) => s.kind === SpanKindNumber.SERVER);
      assert.deepEqual(
        roots.map((s) => s.attributes['dns.question.name']),
        ['continued.example'],
      );
      assert.equal(roots[0]!.traceId, traceId);
      assert.equal(roots[0]!.parentSpanId, parentId);
      assert.equal(roots[0]!.traceState, 'vendor=abc');
      assert.equal(roots[0]!.attributes['veil.transport'], 'http');
    } finally {
      await veil.stop();
      await receiver.close();
    }
  });

  const checkWith = async (corefileTrace: string, env: NodeJS.ProcessEnv) => {
    const dir = makeTempDir({ Corefile: `. {\n listen udp://127.0.0.1:0\n trace${corefileTrace}\n}` });
    try {
      return await runVeil(['check', 'Corefile'], dir, 15000, env);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  const badEnv: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector.example:4318' }, /Corefile:3:2: trace: OTEL_EXPORTER_OTLP_ENDPOINT="http:\/\/collector\.example:4318": "collector\.example" is not an IP address/],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otel.example/v1/traces' }, /trace: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https:\/\/otel\.example\/v1\/traces": "otel\.example" is not an IP address/],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' }, /"collector" is not an IP address/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://203.0.113.9:4318' }, /trace: OTEL_EXPORTER_OTLP_ENDPOINT: 203\.0\.113\.9 is not on loopback or a private network .*set OTEL_EXPORTER_OTLP_INSECURE=true/],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' }, /trace: OTEL_EXPORTER_OTLP_PROTOCOL="thrift" is not an OTLP protocol/],
    [{ OTEL_TRACES_SAMPLER: 'jaeger_remote' }, /trace: OTEL_TRACES_SAMPLER="jaeger_remote" is not a sampler Veil knows/],
    [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '5' }, /trace: OTEL_TRACES_SAMPLER_ARG="5" is not a ratio from 0 to 1/],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', https_proxy: 'http://10.0.0.1:3128' }, /trace: https_proxy is set: the gRPC exporter would send through that proxy/],
  ];
  for (const [env, message] of badEnv) {
    it(`veil check refuses ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}`, async () => {
      const result = await checkWith('', env);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr, message);
    });
  }

  it('accepts a public plaintext collector with OTEL_EXPORTER_OTLP_INSECURE=true, and the Corefile endpoint over a bad environment one', async () => {
    assert.equal((await checkWith('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://203.0.113.9:4318', OTEL_EXPORTER_OTLP_INSECURE: 'true' })).code, 0);
    const over = await checkWith(' {\n endpoint http://127.0.0.1:4318\n }', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector.example:4318' });
    assert.equal(over.code, 0, over.stderr);
    assert.equal((await checkWith('', { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', https_proxy: 'http://10.0.0.1:3128', no_grpc_proxy: '127.0.0.1' })).code, 0);
  });
});

describe('trace: a DoH upstream may send traceparent (off by default)', () => {
  let certs: TestCerts;
  let fake: FakeDoh;
  let receiver: OtlpReceiver;
  before(async () => {
    certs = makeTestCerts();
    fake = await startFakeDoh({ cert: certs.chain, key: certs.key });
    receiver = await startOtlpReceiver('http/protobuf');
  });
  after(async () => {
    await fake.close();
    await receiver.close();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  for (const send of [false, true]) {
    it(send ? 'with traceparent: the header names the sampled trace' : 'without the option: no traceparent leaves', async () => {
      fake.requests.length = 0;
      receiver.spans.length = 0;
      const veil = await startTestServer(
        `. {\n listen udp://127.0.0.1:0\n trace {\n endpoint ${receiver.url}\n sample 1\n }\n doh {\n server back https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n${send ? ' traceparent\n' : ''} }\n }\n}`,
        { registry: testRegistry() },
      );
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('traced.example', QType.A));
      await veil.stop();
      assert.equal(fake.requests.length, 1);
      const header = fake.requests[0]!.headers.traceparent as string | undefined;
      if (!send) {
        assert.equal(header, undefined);
        return;
      }
      await receiver.waitFor((spans) => spans.some((s) => s.kind === SpanKindNumber.SERVER));
      const root = receiver.spans.find((s) => s.kind === SpanKindNumber.SERVER)!;
      const upstreamSpan = receiver.spans.find((s) => s.name === 'upstream')!;
      assert.equal(header, `00-${root.traceId}-${upstreamSpan.spanId}-01`);
    });
  }
});

describe('trace: W3C traceparent and tracestate, read strictly', () => {
  const id = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  it('reads version 00 and later versions, the sampled flag', () => {
    assert.deepEqual(parseTraceparent(`00-${id}-${parent}-01`), { traceId: id, parentId: parent, flags: 1 });
    assert.deepEqual(parseTraceparent(`00-${id}-${parent}-00`), { traceId: id, parentId: parent, flags: 0 });
    assert.deepEqual(parseTraceparent(`01-${id}-${parent}-01-extra`), { traceId: id, parentId: parent, flags: 1 });
  });
  for (const bad of [
    `ff-${id}-${parent}-01`,
    `00-${id}-${parent}-01-extra`,
    `00-${'0'.repeat(32)}-${parent}-01`,
    `00-${id}-${'0'.repeat(16)}-01`,
    `00-${id.toUpperCase()}-${parent}-01`,
    `00-${id}-${parent}`,
    `00-${id.slice(1)}-${parent}-01`,
    '',
  ]) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.equal(parseTraceparent(bad), null));
  }
  it('keeps well-formed tracestate members in order, drops malformed ones and duplicates', () => {
    assert.equal(parseTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')!.serialize(), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    assert.equal(parseTracestate('Bad Key=1,ok=2,ok=3,=x,tenant@vendor=v')!.serialize(), 'ok=2,tenant@vendor=v');
    assert.equal(parseTracestate(' , '), undefined);
    assert.equal(parseTracestate(Array.from({ length: 40 }, (_, i) => `k${i}=v`).join(','))!.serialize().split(',').length, 32);
  });
});
