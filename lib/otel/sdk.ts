/**
 * OpenTelemetry's Node SDK (`@opentelemetry/sdk-node`) started the way Veil needs it: for
 * traces (the trace plugin) or for metrics (the metrics plugin's `otlp`), each its own NodeSDK,
 * with the exporter chosen by protocol (gRPC, OTLP/HTTP protobuf or JSON) and handed a URL
 * whose host is an IP. Everything else the standard environment says applies as the SDK reads
 * it: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` (and `OTEL_NODE_RESOURCE_DETECTORS`),
 * headers, timeouts, compression, certificates, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`.
 *
 * Nothing here is loaded unless a configuration asks for OpenTelemetry: the SDK is imported
 * on first use. NodeSDK registers itself as the process-global provider; Veil never asks the
 * global for anything (each plugin keeps the tracer its own SDK gave it), so a reload can start
 * a new SDK while the old one finishes exporting.
 */
import { performance } from 'node:perf_hooks';
import type { Tracer } from '@opentelemetry/api';
import type { MetricProducer, PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { Logger } from '../../core/logger.js';
import type { OtlpExport } from './settings.js';

/** A failing collector is reported at most this often. */
const REPORT_EVERY_MS = 60_000;
/** Bounds of the span queue, unless OTEL_BSP_* say otherwise (the SDK reads them only for exporters it builds). */
const SPAN_BATCH_DEFAULTS: Record<string, [string, number]> = {
  maxQueueSize: ['OTEL_BSP_MAX_QUEUE_SIZE', 2048],
  maxExportBatchSize: ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512],
  scheduledDelayMillis: ['OTEL_BSP_SCHEDULE_DELAY', 1000],
};

export interface SdkOptions {
  export: OtlpExport;
  /** The Corefile's `service`; else OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES; else `veil`. */
  service: string | undefined;
  version: string;
  logger: Logger;
}

export interface TraceSdk {
  tracer: Tracer;
  /** Exports what is queued, then stops; bounded. */
  shutdown(): Promise<void>;
}

export interface MetricsSdk {
  shutdown(): Promise<void>;
}

/** Whether OTEL_SDK_DISABLED turns the SDK off (it then starts nothing). */
export function sdkDisabled(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  return env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
}

function serviceFromEnv(): boolean {
  if (process.env.OTEL_SERVICE_NAME?.trim()) return true;
  return /(^|,)\s*service\.name\s*=/.test(process.env.OTEL_RESOURCE_ATTRIBUTES ?? '');
}

async function nodeSdkBase(options: SdkOptions) {
  const [{ NodeSDK }, { defaultResource, envDetector, resourceFromAttributes }, api] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/api'),
  ]);
  // The Corefile's name wins; then the environment's (the env detector reads it); then ours.
  const serviceName = options.service ?? (serviceFromEnv() ? undefined : 'veil');
  return {
    NodeSDK,
    api,
    config: {
      resource: defaultResource().merge(resourceFromAttributes({ 'service.version': options.version })),
      // Detectors named in OTEL_NODE_RESOURCE_DETECTORS when set (NodeSDK reads it); else only
      // the environment's attributes: no host or process details unless asked for.
      ...(process.env.OTEL_NODE_RESOURCE_DETECTORS ? {} : { resourceDetectors: [envDetector] }),
      ...(serviceName !== undefined ? { serviceName } : {}),
      // Veil reads traceparent itself and keeps no ambient context: none to register.
      textMapPropagator: null,
      contextManager: null as never,
      instrumentations: [],
      // Given explicitly, so that NodeSDK does not build exporters of its own from the environment.
      logRecordProcessors: [],
    },
  };
}

export async function startTraceSdk(options: SdkOptions): Promise<TraceSdk> {
  const [{ BatchSpanProcessor, AlwaysOnSampler }, base] = await Promise.all([import('@opentelemetry/sdk-trace'), nodeSdkBase(options)]);
  const exporter = new ReportingSpanExporter(await spanExporter(options.export), options.export.url, options.logger);
  const batch: Record<string, number> = {};
  for (const [key, [variable, value]] of Object.entries(SPAN_BATCH_DEFAULTS)) {
    const given = Number(process.env[variable]?.trim() || NaN);
    batch[key] = Number.isInteger(given) && given > 0 ? given : value;
  }
  batch.maxExportBatchSize = Math.min(batch.maxExportBatchSize!, batch.maxQueueSize!);
  // The exporter gives up (retries included) first, so that its failure is the one reported.
  const givenTimeout = Number(process.env.OTEL_BSP_EXPORT_TIMEOUT?.trim() || NaN);
  batch.exportTimeoutMillis = Number.isInteger(givenTimeout) && givenTimeout > 0 ? givenTimeout : options.export.timeoutMs + 1000;
  const processor = new BatchSpanProcessor({ exporter, ...batch });
  const sdk = new base.NodeSDK({
    ...base.config,
    // Veil decides which queries are sampled before any span exists (cheaper than a sampler).
    sampler: new AlwaysOnSampler(),
    spanLimits: { attributeCountLimit: 32, attributeValueLengthLimit: 512, eventCountLimit: 8, linkCountLimit: 0 },
    spanProcessors: [processor],
    metricReaders: [],
  });
  // The global slot takes one provider: let this one in (the previous SDK keeps its own).
  base.api.trace.disable();
  sdk.start();
  const tracer = base.api.trace.getTracer('veil', options.version);
  return { tracer, shutdown: () => bounded(sdk.shutdown(), batch.exportTimeoutMillis + 1000) };
}

