/**
 * Small HTTP endpoints for operators (`/metrics`, `/health`, `/ready`), shared by address:
 * several server blocks saying `metrics 127.0.0.1:9153` get one socket, and a reload's new
 * configuration takes over the paths of the old one without rebinding. Each address is one
 * `http.Server` with bounded headers, time and connections; it answers GET and HEAD on the
 * paths registered on it and nothing else, and closes when its last path is released.
 *
 * The registry is a server-wide service (`HttpEndpointsService`): plugins open endpoints through
 * `scope.service(HttpEndpointsService)`, so two servers in one process hold their own. Under
 * `--workers N` a worker's server has the worker's endpoints there instead
 * (lib/worker-endpoints.ts): the supervisor binds the address and merges the workers' answers.
 *
 * These endpoints are what monitors ask whether Veil is alive, so clients that hold connections
 * open without finishing a request must not be able to keep a monitor out (see `admit`).
 */
import { Buffer } from 'node:buffer';
import http from 'node:http';
import net from 'node:net';
import { AddressError, parseHostPort } from '../core/net/address.js';
import { serverService } from '../core/services.js';

export interface HttpAnswer {
  status: number;
  /** The Content-Type header. */
  type: string;
  body: string;
  /** More response headers (a page's Content-Security-Policy). */
  headers?: Record<string, string>;
}

/** Produces the answer for one path; called per request. */
export type HttpRoute = () => HttpAnswer | Promise<HttpAnswer>;

export interface HttpAddress {
  host: string;
  port: number;
}

/** Where plugins open operator endpoints: one per server (see the top of this file). */
export interface HttpEndpoints {
  /**
   * Registers `routes` on the endpoint at `address`, binding it when nobody holds it yet. A path
   * registered again (a reload's new plugin) answers from the newest holder until it releases.
   * Rejects with the bind error (address in use, not local) when the socket cannot be bound.
   */
  open(address: HttpAddress, routes: Record<string, HttpRoute>): Promise<HttpLease>;
}

/** What a holder of paths on an endpoint gets back: where it is bound, and how to let go. */
export interface HttpLease {
  /** The bound address, `127.0.0.1:9153` (tells the port when the configuration said 0). */
  readonly bound: string;
  /** True when nobody held these paths on this address before (so the holder may announce them). */
  readonly first: boolean;
  release(): Promise<void>;
}

/**
 * Bounds of every endpoint: small requests, short lives, few connections. Headers must arrive
 * within 2 s (Node checks every 500 ms; its default check runs every 30 s, which let 64 clients
 * that never finish their headers keep everyone out for half a minute), an answer must be
 * taken within 10 s, and one client holds at most 8 connections.
 */
const LIMITS = {
  maxHeaderSize: 8 * 1024,
  headersTimeoutMs: 2_000,
  requestTimeoutMs: 5_000,
  checkIntervalMs: 500,
  keepAliveTimeoutMs: 5_000,
  /** A connection that neither sends nor reads for this long is closed. */
  idleTimeoutMs: 10_000,
  /** From a request's headers to the last byte of its answer handed to the kernel. */
  answerTimeoutMs: 10_000,
  maxConnections: 64,
  maxConnectionsPerClient: 8,
  maxRequestsPerSocket: 100,
};

/** `IP[:PORT]` or `[IPv6]:PORT`; throws AddressError for anything else (never a host name). */
export function parseHttpAddress(text: string, defaultPort: number): HttpAddress {
  if (text.startsWith(':')) throw new AddressError(`"${text}" has no IP address: write 127.0.0.1${text} (loopback) or 0.0.0.0${text} (every interface)`);
  return parseHostPort(text, defaultPort);
}

