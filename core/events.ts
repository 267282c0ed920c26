/**
 * What happens inside Veil, published on `node:diagnostics_channel` channels. Producers publish
 * (checking `hasSubscribers` first, so nobody pays when nothing listens); the metrics and trace
 * plugins subscribe. This file is the contract between them: one channel per kind of event,
 * with the shape of its message.
 */
import diagnostics from 'node:diagnostics_channel';
import type { RequestContext } from './context.js';
import type { QueryInfo } from './listeners/listener.js';
import type { Upstream } from './upstream/upstream.js';

function channel<T>(name: string): TypedChannel<T> {
  return diagnostics.channel(name) as TypedChannel<T>;
}

export interface TypedChannel<T> {
  readonly name: string | symbol;
  readonly hasSubscribers: boolean;
  publish(message: T): void;
  subscribe(listener: (message: T, name: string | symbol) => void): void;
  unsubscribe(listener: (message: T, name: string | symbol) => void): unknown;
}

/**
 * A query a block handled: the answer that went out (after truncation), or null when a plugin
 * chose to send nothing; and how long it took.
 */
export const queryDone = channel<{ ctx: RequestContext; response: Buffer | null; durationMs: number }>('veil:query:done');

/** A query refused or dropped at the door, before any block saw it. */
export const queryRejected = channel<{ reason: string; info: QueryInfo }>('veil:query:rejected');

/**
 * One attempt at one upstream, published when it ends. `attempt` counts from 1 within the query;
 * `rcode` and `answer` when it answered; `error` when it did not. `query` is the message as the
 * upstream stage handed it on (the client's EDNS options removed), before any transport's own
 * changes (ID, padding, encryption).
 */
export const upstreamAttempt = channel<{
  ctx: RequestContext;
  upstream: Upstream;
  attempt: number;
  ok: boolean;
  rttMs: number;
  rcode?: number;
  error?: unknown;
  query?: Buffer;
  answer?: Buffer;
}>('veil:upstream:attempt');

/**
 * An upstream sent a query again on its own, within one attempt: over TCP after a truncated UDP
 * answer (`truncated`), on a fresh connection after the one it used died (`connection-lost`), on
 * another connection when its own sat on it (`held-back`, core/upstream/stream-pool.ts).
 */
export const upstreamRetry = channel<{ upstream: string; protocol: string; reason: string }>('veil:upstream:retry');

/** A query moved from one upstream to the next after a failed attempt. */
export const upstreamFailover = channel<{ ctx: RequestContext; from: Upstream }>('veil:upstream:failover');

/** An upstream marked up or down by a health-tracking policy. */
export const upstreamHealth = channel<{ upstream: string; protocol: string; healthy: boolean }>('veil:upstream:health');

/**
 * Connection pool life of an upstream: `open` is the number open after the event, `idle` (when
 * the pool knows it) how many of those have no query in flight.
 */
export const upstreamConnection = channel<{
  upstream: string;
  protocol: string;
  event: 'created' | 'reused' | 'closed' | 'stale-closed' | 'failed';
  open: number;
  idle?: number;
}>('veil:upstream:connection');

/** Cache activity in a server block; `entries` is the size after the event. */
export const cacheEvent = channel<{ server: string; event: 'hit' | 'miss' | 'insert' | 'evict' | 'prefetch' | 'stale'; entries: number }>('veil:cache');

/**
 * The shared level of a block's cache (cache's `shared`): a lookup that found (`hit`), did not
 * find (`miss`), failed (`error`), ran out of time (`timeout`) or found data that does not open
 * (`invalid`); a write sent (`write`) or dropped (`drop`). `queue` is the write queue's depth.
 */
export const sharedCacheEvent = channel<{ server: string; event: 'hit' | 'miss' | 'error' | 'timeout' | 'invalid' | 'write' | 'drop'; queue: number }>('veil:cache:shared');

/** The shared level's connection: `up`, `slow` (lookups time out: skipped until it answers in time), `down`. */
export const sharedCacheState = channel<{ server: string; state: 'connecting' | 'up' | 'slow' | 'down' }>('veil:cache:shared:state');

/** A query or answer blocked by a filter list (`list` is the list's name or file). */
export const filterBlocked = channel<{ ctx: RequestContext; list: string }>('veil:filter:blocked');

/** A DNSCrypt certificate in use by an upstream, and when it stops being valid (Unix seconds). */
export const dnscryptCertificate = channel<{ upstream: string; serial: number; esVersion: number; expiresAt: number }>('veil:dnscrypt:certificate');

/**
 * A DNSCrypt listener did an X25519 key exchange for a client key it had not cached (the costly
 * step before a query can be decrypted). `listener` is its configured address.
 */
export const dnscryptKeyExchange = channel<{ listener: string }>('veil:dnscrypt:key-exchange');

/** The relay listener forwarded or dropped a packet (`reason` names the rule). */
export const relayEvent = channel<{ event: 'forwarded' | 'dropped'; reason?: string; transport: 'udp' | 'tcp' }>('veil:relay');

/**
 * A value of a metric a plugin defined through `scope.metrics` (core/plugin-metrics.ts):
 * `labelNames` and `labelValues` in the same order, `server` first.
 */
export const pluginMetric = channel<{
  type: 'counter' | 'gauge';
  name: string;
  help: string;
  labelNames: readonly string[];
  labelValues: readonly string[];
  value: number;
}>('veil:plugin:metric');

/**
 * An ODoH target answered an oblivious query or refused it (`reason`: the rule). Never names
 * the client: a target sees only its relay.
 */
export const odohTargetEvent = channel<{ event: 'answered' | 'refused'; reason?: string }>('veil:odoh:target');

/**
 * An ODoH relay passed a request on (`forwarded`), refused it before passing it on
 * (`refused`, with the rule) or could not get the target's answer (`failed`). `target` is the
 * allowed target's host, when the request named one; nothing names the client.
 */
export const odohRelayEvent = channel<{ event: 'forwarded' | 'refused' | 'failed'; reason?: string; target?: string }>('veil:odoh:relay');
