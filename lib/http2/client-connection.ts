/**
 * The client side of one HTTP/2 connection (RFC 9113), as much as Veil's HTTPS client needs (DoH
 * and ODoH upstreams, the ODoH relay): requests of one HEADERS frame and a small body, answers of
 * at most `maxBytes`. The socket is already connected and verified (lib/tls), with ALPN h2.
 *
 * Why Veil has its own: node:http2 makes a Duplex stream, header objects, several callbacks and
 * nghttp2 work for every request; forwarding a query over DoH through it cost ~60 µs of CPU, most
 * of it there and in the garbage it leaves. Here a request is one object, one header block
 * (its constant fields indexed in the server's HPACK table, request-fields.ts, and their bytes
 * kept) and a callback; everything written while one turn of the event loop lasts leaves in one
 * TLS write.
 *
 * The server may be hostile. Bounds:
 * - frames of at most 16,384 bytes (our SETTINGS_MAX_FRAME_SIZE, the default);
 * - a response header block of at most twice `maxHeaderListSize`, in a bounded number of
 *   CONTINUATION frames; a block left open while a stream times out ends the connection;
 * - the HPACK dynamic table at 4,096 bytes (hpack.ts refuses more);
 * - a body of at most `maxBytes` a stream (the stream fails past it), and at most
 *   MAX_BUFFERED bytes of bodies held on the connection (past it the connection ends);
 * - frames that cost work and carry nothing (PING, SETTINGS, empty DATA/CONTINUATION, unknown
 *   types, PRIORITY): a burst, then a rate; past it the connection ends with ENHANCE_YOUR_CALM;
 * - reading stops while more than 1 MiB waits to be written to a server that does not read;
 * - the connection window is 1 MiB, credited back in steps of 256 KiB as DATA is read;
 * - every stream has a deadline; a stream that times out on a connection that answered nothing
 *   since it began retires the connection (a dead or stalling server is not used again);
 * - no server push (SETTINGS_ENABLE_PUSH 0; a PUSH_PROMISE is a connection error).
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import type tls from 'node:tls';
import { onChunks } from '../../core/net/direct-reads.js';
import { DeadlineTimer } from '../../core/util/deadline-timer.js';
import { IdTable } from '../../core/util/id-table.js';
import { HpackDecoder, HpackError, type HeaderList } from './hpack.js';
import { Allowance, ConnectionError, FrameReader, goawayPayload, unpad, type OpenBlock } from './frames.js';
import { DEFAULT_WINDOW, Flag, Frame, FRAME_HEADER, H2Error, MAX_FRAME_SIZE, MAX_WINDOW, PREFACE, Setting } from './protocol.js';
import { literal, RequestFieldIndex } from './request-fields.js';

const MAX_STREAM_ID = 2 ** 31 - 1;
/** What each stream may receive (we never credit a stream: no answer we take is larger). */
const STREAM_WINDOW = 128 * 1024;
/** The connection window we open at once, credited back as DATA is read. */
const CONNECTION_WINDOW = 1 << 20;
/** Read bytes are credited back to the connection window once this many are owed. */
const CREDIT_STEP = CONNECTION_WINDOW / 4;
/** Streams before the server's SETTINGS say how many it takes (as node:http2 assumes). */
const STREAMS_BEFORE_SETTINGS = 100;
/** Body bytes held on one connection, all streams together. */
const MAX_BUFFERED = 4 << 20;
/** Bytes waiting to be written past which the server is not read until it reads. */
const WRITE_HIGH_WATER = 1 << 20;
/** CONTINUATION frames a header block may take past what its size needs. */
const SPARE_CONTINUATIONS = 8;
/** Frames that carry nothing useful: this many at once, then this many a second. */
const IDLE_FRAME_BURST = 200;
const IDLE_FRAMES_PER_SECOND = 20;

