/**
 * A controllable proxy on loopback between Veil and an upstream, for fault injection: UDP
 * datagrams and TCP (or TLS, which it passes through as bytes) streams go through a `Fault`
 * that may drop, delay, change or replace them, reset a connection mid-answer, or close idle
 * connections from the far side. Tests change the fault while traffic flows.
 */
import dgram from 'node:dgram';
import net from 'node:net';

/** What becomes of a chunk: passed (maybe changed), dropped, the connection reset, or part written then reset. */
export type AnswerFate = Buffer | null | 'reset' | { thenReset: Buffer };

export interface Fault {
  /** A UDP datagram or a chunk of a TCP stream from the upstream to Veil. */
  answer?(chunk: Buffer, transport: 'udp' | 'tcp'): AnswerFate | Promise<AnswerFate>;
  /** A datagram or chunk from Veil to the upstream. */
  query?(chunk: Buffer, transport: 'udp' | 'tcp'): Buffer | null | Promise<Buffer | null>;
  /** Close TCP connections that carried nothing for this long, from the upstream's side. */
  idleCloseMs?: number;
}

export interface FaultProxy {
  port: number;
  /** Queries (UDP datagrams, TCP chunks) that reached the proxy. */
  seen: { udp: number; tcp: number; connections: number };
  /** Every byte Veil sent through the proxy (UDP and TCP), to check nothing went in plaintext. */
  sent: Buffer[];
  setFault(fault: Fault): void;
  close(): Promise<void>;
}

export const pass: Fault = {};
export const dropAll: Fault = { answer: () => null };
export const delay = (ms: number): Fault => ({ answer: (chunk) => new Promise((r) => setTimeout(() => r(chunk), ms)) });

export async function startFaultProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<FaultProxy> {
  let fault: Fault = pass;
  const seen = { udp: 0, tcp: 0, connections: 0 };
  const sent: Buffer[] = [];
  const sockets = new Set<net.Socket>();

  // TCP first on a free port, then UDP on the same port.
  const tcp = net.createServer((client) => {
    seen.connections++;
    sockets.add(client);
    const server = net.connect(upstreamPort, upstreamHost);
    sockets.add(server);
    let idleTimer: NodeJS.Timeout | null = null;
    const touch = (): void => {
      if (!fault.idleCloseMs) return;
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        client.end();
        server.destroy();
      }, fault.idleCloseMs);
    };
    touch();
    const close = (): void => {
      if (idleTimer) clearTimeout(idleTimer);
      client.destroy();
      server.destroy();
    };
    client.on('data', async (chunk: Buffer) => {
      seen.tcp++;
      sent.push(chunk);
      touch();
      const out = fault.query ? await fault.query(chunk, 'tcp') : chunk;
      if (out && !server.destroyed) server.write(out);
    });
    server.on('data', async (chunk: Buffer) => {
      touch();
      const out = fault.answer ? await fault.answer(chunk, 'tcp') : chunk;
      if (out === 'reset' || (out && 'thenReset' in out)) {
        if (out !== 'reset' && !client.destroyed) client.write(out.thenReset);
        // let the partial write leave before the RST
        setImmediate(() => {
          client.resetAndDestroy();
          server.destroy();
        });
        return;
      }
      if (out && !client.destroyed) client.write(out);
    });
    client.on('error', close);
    server.on('error', close);
    client.on('close', close);
    server.on('close', close);
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as net.AddressInfo).port;

  const udp = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', () => resolve());
  });
  const upstreamSockets = new Map<string, dgram.Socket>();
  udp.on('message', async (msg, rinfo) => {
    seen.udp++;
    sent.push(msg);
    const key = `${rinfo.address}:${rinfo.port}`;
    let socket = upstreamSockets.get(key);
    if (!socket) {
      socket = dgram.createSocket('udp4');
      socket.on('message', async (answer) => {
        const out = fault.answer ? await fault.answer(answer, 'udp') : answer;
        if (Buffer.isBuffer(out)) udp.send(out, rinfo.port, rinfo.address);
      });
      socket.on('error', () => {});
      upstreamSockets.set(key, socket);
    }
    const out = fault.query ? await fault.query(msg, 'udp') : msg;
    if (out) socket.send(out, upstreamPort, upstreamHost);
  });

  return {
    port,
    seen,
    sent,
    setFault(next) {
      fault = next;
    },
    async close() {
      for (const s of sockets) s.destroy();
      for (const s of upstreamSockets.values()) s.close();
      await Promise.all([new Promise<void>((r) => tcp.close(() => r())), new Promise<void>((r) => udp.close(() => r()))]);
    },
  };
}
