/**
 * The OpenTelemetry SDK side of tracing: a tracer provider of our own per `trace` block (never
 * the process-global one: blocks may send to different collectors under different service
 * names, and a reload replaces them), a bounded batch processor, and the OTLP/HTTP exporter.
 * The SDK is loaded on first use, so Veil without `trace` never loads it.
 */
import type { Tracer } from '@opentelemetry/api';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../../core/logger.js';

export interface ExporterOptions {
  /** `http://127.0.0.1:4318/v1/traces` */
  endpoint: string;
  service: string;
  version: string;
}

/** Spans waiting for export at most; more are dropped (the processor counts them). */
const MAX_QUEUE = 2048;
const BATCH = 512;
const EXPORT_EVERY_MS = 1000;
const EXPORT_TIMEOUT_MS = 5000;
/** A failing collector is reported at most this often. */
const REPORT_EVERY_MS = 60_000;

export interface SpanPipeline {
  tracer: Tracer;
  /** Exports what is queued, then stops; bounded by the export timeout. */
  shutdown(): Promise<void>;
}

export async function createSpanPipeline(options: ExporterOptions, logger: Logger): Promise<SpanPipeline> {
  const [{ BasicTracerProvider, BatchSpanProcessor, AlwaysOnSampler }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const exporter = new ReportingExporter(
    new OTLPTraceExporter({
      url: options.endpoint,
      timeoutMillis: EXPORT_TIMEOUT_MS,
      concurrencyLimit: 2,
      httpAgentOptions: { keepAlive: true, maxSockets: 2 },
    }),
    options.endpoint,
    logger,
  );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': options.service, 'service.version': options.version }),
    // Veil decides which queries are sampled before any span exists (cheaper than a sampler).
    sampler: new AlwaysOnSampler(),
    spanLimits: { attributeCountLimit: 32, attributeValueLengthLimit: 512, eventCountLimit: 8, linkCountLimit: 0 },
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        maxQueueSize: MAX_QUEUE,
        maxExportBatchSize: BATCH,
        scheduledDelayMillis: EXPORT_EVERY_MS,
        exportTimeoutMillis: EXPORT_TIMEOUT_MS,
      }),
    ],
  });
  return {
    tracer: provider.getTracer('veil', options.version),
    async shutdown() {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, EXPORT_TIMEOUT_MS + 1000);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => {}), late]);
      clearTimeout(timer);
    },
  };
}

/** Passes spans on and says, now and then, when the collector does not take them. */
class ReportingExporter implements SpanExporter {
  private lastReport = -Infinity;

  constructor(
    private readonly inner: SpanExporter,
    private readonly endpoint: string,
    private readonly logger: Logger,
  ) {}

  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    this.inner.export(spans, (result) => {
      // 0 is ExportResultCode.SUCCESS.
      if (result.code !== 0) this.report(spans.length, result.error);
      done(result);
    });
  }

  private report(count: number, error: Error | undefined): void {
    const now = performance.now();
    if (now - this.lastReport < REPORT_EVERY_MS) return;
    this.lastReport = now;
    this.logger.warn(`could not export ${count} span(s) to ${this.endpoint}: ${error?.message ?? 'failed'}`);
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}