/** How a request failed, for the caller to map onto its errors. */
export const enum Failure {
  /** Never answered, the connection went (GOAWAY past it, reset, refused, closed): safe to send again elsewhere. */
  Lost,
  /** The server answered badly (after a response head, or a malformed one). */
  Broken,
  /** No answer within the stream's time. */
  Timeout,
  /** The answer is larger than `maxBytes`. */
  TooLarge,
}

export interface ClientStreamHandler {
  /**
   * The final response head. A non-null return is a problem: the stream is cancelled and `done`
   * is told it (as Broken) — so a wrong status or type costs no body.
   */
  head(status: number, headers: HeaderList): string | null;
  /** Called exactly once: the body, or why there is none. */
  done(failure: Failure | null, message: string, body: Buffer | null): void;
}

/** A kind of request's first fields, encoded; good while the HPACK table's generation is the same. */
interface KeptPrefix {
  method: string;
  path: string;
  mediaType: string;
  hasBody: boolean;
  bytes: Buffer;
  generation: number;
}

export interface H2ClientOptions {
  /** `:authority`: the host name (or IP) and the port unless 443. */
  authority: string;
  /** A connection with no stream open this long is closed. */
  idleTimeoutMs: number;
  /** The response header list allowed (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize?: number;
  /** Streams at most, whatever the server allows. */
  maxStreams?: number;
  /** Told once when the connection takes no new streams (GOAWAY, error, close, idle). */
  onGone: () => void;
  /** Told when a stream ends or the server's SETTINGS arrive: a request waiting for room may go now. */
  onRoom?: () => void;
}

class ClientStream {
  /** The final (non-1xx) response head arrived. */
  answered = false;
  chunks: Buffer[] = [];
  size = 0;
  /** Bytes of `chunks`, counted in the connection's `buffered`. */
  held = 0;
  /** Request body bytes not yet sent for lack of window. */
  pending: Buffer | null = null;
  sendWindow: number;
  receiveWindow = STREAM_WINDOW;

  constructor(
    readonly id: number,
    readonly handler: ClientStreamHandler,
    readonly maxBytes: number,
    readonly deadline: number,
    readonly startedAt: number,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }
}

export class H2ClientConnection {
  private readonly decoder = new HpackDecoder();
  /** Streams by ID; not a Map (see core/util/id-table.ts). */
  private readonly streams = new IdTable<ClientStream>();
  private nextStreamId = 1;
  /** Cuts what the server sends into frames. */
  private readonly reader = new FrameReader((type, flags, streamId, payload) => this.frame(type, flags, streamId, payload), () => this.closed);
  private block: OpenBlock | null = null;
  private peerMaxStreams = STREAMS_BEFORE_SETTINGS;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  private receiveWindow = CONNECTION_WINDOW;
  private receiveCredit = 0;
  private buffered = 0;
  /** Streams with body bytes waiting for window, in the order they began to wait. */
  private readonly waitingForWindow = new Set<ClientStream>();
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  /** No new streams: GOAWAY received or sent, retired, or closed. */
  private retired = false;
  private closed = false;
  private readonly idleFrames = new Allowance(IDLE_FRAME_BURST, IDLE_FRAMES_PER_SECOND);
  private readonly maxHeaderListSize: number;
  private readonly maxBlockSize: number;
  private readonly maxBlockFrames: number;
  private readonly maxStreams: number;
  /** When a response last completed: a timeout with none since its stream began means the connection is stuck. */
  private lastAnswerAt = 0;
  private idleSince = performance.now();
  /** The streams' deadlines and the idle clock, on one timer (`expire`). */
  private readonly deadlines = new DeadlineTimer((now) => this.expire(now));
  /** What the server's HPACK table holds of ours (request-fields.ts). */
  private readonly fields = new RequestFieldIndex();
  /** Header blocks encoded once: the fields every request of a kind shares, while the table is as it was. */
  private readonly prefixes = new Map<string, KeptPrefix>();
  private lastPrefix: KeptPrefix | null = null;

