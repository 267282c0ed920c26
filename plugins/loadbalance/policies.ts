/**
 * Upstream selection policies. Every policy tracks the health of each upstream the same way:
 * after `maxFails` failed attempts in a row an upstream is marked down and gets no queries for
 * a back-off period (`failTimeoutMs`; doubling while it keeps failing for `availability`).
 * After that period, without health checks, the next query may try it (one at a time): a
 * success marks it up, a failure starts the next period. With health checks, it gets no
 * queries until a probe succeeds. What differs between policies is the order in which the
 * usable upstreams are tried; a failed attempt moves to the next one in that order.
 *
 * Only errors count as failures (timeouts, refused or broken connections, TLS failures). A
 * SERVFAIL answer moves the query on but says nothing about the server: resolvers return it
 * for broken domains.
 */
import type { Clock } from '../../core/clock.js';
import type { RequestContext } from '../../core/context.js';
import { DeadlineError } from '../../core/errors.js';
import { upstreamHealth } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { UpstreamPolicy, type AttemptOutcome, type Upstream } from '../../core/upstream/upstream.js';

export interface HealthSettings {
  /** Failures in a row before an upstream is marked down; 0 never marks one down. */
  maxFails: number;
  /** First back-off period. */
  failTimeoutMs: number;
  /** Probe interval for upstreams marked down; null: no probes, queries try them instead. */
  healthCheckMs: number | null;
}

export interface PolicyEnvironment {
  clock: Clock;
  logger: Logger;
  /** A number in [0, 1): Math.random in service, scripted in tests. */
  random: () => number;
  settings: HealthSettings;
  /** Sends a probe to an upstream; resolves when it answered (any answer), rejects otherwise. */
  probe: (upstream: Upstream) => Promise<void>;
  /** Names of upstreams tried only after every other usable one (`fallback`). */
  fallback?: ReadonlySet<string>;
}

/** Longest back-off, however often an upstream fails (unless fail_timeout is longer still). */
export const MAX_BACKOFF_MS = 5 * 60_000;
/** Weight of a new round-trip sample in the moving average. */
const EWMA_WEIGHT = 0.25;
/** A failed attempt counts as this slow, so speed-based policies turn away from it at once. */
const FAILURE_RTT_MS = 1000;
/** Share of queries that speed-based policies send to a random upstream to keep measuring. */
const EXPLORATION = 0.05;

export interface UpstreamState {
  readonly upstream: Upstream;
  failsInRow: number;
  down: boolean;
  /** Monotonic ms after which a down upstream may be tried or probed again. */
  retryAt: number;
  backoffMs: number;
  inflight: number;
  /** Queries handed to it so far. */
  handed: number;
  /** Moving average of its round-trip time; null until measured. */
  rttMs: number | null;
  probing: boolean;
}

export abstract class BalancingPolicy extends UpstreamPolicy {
  private readonly states = new Map<Upstream, UpstreamState>();
  private timer: NodeJS.Timeout | null = null;
  /** Back-off doubles while an upstream keeps failing (the availability policy). */
  protected readonly growBackoff: boolean = false;

  constructor(protected readonly env: PolicyEnvironment) {
    super();
  }

  /** The usable upstreams (declared order) arranged in the order this policy tries them. */
  protected abstract arrange(usable: UpstreamState[], candidates: readonly Upstream[]): UpstreamState[];

  order(candidates: readonly Upstream[], _ctx: RequestContext): Upstream[] {
    const now = this.env.clock.monotonic();
    const usable: UpstreamState[] = [];
    for (const upstream of candidates) {
      const state = this.state(upstream);
      if (this.usable(state, now)) usable.push(state);
    }
    if (usable.length === 0) return [];
    const fallback = this.env.fallback;
    if (!fallback || fallback.size === 0) return this.arrange(usable, candidates).map((s) => s.upstream);
    // The fallback set goes behind the others, each group in this policy's order.
    const first = usable.filter((s) => !fallback.has(s.upstream.name));
    const last = usable.filter((s) => fallback.has(s.upstream.name));
    const arranged = [...(first.length > 0 ? this.arrange(first, candidates) : []), ...(last.length > 0 ? this.arrange(last, candidates) : [])];
    return arranged.map((s) => s.upstream);
  }