export async function startMetricsSdk(options: SdkOptions & { intervalMs: number; producer: MetricProducer }): Promise<MetricsSdk> {
  const [{ PeriodicExportingMetricReader }, base] = await Promise.all([import('@opentelemetry/sdk-metrics'), nodeSdkBase(options)]);
  const exporter = new ReportingMetricExporter(await metricExporter(options.export), options.export.url, options.logger);
  const reader = new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: options.intervalMs,
    exportTimeoutMillis: Math.min(options.intervalMs, options.export.timeoutMs + 1000),
    metricProducers: [options.producer],
  });
  const sdk = new base.NodeSDK({ ...base.config, spanProcessors: [], metricReaders: [reader] });
  base.api.metrics.disable();
  sdk.start();
  return { shutdown: () => bounded(sdk.shutdown(), options.export.timeoutMs + 2000) };
}

/** Waits for a shutdown (which sends what is queued) at most `graceMs`. */
async function bounded(work: Promise<void>, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
    timer.unref();
  });
  await Promise.race([work.catch(() => {}), late]);
  clearTimeout(timer);
}

function httpOptions(target: OtlpExport) {
  return {
    url: target.url,
    headers: target.headers,
    timeoutMillis: target.timeoutMs,
    concurrencyLimit: 2,
    httpAgentOptions: { keepAlive: true, maxSockets: 2 },
  };
}

async function grpcOptions(target: OtlpExport) {
  const { Metadata } = await import('@grpc/grpc-js');
  const metadata = new Metadata();
  for (const [name, value] of Object.entries(target.headers)) metadata.set(name, value);
  return { url: target.url, metadata, timeoutMillis: target.timeoutMs, concurrencyLimit: 2 };
}

async function spanExporter(target: OtlpExport): Promise<SpanExporter> {
  switch (target.protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter(await grpcOptions(target));
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(httpOptions(target));
    case 'http/json':
      return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(httpOptions(target));
  }
}

async function metricExporter(target: OtlpExport): Promise<PushMetricExporter> {
  switch (target.protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter(await grpcOptions(target));
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter(httpOptions(target));
    case 'http/json':
      return new (await import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter(httpOptions(target));
  }
}

/** Says, now and then, when the collector does not take what is sent; never more. */
class FailureReport {
  private last = -Infinity;
  constructor(
    private readonly what: string,
    private readonly url: string,
    private readonly logger: Logger,
  ) {}
  failed(count: number, error: Error | undefined): void {
    const now = performance.now();
    if (now - this.last < REPORT_EVERY_MS) return;
    this.last = now;
    this.logger.warn(`could not export ${count} ${this.what} to ${this.url}: ${error?.message ?? 'failed'}`);
  }
}

type ExportDone = Parameters<SpanExporter['export']>[1];

class ReportingSpanExporter implements SpanExporter {
  private readonly report: FailureReport;
  constructor(
    private readonly inner: SpanExporter,
    url: string,
    logger: Logger,
  ) {
    this.report = new FailureReport('span(s)', url, logger);
  }
  export(spans: ReadableSpan[], done: ExportDone): void {
    this.inner.export(spans, (result) => {
      // 0 is ExportResultCode.SUCCESS.
      if (result.code !== 0) this.report.failed(spans.length, result.error);
      done(result);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

class ReportingMetricExporter implements PushMetricExporter {
  private readonly report: FailureReport;
  constructor(
    private readonly inner: PushMetricExporter,
    url: string,
    logger: Logger,
  ) {
    this.report = new FailureReport('metric batch(es)', url, logger);
  }
  export(metrics: Parameters<PushMetricExporter['export']>[0], done: Parameters<PushMetricExporter['export']>[1]): void {
    this.inner.export(metrics, (result) => {
      if (result.code !== 0) this.report.failed(1, result.error);
      done(result);
    });
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  selectAggregationTemporality = (type: Parameters<NonNullable<PushMetricExporter['selectAggregationTemporality']>>[0]) =>
    this.inner.selectAggregationTemporality!(type);
}
