/**
 * Veil's HTTPS client for DNS messages, shared by the DoH upstream, the ODoH upstream (to its
 * relays and targets) and the ODoH relay (to its targets).
 *
 * The connections to one server: up to `pool` HTTP/2 sessions, each carrying many streams,
 * opened on demand and replaced when the server sends GOAWAY or the session fails. The first
 * connection's ALPN decides the protocol: when the server does not offer h2, requests go over
 * HTTP/1.1 on kept-alive connections instead. Every connection goes to one of the server's IP
 * addresses (never a looked-up name) and is verified before use.
 *
 * When every session carries as many streams as the server allows and the pool is full, a
 * request waits for a stream to end (first come, first served, until its deadline) rather than
 * fail: a burst of queries above what the server takes at once is answered a little later, not
 * with SERVFAIL. What waits is bounded (MAX_WAITING); past it a request fails at once.
 */
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { upstreamConnection } from '../../core/events.js';
import { readsDirectly } from '../../core/net/direct-reads.js';
import type { Logger } from '../../core/logger.js';
import { formatHostPort } from '../../core/upstream/connect.js';
import { ConnectionLost, H2Session, Http1Client, type HttpsRequest } from './exchange.js';
import type { Outcome } from '../../core/upstream/outcome.js';
import { VeilH2Session } from './veil-session.js';
import { TlsConnector, type TlsTarget } from '../tls/connector.js';
import { WaitQueue } from '../../core/wait-queue.js';
import type { TlsContexts } from '../tls/contexts.js';

/** Who the server must prove to be (the certificate checks of lib/tls). */
export type TlsIdentity = Pick<TlsTarget, 'serverName' | 'extraCa' | 'pins' | 'certHashes'>;

export interface HttpsConnectionsOptions {
  /** The upstream's name, for logs and events. */
  name: string;
  /** For messages: `https://dns.example/dns-query`. */
  label: string;
  /** `:authority` and Host: the host name (or IP) and the port unless 443. */
  authority: string;
  identity: TlsIdentity;
  /** The server's IP addresses: tried in order, starting with the last one that worked. */
  addresses: string[];
  port: number;
  /** HTTP/2 sessions kept at most. */
  pool: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Leave from this local address (an ODoH relay's own); the system chooses when absent. */
  localAddress?: string;
  logger: Logger;
  /** The server's TLS contexts (TlsContextsService). */
  tls: TlsContexts;
  /**
   * Whose HTTP/2 client: Veil's own (lib/http2/client-connection.ts, the default: a fraction of
   * the CPU a request) or the runtime's node:http2.
   */
  http2?: Http2Client;
}

export type Http2Client = 'veil' | 'node';

/** What the pool needs of an HTTP/2 session, whichever client carries it. */
interface Session {
  readonly active: number;
  readonly hasRoom: boolean;
  /** Sends the request; its answer or failure goes to `outcome`, once. */
  send(request: HttpsRequest, timeoutMs: number, outcome: Outcome): void;
  destroy(): void;
}

type Mode = 'unknown' | 'h2' | 'http1';

/** Requests waiting for a stream at most, per server: about ten times what one session carries. */
export const MAX_WAITING = 1024;

/** A request that found every session full. */
interface Waiter {
  request: HttpsRequest;
  deadline: number;
  timeoutMs: number;
  outcome: Outcome;
}

/** What `acquire` says when no session has room and none may be opened: wait for a stream. */
const FULL = 'full';

const PROTOCOL = 'doh';

export class HttpsConnections {
  private mode: Mode = 'unknown';
  private readonly sessions: Session[] = [];
  /** Requests waiting for a stream, oldest first. */
  private readonly waiting = new WaitQueue<Waiter>(MAX_WAITING);
  private opening: Promise<Session | null> | null = null;
  private http1: Http1Client | null = null;
  /** One per address, each resuming its own TLS sessions. */
  private readonly connectors: TlsConnector[];
  private preferred = 0;
  private stopped = false;
  private reachable: boolean | null = null;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;

  constructor(private readonly options: HttpsConnectionsOptions) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
    this.connectors = options.addresses.map(
      (host) =>
        new TlsConnector({
          ...options.identity,
          label: formatHostPort(host, options.port),
          host,
          port: options.port,
          connectTimeoutMs: this.connectTimeoutMs,
          handshakeTimeoutMs: this.connectTimeoutMs,
          ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        }, options.tls),
    );
  }

  get openSessions(): number {
    return this.sessions.length;
  }

  get protocol(): Mode {
    return this.mode;
  }