export function formatHttpAddress(address: HttpAddress): string {
  return net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

interface Holder {
  route: HttpRoute;
}

interface Connection {
  client: string;
  /** Requests being answered on it; 0 while it waits for a request's headers. */
  busy: number;
}

class SharedEndpoint {
  /** Per path, the holders in the order they came; the newest one answers. */
  readonly routes = new Map<string, Holder[]>();
  readonly server: http.Server;
  bound = '';
  /** Open connections, oldest first (a Map keeps insertion order). */
  private readonly connections = new Map<net.Socket, Connection>();
  private readonly perClient = new Map<string, number>();

  constructor() {
    this.server = http.createServer(
      {
        maxHeaderSize: LIMITS.maxHeaderSize,
        requestTimeout: LIMITS.requestTimeoutMs,
        headersTimeout: LIMITS.headersTimeoutMs,
        connectionsCheckingInterval: LIMITS.checkIntervalMs,
        keepAliveTimeout: LIMITS.keepAliveTimeoutMs,
      },
      (req, res) => void this.answer(req, res),
    );
    this.server.timeout = LIMITS.idleTimeoutMs;
    this.server.maxRequestsPerSocket = LIMITS.maxRequestsPerSocket;
    this.server.on('connection', (socket: net.Socket) => this.admit(socket));
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.track(req, res));
    // A client that breaks the protocol gets its connection closed, nothing more.
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  /**
   * Bounds connections per client and in all, without letting clients that never finish their
   * headers (slowloris) lock the endpoint: at a bound, the oldest connection that is waiting for
   * a request (of that client, or of anyone) makes room for the new one; only when every
   * connection is busy answering is the new one closed. A monitor's /health therefore gets in
   * however many idle connections are held open.
   */
  private admit(socket: net.Socket): void {
    const client = socket.remoteAddress ?? '';
    if ((this.perClient.get(client) ?? 0) >= LIMITS.maxConnectionsPerClient && !this.evictIdle(client)) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= LIMITS.maxConnections && !this.evictIdle(null)) {
      socket.destroy();
      return;
    }
    this.connections.set(socket, { client, busy: 0 });
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    socket.once('close', () => this.forget(socket));
  }

  /** Closes the oldest connection waiting for a request (of `client`, or any); false if none. */
  private evictIdle(client: string | null): boolean {
    for (const [socket, connection] of this.connections) {
      if (connection.busy > 0 || (client !== null && connection.client !== client)) continue;
      // Forgotten now, not on 'close' (which comes a turn later): the room is the new one's.
      this.forget(socket);
      socket.destroy();
      return true;
    }
    return false;
  }

  /** Drops a connection from the counts, once. */
  private forget(socket: net.Socket): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    this.connections.delete(socket);
    const left = (this.perClient.get(connection.client) ?? 1) - 1;
    if (left > 0) this.perClient.set(connection.client, left);
    else this.perClient.delete(connection.client);
  }

  /** Marks the connection busy while a request is answered; an answer not taken in time ends it. */
  private track(req: http.IncomingMessage, res: http.ServerResponse): void {
    const connection = this.connections.get(req.socket);
    if (connection) connection.busy++;
    const timer = setTimeout(() => req.socket.destroy(), LIMITS.answerTimeoutMs);
    res.once('close', () => {
      clearTimeout(timer);
      if (connection) connection.busy--;
    });
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // We never read request bodies: a client sending one gets its answer and a closed socket.
    req.resume();
    const path = (req.url ?? '/').split('?', 1)[0]!;
    let answer: HttpAnswer;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      answer = { status: 405, type: 'text/plain; charset=utf-8', body: 'only GET and HEAD\n' };
      res.setHeader('Allow', 'GET, HEAD');
    } else {
      const holders = this.routes.get(path);
      const route = holders?.[holders.length - 1]?.route;
      if (!route) {
        answer = { status: 404, type: 'text/plain; charset=utf-8', body: `no such path; try ${[...this.routes.keys()].join(' ')}\n` };
      } else {
        try {
          answer = await route();
        } catch (error) {
          answer = { status: 500, type: 'text/plain; charset=utf-8', body: `${error instanceof Error ? error.message : String(error)}\n` };
        }
      }
    }
    const body = Buffer.from(answer.body);
    res.writeHead(answer.status, { ...answer.headers, 'Content-Type': answer.type, 'Content-Length': body.length, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** Endpoints this process binds itself, by address. */
export class HttpEndpointRegistry implements HttpEndpoints {
  private readonly endpoints = new Map<string, Promise<SharedEndpoint>>();

  async open(address: HttpAddress, routes: Record<string, HttpRoute>): Promise<HttpLease> {
    const key = formatHttpAddress(address);
    const endpoints = this.endpoints;
    let endpoint: SharedEndpoint;
    for (;;) {
      let pending = endpoints.get(key);
      if (!pending) {
        pending = bind(address);
        endpoints.set(key, pending);
        pending.catch(() => endpoints.delete(key));
      }
      endpoint = await pending;
      // The last holder may have released it while we waited: then bind anew.
      if (endpoints.get(key) === pending) break;
    }
    const mine: Array<[string, Holder]> = Object.entries(routes).map(([path, route]) => [path, { route }]);
    const first = mine.every(([path]) => !endpoint.routes.has(path));
    for (const [path, holder] of mine) {
      const holders = endpoint.routes.get(path) ?? [];
      holders.push(holder);
      endpoint.routes.set(path, holders);
    }
    let released = false;
    return {
      bound: endpoint.bound,
      first,
      async release() {
        if (released) return;
        released = true;
        for (const [path, holder] of mine) {
          const holders = endpoint.routes.get(path)!.filter((h) => h !== holder);
          if (holders.length > 0) endpoint.routes.set(path, holders);
          else endpoint.routes.delete(path);
        }
        if (endpoint.routes.size > 0) return;
        endpoints.delete(key);
        await new Promise<void>((resolve) => {
          endpoint.server.close(() => resolve());
          endpoint.server.closeAllConnections();
        });
      },
    };
  }
}

/** The server's operator endpoints; by default bound by this process (a worker's server provides its own). */
export const HttpEndpointsService = serverService<HttpEndpoints>('veil.HttpEndpoints', () => new HttpEndpointRegistry());

function bind(address: HttpAddress): Promise<SharedEndpoint> {
  const endpoint = new SharedEndpoint();
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EADDRNOTAVAIL' ? 'no interface has this address' : err.message;
      reject(new Error(`cannot listen on ${formatHttpAddress(address)}: ${why}`, { cause: err }));
    };
    endpoint.server.once('error', onError);
    endpoint.server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      endpoint.server.off('error', onError);
      // Errors of single connections arrive as clientError; a late server error is no reason to crash.
      endpoint.server.on('error', () => {});
      const bound = endpoint.server.address() as net.AddressInfo;
      endpoint.bound = formatHttpAddress({ host: bound.address, port: bound.port });
      resolve(endpoint);
    });
  });
}