  private usable(state: UpstreamState, now: number): boolean {
    if (!state.down) return true;
    // Past its back-off and without probes: one query at a time may find out if it is back.
    return this.env.settings.healthCheckMs === null && now >= state.retryAt && state.inflight === 0;
  }

  override begin(upstream: Upstream): void {
    const state = this.state(upstream);
    state.inflight++;
    state.handed++;
  }

  override report(upstream: Upstream, outcome: AttemptOutcome): void {
    const state = this.state(upstream);
    state.inflight = Math.max(0, state.inflight - 1);
    if (outcome.error === undefined) this.succeeded(state, outcome.rttMs);
    else if (!(outcome.error instanceof DeadlineError)) this.failed(state, outcome.rttMs, outcome.error);
  }

  override healthy(upstream: Upstream): boolean {
    return !this.state(upstream).down;
  }

  /** The health and load this policy knows of an upstream (for tests and diagnostics). */
  state(upstream: Upstream): UpstreamState {
    let state = this.states.get(upstream);
    if (!state) {
      state = { upstream, failsInRow: 0, down: false, retryAt: 0, backoffMs: 0, inflight: 0, handed: 0, rttMs: null, probing: false };
      this.states.set(upstream, state);
    }
    return state;
  }

  private succeeded(state: UpstreamState, rttMs: number): void {
    state.failsInRow = 0;
    this.sample(state, rttMs);
    if (state.down) {
      state.down = false;
      this.env.logger.info(`upstream ${state.upstream.name} is up again`);
      this.publish(state, true);
    }
  }

  private failed(state: UpstreamState, rttMs: number, error: unknown): void {
    state.failsInRow++;
    this.sample(state, Math.max(rttMs, FAILURE_RTT_MS));
    const now = this.env.clock.monotonic();
    const { maxFails, failTimeoutMs, healthCheckMs } = this.env.settings;
    if (state.down) {
      // a try or a probe after the back-off failed: wait again, longer for availability
      const cap = Math.max(MAX_BACKOFF_MS, failTimeoutMs);
      state.backoffMs = this.growBackoff ? Math.min(state.backoffMs * 2, cap) : failTimeoutMs;
      state.retryAt = now + state.backoffMs;
      return;
    }
    if (maxFails === 0 || state.failsInRow < maxFails) return;
    state.down = true;
    state.backoffMs = failTimeoutMs;
    state.retryAt = now + failTimeoutMs;
    const reason = error instanceof Error ? error.message : String(error);
    const next = healthCheckMs === null ? `tried again in ${formatMs(failTimeoutMs)}` : `probed from ${formatMs(failTimeoutMs)} on, every ${formatMs(healthCheckMs)}`;
    this.env.logger.warn(`upstream ${state.upstream.name} (${state.upstream.protocol} ${state.upstream.address}) marked down after ${state.failsInRow} failure${state.failsInRow === 1 ? '' : 's'} in a row (${reason}); ${next}`);
    this.publish(state, false);
  }

  private sample(state: UpstreamState, rttMs: number): void {
    state.rttMs = state.rttMs === null ? rttMs : state.rttMs + EWMA_WEIGHT * (rttMs - state.rttMs);
  }

  private publish(state: UpstreamState, healthy: boolean): void {
    if (upstreamHealth.hasSubscribers) upstreamHealth.publish({ upstream: state.upstream.name, protocol: state.upstream.protocol, healthy });
  }

  /** Probes every upstream marked down whose back-off has passed; one probe each at a time. */
  async probeDown(): Promise<void> {
    const now = this.env.clock.monotonic();
    const due = [...this.states.values()].filter((s) => s.down && !s.probing && now >= s.retryAt);
    await Promise.all(
      due.map(async (state) => {
        state.probing = true;
        const started = this.env.clock.monotonic();
        try {
          await this.env.probe(state.upstream);
          this.succeeded(state, this.env.clock.monotonic() - started);
        } catch (error) {
          this.failed(state, this.env.clock.monotonic() - started, error);
        } finally {
          state.probing = false;
        }
      }),
    );
  }

