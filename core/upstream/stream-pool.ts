/**
 * Pipelined DNS over long-lived stream connections (RFC 7766): many queries in flight per
 * connection, each with its own ID on that connection, answers matched back in any order. The
 * pool keeps up to `size` connections, opens them on demand (or ahead of traffic with `warm`),
 * closes stale ones, and retries a query on a fresh connection when the one it went out on died
 * under it (servers close idle connections whenever they like). A connection that cannot be
 * opened is not retried here: the caller fails over to another upstream instead. `forward` uses
 * the pool over TCP; `dot` over TLS.
 */
import type { Socket } from 'node:net';
import { FrameReader } from '../dns/framing.js';
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion } from '../dns/wire.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';
import { upstreamConnection, upstreamRetry } from '../events.js';
import { freeId } from './query-id.js';

export interface StreamPoolOptions {
  /** For messages: `tcp 192.0.2.1:53`. */
  label: string;
  /**
   * Opens one connection, ready for queries (TCP connected, TLS handshake done and verified),
   * within `timeoutMs`; gives up when `signal` aborts (the pool was closed).
   */
  connect: (timeoutMs: number, signal: AbortSignal) => Promise<Socket>;
  /** Connections kept at most (default 2). */
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
  /** Extra attempts on a fresh connection when one fails under a query (default 1). */
  retries?: number;
  /**
   * Replace a connection that carried queries when it closes while idle (stale, or closed by
   * the server), so that the next burst finds the pool open. A replacement nobody uses is not
   * replaced in turn: an idle pool winds down after one more `idleTimeoutMs`.
   */
  replaceIdle?: boolean;
  /** Publish connection events (`veil:upstream:connection`) under this upstream's name. */
  events?: { upstream: string; protocol: string };
}

export interface StreamPoolStats {
  open: number;
  created: number;
  reused: number;
  idleClosed: number;
  replaced: number;
  failed: number;
}

interface Pending {
  query: Buffer;
  originalId: number;
  resolve: (answer: Buffer) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

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

export class StreamConnection {
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new FrameReader();
  private closing = false;
  private corked = false;
  private writeTimer: NodeJS.Timeout | null = null;
  /** Monotonic ms of the last bytes received. */
  private lastReadAt = performance.now();
  closed = false;
  /** True once a query went out on it. */
  used = false;

  constructor(
    private readonly socket: Socket,
    private readonly settings: ConnectionSettings,
    private readonly onGone: (connection: StreamConnection, reason: GoneReason, hadPending: boolean) => void,
  ) {
    const { label } = settings;
    socket.setNoDelay(true);
    socket.setTimeout(settings.idleTimeoutMs);
    socket.on('timeout', () => {
      if (this.pending.size === 0) this.destroy(new ConnectionLost(`${label}: idle connection closed`), 'stale');
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.destroy(new ConnectionLost(`${label}: ${err.message}`, { cause: err })));
    socket.on('end', () => this.destroy(new ConnectionLost(`${label}: the server closed the connection`)));
    socket.on('close', () => this.destroy(new ConnectionLost(`${label}: connection closed`)));
  }

  get inflight(): number {
    return this.pending.size;
  }

  get hasRoom(): boolean {
    return !this.closed && !this.closing && this.pending.size < this.settings.maxInflight;
  }

  exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (!this.hasRoom) return Promise.reject(new ConnectionLost(`${this.settings.label}: connection not usable`));
    const id = freeId(this.pending);
    const framed = Buffer.allocUnsafe(2 + query.length);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    framed.writeUInt16BE(id, 2);
    this.used = true;
    const sentAt = performance.now();
    const wait = Math.min(timeoutMs, this.settings.readTimeoutMs);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => this.timedOut(id, sentAt, wait), wait);
      this.pending.set(id, { query: framed.subarray(2), originalId: readId(query), resolve, reject, timer });
      this.write(framed);
    });
  }

  private timedOut(id: number, sentAt: number, waited: number): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    entry.reject(new UpstreamTimeoutError(`${this.settings.label}: no answer within ${Math.round(waited)}ms`));
    // Not a byte for a whole read timeout while a query waited: the path is gone (a server that
    // vanished without closing). Queries still waiting on it are retried on a fresh connection.
    if (waited >= this.settings.readTimeoutMs && this.lastReadAt < sentAt) {
      this.destroy(new ConnectionLost(`${this.settings.label}: nothing received for ${Math.round(waited)}ms, connection presumed dead`));
    } else if (this.closing && this.pending.size === 0) {
      this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
    }
  }

  /**
   * Queries written in the same turn of the event loop leave together: one TLS record and one
   * system call for a burst instead of one per query.
   */
  private write(framed: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    if (!this.socket.write(framed) && !this.writeTimer) {
      this.writeTimer = setTimeout(() => {
        this.destroy(new ConnectionLost(`${this.settings.label}: could not write for ${this.settings.writeTimeoutMs}ms`));
      }, this.settings.writeTimeoutMs);
      this.socket.once('drain', () => {
        if (this.writeTimer) clearTimeout(this.writeTimer);
        this.writeTimer = null;
      });
    }
  }

  private readonly uncork = (): void => {
    this.corked = false;
    if (!this.closed) this.socket.uncork();
  };

  private onData(chunk: Buffer): void {
    this.lastReadAt = performance.now();
    const messages = this.reader.push(chunk);
    for (const msg of messages) {
      if (msg.length < HEADER_SIZE || !isResponse(msg)) {
        this.destroy(new UpstreamResponseError(`${this.settings.label}: malformed message on the connection`));
        return;
      }
      const id = readId(msg);
      const entry = this.pending.get(id);
      if (!entry) continue; // the answer to a query that already timed out
      if (!sameQuestion(entry.query, msg)) {
        // On a stream nobody can inject; a wrong question means a broken server.
        this.destroy(new UpstreamResponseError(`${this.settings.label}: answer does not match the question`));
        return;
      }
      this.pending.delete(id);
      clearTimeout(entry.timer);
      msg.writeUInt16BE(entry.originalId, 0);
      entry.resolve(msg);
    }
    if (this.closing && this.pending.size === 0) this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
  }

  /** No new queries; closes once those in flight are answered. */
  close(): void {
    this.closing = true;
    if (this.pending.size === 0) this.destroy(new ConnectionLost(`${this.settings.label}: closed`), 'closed');
  }

  destroy(error: Error, reason: GoneReason = 'lost'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.writeTimer) clearTimeout(this.writeTimer);
    const hadPending = this.pending.size > 0;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
    this.socket.destroy();
    this.onGone(this, reason, hadPending);
  }
}

