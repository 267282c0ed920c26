/**
 * The live page (`metrics { dashboard }`): what a person at home wants to see, from the same
 * registry /metrics shows, plus the privacy picture of the last minutes: how many queries left
 * encrypted and by which protocol, how many through relays (Anonymized DNSCrypt, ODoH), and
 * whether any left in plaintext (and to which upstreams).
 *
 * The page (dashboard/page.html, shipped in the package, no script or style from elsewhere)
 * asks `/dashboard.json` every two seconds. A sampler keeps a snapshot of the counters every
 * SAMPLE_MS for WINDOW_MS, so rates, the hit ratio and latency percentiles describe the last
 * minutes rather than the whole life of the process. Nothing here runs unless a block says
 * `dashboard`; then the query path pays one more subscriber on `veil:upstream:attempt`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { upstreamAttempt } from '../../core/events.js';
import type { RequestContext } from '../../core/context.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import { veilVersion } from '../../lib/version.js';
import type { HttpAnswer } from '../../lib/http-endpoints.js';
import { DURATION_BUCKETS, type VeilMetrics } from './veil-metrics.js';

const SAMPLE_MS = 5_000;
export const WINDOW_MS = 5 * 60_000;
const MAX_SAMPLES = WINDOW_MS / SAMPLE_MS + 1;

/** Upstream protocols that carry queries encrypted, as the page names them. */
const ENCRYPTED: Record<string, string> = { doh: 'DoH', dot: 'DoT', dnscrypt: 'DNSCrypt', odoh: 'ODoH' };
const RELAYED: Record<string, string> = { dnscrypt: 'Anonymized DNSCrypt', odoh: 'ODoH relay' };

interface Sample {
  at: number;
  queries: number;
  hits: number;
  misses: number;
  blocked: number;
  /** Upstream attempts by protocol, relayed ones apart, plaintext by upstream. */
  encrypted: Record<string, number>;
  relayed: Record<string, number>;
  plaintext: Record<string, number>;
  /** Upstream latency buckets (not cumulative), by upstream name. */
  latency: Record<string, number[]>;
}

/** Counts of upstream attempts since start, by how they left. */
class LeaveCounter {
  readonly encrypted: Record<string, number> = {};
  readonly relayed: Record<string, number> = {};
  readonly plaintext: Record<string, number> = {};

  readonly onAttempt = (m: { ctx: RequestContext; upstream: Upstream }): void => {
    const protocol = m.upstream.protocol;
    const label = ENCRYPTED[protocol];
    if (label === undefined) {
      // forward over UDP or TCP: plaintext, wherever it went (a LAN resolver, or `insecure`).
      const key = m.upstream.name === m.upstream.address ? m.upstream.name : `${m.upstream.name} (${m.upstream.address})`;
      this.plaintext[key] = (this.plaintext[key] ?? 0) + 1;
      return;
    }
    this.encrypted[label] = (this.encrypted[label] ?? 0) + 1;
    const relay = m.ctx.meta.relay;
    if (RELAYED[protocol] !== undefined && relay !== undefined && relay !== 'direct') {
      this.relayed[RELAYED[protocol]!] = (this.relayed[RELAYED[protocol]!] ?? 0) + 1;
    }
  };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

function minus(now: Record<string, number>, then: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(now)) {
    const delta = value - (then?.[key] ?? 0);
    if (delta > 0) out[key] = delta;
  }
  return out;
}

/** The q-quantile (0..1) of a bucketed histogram, interpolated inside the bucket, in ms; null when empty. */
export function quantileMs(counts: readonly number[], q: number): number | null {
  const total = sum(counts);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (seen + c >= rank && c > 0) {
      const lower = i === 0 ? 0 : DURATION_BUCKETS[i - 1]!;
      // Above the last bound: say the last bound (a lower limit), as Prometheus does.
      if (i >= DURATION_BUCKETS.length) return DURATION_BUCKETS.at(-1)! * 1000;
      const upper = DURATION_BUCKETS[i]!;
      return (lower + (upper - lower) * ((rank - seen) / c)) * 1000;
    }
    seen += c;
  }
  return DURATION_BUCKETS.at(-1)! * 1000;
}

