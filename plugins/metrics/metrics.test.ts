/**
 * metrics: the registry's exposition, counters checked exactly after a known query mix, every
 * diagnostics channel turned into its metric (synthetic events where the producer is another
 * plugin), promtool's verdict, statsd over loopback UDP, the shared HTTP endpoint and its
 * bounds, and the configuration.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { ManualClock } from '../../core/clock.js';
import { RequestContext } from '../../core/context.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { readQuestion } from '../../core/dns/wire.js';
import { cacheEvent, dnscryptCertificate, filterBlocked, relayEvent, upstreamConnection, upstreamHealth, upstreamRetry } from '../../core/events.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { Counter, Gauge, Histogram, Registry } from './registry.js';
import { VeilMetrics } from './veil-metrics.js';
import { run, skipUnless } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { ROOT } from '../../test/helpers/veil-process.js';

/** The `serving http://…/metrics` address a test server logged. */
function metricsUrl(veil: TestServer): string {
  const line = veil.logs.find((l) => l.includes('plugin/metrics: serving http://'));
  assert.ok(line, `no metrics endpoint in the log:\n${veil.logs.join('\n')}`);
  return /(http:\/\/\S+\/metrics)/.exec(line)![1]!;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return res.text();
}

/** Sample lines as `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    map.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return map;
}

/** Every sample whose series starts with `prefix`, as an object (for exact comparison). */
function pick(all: Map<string, number>, prefix: string): Record<string, number> {
  return Object.fromEntries([...all].filter(([key]) => key.startsWith(prefix)));
}

const originHandler = (q: Parameters<typeof answerFor>[0]) => {
  const question = q.packet.questions![0]!;
  if (question.name.toLowerCase().startsWith('nx.')) return answerFor(q, [], { rcode: 'NXDOMAIN' });
  if (question.type === 'A') return answerFor(q, [{ type: 'A', name: question.name, ttl: 60, data: '203.0.113.1' }]);
  return answerFor(q, []);
};

