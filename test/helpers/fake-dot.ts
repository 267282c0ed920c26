/**
 * A scriptable DNS-over-TLS server on loopback for tests of the dot upstream: it records every
 * query, every handshake (and whether it resumed a session), every failed handshake, and the
 * bytes that arrived on connections whose handshake never completed.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import dnsPacket from 'dns-packet';
import { FrameReader, frame } from '../../core/dns/framing.js';
import { defaultHandler, type FakeHandler, type FakeQuery } from '../../core/testing/fake-dns.js';

export interface FakeDot {
  host: string;
  port: number;
  queries: FakeQuery[];
  /** Handshakes completed, and how many of them resumed a session. */
  handshakes: number;
  resumed: number;
  /** Handshakes that failed (the client rejected us, or timed out). */
  failedHandshakes: number;
  /** Connections open now. */
  readonly open: number;
  setHandler(handler: FakeHandler): void;
  /** Closes every open connection; keeps listening. */
  dropConnections(): void;
  close(): Promise<void>;
}

export interface FakeDotOptions {
  /** PEM files of the certificate chain and key. */
  cert: string;
  key: string;
  port?: number;
  host?: string;
}

export async function startFakeDot(options: FakeDotOptions, handler: FakeHandler = defaultHandler): Promise<FakeDot> {
  let current = handler;
  const sockets = new Set<tls.TLSSocket>();
  const state = { handshakes: 0, resumed: 0, failedHandshakes: 0 };
  const queries: FakeQuery[] = [];
  const server = tls.createServer({ cert: readFileSync(options.cert), key: readFileSync(options.key) }, (socket) => {
    state.handshakes++;
    if (socket.isSessionReused()) state.resumed++;
    sockets.add(socket);
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) => {
      for (const wire of reader.push(chunk)) {
        let packet: dnsPacket.Packet;
        try {
          packet = dnsPacket.decode(wire);
        } catch {
          continue;
        }
        const query: FakeQuery = { wire, packet, transport: 'tcp', from: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 } };
        queries.push(query);
        void Promise.resolve(current(query)).then((answer) => {
          if (answer && !socket.destroyed) socket.write(frame(answer));
        });
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => state.failedHandshakes++);
  // every TCP connection, handshake done or not, so that close() ends them all at once
  const raw = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    raw.add(socket);
    socket.on('close', () => raw.delete(socket));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  return {
    host,
    port: (server.address() as { port: number }).port,
    queries,
    get handshakes() {
      return state.handshakes;
    },
    get resumed() {
      return state.resumed;
    },
    get failedHandshakes() {
      return state.failedHandshakes;
    },
    get open() {
      return sockets.size;
    },
    setHandler(next) {
      current = next;
    },
    dropConnections() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      for (const socket of raw) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
