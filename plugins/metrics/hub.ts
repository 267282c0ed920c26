/**
 * The server-wide side of the metrics plugin, one per server (`MetricsHubService` in its root
 * container): one registry for every block and reload (created when the first block attaches,
 * dropped with its values when the last one detaches), one statsd sink per target, one
 * dashboard and one OTLP export per collector, each shared by the blocks that use it.
 *
 * The registry counts what the diagnostics channels report for the blocks attached to it, by
 * their `server` label; channels are the process's, so two servers in one process that name a
 * block alike would each count the other's queries for it.
 */
import type { Logger } from '../../core/logger.js';
import { serverService } from '../../core/services.js';
import { SharedDashboard } from './dashboard.js';
import { OtlpExports } from './otlp.js';
import { StatsdSink, type StatsdTarget } from './statsd.js';
import { VeilMetrics } from './veil-metrics.js';

function targetKey(target: StatsdTarget): string {
  return `${target.host} ${target.port} ${target.prefix}`;
}

export interface Attachment {
  readonly metrics: VeilMetrics;
  detach(): void;
}

export class MetricsHub {
  private metrics: VeilMetrics | null = null;
  private readonly sinks = new Map<string, StatsdSink>();
  /** Families already reported as full, so each is reported once. */
  private readonly reportedFull = new WeakSet<object>();
  /** The live page, made when the first block asks for it. */
  readonly dashboard = new SharedDashboard(() => this.metrics);
  /** Pushes to OpenTelemetry collectors, one per collector. */
  readonly otlp = new OtlpExports();

  /** Starts counting `server`'s queries, and pushing them to `statsd` when given. */
  attachBlock(server: string, statsd: StatsdTarget | null, logger: Logger): Attachment {
    const live = (this.metrics ??= new VeilMetrics());
    let sink: StatsdSink | null = null;
    if (statsd) {
      sink = this.sinks.get(targetKey(statsd)) ?? null;
      if (!sink) {
        sink = new StatsdSink(statsd, live.registry, logger);
        this.sinks.set(targetKey(statsd), sink);
      }
      sink.addServer(server);
    }
    live.addServer(server, sink);
    let attached = true;
    return {
      metrics: live,
      detach: () => {
        if (!attached) return;
        attached = false;
        const unused = sink?.removeServer(server) ?? false;
        live.removeServer(server, sink);
        if (sink && unused) {
          this.sinks.delete(targetKey(sink.target));
          sink.stop();
        }
        if (live.serverCount === 0 && this.metrics === live) {
          live.close();
          this.metrics = null;
        }
      },
    };
  }

  /** The registry in use, if any block has metrics. */
  current(): VeilMetrics | null {
    return this.metrics;
  }

  /** The exposition of the registry in use (empty when no block has metrics); says when a family is full. */
  render(logger: Logger): string {
    if (!this.metrics) return '';
    for (const family of this.metrics.registry.all) {
      if (!family.overflowed || this.reportedFull.has(family)) continue;
      this.reportedFull.add(family);
      logger.warn(`${family.name} reached its ${family.maxSeries} series; values of new label combinations are counted nowhere`);
    }
    return this.metrics.registry.render();
  }
}

export const MetricsHubService = serverService('veil.metrics.Hub', () => new MetricsHub());
