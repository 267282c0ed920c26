/**
 * A DoH server we script, on loopback: HTTP/2 (and HTTP/1.1 through ALPN), or HTTP/1.1 only.
 * Each request is answered as the test says: a status, a content type, a body, a delay, no
 * answer at all, a GOAWAY after the answer or instead of it, or the stream reset.
 */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { readId } from '../../core/dns/wire.js';

export interface FakeRequest {
  method: string;
  path: string;
  headers: http2.IncomingHttpHeaders;
  query: Buffer;
}

export interface FakeReply {
  status?: number;
  type?: string;
  body?: Buffer;
  /** Send GOAWAY after this answer. */
  goaway?: boolean;
  /** Never answer. */
  hang?: boolean;
  /** Answer after this long. */
  delayMs?: number;
  /** Instead of answering: GOAWAY naming no stream as processed, so the request must go elsewhere. */
  goawayFirst?: boolean;
  /** Instead of answering: reset the stream with REFUSED_STREAM. */
  refuse?: boolean;
}

export interface FakeDoh {
  port: number;
  requests: FakeRequest[];
  /** HTTP/2 sessions or TLS connections accepted. */
  connections: number;
  /** The most requests it held unanswered at once. */
  maxInFlight: number;
  behave(fn: (req: FakeRequest) => FakeReply): void;
  close(): Promise<void>;
}

/** An answer to `query`: A 203.0.113.1 (or `address`), TTL 60. */
export function answerFor(query: Buffer, address = '203.0.113.1'): Buffer {
  const question = dnsPacket.decode(query).questions![0]!;
  return dnsPacket.encode({ id: readId(query), type: 'response', flags: dnsPacket.RECURSION_DESIRED, questions: [question], answers: [{ type: 'A', name: question.name, ttl: 60, data: address }] });
}

/** A DoH server we script: HTTP/2 (and HTTP/1.1 through ALPN), or HTTP/1.1 only. */
/** `maxConcurrentStreams`: the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS it announces (and enforces by refusing). */
export async function startFakeDoh(certs: { cert: string; key: string }, options: { http1Only?: boolean; maxConcurrentStreams?: number } = {}): Promise<FakeDoh> {
  const requests: FakeRequest[] = [];
  let behaviour: (req: FakeRequest) => FakeReply = () => ({});
  let connections = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const open = new Set<net.Socket>();
  const handle = (req: http2.Http2ServerRequest | import('node:http').IncomingMessage, res: http2.Http2ServerResponse | import('node:http').ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://x');
      const query = req.method === 'GET' ? Buffer.from(url.searchParams.get('dns') ?? '', 'base64url') : Buffer.concat(chunks);
      const request = { method: req.method ?? '', path: req.url ?? '', headers: req.headers as http2.IncomingHttpHeaders, query };
      requests.push(request);
      const reply = behaviour(request);
      if (reply.hang) return;
      if ('stream' in req && reply.goawayFirst) return req.stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, 0);
      if ('stream' in req && reply.refuse) return req.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      const body = reply.body ?? answerFor(query);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const send = (): void => {
        inFlight--;
        (res as import('node:http').ServerResponse).writeHead(reply.status ?? 200, { 'content-type': reply.type ?? 'application/dns-message', 'content-length': body.length });
        res.end(body);
        if (reply.goaway && 'stream' in req) req.stream.session?.goaway();
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  };
  const key = readFileSync(certs.key);
  const cert = readFileSync(certs.cert);
  const server = options.http1Only
    ? https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }, handle)
    : http2.createSecureServer({ key, cert, allowHTTP1: true, ...(options.maxConcurrentStreams ? { settings: { maxConcurrentStreams: options.maxConcurrentStreams } } : {}) }, handle);
  server.on('secureConnection', () => connections++);
  server.on('connection', (s: net.Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    get connections() {
      return connections;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    behave(fn) {
      behaviour = fn;
    },
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

