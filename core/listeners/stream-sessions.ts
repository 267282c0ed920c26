/**
 * DNS clients on stream connections (TCP here; TLS in the dot plugin), RFC 7766: many queries
 * per connection, read while earlier ones are still being answered, answers written in the
 * order they are ready. Every resource has a bound: connections per listener, queries in flight
 * per connection (reading pauses at the limit), bytes waiting to be written to a slow reader,
 * idle time, and the time a half-sent message may take to complete.
 */
import type { Socket } from 'node:net';
import { FrameReader, frame } from '../dns/framing.js';
import type { Logger } from '../logger.js';
import type { QueryHandler } from './listener.js';

export interface StreamLimits {
  /** Close a connection with nothing in flight after this long (default 10 s). */
  idleTimeoutMs: number;
  /** Connections open at once; more are closed on arrival (default 1000). */
  maxConnections: number;
  /** Queries in flight per connection; reading pauses at the limit (default 100). */
  pipeline: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { idleTimeoutMs: 10_000, maxConnections: 1000, pipeline: 100 };

/** A client that does not read its answers is cut off once this much is queued for it. */
const MAX_QUEUED_WRITE_BYTES = 1 << 20;

export class StreamSessions {
  private readonly sessions = new Set<Session>();
  private atCapacity = false;
  /** Idle connections are being closed to make room (logged once per episode). */
  private evicting = false;
  private draining = false;

  constructor(
    private limits: StreamLimits,
    private readonly transport: string,
    private readonly handler: () => QueryHandler,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  update(limits: StreamLimits): void {
    this.limits = limits;
  }

  accept(socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    if (this.sessions.size >= this.limits.maxConnections) {
      if (!this.evictIdle()) {
        if (!this.atCapacity) {
          this.atCapacity = true;
          this.logger.warn(`${this.transport}: ${this.limits.maxConnections} connections busy (max_connections); closing new ones until some finish`);
        }
        socket.destroy();
        return;
      }
      if (!this.evicting) {
        this.evicting = true;
        this.logger.warn(`${this.transport}: ${this.limits.maxConnections} connections open (max_connections); closing the oldest idle ones to make room`);
      }
    } else if (this.evicting && this.sessions.size < this.limits.maxConnections * 0.9) {
      this.evicting = false;
    }
    if (this.atCapacity && this.sessions.size < this.limits.maxConnections) {
      this.atCapacity = false;
      this.logger.info(`${this.transport}: accepting connections again`);
    }
    const session = new Session(socket, this.limits, this.transport, this.handler, () => this.sessions.delete(session));
    this.sessions.add(session);
  }

  /**
   * At the connection limit, idle connections make room for new ones: the oldest connection
   * with nothing in flight is closed (it can reconnect). A crowd of idle connections therefore
   * never locks out a client with a query. Returns false when every connection is busy.
   */
  private evictIdle(): boolean {
    for (const session of this.sessions) {
      if (session.idle) {
        session.destroy();
        return true;
      }
    }
    return false;
  }

  /** Stops reading everywhere, lets answers in flight go out for up to `graceMs`, then closes. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const all = [...this.sessions].map((s) => s.finish());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const session of this.sessions) session.destroy();
  }
}

class Session {
  private readonly reader = new FrameReader();
  private inflight = 0;
  private paused = false;
  private finishing = false;
  private closed = false;
  private partialTimer: NodeJS.Timeout | null = null;
  private whenIdle: (() => void) | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly limits: StreamLimits,
    private readonly transport: string,
    private readonly handler: () => QueryHandler,
    private readonly onClose: () => void,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(limits.idleTimeoutMs);
    socket.on('timeout', () => {
      if (this.inflight === 0) this.destroy();
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.finish());
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.cleanup());
  }

  /** Nothing being answered (a half-read message does not count: it may never complete). */
  get idle(): boolean {
    return this.inflight === 0;
  }

  private onData(chunk: Buffer): void {
    if (this.finishing) return;
    const messages = this.reader.push(chunk);
    for (const message of messages) {
      if (message.length === 0) {
        this.destroy(); // a zero-length frame is no DNS message: the stream is out of step
        return;
      }
      this.serve(message);
    }
    this.watchPartial();
    if (this.inflight >= this.limits.pipeline && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** A message that started arriving must complete within the idle timeout (no slow drip). */
  private watchPartial(): void {
    if (this.reader.pending === 0) {
      if (this.partialTimer) clearTimeout(this.partialTimer);
      this.partialTimer = null;
    } else if (!this.partialTimer) {
      this.partialTimer = setTimeout(() => this.destroy(), this.limits.idleTimeoutMs);
    }
  }

  private serve(message: Buffer): void {
    this.inflight++;
    const remote = this.socket.remoteAddress ?? '';
    const info = {
      client: { address: remote, port: this.socket.remotePort ?? 0, family: (this.socket.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4') as 'IPv4' | 'IPv6' },
      transport: this.transport,
      datagram: false,
    };
    this.handler()(message, info).then(
      (answer) => this.answered(answer),
      () => this.answered(null),
    );
  }

  private answered(answer: Buffer | null): void {
    this.inflight--;
    if (this.closed) return;
    if (answer) {
      this.socket.write(frame(answer));
      if (this.socket.writableLength > MAX_QUEUED_WRITE_BYTES) {
        this.destroy(); // the client does not read: do not queue answers for it without end
        return;
      }
    }
    if (this.paused && this.inflight < this.limits.pipeline && !this.finishing) {
      this.paused = false;
      this.socket.resume();
    }
    if (this.inflight === 0 && this.whenIdle) this.whenIdle();
  }

  /** No more reading; ends the connection once answers in flight are written. */
  finish(): Promise<void> {
    this.finishing = true;
    if (this.closed) return Promise.resolve();
    this.socket.pause();
    return new Promise((resolve) => {
      const done = (): void => {
        if (!this.closed) this.socket.end();
        resolve();
      };
      if (this.inflight === 0) done();
      else this.whenIdle = done;
    });
  }

  destroy(): void {
    if (this.closed) return;
    this.socket.destroy();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.partialTimer) clearTimeout(this.partialTimer);
    this.whenIdle?.();
    this.onClose();
  }
}
