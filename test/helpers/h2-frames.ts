/**
 * HTTP/2 written by hand (RFC 9113 §4.1), for tests and fuzz seeds that misbehave on purpose:
 * frames, header blocks of literals, a raw client that collects the server's frames, and Veil's
 * HTTP/2 server connection on a listener of the test's own.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { H2ServerConnection, type H2Options } from '../../lib/http2/connection.js';
import { PREFACE } from '../../lib/http2/protocol.js';
import { encodeHuffman } from '../../lib/http2/huffman.js';
import type { HttpReply, RequestHandler } from '../../lib/http2/message.js';

export const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 };
export const E = { NO_ERROR: 0, PROTOCOL_ERROR: 1, FLOW_CONTROL_ERROR: 3, STREAM_CLOSED: 5, FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 0xb };

export function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** A socket that keeps what the connection writes and never blocks: enough of net.Socket for the fuzzers. */
export class RecordingSocket extends EventEmitter {
  writableLength = 0;
  readonly chunks: Buffer[] = [];
  write(bytes: Buffer): boolean {
    this.chunks.push(bytes);
    return true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(): this {
    return this;
  }
  destroy(): this {
    return this;
  }
}

export const text = (status: number, body: string): HttpReply => ({ status, headers: { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }, body: Buffer.from(body) });

/** A 4-byte payload: a WINDOW_UPDATE increment or an RST_STREAM code. */
export const u32 = (value: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value, 0);
  return b;
};

/** A header block of literals without indexing (raw or Huffman strings). */
export function block(fields: [string, string][], huffman = false): Buffer {
  const parts: Buffer[] = [];
  const str = (s: string) => {
    const bytes = huffman ? encodeHuffman(s) : Buffer.from(s, 'latin1');
    return Buffer.concat([integer(huffman ? 0x80 : 0, 7, bytes.length), bytes]);
  };
  for (const [name, value] of fields) parts.push(Buffer.from([0x00]), str(name), str(value));
  return Buffer.concat(parts);
}

export function integer(flags: number, prefix: number, value: number): Buffer {
  const max = (1 << prefix) - 1;
  if (value < max) return Buffer.from([flags | value]);
  const out = [flags | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out.push(value);
  return Buffer.from(out);
}

export interface H2TestServer {
  port: number;
  connections: H2ServerConnection[];
  sockets: net.Socket[];
  close(): Promise<void>;
}

/** Veil's HTTP/2 server connection on a plain TCP listener of the test's own. */
export async function startServer(options: Partial<H2Options>, handler: RequestHandler): Promise<H2TestServer> {
  const connections: H2ServerConnection[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    sockets.push(socket);
    connections.push(new H2ServerConnection(socket, { maxStreams: 100, maxHeaderListSize: 8192, idleTimeoutMs: 5000, requestTimeoutMs: 5000, ...options }, handler));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Echoes what the request was, with its body, as JSON. */
export const echo: RequestHandler = (request, respond) => {
  void (async () => {
    const body = request.method === 'POST' ? await request.readBody(65535) : Buffer.alloc(0);
    if (!Buffer.isBuffer(body)) return respond(body);
    const headers: Record<string, string | undefined> = {};
    for (const name of ['x-a', 'x-b', 'x-long', 'user-agent']) headers[name] = request.header(name);
    respond(text(200, JSON.stringify({ method: request.method, path: request.path, headers, body: body.toString('latin1') })));
  })();
};

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** A client that writes frames by hand and collects the server's. */
export class RawClient {
  readonly socket: net.Socket;
  readonly frames: RawFrame[] = [];
  closed = false;
  private buffered = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.socket.on('error', () => {});
    this.socket.on('data', (chunk) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.length < 9 + length) break;
        this.frames.push({ type: this.buffered[3]!, flags: this.buffered[4]!, stream: this.buffered.readUInt32BE(5) & 0x7fffffff, payload: this.buffered.subarray(9, 9 + length) });
        this.buffered = this.buffered.subarray(9 + length);
      }
      this.wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Connected over plain TCP, before the preface. */
  static async connect(port: number): Promise<RawClient> {
    const client = new RawClient(net.connect(port, '127.0.0.1'));
    await new Promise((resolve) => client.socket.once('connect', resolve));
    return client;
  }

  /** Connected, preface and SETTINGS sent; over TLS (ALPN h2) when `ca` is given. */
  static async open(port: number, settings: Buffer = Buffer.alloc(0), ca?: string): Promise<RawClient> {
    let client: RawClient;
    if (ca) {
      client = new RawClient(tls.connect({ host: '127.0.0.1', port, ca, servername: 'dns.test', ALPNProtocols: ['h2'] }));
      await new Promise((resolve) => client.socket.once('secureConnect', resolve));
    } else {
      client = await RawClient.connect(port);
    }
    client.write(PREFACE);
    client.send(T.SETTINGS, 0, 0, settings);
    return client;
  }

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  send(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): boolean {
    return this.write(h2Frame(type, flags, stream, payload));
  }

  request(stream: number, fields: [string, string][], endStream = true): void {
    this.send(T.HEADERS, 0x4 | (endStream ? 0x1 : 0), stream, block(fields));
  }

  /** Waits (at most `ms`) until a frame matches; resolves with it, or null. */
  async waitFor(match: (f: RawFrame) => boolean, ms = 3000): Promise<RawFrame | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (this.closed || Date.now() > deadline) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async goaway(ms = 3000): Promise<number | null> {
    const frame = await this.waitFor((f) => f.type === T.GOAWAY, ms);
    return frame ? frame.payload.readUInt32BE(4) : null;
  }

  async closedWithin(ms = 3000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }

  /** The answer body on a stream, once its END_STREAM came. */
  async body(stream: number, ms = 3000): Promise<string | null> {
    const end = await this.waitFor((f) => f.stream === stream && (f.type === T.DATA || f.type === T.HEADERS) && (f.flags & 1) === 1, ms);
    if (!end) return null;
    return Buffer.concat(this.frames.filter((f) => f.stream === stream && f.type === T.DATA).map((f) => f.payload)).toString();
  }

  reset(stream: number): number | null {
    const frame = this.frames.find((f) => f.type === T.RST_STREAM && f.stream === stream);
    return frame ? frame.payload.readUInt32BE(0) : null;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const GET = (path = '/dns-query', extra: [string, string][] = []): [string, string][] => [[':method', 'GET'], [':scheme', 'https'], [':path', path], [':authority', 'dns.test'], ...extra];

