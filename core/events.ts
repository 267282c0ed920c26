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

/** A query answered (after truncation): what went out and how long it took. */
export const queryDone = channel<{ ctx: RequestContext; response: Buffer; durationMs: number }>('veil:query:done');

/** A query refused or dropped at the door, before any block saw it. */
export const queryRejected = channel<{ reason: string; info: QueryInfo }>('veil:query:rejected');

/** One attempt at one upstream. `rcode` when it answered; `error` when it did not. */
export const upstreamAttempt = channel<{ ctx: RequestContext; upstream: Upstream; ok: boolean; rttMs: number; rcode?: number; error?: unknown }>('veil:upstream:attempt');

/** A query moved from one upstream to the next after a failed attempt. */
export const upstreamFailover = channel<{ ctx: RequestContext; from: Upstream }>('veil:upstream:failover');

/** An upstream marked up or down by a health-tracking policy. */
export const upstreamHealth = channel<{ upstream: string; protocol: string; healthy: boolean }>('veil:upstream:health');

/** Connection pool life of an upstream: `open` is the number open after the event. */
export const upstreamConnection = channel<{ upstream: string; protocol: string; event: 'created' | 'reused' | 'closed' | 'stale-closed' | 'failed'; open: number }>(
  'veil:upstream:connection',
);

/** Cache activity in a server block; `entries` is the size after the event. */
export const cacheEvent = channel<{ server: string; event: 'hit' | 'miss' | 'insert' | 'evict' | 'prefetch' | 'stale'; entries: number }>('veil:cache');

/** A query or answer blocked by a filter list (`list` is the list's name or file). */
export const filterBlocked = channel<{ ctx: RequestContext; list: string }>('veil:filter:blocked');

/** A DNSCrypt certificate in use by an upstream, and when it stops being valid (Unix seconds). */
export const dnscryptCertificate = channel<{ upstream: string; serial: number; esVersion: number; expiresAt: number }>('veil:dnscrypt:certificate');

/** The relay listener forwarded or dropped a packet (`reason` names the rule). */
export const relayEvent = channel<{ event: 'forwarded' | 'dropped'; reason?: string; transport: 'udp' | 'tcp' }>('veil:relay');
