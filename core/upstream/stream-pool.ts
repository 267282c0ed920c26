/**
 * Pipelined DNS over long-lived stream connections (RFC 7766): many queries in flight per
 * connection, each with its own ID on that connection, answers matched back in any order. The
 * pool keeps up to `size` connections, opens them on demand (or ahead of traffic with `warm`),
 * closes stale ones, and retries a query on a fresh connection when the one it went out on died
 * under it (servers close idle connections whenever they like). A connection that cannot be
 * opened is not retried here: the caller fails over to another upstream instead. `forward` uses
 * the pool over TCP; `dot` over TLS.
 *
 * Pipelining is only as good as the server's side of it, and some servers are bad at it:
 * dnsdist's DoT front-end by default reads the next query of a connection only when new bytes
 * arrive on its socket, so of queries that arrived together it answers the first and sits on
 * the rest (they are in its TLS library's buffer, not the socket's); a server without
 * TCP_NODELAY (unbound) holds a second answer until the first is acknowledged, up to the
 * client's 40 ms delayed ACK (so a connection acknowledges at the end of a turn that read
 * answers and left others to come, if no query written then carries the acknowledgement:
 * core/net/tcp-ack.ts); a server that answers each connection in order makes a
 * quick query wait behind a slow one. So the pool prefers a connection with nothing in flight,
 * and it learns, per server:
 *
 * - a query sent behind others on its connection (pipelined) that waited `hedgeAfterMs` while
 *   nothing at all came back on that connection is sent again on another connection (twice at
 *   most), the least loaded; once no query has gone out for QUIET_MS (the end of a burst, when
 *   nothing new comes to make the server read on), a query still held gets one more copy, only
 *   on a connection with nothing on it, opened for it if need be (one past the pool's limit),
 *   a silent one retired to make room past that; the first answer wins and the other attempts
 *   are forgotten (their IDs stay reserved until their answers come, so a late answer never
 *   meets a new query under the same ID);
 * - when such a copy is answered while the first is still waiting, the connection held the
 *   query back: the server is `serial`, and the pool may then open up to SERIAL_FACTOR × size
 *   connections so that queries rarely have to share one;
 * - when a connection answers a query before one sent earlier on it, the server answers out of
 *   order (it reads pipelined queries as they come): it is `concurrent`, and nothing is sent
 *   twice any more (a slow answer from such a server is its own work, not the connection's).
 *
 * A query goes on the connection with the least load: queries in flight and answers still owed
 * (a serial server may be sitting on those, and a query sent behind them waits too).
 *
 * With `retries` 0 no query is ever sent twice, held back or not.
 *
 * When every connection has `maxInflight` queries out and the pool may open no more, a query
 * waits for room (first come, first served, until its deadline) instead of failing: a burst
 * above what the connections carry is answered a little later, not with SERVFAIL. At most
 * MAX_WAITING wait; past that a query fails at once and the caller fails over.
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { FrameReader } from '../dns/framing.js';
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion } from '../dns/wire.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';
import { upstreamConnection, upstreamRetry } from '../events.js';
import { onChunks } from '../net/direct-reads.js';
import { quickAcker } from '../net/tcp-ack.js';
import { DeadlineTimer, timerWait } from '../util/deadline-timer.js';
import { IdTable } from '../util/id-table.js';
import { freeId } from './query-id.js';
import { WaitQueue } from '../wait-queue.js';

export interface StreamPoolOptions {
  /** For messages: `tcp 192.0.2.1:53`. */
  label: string;
  /**
   * Opens one connection, ready for queries (TCP connected, TLS handshake done and verified),
   * within `timeoutMs`; gives up when `signal` aborts (the pool was closed).
   */
  connect: (timeoutMs: number, signal: AbortSignal) => Promise<Socket>;
  /**
   * Connections kept at most (default 2); a server found serial may get SERIAL_FACTOR times as
   * many (and one more for copies at the end of a burst).
   */
  size?: number;
  /** Queries in flight per connection (default 100). */
  maxInflight?: number;
  /** A connection with nothing in flight for this long is stale and closed (default 10 s). */
  idleTimeoutMs?: number;
  /** Longest wait for a connection to open (default 2 s, and never past the query's time). */
  connectTimeoutMs?: number;
  /**
   * Longest wait for one answer (default: only the caller's time). A connection on which
   * nothing at all arrived for this long while a query waited is presumed dead and closed.
   */
  readTimeoutMs?: number;
  /** A connection whose queued bytes do not drain for this long is closed (default 5 s). */
  writeTimeoutMs?: number;
  /**
   * Extra attempts on a fresh connection when one fails under a query (default 1). With 0, no
   * query is ever sent twice: held-back pipelined queries are not sent again either.
   */
  retries?: number;
  /**
   * Replace a connection that carried queries when it closes while idle (stale, or closed by
   * the server), so that the next burst finds the pool open. A replacement nobody uses is not
   * replaced in turn: an idle pool winds down after one more `idleTimeoutMs`.
   */
  replaceIdle?: boolean;
  /** Publish connection events (`veil:upstream:connection`) under this upstream's name. */
  events?: { upstream: string; protocol: string };
  /** Told once, when the server turns out to hold pipelined queries back (the pool spreads from then on). */
  onSerial?: (detail: string) => void;
}

