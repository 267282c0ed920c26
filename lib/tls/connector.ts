/**
 * Opening one verified TLS connection to a DoT or DoH server: TCP to an IP literal (never a name
 * lookup), then TLS 1.2+ with the chain checked against the trust anchors and the certificate
 * checked against the server's name, the SPKI pins and the stamp's hashes. Anything short of
 * that is an error: there is no fallback to anything weaker, and no DNS leaves before it passes.
 *
 * TLS sessions are resumed (the ticket of the last verified connection is offered on the next),
 * so replacing a pooled connection costs one round trip and no certificate exchange.
 */
import { performance } from 'node:perf_hooks';
import { isIP, type OnReadOpts } from 'node:net';
import tls from 'node:tls';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { directReadOptions } from '../../core/net/direct-reads.js';
import { certificateProblem } from './certificates.js';
import type { TlsContexts } from './contexts.js';

export interface TlsTarget {
  /** For messages: `dot cloudflare (1.1.1.1:853)`. */
  label: string;
  /** IP literal. */
  host: string;
  port: number;
  /**
   * The name (or IP) the certificate must carry, sent as SNI when it is a name. Null when SPKI
   * pins alone authenticate the server (RFC 7858 out-of-band key-pinned profile).
   */
  serverName: string | null;
  /** Trust anchors added to the system's, PEM. */
  extraCa: readonly string[];
  pins: readonly Buffer[];
  certHashes: readonly Buffer[];
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** The local address to leave from (an ODoH relay leaves from its own, so targets see only it). */
  localAddress?: string;
}

/** Certificate errors from OpenSSL and Node: the server is not who it should be. */
const CERTIFICATE_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME|ALTNAME/;

/** For callers with nothing to cancel. */
const NEVER = new AbortController().signal;

/** Never called for IP literals; there so that no code path can resolve a name. */
const refuseLookup = (hostname: string, _options: unknown, callback: (err: Error) => void): void => {
  callback(new Error(`refusing to resolve "${hostname}": upstreams are IP addresses`));
};

export class TlsConnector {
  /** The session of the last connection that passed every check. */
  private session: Buffer | undefined;

  constructor(
    private readonly target: TlsTarget,
    /** The server's contexts (TlsContextsService): the anchors the chain is checked against. */
    private readonly contexts: TlsContexts,
  ) {
    if (isIP(target.host) === 0) throw new Error(`${target.label}: "${target.host}" is not an IP address`);
  }

  /**
   * Opens and verifies one connection within `timeoutMs`; rejects with a VeilError. `alpn` is
   * offered in order (DoH); the caller reads `socket.alpnProtocol`. With `direct`, the socket's
   * reads go only to `onChunks` (core/net/direct-reads.ts), never to 'data' listeners.
   */
  connect(timeoutMs: number, signal: AbortSignal = NEVER, { alpn, direct = false }: { alpn?: readonly string[]; direct?: boolean } = {}): Promise<tls.TLSSocket> {
    const { label, host, port, serverName } = this.target;
    if (signal.aborted) return Promise.reject(new UpstreamUnavailableError(`${label}: stopped`));
    const started = performance.now();
    return new Promise((resolve, reject) => {
      let phase: 'connect' | 'TLS handshake' = 'connect';
      let settled = false;
      let verified = false;
      let candidate: Buffer | undefined;
      const reads = direct ? directReadOptions() : null;
      const options: tls.ConnectionOptions & { onread?: OnReadOpts } = {
        host,
        port,
        lookup: refuseLookup as never,
        ...(this.target.localAddress ? { localAddress: this.target.localAddress } : {}),
        ...(reads ? { onread: reads.onread } : {}),
        ...(serverName && isIP(serverName) === 0 ? { servername: serverName } : {}),
        secureContext: this.contexts.secureContextFor(this.target.extraCa),
        minVersion: 'TLSv1.2',
        ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
        ...(this.session ? { session: this.session } : {}),
        // With a name, Node checks the chain and the name; with pins alone, the pins decide.
        rejectUnauthorized: serverName !== null,
        checkServerIdentity: (_host, cert) => (serverName ? tls.checkServerIdentity(serverName, cert) : undefined),
      };
      const socket = tls.connect(options);
      reads?.adopt(socket);
      // Nagle off (tls.connect takes no noDelay; the TLS socket passes this to its TCP handle),
      // or a query written while an earlier one is unacknowledged waits for the server's ACK.
      socket.setNoDelay(true);
      const settle = (error: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        socket.removeListener('error', onError);
        if (error) {
          socket.on('error', () => {}); // late errors of a socket we already gave up
          socket.destroy();
          reject(error);
        } else {
          resolve(socket);
        }
      };
      const onTimeout = (): void => {
        settle(new UpstreamTimeoutError(`${label}: ${phase} timed out after ${Math.round(performance.now() - started)}ms`));
      };
      const onError = (err: NodeJS.ErrnoException): void => {
        const certificate = typeof err.code === 'string' && CERTIFICATE_ERRORS.test(err.code);
        settle(new UpstreamUnavailableError(`${label}: ${certificate ? 'certificate rejected' : phase}: ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => settle(new UpstreamUnavailableError(`${label}: stopped`));
      let timer = setTimeout(onTimeout, Math.min(timeoutMs, this.target.connectTimeoutMs));
      socket.once('connect', () => {
        phase = 'TLS handshake';
        clearTimeout(timer);
        const left = timeoutMs - (performance.now() - started);
        timer = setTimeout(onTimeout, Math.max(0, Math.min(left, this.target.handshakeTimeoutMs)));
      });
      socket.once('secureConnect', () => {
        // A resumed session was issued on a connection that passed these checks.
        const problem = socket.isSessionReused() ? null : certificateProblem(socket.getPeerCertificate(true), this.target);
        if (problem) {
          settle(new UpstreamUnavailableError(`${label}: certificate rejected: ${problem}`));
          return;
        }
        verified = true;
        if (candidate) this.session = candidate;
        settle(null);
      });
      // TLS 1.2 hands over the session before the checks above, TLS 1.3 after: keep only
      // sessions of verified connections.
      socket.on('session', (session: Buffer) => {
        if (verified) this.session = session;
        else candidate = session;
      });
      socket.on('error', onError);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
