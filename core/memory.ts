/**
 * Gives freed memory back to the kernel after V8's full collections, through native/memory.c
 * (glibc's malloc_trim). A burst — a cache filling, a flood of queries — leaves many Buffers
 * that a full collection frees; glibc keeps their pages unless they sit at the top of its heap,
 * so RSS would stay at the burst's peak. Measured with a million cached answers: 253 → 235 MB
 * (docs/benchmarks.md). Does nothing where the addon is not built or the C library is not glibc.
 */
import { createRequire } from 'node:module';
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';

/** How often to look whether a full collection happened since the last trim. */
const CHECK_MS = 1000;
/** Trims at most this often (each walks malloc's free lists: under a millisecond here). */
const MIN_INTERVAL_MS = 10_000;

export interface MemoryAddon {
  trim(): boolean;
}

export function loadMemoryAddon(): MemoryAddon | null {
  try {
    return createRequire(import.meta.url)('../native/memory.node') as MemoryAddon;
  } catch {
    return null; // not built here (no C compiler): memory is left to the allocator
  }
}

/** Starts trimming after full collections; returns what stops it (null when it cannot run here). */
export function trimAfterCollections(addon = loadMemoryAddon(), checkMs = CHECK_MS, minIntervalMs = MIN_INTERVAL_MS): (() => void) | null {
  if (!addon) return null;
  let collected = false;
  let lastTrim = -Infinity;
  // The observer only takes note: a timer started from its callback can be held back until
  // some other timer of the process fires.
  const observer = new PerformanceObserver((list) => {
    if (list.getEntries().some((entry) => (entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) collected = true;
  });
  observer.observe({ entryTypes: ['gc'] });
  const check = setInterval(() => {
    if (!collected || performance.now() - lastTrim < minIntervalMs) return;
    collected = false;
    lastTrim = performance.now();
    addon.trim();
  }, checkMs);
  check.unref();
  return () => {
    observer.disconnect();
    clearInterval(check);
  };
}
