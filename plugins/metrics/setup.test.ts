/** metrics: its address and every option (statsd, otlp, dashboard), good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

const loopback = { host: '127.0.0.1', port: 9153 };

setupTable('metrics', [
  builds('metrics', { address: loopback, statsd: null, otlp: null, dashboard: null }),
  builds('metrics 127.0.0.1 {\nstatsd 127.0.0.1:8125 veil.dns\n}', { address: loopback, statsd: { host: '127.0.0.1', port: 8125, prefix: 'veil.dns' } }),
  builds('metrics 0.0.0.0:9154 {\nstatsd 127.0.0.1 edge.dns\ndashboard\n}', { address: { host: '0.0.0.0', port: 9154 }, statsd: { host: '127.0.0.1', port: 8125, prefix: 'edge.dns' }, dashboard: loopback }),
  builds('metrics [::1]:9154 {\nstatsd [::1]:9125\ndashboard 127.0.0.1:9200\n}', { address: { host: '::1', port: 9154 }, statsd: { host: '::1', port: 9125, prefix: 'veil' }, dashboard: { host: '127.0.0.1', port: 9200 } }),
  builds('metrics {\notlp\n}', { otlp: { export: { protocol: 'http/protobuf', url: 'http://127.0.0.1:4318/v1/metrics', headers: {}, timeoutMs: 10_000, source: 'Corefile and defaults' }, intervalMs: 60_000, service: undefined } }),
  builds('metrics {\notlp http://10.0.0.9:4317 {\nprotocol grpc\nheader X-Tenant a\nheader x-key b\ntimeout 2s\ninterval 10s\nservice edge\n}\n}', (o) => {
    assert.deepEqual(o.otlp, { export: { protocol: 'grpc', url: 'http://10.0.0.9:4317', headers: { 'x-tenant': 'a', 'x-key': 'b' }, timeoutMs: 2000, source: 'Corefile and defaults' }, intervalMs: 10_000, service: 'edge' });
  }),
  builds('metrics {\notlp http://203.0.113.1:4318 insecure\n}', (o) => assert.equal(o.otlp.export.url, 'http://203.0.113.1:4318/v1/metrics')),
  builds('metrics {\notlp https://203.0.113.5:4317 {\nprotocol grpc\n}\ndashboard [::1]:8080\n}', (o) => assert.deepEqual([o.otlp.export.url, o.dashboard], ['https://203.0.113.5:4317', { host: '::1', port: 8080 }])),
  refused('metrics :9153', 1, 9, /":9153" has no IP address: write 127\.0\.0\.1:9153 \(loopback\) or 0\.0\.0\.0:9153 \(every interface\)$/),
  refused('metrics metrics.example:9153', 1, 9, /"metrics\.example" is not an IP address/),
  refused('metrics 127.0.0.1:70000', 1, 9, /port 70000 is out of range/),
  refused('metrics 127.0.0.1:9153 127.0.0.1:9154', 1, 24, /metrics takes 0 to 1 arguments, got 2$/),
  refused('metrics {\nstatsd statsd.example:8125\n}', 2, 8, /"statsd\.example" is not an IP address/),
  refused('metrics {\nstatsd 127.0.0.1:8125 bad/prefix\n}', 2, 23, /"bad\/prefix" is not a statsd prefix \(letters, digits, "-" and "_", in parts joined by dots\)$/),
  refused('metrics {\nstatsd\n}', 2, 1, /statsd takes 1 to 2 arguments, got 0$/),
  refused('metrics {\nstatsd 127.0.0.1 {\n}\n}', 2, 18, /statsd takes no block$/),
  refused('metrics {\notlp http://203.0.113.1:4318\n}', 2, 6, /203\.0\.113\.1 is not on loopback or a private network/),
  refused('metrics {\notlp http://127.0.0.1 insecure more\n}', 2, 32, /otlp takes 0 to 2 arguments, got 3$/),
  refused('metrics {\notlp http://127.0.0.1 insecur\n}', 2, 23, /unexpected "insecur" \(the only word allowed after the URL is "insecure"\)$/),
  refused('metrics {\notlp http://collector.example:4318\n}', 2, 6, /"collector\.example" is not an IP address/),
  refused('metrics {\notlp {\nendpoint http://127.0.0.1\n}\n}', 3, 1, /unknown option "endpoint"/),
  refused('metrics {\notlp {\nprotocol zipkin\n}\n}', 3, 10, /protocol is one of grpc, http\/protobuf, http\/json, not "zipkin"$/),
  refused('metrics {\notlp {\nheader "x y" 1\n}\n}', 3, 8, /"x y" is not a header name$/),
  refused('metrics {\notlp {\ntimeout 1ms\n}\n}', 3, 9, /1ms is below the minimum of 100ms$/),
  refused('metrics {\notlp {\ninterval 10ms\n}\n}', 3, 10, /10ms is below the minimum of 1s$/),
  refused('metrics {\notlp {\ninterval 2h\n}\n}', 3, 10, /2h is above the maximum of 1h$/),
  refused('metrics {\notlp {\nservice "a b"\n}\n}', 3, 9, /a service name is 1 to 128 printable characters without spaces$/),
  refused('metrics {\notlp {\nintervall 10s\n}\n}', 3, 1, /unknown option "intervall" \(did you mean "interval"\?\)$/),
  refused('metrics {\ndashboard localhost:8080\n}', 2, 11, /"localhost" is not an IP address/),
  refused('metrics {\ndashboard 127.0.0.1:9200 127.0.0.1:9201\n}', 2, 26, /dashboard takes 0 to 1 arguments, got 2$/),
  refused('metrics {\ndashboard {\n}\n}', 2, 11, /dashboard takes no block$/),
  refused('metrics {\nstats 127.0.0.1:8125\n}', 2, 1, /unknown option "stats" \(did you mean "statsd"\?\)$/),
  refused('metrics {\ndashbord\n}', 2, 1, /unknown option "dashbord" \(did you mean "dashboard"\?\)$/),
  refused('metrics {\nstatsd 127.0.0.1\nstatsd 127.0.0.2\n}', 3, 1, /option "statsd" is given twice$/),
  refused('metrics\nmetrics 127.0.0.1:9154', 2, 1, /metrics is given twice in this block$/),
]);
