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

export interface Attachment {
  readonly metrics: VeilMetrics;
  detach(): void;
}

/** Starts counting `server`'s queries, and pushing them to `statsd` when given. */
export function attachBlock(server: string, statsd: StatsdTarget | null, logger: Logger): Attachment {
  const live = (metrics ??= new VeilMetrics());
  let sink: StatsdSink | null = null;
  if (statsd) {
    const key = `${statsd.host} ${statsd.port} ${statsd.prefix}`;
    sink = sinks.get(key) ?? null;
    if (!sink) {
      sink = new StatsdSink(statsd, live.registry, logger);
      sinks.set(key, sink);
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
      live.removeServer(server, sink);
      if (sink?.removeServer(server)) {
        sinks.delete(`${sink.target.host} ${sink.target.port} ${sink.target.prefix}`);
        sink.stop();
      }
      if (live.serverCount === 0 && metrics === live) {
        live.close();
        metrics = null;
      }
    },
  };
}

/** The exposition of the registry in use; empty when no block has metrics. */
export function renderMetrics(): string {
  return metrics?.registry.render() ?? '';
}