export interface StreamPoolStats {
  open: number;
  created: number;
  reused: number;
  idleClosed: number;
  replaced: number;
  failed: number;
  /** Pipelined queries sent again on another connection after waiting `hedgeAfterMs` unanswered. */
  hedged: number;
  /** Of those, the ones whose copy was answered while the first still waited. */
  heldBack: number;
  /** Acknowledgements sent at once (TCP_QUICKACK, core/net/tcp-ack.ts) rather than after the delayed-ACK timer. */
  quickAcks: number;
}

/** What the pool knows about how the server answers pipelined queries. */
export type Ordering = 'unknown' | 'concurrent' | 'serial';

/** A serial server may get this many times the pool size in connections. */
export const SERIAL_FACTOR = 4;
/** The shortest wait before a held-back query is sent again (loopback round trips are ~0.1 ms). */
const HEDGE_MIN_MS = 3;
/** Before any round trip was measured. */
const HEDGE_INITIAL_MS = 100;
/** Round trips the wait is computed from, and how often it is computed again. */
const RTT_SAMPLES = 32;
const HEDGE_RECOMPUTE_MS = 100;
/** Copies of one query at most (each after its latest attempt waited on a silent connection). */
const MAX_HEDGES = 2;
/**
 * No query sent for this long: the burst is over, nothing new will come to make a server that
 * sits on pipelined queries read on, and a query still held gets one more copy, on a connection
 * with nothing on it.
 */
const QUIET_MS = 50;
/** IDs of forgotten queries still owed an answer, per connection; past this the connection is retired. */
const MAX_OWED = 256;
/** Queries waiting for room in one pool at most (ten full connections' worth). */
export const MAX_WAITING = 1024;

/** Marks failures that happened to the connection rather than to the query: worth a retry. */
class ConnectionLost extends UpstreamUnavailableError {}

/** Why a connection went: `stale` (idle too long), `lost` (error or the server closed it), `closed` (by us). */
type GoneReason = 'stale' | 'lost' | 'closed';

interface ConnectionSettings {
  label: string;
  maxInflight: number;
  idleTimeoutMs: number;
  readTimeoutMs: number;
  writeTimeoutMs: number;
}

/** One caller's query: settled once, by the first answer of any of its attempts (at most two live). */
class Exchange {
  readonly attempts: Attempt[] = [];
  settled = false;
  /** Copies sent because the latest attempt waited on a silent connection. */
  hedges = 0;
  /** Given its copy on a connection with nothing on it, after the burst it came in was over. */
  rescued = false;

  constructor(
    /** As the caller gave it (its ID is restored on the answer). */
    readonly query: Buffer,
    readonly deadline: number,
    public retriesLeft: number,
    readonly resolve: (answer: Buffer) => void,
    readonly reject: (error: Error) => void,
  ) {}
}

/** One sending of an exchange on one connection. */
interface Attempt {
  exchange: Exchange;
  connection: StreamConnection;
  id: number;
  /** The message as sent (our ID), to check the answer's question. */
  sent: Buffer;
  sentAt: number;
  /**
   * Sent while others were in flight on the connection, or owed an answer: the server may read
   * or answer it only after those.
   */
  pipelined: boolean;
  /** How long it may wait for its answer, and performance.now() when that is over. */
  wait: number;
  deadline: number;
}

/** What a connection tells its pool. */
interface ConnectionOwner {
  readonly stats: StreamPoolStats;
  answered(attempt: Attempt, answer: Buffer, inOrder: boolean): void;
  failed(attempt: Attempt, error: Error): void;
  gone(connection: StreamConnection, reason: GoneReason, hadPending: boolean): void;
}

