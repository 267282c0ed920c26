/** trace: every option, good and bad, with the place of each mistake (no OTEL_* variables set). */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('trace', [
  builds('trace', (o) => {
    assert.deepEqual(o.export, { protocol: 'http/protobuf', url: 'http://127.0.0.1:4318/v1/traces', headers: {}, timeoutMs: 10_000, source: 'Corefile and defaults' });
    assert.deepEqual([o.sampler.ratio, o.service, o.clientAddress], [0.01, undefined, false]);
  }),
  builds('trace {\nendpoint http://127.0.0.1:4317\nprotocol grpc\nheader X-Api-Key k1\nheader tenant t\ntimeout 5s\nsample 0.5\nservice edge-1\nclient_address\n}', (o) => {
    assert.deepEqual(o.export, { protocol: 'grpc', url: 'http://127.0.0.1:4317', headers: { 'x-api-key': 'k1', tenant: 't' }, timeoutMs: 5000, source: 'Corefile and defaults' });
    assert.deepEqual([o.sampler.ratio, o.sampler.source, o.service, o.clientAddress], [0.5, 'Corefile', 'edge-1', true]);
  }),
  builds('trace {\nendpoint http://[::1]\nprotocol http/json\n}', (o) => assert.deepEqual([o.export.url, o.export.protocol], ['http://[::1]:4318/v1/traces', 'http/json'])),
  builds('trace {\nendpoint http://203.0.113.5:4318/v1/traces insecure\n}', (o) => assert.equal(o.export.url, 'http://203.0.113.5:4318/v1/traces')),
  builds('trace {\nendpoint https://203.0.113.5:4318/v1/traces\n}', (o) => assert.equal(o.export.url, 'https://203.0.113.5:4318/v1/traces')),
  builds('trace {\nendpoint http://192.168.1.20:4318/v1/traces\n}', (o) => assert.equal(o.export.url, 'http://192.168.1.20:4318/v1/traces')),
  builds('trace {\nendpoint https://[::1]:4318\n}', (o) => assert.equal(o.export.url, 'https://[::1]:4318/v1/traces')),
  refused('trace http://127.0.0.1:4318', 1, 7, /trace takes 0 arguments, got 1$/),
  refused('trace {\nendpoint http://203.0.113.5:4318\n}', 2, 10, /203\.0\.113\.5 is not on loopback or a private network .* end the endpoint line with "insecure"/),
  refused('trace {\nprotocol grpc\nendpoint http://203.0.113.5:4317\n}', 3, 10, /203\.0\.113\.5 is not on loopback or a private network .*gRPC without TLS would send them in plaintext/),
  refused('trace {\nendpoint http://collector.example:4318/v1/traces\n}', 2, 10, /"collector\.example" is not an IP address/),
  refused('trace {\nendpoint 127.0.0.1:4318\n}', 2, 10, /an OTLP\/HTTP endpoint starts with http:\/\/ or https:\/\/$/),
  refused('trace {\nendpoint udp://127.0.0.1:4318\n}', 2, 10, /the endpoint is http:\/\/ or https:\/\/, not udp:\/\/$/),
  refused('trace {\nendpoint http://127.0.0.1 plaintext\n}', 2, 27, /unexpected "plaintext" \(the only word allowed after the URL is "insecure"\)$/),
  refused('trace {\nendpoint\n}', 2, 1, /endpoint takes 1 to 2 arguments, got 0$/),
  refused('trace {\nprotocol thrift\n}', 2, 10, /protocol is one of grpc, http\/protobuf, http\/json, not "thrift"$/),
  refused('trace {\nheader X-Api-Key\n}', 2, 1, /header takes 2 arguments, got 1$/),
  refused('trace {\nheader "X Api" k1\n}', 2, 8, /"X Api" is not a header name$/),
  refused('trace {\ntimeout 10ms\n}', 2, 9, /10ms is below the minimum of 100ms$/),
  refused('trace {\ntimeout 2m\n}', 2, 9, /2m is above the maximum of 1m$/),
  refused('trace {\nsample 2\n}', 2, 8, /sample takes a ratio from 0 to 1 \(0\.01 traces one query in a hundred\), not "2"$/),
  refused('trace {\nsample 1%\n}', 2, 8, /not "1%"$/),
  refused('trace {\nservice\n}', 2, 1, /service takes 1 argument, got 0$/),
  refused('trace {\nservice "edge 1"\n}', 2, 9, /a service name is 1 to 128 printable characters without spaces$/),
  refused('trace {\nclient_address yes\n}', 2, 16, /client_address takes 0 arguments, got 1$/),
  refused('trace {\nendpont http://127.0.0.1:4318\n}', 2, 1, /unknown option "endpont" \(did you mean "endpoint"\?\)$/),
  refused('trace {\nsampel 0.5\n}', 2, 1, /unknown option "sampel" \(did you mean "sample"\?\)$/),
  refused('trace {\nsample 0.5\nsample 1\n}', 3, 1, /option "sample" is given twice$/),
  refused('trace\ntrace', 2, 1, /trace is given twice in this block$/),
]);