  constructor(
    private readonly socket: tls.TLSSocket,
    private readonly options: H2ClientOptions,
  ) {
    this.maxHeaderListSize = options.maxHeaderListSize ?? 16_384;
    this.maxBlockSize = Math.max(2 * this.maxHeaderListSize, MAX_FRAME_SIZE);
    this.maxBlockFrames = Math.ceil(this.maxBlockSize / MAX_FRAME_SIZE) + SPARE_CONTINUATIONS;
    this.maxStreams = options.maxStreams ?? 256;
    this.writeRaw(PREFACE);
    this.writeSettings();
    this.writeFrame(Frame.WINDOW_UPDATE, 0, 0, uint32(CONNECTION_WINDOW - DEFAULT_WINDOW));
    onChunks(socket, (chunk) => this.receive(chunk));
    socket.on('drain', () => {
      if (!this.closed) socket.resume();
    });
    // Errors end the connection like a close does: never thrown, never a crash.
    socket.on('error', () => this.onClose('connection error'));
    socket.on('end', () => this.onClose('connection closed by the server'));
    socket.on('close', () => this.onClose('connection closed'));
    const now = performance.now();
    this.deadlines.add(now + options.idleTimeoutMs, now);
    socket.resume();
    // A socket that closed before we listened never says so again.
    if (socket.destroyed) queueMicrotask(() => this.onClose('connection closed'));
  }

  /** Streams in flight. */
  get active(): number {
    return this.streams.size;
  }

  get usable(): boolean {
    return !this.retired;
  }

  /** Room for one more stream now. */
  get hasRoom(): boolean {
    return !this.retired && this.streams.size < Math.min(this.peerMaxStreams, this.maxStreams) && this.nextStreamId <= MAX_STREAM_ID;
  }

  /**
   * Sends one request; `handler.done` is called once, within `timeoutMs` (or up to 10 ms later,
   * when other deadlines fell due just before: core/util/deadline-timer.ts). `mediaType` is sent
   * as accept (and content-type with a body); `extra` are more regular header fields. The caller
   * checks `hasRoom` first; without room the request fails as Lost at once.
   */
  request(method: string, path: string, mediaType: string, body: Buffer | null, extra: Record<string, string> | undefined, maxBytes: number, timeoutMs: number, handler: ClientStreamHandler): void {
    if (!this.hasRoom) {
      handler.done(Failure.Lost, this.closed ? 'connection closed' : 'no room for a stream', null);
      return;
    }
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const now = performance.now();
    const stream = new ClientStream(id, handler, maxBytes, now + timeoutMs, now, this.peerInitialWindow);
    this.streams.set(id, stream);
    // The timer is set for the earliest deadline, not for every few milliseconds: one request at
    // a time (a home), it then wakes Veil once per timeout, not once a request.
    this.deadlines.add(stream.deadline, now);
    // Encoded once and then sent, whichever way: it may have added entries to the server's table.
    const prefix = this.prefixFor(method, path, mediaType, body !== null);
    if (body && !extra && this.writeSmallPost(stream, prefix, body)) return;
    this.writeHeaders(id, this.headerBlock(prefix, body, extra), body === null);
    if (body) {
      stream.pending = body;
      this.sendData(stream);
      if (stream.pending && stream.sendWindow > 0) this.waitingForWindow.add(stream);
    }
  }

  /** No new streams; the connection ends once those in flight are done. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.options.onGone();
    if (this.streams.size === 0) this.shutdown();
  }

  destroy(): void {
    this.onClose('connection destroyed');
    this.socket.destroy();
  }

  // --- Writing ---

  /**
   * The common case, a DoH POST whose body the windows take at once: HEADERS and DATA written
   * into one buffer (no frame headers, parts or blocks of their own). False when it does not fit.
   */
  private writeSmallPost(stream: ClientStream, prefix: Buffer, body: Buffer): boolean {
    const size = body.length;
    if (size === 0 || size > this.sendWindow || size > stream.sendWindow || size > this.peerMaxFrameSize) return false;
    const length = String(size);
    // content-length as a literal without indexing, name index 28: 0x0f 0x0d, then the digits (≤ 5).
    const blockLength = prefix.length + 3 + length.length;
    if (blockLength > this.peerMaxFrameSize) return false;
    const frames = Buffer.allocUnsafe(2 * FRAME_HEADER + blockLength + size);
    let at = writeFrameHeader(frames, 0, blockLength, Frame.HEADERS, Flag.END_HEADERS, stream.id);
    at += prefix.copy(frames, at);
    frames[at++] = 0x0f;
    frames[at++] = 28 - 15;
    frames[at++] = length.length;
    at += frames.write(length, at, 'latin1');
    at = writeFrameHeader(frames, at, size, Frame.DATA, Flag.END_STREAM, stream.id);
    body.copy(frames, at);
    this.sendWindow -= size;
    stream.sendWindow -= size;
    this.writeRaw(frames);
    return true;
  }

