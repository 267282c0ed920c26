/**
 * One HTTP/2 session to an HTTPS server over Veil's own client connection
 * (lib/http2/client-connection.ts), with the same checks and errors as the node:http2 one
 * (H2Session in exchange.ts): a 2xx status, the expected media type, a bounded body; a request
 * lost with its connection fails with ConnectionLost so that it is sent once more elsewhere.
 */
import type tls from 'node:tls';
import { MAX_MESSAGE_SIZE } from '../../core/dns/constants.js';
import { UpstreamResponseError, UpstreamTimeoutError } from '../../core/errors.js';
import { Failure, H2ClientConnection, type ClientStreamHandler } from '../http2/client-connection.js';
import type { HeaderList } from '../http2/hpack.js';
import { checkResponseHead, ConnectionLost, DNS_MESSAGE, HttpStatusError, type HttpsRequest } from './exchange.js';
import type { Outcome } from '../../core/upstream/outcome.js';

/** Streams in flight on one session at most, whatever the server allows (as with node:http2). */
const MAX_STREAMS_PER_SESSION = 256;

export class VeilH2Session {
  private readonly connection: H2ClientConnection;

  constructor(
    socket: tls.TLSSocket,
    authority: string,
    private readonly label: string,
    idleTimeoutMs: number,
    onGone: (session: VeilH2Session) => void,
    onRoom: () => void,
  ) {
    this.connection = new H2ClientConnection(socket, {
      authority,
      idleTimeoutMs,
      maxStreams: MAX_STREAMS_PER_SESSION,
      onGone: () => onGone(this),
      onRoom,
    });
  }

  get active(): number {
    return this.connection.active;
  }

  get usable(): boolean {
    return this.connection.usable;
  }

  get hasRoom(): boolean {
    return this.connection.hasRoom;
  }

  /** Sends the request; the answer, or the failure as the pool's errors tell it, goes to `outcome`. */
  send(request: HttpsRequest, timeoutMs: number, outcome: Outcome): void {
    const mediaType = request.mediaType ?? DNS_MESSAGE;
    const expected = request.anyType ? null : mediaType;
    const label = this.label;
    let status = 0;
    const handler: ClientStreamHandler = {
      head(code: number, headers: HeaderList): string | null {
        status = code;
        request.onHeaders?.((name) => headerOf(headers, name));
        return checkResponseHead(code, headerOf(headers, 'content-type'), expected) ?? null;
      },
      done(failure: Failure | null, message: string, body: Buffer | null): void {
        if (failure === null) return outcome.resolve(body!);
        outcome.reject(errorFor(failure, label, message, status, timeoutMs));
      },
    };
    this.connection.request(request.method, request.path, mediaType, request.body, request.headers, request.maxBytes ?? MAX_MESSAGE_SIZE, timeoutMs, handler);
  }

  /** No new streams; the session closes once those in flight are done. */
  retire(): void {
    this.connection.retire();
  }

  destroy(): void {
    this.connection.destroy();
  }
}

/** A header's value (repeated ones joined with commas), as node:http2 gives them. */
function headerOf(headers: HeaderList, name: string): string | undefined {
  let found: string | undefined;
  for (const [field, value] of headers) {
    if (field === name) found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}

function errorFor(failure: Failure, label: string, message: string, status: number, timeoutMs: number): Error {
  switch (failure) {
    case Failure.Lost:
      return new ConnectionLost(`${label}: ${message}`);
    case Failure.Timeout:
      return new UpstreamTimeoutError(`${label}: no answer within ${Math.round(timeoutMs)}ms`);
    case Failure.TooLarge:
      return new UpstreamResponseError(`${label}: ${message}`);
    default:
      // A status outside 2xx is told as such (ODoH acts on a 401).
      if (status !== 0 && (status < 200 || status > 299)) return new HttpStatusError(`${label}: ${message}`, status);
      return new UpstreamResponseError(`${label}: ${message}`);
  }
}