export class Dashboard {
  private readonly samples: Sample[] = [];
  private readonly leaving = new LeaveCounter();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly metrics: () => VeilMetrics | null) {
    upstreamAttempt.subscribe(this.leaving.onAttempt as never);
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    upstreamAttempt.unsubscribe(this.leaving.onAttempt as never);
  }

  private read(): Sample {
    const live = this.metrics();
    const latency: Record<string, number[]> = {};
    let queries = 0;
    let hits = 0;
    let misses = 0;
    let blocked = 0;
    if (live) {
      queries = sum([...live.requests.series.values()].map((s) => s.value));
      hits = sum([...live.cacheHits.series.values()].map((s) => s.value));
      misses = sum([...live.cacheMisses.series.values()].map((s) => s.value));
      blocked = sum([...live.filterBlocked.series.values()].map((s) => s.value));
      for (const series of live.upstreamDuration.series.values()) {
        const name = series.values[1]!;
        const into = (latency[name] ??= new Array<number>(series.counts.length).fill(0));
        series.counts.forEach((c, i) => (into[i]! += c));
      }
    }
    return {
      at: Date.now(),
      queries,
      hits,
      misses,
      blocked,
      encrypted: { ...this.leaving.encrypted },
      relayed: { ...this.leaving.relayed },
      plaintext: { ...this.leaving.plaintext },
      latency,
    };
  }

  private sample(): void {
    this.samples.push(this.read());
    if (this.samples.length > MAX_SAMPLES) this.samples.shift();
  }

  /** What the page shows, now. Totals are the registry's own numbers (those /metrics shows). */
  data(): Record<string, unknown> {
    const now = this.read();
    const oldest = this.samples[0] ?? now;
    const previous = this.samples.at(-1) ?? now;
    const windowSeconds = Math.max(1, (now.at - oldest.at) / 1000);
    const live = this.metrics();
    const upstreams = [];
    if (live) {
      const requests = new Map<string, { protocol: string; total: number }>();
      for (const series of live.upstreamRequests.series.values()) {
        const [, name, protocol] = series.values as [string, string, string, string];
        const entry = requests.get(name) ?? { protocol, total: 0 };
        entry.total += series.value;
        requests.set(name, entry);
      }
      const healthy = new Map([...live.upstreamHealthy.series.values()].map((s) => [s.values[0]!, s.value === 1]));
      for (const name of new Set([...requests.keys(), ...healthy.keys()])) {
        const recent = (now.latency[name] ?? []).map((c, i) => c - (oldest.latency[name]?.[i] ?? 0));
        const counts = sum(recent) > 0 ? recent : (now.latency[name] ?? []);
        upstreams.push({
          name,
          protocol: requests.get(name)?.protocol ?? '',
          healthy: healthy.get(name) ?? true,
          requests: requests.get(name)?.total ?? 0,
          p50: quantileMs(counts, 0.5),
          p90: quantileMs(counts, 0.9),
          p99: quantileMs(counts, 0.99),
          latencyOver: sum(recent) > 0 ? 'window' : 'total',
        });
      }
    }
    const byList = live ? [...live.filterBlocked.series.values()].map((s) => ({ server: s.values[0], list: s.values[1], total: s.value })) : [];
    const history = this.samples.slice(1).map((s, i) => ({ at: s.at, qps: (s.queries - this.samples[i]!.queries) / ((s.at - this.samples[i]!.at) / 1000 || 1) }));
    const lookups = now.hits - oldest.hits + (now.misses - oldest.misses);
    const plaintext = minus(now.plaintext, oldest.plaintext);
    return {
      version: veilVersion(),
      uptimeSeconds: Math.round(process.uptime()),
      windowSeconds: Math.round(windowSeconds),
      totals: { queries: now.queries, cacheHits: now.hits, cacheMisses: now.misses, blocked: now.blocked },
      window: {
        queries: now.queries - oldest.queries,
        qps: (now.queries - previous.queries) / Math.max(1, (now.at - previous.at) / 1000),
        cacheHitRatio: lookups > 0 ? (now.hits - oldest.hits) / lookups : null,
        blocked: now.blocked - oldest.blocked,
      },
      history,
      upstreams,
      blockedByList: byList,
      privacy: {
        encrypted: minus(now.encrypted, oldest.encrypted),
        relayed: minus(now.relayed, oldest.relayed),
        plaintext,
        plaintextTotal: sum(Object.values(plaintext)),
      },
    };
  }
}

/** One dashboard for a server's blocks (the metrics hub holds it): made by the first that asks, closed after the last. */
export class SharedDashboard {
  private shared: { dashboard: Dashboard; holders: number } | null = null;

  constructor(private readonly metrics: () => VeilMetrics | null) {}

  /** The dashboard, made if nobody holds it; `release` when done. */
  hold(): { dashboard: Dashboard; release(): void } {
    this.shared ??= { dashboard: new Dashboard(this.metrics), holders: 0 };
    this.shared.holders++;
    const held = this.shared;
    let released = false;
    return {
      dashboard: held.dashboard,
      release: () => {
        if (released) return;
        released = true;
        if (--held.holders === 0 && this.shared === held) {
          held.dashboard.close();
          this.shared = null;
        }
      },
    };
  }
}

const PAGE_FILE = fileURLToPath(new URL('../../../plugins/metrics/dashboard/page.html', import.meta.url));
let page: string | null = null;

/** Only what the page itself holds: no script, style, image or connection from anywhere else. */
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

export function pageAnswer(): HttpAnswer {
  page ??= readFileSync(PAGE_FILE, 'utf8');
  return { status: 200, type: 'text/html; charset=utf-8', body: page, headers: PAGE_HEADERS };
}

export function dataAnswer(dashboard: Dashboard): HttpAnswer {
  return { status: 200, type: 'application/json', body: JSON.stringify(dashboard.data()), headers: { 'X-Content-Type-Options': 'nosniff' } };
}
