/**
 * One request (a DNS message, or ODoH's) and its answer over HTTP/2 (a stream on a shared session) or HTTP/1.1 (a
 * kept-alive connection of an agent). Both check the same things: a 2xx status, the
 * `application/dns-message` type, and a body no larger than a DNS message can be.
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import http2 from 'node:http2';
import https from 'node:https';
import type tls from 'node:tls';
import { MAX_MESSAGE_SIZE } from '../../core/dns/constants.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import type { Outcome } from '../../core/upstream/outcome.js';

/** RFC 8484's media type, here where the client and the DoH listener both find it. */
export const DNS_MESSAGE = 'application/dns-message';

export interface HttpsRequest {
  method: 'GET' | 'POST';
  /** Path and query string. */
  path: string;
  /** The POST body (null for GET). */
  body: Buffer | null;
  /** Type of the body, of `accept` and of the answer; DNS_MESSAGE when absent (ODoH has its own). */
  mediaType?: string;
  /** Take an answer of any type (ODoH configs have none of their own). */
  anyType?: boolean;
  /** The largest answer taken; MAX_MESSAGE_SIZE when absent. */
  maxBytes?: number;
  /** More request headers (a W3C `traceparent`, when the upstream is told to send one). */
  headers?: Record<string, string>;
  /** Told the response's headers (ODoH reads the configs' Cache-Control). */
  onHeaders?: (header: (name: string) => string | undefined) => void;
}

/** A response whose status is not 2xx: callers that act on the status (ODoH's 401) read it here. */
export class HttpStatusError extends UpstreamResponseError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/**
 * A failure of the connection rather than of the server's answer: the request never got a
 * response, so asking again on a fresh connection is safe (a DNS query is idempotent).
 */
export class ConnectionLost extends UpstreamUnavailableError {}

/** Why a response head is not a DNS answer, or undefined when it is one. */
export function checkResponseHead(status: number, contentType: string | undefined, expected: string | null = DNS_MESSAGE): string | undefined {
  if (status < 200 || status > 299) return `HTTP status ${status}`;
  // The usual answer's type is the expected one, letter for letter: no string made to compare.
  if (contentType === expected || expected === null) return undefined;
  const type = contentType?.split(';')[0]!.trim().toLowerCase();
  if (type !== expected) return `content-type "${contentType ?? ''}" is not ${expected}`;
  return undefined;
}

/** The error for a response head `checkResponseHead` found fault with. */
function headError(label: string, status: number, problem: string): UpstreamResponseError {
  return status < 200 || status > 299 ? new HttpStatusError(`${label}: ${problem}`, status) : new UpstreamResponseError(`${label}: ${problem}`);
}

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Streams in flight on one session, queued by nghttp2 past the server's own limit. */
const MAX_STREAMS_PER_SESSION = 256;

/** One HTTP/2 session to a DoH server, carrying many concurrent streams. */
export class H2Session {
  readonly session: http2.ClientHttp2Session;
  active = 0;
  /** False once the session must take no new streams (GOAWAY, error, close). */
  usable = true;

  constructor(
    socket: tls.TLSSocket,
    private readonly authority: string,
    private readonly label: string,
    idleTimeoutMs: number,
    private readonly onGone: (session: H2Session) => void,
    private readonly onRoom: () => void,
  ) {
    this.session = http2.connect(`https://${authority}`, {
      // The socket is already connected to an IP and verified: http2 opens nothing itself.
      createConnection: () => socket,
      settings: { enablePush: false },
      maxSessionMemory: 4,
      maxReservedRemoteStreams: 0,
      peerMaxConcurrentStreams: 100,
    });
    this.session.on('goaway', () => this.retire());
    this.session.on('error', () => this.retire());
    this.session.on('close', () => this.retire());
    this.session.setTimeout(idleTimeoutMs, () => {
      if (this.active === 0) this.session.close();
    });
  }

  get hasRoom(): boolean {
    return this.usable && this.active < MAX_STREAMS_PER_SESSION;
  }

  /** What the pool calls (its Session): `request`, its answer or failure to `outcome`. */
  send(request: HttpsRequest, timeoutMs: number, outcome: Outcome): void {
    this.request(request, timeoutMs).then(outcome.resolve, outcome.reject);
  }

