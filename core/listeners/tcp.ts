/** `tcp://IP:PORT`: plain DNS over TCP (RFC 7766). */
import net from 'node:net';
import { ListenError } from '../errors.js';
import type { Endpoint } from '../net/address.js';
import type { Listener, ListenerEnvironment, QueryHandler, TransportDefinition } from './listener.js';
import { parseStreamLimits, STREAM_OPTION_NAMES } from './options.js';
import { StreamSessions, type StreamLimits } from './stream-sessions.js';

/** Binds a stream server (TCP or TLS) and reports the bound address. */
export async function bindStreamServer(server: net.Server, endpoint: Endpoint, scheme: string, reusePort = false): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ListenError(`cannot listen on ${endpoint.text}: ${err.message}`, { cause: err })));
    server.listen({ port: endpoint.port, host: endpoint.host, backlog: 1024, reusePort }, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return `${scheme}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

export async function closeStreamServer(server: net.Server, sessions: StreamSessions, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  await sessions.drain(graceMs);
  await closed;
}

export class TcpListener implements Listener {
  private server: net.Server | null = null;
  private handler: QueryHandler | null = null;
  private readonly sessions: StreamSessions;
  boundAddress = '';

  constructor(
    readonly endpoint: Endpoint,
    limits: StreamLimits,
    private readonly env: ListenerEnvironment,
  ) {
    this.sessions = new StreamSessions(limits, 'tcp', () => this.handler!, env.logger);
  }

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    // allowHalfOpen: a client may send its queries and shut its side; we still answer.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.sessions.accept(socket));
    server.on('error', () => {});
    this.boundAddress = await bindStreamServer(server, this.endpoint, 'tcp', this.env.reusePort);
    this.server = server;
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    this.sessions.update(options as StreamLimits);
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.server) return;
    const server = this.server;
    this.server = null;
    await closeStreamServer(server, this.sessions, graceMs);
  }
}

export const tcpTransport: TransportDefinition<StreamLimits> = {
  scheme: 'tcp',
  defaultPort: 53,
  optionNames: STREAM_OPTION_NAMES,
  parseOptions: (_endpoint, options) => parseStreamLimits(options),
  create: (endpoint, options, env) => new TcpListener(endpoint, options, env),
};
