/**
 * A UDP listener and a TCP listener on the same address and port, for schemes that serve both
 * under one URL (`dnscrypt://`, `relay://`). With port 0 the UDP port is taken first and TCP
 * binds the same number, trying again with another when TCP's is in use.
 */
import type { Endpoint } from '../net/address.js';
import type { ListenerEnvironment, QueryHandler } from './listener.js';
import type { DatagramLimits } from './options.js';
import type { StreamLimits } from './stream-sessions.js';
import { TcpListener } from './tcp.js';
import { UdpListener } from './udp.js';

export interface ListenerPair {
  /** `scheme://IP:PORT` as bound. */
  boundAddress(scheme: string): string;
  readonly port: number;
  update(datagram: DatagramLimits, stream: StreamLimits): void;
  stop(graceMs: number): Promise<void>;
}

export interface PairHandlers {
  datagram: QueryHandler;
  stream: QueryHandler;
}

const ATTEMPTS = 20;

function withScheme(endpoint: Endpoint, scheme: string, port: number): Endpoint {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return { ...endpoint, scheme, port, text: `${scheme}://${host}:${port}` };
}

export async function bindPair(endpoint: Endpoint, datagram: DatagramLimits, stream: StreamLimits, env: ListenerEnvironment, handlers: PairHandlers): Promise<ListenerPair> {
  for (let attempt = 1; ; attempt++) {
    const udp = new UdpListener(withScheme(endpoint, 'udp', endpoint.port), datagram, env);
    await udp.start(handlers.datagram);
    const port = Number(/:(\d+)$/.exec(udp.boundAddress)![1]);
    const tcp = new TcpListener(withScheme(endpoint, 'tcp', port), stream, env);
    try {
      await tcp.start(handlers.stream);
    } catch (err) {
      await udp.stop(0);
      if (endpoint.port !== 0 || attempt >= ATTEMPTS) throw err;
      continue;
    }
    return {
      port,
      boundAddress: (scheme) => udp.boundAddress.replace(/^udp:/, `${scheme}:`),
      update(nextDatagram, nextStream) {
        udp.update(nextDatagram);
        tcp.update(nextStream);
      },
      async stop(graceMs) {
        await Promise.all([udp.stop(graceMs), tcp.stop(graceMs)]);
      },
    };
  }
}
