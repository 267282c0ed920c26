/**
 * Gives freed memory back to the kernel after V8's full collections, through native/memory.c
 * (glibc's malloc_trim). A burst — a cache filling, a flood of queries — leaves many Buffers
 * that a full collection frees; glibc keeps their pages unless they sit at the top of its heap,
 * so RSS would stay at the burst's peak. Measured with a million cached answers: 253 → 235 MB
 * (docs/benchmarks.md). Does nothing where the addon is not built or the C library is not glibc.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

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

/** Bytes in use in V8's old space: only a full (mark-compact) collection makes it smaller. */
function oldSpaceUsed(): number {
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'old_space') return space.space_used_size;
  return 0;
}

/**
 * Starts trimming after full collections; returns what stops it (null when it cannot run here).
 * A full collection is told by the old space having shrunk since the last look, once a second:
 * a PerformanceObserver on 'gc' would hear every scavenge too (dozens a second under load), and
 * each of its entries costs Node a deprecation wrapper, about 1.5% of a DoH request's CPU.
 */
export function trimAfterCollections(addon = loadMemoryAddon(), checkMs = CHECK_MS, minIntervalMs = MIN_INTERVAL_MS): (() => void) | null {
  if (!addon) return null;
  let lastTrim = -Infinity;
  let lastUsed = oldSpaceUsed();
  const check = setInterval(() => {
    const used = oldSpaceUsed();
    const collected = used < lastUsed;
    lastUsed = used;
    if (!collected || performance.now() - lastTrim < minIntervalMs) return;
    lastTrim = performance.now();
    addon.trim();
  }, checkMs);
  check.unref();
  return () => clearInterval(check);
}
