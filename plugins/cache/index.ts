/**
 * `cache`: answers repeated questions from memory.
 *
 *     cache [CAPACITY] {
 *         success CAPACITY [MAXTTL [MINTTL]]
 *         denial CAPACITY [MAXTTL [MINTTL]]
 *         servfail DURATION
 *         prefetch AMOUNT [DURATION [PERCENTAGE%]]
 *         serve_stale [DURATION]
 *         shared redis://…|rediss://… { key_file FILE … }
 *     }
 *
 * Entries are keyed by name (any case), type, class, the DO and CD bits and whether the query
 * had EDNS; each server block has its own cache, kept across reloads while its sizes stay.
 * With `shared`, a fleet of instances shares a second level in Valkey (shared/).
 */
import { Buffer } from 'node:buffer';
import { blockServerName } from '../../core/block.js';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, parseDuration, parseInteger, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { Rcode } from '../../core/dns/constants.js';
import { checkingDisabled, rcodeOf } from '../../core/dns/wire.js';
import { cacheEvent } from '../../core/events.js';
import { FleetService } from '../../core/fleet.js';
import type { Logger } from '../../core/logger.js';
import type { BlockScope, Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { TlsContextsService } from '../../lib/tls/contexts.js';
import { analyze } from './entry.js';
import { parseShared, type SharedOptions } from './shared/config.js';
import { flushedQuestions, KEY_BITS } from './shared/flush.js';
import { SharedCache, SharedCacheService, type SharedAnswer } from './shared/shared-cache.js';
import { CacheStore, hashQuestion, type EntryKind, type StoredEntry } from './store.js';

const NAME = 'cache';
const DEFAULT_CAPACITY = 9984;
const MAX_CAPACITY = 10_000_000;
const MAX_TTL_LIMIT = 7 * 86400;
/** RFC 8767 §4: stale answers carry a TTL of 30 s. */
const STALE_TTL = 30;
/** RFC 8767 §5: how long a client waits for a fresh answer before it gets the stale one. */
const STALE_CLIENT_WAIT_MS = 1800;
/** The header's Authenticated Data bit (byte 3). */
const AD = 0x20;
/** Background refreshes (prefetch, stale) get the same time a client query gets. */
const REFRESH_TIMEOUT_MS = 4000;

export interface TtlBounds {
  capacity: number;
  maxTtl: number;
  minTtl: number;
}

export interface CacheOptions {
  success: TtlBounds;
  denial: TtlBounds;
  servfailTtl: number;
  prefetch: { amount: number; windowMs: number; percentage: number } | null;
  /** How long past expiry an entry may still be served when upstreams fail; null: never. */
  serveStaleMs: number | null;
  /** The fleet's shared level in Valkey; null: this instance's memory only. */
  shared: SharedOptions | null;
}

export const cachePlugin: PluginDefinition<CacheOptions> = {
  name: NAME,
  once: true,
  // With `shared`: the fleet's level (veil cache flush), and the channel to the fleet (filter's list reloads).
  provides: [SharedCacheService, FleetService],

  parse(directives) {
    const d = directives[0]!;
    const [capacityToken] = expectArgs(NAME, d, 0, 1);
    const capacity = capacityToken ? parseInteger(NAME, capacityToken, 1, MAX_CAPACITY) : DEFAULT_CAPACITY;
    const options: CacheOptions = {
      success: { capacity, maxTtl: 3600, minTtl: 5 },
      denial: { capacity, maxTtl: 1800, minTtl: 5 },
      servfailTtl: 5,
      prefetch: null,
      serveStaleMs: null,
      shared: null,
    };
    readOptions(NAME, d.block, {
      success: (line) => (options.success = parseBounds(line, options.success)),
      denial: (line) => (options.denial = parseBounds(line, options.denial)),
      servfail: (line) => {
        expectNoBlock(NAME, line);
        const ms = parseDuration(NAME, expectArgs(NAME, line, 1)[0]!, { min: 0, max: 300_000 });
        options.servfailTtl = Math.round(ms / 1000);
      },
      prefetch: (line) => {
        expectNoBlock(NAME, line);
        const [amount, window, percentage] = expectArgs(NAME, line, 1, 3) as [Token, Token?, Token?];
        options.prefetch = {
          amount: parseInteger(NAME, amount, 1, 1_000_000),
          windowMs: window ? parseDuration(NAME, window, { min: 1000, max: 86_400_000 }) : 60_000,
          percentage: percentage ? parsePercentage(percentage) : 10,
        };
      },
      serve_stale: (line) => {
        expectNoBlock(NAME, line);
        const [duration] = expectArgs(NAME, line, 0, 1);
        options.serveStaleMs = duration ? parseDuration(NAME, duration, { min: 1000, max: 7 * 86_400_000 }) : 3_600_000;
      },
      shared: (line) => (options.shared = parseShared(line)),
    });
    return options;
  },

  create(options, scope) {
    return new CachePlugin(options, scope);
  },
};

function parseBounds(line: Directive, defaults: TtlBounds): TtlBounds {
  expectNoBlock(NAME, line);
  const [capacity, maxTtl, minTtl] = expectArgs(NAME, line, 1, 3) as [Token, Token?, Token?];
  const bounds = {
    capacity: parseInteger(NAME, capacity, 1, MAX_CAPACITY),
    maxTtl: maxTtl ? parseInteger(NAME, maxTtl, 0, MAX_TTL_LIMIT) : defaults.maxTtl,
    minTtl: minTtl ? parseInteger(NAME, minTtl, 0, MAX_TTL_LIMIT) : defaults.minTtl,
  };
  if (bounds.minTtl > bounds.maxTtl) throw configError(NAME, minTtl ?? line.name, `MINTTL ${bounds.minTtl} is above MAXTTL ${bounds.maxTtl}`);
  return bounds;
}

function parsePercentage(token: Token): number {
  const m = /^(\d{1,3})%$/.exec(token.text);
  if (!m || Number(m[1]) > 100) throw configError(NAME, token, `"${token.text}" is not a percentage like 10%`);
  return Number(m[1]);
}

/** The two stores of one block: positive answers, and denials with the brief SERVFAILs. */
class Stores {
  readonly success: CacheStore;
  readonly denial: CacheStore;
  /** Set by the plugin that uses the stores now (the last configuration loaded). */
  onEvict: () => void = () => {};

  constructor(successCapacity: number, denialCapacity: number) {
    this.success = new CacheStore(successCapacity, () => this.onEvict());
    this.denial = new CacheStore(denialCapacity, () => this.onEvict());
  }

  get size(): number {
    return this.success.size + this.denial.size;
  }
}

/** What a lookup found, and in which store. */
interface Found {
  store: CacheStore;
  entry: StoredEntry;
}

class CachePlugin implements Plugin {
  readonly name = NAME;
  private readonly stores: Stores;
  private readonly logger: Logger;
  private readonly server: string;
  /** The fleet's level behind this one; null without `shared`. */
  private readonly shared: SharedCache | null = null;

  constructor(
    private readonly options: CacheOptions,
    scope: BlockScope,
  ) {
    this.logger = scope.logger;
    this.server = blockServerName(scope.block);
    // Kept across reloads (a warm cache is the point), unless the sizes changed.
    this.stores = scope.keep(`stores ${options.success.capacity} ${options.denial.capacity}`, () => new Stores(options.success.capacity, options.denial.capacity));
    this.stores.onEvict = () => this.publish('evict');
    if (options.shared) {
      this.shared = new SharedCache(options.shared, this.server, this.logger, scope.clock, scope.service(TlsContextsService));
      this.shared.onFlush = (name) => this.flush(name);
      scope.provide(SharedCacheService, this.shared);
      scope.provide(FleetService, this.shared);
    }
  }

  async start(): Promise<void> {
    await this.shared?.start();
  }

  async stop(): Promise<void> {
    await this.shared?.stop();
  }

  /** Not an async function: a hit, the path that must be cheapest, costs no async frame. */
  serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    const found = this.lookup(ctx);
    if (found) {
      const { store, entry } = found;
      // Its age when the query arrived: the door read the clock then, and a hit reads it no more
      // (a read costs about a twentieth of a hit). An entry stored since counts as new.
      const ageMs = Math.max(0, ctx.startedAt - entry.storedAt);
      if (ageMs < entry.ttl * 1000) {
        ctx.meta.cacheHit = true;
        this.publish('hit');
        if (this.options.prefetch) this.maybePrefetch(store, entry, ctx, next, ageMs);
        const age = Math.floor(ageMs / 1000);
        const maxTtl = this.maxTtl(entry.kind);
        return Promise.resolve(fitAd(store.render(entry.slot, ctx.query, (ttl) => Math.max(0, Math.min(ttl, maxTtl) - age)), ctx));
      }
      if (this.options.serveStaleMs !== null && entry.kind !== 'servfail' && ageMs < entry.ttl * 1000 + this.options.serveStaleMs) {
        return this.staleOrFresh(store, entry, ctx, next);
      }
      store.delete(ctx.query, ctx.question.end, keyBits(ctx));
    }
    this.publish('miss');
    return this.serveMiss(ctx, next);
  }

  private async serveMiss(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    if (this.shared) {
      const shared = await this.fromShared(ctx);
      if (shared) return shared;
    }
    const answer = await next(ctx);
    if (answer) this.insert(ctx, answer);
    return answer;
  }

  /**
   * A local miss asks the fleet's level, for at most `timeout`. A hit is kept here too, as old
   * as it is there, so its TTLs go on counting down from where the fleet's had got to.
   */
  private async fromShared(ctx: RequestContext): Promise<Buffer | null> {
    const bits = keyBits(ctx);
    const found = await this.shared!.lookup(ctx.query, ctx.question.end, bits, Math.min(this.options.shared!.timeoutMs, ctx.remaining()));
    if (!found) return null;
    const store = this.insert(ctx, found.answer, found);
    const entry = store?.get(ctx.query, ctx.question.end, bits);
    if (!store || !entry) return null;
    ctx.meta.cacheHit = true;
    ctx.meta.cacheShared = true;
    const age = Math.floor(found.ageMs / 1000);
    const maxTtl = this.maxTtl(entry.kind);
    return store.render(entry.slot, ctx.query, (ttl) => Math.max(0, Math.min(ttl, maxTtl) - age));
  }

  /** Drops every entry, or those of one name (`veil cache flush` across the fleet). */
  private flush(name: string | null): void {
    if (name === null) {
      this.stores.success.clear();
      this.stores.denial.clear();
      return;
    }
    for (const question of flushedQuestions(name)) {
      for (const bits of KEY_BITS) {
        this.stores.success.delete(question, question.length, bits);
        this.stores.denial.delete(question, question.length, bits);
      }
    }
  }

  private lookup(ctx: RequestContext): Found | null {
    const bits = keyBits(ctx);
    const end = ctx.question.end;
    const hash = hashQuestion(ctx.query, end, bits);
    const success = this.stores.success.get(ctx.query, end, bits, hash);
    if (success) return { store: this.stores.success, entry: success };
    const denial = this.stores.denial.get(ctx.query, end, bits, hash);
    return denial ? { store: this.stores.denial, entry: denial } : null;
  }

  /**
   * RFC 8767: an expired entry within `serve_stale` is refreshed; if the fresh answer fails or
   * takes longer than the client should wait, the stale one goes out (TTL 30) and the refresh
   * goes on in the background, filling the cache when it succeeds.
   */
  private async staleOrFresh(store: CacheStore, entry: StoredEntry, ctx: RequestContext, next: Next): Promise<Buffer | null> {
    // Rendered now: the refresh may replace the entry in its slot before we answer.
    const stale = store.render(entry.slot, ctx.query, () => STALE_TTL);
    // Past its TTL, an answer is past what its validation vouched for: never AD.
    stale[3] = stale[3]! & ~AD;
    const refresh = this.refresh(ctx, next);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'waited'>((resolve) => (timer = setTimeout(() => resolve('waited'), Math.min(STALE_CLIENT_WAIT_MS, ctx.remaining()))));
    const first = await Promise.race([refresh, waited]);
    clearTimeout(timer);
    if (first !== 'waited' && first !== null && usable(first)) return first;
    ctx.meta.cacheHit = true;
    ctx.meta.stale = true;
    this.publish('stale');
    return stale;
  }

  /** CoreDNS's prefetch: a popular entry near its end is fetched again before it expires. */
  private maybePrefetch(store: CacheStore, entry: StoredEntry, ctx: RequestContext, next: Next, ageMs: number): void {
    const { amount, windowMs, percentage } = this.options.prefetch!;
    const now = ctx.clock.monotonic();
    let state = store.watched.get(entry.slot);
    if (!state) {
      state = { hits: 0, windowStart: now, refreshing: false };
      store.watched.set(entry.slot, state);
    }
    if (now - state.windowStart > windowMs) {
      state.windowStart = now;
      state.hits = 0;
    }
    state.hits++;
    const leftPercent = 100 - (ageMs / (entry.ttl * 1000)) * 100;
    if (state.refreshing || state.hits < amount || leftPercent > percentage) return;
    state.refreshing = true;
    this.publish('prefetch');
    const watching = state;
    // Its own context: the client's query is answered already.
    void this.refresh(ctx.fork(REFRESH_TIMEOUT_MS), next).finally(() => (watching.refreshing = false));
  }

  /** Asks further down the chain; stores a good answer. Never throws: null on failure. */
  private async refresh(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    try {
      const answer = await next(ctx);
      if (answer && usable(answer)) this.insert(ctx, answer);
      return answer;
    } catch (err) {
      this.logger.debug(`refreshing ${ctx.name} failed: ${(err as Error).message}`);
      return null;
    }
  }

  /**
   * Keeps an answer: one from upstream (which the fleet's level gets too), or one `fromShared`
   * with its age there. Returns the store it went into, or null when it is not kept.
   */
  private insert(ctx: RequestContext, answer: Buffer, fromShared: SharedAnswer | null = null): CacheStore | null {
    const analysis = analyze(answer);
    // The answer's question must be the query's, byte for byte but for case: it is the key.
    if (!analysis || analysis.questionEnd !== ctx.question.end) return null;
    if (fromShared && analysis.kind === 'servfail') return null; // never shared: a failure of one instance's path
    const ttl = fromShared ? Math.min(fromShared.ttl, this.maxTtl(analysis.kind)) : this.ttlFor(analysis.kind, analysis.ttl);
    if (ttl <= 0 || (fromShared && fromShared.ageMs >= ttl * 1000)) return null;
    const bits = keyBits(ctx);
    // A SERVFAIL must not push out a good answer that serve_stale could still use.
    if (analysis.kind === 'servfail' && this.options.serveStaleMs !== null && this.stores.success.get(ctx.query, ctx.question.end, bits)) return null;
    // A key lives in one store at a time.
    const [into, other] = analysis.kind === 'success' ? [this.stores.success, this.stores.denial] : [this.stores.denial, this.stores.success];
    other.delete(ctx.query, ctx.question.end, bits);
    const now = ctx.clock.monotonic();
    // The stored AD bit is the dnssec plugin's verdict (set or cleared), when it stands in the block.
    const stored = withValidation(answer, ctx);
    into.set(stored, analysis.questionEnd, bits, analysis.kind, analysis.ttlOffsets, now - (fromShared?.ageMs ?? 0), ttl);
    this.publish('insert');
    if (this.shared && !fromShared && analysis.kind !== 'servfail') this.shared.write(stored, analysis.questionEnd, bits, ttl, now);
    return into;
  }

  private ttlFor(kind: EntryKind, answerTtl: number): number {
    if (kind === 'servfail') return this.options.servfailTtl;
    const bounds = kind === 'success' ? this.options.success : this.options.denial;
    return Math.min(bounds.maxTtl, Math.max(bounds.minTtl, answerTtl));
  }

  /** The largest TTL handed out: clients keep an answer no longer than we would. */
  private maxTtl(kind: EntryKind): number {
    return kind === 'success' ? this.options.success.maxTtl : kind === 'denial' ? this.options.denial.maxTtl : this.options.servfailTtl;
  }

  private publish(event: 'hit' | 'miss' | 'insert' | 'evict' | 'prefetch' | 'stale'): void {
    if (cacheEvent.hasSubscribers) cacheEvent.publish({ server: this.server, event, entries: this.stores.size });
  }
}

