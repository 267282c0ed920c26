/**
 * Metrics about the process itself, read when scraped: CPU time, memory, file descriptors,
 * event-loop delay (perf_hooks' monitor), and what build is running.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { type ELDHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { veilVersion } from '../../lib/version.js';
import { Counter, Gauge, Summary, type Registry } from './registry.js';

/** Quantiles of the event-loop delay cover the last window of this length. */
const LAG_WINDOW_MS = 10_000;
/** How often the monitor samples; each sample measures this interval plus the delay. */
const LAG_RESOLUTION_MS = 20;
const LAG_QUANTILES = [0.5, 0.9, 0.99, 1] as const;

function openFds(): number | null {
  try {
    // The listing itself holds one descriptor while it runs.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
}

function maxFds(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Registers the process metrics; returns a function that stops the event-loop monitor. */
export function addProcessMetrics(registry: Registry): () => void {
  const cpu = registry.add(new Counter('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.', [])).labels();
  const rss = registry.add(new Gauge('process_resident_memory_bytes', 'Resident memory size, in bytes.', [])).labels();
  const heap = registry.add(new Gauge('nodejs_heap_used_bytes', 'V8 heap in use, in bytes.', [])).labels();
  const heapTotal = registry.add(new Gauge('nodejs_heap_total_bytes', 'V8 heap reserved (in use or free), in bytes.', [])).labels();
  const external = registry.add(new Gauge('nodejs_external_memory_bytes', 'Memory outside the V8 heap held by JavaScript objects (Buffers, WebAssembly), in bytes.', [])).labels();
  const start = registry.add(new Gauge('process_start_time_seconds', 'When the process started, in seconds since the Unix epoch.', [])).labels();
  const fds = registry.add(new Gauge('process_open_fds', 'Open file descriptors.', []));
  const fdLimit = registry.add(new Gauge('process_max_fds', 'The most file descriptors the process may open.', []));
  const lag = registry
    .add(new Summary('veil_event_loop_lag_seconds', `Event-loop delay: quantiles over the last ${LAG_WINDOW_MS / 1000} s, sum and count since start.`, []))
    .labels();
  registry
    .add(new Gauge('veil_build_info', 'Always 1; the labels say which Veil and Node.js are running.', ['version', 'node']))
    .labels(veilVersion(), process.versions.node)
    .set(1);

  start.set(Math.round(performance.timeOrigin) / 1000);
  const monitor = new EventLoopLag();

  registry.onCollect(() => {
    const usage = process.cpuUsage();
    cpu.value = (usage.user + usage.system) / 1e6;
    const memory = process.memoryUsage();
    rss.set(memory.rss);
    heap.set(memory.heapUsed);
    heapTotal.set(memory.heapTotal);
    external.set(memory.external);
    const open = openFds();
    if (open !== null) fds.labels().set(open);
    const limit = maxFds();
    if (limit !== null) fdLimit.labels().set(limit);
    monitor.fill(lag);
  });
  return () => monitor.stop();
}

/**
 * perf_hooks' monitor samples the event loop's delay. Quantiles come from the last complete
 * window (or the current one before the first completes) so that they describe now, not the
 * whole life of the process; the sum and count add every window up.
 */
class EventLoopLag {
  private readonly histogram: ELDHistogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  private readonly timer: NodeJS.Timeout;
  private lastWindow: Array<[number, number]> | null = null;
  private pastSumNs = 0;
  private pastCount = 0;

  constructor() {
    this.histogram.enable();
    this.timer = setInterval(() => this.rotate(), LAG_WINDOW_MS);
    this.timer.unref();
  }

  /** The monitor's samples include its own interval: what is beyond it is the lag. */
  private lagNs(sampleNs: number): number {
    return Math.max(0, sampleNs - LAG_RESOLUTION_MS * 1e6);
  }

  private quantiles(): Array<[number, number]> {
    return LAG_QUANTILES.map((q) => [q, this.lagNs(q === 1 ? this.histogram.max : this.histogram.percentile(q * 100)) / 1e9]);
  }

  private rotate(): void {
    if (this.histogram.count > 0) {
      this.lastWindow = this.quantiles();
      this.pastSumNs += this.lagNs(this.histogram.mean) * this.histogram.count;
      this.pastCount += this.histogram.count;
    }
    this.histogram.reset();
  }

  fill(series: { quantiles: ReadonlyArray<readonly [number, number]>; sum: number; count: number }): void {
    const current = this.histogram.count;
    series.quantiles = this.lastWindow ?? (current > 0 ? this.quantiles() : LAG_QUANTILES.map((q) => [q, 0] as [number, number]));
    series.sum = (this.pastSumNs + (current > 0 ? this.lagNs(this.histogram.mean) * current : 0)) / 1e9;
    series.count = this.pastCount + current;
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}