export class StreamConnection {
  /** Attempts waiting for their answer, by query ID; not a Map (see core/util/id-table.ts). */
  private readonly pending = new IdTable<Attempt>();
  /**
   * Attempts in the order sent, the oldest first; those no longer pending leave when they reach
   * the front, or in a sweep once they are most of it.
   */
  private sentOrder: Attempt[] = [];
  /** IDs of attempts forgotten before their answer came (timed out, or answered on another connection). */
  private readonly owed = new IdTable<true>();
  private readonly reader = new FrameReader();
  /** Set by `close` (see `closing`). */
  private retiring = false;
  /** This turn's framed queries, written at its end; null when none is waiting. */
  private queued: Buffer[] | null = null;
  /** `flush` is due at the end of this turn (for queued queries, or an acknowledgement). */
  private flushDue = false;
  /** Answers came this turn with queries still waiting: acknowledge them if nothing is written. */
  private ackDue = false;
  private writeTimer: NodeJS.Timeout | null = null;
  /** One timer for the queries' deadlines, not one each (core/util/deadline-timer.ts). */
  private readonly deadlines = new DeadlineTimer((now) => this.expire(now));
  /** Monotonic ms of the last bytes received. */
  lastReadAt = performance.now();
  /** Acknowledges what was received at once (core/net/tcp-ack.ts), where that can be done. */
  private readonly ackNow: (() => void) | null;
  closed = false;
  /** True once a query went out on it. */
  used = false;