describe('metrics registry: the text exposition format', () => {
  it('writes HELP, TYPE, counters, gauges and cumulative histogram buckets', () => {
    const registry = new Registry();
    const counter = registry.add(new Counter('t_requests_total', 'Requests.', ['kind']));
    const gauge = registry.add(new Gauge('t_entries', 'Entries.', []));
    const histogram = registry.add(new Histogram('t_seconds', 'Durations.', ['kind'], [0.1, 1]));
    registry.add(new Counter('t_unused_total', 'Never used: not written.', []));
    counter.labels('a').inc();
    counter.labels('a').inc(2);
    counter.labels('b').inc();
    gauge.labels().set(7);
    const h = histogram.labels('a');
    for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v);
    assert.equal(
      registry.render(),
      [
        '# HELP t_requests_total Requests.',
        '# TYPE t_requests_total counter',
        't_requests_total{kind="a"} 3',
        't_requests_total{kind="b"} 1',
        '# HELP t_entries Entries.',
        '# TYPE t_entries gauge',
        't_entries 7',
        '# HELP t_seconds Durations.',
        '# TYPE t_seconds histogram',
        't_seconds_bucket{kind="a",le="0.1"} 2',
        't_seconds_bucket{kind="a",le="1"} 3',
        't_seconds_bucket{kind="a",le="+Inf"} 4',
        't_seconds_sum{kind="a"} 3.65',
        't_seconds_count{kind="a"} 4',
        '',
      ].join('\n'),
    );
  });

  it('escapes label values and help text', () => {
    const registry = new Registry();
    registry.add(new Counter('t_total', 'Back\\slash\nnewline.', ['v'])).labels('a"b\\c\nd').inc();
    assert.match(registry.render(), /^# HELP t_total Back\\\\slash\\nnewline\.$/m);
    assert.match(registry.render(), /^t_total\{v="a\\"b\\\\c\\nd"\} 1$/m);
  });

  it('stops adding series at the ceiling and keeps counting the others', () => {
    const registry = new Registry();
    const counter = registry.add(new Counter('t_total', 'x', ['v'], 3));
    for (let i = 0; i < 10; i++) counter.labels(`v${i}`).inc();
    counter.labels('v0').inc();
    assert.equal(counter.series.size, 3);
    assert.equal(counter.overflowed, true);
    assert.match(registry.render(), /^t_total\{v="v0"\} 2$/m);
    assert.doesNotMatch(registry.render(), /v9/);
  });

  it('refuses a label count that does not match, and buckets that do not increase', () => {
    assert.throws(() => new Counter('t_total', 'x', ['a', 'b']).labels('only-one'), /takes labels a, b/);
    assert.throws(() => new Histogram('t_seconds', 'x', [], [1, 1]), /must increase/);
  });
});

describe('metrics: counters after a known query mix', () => {
  let origin: FakeDns;
  let veil: TestServer;
  let text: string;

  before(async () => {
    origin = await startFakeDns(originHandler);
    veil = await startTestServer(
      `. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    metrics 127.0.0.1:0
    fakefilter
    fakecache
    hosts {
        192.0.2.10 web.veil.test
    }
    forward . 127.0.0.1:${origin.port}
}
corp.test {
    metrics 127.0.0.1:0
    forward . 127.0.0.1:${origin.port}
}
quiet.test {
    forward . 127.0.0.1:${origin.port}
}`,
      { registry: testRegistry() },
    );
    const udp = veil.address('udp://127.0.0.1:0');
    const tcp = veil.address('tcp://127.0.0.1:0');
    const ask = (name: string, type: number) => queryUdp(udp.host, udp.port, buildQuery(name, type, { id: 7 }));
    for (let i = 0; i < 3; i++) await ask('web.veil.test', QType.A);
    for (let i = 0; i < 2; i++) await ask('a.cached.test', QType.A);
    await ask('x.blocked.test', QType.A);
    await queryTcp(tcp.host, tcp.port, [buildQuery('fwd.example', QType.AAAA, { id: 1 }), buildQuery('fwd.example', QType.AAAA, { id: 2 })]);
    await ask('nx.example', QType.MX);
    await ask('fwd.example', 99);
    await ask('a.corp.test', QType.A);
    await ask('q.quiet.test', QType.A);
    // A response instead of a query (silence), and a NOTIFY (NOTIMP), turned away at the door.
    const response = buildQuery('r.example', QType.A);
    response[2]! |= 0x80;
    assert.equal(await sendUdpRaw(udp.host, udp.port, response, 200), null);
    const notify = buildQuery('n.example', QType.SOA);
    notify[2] = (notify[2]! & 0x87) | (4 << 3);
    assert.ok(await sendUdpRaw(udp.host, udp.port, notify, 1000));
    text = await scrape(metricsUrl(veil));
  });

  after(async () => {
    await veil.stop();
    await origin.close();
  });

  it('counts requests by block, zone, transport and type (other types are "other")', () => {
    assert.deepEqual(pick(samples(text), 'veil_dns_requests_total'), {
      'veil_dns_requests_total{server=".",zone=".",proto="udp",type="A"}': 6,
      'veil_dns_requests_total{server=".",zone=".",proto="tcp",type="AAAA"}': 2,
      'veil_dns_requests_total{server=".",zone=".",proto="udp",type="MX"}': 1,
      'veil_dns_requests_total{server=".",zone=".",proto="udp",type="other"}': 1,
      'veil_dns_requests_total{server="corp.test",zone="corp.test.",proto="udp",type="A"}': 1,
    });
  });

  it('counts responses by rcode and the plugin that answered', () => {
    assert.deepEqual(pick(samples(text), 'veil_dns_responses_total'), {
      'veil_dns_responses_total{server=".",zone=".",rcode="NOERROR",plugin="hosts"}': 3,
      'veil_dns_responses_total{server=".",zone=".",rcode="NOERROR",plugin="fakecache"}': 2,
      'veil_dns_responses_total{server=".",zone=".",rcode="NXDOMAIN",plugin="fakefilter"}': 1,
      'veil_dns_responses_total{server=".",zone=".",rcode="NOERROR",plugin="upstream"}': 3,
      'veil_dns_responses_total{server=".",zone=".",rcode="NXDOMAIN",plugin="upstream"}': 1,
      'veil_dns_responses_total{server="corp.test",zone="corp.test.",rcode="NOERROR",plugin="upstream"}': 1,
    });
  });

  it('observes durations and sizes once per query', () => {
    const all = samples(text);
    assert.equal(all.get('veil_dns_request_duration_seconds_count{server=".",zone=".",type="A"}'), 6);
    assert.equal(all.get('veil_dns_request_duration_seconds_bucket{server=".",zone=".",type="A",le="+Inf"}'), 6);
    assert.equal(all.get('veil_dns_request_size_bytes_count{server=".",zone=".",proto="udp"}'), 8);
    assert.equal(all.get('veil_dns_request_size_bytes_count{server=".",zone=".",proto="tcp"}'), 2);
    assert.equal(all.get('veil_dns_response_size_bytes_count{server=".",zone=".",proto="udp"}'), 8);
    // Every query of this mix fits 0.25 ms … 8 s buckets; the first bucket is 0.25 ms.
    assert.ok(all.has('veil_dns_request_duration_seconds_bucket{server=".",zone=".",type="A",le="0.00025"}'));
    assert.ok(all.has('veil_dns_request_duration_seconds_bucket{server=".",zone=".",type="A",le="4.096"}'));
    const udpQueries: Array<[string, number]> = [
      ...Array<[string, number]>(3).fill(['web.veil.test', QType.A]),
      ...Array<[string, number]>(2).fill(['a.cached.test', QType.A]),
      ['x.blocked.test', QType.A],
      ['nx.example', QType.MX],
      ['fwd.example', 99],
    ];
    const bytes = udpQueries.reduce((sum, [name, type]) => sum + buildQuery(name, type).length, 0);
    assert.equal(all.get('veil_dns_request_size_bytes_sum{server=".",zone=".",proto="udp"}'), bytes);
  });

  it('counts upstream attempts by rcode, cache and filter events', () => {
    const all = samples(text);
    const upstream = `127.0.0.1:${origin.port}`;
    assert.deepEqual(pick(all, 'veil_upstream_requests_total'), {
      [`veil_upstream_requests_total{server=".",upstream="${upstream}",protocol="udp",rcode="NOERROR"}`]: 3,
      [`veil_upstream_requests_total{server=".",upstream="${upstream}",protocol="udp",rcode="NXDOMAIN"}`]: 1,
      [`veil_upstream_requests_total{server="corp.test",upstream="${upstream}",protocol="udp",rcode="NOERROR"}`]: 1,
    });
    assert.equal(all.get(`veil_upstream_request_duration_seconds_count{server=".",upstream="${upstream}",protocol="udp"}`), 4);
    assert.equal(all.get(`veil_upstream_healthy{upstream="${upstream}"}`), 1);
    assert.deepEqual(pick(all, 'veil_cache_'), {
      'veil_cache_hits_total{server="."}': 2,
      'veil_cache_misses_total{server="."}': 7,
      'veil_cache_entries{server="."}': 2,
      'veil_cache_evictions_total{server="."}': 0,
      'veil_cache_prefetch_total{server="."}': 0,
      'veil_cache_served_stale_total{server="."}': 0,
    });
    assert.deepEqual(pick(all, 'veil_filter_blocked_total'), { 'veil_filter_blocked_total{server=".",list="test-list"}': 1 });
  });

  it('counts what the door turned away, by reason', () => {
    assert.deepEqual(pick(samples(text), 'veil_dns_rejected_total'), {
      'veil_dns_rejected_total{proto="udp",reason="malformed"}': 1,
      'veil_dns_rejected_total{proto="udp",reason="notimp"}': 1,
    });
  });

  it('counts nothing for a block without metrics, and no query name or client address appears', () => {
    assert.doesNotMatch(text, /quiet/);
    assert.doesNotMatch(text, /web\.veil\.test|cached\.test|fwd\.example/);
    assert.doesNotMatch(text, /127\.0\.0\.1"(?!.*upstream)/);
  });

  it('has process metrics and build info', () => {
    const all = samples(text);
    assert.ok(all.get('process_cpu_seconds_total')! > 0);
    assert.ok(all.get('process_resident_memory_bytes')! > 1e6);
    assert.ok(all.get('nodejs_heap_total_bytes')! >= all.get('nodejs_heap_used_bytes')!);
    assert.ok(all.has('nodejs_external_memory_bytes'));
    assert.ok(all.get('process_start_time_seconds')! > 1.6e9);
    assert.ok(all.has('veil_event_loop_lag_seconds{quantile="0.99"}'));
    assert.ok(all.has('veil_event_loop_lag_seconds_count'));
    const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(all.get(`veil_build_info{version="${version}",node="${process.versions.node}"}`), 1);
  });

  it('blocks naming the same address share one endpoint', () => {
    assert.equal(veil.logs.filter((l) => l.includes('plugin/metrics: serving http://')).length, 1);
  });

  it('passes promtool check metrics', { skip: skipUnless('promtool') }, () => {
    const result = run('promtool', ['check', 'metrics'], 10_000, text);
    assert.equal(result.code, 0, `promtool: ${result.stdout}${result.stderr}`);
  });
});

describe('metrics: every channel', () => {
  let origin: FakeDns;
  let veil: TestServer;
  let url: string;
  const ctxFor = (server: string) => {
    const query = buildQuery('e.example', QType.A);
    return new RequestContext({
      query,
      question: readQuestion(query),
      edns: null,
      client: { address: '127.0.0.1', port: 1, family: 'IPv4' },
      transport: 'udp',
      datagram: true,
      server,
      zone: '.',
      clock: new ManualClock(),
      timeoutMs: 1000,
    });
  };

  before(async () => {
    origin = await startFakeDns(originHandler);
    const dead = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => dead.bind(0, '127.0.0.1', resolve));
    const deadPort = dead.address().port;
    dead.close();
    veil = await startTestServer(
      `. {
    listen udp://127.0.0.1:0
    metrics 127.0.0.1:0
    forward {
        server dead udp://127.0.0.1:${deadPort}
        server origin udp://127.0.0.1:${origin.port}
        timeout 500ms
    }
}`,
      { registry: testRegistry() },
    );
    url = metricsUrl(veil);
  });
  after(async () => {
    await veil.stop();
    await origin.close();
  });

  it('failovers and errors from a real failed attempt', async () => {
    const udp = veil.address('udp://127.0.0.1:0');
    await queryUdp(udp.host, udp.port, buildQuery('f.example', QType.A));
    const all = samples(await scrape(url));
    assert.equal(all.get('veil_upstream_failovers_total{server=".",upstream="dead"}'), 1);
    assert.equal(all.get('veil_upstream_failovers_total{server=".",upstream="origin"}'), 0);
    assert.equal(all.get('veil_upstream_requests_total{server=".",upstream="dead",protocol="udp",rcode="unavailable"}'), 1);
    assert.equal(all.get('veil_upstream_requests_total{server=".",upstream="origin",protocol="udp",rcode="NOERROR"}'), 1);
  });

  it('retries from a real truncated answer', async () => {
    origin.setHandler((q) => (q.transport === 'udp' ? dnsPacket.encode({ id: q.packet.id, type: 'response', flags: dnsPacket.TRUNCATED_RESPONSE, questions: q.packet.questions }) : originHandler(q)));
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('tc.example', QType.A));
    } finally {
      origin.setHandler(originHandler);
    }
    const all = samples(await scrape(url));
    assert.equal(all.get('veil_upstream_retries_total{upstream="origin",protocol="udp",reason="truncated"}'), 1);
  });

  it('health, connections, DNSCrypt certificates, relays, cache and filter events (synthetic)', async () => {
    upstreamHealth.publish({ upstream: 'origin', protocol: 'udp', healthy: false });
    upstreamConnection.publish({ upstream: 'tls-1', protocol: 'dot', event: 'created', open: 1, idle: 1 });
    upstreamConnection.publish({ upstream: 'tls-1', protocol: 'dot', event: 'reused', open: 1, idle: 0 });
    upstreamConnection.publish({ upstream: 'tls-1', protocol: 'dot', event: 'created', open: 2, idle: 1 });
    upstreamConnection.publish({ upstream: 'tls-1', protocol: 'dot', event: 'stale-closed', open: 1, idle: 1 });
    dnscryptCertificate.publish({ upstream: 'dc-1', serial: 7, esVersion: 2, expiresAt: 1_900_000_000 });
    relayEvent.publish({ event: 'forwarded', transport: 'udp' });
    relayEvent.publish({ event: 'forwarded', transport: 'udp' });
    relayEvent.publish({ event: 'dropped', transport: 'tcp', reason: 'not-dnscrypt' });
    upstreamRetry.publish({ upstream: 'tls-1', protocol: 'dot', reason: 'connection-lost' });
    for (const event of ['insert', 'evict', 'prefetch', 'stale', 'hit'] as const) cacheEvent.publish({ server: '.', event, entries: 5 });
    cacheEvent.publish({ server: 'not-a-metrics-block', event: 'hit', entries: 1 });
    filterBlocked.publish({ ctx: ctxFor('.'), list: 'ads' });
    filterBlocked.publish({ ctx: ctxFor('.'), list: 'ads' });
    filterBlocked.publish({ ctx: ctxFor('elsewhere'), list: 'ads' });
    const all = samples(await scrape(url));
    assert.equal(all.get('veil_upstream_healthy{upstream="origin"}'), 0);
    assert.equal(all.get('veil_upstream_healthy{upstream="dead"}'), 1);
    assert.deepEqual(pick(all, 'veil_upstream_connection'), {
      'veil_upstream_connections{upstream="tls-1",state="open"}': 1,
      'veil_upstream_connections{upstream="tls-1",state="idle"}': 1,
      'veil_upstream_connection_events_total{upstream="tls-1",protocol="dot",event="created"}': 2,
      'veil_upstream_connection_events_total{upstream="tls-1",protocol="dot",event="reused"}': 1,
      'veil_upstream_connection_events_total{upstream="tls-1",protocol="dot",event="stale-closed"}': 1,
    });
    assert.equal(all.get('veil_dnscrypt_cert_expiry_timestamp_seconds{upstream="dc-1"}'), 1_900_000_000);
    assert.equal(all.get('veil_relay_forwarded_total{transport="udp"}'), 2);
    assert.equal(all.get('veil_relay_dropped_total{transport="tcp",reason="not-dnscrypt"}'), 1);
    assert.equal(all.get('veil_upstream_retries_total{upstream="tls-1",protocol="dot",reason="connection-lost"}'), 1);
    assert.deepEqual(pick(all, 'veil_cache_'), {
      'veil_cache_hits_total{server="."}': 1,
      'veil_cache_misses_total{server="."}': 0,
      'veil_cache_entries{server="."}': 5,
      'veil_cache_evictions_total{server="."}': 1,
      'veil_cache_prefetch_total{server="."}': 1,
      'veil_cache_served_stale_total{server="."}': 1,
    });
    assert.deepEqual(pick(all, 'veil_filter_blocked_total'), { 'veil_filter_blocked_total{server=".",list="ads"}': 2 });
  });

  it('passes promtool check metrics with every family present', { skip: skipUnless('promtool') }, async () => {
    const text = await scrape(url);
    const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    assert.ok(families.length >= 28, `only ${families.length} families`);
    const result = run('promtool', ['check', 'metrics'], 10_000, text);
    assert.equal(result.code, 0, `promtool: ${result.stdout}${result.stderr}`);
  });
});

