/**
 * The process-wide side of the metrics plugin: one registry for every block and reload (created
 * when the first block attaches, dropped with its values when the last one detaches), and one
 * statsd sink per target, shared by the blocks that send there.
 */
import type { Logger } from '../../core/logger.js';
import { StatsdSink, type StatsdTarget } from './statsd.js';
import { VeilMetrics } from './veil-metrics.js';

let metrics: VeilMetrics | null = null;
const sinks = new Map<string, StatsdSink>();

function targetKey(target: StatsdTarget): string {
  return `${target.host} ${target.port} ${target.prefix}`;
}

export interface Attachment {
  readonly metrics: VeilMetrics;
  detach(): void;
}

/** Starts counting `server`'s queries, and pushing them to `statsd` when given. */
export function attachBlock(server: string, statsd: StatsdTarget | null, logger: Logger): Attachment {
  const live = (metrics ??= new VeilMetrics());
  let sink: StatsdSink | null = null;
  if (statsd) {
    sink = sinks.get(targetKey(statsd)) ?? null;
    if (!sink) {
      sink = new StatsdSink(statsd, live.registry, logger);
      sinks.set(targetKey(statsd), sink);
    }
    sink.addServer(server);
  }
  live.addServer(server, sink);
  let attached = true;
  return {
    metrics: live,
    detach() {
      if (!attached) return;
      attached = false;
      const unused = sink?.removeServer(server) ?? false;
      live.removeServer(server, sink);
      if (sink && unused) {
        sinks.delete(targetKey(sink.target));
        sink.stop();
      }
      if (live.serverCount === 0 && metrics === live) {
        live.close();
        metrics = null;
      }
    },
  };
}

/** The registry in use, if any block has metrics. */
export function currentMetrics(): VeilMetrics | null {
  return metrics;
}

/** Families already reported as full, so each is reported once. */
const reportedFull = new WeakSet<object>();

/** The exposition of the registry in use (empty when no block has metrics); says when a family is full. */
export function renderMetrics(logger: Logger): string {
  if (!metrics) return '';
  for (const family of metrics.registry.all) {
    if (!family.overflowed || reportedFull.has(family)) continue;
    reportedFull.add(family);
    logger.warn(`${family.name} reached its ${family.maxSeries} series; values of new label combinations are counted nowhere`);
  }
  return metrics.registry.render();
}