  /**
   * The fields every request of a kind shares, at the start of its header block. Once the
   * server's table holds them, a kind's block is the same bytes request after request, and
   * is kept (the last kind at hand without a lookup) until the table changes.
   */
  private prefixFor(method: string, path: string, mediaType: string, hasBody: boolean): Buffer {
    const fields = this.fields;
    const last = this.lastPrefix;
    if (last && last.generation === fields.generation && last.method === method && last.path === path && last.mediaType === mediaType && last.hasBody === hasBody) return last.bytes;
    // GET paths carry the query: each is new, and never kept or indexed.
    const constantPath = method !== 'GET';
    const key = `${method} ${mediaType} ${hasBody} ${path}`;
    const kept = constantPath ? this.prefixes.get(key) : undefined;
    if (kept && kept.generation === fields.generation) {
      this.lastPrefix = kept;
      return kept.bytes;
    }
    const before = fields.generation;
    const parts: number[] = [];
    fields.begin(parts);
    if (method === 'GET') parts.push(0x80 | 2);
    else if (method === 'POST') parts.push(0x80 | 3);
    else literal(parts, 2, '', method);
    parts.push(0x80 | 7); // :scheme https
    fields.field(parts, 1, ':authority', this.options.authority, true);
    fields.field(parts, 4, ':path', path, constantPath);
    fields.field(parts, 19, 'accept', mediaType, true);
    if (hasBody) fields.field(parts, 31, 'content-type', mediaType, true);
    const bytes = Buffer.from(parts);
    // A block that added to the table is for this request only: the next one refers to the entries.
    if (constantPath && fields.generation === before && (kept || this.prefixes.size < 8)) {
      const prefix = { method, path, mediaType, hasBody, bytes, generation: before };
      this.prefixes.set(key, prefix);
      this.lastPrefix = prefix;
    }
    return bytes;
  }

  /** The request's header block: the constant fields, then content-length and extras. */
  private headerBlock(prefix: Buffer, body: Buffer | null, extra: Record<string, string> | undefined): Buffer {
    if (!body && !extra) return prefix;
    const parts: number[] = [];
    if (body) literal(parts, 28, '', String(body.length)); // content-length
    if (extra) for (const name in extra) literal(parts, 0, name.toLowerCase(), extra[name]!);
    const block = Buffer.allocUnsafe(prefix.length + parts.length);
    prefix.copy(block, 0);
    for (let i = 0; i < parts.length; i++) block[prefix.length + i] = parts[i]!;
    return block;
  }

  /**
   * HEADERS, and CONTINUATIONs when the block is larger than a frame (a GET of a large query).
   * Frames are queued whole and in order, so nothing comes between them.
   */
  private writeHeaders(id: number, block: Buffer, endStream: boolean): void {
    const last = endStream ? Flag.END_STREAM : 0;
    if (block.length <= this.peerMaxFrameSize) return this.writeFrame(Frame.HEADERS, Flag.END_HEADERS | last, id, block);
    for (let at = 0; at < block.length; at += this.peerMaxFrameSize) {
      const end = Math.min(at + this.peerMaxFrameSize, block.length);
      const flags = (at === 0 ? last : 0) | (end === block.length ? Flag.END_HEADERS : 0);
      this.writeFrame(at === 0 ? Frame.HEADERS : Frame.CONTINUATION, flags, id, block.subarray(at, end));
    }
  }

