/**
 * The request context: everything a plugin knows about one query. The raw wire query is kept
 * as received; the question and OPT record were read at the door (cheaply, without a full
 * decode); anything else is decoded only when a plugin asks for it.
 */
import type { Span } from '@opentelemetry/api';
import dnsPacket from 'dns-packet';
import type { Clock } from './clock.js';
import { readId, checkingDisabled, readEdns, readQuestion, type Edns, type Question } from './dns/wire.js';
import { CLASSIC_UDP_SIZE, MIN_EDNS_UDP_SIZE } from './dns/constants.js';

export interface ClientAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** How the query arrived: `udp`, `tcp`, and the schemes later listeners add (`tls`, `https`, `dnscrypt`). */
export type TransportName = string;

/**
 * Per-query notes plugins leave for each other (the log line, metrics and traces read them).
 * Every key is declared, with its type: core's here, a plugin's own next to it, by declaration
 * merging (`declare module 'veil/plugin' { interface QueryMeta { myKey?: string } }`, or
 * `'../../core/context.js'` inside the tree), so that a misspelt key does not compile.
 */
export interface QueryMeta {
  /** Name of the upstream that gave the answer. */
  upstream?: string;
  /** Upstream attempts made for this query (1 when the first one answered). */
  attempts?: number;
  /** True when the answer came from the cache. */
  cacheHit?: boolean;
  /** True when that was the fleet's shared level of the cache (cache's `shared`). */
  cacheShared?: boolean;
  /** True when the cache's answer was past its TTL (serve_stale). */
  stale?: boolean;
  /** The list or rule that blocked the query. */
  blockedBy?: string;
  /** The relay an anonymized query went through. */
  relay?: string;
  /** The protocol of the upstream that gave the answer (`udp`, `dot`, `doh`, `dnscrypt`, …). */
  upstreamProtocol?: string;
  /**
   * The chain link that produced the answer: the innermost plugin that returned without its
   * answer coming from further down, or `upstream`. Set by the chain itself (core/chain.ts).
   */
  answeredBy?: string;
}

/** The W3C trace context a caller sent (`traceparent`, `tracestate`), as received: checked by whoever uses it. */
export interface RemoteTrace {
  traceparent: string;
  tracestate?: string;
}

/** Veil's own queries (health probes, a list's host looked up): what they say about themselves. */
export interface OwnQueryInit {
  query: Buffer;
  /** What sends it, as the transport the log and metrics show (`health`, `internal`). */
  transport: TransportName;
  /** Who sends it, as the server block the log and metrics show (`sources/NAME`). */
  server: string;
  clock: Clock;
  timeoutMs: number;
}

/** Where the chain has taken a context: see core/chain.ts. Not for plugins. */
export const chainDepth = Symbol('veil.chainDepth');

export interface RequestContextInit {
  query: Buffer;
  question: Question;
  edns: Edns | null;
  client: ClientAddress;
  transport: TransportName;
  /** The listener the query arrived on, as bound (`udp://127.0.0.1:5353`); empty for Veil's own queries. */
  listener?: string;
  /** True when the answer goes back in a datagram, so its size is bounded by the client's. */
  datagram: boolean;
  /** The server block's key, e.g. `.` or `corp.test:53` (for logs and metrics labels). */
  server: string;
  /** The zone of the block that serves the query. */
  zone: string;
  clock: Clock;
  timeoutMs: number;
  remoteTrace?: RemoteTrace;
}

export class RequestContext {
  readonly query: Buffer;
  readonly question: Question;
  readonly edns: Edns | null;
  readonly client: ClientAddress;
  readonly transport: TransportName;
  /** The listener the query arrived on, as bound (`udp://127.0.0.1:5353`); empty for Veil's own queries. */
  readonly listener: string;
  readonly datagram: boolean;
  readonly server: string;
  readonly zone: string;
  readonly clock: Clock;
  /** Monotonic milliseconds when the query arrived. */
  readonly startedAt: number;
  /** Monotonic milliseconds by which an answer must be ready. */
  readonly deadline: number;
  readonly meta: QueryMeta = {};
  /**
   * The innermost active OpenTelemetry span while a sampled query runs (the trace plugin sets
   * it); undefined for every other query. Add events of your own: `ctx.span?.addEvent('…')`.
   */
  span: Span | undefined = undefined;
  /** The caller's trace context, when the transport carries one (DoH); a sampled query continues it. */
  readonly remoteTrace: RemoteTrace | undefined;
  /** The depth of the last link of the chain this context entered (core/chain.ts). */
  [chainDepth] = Infinity;

