/**
 * `listen tls://IP:PORT { cert FILE  key FILE }`: DNS over TLS for clients (RFC 7858). The TLS
 * handshake happens here; after it, a connection is served exactly like a TCP one (RFC 7766
 * pipelining, answers in the order they are ready, the same bounds), by core's StreamSessions.
 * Handshakes have their own bounds: how many at once and how long each may take.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, parseDuration } from '../../core/config/options.js';
import { hasPadding, padMessage, RESPONSE_PADDING_BLOCK } from '../../core/dns/edns.js';
import type { Location } from '../../core/errors.js';
import type { Listener, ListenerEnvironment, QueryHandler, TransportDefinition } from '../../core/listeners/listener.js';
import { parseStreamLimits, STREAM_OPTION_NAMES } from '../../core/listeners/options.js';
import { StreamSessions, type StreamLimits } from '../../core/listeners/stream-sessions.js';
import { bindStreamServer, closeStreamServer } from '../../core/listeners/tcp.js';
import type { Endpoint } from '../../core/net/address.js';
import { readPemFile } from '../../lib/tls/files.js';

const PLUGIN = 'listen';

export interface TlsListenerOptions extends StreamLimits {
  /** PEM contents, read when the Corefile was parsed. */
  cert: string;
  key: string;
  /** Longest a client may take to complete the TLS handshake (default 5 s). */
  handshakeTimeoutMs: number;
}

const TLS_OPTION_NAMES = ['cert', 'key', 'handshake_timeout'] as const;

function parseTlsOptions(endpoint: Endpoint, options: Directive[], at: Location): TlsListenerOptions {
  const files: Partial<Record<'cert' | 'key', Token>> = {};
  let handshakeTimeoutMs = 5000;
  for (const d of options) {
    const [value] = expectArgs(PLUGIN, d, 1);
    if (d.name.text === 'cert' || d.name.text === 'key') files[d.name.text] = value!;
    if (d.name.text === 'handshake_timeout') handshakeTimeoutMs = parseDuration(PLUGIN, value!, { min: 100, max: 120_000 });
  }
  if (!files.cert || !files.key) {
    throw configError(PLUGIN, at, `${endpoint.text} needs "cert FILE" and "key FILE" in the listen block (the server's certificate chain and its private key, PEM)`);
  }
  const cert = readPemFile(PLUGIN, files.cert, 'cert');
  const key = readPemFile(PLUGIN, files.key, 'key');
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw configError(PLUGIN, files.key, `the certificate and key cannot be used together: ${(err as Error).message}`);
  }
  const limits = parseStreamLimits(options.filter((o) => (STREAM_OPTION_NAMES as readonly string[]).includes(o.name.text)));
  return { ...limits, cert, key, handshakeTimeoutMs };
}

export class TlsListener implements Listener {
  private server: net.Server | null = null;
  private handler: QueryHandler | null = null;
  private readonly sessions: StreamSessions;
  private context: tls.SecureContext;
  /** Connections still in their handshake. */
  private readonly handshaking = new Set<tls.TLSSocket>();
  boundAddress = '';

  constructor(
    readonly endpoint: Endpoint,
    private options: TlsListenerOptions,
    private readonly env: ListenerEnvironment,
  ) {
    this.context = secureContext(options);
    this.sessions = new StreamSessions(options, 'tls', () => this.serve, env.logger);
  }

  /**
   * Answers to padded queries are padded too (RFC 7830 §4, 468-byte blocks per RFC 8467), so
   * their size tells an observer as little as the query's did.
   */
  private readonly serve: QueryHandler = async (query, info) => {
    const answer = await this.handler!(query, info);
    return answer && hasPadding(query) ? padMessage(answer, RESPONSE_PADDING_BLOCK) : answer;
  };

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    server.on('error', () => {});
    this.boundAddress = await bindStreamServer(server, this.endpoint, 'tls', this.env.reusePort);
    this.server = server;
  }

  private accept(raw: net.Socket): void {
    // Handshakes cost CPU before a client has shown anything: as many at once as connections,
    // and none for a client that no block of this listener admits.
    if (this.handshaking.size >= this.options.maxConnections || !this.admits(raw)) {
      raw.destroy();
      return;
    }
    const socket = new tls.TLSSocket(raw, { isServer: true, secureContext: this.context });
    this.handshaking.add(socket);
    const done = (): void => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
    };
    const timer = setTimeout(() => {
      done();
      socket.destroy();
    }, this.options.handshakeTimeoutMs);
    raw.on('error', () => socket.destroy());
    socket.on('error', () => {
      done();
      socket.destroy();
    });
    socket.once('close', done);
    socket.once('secure', () => {
      done();
      this.sessions.accept(socket);
    });
  }

  private admits(raw: net.Socket): boolean {
    const client = { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0, family: raw.remoteFamily === 'IPv6' ? ('IPv6' as const) : ('IPv4' as const) };
    return this.handler?.admitsConnection?.({ client, transport: 'tls', datagram: false }) ?? true;
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    const next = options as TlsListenerOptions;
    if (next.cert !== this.options.cert || next.key !== this.options.key) this.context = secureContext(next);
    this.options = next;
    this.sessions.update(next);
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.server) return;
    const server = this.server;
    this.server = null;
    for (const socket of this.handshaking) socket.destroy();
    await closeStreamServer(server, this.sessions, graceMs);
  }
}

function secureContext(options: TlsListenerOptions): tls.SecureContext {
  return tls.createSecureContext({ cert: options.cert, key: options.key, minVersion: 'TLSv1.2' });
}

export const tlsTransport: TransportDefinition<TlsListenerOptions> = {
  scheme: 'tls',
  defaultPort: 853,
  optionNames: [...STREAM_OPTION_NAMES, ...TLS_OPTION_NAMES],
  parseOptions: parseTlsOptions,
  create: (endpoint, options, env) => new TlsListener(endpoint, options, env),
};
