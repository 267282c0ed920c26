/**
 * Real OTLP receivers for tests, one per protocol OpenTelemetry exporters speak: OTLP/HTTP with
 * JSON bodies, OTLP/HTTP with protobuf bodies, and gRPC (a @grpc/grpc-js server offering the
 * collector's TraceService and MetricsService). Protobuf is decoded with protobufjs from the
 * message definitions below, written from OpenTelemetry's proto files (the fields the tests
 * read, under their real numbers), so that what arrived is read the way a collector reads it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's numbers: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** 0 unset, 1 ok, 2 error. */
  status: number;
  service: string;
  resource: Record<string, string | number | boolean>;
  traceState: string;
  startNs: bigint;
  endNs: bigint;
}

export interface ReceivedPoint {
  metric: string;
  kind: 'sum' | 'gauge' | 'histogram';
  attributes: Record<string, string | number | boolean>;
  /** Sums and gauges. */
  value?: number;
  /** Histograms. */
  count?: number;
  sum?: number;
  bounds?: number[];
  bucketCounts?: number[];
  service: string;
}

export const SpanKindNumber = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;

export type OtlpReceiverProtocol = 'http/json' | 'http/protobuf' | 'grpc';

export interface OtlpReceiver {
  protocol: OtlpReceiverProtocol;
  /** The traces URL (gRPC: the origin). */
  url: string;
  /** The metrics URL (gRPC: the origin). */
  metricsUrl: string;
  spans: ReceivedSpan[];
  points: ReceivedPoint[];
  /** Metadata or headers of the last export. */
  lastHeaders: Record<string, string>;
  /** Requests that were not a decodable OTLP export. */
  rejected: number;
  /** Resolves once `predicate` holds for what was received, or rejects after `timeoutMs`. */
  waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<void>;
  waitForPoints(predicate: (points: ReceivedPoint[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const OTLP_PROTO = `
syntax = "proto3";
package opentelemetry.proto;
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; Status status = 15; fixed32 flags = 16;
}
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message NumberDataPoint {
  repeated KeyValue attributes = 7; fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
  oneof value { double as_double = 4; sfixed64 as_int = 6; }
}
message HistogramDataPoint {
  repeated KeyValue attributes = 9; fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
  fixed64 count = 4; optional double sum = 5; repeated fixed64 bucket_counts = 6; repeated double explicit_bounds = 7;
}
message Gauge { repeated NumberDataPoint data_points = 1; }
message Sum { repeated NumberDataPoint data_points = 1; int32 aggregation_temporality = 2; bool is_monotonic = 3; }
message Histogram { repeated HistogramDataPoint data_points = 1; int32 aggregation_temporality = 2; }
message Metric {
  string name = 1; string description = 2; string unit = 3;
  oneof data { Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9; }
}
message ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; string schema_url = 3; }
message ResourceMetrics { Resource resource = 1; repeated ScopeMetrics scope_metrics = 2; string schema_url = 3; }
message ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }
message ExportResponse {}
`;

const root = protobuf.parse(OTLP_PROTO, { keepCase: false }).root;
const TraceRequest = root.lookupType('opentelemetry.proto.ExportTraceServiceRequest');
const MetricsRequest = root.lookupType('opentelemetry.proto.ExportMetricsServiceRequest');

/** The request as plain objects in OTLP/JSON's shape (camelCase, ids as hex, 64-bit numbers as strings). */
function decodeProtobuf(type: protobuf.Type, body: Uint8Array): any {
  const message = type.decode(body);
  return hexIds(type.toObject(message, { longs: String, bytes: Buffer, defaults: false, oneofs: false }));
}

function hexIds(value: any): any {
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (Array.isArray(value)) return value.map(hexIds);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hexIds(v)]));
  return value;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}

function plain(value: AnyValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.boolValue !== undefined) return value.boolValue;
  throw new Error(`unexpected attribute value ${JSON.stringify(value)}`);
}

function attributes(list: Array<{ key: string; value: AnyValue }> | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((a) => [a.key, plain(a.value)]));
}