export class StreamPool {
  private readonly connections: StreamConnection[] = [];
  private opening: Promise<StreamConnection> | null = null;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly size: number;
  private readonly settings: ConnectionSettings;
  private readonly connectTimeoutMs: number;
  private readonly retries: number;
  readonly stats: StreamPoolStats = { open: 0, created: 0, reused: 0, idleClosed: 0, replaced: 0, failed: 0 };

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

  /**
   * Sends a query and waits at most `timeoutMs` in all (connecting included). Retries on a
   * fresh connection when the connection fails under the query, never after a timeout and
   * never when no connection can be opened.
   */
  async exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new UpstreamUnavailableError(`${this.options.label}: stopped`);
      const left = deadline - performance.now();
      if (left <= 0) throw new UpstreamTimeoutError(`${this.options.label}: no answer within ${Math.round(timeoutMs)}ms`);
      const connection = await this.acquire(left);
      try {
        return await connection.exchange(query, deadline - performance.now());
      } catch (err) {
        if (!(err instanceof ConnectionLost) || attempt >= this.retries) throw err;
        if (this.options.events && upstreamRetry.hasSubscribers) upstreamRetry.publish({ ...this.options.events, reason: 'connection-lost' });
      }
    }
  }

  /** Opens connections up to `count` ahead of traffic (the pool is warm when queries come). */
  async warm(count = this.size): Promise<void> {
    while (!this.stopped && this.connections.length < Math.min(count, this.size)) {
      await this.open(this.connectTimeoutMs);
    }
  }

  private async acquire(timeLeft: number): Promise<StreamConnection> {
    let best: StreamConnection | null = null;
    for (const connection of this.connections) {
      if (connection.hasRoom && (!best || connection.inflight < best.inflight)) best = connection;
    }
    if (best) {
      // All busy and room for more: open another for the queries to come, but pipeline this
      // one on the least busy connection rather than make it wait for a handshake.
      if (best.inflight > 0 && this.connections.length < this.size && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
      this.stats.reused++;
      this.publish('reused');
      return best;
    }
    if (this.connections.length < this.size) return this.open(Math.min(timeLeft, this.connectTimeoutMs));
    throw new UpstreamUnavailableError(`${this.options.label}: ${this.size * this.settings.maxInflight} queries already in flight`);
  }

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
    const connection = new StreamConnection(socket, this.settings, (gone, reason, hadPending) => this.gone(gone, reason, hadPending));
    this.connections.push(connection);
    this.stats.created++;
    this.stats.open = this.connections.length;
    this.publish('created');
    return connection;
  }

  private gone(connection: StreamConnection, reason: GoneReason, hadPending: boolean): void {
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
    }
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
    for (const connection of [...this.connections]) connection.destroy(new UpstreamUnavailableError(`${this.options.label}: stopped`), 'closed');
  }
}