  private controller: AbortController | null = null;
  private timer: NodeJS.Timeout | null = null;
  private decodedPacket: dnsPacket.Packet | null = null;

  /** Veil's own query, from loopback and port 0: a probe, or a look-up Veil needs for itself. */
  static ownQuery({ query, transport, server, clock, timeoutMs }: OwnQueryInit): RequestContext {
    const question = readQuestion(query);
    const client: ClientAddress = { address: '127.0.0.1', port: 0, family: 'IPv4' };
    return new RequestContext({ query, question, edns: readEdns(query, question.end), client, transport, datagram: false, server, zone: '.', clock, timeoutMs });
  }

  constructor(init: RequestContextInit) {
    this.query = init.query;
    this.question = init.question;
    this.edns = init.edns;
    this.client = init.client;
    this.transport = init.transport;
    this.listener = init.listener ?? '';
    this.datagram = init.datagram;
    this.server = init.server;
    this.zone = init.zone;
    this.clock = init.clock;
    this.remoteTrace = init.remoteTrace;
    this.startedAt = init.clock.monotonic();
    this.deadline = this.startedAt + init.timeoutMs;
  }

  get id(): number {
    return readId(this.query);
  }
  /** Canonical query name: lower-case with a trailing dot. */
  get name(): string {
    return this.question.name;
  }
  get type(): number {
    return this.question.type;
  }
  get qclass(): number {
    return this.question.qclass;
  }
  get dnssecOk(): boolean {
    return this.edns?.dnssecOk ?? false;
  }
  get checkingDisabled(): boolean {
    return checkingDisabled(this.query);
  }

  /** The largest response the client accepts (RFC 6891 §6.2.5); unbounded (64 KiB) on streams. */
  get maxResponseSize(): number {
    if (!this.datagram) return 65535;
    return this.edns ? Math.max(MIN_EDNS_UDP_SIZE, this.edns.udpSize) : CLASSIC_UDP_SIZE;
  }

  /** Milliseconds left before the deadline (0 when it has passed). */
  remaining(): number {
    return Math.max(0, this.deadline - this.clock.monotonic());
  }

  /** Aborted when the deadline passes or the query is finished. Created on first use only. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      const left = this.remaining();
      if (left === 0) this.controller.abort(new Error('query deadline passed'));
      else {
        this.timer = setTimeout(() => this.controller!.abort(new Error('query deadline passed')), left);
        this.timer.unref();
      }
    }
    return this.controller.signal;
  }

  /** The full message, decoded with dns-packet on first use. For plugins that must look inside. */
  decode(): dnsPacket.Packet {
    this.decodedPacket ??= dnsPacket.decode(this.query);
    return this.decodedPacket;
  }

  /**
   * The same query with a fresh deadline and empty notes: for work a plugin does on its own
   * after the client has its answer (a cache refreshing an entry).
   */
  fork(timeoutMs: number): RequestContext {
    const { query, question, edns, client, transport, listener, datagram, server, zone, clock } = this;
    return new RequestContext({ query, question, edns, client, transport, listener, datagram, server, zone, clock, timeoutMs });
  }

  /**
   * Another query sent down the rest of the chain for this one, within this query's deadline:
   * the query changed on its way down, or one a plugin asks for itself (dnssec's keys, the path
   * query's name). Same client, transport, block and span; its question and EDNS are read from
   * `query` (throws WireError when they cannot be); its notes (`meta`) start empty, for the
   * plugin to read and to copy what the client's query should show. Call `finish()` on it when
   * its answer is in.
   */
  withQuery(query: Buffer): RequestContext {
    const question = readQuestion(query);
    const { client, transport, listener, datagram, server, zone, clock } = this;
    const derived = new RequestContext({ query, question, edns: readEdns(query, question.end), client, transport, listener, datagram, server, zone, clock, timeoutMs: this.remaining() });
    derived.span = this.span;
    return derived;
  }

  /** Releases the deadline timer; the listener calls this when the query is answered. */
  finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