  /**
   * Sends one request within `timeoutMs` in all. A request lost with its connection (never
   * answered: GOAWAY, reset, refused stream) is sent once more on a fresh one.
   *
   * The session settles the one promise made here (through its Outcome): the answer reaches the
   * caller in one promise hop, not two (a wrapper promise for the retry cost about 2% of the
   * DoH path's CPU, docs/benchmarks.md).
   */
  request(request: HttpsRequest, timeoutMs: number): Promise<Buffer> {
    const now = performance.now();
    const deadline = now + timeoutMs;
    return new Promise((resolve, reject) => {
      let retried = false;
      const outcome: Outcome = {
        resolve,
        reject: (err: unknown): void => {
          if (retried || !(err instanceof ConnectionLost)) return reject(err);
          retried = true;
          // Sent again once the failing connection is done failing (and out of the pool): a
          // session tells of a lost stream while it is still tearing itself down.
          queueMicrotask(() => this.attempt(request, deadline, timeoutMs, outcome));
        },
      };
      this.attempt(request, deadline, timeoutMs, outcome, now);
    });
  }

  /**
   * One sending. Not an async function: a session is at hand for nearly every request, which
   * then goes out at once (an async frame was a few hundred bytes of garbage a request). `now`:
   * the clock, if the caller has just read it.
   */
  private attempt(request: HttpsRequest, deadline: number, timeoutMs: number, outcome: Outcome, now = performance.now()): void {
    if (this.stopped) return outcome.reject(new UpstreamUnavailableError(`${this.options.label}: stopped`));
    const left = deadline - now;
    if (left <= 0) return outcome.reject(new UpstreamTimeoutError(`${this.options.label}: no answer within ${Math.round(timeoutMs)}ms`));
    let acquired: ReturnType<HttpsConnections['acquire']>;
    try {
      // No await when a session is at hand: a burst handled in one turn of the event loop
      // then counts its streams as it goes, and opens the pool's other sessions.
      acquired = this.acquire(left);
    } catch (err) {
      return outcome.reject(err);
    }
    if (acquired === FULL) this.wait(request, deadline, timeoutMs, outcome);
    else if (acquired instanceof Promise) acquired.then((session) => this.sendOn(session, request, deadline, timeoutMs, outcome), outcome.reject);
    else this.sendOn(acquired, request, deadline, timeoutMs, outcome, now);
  }

  /** Sends on `session` (HTTP/1.1 when null); whatever goes wrong, even thrown, goes to `outcome`. */
  private sendOn(session: Session | null, request: HttpsRequest, deadline: number, timeoutMs: number, outcome: Outcome, now = performance.now()): void {
    const remaining = deadline - now;
    try {
      if (session === null) {
        this.http1!.request(request, remaining).then(outcome.resolve, outcome.reject);
        return;
      }
      // A session that opened for many callers at once is full for the later ones.
      if (!session.hasRoom) return this.wait(request, deadline, timeoutMs, outcome);
      session.send(request, remaining, outcome);
    } catch (err) {
      outcome.reject(err);
    }
  }