function takeSpans(body: any, into: ReceivedSpan[]): void {
  for (const resourceSpans of body.resourceSpans ?? []) {
    const resource = attributes(resourceSpans.resource?.attributes);
    const service = String(resource['service.name'] ?? '');
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        into.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? '',
          name: span.name,
          kind: span.kind,
          attributes: attributes(span.attributes),
          status: span.status?.code ?? 0,
          service,
          resource,
          traceState: span.traceState ?? '',
          startNs: BigInt(span.startTimeUnixNano),
          endNs: BigInt(span.endTimeUnixNano),
        });
      }
    }
  }
}

function takePoints(body: any, into: ReceivedPoint[]): void {
  for (const resourceMetrics of body.resourceMetrics ?? []) {
    const service = String(attributes(resourceMetrics.resource?.attributes)['service.name'] ?? '');
    for (const scopeMetrics of resourceMetrics.scopeMetrics ?? []) {
      for (const metric of scopeMetrics.metrics ?? []) {
        const kind = metric.sum ? 'sum' : metric.gauge ? 'gauge' : metric.histogram ? 'histogram' : null;
        if (!kind) continue;
        for (const point of metric[kind].dataPoints ?? []) {
          const base = { metric: metric.name, kind, attributes: attributes(point.attributes), service } as ReceivedPoint;
          if (kind === 'histogram') {
            into.push({ ...base, count: Number(point.count), sum: Number(point.sum ?? 0), bounds: (point.explicitBounds ?? []).map(Number), bucketCounts: (point.bucketCounts ?? []).map(Number) });
          } else {
            into.push({ ...base, value: point.asDouble !== undefined ? Number(point.asDouble) : Number(point.asInt ?? 0) });
          }
        }
      }
    }
  }
}

async function until(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what()} did not arrive in ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startOtlpReceiver(protocol: OtlpReceiverProtocol = 'http/protobuf'): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const take = (signal: 'traces' | 'metrics', body: any) => (signal === 'traces' ? takeSpans(body, spans) : takePoints(body, points));
  // One object, updated in place: the receiver handed to the test is this one.
  const state = {
    protocol,
    spans,
    points,
    rejected: 0,
    lastHeaders: {} as Record<string, string>,
    waitFor: (predicate: (s: ReceivedSpan[]) => boolean, timeoutMs = 10_000) => until(() => predicate(spans), timeoutMs, () => `spans (have ${spans.map((s) => s.name).join(', ')})`),
    waitForPoints: (predicate: (p: ReceivedPoint[]) => boolean, timeoutMs = 10_000) => until(() => predicate(points), timeoutMs, () => `metric points (have ${points.length})`),
  };

  if (protocol === 'grpc') {
    const server = new grpc.Server();
    const method = (signal: 'traces' | 'metrics', path: string) => ({
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => b,
      originalName: 'export',
      signal,
    });
    const handler = (signal: 'traces' | 'metrics') => (call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      try {
        state.lastHeaders = Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)]));
        take(signal, decodeProtobuf(signal === 'traces' ? TraceRequest : MetricsRequest, call.request));
        callback(null, {});
      } catch (error) {
        state.rejected++;
        callback({ code: grpc.status.INVALID_ARGUMENT, details: String(error) }, null);
      }
    };
    server.addService({ Export: method('traces', '/opentelemetry.proto.collector.trace.v1.TraceService/Export') } as any, { Export: handler('traces') } as any);
    server.addService({ Export: method('metrics', '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export') } as any, { Export: handler('metrics') } as any);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    return Object.assign(state, {
      url: `http://127.0.0.1:${port}`,
      metricsUrl: `http://127.0.0.1:${port}`,
      close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
    });
  }

  const wanted = protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > 16 * 1024 * 1024) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        const signal = req.url === '/v1/traces' ? 'traces' : req.url === '/v1/metrics' ? 'metrics' : null;
        if (!signal || req.method !== 'POST' || !String(req.headers['content-type']).startsWith(wanted)) throw new Error(`not an OTLP/HTTP ${protocol} export`);
        state.lastHeaders = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
        const raw = Buffer.concat(chunks);
        const body = protocol === 'http/json' ? JSON.parse(raw.toString('utf8')) : decodeProtobuf(signal === 'traces' ? TraceRequest : MetricsRequest, raw);
        take(signal, body);
        res.writeHead(200, { 'Content-Type': wanted }).end(protocol === 'http/json' ? '{}' : Buffer.alloc(0));
      } catch {
        state.rejected++;
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/v1/traces`,
    metricsUrl: `http://127.0.0.1:${port}/v1/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}