describe('metrics: statsd', () => {
  it('pushes counters, gauges and timings over UDP in bounded datagrams', async () => {
    const receiver = dgram.createSocket('udp4');
    const packets: string[] = [];
    receiver.on('message', (msg) => packets.push(msg.toString('utf8')));
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    const config = `. {
    listen udp://127.0.0.1:0
    metrics 127.0.0.1:0 {
        statsd 127.0.0.1:${receiver.address().port} test.veil
    }
    hosts {
        192.0.2.10 web.veil.test
    }
}`;
    const veil = await startTestServer(config, { registry: testRegistry() });
    const lines = () => packets.flatMap((p) => p.split('\n'));
    const counted = (name: string) => lines().filter((l) => l.startsWith(`${name}:`) && l.endsWith('|c')).reduce((sum, l) => sum + Number(l.slice(name.length + 1, -2)), 0);
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A));
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A));
      const until = Date.now() + 5000;
      while (counted('test.veil.dns_requests.root.root.udp.A') < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.equal(counted('test.veil.dns_requests.root.root.udp.A'), 2);
      assert.equal(counted('test.veil.dns_responses.root.root.NOERROR.hosts'), 2);
      const timings = lines().filter((l) => l.startsWith('test.veil.dns_request_duration_seconds.root.root.A:'));
      assert.equal(timings.length, 2);
      for (const timing of timings) assert.match(timing, /:\d+(\.\d+)?\|ms$/);
      assert.ok(lines().some((l) => /^test\.veil\.process_resident_memory_bytes:\d+\|g$/.test(l)));
      for (const packet of packets) assert.ok(Buffer.byteLength(packet) <= 1432, `datagram of ${Buffer.byteLength(packet)} bytes`);

      // A reload shares the sink: the counts go on, and nothing is sent twice.
      assert.equal(await veil.reload(config), true);
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A));
      const later = Date.now() + 5000;
      while (counted('test.veil.dns_requests.root.root.udp.A') < 3 && Date.now() < later) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await veil.stop();
      receiver.close();
    }
    // Stopping flushes once more; nothing is counted twice.
    assert.equal(counted('test.veil.dns_requests.root.root.udp.A'), 3);
    assert.equal(lines().filter((l) => l.startsWith('test.veil.dns_request_duration_seconds.root.root.A:')).length, 3);
  });
});