/** SERVFAIL and REFUSED are failures of the path, not answers worth keeping or preferring. */
function usable(answer: Buffer): boolean {
  const rcode = rcodeOf(answer);
  return rcode !== Rcode.SERVFAIL && rcode !== Rcode.REFUSED;
}

/**
 * The answer as stored: when the dnssec plugin validated it, its AD bit says whether it was
 * secure, whatever the client that caused it asked (so a hit costs no crypto and keeps AD).
 */
function withValidation(answer: Buffer, ctx: RequestContext): Buffer {
  if (ctx.meta.dnssec === undefined) return answer;
  const stored = Buffer.from(answer);
  stored[3] = ctx.meta.dnssec === 'secure' ? stored[3]! | AD : stored[3]! & ~AD;
  return stored;
}

/** RFC 6840 §5.7: AD goes only to clients that asked with DO or AD. */
function fitAd(out: Buffer, ctx: RequestContext): Buffer {
  if (out[3]! & AD && !ctx.dnssecOk && !(ctx.query[3]! & AD)) out[3] = out[3]! & ~AD;
  return out;
}

/** Beside the question (name, type, class), what changes the answer: DO, CD, and EDNS at all. */
function keyBits(ctx: RequestContext): number {
  return (ctx.dnssecOk ? 1 : 0) | (checkingDisabled(ctx.query) ? 2 : 0) | (ctx.edns ? 4 : 0);
}
