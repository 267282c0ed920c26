/**
 * HTTP/2 by the runtime's node:http2 (nghttp2), behind the same interface as Veil's own
 * connection (connection.ts): for anyone who wants the runtime's implementation (a listener's
 * `http2 node`). It costs several times the CPU per request (a Duplex stream, header objects and
 * callbacks for each); its bounds are Veil's where node:http2 lets us keep them:
 *
 * - `maxStreams` streams at once (SETTINGS_MAX_CONCURRENT_STREAMS, which nghttp2 enforces), and,
 *   as in Veil's, a stream the client resets counts until its handler has answered: past
 *   `maxStreams` requests being answered, new streams are refused (rapid reset);
 * - `maxHeaderListSize` (SETTINGS_MAX_HEADER_LIST_SIZE: node:http2 announces it but takes larger
 *   lists, which are answered 431 here, as in Veil's);
 * - a request body of at most the service's limit, arriving within `requestTimeoutMs`
 *   (stream-body.ts), and an answer taken within `requestTimeoutMs` (the stream is reset past it);
 * - a connection with no stream open for `idleTimeoutMs` is closed, whatever else it sends;
 * - what nghttp2 bounds itself: outgoing data and tables (maxSessionMemory), refused streams,
 *   invalid frames, resets a second, header pairs, PINGs and SETTINGS outstanding.
 *
 * What differs is listed in plugins/doh/README.md: no deadline for a header block to end (the
 * idle timeout ends it), nghttp2's own counts of frames, and memory bounded by its accounting.
 */
import { performance } from 'node:perf_hooks';
import http2 from 'node:http2';
import type net from 'node:net';
import type { H2Options } from './connection.js';
import { headerText, textReply, type HttpReply, type HttpRequest, type RequestHandler } from './message.js';
import { readStreamBody } from './stream-body.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
const noop = (): void => {};
/** nghttp2's budget for a session's outgoing data and tables, in MB: about Veil's 1 MiB queued + 1 MiB waiting for window. */
const MAX_SESSION_MEMORY_MB = 2;

/** One node:http2 server that never listens: each connection is handed to it as it comes. */
export class NodeH2Server {
  private readonly server: http2.Http2Server;

  constructor(private readonly options: H2Options) {
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: options.maxStreams, maxHeaderListSize: options.maxHeaderListSize, enablePush: false },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
  }

  open(socket: net.Socket, onRequest: RequestHandler): Pick<NodeH2Connection, 'close' | 'destroy'> {
    let session: http2.ServerHttp2Session | null = null;
    const take = (opened: http2.ServerHttp2Session): void => {
      session = opened;
    };
    // The server makes the session in its 'connection' listener and announces it at once.
    this.server.once('session', take);
    this.server.emit('connection', socket);
    this.server.removeListener('session', take);
    if (!session) {
      // Only a socket that did not choose h2 is refused so; the listener never hands one over.
      socket.destroy();
      return { close: noop, destroy: noop };
    }
    return new NodeH2Connection(session, this.options, onRequest);
  }
}

export class NodeH2Connection {
  /** Streams open, for the idle clock. */
  private open = 0;
  /** Requests handed over and not answered yet, reset streams among them. */
  private handling = 0;
  private idleSince = performance.now();
  private idleTimer: NodeJS.Timeout | null;
  private closed = false;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    private readonly options: H2Options,
    private readonly onRequest: RequestHandler,
  ) {
    session.on('error', noop);
    session.on('stream', (stream, headers, _flags, rawHeaders: string[]) => this.onStream(stream, headers, rawHeaders));
    session.on('close', () => this.release());
    this.idleTimer = setTimeout(this.checkIdle, options.idleTimeoutMs);
  }

  /** Graceful close: GOAWAY, the streams already open are answered, then the connection ends. */
  close(): void {
    if (this.closed || this.session.closed) return;
    this.session.close();
  }

  destroy(): void {
    this.session.destroy();
    this.release();
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[]): void {
    stream.on('error', noop);
    // Requests still being answered count against max_streams even when their stream is gone.
    if (this.handling >= this.options.maxStreams) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.open++;
    stream.once('close', () => {
      this.open--;
      if (this.open === 0) this.idleSince = performance.now();
    });
    const method = headerText(headers[':method']) ?? '';
    const request: HttpRequest = {
      method,
      path: headerText(headers[':path']) ?? '',
      header: (name) => headerText(headers[name]),
      readBody: (limit) => readStreamBody(stream, limit, this.options.requestTimeoutMs),
    };
    // node:http2 announces SETTINGS_MAX_HEADER_LIST_SIZE but takes larger lists: refused here,
    // as Veil's own connection refuses them (RFC 9113 §10.5.1).
    if (headerListSize(rawHeaders) > this.options.maxHeaderListSize) {
      this.answer(stream, textReply(431, 'request header fields too large'), method === 'HEAD');
      return;
    }
    this.handling++;
    let answered = false;
    this.onRequest(request, (reply) => {
      if (answered) return;
      answered = true;
      this.handling--;
      this.answer(stream, reply, method === 'HEAD');
    });
  }

  private answer(stream: http2.ServerHttp2Stream, reply: HttpReply, head: boolean): void {
    if (stream.closed || stream.destroyed || this.closed) return;
    try {
      // A response to HEAD has the headers of the one to GET and no body (RFC 9110 §9.3.2).
      if (head || reply.body.length === 0) {
        stream.respond({ ':status': reply.status, ...reply.headers }, { endStream: true });
      } else {
        stream.respond({ ':status': reply.status, ...reply.headers });
        stream.end(reply.body);
      }
    } catch {
      stream.close(NGHTTP2_CANCEL); // the session went away under us
      return;
    }
    // The client takes its answer in time, and stops sending a body that was refused or not
    // read: a stream still open when the request time is up is reset.
    const timer = setTimeout(() => stream.close(stream.writableFinished ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL), this.options.requestTimeoutMs);
    stream.once('close', () => clearTimeout(timer));
  }

  /** Idle means no stream open: PINGs, SETTINGS and empty frames do not keep a connection. */
  private readonly checkIdle = (): void => {
    this.idleTimer = null;
    if (this.closed) return;
    const idleFor = performance.now() - this.idleSince;
    if (this.open === 0 && idleFor >= this.options.idleTimeoutMs - 1) {
      this.session.close();
      // A client that never closes its side is not waited for.
      setTimeout(() => this.session.destroy(), 1000).unref();
      return;
    }
    const wait = this.open === 0 ? this.options.idleTimeoutMs - idleFor : this.options.idleTimeoutMs;
    this.idleTimer = setTimeout(this.checkIdle, wait);
  };

  private release(): void {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

/** A header list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: name, value and 32 a field (RFC 9113 §6.5.2). */
function headerListSize(rawHeaders: string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) size += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return size;
}