  override start(): void {
    const interval = this.env.settings.healthCheckMs;
    if (interval !== null) this.timer = setInterval(() => void this.probeDown(), interval);
  }

  override stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Fisher–Yates with the environment's randomness. */
  protected shuffle<T>(items: T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.env.random() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** Now and then, a random upstream goes first, so that speed estimates stay current. */
  protected explore(ordered: UpstreamState[]): UpstreamState[] {
    if (ordered.length < 2 || this.env.random() >= EXPLORATION) return ordered;
    const pick = ordered[Math.floor(this.env.random() * ordered.length)]!;
    return [pick, ...ordered.filter((s) => s !== pick)];
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** First usable upstream in declared order; the others in order behind it. */
export class FailoverPolicy extends BalancingPolicy {
  readonly name = 'failover';
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    return usable;
  }
}

/** Each query starts one further along the usable upstreams. */
export class RoundRobinPolicy extends BalancingPolicy {
  readonly name = 'round_robin';
  /** Per group of candidates (one per zone): where the next query starts. */
  private readonly turns = new WeakMap<readonly Upstream[], number>();
  protected arrange(usable: UpstreamState[], candidates: readonly Upstream[]): UpstreamState[] {
    const turn = this.turns.get(candidates) ?? 0;
    this.turns.set(candidates, turn + 1);
    const start = turn % usable.length;
    return [...usable.slice(start), ...usable.slice(0, start)];
  }
}

/** A random order for each query. */
export class RandomPolicy extends BalancingPolicy {
  readonly name = 'random';
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    return this.shuffle(usable);
  }
}

/** The upstream handed the fewest queries so far goes first (dotproxy's HistoricalConnections). */
export class LeastConnectionsPolicy extends BalancingPolicy {
  readonly name = 'least_connections';
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    return [...usable].sort((a, b) => a.handed - b.handed);
  }
}

/** A random order among the available; a failing upstream is pulled out for longer each time. */
export class AvailabilityPolicy extends BalancingPolicy {
  readonly name = 'availability';
  protected override readonly growBackoff = true;
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    return this.shuffle(usable);
  }
}

/** Lowest moving-average round-trip time first; an unmeasured upstream counts as fastest. */
export class FastestPolicy extends BalancingPolicy {
  readonly name = 'fastest';
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    return this.explore([...usable].sort((a, b) => (a.rttMs ?? 0) - (b.rttMs ?? 0)));
  }
}

/**
 * Power of two choices: two upstreams drawn at random, the one with the lower load score goes
 * first (RTT times queries in flight), the other second, the rest by score. Spreads load like
 * random while steering away from slow or busy upstreams.
 */
export class PowerOfTwoPolicy extends BalancingPolicy {
  readonly name = 'p2';
  protected arrange(usable: UpstreamState[]): UpstreamState[] {
    if (usable.length < 2) return usable;
    const score = (s: UpstreamState): number => ((s.rttMs ?? 0) + 1) * (s.inflight + 1);
    const i = Math.floor(this.env.random() * usable.length);
    let j = Math.floor(this.env.random() * (usable.length - 1));
    if (j >= i) j++;
    const [a, b] = [usable[i]!, usable[j]!];
    const pair = score(b) < score(a) ? [b, a] : [a, b];
    const rest = usable.filter((s) => s !== a && s !== b).sort((x, y) => score(x) - score(y));
    return this.explore([...pair, ...rest]);
  }
}

export const POLICIES = {
  round_robin: RoundRobinPolicy,
  random: RandomPolicy,
  least_connections: LeastConnectionsPolicy,
  availability: AvailabilityPolicy,
  failover: FailoverPolicy,
  fastest: FastestPolicy,
  p2: PowerOfTwoPolicy,
} as const;

export type PolicyName = keyof typeof POLICIES;
