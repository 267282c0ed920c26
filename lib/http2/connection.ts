/**
 * The server side of one HTTP/2 connection (RFC 9113), as much as Veil's HTTP services need (DoH,
 * the ODoH target and relay): requests with small bodies, answers of one HEADERS and one or a few
 * DATA frames. Requests and replies are lib/http2/message.ts's. No server push, no
 * priorities (PRIORITY frames are read and ignored, as §5.3.2 allows).
 *
 * Why Veil has its own: node:http2 builds a Duplex stream, header objects and several callbacks
 * for every request; a DoH request through it cost about 25 µs of CPU, five times dnsdist's. Here
 * a request is a few array entries, and everything written while one chunk of input is handled
 * (the answers from the cache among it) leaves in one socket write.
 *
 * Bounds (docs/reliability.md lists the attack each one stops):
 * - frames of at most 16,384 bytes (our SETTINGS_MAX_FRAME_SIZE);
 * - a header block of at most twice the header list size allowed, in a bounded number of frames,
 *   finished within `requestTimeoutMs`;
 * - `maxStreams` streams at once, counting streams the client reset while their query is still
 *   being answered (so resetting cannot start unbounded work);
 * - a request body of at most 65,535 bytes, held in one buffer, arriving within
 *   `requestTimeoutMs`; empty frames that carry nothing are counted, and too many end the
 *   connection;
 * - answers waiting for flow control window: at most 1 MiB per connection (past it new streams
 *   are refused), each taken by the client within `requestTimeoutMs` or reset; a reset stream
 *   leaves every structure at once;
 * - reading stops while more than 1 MiB waits to be written to a client that does not read;
 * - refused or malformed streams: 100 at once, then one a second; past that the connection ends;
 * - a connection with no stream open for `idleTimeoutMs` is closed, whatever else it sends.
 */
// Buffer (and performance) imported, not the globals: in Node 24 the globals are accessors,
// about 10 ns a use, on every request here.
import { Buffer } from 'node:buffer';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { IdTable } from '../../core/util/id-table.js';
import { bodyCutOff, bodyTimedOut, bodyTooLarge, textReply, type BodyResult, type HttpReply, type HttpRequest, type RequestHandler } from './message.js';
import { EncoderTable } from './encoder-table.js';
import { encodeResponseHeaders, encodeResponseHeadersInto, HpackDecoder, HpackError, type HeaderList } from './hpack.js';
import { Allowance, ConnectionError, FrameReader, goawayPayload, unpad, type OpenBlock } from './frames.js';
import { DEFAULT_WINDOW, Flag, Frame, FRAME_HEADER, H2Error, MAX_FRAME_SIZE, MAX_WINDOW, PREFACE, Setting } from './protocol.js';

/** Bytes waiting to be written, or waiting for the client's window, past which we hold back. */
const WRITE_HIGH_WATER = 1 << 20;
/** The largest request body kept: no DNS message is larger. */
const MAX_BODY = 65_535;
/** CONTINUATION frames a header block may take past what its size needs (nghttp2 allows 8 in all). */
const SPARE_CONTINUATIONS = 8;
/** Refused or malformed streams, and frames that carry nothing: this many at once, then this many a second. */
const STRIKE_BURST = 100;
const STRIKES_PER_SECOND = 1;
const EMPTY_FRAME_BURST = 100;
const EMPTY_FRAMES_PER_SECOND = 10;
const EMPTY = Buffer.alloc(0);
/**
 * Frames are written into a buffer of this size per connection, which each flush writes from;
 * a busy connection allocates one per this many bytes answered, not a Buffer per frame.
 */
const SLAB_SIZE = 16_384;
/** Room made in the output for a reply's header block before encoding it there. */
const HEADER_BLOCK_ROOM = 1024;
/**
 * Read bytes are credited back to the connection window (RFC 9113's 65,535) once this many are
 * owed: half of it, so a client always has the other half to send in while we owe.
 */
const CREDIT_STEP = (DEFAULT_WINDOW + 1) / 2;

/** The request pseudo-fields (§8.3.1), as bits: a request's are checked for repeats without a Set. */
const METHOD = 1;
const SCHEME = 2;
const AUTHORITY = 4;
const PATH = 8;