  /** Queues a request until a stream is free (drain) or its deadline passes. */
  private wait(request: HttpsRequest, deadline: number, timeoutMs: number, outcome: Outcome): void {
    const waiter: Waiter = { request, deadline, timeoutMs, outcome };
    const expired = (): void => outcome.reject(new UpstreamTimeoutError(`${this.options.label}: no answer within ${Math.round(timeoutMs)}ms (every stream was busy)`));
    if (!this.waiting.push(waiter, deadline - performance.now(), expired)) {
      return outcome.reject(new UpstreamUnavailableError(`${this.options.label}: every session is full and ${MAX_WAITING} requests wait`));
    }
    // The pool may have room for a session that is not open (one was lost): open it.
    if (this.sessions.length < this.options.pool && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
  }

  /** Sends waiting requests, oldest first, while a session has room (a stream ended, a session opened). */
  private readonly drain = (): void => {
    while (this.waiting.size > 0) {
      const session = this.mode === 'http1' ? null : this.roomiest();
      if (session === null && this.mode !== 'http1') return;
      const waiter = this.waiting.shift()!;
      this.sendOn(session, waiter.request, waiter.deadline, waiter.timeoutMs, waiter.outcome);
    }
  };

  /** The session with room and the fewest streams, if any. */
  private roomiest(): Session | null {
    let best: Session | null = null;
    for (const session of this.sessions) {
      if (session.hasRoom && (!best || session.active < best.active)) best = session;
    }
    return best;
  }

  /** Opens the first connection ahead of traffic. Failures are logged, never thrown. */
  async warm(): Promise<void> {
    try {
      await this.acquire(this.connectTimeoutMs);
    } catch {
      // acquire logged it; the first query will try again
    }
  }

  /**
   * An HTTP/2 session with room (at once, or once one opens), null when the server speaks
   * HTTP/1.1 only, or FULL when the request must wait for a stream.
   */
  private acquire(timeLeft: number): Session | null | Promise<Session | null> | typeof FULL {
    if (this.mode === 'http1') return null;
    // None goes ahead of a request already waiting.
    const best = this.waiting.size === 0 ? this.roomiest() : null;
    if (best) {
      // Busy sessions still take streams: open another beside them for the next queries,
      // rather than make this one wait for a handshake.
      if (best.active > 0 && this.sessions.length < this.options.pool && !this.opening) {
        this.open(this.connectTimeoutMs).catch(() => {});
      }
      this.publish('reused');
      return best;
    }
    if (this.sessions.length < this.options.pool || this.opening) return this.open(Math.min(timeLeft, this.connectTimeoutMs));
    return FULL;
  }

  /** One connection opening at a time: concurrent callers share it. */
  private open(timeoutMs: number): Promise<Session | null> {
    this.opening ??= this.openSession(timeoutMs).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async openSession(timeoutMs: number): Promise<Session | null> {
    const socket = await this.connect(['h2', 'http/1.1'], timeoutMs);
    if (this.stopped) {
      socket.destroy();
      throw new UpstreamUnavailableError(`${this.options.label}: stopped`);
    }
    if (socket.alpnProtocol !== 'h2') {
      // Node's HTTP/1.1 client reads with 'data' events, which a socket read directly never emits.
      const direct = readsDirectly(socket);
      if (direct) socket.destroy();
      this.switchToHttp1(direct ? null : socket);
      this.drain();
      return null;
    }
    this.mode = 'h2';
    const onGone = (gone: Session): void => {
      const index = this.sessions.indexOf(gone);
      if (index < 0) return;
      this.sessions.splice(index, 1);
      this.publish('closed');
      // Requests waiting for a stream get a new session in its place.
      if (this.waiting.size > 0 && !this.stopped && !this.opening) this.open(this.connectTimeoutMs).catch(() => {});
    };
    const { authority, label } = this.options;
    const session: Session =
      this.options.http2 === 'node'
        ? new H2Session(socket, authority, label, this.idleTimeoutMs, onGone, this.drain)
        : new VeilH2Session(socket, authority, label, this.idleTimeoutMs, onGone, this.drain);
    this.sessions.push(session);
    this.publish('created');
    this.drain();
    return session;
  }

  /** The server did not choose h2: HTTP/1.1 from now on, starting with this connection. */
  private switchToHttp1(first: tls.TLSSocket | null): void {
    this.mode = 'http1';
    this.options.logger.info(`${this.options.name}: ${this.options.label} does not offer HTTP/2; using HTTP/1.1`);
    let spare: tls.TLSSocket | null = first;
    this.http1 = new Http1Client(
      this.options.authority,
      this.options.label,
      async () => {
        if (spare && !spare.destroyed) {
          const socket = spare;
          spare = null;
          return socket;
        }
        spare = null;
        const socket = await this.connect(['http/1.1'], this.connectTimeoutMs);
        this.publish('created');
        return socket;
      },
      Math.max(4, this.options.pool * 4),
      this.idleTimeoutMs,
    );
  }

  /** Tries the server's addresses in turn, starting with the last one that worked. */
  private async connect(alpn: string[], timeoutMs: number): Promise<tls.TLSSocket> {
    const deadline = performance.now() + timeoutMs;
    const connectors = this.connectors;
    let lastError: Error | null = null;
    for (let i = 0; i < connectors.length; i++) {
      const index = (this.preferred + i) % connectors.length;
      const left = deadline - performance.now();
      if (left <= 0) break;
      try {
        // Read directly (core/net/direct-reads.ts) only where Veil's own HTTP/2 client reads.
        const direct = this.options.http2 !== 'node' && alpn.includes('h2');
        const socket = await connectors[index]!.connect(left, undefined, { alpn, direct });
        this.preferred = index;
        this.markReachable(true);
        return socket;
      } catch (err) {
        lastError = err as Error;
      }
    }
    this.publish('failed');
    const error = lastError ?? new UpstreamTimeoutError(`${this.options.label}: no time left to connect`);
    this.markReachable(false, error);
    throw error;
  }

  /** Logs when the server becomes unreachable and when it is back, not every failure. */
  private markReachable(ok: boolean, error?: Error): void {
    if (this.reachable === ok) return;
    const before = this.reachable;
    this.reachable = ok;
    // The error starts with the address that failed last.
    if (!ok) this.options.logger.warn(`${this.options.name}: cannot reach ${this.options.label}: ${error?.message ?? 'unknown error'}`);
    else if (before === false) this.options.logger.info(`${this.options.name}: ${this.options.label} is reachable again`);
  }

  private publish(event: 'created' | 'reused' | 'closed' | 'failed'): void {
    if (upstreamConnection.hasSubscribers) upstreamConnection.publish({ upstream: this.options.name, protocol: PROTOCOL, event, open: this.sessions.length });
  }

  close(): void {
    this.stopped = true;
    for (const waiter of this.waiting.takeAll()) {
      waiter.outcome.reject(new UpstreamUnavailableError(`${this.options.label}: stopped`));
    }
    for (const session of [...this.sessions]) session.destroy();
    this.sessions.length = 0;
    this.http1?.close();
  }
}