describe('metrics: the HTTP endpoint', () => {
  let veil: TestServer;
  let url: string;
  before(async () => {
    veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0\n hosts {\n 192.0.2.1 a.test\n }\n}`, { registry: testRegistry() });
    url = metricsUrl(veil);
  });
  after(() => veil.stop());

  it('answers only GET and HEAD on /metrics', async () => {
    assert.equal((await fetch(url.replace('/metrics', '/nope'))).status, 404);
    const post = await fetch(url, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${url}?x=1`)).status, 200);
  });

  it('closes the connection of a client sending oversized headers, and keeps serving', async () => {
    const { hostname, port } = new URL(url);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), hostname);
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('close', () => resolve(data));
      socket.on('error', () => resolve(data));
      socket.setTimeout(5000, () => reject(new Error('the server kept the connection')));
      socket.write(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    assert.doesNotMatch(reply, /^HTTP\/1\.1 200/);
    assert.equal((await fetch(url)).status, 200);
  });

  it('issue 24 low: one client holds at most 8 connections; idle ones make room for its scrape', async () => {
    const { hostname, port } = new URL(url);
    const open = (): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const socket = net.connect(Number(port), hostname, () => resolve(socket));
        socket.on('error', () => {});
        socket.once('connect', () => socket.off('error', reject));
        socket.once('error', reject);
      });
    const held: Array<{ socket: net.Socket; closed: Promise<void> }> = [];
    try {
      for (let i = 0; i < 64; i++) {
        const socket = await open();
        held.push({ socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) });
      }
      // The scrape is this client's 65th connection: the oldest idle one makes room for it, as
      // each connection past the eighth did for itself.
      assert.equal((await fetch(url)).status, 200);
      // Closed by the server, oldest first (the newest seven may be closed later by the 2 s header deadline).
      await Promise.all(held.slice(0, 64 - 7).map((h) => h.closed));
    } finally {
      for (const h of held) h.socket.destroy();
    }
  });

  it('keeps the endpoint and the counts across a reload, and closes it on stop', async () => {
    const udp = veil.address('udp://127.0.0.1:0');
    await queryUdp(udp.host, udp.port, buildQuery('a.test', QType.A));
    const before = samples(await scrape(url)).get('veil_dns_requests_total{server=".",zone=".",proto="udp",type="A"}')!;
    assert.equal(await veil.reload(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0\n hosts {\n 192.0.2.2 a.test\n }\n}`), true);
    await queryUdp(udp.host, udp.port, buildQuery('a.test', QType.A));
    assert.equal(samples(await scrape(url)).get('veil_dns_requests_total{server=".",zone=".",proto="udp",type="A"}'), before + 1);
  });

  it('fails to start when the address is taken', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        startTestServer(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:${port}\n}`, { registry: testRegistry() }),
        (err: Error & { code?: string }) => err.code === 'VEIL_ERR_LISTEN' && /metrics: cannot listen on 127\.0\.0\.1:\d+: the address is in use/.test(err.message),
      );
    } finally {
      holder.close();
    }
  });
});

describe('metrics: the docs and the dashboard', () => {
  const families = (() => {
    const metrics = new VeilMetrics();
    metrics.close();
    return metrics.registry.all.map((f) => f.name);
  })();
  const doc = readFileSync(path.join(ROOT, 'docs/observability.md'), 'utf8');
  const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  const expressions = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);

  it('docs/observability.md explains every metric, and only those', () => {
    for (const name of families) assert.ok(doc.includes(`\`${name}\``), `${name} is not in docs/observability.md`);
    const documented = [...doc.matchAll(/^\| `((?:veil|process|nodejs)_[a-z_]+)`/gm)].map((m) => m[1]!);
    for (const name of documented) assert.ok(families.includes(name), `docs/observability.md lists ${name}, which does not exist`);
  });

  it('the Grafana dashboard is JSON with a panel for every metric', () => {
    assert.ok(expressions.length > 20);
    for (const name of families) assert.ok(expressions.some((e) => e.includes(name)), `no panel shows ${name}`);
  });
});