export interface H2Options {
  maxStreams: number;
  maxHeaderListSize: number;
  /** A connection with no stream open this long is closed. */
  idleTimeoutMs: number;
  /** A request must arrive whole (header block, body) within this long; an answer must be taken within it. */
  requestTimeoutMs: number;
}

/** What a connection holds now, for tests and the fuzzer to check its bounds. */
export interface H2Holdings {
  streams: number;
  /** Streams whose answer waits for the connection's flow control window. */
  waitingForWindow: number;
  /** Answer bytes not yet sent for lack of window. */
  pendingBytes: number;
  /** Request body bytes held. */
  bodyBytes: number;
  /** Frames of a header block not yet ended. */
  blockFrames: number;
  /** Bytes written but not yet flushed to the socket. */
  unflushedBytes: number;
  timers: number;
}

/**
 * A stream, which is also the request its handler is given (HttpRequest): no view object and
 * closures are made per request.
 */
class Stream implements HttpRequest {
  /** The client sent END_STREAM: the request is whole. */
  ended = false;
  /** The client reset it, or we did: nothing more is sent on it. */
  reset = false;
  /** The handler has the request and has not responded yet. */
  handling = true;
  /** The answer refuses the body (413, 408): the client is told to stop sending it. */
  bodyRefused = false;
  /** The body received so far: the first `bodySize` bytes (or fewer, past the limit: none are kept then). */
  body: Buffer = EMPTY;
  bodySize = 0;
  bodyLimit = -1;
  bodyWaiter: ((result: BodyResult) => void) | null = null;
  /** The body's deadline while it is awaited; then the deadline for the client to take the answer. */
  timer: NodeJS.Timeout | null = null;
  /** Bytes of answer still to send, waiting for flow control window. */
  pending: Buffer | null = null;
  /** What the client may still send us on this stream (our receive window). */
  receiveWindow = DEFAULT_WINDOW;

  readonly method: string;
  readonly path: string;

  constructor(
    readonly id: number,
    readonly headers: HeaderList,
    public sendWindow: number,
    readonly contentLength: number,
    /** The connection's body reader (one function per connection, shared by its streams). */
    private readonly bodyReader: (stream: Stream, limit: number) => Promise<BodyResult>,
  ) {
    this.method = this.header(':method') ?? '';
    this.path = this.header(':path') ?? '';
  }

  readBody(limit: number): Promise<BodyResult> {
    return this.bodyReader(this, limit);
  }

  header(name: string): string | undefined {
    let found: string | undefined;
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) {
      const field = headers[i]!;
      if (field[0] === name) found = found === undefined ? field[1] : `${found},${field[1]}`;
    }
    return found;
  }

  /** Keeps body bytes in one buffer that doubles as it fills: a body in many tiny frames costs its bytes, not a Buffer each. */
  append(data: Buffer): void {
    const needed = this.bodySize + data.length;
    if (needed > this.body.length) {
      const grown = Buffer.allocUnsafe(Math.min(MAX_BODY, Math.max(needed, 2 * this.body.length, 512)));
      this.body.copy(grown, 0, 0, this.bodySize);
      this.body = grown;
    }
    data.copy(this.body, this.bodySize);
    this.bodySize = needed;
  }
}

