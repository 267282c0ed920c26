/**
 * Loaded into Veil by bench/tail.ts (`--import`): what the slow queries of a run waited for,
 * seen from inside. It records the event loop's delay, every garbage collection's pause, and for
 * each query the time from the door to the answer (Veil's `veil:query:done`) and how much of it
 * was the upstream exchange as Veil timed it (`veil:upstream:attempt`: for DoT and DoH that
 * includes waiting for a pooled connection and the TLS write). One JSON line on each SIGUSR2,
 * covering the time since the one before.
 * Subscribing makes Veil publish those events, a fraction of a microsecond a query; nothing
 * else changes.
 */
import diagnostics from 'node:diagnostics_channel';
import { monitorEventLoopDelay, PerformanceObserver, type NodeGCPerformanceDetail, type PerformanceEntry } from 'node:perf_hooks';

/** A gc entry carries its kind in `detail` (Node's typings leave it off the base entry). */
type GcEntry = PerformanceEntry & { detail?: NodeGCPerformanceDetail };

/** Samples kept per series: a 2,000 qps run of a minute, with room; later ones are dropped. */
const MAX_SAMPLES = 200_000;

const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const pauses: Array<{ kind: number; ms: number }> = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) pauses.push({ kind: (entry as GcEntry).detail?.kind ?? 0, ms: entry.duration });
}).observe({ entryTypes: ['gc'] });

/** Per query: ms in Veil from the door to the answer, and ms of that spent in upstream exchanges. */
const doorToAnswer: number[] = [];
const upstream: number[] = [];
const own: number[] = [];
// A Map, emptied as each query ends: a WeakMap keyed by every young context made each scavenge
// work through its ephemerons (pauses of 10–20 ms where there were 1–7 without it).
const upstreamOf = new Map<object, number>();

diagnostics.subscribe('veil:upstream:attempt', (message) => {
  const { ctx, rttMs } = message as { ctx: object; rttMs: number };
  upstreamOf.set(ctx, (upstreamOf.get(ctx) ?? 0) + rttMs);
});
diagnostics.subscribe('veil:query:done', (message) => {
  const { ctx, durationMs } = message as { ctx: object; durationMs: number };
  if (doorToAnswer.length >= MAX_SAMPLES) {
    upstreamOf.delete(ctx);
    return;
  }
  const spent = upstreamOf.get(ctx) ?? 0;
  upstreamOf.delete(ctx);
  doorToAnswer.push(durationMs);
  upstream.push(spent);
  own.push(durationMs - spent);
});

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => Number((sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0).toFixed(3));
  return { count: sorted.length, p50: at(50), p99: at(99), p999: at(99.9), max: at(100), over1ms: sorted.filter((v) => v > 1).length };
}

process.on('SIGUSR2', () => {
  const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
  const report = {
    // The delay of a 1 ms timer: 1 ms means none.
    loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), p999: ms(delay.percentile(99.9)), max: ms(delay.max) },
    gc: pauses,
    doorToAnswerMs: summary(doorToAnswer),
    upstreamMs: summary(upstream),
    ownMs: summary(own),
  };
  process.stderr.write(`TAIL ${JSON.stringify(report)}\n`);
  // Each report covers the time since the one before: the first, after a warm-up, is thrown away.
  delay.reset();
  pauses.length = doorToAnswer.length = upstream.length = own.length = 0;
});