  constructor(
    private readonly socket: Socket,
    private readonly settings: ConnectionSettings,
    private readonly owner: ConnectionOwner,
  ) {
    const { label } = settings;
    socket.setNoDelay(true);
    this.ackNow = quickAcker(socket);
    // A TLS 1.3 server sends its session tickets after the handshake: records with no answer in
    // them, which no read of ours sees, so nothing below acknowledges them, and a query written
    // before they came does not either. A server with Nagle on (unbound) then holds that query's
    // answer behind them until the delayed ACK, 40 ms (dot-latency's tail, docs/benchmarks.md
    // 2026-12-05). They are acknowledged as they come ('session' is a TLS socket's event).
    if (this.ackNow) socket.on('session', () => this.acknowledge());
    socket.setTimeout(settings.idleTimeoutMs);
    socket.on('timeout', () => {
      if (this.pending.size === 0) this.destroy(new ConnectionLost(`${label}: idle connection closed`), 'stale');
    });
    onChunks(socket, (chunk) => this.onData(chunk));
    socket.on('error', (err) => this.destroy(new ConnectionLost(`${label}: ${err.message}`, { cause: err })));
    socket.on('end', () => this.destroy(new ConnectionLost(`${label}: the server closed the connection`)));
    socket.on('close', () => this.destroy(new ConnectionLost(`${label}: connection closed`)));
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Closed by `close`: takes no new query, and goes once those in flight are answered. */
  get closing(): boolean {
    return this.retiring;
  }

  /**
   * Queries in flight, and answers still owed to queries we gave up on: the server may still be
   * busy with those, or hold them back (and a new query would wait behind them).
   */
  get load(): number {
    return this.pending.size + this.owed.size;
  }

  get hasRoom(): boolean {
    return !this.closed && !this.retiring && this.pending.size < this.settings.maxInflight;
  }

  /** The attempts in flight, oldest first. */
  attempts(): Attempt[] {
    return this.sentOrder.filter((attempt) => this.isPending(attempt));
  }

  private isPending(attempt: Attempt): boolean {
    return this.pending.get(attempt.id) === attempt;
  }

  /** The attempt in flight that was sent first. */
  private oldest(): Attempt | undefined {
    while (this.sentOrder.length > 0 && !this.isPending(this.sentOrder[0]!)) this.sentOrder.shift();
    return this.sentOrder[0];
  }

  /** Sends the exchange's query; its answer, timeout or failure goes to the owner. */
  send(exchange: Exchange, timeoutMs: number): Attempt {
    const id = freeId(this);
    const query = exchange.query;
    const framed = Buffer.allocUnsafe(2 + query.length);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    framed.writeUInt16BE(id, 2);
    this.used = true;
    const sentAt = performance.now();
    const wait = timerWait(Math.min(timeoutMs, this.settings.readTimeoutMs));
    const attempt: Attempt = { exchange, connection: this, id, sent: framed.subarray(2), sentAt, pipelined: this.load > 0, wait, deadline: sentAt + wait };
    this.deadlines.add(attempt.deadline, sentAt);
    this.pending.set(id, attempt);
    if (this.sentOrder.length >= 2 * this.pending.size + 32) this.sentOrder = this.attempts();
    this.sentOrder.push(attempt);
    exchange.attempts.push(attempt);
    this.write(framed);
    return attempt;
  }

  /** For freeId: an ID is taken while its query waits, and while a forgotten one is owed an answer. */
  has(id: number): boolean {
    return this.pending.has(id) || this.owed.has(id);
  }

  /** Forgets an attempt whose exchange was settled elsewhere; its answer, if it comes, is ignored. */
  forget(attempt: Attempt): void {
    if (this.pending.get(attempt.id) !== attempt) return;
    this.pending.delete(attempt.id);
    this.owe(attempt.id);
    if (this.retiring && this.pending.size === 0) this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
  }

  private owe(id: number): void {
    this.owed.set(id, true);
    // A server that never answers what we gave up on: stop sending it more.
    if (this.owed.size > MAX_OWED) this.close();
  }

  /** The attempts due by `now` time out, oldest first; the earliest deadline left, or Infinity. */
  private expire(now: number): number {
    let next = Infinity;
    for (const attempt of this.attempts()) {
      if (this.closed) return Infinity; // a timeout found the connection dead: the rest failed with it
      if (attempt.deadline > now + 1) next = Math.min(next, attempt.deadline);
      else this.timedOut(attempt, attempt.wait);
    }
    return this.closed ? Infinity : next;
  }

  private timedOut(attempt: Attempt, waited: number): void {
    if (this.pending.get(attempt.id) !== attempt) return;
    this.pending.delete(attempt.id);
    this.owe(attempt.id);
    this.owner.failed(attempt, new UpstreamTimeoutError(`${this.settings.label}: no answer within ${Math.round(waited)}ms`));
    // Not a byte for a whole read timeout while a query waited: the path is gone (a server that
    // vanished without closing). Queries still waiting on it are retried on a fresh connection.
    if (waited >= this.settings.readTimeoutMs && this.lastReadAt < attempt.sentAt) {
      this.destroy(new ConnectionLost(`${this.settings.label}: nothing received for ${Math.round(waited)}ms, connection presumed dead`));
    } else if (this.retiring && this.pending.size === 0) {
      this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
    }
  }

  /**
   * Queries written in the same turn of the event loop leave together, at the end of the turn
   * (setImmediate runs after this turn's I/O callbacks, before the loop waits again): one TLS
   * record and one system call for a burst instead of one per query, and no turn of delay.
   * Queued here and written as one Buffer rather than corked: against a server that wants each
   * query alone the pool puts one query on a connection a turn, and cork() with uncork() cost
   * up to a microsecond more a write than a plain one (bench/tls-io.ts).
   */
  private write(framed: Buffer): void {
    if (this.queued) {
      this.queued.push(framed);
      return;
    }
    this.queued = [framed];
    this.flushAtEndOfTurn();
  }

  private flushAtEndOfTurn(): void {
    if (this.flushDue) return;
    this.flushDue = true;
    setImmediate(this.flush);
  }

  /**
   * Writes this turn's queries; without any, acknowledges this turn's answers if it was asked
   * to (a written query carries the acknowledgement: no system call of its own, no bare ACK).
   */
  private readonly flush = (): void => {
    const queued = this.queued;
    const ackDue = this.ackDue;
    this.queued = null;
    this.ackDue = false;
    this.flushDue = false;
    if (this.closed) return;
    if (!queued) {
      if (ackDue && this.pending.size > 0) this.acknowledge();
      return;
    }
    if (!this.socket.write(queued.length === 1 ? queued[0]! : Buffer.concat(queued)) && !this.writeTimer) {
      this.writeTimer = setTimeout(() => {
        this.destroy(new ConnectionLost(`${this.settings.label}: could not write for ${this.settings.writeTimeoutMs}ms`));
      }, this.settings.writeTimeoutMs);
      this.socket.once('drain', () => {
        if (this.writeTimer) clearTimeout(this.writeTimer);
        this.writeTimer = null;
      });
    }
  };

  /** Acknowledges at once what was received so far (only called when `ackNow` is there). */
  private acknowledge(): void {
    this.ackNow!();
    this.owner.stats.quickAcks++;
  }

  private onData(chunk: Buffer): void {
    this.lastReadAt = performance.now();
    const messages = this.reader.push(chunk);
    for (const msg of messages) {
      if (msg.length < HEADER_SIZE || !isResponse(msg)) {
        this.destroy(new UpstreamResponseError(`${this.settings.label}: malformed message on the connection`));
        return;
      }
      const id = readId(msg);
      const attempt = this.pending.get(id);
      if (!attempt) {
        this.owed.delete(id); // the late answer to a query we gave up on
        continue;
      }
      if (!sameQuestion(attempt.sent, msg)) {
        // On a stream nobody can inject; a wrong question means a broken server.
        this.destroy(new UpstreamResponseError(`${this.settings.label}: answer does not match the question`));
        return;
      }
      // In order when nothing sent before it is still waiting: it is the oldest pending.
      const inOrder = this.oldest() === attempt;
      this.pending.delete(id);
      this.owner.answered(attempt, msg, inOrder);
      if (this.closed) return;
    }
    if (this.retiring && this.pending.size === 0) this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
    // Answers still to come: the server may be holding the next one until this read is
    // acknowledged. At the end of the turn, once (a read may bring many answers, one TLS record
    // each), and only if no query is written then.
    else if (this.pending.size > 0 && this.ackNow) {
      this.ackDue = true;
      this.flushAtEndOfTurn();
    }
  }

  /** No new queries; closes once those in flight are answered. */
  close(): void {
    this.retiring = true;
    if (this.pending.size === 0) this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
  }

  destroy(error: Error, reason: GoneReason = 'lost'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.deadlines.clear();
    const hadPending = this.pending.size > 0;
    const attempts = this.attempts();
    this.pending.clear();
    this.sentOrder = [];
    this.owed.clear();
    this.socket.destroy();
    for (const attempt of attempts) this.owner.failed(attempt, error);
    this.owner.gone(this, reason, hadPending);
  }
}

export class StreamPool implements ConnectionOwner {
  private readonly connections: StreamConnection[] = [];
  /** Exchanges waiting for room on a connection, oldest first. */
  private readonly waiting = new WaitQueue<Exchange>(MAX_WAITING);
  private opening: Promise<StreamConnection> | null = null;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly size: number;
  private readonly settings: ConnectionSettings;
  private readonly connectTimeoutMs: number;
  private readonly retries: number;
  private ordering: Ordering = 'unknown';
  /** The last round trips (ms) of queries sent alone on their connection, a ring. */
  private readonly rtts = new Float64Array(RTT_SAMPLES);
  private rttCount = 0;
  /** hedgeAfterMs as last computed (at most every HEDGE_RECOMPUTE_MS). */
  private hedgeAfter = HEDGE_INITIAL_MS;
  private hedgeAfterAt = -Infinity;
  private hedgeTimer: NodeJS.Timeout | null = null;
  /** When a query (not a copy) last went out: QUIET_MS after it, the burst is over. */
  private lastSentAt = -Infinity;
  readonly stats: StreamPoolStats = { open: 0, created: 0, reused: 0, idleClosed: 0, replaced: 0, failed: 0, hedged: 0, heldBack: 0, quickAcks: 0 };

