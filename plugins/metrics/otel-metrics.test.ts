/**
 * metrics { otlp }: the same numbers as /metrics, pushed through OpenTelemetry's Node SDK to
 * real receivers (gRPC from the Corefile; OTLP/HTTP protobuf from the environment), decoded,
 * and compared with a scrape taken after the same known queries.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedPoint } from '../../test/helpers/otlp.js';
import { testRegistry } from '../../test/helpers/plugins.js';

function metricsUrl(veil: TestServer): string {
  const line = veil.logs.find((l) => l.includes('plugin/metrics: serving http://'))!;
  return /(http:\/\/\S+\/metrics)/.exec(line)![1]!;
}

async function scrapeValue(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

/** The newest point of `metric` whose attributes include `match`. */
function latest(points: ReceivedPoint[], metric: string, match: Record<string, string>): ReceivedPoint | undefined {
  return points.filter((p) => p.metric === metric && Object.entries(match).every(([k, v]) => p.attributes[k] === v)).at(-1);
}

for (const protocol of ['grpc', 'http/protobuf'] as const) {
  describe(`metrics otlp over ${protocol}`, () => {
    let receiver: OtlpReceiver;
    let origin: FakeDns;
    let veil: TestServer;
    const saved = { ...process.env };

    before(async () => {
      receiver = await startOtlpReceiver(protocol);
      origin = await startFakeDns();
      // gRPC is configured in the Corefile; OTLP/HTTP protobuf (the default protocol) by the environment.
      const otlp = protocol === 'grpc' ? `otlp ${receiver.metricsUrl} {\n protocol grpc\n interval 1s\n service metrics-test\n }` : 'otlp {\n interval 1s\n }';
      if (protocol !== 'grpc') {
        process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = receiver.metricsUrl;
        process.env.OTEL_SERVICE_NAME = 'metrics-from-env';
      }
      try {
        veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0 {\n ${otlp}\n }\n forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry() });
      } finally {
        delete process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
        if (saved.OTEL_SERVICE_NAME === undefined) delete process.env.OTEL_SERVICE_NAME;
      }
      const udp = veil.address('udp://127.0.0.1:0');
      for (let i = 0; i < 5; i++) await queryUdp(udp.host, udp.port, buildQuery(`n${i}.example`, QType.A, { id: i }));
      for (let i = 0; i < 3; i++) await queryUdp(udp.host, udp.port, buildQuery(`m${i}.example`, QType.AAAA, { id: i }));
    });

    after(async () => {
      await veil?.stop();
      await receiver.close();
      await origin.close();
    });

    it('counters, histograms and gauges arrive with the values /metrics shows', async () => {
      const wanted = { server: '.', zone: '.', proto: 'udp', type: 'A' };
      await receiver.waitForPoints((points) => (latest(points, 'veil_dns_requests', wanted)?.value ?? 0) >= 5);
      const scraped = await scrapeValue(metricsUrl(veil), 'veil_dns_requests_total{server=".",zone=".",proto="udp",type="A"}');
      assert.equal(scraped, 5);
      const sum = latest(receiver.points, 'veil_dns_requests', wanted)!;
      assert.equal(sum.kind, 'sum');
      assert.equal(sum.value, 5);
      assert.equal(latest(receiver.points, 'veil_dns_requests', { ...wanted, type: 'AAAA' })!.value, 3);
      const histogram = latest(receiver.points, 'veil_dns_request_duration_seconds', { server: '.', zone: '.', type: 'A' })!;
      assert.equal(histogram.kind, 'histogram');
      assert.equal(histogram.count, 5);
      assert.equal(histogram.bounds![0], 0.00025);
      assert.equal(histogram.bucketCounts!.reduce((a, b) => a + b, 0), 5);
      assert.equal(latest(receiver.points, 'veil_upstream_requests', { upstream: '127.0.0.1:' + origin.port })?.value ?? latest(receiver.points, 'veil_upstream_requests', {})!.value, 8);
      assert.equal(latest(receiver.points, 'process_resident_memory_bytes', {})!.kind, 'gauge');
      assert.equal(latest(receiver.points, 'veil_event_loop_lag_seconds', { quantile: '0.5' })!.kind, 'gauge');
      assert.equal(receiver.points[0]!.service, protocol === 'grpc' ? 'metrics-test' : 'metrics-from-env');
      assert.equal(receiver.rejected, 0);
    });
  });
}
