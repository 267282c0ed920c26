/**
 * The same metrics as /metrics, pushed to an OpenTelemetry collector (`metrics { otlp … }`) for
 * users without Prometheus. OpenTelemetry's Node SDK runs a periodic reader whose only source
 * is a MetricProducer over Veil's registry: each export reads the registry as a scrape does, so
 * the query path pays nothing more and the numbers are the ones /metrics shows.
 *
 * How the families read in OTLP: counters are cumulative monotonic sums named without
 * `_total` (an OTLP-to-Prometheus pipeline adds it back), gauges are gauges, histograms keep
 * their bucket bounds, the event-loop summary is a gauge per `quantile`. Units come from the
 * name (`_seconds` → `s`, `_bytes` → `By`). One export per collector for the whole server,
 * shared by every block that names it, kept across reloads.
 */
import type { Attributes, HrTime } from '@opentelemetry/api';
import type { CollectionResult, MetricData, MetricProducer } from '@opentelemetry/sdk-metrics';
import type { Logger } from '../../core/logger.js';
import { startMetricsSdk, type MetricsSdk } from '../../lib/otel/sdk.js';
import type { OtlpExport } from '../../lib/otel/settings.js';
import { veilVersion } from '../../lib/version.js';
import { Counter, Gauge, Histogram, Summary, type Registry } from './registry.js';

export interface OtlpMetricsTarget {
  export: OtlpExport;
  intervalMs: number;
  service: string | undefined;
}

/** OpenTelemetry's numeric enums, spelled out so that the SDK is loaded only when exporting. */
const DataPointType = { HISTOGRAM: 0, GAUGE: 2, SUM: 3 } as const;
const CUMULATIVE = 1;
const DOUBLE = 1;

function hrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

function unitOf(name: string): string {
  if (/_seconds(_total)?$/.test(name)) return 's';
  if (/_bytes(_total)?$/.test(name)) return 'By';
  return '1';
}

function attributesOf(names: readonly string[], values: readonly string[]): Attributes {
  const attributes: Attributes = {};
  for (let i = 0; i < names.length; i++) attributes[names[i]!] = values[i]!;
  return attributes;
}

/** Reads the registry in use (it may be replaced when every block let go) as OTLP metric data. */
export class RegistryProducer implements MetricProducer {
  constructor(private readonly current: () => { registry: Registry; startedAt: number } | null) {}

  async collect(): Promise<CollectionResult> {
    const live = this.current();
    const metrics: MetricData[] = [];
    if (live) {
      live.registry.collect();
      const start = hrTime(live.startedAt);
      const end = hrTime(Date.now());
      for (const family of live.registry.all) {
        if (family.series.size === 0) continue;
        const descriptor = { name: family.name.replace(/_total$/, ''), description: family.help, unit: unitOf(family.name), valueType: DOUBLE };
        if (family instanceof Counter || family instanceof Gauge) {
          const dataPoints = [...family.series.values()].map((s) => ({ attributes: attributesOf(family.labelNames, s.values), startTime: start, endTime: end, value: s.value }));
          metrics.push(
            family instanceof Counter
              ? { descriptor, aggregationTemporality: CUMULATIVE, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints }
              : { descriptor, aggregationTemporality: CUMULATIVE, dataPointType: DataPointType.GAUGE, dataPoints },
          );
        } else if (family instanceof Histogram) {
          const dataPoints = [...family.series.values()].map((s) => ({
            attributes: attributesOf(family.labelNames, s.values),
            startTime: start,
            endTime: end,
            value: { buckets: { boundaries: [...family.bounds], counts: [...s.counts] }, sum: s.sum, count: s.count },
          }));
          metrics.push({ descriptor, aggregationTemporality: CUMULATIVE, dataPointType: DataPointType.HISTOGRAM, dataPoints } as MetricData);
        } else if (family instanceof Summary) {
          const dataPoints = [...family.series.values()].flatMap((s) =>
            s.quantiles.map(([quantile, value]) => ({ attributes: { ...attributesOf(family.labelNames, s.values), quantile: String(quantile) }, startTime: start, endTime: end, value })),
          );
          metrics.push({ descriptor, aggregationTemporality: CUMULATIVE, dataPointType: DataPointType.GAUGE, dataPoints });
        }
      }
    }
    // The reader takes only the scope metrics: the resource is the SDK's.
    return { resourceMetrics: { resource: undefined as never, scopeMetrics: [{ scope: { name: 'veil', version: veilVersion() }, metrics }] }, errors: [] };
  }
}

interface SharedExport {
  holders: number;
  sdk: Promise<MetricsSdk>;
}

function keyOf(target: OtlpMetricsTarget): string {
  return JSON.stringify(target);
}

/** A server's exports (the metrics hub holds them): one per collector, shared by the blocks that name it. */
export class OtlpExports {
  private readonly exports = new Map<string, SharedExport>();

  /**
   * Starts exporting to `target` (or joins the export already going there); resolves with a
   * function that lets go (the export stops, sending once more, when the last holder does).
   */
  async hold(target: OtlpMetricsTarget, producer: MetricProducer, logger: Logger): Promise<() => Promise<void>> {
    const exports = this.exports;
    const key = keyOf(target);
    let shared = exports.get(key);
    if (!shared) {
      const sdk = startMetricsSdk({ export: target.export, service: target.service, version: veilVersion(), logger, intervalMs: target.intervalMs, producer });
      shared = { holders: 0, sdk };
      exports.set(key, shared);
      sdk.then(
        () => logger.info(`exporting metrics every ${target.intervalMs / 1000}s to ${target.export.url} over ${target.export.protocol} (${target.export.source})`),
        () => exports.delete(key),
      );
    }
    shared.holders++;
    await shared.sdk;
    let held = true;
    return async () => {
      if (!held) return;
      held = false;
      if (--shared.holders > 0) return;
      exports.delete(key);
      await (await shared.sdk).shutdown();
    };
  }
}