  constructor(private readonly options: StreamPoolOptions) {
    this.size = options.size ?? 2;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
    this.retries = options.retries ?? 1;
    this.settings = {
      label: options.label,
      maxInflight: options.maxInflight ?? 100,
      idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
      readTimeoutMs: options.readTimeoutMs ?? Infinity,
      writeTimeoutMs: options.writeTimeoutMs ?? 5_000,
    };
  }

  /** How the server has been seen to answer pipelined queries. */
  get serverOrdering(): Ordering {
    return this.ordering;
  }

  /**
   * Sends a query and waits at most `timeoutMs` in all (connecting included). Retries on a
   * fresh connection when the connection fails under the query, never after a timeout and
   * never when no connection can be opened.
   */
  exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.stopped) return Promise.reject(new UpstreamUnavailableError(`${this.options.label}: stopped`));
    return new Promise<Buffer>((resolve, reject) => {
      this.dispatch(new Exchange(query, performance.now() + timeoutMs, this.retries, resolve, reject));
    });
  }

  /** Opens connections up to `count` ahead of traffic (the pool is warm when queries come). */
  async warm(count = this.size): Promise<void> {
    while (!this.stopped && this.connections.length < Math.min(count, this.size)) {
      await this.open(this.connectTimeoutMs);
    }
  }

  private dispatch(exchange: Exchange): void {
    if (this.stopped) return exchange.reject(new UpstreamUnavailableError(`${this.options.label}: stopped`));
    const left = exchange.deadline - performance.now();
    if (left <= 0) return exchange.reject(new UpstreamTimeoutError(`${this.options.label}: no answer in time`));
    // None goes ahead of a query already waiting.
    const ready = this.waiting.size === 0 ? this.pick(null) : null;
    if (ready) return this.sendOn(ready, exchange);
    if (this.connections.length >= this.limit) return this.wait(exchange, left);
    this.open(Math.min(left, this.connectTimeoutMs)).then(
      (connection) => this.sendOn(connection, exchange),
      (err: Error) => exchange.reject(err),
    );
  }

  /** Queues an exchange until a connection has room (drain) or its deadline passes. */
  private wait(exchange: Exchange, left: number): void {
    const expired = (): void => exchange.reject(new UpstreamTimeoutError(`${this.options.label}: no answer in time (every connection was full)`));
    if (!this.waiting.push(exchange, left, expired)) {
      exchange.reject(new UpstreamUnavailableError(`${this.options.label}: ${this.inflight} queries in flight and ${MAX_WAITING} waiting`));
    }
  }

  /** Sends waiting exchanges, oldest first, while a connection has room (an answer came, a connection opened). */
  private drain(): void {
    while (this.waiting.size > 0) {
      const connection = this.pick(null);
      if (!connection) return;
      this.sendOn(connection, this.waiting.shift()!);
    }
  }

  private sendOn(connection: StreamConnection, exchange: Exchange): void {
    const now = performance.now();
    const left = exchange.deadline - now;
    this.lastSentAt = now;
    if (left <= 0) return exchange.reject(new UpstreamTimeoutError(`${this.options.label}: no answer in time`));
    if (!connection.hasRoom) return this.dispatch(exchange); // closed or filled while it opened
    const attempt = connection.send(exchange, left);
    if (attempt.pipelined && this.ordering !== 'concurrent') this.scheduleHedgeCheck(this.hedgeAfterMs());
  }

  /** Connections the pool may hold now: its size, or more for a server found serial. */
  private get limit(): number {
    return this.ordering === 'serial' ? this.size * SERIAL_FACTOR : this.size;
  }

  /**
   * The connection with the least load (other than `not`), or null. Load counts the answers
   * still owed to queries given up on: a serial server may be sitting on those, and a query sent
   * behind them waits too. When even that one is busy and the pool may grow, another opens for
   * the queries to come, but this query is pipelined rather than made to wait for a handshake.
   */
  private pick(not: StreamConnection | null): StreamConnection | null {
    const best = this.leastLoaded(not);
    if (best && best.load > 0 && this.connections.length < this.limit && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
    if (best) this.reuse();
    return best;
  }

  private leastLoaded(not: StreamConnection | null): StreamConnection | null {
    let best: StreamConnection | null = null;
    for (const connection of this.connections) {
      if (connection !== not && connection.hasRoom && (!best || connection.load < best.load)) best = connection;
    }
    return best;
  }

  private reuse(): void {
    this.stats.reused++;
    this.publish('reused');
  }

  // ---- what the connections report --------------------------------------------------------

  answered(attempt: Attempt, answer: Buffer, inOrder: boolean): void {
    const exchange = attempt.exchange;
    removeFrom(exchange.attempts, attempt);
    if (!inOrder && this.ordering !== 'concurrent') this.becomeConcurrent();
    if (!attempt.pipelined) this.sampleRtt(performance.now() - attempt.sentAt);
    if (exchange.settled) return;
    exchange.settled = true;
    // The other attempt, still waiting, was held back on its connection if it went out first.
    for (const other of exchange.attempts) {
      if (other.sentAt < attempt.sentAt) this.heldBack();
      other.connection.forget(other);
    }
    exchange.attempts.length = 0;
    answer.writeUInt16BE(readId(exchange.query), 0);
    exchange.resolve(answer);
    if (this.waiting.size > 0) this.drain();
  }

  failed(attempt: Attempt, error: Error): void {
    const exchange = attempt.exchange;
    removeFrom(exchange.attempts, attempt);
    if (this.waiting.size > 0) this.drain();
    if (exchange.settled || exchange.attempts.length > 0) return; // the other attempt may still answer
    if (error instanceof ConnectionLost && exchange.retriesLeft > 0 && !this.stopped) {
      exchange.retriesLeft--;
      if (this.options.events && upstreamRetry.hasSubscribers) upstreamRetry.publish({ ...this.options.events, reason: 'connection-lost' });
      // Not from inside the dying connection's teardown: it leaves the pool first.
      queueMicrotask(() => this.dispatch(exchange));
      return;
    }
    exchange.settled = true;
    exchange.reject(error);
  }

  gone(connection: StreamConnection, reason: GoneReason, hadPending: boolean): void {
    const index = this.connections.indexOf(connection);
    if (index >= 0) this.connections.splice(index, 1);
    if (reason === 'stale') this.stats.idleClosed++;
    this.stats.open = this.connections.length;
    this.publish(reason === 'stale' ? 'stale-closed' : 'closed');
    const replace = this.options.replaceIdle && !this.stopped && reason !== 'closed' && connection.used && !hadPending;
    if (replace && this.connections.length < this.size) {
      this.stats.replaced++;
      // A failure here is reported by the connect function and met again by the next query.
      this.open(this.connectTimeoutMs).catch(() => {});
    } else if (this.waiting.size > 0 && !this.stopped && this.connections.length < this.limit) {
      // Queries wait for room: a new connection in this one's place (it drains them as it opens).
      this.open(this.connectTimeoutMs).catch(() => {});
    }
  }

  // ---- learning how the server answers -----------------------------------------------------

  private sampleRtt(rtt: number): void {
    this.rtts[this.rttCount++ % RTT_SAMPLES] = rtt;
  }

  /**
   * How long a pipelined query may wait on a silent connection before it is sent again: four
   * times the median round trip of the last queries sent alone, 3 ms at least. A median, not a
   * mean: a pause of this machine or the server's (a collection, the scheduler) delays many
   * answers at once, and must not make the pool wait ten times longer before it acts.
   */
  private hedgeAfterMs(): number {
    const now = performance.now();
    if (this.rttCount === 0 || now - this.hedgeAfterAt < HEDGE_RECOMPUTE_MS) return this.hedgeAfter;
    const samples = this.rtts.slice(0, Math.min(this.rttCount, RTT_SAMPLES)).sort();
    this.hedgeAfter = Math.max(HEDGE_MIN_MS, 4 * samples[samples.length >> 1]!);
    this.hedgeAfterAt = now;
    return this.hedgeAfter;
  }

  private becomeConcurrent(): void {
    this.ordering = 'concurrent';
    if (this.hedgeTimer) clearTimeout(this.hedgeTimer);
    this.hedgeTimer = null;
  }

  private heldBack(): void {
    this.stats.heldBack++;
    if (this.ordering !== 'unknown') return;
    this.ordering = 'serial';
    this.options.onSerial?.(
      `a pipelined query waited on a silent connection while its copy was answered on another: spreading queries over up to ${this.size * SERIAL_FACTOR} connections from now on`,
    );
  }

  private scheduleHedgeCheck(inMs: number): void {
    if (this.hedgeTimer || this.retries === 0) return;
    this.hedgeTimer = setTimeout(this.hedgeCheckAfterReads, Math.max(1, inMs));
    this.hedgeTimer.unref();
  }

  /**
   * Node runs due timers before it reads the sockets. After a pause of this process (a
   * collection, the machine busy elsewhere) the answers that came during it are still unread
   * when the timer fires, every connection looks silent, and queries already answered would be
   * sent again. So the check runs after this turn's reads (setImmediate comes after them).
   */
  private readonly hedgeCheckAfterReads = (): void => {
    setImmediate(this.hedgeCheck);
  };

  /**
   * Sends again, on another connection, each pipelined query that has waited `hedgeAfterMs` on a
   * connection that has been silent as long; checks again when the next one could qualify.
   */
  private readonly hedgeCheck = (): void => {
    this.hedgeTimer = null;
    if (this.ordering === 'concurrent' || this.stopped) return;
    const now = performance.now();
    const after = this.hedgeAfterMs();
    const quiet = now - this.lastSentAt >= QUIET_MS;
    let next = Infinity;
    for (const connection of this.connections) {
      for (const attempt of connection.attempts()) {
        if (!this.mayHedge(attempt, quiet)) {
          if (!quiet && this.awaitsRescue(attempt)) next = Math.min(next, this.lastSentAt + QUIET_MS);
          continue;
        }
        // Attempts are in the order sent: none after this one is due sooner.
        const due = Math.max(connection.lastReadAt, attempt.sentAt) + after;
        if (due > now) {
          next = Math.min(next, due);
          break;
        }
        if (!this.hedge(attempt, quiet)) {
          next = Math.min(next, now + after); // nowhere to send it yet
          break;
        }
      }
    }
    if (next !== Infinity) this.scheduleHedgeCheck(next - now);
  };

  /**
   * A pipelined attempt, its exchange's latest, and the exchange not yet copied MAX_HEDGES times
   * (or, once the burst is over, not yet rescued).
   */
  private mayHedge(attempt: Attempt, quiet: boolean): boolean {
    const exchange = attempt.exchange;
    return latestPipelined(attempt) && (exchange.hedges < MAX_HEDGES || (quiet && !exchange.rescued));
  }

  /** Copied MAX_HEDGES times and still held: one more copy once the burst is over. */
  private awaitsRescue(attempt: Attempt): boolean {
    const exchange = attempt.exchange;
    return latestPipelined(attempt) && exchange.hedges >= MAX_HEDGES && !exchange.rescued;
  }

  /**
   * Sends the attempt's query on another connection; false when there is none to send it on
   * yet. While queries keep coming, the copy goes on the least loaded connection: the bytes that
   * follow make a server that sits on pipelined queries read on. Once they stop (`quiet`: none
   * sent for QUIET_MS) a copy behind others would be held like its original until the query
   * times out, so it only goes on a connection with nothing on it: one opens for it, one past
   * the pool's limit at most, and past that the silent connection the query waits on is retired
   * (it takes no new query and closes once its queries are answered, here or elsewhere) so that
   * a fresh one can open in its place.
   */
  private hedge(attempt: Attempt, quiet: boolean): boolean {
    const exchange = attempt.exchange;
    const left = exchange.deadline - performance.now();
    if (left <= 0) return true; // its own timer ends it
    // With queries waiting for room, a copy would take a place one of them is owed.
    if (this.waiting.size > 0) return false;
    const target = this.leastLoaded(attempt.connection);
    if (quiet) {
      if (!target || target.load > 0) {
        let open = 0;
        for (const connection of this.connections) if (!connection.closing) open++;
        if (open > this.limit && !attempt.connection.closing) {
          attempt.connection.close();
          open--;
        }
        if (open <= this.limit && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
        return false;
      }
      exchange.rescued = true;
    } else if (!target) {
      // A pool of one connection, or all others full: a copy may open one past the pool's size
      // (up to a serial server's), since whether the server holds queries back is the question.
      if (this.connections.length < this.size * SERIAL_FACTOR && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
      return false;
    }
    this.reuse();
    exchange.hedges++;
    this.stats.hedged++;
    if (this.options.events && upstreamRetry.hasSubscribers) upstreamRetry.publish({ ...this.options.events, reason: 'held-back' });
    if (target.send(exchange, left).pipelined) this.scheduleHedgeCheck(this.hedgeAfterMs());
    return true;
  }

  // ---- connections ----------------------------------------------------------------------------

  /** One connection opening at a time: concurrent callers share it. */
  private open(timeoutMs: number): Promise<StreamConnection> {
    this.opening ??= this.connectOne(timeoutMs).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async connectOne(timeoutMs: number): Promise<StreamConnection> {
    let socket: Socket;
    try {
      socket = await this.options.connect(timeoutMs, this.abort.signal);
    } catch (err) {
      this.stats.failed++;
      this.publish('failed');
      if (err instanceof UpstreamUnavailableError || err instanceof UpstreamTimeoutError) throw err;
      throw new UpstreamUnavailableError(`${this.options.label}: ${(err as Error).message}`, { cause: err });
    }
    if (this.stopped) {
      socket.destroy();
      throw new UpstreamUnavailableError(`${this.options.label}: stopped`);
    }
    const connection = new StreamConnection(socket, this.settings, this);
    this.connections.push(connection);
    this.stats.created++;
    this.stats.open = this.connections.length;
    this.publish('created');
    this.drain();
    return connection;
  }

  private publish(event: 'created' | 'reused' | 'closed' | 'stale-closed' | 'failed'): void {
    if (this.options.events && upstreamConnection.hasSubscribers) {
      const idle = this.connections.filter((c) => c.inflight === 0).length;
      upstreamConnection.publish({ ...this.options.events, event, open: this.connections.length, idle });
    }
  }

  /** Queries waiting for an answer. */
  get inflight(): number {
    return this.connections.reduce((sum, c) => sum + c.inflight, 0);
  }

  get openConnections(): number {
    return this.connections.length;
  }

  /** Closes every connection and gives up connections being opened; pending queries fail. */
  close(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.hedgeTimer) clearTimeout(this.hedgeTimer);
    this.hedgeTimer = null;
    for (const exchange of this.waiting.takeAll()) {
      exchange.reject(new UpstreamUnavailableError(`${this.options.label}: stopped`));
    }
    for (const connection of [...this.connections]) connection.destroy(new UpstreamUnavailableError(`${this.options.label}: stopped`), 'closed');
  }
}

/** Sent behind others on its connection, and its exchange's latest attempt. */
function latestPipelined(attempt: Attempt): boolean {
  const attempts = attempt.exchange.attempts;
  return attempt.pipelined && attempts[attempts.length - 1] === attempt;
}

function removeFrom(attempts: Attempt[], attempt: Attempt): void {
  const index = attempts.indexOf(attempt);
  if (index >= 0) attempts.splice(index, 1);
}
