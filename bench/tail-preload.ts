/**
 * Loaded into Veil by bench/tail.ts (`--import`): the event loop's delay and every garbage
 * collection's pause, reported to stderr as one JSON line on SIGUSR2. Nothing else changes.
 */
import { monitorEventLoopDelay, PerformanceObserver, type NodeGCPerformanceDetail, type PerformanceEntry } from 'node:perf_hooks';

/** A gc entry carries its kind in `detail` (Node's typings leave it off the base entry). */
type GcEntry = PerformanceEntry & { detail?: NodeGCPerformanceDetail };

const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const pauses: Array<{ kind: number; ms: number }> = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) pauses.push({ kind: (entry as GcEntry).detail?.kind ?? 0, ms: entry.duration });
}).observe({ entryTypes: ['gc'] });

process.on('SIGUSR2', () => {
  const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
  const report = {
    // The delay of a 1 ms timer: 1 ms means none.
    loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), p999: ms(delay.percentile(99.9)), max: ms(delay.max) },
    gc: pauses,
  };
  process.stderr.write(`TAIL ${JSON.stringify(report)}\n`);
});