export class H2ServerConnection {
  private readonly decoder = new HpackDecoder();
  /** What the client's HPACK table holds of the fields our answers added (encoder-table.ts). */
  private readonly answerFields = new EncoderTable();
  /** Streams by ID; not a Map (see core/util/id-table.ts). */
  private readonly streams = new IdTable<Stream>();
  /** Cuts what the client sends, after its preface, into frames. */
  private readonly reader = new FrameReader((type, flags, streamId, payload) => this.frame(type, flags, streamId, payload), () => this.closed, PREFACE);
  private lastStreamId = 0;
  private block: OpenBlock | null = null;
  private blockTimer: NodeJS.Timeout | null = null;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  /** What the client may still send on the connection; credited back as DATA is read. */
  private receiveWindow = DEFAULT_WINDOW;
  private receiveCredit = 0;
  /**
   * Streams with answer bytes that have window of their own and wait for the connection's, in
   * the order they began to wait. A stream waiting for its own window is in no list: its
   * WINDOW_UPDATE puts it here. A Set: a reset takes a stream out in O(1).
   */
  private readonly waitingForWindow = new Set<Stream>();
  private pendingBytes = 0;
  /**
   * Output: frames are written straight into `slab`; bytes from `slabStart` to `slabEnd` are not
   * flushed yet. A flush writes them as a view and moves `slabStart` on: bytes handed to the
   * socket are never written over (later frames go after them, or into a new slab).
   */
  private slab: Buffer = EMPTY;
  private slabStart = 0;
  private slabEnd = 0;
  private flushScheduled = false;
  /** Given to every stream of this connection (one function, not a closure per request). */
  private readonly bodyReader = (stream: Stream, limit: number): Promise<BodyResult> => this.readBody(stream, limit);
  private goingAway = false;
  private closed = false;
  private readonly strikes = new Allowance(STRIKE_BURST, STRIKES_PER_SECOND);
  private readonly emptyFrames = new Allowance(EMPTY_FRAME_BURST, EMPTY_FRAMES_PER_SECOND);
  private readonly maxBlockSize: number;
  private readonly maxBlockFrames: number;
  /** When the last stream left (or the connection opened): the idle clock, which frames do not reset. */
  private idleSince = performance.now();
  private idleTimer: NodeJS.Timeout | null;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: H2Options,
    private readonly onRequest: RequestHandler,
  ) {
    this.maxBlockSize = Math.max(2 * options.maxHeaderListSize, MAX_FRAME_SIZE);
    this.maxBlockFrames = Math.ceil(this.maxBlockSize / MAX_FRAME_SIZE) + SPARE_CONTINUATIONS;
    this.writeSettings();
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => {
      if (!this.closed) socket.resume();
    });
    socket.on('close', () => this.onClose());
    this.idleTimer = setTimeout(this.checkIdle, options.idleTimeoutMs);
    socket.resume();
  }

  /** Graceful close: GOAWAY, the streams already open are answered, then the connection ends. */
  close(): void {
    if (this.goingAway || this.closed) return;
    this.goingAway = true;
    this.writeFrame(Frame.GOAWAY, 0, 0, goawayPayload(this.lastStreamId, H2Error.NO_ERROR));
    this.endIfDone();
  }

  destroy(): void {
    this.socket.destroy();
  }

  holdings(): H2Holdings {
    let bodyBytes = 0;
    let timers = (this.idleTimer ? 1 : 0) + (this.blockTimer ? 1 : 0);
    for (const stream of this.streams.values()) {
      bodyBytes += stream.body.length;
      if (stream.timer) timers++;
    }
    return {
      streams: this.streams.size,
      waitingForWindow: this.waitingForWindow.size,
      pendingBytes: this.pendingBytes,
      bodyBytes,
      blockFrames: this.block?.frames ?? 0,
      unflushedBytes: this.slabEnd - this.slabStart,
      timers,
    };
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    try {
      if (this.reader.push(chunk)) this.creditReceived();
    } catch (err) {
      this.failWith(err);
    }
  }

  /** A connection error ends this connection; so does a bug of ours (it must not take the process down). */
  private failWith(err: unknown): void {
    this.fail(err instanceof ConnectionError ? err : new ConnectionError(H2Error.INTERNAL_ERROR, (err as Error).message));
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
        if (payload.length !== 5) {
          this.strike();
          this.resetStream(streamId, H2Error.FRAME_SIZE_ERROR);
        }
        return;
      case Frame.RST_STREAM:
        return this.onReset(streamId, payload);
      case Frame.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case Frame.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case Frame.PING:
        if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING of other than 8 bytes');
        if (!(flags & Flag.ACK)) this.writeFrame(Frame.PING, Flag.ACK, 0, payload); // copied into the output at once
        return;
      case Frame.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        this.goingAway = true; // the client leaves: answer what is open, take nothing new
        this.endIfDone();
        return;
      case Frame.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a SETTINGS acknowledgement with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS of a length not a multiple of 6');
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === Setting.ENABLE_PUSH && value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH above 1');
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        if (delta !== 0) {
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
            if (stream.pending) this.waitForWindow(stream);
          }
        }
      }
      if (id === Setting.MAX_FRAME_SIZE) {
        if (value < MAX_FRAME_SIZE || value > 2 ** 24 - 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE of ${value}`);
        this.peerMaxFrameSize = value;
      }
      // The client's table, where our answers' content-type is indexed (hpack.ts).
      if (id === Setting.HEADER_TABLE_SIZE) this.answerFields.allow(value);
      // MAX_CONCURRENT_STREAMS: we never push.
    }
    this.writeFrame(Frame.SETTINGS, Flag.ACK, 0, EMPTY);
    this.sendWaiting();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of other than 4 bytes');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'the connection window above 2^31-1');
    } else {
      if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
      const stream = this.streams.get(streamId);
      if (!stream) return; // closed: allowed for a while after (§6.9)
      if (increment === 0) {
        this.strike();
        return this.resetStream(streamId, H2Error.PROTOCOL_ERROR);
      }
      stream.sendWindow += increment;
      if (stream.sendWindow > MAX_WINDOW) return this.resetStream(streamId, H2Error.FLOW_CONTROL_ERROR);
      if (stream.pending) this.waitForWindow(stream);
    }
    this.sendWaiting();
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM of other than 4 bytes');
    if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const stream = this.streams.get(streamId);
    if (stream) this.abandon(stream);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let fragment = unpad(flags, payload);
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      fragment = fragment.subarray(5);
    }
    if (fragment.length > this.maxBlockSize) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'a header block over the limit');
    // A block in one frame (every request of a usual client) is read from the frame as it is.
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, (flags & Flag.END_STREAM) !== 0, fragment);
    if (fragment.length === 0) this.countEmptyFrame();
    this.block = { streamId, endStream: (flags & Flag.END_STREAM) !== 0, fragments: [fragment], size: fragment.length, frames: 1 };
    // The rest of the block must follow promptly: until it ends, nothing else can be read.
    this.blockTimer = setTimeout(() => this.fail(new ConnectionError(H2Error.PROTOCOL_ERROR, 'a header block not ended in time')), this.options.requestTimeoutMs);
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.block;
    if (!block || block.streamId !== streamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without a header block');
    // Empty CONTINUATIONs add no bytes but cost a frame each: the frames of a block are bounded too.
    if (++block.frames > this.maxBlockFrames) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `a header block in more than ${this.maxBlockFrames} frames`);
    if (payload.length > 0) block.fragments.push(payload);
    else if (!(flags & Flag.END_HEADERS)) this.countEmptyFrame();
    block.size += payload.length;
    if (block.size > this.maxBlockSize) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'a header block over the limit');
    if (flags & Flag.END_HEADERS) {
      this.endBlock();
      const bytes = block.fragments.length === 1 ? block.fragments[0]! : Buffer.concat(block.fragments, block.size);
      this.onHeaderBlock(block.streamId, block.endStream, bytes);
    }
  }

  private endBlock(): void {
    this.block = null;
    if (this.blockTimer) clearTimeout(this.blockTimer);
    this.blockTimer = null;
  }

  private onHeaderBlock(id: number, endStream: boolean, bytes: Buffer): void {
    let decoded;
    try {
      // Every block is decoded, even for a stream that will be refused: the table must stay in step.
      decoded = this.decoder.decode(bytes, this.options.maxHeaderListSize);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(H2Error.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const existing = this.streams.get(id);
    if (id <= this.lastStreamId) {
      // Trailers end a request body; anything else on a used stream number is an error.
      // A new stream must take a number above every earlier one (§5.1.1).
      if (!existing) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS on stream ${id}, at or below ${this.lastStreamId}`);
      if (existing.ended) return this.resetStream(id, H2Error.STREAM_CLOSED);
      if (!endStream || decoded.headers.some(([name]) => name.startsWith(':'))) return this.malformed(existing);
      return this.endRequest(existing);
    }
    if (id % 2 === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `a client stream with the even number ${id}`);
    this.lastStreamId = id;
    if (this.goingAway) return; // after GOAWAY new streams are ignored; the client retries elsewhere
    // Refused: too many streams, or answers already waiting for a client that does not open its window.
    if (this.streams.size >= this.options.maxStreams || this.pendingBytes > WRITE_HIGH_WATER) {
      this.strike();
      return this.resetStream(id, H2Error.REFUSED_STREAM);
    }
    const contentLength = decoded.invalid ? null : requestProblem(decoded.headers);
    if (contentLength === null) {
      this.strike();
      return this.resetStream(id, H2Error.PROTOCOL_ERROR);
    }
    const stream = new Stream(id, decoded.headers, this.peerInitialWindow, contentLength, this.bodyReader);
    this.streams.set(id, stream);
    if (decoded.size > this.options.maxHeaderListSize) {
      stream.ended = endStream;
      return this.answer(stream, textReply(431, 'request header fields too large'));
    }
    if (endStream) this.endRequest(stream);
    if (stream.reset) {
      stream.handling = false; // malformed (its content-length lied): never handed over
      return this.forget(stream);
    }
    this.onRequest(stream, (reply) => this.answer(stream, reply));
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    this.receiveWindow -= payload.length;
    this.receiveCredit += payload.length;
    if (this.receiveWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'DATA past the connection window');
    if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on an idle stream');
    const data = unpad(flags, payload);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    // A frame that carries nothing and ends nothing (§6.1 allows it) is counted, never stored.
    if (data.length === 0 && !endStream) this.countEmptyFrame();
    const stream = this.streams.get(streamId);
    if (!stream || stream.ended) {
      if (stream) this.resetStream(streamId, H2Error.STREAM_CLOSED);
      return; // a stream already closed: the client may not know yet
    }
    stream.receiveWindow -= payload.length;
    if (stream.receiveWindow < 0) return this.resetStream(streamId, H2Error.FLOW_CONTROL_ERROR);
    const limit = stream.bodyLimit < 0 ? MAX_BODY : Math.min(stream.bodyLimit, MAX_BODY);
    const kept = stream.bodySize <= limit;
    if (kept && stream.bodySize + data.length <= limit) stream.append(data);
    else stream.bodySize += data.length; // past the limit: counted, not kept (the answer is 413)
    // Keep the body coming while it is within what will be read. A WINDOW_UPDATE of 0 is an
    // error (§6.9), so an empty frame is never credited.
    if (kept && payload.length > 0 && !endStream) {
      stream.receiveWindow += payload.length;
      this.writeUint32Frame(Frame.WINDOW_UPDATE, streamId, payload.length);
    }
    if (endStream) this.endRequest(stream);
    else if (stream.bodyLimit >= 0 && stream.bodySize > stream.bodyLimit) this.settleBody(stream, bodyTooLarge(stream.bodyLimit));
  }

  /** The client finished its request: the body is whole (or the content-length lied). */
  private endRequest(stream: Stream): void {
    stream.ended = true;
    if (stream.contentLength >= 0 && stream.contentLength !== stream.bodySize) return this.malformed(stream);
    if (stream.bodyWaiter) this.settleBody(stream, this.bodyOf(stream));
  }

  private bodyOf(stream: Stream): BodyResult {
    return stream.bodySize > stream.bodyLimit ? bodyTooLarge(stream.bodyLimit) : stream.body.subarray(0, stream.bodySize);
  }

  private readBody(stream: Stream, limit: number): Promise<BodyResult> {
    stream.bodyLimit = Math.min(limit, MAX_BODY);
    if (stream.reset) return Promise.resolve(bodyCutOff());
    if (stream.ended || stream.bodySize > limit) return Promise.resolve(this.bodyOf(stream));
    return new Promise((resolve) => {
      stream.bodyWaiter = resolve;
      stream.timer = setTimeout(() => this.settleBody(stream, bodyTimedOut()), this.options.requestTimeoutMs);
    });
  }

  private settleBody(stream: Stream, result: BodyResult): void {
    const waiter = stream.bodyWaiter;
    if (!waiter) return;
    stream.bodyWaiter = null;
    this.clearTimer(stream);
    stream.body = EMPTY;
    waiter(result);
  }

  /** Writes an answer: HEADERS, then DATA as the flow control windows allow. */
  private answer(stream: Stream, reply: HttpReply): void {
    stream.handling = false;
    if (stream.reset || this.closed) return this.forget(stream);
    // A response to HEAD has the headers of the one to GET and no body (RFC 9110 §9.3.2).
    const body = stream.method === 'HEAD' ? EMPTY : reply.body;
    stream.bodyRefused = reply.status === 413 || reply.status === 408;
    this.writeHeaders(Flag.END_HEADERS | (body.length === 0 ? Flag.END_STREAM : 0), stream.id, reply);
    if (body.length === 0) return this.answered(stream);
    stream.pending = body;
    this.pendingBytes += body.length;
    this.sendData(stream);
    if (!stream.pending) return;
    this.waitForWindow(stream);
    // A client that never opens its window does not keep the stream (and its answer) forever.
    this.clearTimer(stream);
    stream.timer = setTimeout(() => this.resetStream(stream.id, H2Error.CANCEL), this.options.requestTimeoutMs);
  }

  /** A stream with answer bytes: in line for the connection window if it has window of its own. */
  private waitForWindow(stream: Stream): void {
    if (stream.sendWindow > 0) this.waitingForWindow.add(stream);
  }

  /** Sends as much of the stream's pending answer as the windows allow. */
  private sendData(stream: Stream): void {
    let rest = stream.pending!;
    while (rest.length > 0) {
      const size = Math.min(rest.length, this.peerMaxFrameSize, this.sendWindow, stream.sendWindow);
      if (size <= 0) break;
      const whole = size === rest.length; // the usual DNS answer: one frame, no views made
      this.writeFrame(Frame.DATA, whole ? Flag.END_STREAM : 0, stream.id, whole ? rest : rest.subarray(0, size));
      this.sendWindow -= size;
      stream.sendWindow -= size;
      this.pendingBytes -= size;
      rest = whole ? EMPTY : rest.subarray(size);
    }
    stream.pending = rest.length > 0 ? rest : null;
    if (!stream.pending) this.answered(stream);
  }

  /** Window arrived: streams in line send, in order, until the connection window is spent. Each step sends, or ends. */
  private sendWaiting(): void {
    for (const stream of this.waitingForWindow) {
      if (this.sendWindow <= 0) return;
      this.sendData(stream); // an answer sent whole leaves the line through forget()
      if (stream.pending && stream.sendWindow <= 0) this.waitingForWindow.delete(stream);
    }
  }

  /**
   * The answer is out. A request body refused for its size or its slowness is stopped with
   * RST_STREAM NO_ERROR (§8.1). The rest of any other unfinished body is let through and
   * ignored: some clients (curl 7.88) take that reset for a failure, and what the client can
   * still send is bounded by the stream's window, which is no longer credited.
   */
  private answered(stream: Stream): void {
    if (!stream.ended && stream.bodyRefused) {
      stream.reset = true;
      this.writeUint32Frame(Frame.RST_STREAM, stream.id, H2Error.NO_ERROR);
      this.settleBody(stream, bodyCutOff());
    }
    this.forget(stream);
  }

  /** The stream is reset (by the client or by us): its answer, if it comes, is dropped. */
  private abandon(stream: Stream): void {
    stream.reset = true;
    this.settleBody(stream, bodyCutOff());
    this.forget(stream);
  }

  /**
   * A reset or answered stream leaves every structure here, in O(1): its unsent answer, its
   * place in line, its timer, its body. It leaves the count of streams once its handler is done
   * too (a reset stream still being answered keeps its place: rapid reset cannot start more).
   */
  private forget(stream: Stream): void {
    if (stream.pending) {
      this.pendingBytes -= stream.pending.length;
      stream.pending = null;
    }
    if (this.waitingForWindow.size > 0) this.waitingForWindow.delete(stream); // (almost always empty)
    this.clearTimer(stream);
    stream.body = EMPTY;
    if (stream.handling) return;
    this.streams.delete(stream.id);
    if (this.streams.size === 0) this.idleSince = performance.now();
    this.endIfDone();
  }

  private clearTimer(stream: Stream): void {
    if (stream.timer) clearTimeout(stream.timer);
    stream.timer = null;
  }

  private malformed(stream: Stream): void {
    this.strike();
    this.resetStream(stream.id, H2Error.PROTOCOL_ERROR);
  }

  private resetStream(id: number, code: H2Error): void {
    this.writeUint32Frame(Frame.RST_STREAM, id, code);
    const stream = this.streams.get(id);
    if (stream) this.abandon(stream);
  }

  /** Refused and malformed streams: a client that keeps making them is cut off. */
  private strike(): void {
    if (!this.strikes.take()) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many refused or malformed streams');
  }

  /** Frames that carry nothing cost a frame's work each (CVE-2019-9518): a client that keeps sending them is cut off. */
  private countEmptyFrame(): void {
    if (!this.emptyFrames.take()) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many empty frames');
  }

  /**
   * Gives back the connection window the DATA read so far used, once half of it is owed. Not
   * after every read: a POSTed query's WINDOW_UPDATE went out alone, before its answer was
   * ready, as one more TLS record and one more wake-up of the client for every query.
   */
  private creditReceived(): void {
    if (this.receiveCredit < CREDIT_STEP) return;
    this.writeUint32Frame(Frame.WINDOW_UPDATE, 0, this.receiveCredit);
    this.receiveWindow += this.receiveCredit;
    this.receiveCredit = 0;
  }

  private writeSettings(): void {
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(Setting.MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(this.options.maxStreams, 2);
    settings.writeUInt16BE(Setting.MAX_HEADER_LIST_SIZE, 6);
    settings.writeUInt32BE(this.options.maxHeaderListSize, 8);
    settings.writeUInt16BE(Setting.ENABLE_PUSH, 12);
    settings.writeUInt32BE(0, 14);
    // SETTINGS_HEADER_TABLE_SIZE stays at its default, 4096 (hpack.ts HEADER_TABLE_SIZE).
    this.writeFrame(Frame.SETTINGS, 0, 0, settings);
  }

  /** Queues a frame; its payload is copied into the output at once (it may be a transient view). */
  private writeFrame(type: Frame, flags: number, streamId: number, payload: Buffer): void {
    if (this.closed) return;
    const at = this.frameHeader(type, flags, streamId, payload.length);
    this.slab.set(payload, at + FRAME_HEADER);
  }

  /** Queues a HEADERS frame of a reply, its block encoded straight into the output. */
  private writeHeaders(flags: number, streamId: number, reply: HttpReply): void {
    if (this.closed) return;
    this.makeRoom(FRAME_HEADER + HEADER_BLOCK_ROOM);
    const at = this.slabEnd;
    const end = encodeResponseHeadersInto(reply.status, reply.headers, this.slab, at + FRAME_HEADER, this.answerFields);
    // A block larger than the room (no DoH answer's comes near) is encoded on its own.
    if (end < 0) return this.writeFrame(Frame.HEADERS, flags, streamId, encodeResponseHeaders(reply.status, reply.headers, this.answerFields));
    this.frameHeader(Frame.HEADERS, flags, streamId, end - at - FRAME_HEADER);
  }

  /** Queues a frame whose payload is one 32-bit number (WINDOW_UPDATE, RST_STREAM). */
  private writeUint32Frame(type: Frame, streamId: number, value: number): void {
    if (this.closed) return;
    const at = this.frameHeader(type, 0, streamId, 4);
    this.slab.writeUInt32BE(value, at + FRAME_HEADER);
  }

  /** Makes sure `size` more bytes fit in the output slab. */
  private makeRoom(size: number): void {
    if (this.slabEnd + size <= this.slab.length) return;
    // The slab is full: what is not flushed yet leaves now, and a new slab begins. (Moving it
    // into a larger slab instead copied the whole turn's output again for every frame past the
    // first 16 KiB: a client that made Veil answer 40 KiB in one turn cost it 15 slabs a write
    // and over 100 MB of RSS in seconds.)
    this.writeOut();
    this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, size));
    this.slabStart = 0;
    this.slabEnd = 0;
  }

  /**
   * Makes room for a frame in the output, writes its header, and returns where the frame
   * starts (a payload already written after it, as writeHeaders does, stays where it is).
   */
  private frameHeader(type: Frame, flags: number, streamId: number, length: number): number {
    const size = FRAME_HEADER + length;
    this.makeRoom(size);
    const slab = this.slab;
    const at = this.slabEnd;
    slab[at] = length >>> 16;
    slab[at + 1] = (length >>> 8) & 0xff;
    slab[at + 2] = length & 0xff;
    slab[at + 3] = type;
    slab[at + 4] = flags;
    slab.writeUInt32BE(streamId, at + 5);
    this.slabEnd = at + size;
    if (!this.flushScheduled) {
      // Everything written while this turn of the event loop lasts (answers from the cache
      // resolve in it) goes out in one write.
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
    return at;
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (!this.closed) this.writeOut();
  };

  /** Hands what is written and not flushed yet to the socket. */
  private writeOut(): void {
    if (this.slabEnd === this.slabStart) return;
    const bytes = this.slab.subarray(this.slabStart, this.slabEnd);
    this.slabStart = this.slabEnd; // the next frames go after these, never over them
    this.socket.write(bytes);
    // A client that does not read its answers is not read either, until it catches up.
    if (this.socket.writableLength > WRITE_HIGH_WATER) this.socket.pause();
  }

  private dropSlab(): void {
    this.slab = EMPTY;
    this.slabStart = 0;
    this.slabEnd = 0;
  }

  /** Idle means no stream open: PINGs, SETTINGS and empty frames do not keep a connection. */
  private readonly checkIdle = (): void => {
    this.idleTimer = null;
    if (this.closed) return;
    const idleFor = performance.now() - this.idleSince;
    if (this.streams.size === 0 && idleFor >= this.options.idleTimeoutMs - 1) return this.fail(new ConnectionError(H2Error.NO_ERROR, 'idle'));
    // A connection with nothing open at this check lets its output slab go (a new one is made
    // when it writes again). One in use keeps it: dropping it at every flush that leaves no
    // stream open cost a 16 KiB allocation a flush.
    if (this.streams.size === 0 && this.slabEnd === this.slabStart) this.dropSlab();
    const wait = this.streams.size === 0 ? this.options.idleTimeoutMs - idleFor : this.options.idleTimeoutMs;
    this.idleTimer = setTimeout(this.checkIdle, wait);
  };

  private endIfDone(): void {
    if (!this.goingAway || this.streams.size > 0 || this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.end();
    this.release();
  }

  /** Connection error: GOAWAY with its code, then close (RFC 9113 §5.4.1). */
  private fail(error: ConnectionError): void {
    if (this.closed) return;
    this.writeFrame(Frame.GOAWAY, 0, 0, goawayPayload(this.lastStreamId, error.code));
    this.flush();
    this.closed = true;
    this.socket.end();
    // Nothing more is read (nor decrypted); a client that never closes its side is not waited for.
    this.socket.pause();
    this.release();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private onClose(): void {
    this.closed = true;
    this.release();
  }

  /** The connection is done: streams are cut off and every timer and buffer is let go. */
  private release(): void {
    this.dropSlab();
    this.reader.clear();
    this.endBlock();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    for (const stream of this.streams.values()) {
      stream.reset = true;
      this.settleBody(stream, bodyCutOff());
      this.clearTimer(stream);
      stream.body = EMPTY;
      if (stream.pending) this.pendingBytes -= stream.pending.length;
      stream.pending = null;
    }
    this.waitingForWindow.clear();
  }
}

/**
 * The content-length a request declares (-1 for none), or null when it is malformed (§8.3):
 * pseudo-fields unknown, repeated, missing or after a regular field; empty names; fields of
 * HTTP/1 connections. (Upper-case names and NUL, CR, LF in values the HPACK decoder finds, as
 * it decodes each string: DecodedBlock.invalid.)
 */
function requestProblem(headers: HeaderList): number | null {
  let regularSeen = false;
  let pseudo = 0;
  let path = false;
  let connect = false;
  let contentLength = -1;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i]!;
    const name = field[0];
    const value = field[1];
    if (name.length === 0) return null;
    if (name.charCodeAt(0) === 0x3a /* : */) {
      const bit = pseudoBit(name);
      if (regularSeen || bit === 0 || pseudo & bit) return null;
      pseudo |= bit;
      if (bit === METHOD) connect = value === 'CONNECT';
      else if (bit === PATH) path = value.length > 0;
      continue;
    }
    regularSeen = true;
    if (isConnectionField(name) || (name === 'te' && value !== 'trailers')) return null;
    if (name === 'content-length') {
      if (!isDecimal(value) || contentLength >= 0) return null;
      contentLength = Number(value);
    }
  }
  if (!(pseudo & METHOD) || (!connect && (!path || !(pseudo & SCHEME)))) return null;
  return contentLength;
}

/** Header fields that belong to HTTP/1 connections and make an HTTP/2 request malformed (§8.2.2). */
function isConnectionField(name: string): boolean {
  // A switch, not a Set: names decoded from literals are new strings, which a Set must hash.
  switch (name) {
    case 'connection':
    case 'proxy-connection':
    case 'keep-alive':
    case 'transfer-encoding':
    case 'upgrade':
      return true;
    default:
      return false;
  }
}

/** A request pseudo-field's bit, or 0 for a name that is none. */
function pseudoBit(name: string): number {
  switch (name) {
    case ':method':
      return METHOD;
    case ':scheme':
      return SCHEME;
    case ':authority':
      return AUTHORITY;
    case ':path':
      return PATH;
    default:
      return 0;
  }
}

/** 1 to 10 decimal digits (as /^\d{1,10}$/). */
function isDecimal(text: string): boolean {
  if (text.length === 0 || text.length > 10) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

