/**
 * Small HTTP endpoints for operators (`/metrics`, `/health`, `/ready`), shared by address:
 * several server blocks saying `metrics 127.0.0.1:9153` get one socket, and a reload's new
 * configuration takes over the paths of the old one without rebinding. Each address is one
 * `http.Server` with bounded headers, time and connections; it answers GET and HEAD on the
 * paths registered on it and nothing else, and closes when its last path is released. Under
 * `--workers N` the supervisor binds it instead and merges the workers' answers.
 */
import http from 'node:http';
import net from 'node:net';
import { AddressError, parseHostPort } from '../core/net/address.js';
import { inWorker, openWorkerEndpoint } from './worker-endpoints.js';

export interface HttpAnswer {
  status: number;
  /** The Content-Type header. */
  type: string;
  body: string;
}

/** Produces the answer for one path; called per request. */
export type HttpRoute = () => HttpAnswer | Promise<HttpAnswer>;

export interface HttpAddress {
  host: string;
  port: number;
}

/** What a holder of paths on an endpoint gets back: where it is bound, and how to let go. */
export interface HttpLease {
  /** The bound address, `127.0.0.1:9153` (tells the port when the configuration said 0). */
  readonly bound: string;
  /** True when nobody held these paths on this address before (so the holder may announce them). */
  readonly first: boolean;
  release(): Promise<void>;
}

/** Bounds of every endpoint: small requests, short lives, few connections. */
const LIMITS = {
  maxHeaderSize: 8 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 64,
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

class SharedEndpoint {
  /** Per path, the holders in the order they came; the newest one answers. */
  readonly routes = new Map<string, Holder[]>();
  readonly server: http.Server;
  bound = '';

  constructor() {
    this.server = http.createServer(
      { maxHeaderSize: LIMITS.maxHeaderSize, requestTimeout: LIMITS.requestTimeoutMs, headersTimeout: LIMITS.headersTimeoutMs, keepAliveTimeout: LIMITS.keepAliveTimeoutMs },
      (req, res) => void this.answer(req, res),
    );
    this.server.maxConnections = LIMITS.maxConnections;
    this.server.maxRequestsPerSocket = LIMITS.maxRequestsPerSocket;
    // A client that breaks the protocol gets its connection closed, nothing more.
    this.server.on('clientError', (_err, socket) => socket.destroy());
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
    res.writeHead(answer.status, { 'Content-Type': answer.type, 'Content-Length': body.length, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

const endpoints = new Map<string, Promise<SharedEndpoint>>();

/**
 * Registers `routes` on the endpoint at `address`, binding it when nobody holds it yet. A path
 * registered again (a reload's new plugin) answers from the newest holder until it releases.
 * Rejects with the bind error (address in use, not local) when the socket cannot be bound.
 */
export async function openHttpEndpoint(address: HttpAddress, routes: Record<string, HttpRoute>): Promise<HttpLease> {
  // Under --workers the supervisor binds the address and asks every worker (worker-endpoints.ts).
  if (inWorker()) return openWorkerEndpoint(address, routes);
  const key = formatHttpAddress(address);
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
