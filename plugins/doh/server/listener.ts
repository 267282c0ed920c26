/**
 * The `https://` and `http://` listeners (DoH, RFC 8484). One front server takes connections —
 * TLS with ALPN (h2, http/1.1) for https, plain TCP for http (where the HTTP/2 client preface
 * tells h2c from HTTP/1.1) — counts them against `max_connections`, and hands each to the HTTP/2
 * server of lib/http2 (Veil's own, or node:http2 with `http2 node`) or to an HTTP/1.1 server
 * that never listens on its own. That keeps one place for the bounds: connections (in all and per client address), requests
 * in flight per connection (HTTP/2 streams or pipelined HTTP/1.1 requests), header size, idle
 * time, the time a request may take to arrive, and bytes per body.
 *
 * At `max_connections`, the connection that has been idle longest makes room for a new one. A
 * connection only waiting for its client (a request body still arriving) counts as idle: a
 * client that holds requests open cannot lock others out.
 */
import { Buffer } from 'node:buffer';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { ClientAddress } from '../../../core/context.js';
import { bindStreamServer } from '../../../core/listeners/tcp.js';
import type { Listener, ListenerEnvironment, QueryHandler, TransportDefinition } from '../../../core/listeners/listener.js';
import { unmapIpv4, type Endpoint } from '../../../core/net/address.js';
import { AddressRanges } from '../../../core/net/cidr.js';
import { clientKey } from '../../../core/util/token-buckets.js';
import { PREFACE as H2_PREFACE } from '../../../lib/http2/protocol.js';
import { headerText, textReply, type BodyResult, type HttpReply, type HttpRequest } from '../../../lib/http2/message.js';
import { http2Server, type Http2Connection, type Http2Server } from '../../../lib/http2/server.js';
import { readStreamBody } from '../../../lib/http2/stream-body.js';
import { ObliviousRoles } from './oblivious.js';
import { HTTP_OPTION_NAMES, HTTPS_OPTION_NAMES, parseDohListenerOptions, type DohListenerOptions } from './options.js';
import { DohService } from './service.js';

interface Connection {
  socket: net.Socket;
  client: ClientAddress;
  /** What its per-client bound counts it under (an IPv4 address, an IPv6 /56); null for a trusted proxy. */
  owner: string | null;
  /** Requests being served (body read, query answered, response written). */
  inflight: number;
  /** Of those, requests not waiting for their client: their query is being answered. */
  answering: number;
  session: Http2Connection | null;
  /** HTTP/1.1 requests read past `max_streams` in flight, waiting their turn; reading is paused meanwhile. */
  queued: (() => void)[];
  pausedForQueue: boolean;
  closed: boolean;
}

const noop = (): void => {};

/**
 * The request as the service sees it: the server's, with its body read counted as waiting for
 * the client (DohListener.readBodyCounted). A class rather than a view object with closures,
 * and the server's request is left as it is.
 */
class CountedRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;

  constructor(
    private readonly inner: HttpRequest,
    private readonly listener: DohListener,
    private readonly connection: Connection,
  ) {
    this.method = inner.method;
    this.path = inner.path;
  }

  header(name: string): string | undefined {
    return this.inner.header(name);
  }

  readBody(limit: number): Promise<BodyResult> {
    return this.listener.readBodyCounted(this.connection, this.inner, limit);
  }
}
const CLIENT_PREFIXES = { ipv4Prefix: 32, ipv6Prefix: 56 };

export class DohListener implements Listener {
  private front: net.Server | null = null;
  private readonly h1: http.Server;
  /** Serves HTTP/2 on the connections that speak it; made anew when a reload changes the options. */
  private h2: Http2Server;
  private handler: QueryHandler | null = null;
  private readonly service: DohService;
  private readonly oblivious: ObliviousRoles | null;
  private proxies: AddressRanges;
  private readonly connections = new Set<Connection>();
  /** Connections answering nothing, the one idle longest first: the first to make room. */
  private readonly idle = new Set<Connection>();
  private readonly byOwner = new Map<string, Set<Connection>>();
  private readonly bySocket = new WeakMap<net.Socket, Connection>();
  private ownerLimitLogged = false;
  private draining = false;
  private atCapacity = false;
  private whenDrained: (() => void) | null = null;
  boundAddress = '';