  /** Sends as much of the stream's request body as the windows allow. */
  private sendData(stream: ClientStream): void {
    let rest = stream.pending!;
    while (rest.length > 0) {
      const size = Math.min(rest.length, this.peerMaxFrameSize, this.sendWindow, stream.sendWindow);
      if (size <= 0) break;
      this.writeFrame(Frame.DATA, size === rest.length ? Flag.END_STREAM : 0, stream.id, rest.subarray(0, size));
      this.sendWindow -= size;
      stream.sendWindow -= size;
      rest = rest.subarray(size);
    }
    stream.pending = rest.length > 0 ? rest : null;
    if (!stream.pending) this.waitingForWindow.delete(stream);
  }

  private sendWaiting(): void {
    for (const stream of this.waitingForWindow) {
      if (this.sendWindow <= 0) return;
      this.sendData(stream);
      if (stream.pending && stream.sendWindow <= 0) this.waitingForWindow.delete(stream);
    }
  }

  private writeSettings(): void {
    const settings = Buffer.alloc(24);
    settings.writeUInt16BE(Setting.ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(Setting.MAX_CONCURRENT_STREAMS, 6);
    settings.writeUInt32BE(0, 8); // the server opens no streams (no push)
    settings.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 12);
    settings.writeUInt32BE(STREAM_WINDOW, 14);
    settings.writeUInt16BE(Setting.MAX_HEADER_LIST_SIZE, 18);
    settings.writeUInt32BE(this.maxHeaderListSize, 20);
    this.writeFrame(Frame.SETTINGS, 0, 0, settings);
  }

