/**
 * A scriptable DNS server on loopback, UDP and TCP on the same port, for tests of upstreams and
 * of whole servers. The handler sees each query (wire and decoded) and returns the answer's
 * wire bytes, or null to stay silent.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { FrameReader, frame } from '../dns/framing.js';

export interface FakeQuery {
  wire: Buffer;
  packet: dnsPacket.Packet;
  transport: 'udp' | 'tcp';
  from: { address: string; port: number };
}

export type FakeHandler = (query: FakeQuery) => Buffer | null | Promise<Buffer | null>;

export interface FakeDns {
  host: string;
  port: number;
  /** Every query received, in order. */
  queries: FakeQuery[];
  setHandler(handler: FakeHandler): void;
  close(): Promise<void>;
}

/** An answer echoing the query's ID and question, with the given records. */
export function answerFor(query: FakeQuery, answers: dnsPacket.Answer[], options: { rcode?: string; flags?: number } = {}): Buffer {
  return dnsPacket.encode({
    id: query.packet.id,
    type: 'response',
    flags: (options.flags ?? dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE) | rcodeBits(options.rcode),
    questions: query.packet.questions,
    answers,
  });
}

function rcodeBits(rcode: string | undefined): number {
  const codes: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
  return codes[rcode ?? 'NOERROR'] ?? 0;
}

/** Answers every A query with 203.0.113.1 and anything else with an empty NOERROR. */
export const defaultHandler: FakeHandler = (query) => {
  const q = query.packet.questions?.[0];
  if (q?.type === 'A') return answerFor(query, [{ type: 'A', name: q.name, ttl: 300, data: '203.0.113.1' }]);
  return answerFor(query, []);
};

export async function startFakeDns(handler: FakeHandler = defaultHandler, host = '127.0.0.1'): Promise<FakeDns> {
  let current = handler;
  const queries: FakeQuery[] = [];
  const sockets = new Set<net.Socket>();

  const handle = async (wire: Buffer, transport: 'udp' | 'tcp', from: { address: string; port: number }): Promise<Buffer | null> => {
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(wire);
    } catch {
      return null;
    }
    const query = { wire, packet, transport, from };
    queries.push(query);
    return current(query);
  };

  // Bind UDP on a free port, then TCP on the same one (retry if TCP's is taken).
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => resolve());
    });
    const port = udp.address().port;
    const tcp = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      const reader = new FrameReader();
      socket.on('data', (chunk: Buffer) => {
        for (const msg of reader.push(chunk)) {
          void handle(msg, 'tcp', { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }).then((answer) => {
            if (answer && !socket.destroyed) socket.write(frame(answer));
          });
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    const bound = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, host, () => resolve(true));
    });
    if (!bound) {
      udp.close();
      continue;
    }
    udp.on('message', (msg, rinfo) => {
      void handle(msg, 'udp', { address: rinfo.address, port: rinfo.port }).then((answer) => {
        if (answer) udp.send(answer, rinfo.port, rinfo.address);
      });
    });
    return {
      host,
      port,
      queries,
      setHandler(next) {
        current = next;
      },
      async close() {
        for (const socket of sockets) socket.destroy();
        await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
      },
    };
  }
  throw new Error('could not bind a fake DNS server');
}
