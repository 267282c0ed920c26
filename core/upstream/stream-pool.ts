/**
 * Pipelined DNS over long-lived stream connections (RFC 7766): many queries in flight per
 * connection, each with its own ID on that connection, answers matched back in any order. The
 * pool keeps up to `size` connections, opens them on demand, drops idle ones, and retries a
 * query once on a fresh connection when the one it went out on died under it (servers close
 * idle connections whenever they like). `forward` uses it over TCP; `dot` over TLS.
 */
import type { Socket } from 'node:net';
import { FrameReader } from '../dns/framing.js';
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion } from '../dns/wire.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';
import { freeId } from './query-id.js';

export interface StreamPoolOptions {
  /** For messages: `tcp 192.0.2.1:53`. */
  label: string;
  /** Opens one connection, ready for queries (TCP connected, TLS handshake done and verified). */
  connect: (timeoutMs: number) => Promise<Socket>;
  /** Connections kept at most (default 2). */
  size?: number;
  /** Queries in flight per connection (default 100). */
  maxInflight?: number;
  /** A connection with nothing in flight for this long is closed (default 10 s). */
  idleTimeoutMs?: number;
  /** Longest wait for a connection to open (default 2 s, and never past the query's time). */
  connectTimeoutMs?: number;
  /** Extra attempts on a fresh connection when one fails under a query (default 1). */
  retries?: number;
}

export interface StreamPoolStats {
  open: number;
  created: number;
  reused: number;
  idleClosed: number;
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

export class StreamConnection {
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new FrameReader();
  private closing = false;
  closed = false;
  /** Monotonic ms of the last query sent or answer read. */
  lastUsed = performance.now();

  constructor(
    private readonly socket: Socket,
    private readonly label: string,
    private readonly maxInflight: number,
    idleTimeoutMs: number,
    private readonly onGone: (connection: StreamConnection, idle: boolean) => void,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(idleTimeoutMs);
    socket.on('timeout', () => {
      if (this.pending.size === 0) this.destroy(new ConnectionLost(`${label}: idle connection closed`), true);
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
    return !this.closed && !this.closing && this.pending.size < this.maxInflight;
  }

  exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (!this.hasRoom) return Promise.reject(new ConnectionLost(`${this.label}: connection not usable`));
    const id = freeId(this.pending);
    const framed = Buffer.allocUnsafe(2 + query.length);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    framed.writeUInt16BE(id, 2);
    this.lastUsed = performance.now();
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamTimeoutError(`${this.label}: no answer within ${Math.round(timeoutMs)}ms`));
      }, timeoutMs);
      this.pending.set(id, { query: framed.subarray(2), originalId: readId(query), resolve, reject, timer });
      this.socket.write(framed);
    });
  }

  private onData(chunk: Buffer): void {
    let messages: Buffer[];
    messages = this.reader.push(chunk);
    for (const msg of messages) {
      if (msg.length < HEADER_SIZE || !isResponse(msg)) {
        this.destroy(new UpstreamResponseError(`${this.label}: malformed message on the connection`));
        return;
      }
      const entry = this.pending.get(readId(msg));
      if (!entry) continue; // the answer to a query that already timed out
      if (!sameQuestion(entry.query, msg)) {
        // On a stream nobody can inject; a wrong question means a broken server.
        this.destroy(new UpstreamResponseError(`${this.label}: answer does not match the question`));
        return;
      }
      this.pending.delete(readId(msg));
      clearTimeout(entry.timer);
      this.lastUsed = performance.now();
      msg.writeUInt16BE(entry.originalId, 0);
      entry.resolve(msg);
    }
  }

  /** No new queries; closes once those in flight are answered. */
  close(): void {
    this.closing = true;
    if (this.pending.size === 0) this.destroy(new ConnectionLost(`${this.label}: closed`), true);
  }

  destroy(error: Error, idle = false): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
    this.socket.destroy();
    this.onGone(this, idle);
  }
}

export class StreamPool {
  private readonly connections: StreamConnection[] = [];
  private opening: Promise<StreamConnection> | null = null;
  private stopped = false;
  private readonly size: number;
  private readonly maxInflight: number;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly retries: number;
  readonly stats: StreamPoolStats = { open: 0, created: 0, reused: 0, idleClosed: 0, failed: 0 };

  constructor(private readonly options: StreamPoolOptions) {
    this.size = options.size ?? 2;
    this.maxInflight = options.maxInflight ?? 100;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
    this.retries = options.retries ?? 1;
  }

  /**
   * Sends a query and waits at most `timeoutMs` in all (connecting included). Retries on a
   * fresh connection when the connection fails, never after a timeout.
   */
  async exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new UpstreamUnavailableError(`${this.options.label}: stopped`);
      const left = deadline - performance.now();
      if (left <= 0) throw new UpstreamTimeoutError(`${this.options.label}: no answer within ${Math.round(timeoutMs)}ms`);
      try {
        const connection = await this.acquire(left);
        return await connection.exchange(query, deadline - performance.now());
      } catch (err) {
        if (!(err instanceof ConnectionLost) || attempt >= this.retries) throw err;
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
    // Reuse an idle connection at once; open another while all are busy and there is room.
    if (best && (best.inflight === 0 || this.connections.length >= this.size)) {
      this.stats.reused++;
      return best;
    }
    if (this.connections.length < this.size) {
      try {
        return await this.open(Math.min(timeLeft, this.connectTimeoutMs));
      } catch (err) {
        if (best) return best;
        throw err;
      }
    }
    throw new UpstreamUnavailableError(`${this.options.label}: ${this.size * this.maxInflight} queries already in flight`);
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
      socket = await this.options.connect(timeoutMs);
    } catch (err) {
      this.stats.failed++;
      if (err instanceof UpstreamUnavailableError || err instanceof UpstreamTimeoutError) throw new ConnectionLost(err.message, { cause: err });
      throw new ConnectionLost(`${this.options.label}: ${(err as Error).message}`, { cause: err });
    }
    if (this.stopped) {
      socket.destroy();
      throw new UpstreamUnavailableError(`${this.options.label}: stopped`);
    }
    const connection = new StreamConnection(socket, this.options.label, this.maxInflight, this.idleTimeoutMs, (gone, idle) => {
      const index = this.connections.indexOf(gone);
      if (index >= 0) this.connections.splice(index, 1);
      if (idle) this.stats.idleClosed++;
      this.stats.open = this.connections.length;
    });
    this.connections.push(connection);
    this.stats.created++;
    this.stats.open = this.connections.length;
    return connection;
  }

  /** Queries waiting for an answer. */
  get inflight(): number {
    return this.connections.reduce((sum, c) => sum + c.inflight, 0);
  }

  get openConnections(): number {
    return this.connections.length;
  }

  close(): void {
    this.stopped = true;
    for (const connection of [...this.connections]) connection.destroy(new UpstreamUnavailableError(`${this.options.label}: stopped`));
  }
}