  private writeFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.closed) return;
    const header = Buffer.allocUnsafe(FRAME_HEADER);
    writeFrameHeader(header, 0, payload.length, type, flags, streamId);
    this.out.push(header);
    this.writeRaw(payload);
    this.outBytes += FRAME_HEADER;
  }

  private writeRaw(bytes: Buffer): void {
    if (this.closed) return;
    this.out.push(bytes);
    this.outBytes += bytes.length;
    if (!this.flushScheduled) {
      // Every request of this turn of the event loop (a batch of datagrams) leaves in one write.
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.closed || this.out.length === 0) return;
    const bytes = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.socket.write(bytes);
    // A server that does not read (our PING answers, our requests) is not read either.
    if (this.socket.writableLength > WRITE_HIGH_WATER) this.socket.pause();
  };

  // --- Reading ---

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    try {
      if (this.reader.push(chunk)) this.creditReceived();
    } catch (err) {
      this.fail(err instanceof ConnectionError ? err : err instanceof HpackError ? new ConnectionError(H2Error.COMPRESSION_ERROR, err.message) : new ConnectionError(H2Error.INTERNAL_ERROR, (err as Error).message));
    }
  }

  /**
   * Credited in large steps, not after every read: a WINDOW_UPDATE a read would be a frame (and
   * often a TLS write) for every few answers, while the window is far from spent.
   */
  private creditReceived(): void {
    if (this.receiveCredit >= CREDIT_STEP && !this.closed) {
      this.writeFrame(Frame.WINDOW_UPDATE, 0, 0, uint32(this.receiveCredit));
      this.receiveWindow += this.receiveCredit;
      this.receiveCredit = 0;
    }
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.block && type !== Frame.CONTINUATION) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a frame inside a header block');
    switch (type) {
      case Frame.DATA:
        return this.onData(flags, streamId, payload);
      case Frame.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case Frame.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case Frame.PRIORITY:
        if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        return this.countIdleFrame();
      case Frame.RST_STREAM:
        return this.onReset(streamId, payload);
      case Frame.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case Frame.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      case Frame.PING:
        if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING of other than 8 bytes');
        if (flags & Flag.ACK) return;
        this.countIdleFrame();
        return this.writeFrame(Frame.PING, Flag.ACK, 0, Buffer.from(payload));
      case Frame.GOAWAY:
        return this.onGoaway(streamId, payload);
      case Frame.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
        // Unknown frame types are ignored (§5.5), and counted.
        return this.countIdleFrame();
    }
  }

  /** Frames on a stream the server may not have started or may not start (even: push). */
  private checkStreamId(streamId: number, what: string): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `${what} on stream 0`);
    if ((streamId & 1) === 0 || streamId >= this.nextStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `${what} on stream ${streamId}, which we did not open`);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    this.checkStreamId(streamId, 'DATA');
    this.receiveWindow -= payload.length;
    if (this.receiveWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'DATA past the connection window');
    this.receiveCredit += payload.length;
    const data = unpad(flags, payload);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (data.length === 0 && !endStream) this.countIdleFrame();
    const stream = this.streams.get(streamId);
    if (!stream) return; // a stream we finished or cancelled: the server may not know yet
    stream.receiveWindow -= payload.length;
    if (stream.receiveWindow < 0) return this.cancel(stream, H2Error.FLOW_CONTROL_ERROR, Failure.Broken, 'DATA past the stream window');
    if (!stream.answered) return this.cancel(stream, H2Error.PROTOCOL_ERROR, Failure.Broken, 'DATA before the response head');
    if (data.length > 0) {
      stream.size += data.length;
      if (stream.size > stream.maxBytes) return this.cancel(stream, H2Error.CANCEL, Failure.TooLarge, `answer larger than ${stream.maxBytes} bytes`);
      this.buffered += data.length;
      if (this.buffered > MAX_BUFFERED) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many answer bytes held');
      stream.held += data.length;
      stream.chunks.push(data);
    }
    if (endStream) this.complete(stream);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    this.checkStreamId(streamId, 'HEADERS');
    let fragment = unpad(flags, payload);
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      fragment = fragment.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, endStream, fragment);
    if (fragment.length === 0) this.countIdleFrame();
    this.block = { streamId, endStream, fragments: [fragment], size: fragment.length, frames: 1 };
    this.checkBlock();
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.block;
    if (!block || block.streamId !== streamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without a header block before it');
    if (payload.length === 0 && !(flags & Flag.END_HEADERS)) this.countIdleFrame();
    block.fragments.push(payload);
    block.size += payload.length;
    block.frames++;
    this.checkBlock();
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = null;
    this.onHeaderBlock(streamId, block.endStream, Buffer.concat(block.fragments, block.size));
  }

  /** A header block (CONTINUATION flood, oversized headers) is bounded in bytes and frames. */
  private checkBlock(): void {
    const block = this.block!;
    if (block.size > this.maxBlockSize || block.frames > this.maxBlockFrames) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'response header block too large');
  }

  private onHeaderBlock(streamId: number, endStream: boolean, fragment: Buffer): void {
    // Decoded even for a stream we no longer have: the HPACK table must stay in step.
    const { headers, size } = this.decoder.decode(fragment, this.maxHeaderListSize);
    const stream = this.streams.get(streamId);
    if (!stream) return;
    if (size > this.maxHeaderListSize) return this.cancel(stream, H2Error.CANCEL, Failure.Broken, 'response headers too large');
    if (stream.answered) {
      // Trailers: they must end the stream (§8.1), and are not read.
      if (!endStream) return this.cancel(stream, H2Error.PROTOCOL_ERROR, Failure.Broken, 'a second header block that does not end the stream');
      return this.complete(stream);
    }
    const status = statusOf(headers);
    if (status === null) return this.cancel(stream, H2Error.PROTOCOL_ERROR, Failure.Broken, 'a response without a valid :status');
    if (status >= 100 && status < 200) {
      // Informational (100, 103): the final head follows; one that ends the stream is malformed.
      if (endStream || status === 101) return this.cancel(stream, H2Error.PROTOCOL_ERROR, Failure.Broken, `an informational ${status} response`);
      return this.countIdleFrame();
    }
    stream.answered = true;
    const problem = stream.handler.head(status, headers);
    if (problem !== null) return this.cancel(stream, H2Error.CANCEL, Failure.Broken, problem);
    if (endStream) this.complete(stream);
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM of other than 4 bytes');
    this.checkStreamId(streamId, 'RST_STREAM');
    const stream = this.streams.get(streamId);
    if (!stream) return;
    const code = payload.readUInt32BE(0);
    // Reset before any answer (or refused, §8.7): the request was not processed; send it again elsewhere.
    const lost = !stream.answered || code === H2Error.REFUSED_STREAM;
    this.finish(stream, lost ? Failure.Lost : Failure.Broken, `stream reset by the server (code ${code})`, null);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS of a length not a multiple of 6');
    this.countIdleFrame();
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === Setting.MAX_CONCURRENT_STREAMS) {
        this.peerMaxStreams = value;
      } else if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        // §6.9.2: open streams' windows move by the change.
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
          if (stream.pending && stream.sendWindow > 0) this.waitingForWindow.add(stream);
        }
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < MAX_FRAME_SIZE || value > 2 ** 24 - 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE of ${value}`);
        this.peerMaxFrameSize = value;
      } else if (id === Setting.ENABLE_PUSH) {
        if (value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH of ${value}`);
      } else if (id === Setting.HEADER_TABLE_SIZE) {
        // What our request fields may keep in the server's HPACK table (request-fields.ts).
        this.fields.allow(value);
      }
      // Others are ignored (§6.5.2).
    }
    this.writeFrame(Frame.SETTINGS, Flag.ACK, 0, Buffer.alloc(0));
    this.sendWaiting();
    if (!this.retired) this.options.onRoom?.();
  }

  private onGoaway(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
    if (payload.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
    const lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.retire();
    // Streams past the last one the server will process never were: they go again elsewhere.
    for (const stream of [...this.streams.values()]) {
      if (stream.id > lastStreamId) this.finish(stream, Failure.Lost, `GOAWAY (code ${code}) before this stream`, null);
    }
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of other than 4 bytes');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.sendWaiting();
    }
    this.checkStreamId(streamId, 'WINDOW_UPDATE');
    const stream = this.streams.get(streamId);
    if (!stream) return;
    if (increment === 0) return this.cancel(stream, H2Error.PROTOCOL_ERROR, Failure.Broken, 'WINDOW_UPDATE of 0');
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.cancel(stream, H2Error.FLOW_CONTROL_ERROR, Failure.Broken, 'stream window above 2^31-1');
    if (stream.pending) {
      this.waitingForWindow.add(stream);
      this.sendWaiting();
    }
  }

  /** Frames that cost work and carry nothing: a server that keeps sending them is cut off. */
  private countIdleFrame(): void {
    if (!this.idleFrames.take()) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many frames that carry nothing');
  }

  // --- Streams ending ---

  private complete(stream: ClientStream): void {
    this.lastAnswerAt = performance.now();
    // A copy even of one chunk: a slice would keep the whole read it came in alive (in a cache, say).
    const body = Buffer.concat(stream.chunks, stream.size);
    this.finish(stream, null, '', body);
  }

  /** We give the stream up: the server is told (RST_STREAM), the caller gets the failure. */
  private cancel(stream: ClientStream, code: number, failure: Failure, message: string): void {
    this.writeFrame(Frame.RST_STREAM, 0, stream.id, uint32(code));
    this.finish(stream, failure, message, null);
  }

  private finish(stream: ClientStream, failure: Failure | null, message: string, body: Buffer | null): void {
    if (!this.streams.delete(stream.id)) return;
    this.buffered -= stream.held;
    stream.held = 0;
    stream.pending = null;
    this.waitingForWindow.delete(stream);
    if (this.streams.size === 0) {
      this.idleSince = performance.now();
      if (this.retired) this.shutdown();
    }
    stream.handler.done(failure, message, body);
    if (!this.retired) this.options.onRoom?.();
  }

  // --- Time ---

  /**
   * The streams' deadlines and the idle clock (core/util/deadline-timer.ts): fails the streams due
   * by `now` and says when to look again, at the earliest deadline of a stream open, else when
   * the connection will have been idle too long. A deadline is left alone when its stream is
   * answered; the timer then finds nothing due and is set again.
   */
  private expire(now: number): number {
    if (this.closed) return Infinity;
    let stuck = false;
    let next = Infinity;
    for (const stream of [...this.streams.values()]) {
      // A Node timer may fire up to a millisecond early: what falls due within it is due.
      if (stream.deadline > now + 1) {
        if (stream.deadline < next) next = stream.deadline;
        continue;
      }
      // Nothing answered since this stream began: the connection itself is stuck.
      if (this.lastAnswerAt < stream.startedAt || this.block) stuck = true;
      this.cancel(stream, H2Error.CANCEL, Failure.Timeout, 'no answer in time');
    }
    if (this.block && stuck) {
      this.fail(new ConnectionError(H2Error.PROTOCOL_ERROR, 'a header block left unfinished'));
      return Infinity;
    }
    if (stuck) this.retire();
    if (this.closed) return Infinity;
    // (A stream opened from a failed one's callback has set the timer for itself.)
    if (this.streams.size > 0) return next;
    const idleFor = now - this.idleSince;
    if (idleFor < this.options.idleTimeoutMs - 1) return now + this.options.idleTimeoutMs - idleFor;
    this.retire();
    return Infinity;
  }

  // --- Closing ---

  /** Retired and nothing in flight: a polite GOAWAY, then the connection ends. */
  private shutdown(): void {
    if (this.closed) return;
    this.writeFrame(Frame.GOAWAY, 0, 0, goawayPayload(0, H2Error.NO_ERROR));
    this.flush();
    this.closeSocket();
  }

  /** A connection error (§5.4.1): GOAWAY with its code, then close; streams in flight fail. */
  private fail(error: ConnectionError): void {
    if (this.closed) return;
    this.writeFrame(Frame.GOAWAY, 0, 0, goawayPayload(0, error.code));
    this.flush();
    this.closeSocket();
    this.onClose(`HTTP/2 error from the server: ${error.message}`);
  }

  private closeSocket(): void {
    this.closed = true;
    this.socket.end();
    this.socket.pause();
    // A server that never closes its side is not waited for.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.release();
  }

  private onClose(why: string): void {
    if (!this.retired) {
      this.retired = true;
      this.options.onGone();
    }
    this.closed = true;
    for (const stream of [...this.streams.values()]) this.finish(stream, stream.answered ? Failure.Broken : Failure.Lost, why, null);
    this.release();
  }

  private release(): void {
    if (!this.retired) {
      this.retired = true;
      this.options.onGone();
    }
    this.out = [];
    this.outBytes = 0;
    this.reader.clear();
    this.block = null;
    this.deadlines.clear();
    this.waitingForWindow.clear();
  }
}

/** `:status` as a number, or null when missing, repeated, malformed, or after a regular field. */
function statusOf(headers: HeaderList): number | null {
  let status: number | null = null;
  let regularSeen = false;
  for (const [name, value] of headers) {
    if (name.charCodeAt(0) === 0x3a /* : */) {
      if (name !== ':status' || status !== null || regularSeen || !isThreeDigits(value)) return null;
      status = Number(value);
    } else {
      regularSeen = true;
    }
  }
  return status;
}

/** Exactly three ASCII digits (a status code), read by character rather than by a regular expression on every answer. */
function isThreeDigits(value: string): boolean {
  if (value.length !== 3) return false;
  for (let i = 0; i < 3; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Writes a frame header at `at`; returns where its payload starts. */
function writeFrameHeader(into: Buffer, at: number, length: number, type: number, flags: number, streamId: number): number {
  into[at] = length >>> 16;
  into[at + 1] = (length >>> 8) & 0xff;
  into[at + 2] = length & 0xff;
  into[at + 3] = type;
  into[at + 4] = flags;
  into.writeUInt32BE(streamId, at + 5);
  return at + FRAME_HEADER;
}

function uint32(value: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(value, 0);
  return payload;
}

