/**
 * The HTTP/2 side of a server's connections, whichever implementation serves them: Veil's own
 * (connection.ts, the default: about a fifth of the CPU per request) or the runtime's node:http2
 * (node-connection.ts), chosen by a listener's `http2 veil|node`. Both take the same bounds and
 * hand requests over in the same shape (message.ts); the listener that owns the sockets counts
 * connections and clients itself.
 */
import type net from 'node:net';
import { H2ServerConnection, type H2Options } from './connection.js';
import type { RequestHandler } from './message.js';
import { NodeH2Server } from './node-connection.js';

export const HTTP2_IMPLEMENTATIONS = ['veil', 'node'] as const;
export type Http2Implementation = (typeof HTTP2_IMPLEMENTATIONS)[number];

/** One connection being served over HTTP/2. */
export interface Http2Connection {
  /** Graceful: GOAWAY, the streams already open are answered, then the connection ends. */
  close(): void;
  /** At once. */
  destroy(): void;
}

export interface Http2Server {
  /**
   * Serves HTTP/2 on a connected socket: TLS that chose `h2`, or plain TCP whose client preface
   * was read and put back (`socket.unshift`).
   */
  open(socket: net.Socket, onRequest: RequestHandler): Http2Connection;
}

export function http2Server(implementation: Http2Implementation, options: H2Options): Http2Server {
  if (implementation === 'node') return new NodeH2Server(options);
  return { open: (socket, onRequest) => new H2ServerConnection(socket, options, onRequest) };
}