  constructor(
    readonly endpoint: Endpoint,
    private options: DohListenerOptions,
    private readonly env: ListenerEnvironment,
    private readonly secure: boolean,
  ) {
    this.oblivious = options.odohTarget || options.odohRelay ? new ObliviousRoles(endpoint, options, env) : null;
    this.service = new DohService(options.path, secure ? 'https' : 'http', () => this.handler!, this.oblivious);
    this.proxies = new AddressRanges(options.trustedProxies);
    this.h2 = http2ServerFor(options);
    this.h1 = http.createServer(
      {
        maxHeaderSize: options.maxHeaderSize,
        keepAliveTimeout: options.idleTimeoutMs,
        // Headers dripped a byte at a time end the connection when the request's time is up.
        headersTimeout: options.requestTimeoutMs,
        requestTimeout: options.requestTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, options.requestTimeoutMs),
      },
      (req, res) => this.onRequest(req, res),
    );
    this.h1.setTimeout(options.idleTimeoutMs, (socket: net.Socket) => this.onIdle(socket));
    this.h1.on('clientError', (_err, socket: net.Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      socket.destroy();
    });
  }

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    await this.oblivious?.start(this.options, () => this.handler!);
    const front = this.secure
      ? tls.createServer(
          {
            key: this.options.key!,
            cert: this.options.cert!,
            ALPNProtocols: ['h2', 'http/1.1'],
            minVersion: 'TLSv1.2',
            handshakeTimeout: this.options.idleTimeoutMs,
            // On the TCP socket under TLS (setNoDelay on the TLS socket does not reach it):
            // without it, answers written while an earlier one is unacknowledged wait.
            noDelay: true,
          },
          (socket) => this.accept(socket),
        )
      : net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    front.on('error', noop);
    front.on('tlsClientError', noop);
    // Before the TLS handshake (its key exchange is the costly step): a client that no block of
    // this listener admits is turned away. A trusted proxy is let in: the client is behind it.
    if (this.secure) front.on('connection', (raw: net.Socket) => {
      const client = clientOf(raw);
      if (this.proxies.has(client.address)) return;
      if (this.handler?.admitsConnection && !this.handler.admitsConnection({ client, transport: 'https', datagram: false })) raw.destroy();
    });
    // Handshakes in progress are not counted yet: bound them here.
    front.maxConnections = this.options.maxConnections * 2;
    const bound = await bindStreamServer(front, this.endpoint, this.secure ? 'https' : 'http', this.env.reusePort);
    this.boundAddress = bound + this.options.path;
    this.front = front;
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    const next = options as DohListenerOptions;
    this.options = next;
    this.oblivious?.update(next).catch((err: Error) => this.env.logger.error(`${this.endpoint.text}: ODoH reload: ${err.message}`));
    this.proxies = new AddressRanges(next.trustedProxies);
    this.h2 = http2ServerFor(next); // HTTP/2 connections opened from now on take the new limits
    this.h1.keepAliveTimeout = next.idleTimeoutMs;
    this.h1.timeout = next.idleTimeoutMs;
    this.h1.headersTimeout = next.requestTimeoutMs;
    this.h1.requestTimeout = next.requestTimeoutMs;
    if (this.front) {
      this.front.maxConnections = next.maxConnections * 2;
      if (this.front instanceof tls.Server) this.front.setSecureContext({ key: next.key!, cert: next.cert!, minVersion: 'TLSv1.2' });
    }
  }

  private accept(socket: net.Socket): void {
    socket.on('error', noop);
    if (this.draining) {
      socket.destroy();
      return;
    }
    const client = clientOf(socket);
    // IPv6 clients by /56, as the rate limit counts them: one host holds a whole prefix.
    const owner = this.proxies.has(client.address) ? null : clientKey(client.address, CLIENT_PREFIXES);
    if (owner !== null && !this.roomForOwner(owner)) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.options.maxConnections && !this.evictIdle()) {
      if (!this.atCapacity) {
        this.atCapacity = true;
        this.env.logger.warn(`${this.endpoint.text}: ${this.options.maxConnections} connections busy (max_connections); closing new ones until some finish`);
      }
      socket.destroy();
      return;
    }
    if (this.atCapacity && this.connections.size < this.options.maxConnections) {
      this.atCapacity = false;
      this.env.logger.info(`${this.endpoint.text}: accepting connections again`);
    }
    const connection: Connection = { socket, client, owner, inflight: 0, answering: 0, session: null, queued: [], pausedForQueue: false, closed: false };
    this.connections.add(connection);
    this.idle.add(connection);
    if (owner !== null) {
      let owned = this.byOwner.get(owner);
      if (!owned) this.byOwner.set(owner, (owned = new Set()));
      owned.add(connection);
    }
    socket.setNoDelay(true);
    socket.on('close', () => {
      connection.closed = true;
      connection.queued.length = 0;
      this.connections.delete(connection);
      this.idle.delete(connection);
      if (owner !== null) {
        const owned = this.byOwner.get(owner)!;
        owned.delete(connection);
        if (owned.size === 0) this.byOwner.delete(owner);
      }
      if (this.connections.size === 0) this.whenDrained?.();
    });
    if (this.secure) {
      if ((socket as tls.TLSSocket).alpnProtocol === 'h2') this.startH2(connection);
      else this.startH1(connection);
    } else {
      this.sniff(connection);
    }
  }

  /** At the limit, the connection idle longest makes room (it can reconnect). */
  private evictIdle(): boolean {
    for (const connection of this.idle) {
      this.closeConnection(connection);
      return true;
    }
    return false;
  }

  /**
   * A client at `max_connections_per_client` makes room with its own connection idle longest;
   * if all of its connections are answering, the new one is refused.
   */
  private roomForOwner(owner: string): boolean {
    const owned = this.byOwner.get(owner);
    if (!owned || owned.size < this.options.maxConnectionsPerClient) return true;
    for (const connection of owned) {
      if (this.idle.has(connection)) {
        this.closeConnection(connection);
        return true;
      }
    }
    if (!this.ownerLimitLogged) {
      this.ownerLimitLogged = true;
      this.env.logger.warn(`${this.endpoint.text}: a client holds ${this.options.maxConnectionsPerClient} busy connections (max_connections_per_client); its new ones are closed (logged once)`);
    }
    return false;
  }

  /** Counts a request's query in or out of being answered; a connection answering nothing is idle, newest last. */
  private answering(connection: Connection, delta: 1 | -1): void {
    connection.answering += delta;
    if (connection.answering === 0) {
      if (!connection.closed) this.idle.add(connection);
    } else if (delta === 1 && connection.answering === 1) {
      this.idle.delete(connection);
    }
  }

  /** Plain HTTP: the HTTP/2 preface means h2c with prior knowledge; anything else is HTTP/1.x. */
  private sniff(connection: Connection): void {
    const { socket } = connection;
    let seen: Buffer = Buffer.alloc(0);
    const onTimeout = (): void => {
      socket.destroy();
    };
    socket.setTimeout(this.options.idleTimeoutMs);
    socket.on('timeout', onTimeout);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const compared = Math.min(seen.length, H2_PREFACE.length);
      const h2 = seen.subarray(0, compared).equals(H2_PREFACE.subarray(0, compared));
      if (h2 && seen.length < H2_PREFACE.length) return;
      socket.removeListener('data', onData);
      socket.removeListener('timeout', onTimeout);
      socket.setTimeout(0);
      socket.pause();
      if (h2) {
        // The HTTP/2 connection reads what is already buffered when it starts.
        socket.unshift(seen);
        this.startH2(connection);
      } else {
        // The HTTP/1 parser listens for 'data': attach it first, then replay the bytes.
        this.startH1(connection);
        socket.unshift(seen);
        socket.resume();
      }
    };
    socket.on('data', onData);
  }

  private startH2(connection: Connection): void {
    connection.session = this.h2.open(connection.socket, (view, respond) => this.serve(connection, view, respond));
    if (this.draining) connection.session.close();
  }

  private startH1(connection: Connection): void {
    this.bySocket.set(connection.socket, connection);
    connection.socket.on('drain', () => this.resumeH1(connection));
    this.h1.emit('connection', connection.socket);
  }

  /**
   * Reading resumes once the requests waiting their turn are served, unless answers are still
   * waiting to be written (then on 'drain'): a client that does not read is not read either.
   */
  private resumeH1(connection: Connection): void {
    if (!connection.pausedForQueue || connection.queued.length > 0 || connection.closed || connection.socket.writableNeedDrain) return;
    connection.pausedForQueue = false;
    connection.socket.resume();
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const connection = this.bySocket.get(req.socket);
    if (!connection) {
      res.destroy();
      return;
    }
    const view: HttpRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      header: (name) => headerText(req.headers[name]),
      readBody: (limit) => readStreamBody(req, limit, this.options.requestTimeoutMs),
    };
    const start = (): void => this.serve(connection, view, (reply) => respondH1(req, res, reply, this.draining));
    // Pipelined requests beyond max_streams wait, and reading stops until they are served: one
    // connection cannot take the whole server's max_concurrent.
    if (connection.inflight < this.options.maxStreams) return start();
    connection.queued.push(start);
    connection.pausedForQueue = true;
    connection.socket.pause();
  }

  private serve(connection: Connection, view: HttpRequest, respond: (reply: HttpReply) => void): void {
    connection.inflight++;
    this.answering(connection, 1);
    const client = this.clientFor(connection, view);
    this.service.serve(new CountedRequest(view, this, connection), client).then(
      (reply) => this.done(connection, respond, reply),
      (err: Error) => {
        this.env.logger.error(`${this.endpoint.text}: ${err.message}`);
        this.done(connection, respond, textReply(500, 'internal error'));
      },
    );
  }

  /** While a body arrives the connection waits for its client, not for us: it counts as idle. */
  async readBodyCounted(connection: Connection, view: HttpRequest, limit: number): Promise<BodyResult> {
    this.answering(connection, -1);
    try {
      return await view.readBody(limit);
    } finally {
      this.answering(connection, 1);
    }
  }

  private done(connection: Connection, respond: (reply: HttpReply) => void, reply: HttpReply): void {
    connection.inflight--;
    this.answering(connection, -1);
    if (!connection.closed) respond(reply);
    const next = connection.queued.length > 0 ? connection.queued.shift() : undefined; // (only HTTP/1.1 queues)
    if (next) next();
    else this.resumeH1(connection);
    if (this.draining && connection.inflight === 0 && !connection.session) this.closeConnection(connection);
  }

  /** HTTP/1: the socket went quiet. Close it unless a query on it is still being answered. */
  private onIdle(socket: net.Socket): void {
    const connection = this.bySocket.get(socket);
    if (!connection || connection.inflight === 0) socket.destroy();
  }

  /**
   * The client address the pipeline sees: the peer's, or, when the peer is a trusted proxy,
   * the nearest address in X-Forwarded-For that is not one of our proxies.
   */
  private clientFor(connection: Connection, view: HttpRequest): ClientAddress {
    if (this.options.trustedProxies.length === 0) return connection.client;
    if (!this.proxies.has(connection.client.address)) return connection.client;
    const forwarded = view.header('x-forwarded-for');
    if (!forwarded) return connection.client;
    let client = connection.client;
    const hops = forwarded.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const address = hopAddress(hops[i]!);
      if (!address) break; // a hop we cannot read: believe nothing before it
      client = { address, port: 0, family: net.isIPv6(address) ? 'IPv6' : 'IPv4' };
      if (!this.proxies.has(address)) break;
    }
    return client;
  }

  private closeConnection(connection: Connection): void {
    this.idle.delete(connection); // at once: it must not be chosen to make room twice
    if (connection.session) connection.session.destroy();
    connection.socket.destroy();
  }

  /** Stops accepting; HTTP/2 clients get GOAWAY; requests in flight get up to `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.front) return;
    const front = this.front;
    this.front = null;
    this.draining = true;
    const closed = new Promise<void>((resolve) => front.close(() => resolve()));
    for (const connection of this.connections) {
      if (connection.session) connection.session.close();
      else if (connection.inflight === 0) connection.socket.destroy();
    }
    if (this.connections.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.whenDrained = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
    }
    for (const connection of this.connections) this.closeConnection(connection);
    this.oblivious?.stop();
    await closed;
  }
}

function http2ServerFor(options: DohListenerOptions): Http2Server {
  const { maxStreams, maxHeaderSize, idleTimeoutMs, requestTimeoutMs } = options;
  return http2Server(options.http2, { maxStreams, maxHeaderListSize: maxHeaderSize, idleTimeoutMs, requestTimeoutMs });
}

function clientOf(socket: net.Socket): ClientAddress {
  return { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, family: socket.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4' };
}

/** One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`. */
function hopAddress(hop: string): string | null {
  const text = hop.trim();
  if (net.isIP(text)) return unmapIpv4(text);
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(text) ?? /^([\d.]+):\d+$/.exec(text);
  return m && net.isIP(m[1]!) ? unmapIpv4(m[1]!) : null;
}

function respondH1(req: http.IncomingMessage, res: http.ServerResponse, reply: HttpReply, closing: boolean): void {
  if (res.writableEnded || res.destroyed) return;
  // Unread body bytes would be taken for the next request: close after such a reply.
  const close = closing || !req.complete;
  res.writeHead(reply.status, close ? { ...reply.headers, connection: 'close' } : reply.headers);
  res.end(reply.body);
  if (close) res.once('finish', () => req.socket.destroySoon());
}

export const httpsTransport: TransportDefinition<DohListenerOptions> = {
  scheme: 'https',
  defaultPort: 443,
  optionNames: HTTPS_OPTION_NAMES,
  parseOptions: (endpoint, options, at) => parseDohListenerOptions(endpoint, options, at, true),
  create: (endpoint, options, env) => new DohListener(endpoint, options, env, true),
};

export const httpTransport: TransportDefinition<DohListenerOptions> = {
  scheme: 'http',
  defaultPort: 80,
  optionNames: HTTP_OPTION_NAMES,
  parseOptions: (endpoint, options, at) => parseDohListenerOptions(endpoint, options, at, false),
  create: (endpoint, options, env) => new DohListener(endpoint, options, env, false),
};