  request(request: HttpsRequest, timeoutMs: number): Promise<Buffer> {
    const mediaType = request.mediaType ?? DNS_MESSAGE;
    const maxBytes = request.maxBytes ?? MAX_MESSAGE_SIZE;
    return new Promise((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.session.request(
          {
            ':method': request.method,
            ':path': request.path,
            ':authority': this.authority,
            ':scheme': 'https',
            accept: mediaType,
            ...(request.body ? { 'content-type': mediaType, 'content-length': request.body.length } : {}),
            ...request.headers,
          },
          { endStream: request.body === null },
        );
      } catch (err) {
        this.retire();
        reject(new ConnectionLost(`${this.label}: ${(err as Error).message}`, { cause: err }));
        return;
      }
      this.active++;
      let answered = false;
      let settled = false;
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (error: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.active--;
        if (error) {
          if (!stream.closed) stream.close(NGHTTP2_CANCEL);
          reject(error);
        } else {
          resolve(Buffer.concat(chunks, size));
        }
        if (!this.usable && this.active === 0) this.session.close();
        if (this.usable) this.onRoom();
      };
      const timer = setTimeout(() => finish(new UpstreamTimeoutError(`${this.label}: no answer within ${Math.round(timeoutMs)}ms`)), timeoutMs);
      stream.on('response', (headers) => {
        answered = true;
        const status = Number(headers[':status']);
        request.onHeaders?.((name) => headers[name] as string | undefined);
        const problem = checkResponseHead(status, headers['content-type'] as string | undefined, request.anyType ? null : mediaType);
        if (problem) finish(headError(this.label, status, problem));
      });
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) finish(new UpstreamResponseError(`${this.label}: answer larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      // 'close' follows every stream, answered or not: an error (its message, its stack) is made
      // only for a stream that ends unanswered.
      stream.on('end', () => finish(answered ? null : new UpstreamResponseError(`${this.label}: stream ended without a response`)));
      stream.on('error', (err) => settled || finish(lostOrBroken(this.label, answered, err.message)));
      stream.on('close', () => {
        if (settled) return;
        const refused = stream.rstCode === NGHTTP2_REFUSED_STREAM;
        finish(lostOrBroken(this.label, answered && !refused, `stream closed (code ${stream.rstCode})`));
      });
      if (request.body) stream.end(request.body);
    });
  }

  /** No new streams; the session closes once those in flight are done. */
  retire(): void {
    if (!this.usable) return;
    this.usable = false;
    this.onGone(this);
    if (this.active === 0 && !this.session.closed) this.session.close();
  }

  destroy(): void {
    this.usable = false;
    this.session.destroy();
  }
}

/** Before the response head, a failure is the connection's (retry elsewhere); after, the server's. */
function lostOrBroken(label: string, answered: boolean, message: string): Error {
  return answered ? new UpstreamResponseError(`${label}: ${message}`) : new ConnectionLost(`${label}: ${message}`);
}

/**
 * HTTP/1.1 for servers whose ALPN does not offer h2: an agent keeps connections alive; each
 * new one is opened by `connect` (an IP literal, verified TLS), never by the agent itself.
 */
export class Http1Client {
  private readonly agent: https.Agent;
  private inflight = 0;
  private readonly waiting: Array<{ resolve: (turn: boolean) => void; timer: NodeJS.Timeout }> = [];

  constructor(
    private readonly authority: string,
    private readonly label: string,
    connect: () => Promise<tls.TLSSocket>,
    private readonly maxSockets: number,
    idleTimeoutMs: number,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: idleTimeoutMs, scheduling: 'lifo' });
    // The agent asks for a connection; we open it our way and hand it over when verified.
    (this.agent as unknown as { createConnection: (options: unknown, done: (err: Error | null, socket?: tls.TLSSocket) => void) => undefined }).createConnection = (
      _options,
      done,
    ) => {
      connect().then(
        (socket) => done(null, socket),
        (err: Error) => done(err),
      );
      return undefined;
    };
  }

  /**
   * One request at a time per connection: at most `maxSockets` are sent at once (the agent
   * cannot count connections that are still being verified), the others wait here, bounded.
   */
  async request(request: HttpsRequest, timeoutMs: number): Promise<Buffer> {
    if (this.inflight >= this.maxSockets) {
      if (this.waiting.length >= this.maxSockets * 8) throw new UpstreamUnavailableError(`${this.label}: ${this.waiting.length} HTTP/1.1 requests already waiting`);
      const started = performance.now();
      const gotTurn = await new Promise<boolean>((resolve) => {
        const entry = { resolve, timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          resolve(false);
        }, timeoutMs) };
        this.waiting.push(entry);
      });
      if (!gotTurn) throw new UpstreamTimeoutError(`${this.label}: no connection free within ${Math.round(timeoutMs)}ms`);
      timeoutMs -= performance.now() - started;
    } else {
      this.inflight++;
    }
    return this.send(request, timeoutMs);
  }

  /** Hands the caller's slot to the next waiter, or frees it. */
  private release(): void {
    const next = this.waiting.shift();
    if (!next) {
      this.inflight--;
      return;
    }
    clearTimeout(next.timer);
    next.resolve(true);
  }

  private send(request: HttpsRequest, timeoutMs: number): Promise<Buffer> {
    const mediaType = request.mediaType ?? DNS_MESSAGE;
    const maxBytes = request.maxBytes ?? MAX_MESSAGE_SIZE;
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | null, body?: Buffer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.release();
        if (error) {
          req.destroy();
          reject(error);
        } else resolve(body!);
      };
      const req = https.request({
        agent: this.agent,
        method: request.method,
        path: request.path,
        setHost: false,
        headers: {
          host: this.authority,
          accept: mediaType,
          ...(request.body ? { 'content-type': mediaType, 'content-length': request.body.length } : {}),
          ...request.headers,
        },
      });
      const timer = setTimeout(() => finish(new UpstreamTimeoutError(`${this.label}: no answer within ${Math.round(timeoutMs)}ms`)), timeoutMs);
      req.on('error', (err) => finish(req.reusedSocket ? new ConnectionLost(`${this.label}: ${err.message}`) : new UpstreamUnavailableError(`${this.label}: ${err.message}`, { cause: err })));
      req.on('response', (res) => {
        request.onHeaders?.((name) => res.headers[name] as string | undefined);
        const problem = checkResponseHead(res.statusCode ?? 0, res.headers['content-type'], request.anyType ? null : mediaType);
        if (problem) {
          res.resume();
          finish(headError(this.label, res.statusCode ?? 0, problem));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) finish(new UpstreamResponseError(`${this.label}: answer larger than ${maxBytes} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => finish(null, Buffer.concat(chunks, size)));
        res.on('error', (err) => finish(new UpstreamResponseError(`${this.label}: ${err.message}`)));
        res.on('aborted', () => finish(new UpstreamResponseError(`${this.label}: response cut off`)));
      });
      req.end(request.body ?? undefined);
    });
  }

  close(): void {
    for (const entry of this.waiting.splice(0)) {
      clearTimeout(entry.timer);
      entry.resolve(false);
    }
    this.agent.destroy();
  }
}
