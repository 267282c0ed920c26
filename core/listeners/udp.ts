/**
 * `udp://IP:PORT`: plain DNS over UDP. Datagrams come in batches through the native addon
 * (core/net/udp-batch.ts) where it is built, one at a time through node:dgram elsewhere.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { ClientAddress } from '../context.js';
import { ListenError } from '../errors.js';
import type { Endpoint } from '../net/address.js';
import { ipLiteralLookup } from '../net/ip-lookup.js';
import { BatchedUdpSocket, udpBatchAddon, type BatchPeer } from '../net/udp-batch.js';
import type { Listener, ListenerEnvironment, QueryHandler, TransportDefinition } from './listener.js';
import { DATAGRAM_OPTION_NAMES, parseDatagramLimits, type DatagramLimits } from './options.js';

/**
 * The socket's receive buffer: a burst of queries waits there while the event loop is busy.
 * Linux's default (208 KiB) holds about 270 small datagrams and drops the rest of a burst
 * unseen; the kernel caps what we ask at net.core.rmem_max.
 */
const RECEIVE_BUFFER_BYTES = 4 << 20;

/** A bound UDP socket as the listener uses it. */
interface DatagramPort {
  /** The bound port (the real one when the configuration said 0). */
  readonly port: number;
  /** Sends an answer to the client a datagram came from. */
  reply(answer: Buffer, to: ClientAddress): void;
  close(): Promise<void>;
}

type OnDatagram = (message: Buffer, client: ClientAddress) => void;

async function openDgramPort(endpoint: Endpoint, reusePort: boolean, onDatagram: OnDatagram, onError: (err: Error) => void): Promise<DatagramPort> {
  const socket = dgram.createSocket({
    type: isIPv6(endpoint.host) ? 'udp6' : 'udp4',
    reusePort,
    recvBufferSize: RECEIVE_BUFFER_BYTES,
    lookup: ipLiteralLookup,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(endpoint.port, endpoint.host, () => {
      socket.removeAllListeners('error');
      resolve();
    });
  });
  socket.on('error', onError);
  socket.on('message', (message, rinfo) => onDatagram(message, { address: rinfo.address, port: rinfo.port, family: rinfo.family as 'IPv4' | 'IPv6' }));
  return {
    port: socket.address().port,
    reply: (answer, to) => socket.send(answer, to.port, to.address, () => {}),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function openBatchedPort(endpoint: Endpoint, reusePort: boolean, onDatagram: OnDatagram): DatagramPort | null {
  const addon = udpBatchAddon();
  if (!addon || endpoint.host.includes('%')) return null; // scoped IPv6 addresses: node:dgram
  const socket = new BatchedUdpSocket(addon, endpoint.host, endpoint.port, reusePort, RECEIVE_BUFFER_BYTES, onDatagram);
  return {
    port: socket.port,
    reply: (answer, to) => socket.send(answer, to as BatchPeer),
    close: async () => socket.close(),
  };
}

export class UdpListener implements Listener {
  private port: DatagramPort | null = null;
  private handler: QueryHandler | null = null;
  private inflight = 0;
  private stopping = false;
  private overloaded = false;
  private whenIdle: (() => void) | null = null;
  boundAddress = '';

  constructor(
    readonly endpoint: Endpoint,
    private limits: DatagramLimits,
    private readonly env: ListenerEnvironment,
  ) {}

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    const onDatagram: OnDatagram = (message, client) => this.onMessage(message, client);
    try {
      this.port =
        openBatchedPort(this.endpoint, this.env.reusePort, onDatagram) ??
        (await openDgramPort(this.endpoint, this.env.reusePort, onDatagram, (err) => this.env.logger.warn(`${this.endpoint.text}: ${err.message}`)));
    } catch (err) {
      throw new ListenError(`cannot listen on ${this.endpoint.text}: ${(err as Error).message}`, { cause: err });
    }
    const host = this.endpoint.host;
    this.boundAddress = `udp://${isIPv6(host) ? `[${host}]` : host}:${this.port.port}`;
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    this.limits = options as DatagramLimits;
  }

  private onMessage(msg: Buffer, client: ClientAddress): void {
    if (this.stopping) return;
    if (this.inflight >= this.limits.maxInflight) {
      // Bounded work: past the limit a datagram is dropped, the client will retry.
      if (!this.overloaded) {
        this.overloaded = true;
        this.env.logger.warn(`${this.endpoint.text}: ${this.limits.maxInflight} queries in flight (max_inflight); dropping until some finish`);
      }
      return;
    }
    this.overloaded = false;
    this.inflight++;
    const info = { client, transport: 'udp', datagram: true };
    this.handler!(msg, info).then(
      (answer) => {
        if (answer && this.port) this.port.reply(answer, client);
        this.done();
      },
      () => this.done(),
    );
  }

  private done(): void {
    this.inflight--;
    if (this.inflight === 0 && this.whenIdle) this.whenIdle();
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.port) return;
    this.stopping = true;
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.whenIdle = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
    }
    const port = this.port;
    this.port = null;
    await port.close();
  }
}

export const udpTransport: TransportDefinition<DatagramLimits> = {
  scheme: 'udp',
  defaultPort: 53,
  optionNames: DATAGRAM_OPTION_NAMES,
  parseOptions: (_endpoint, options) => parseDatagramLimits(options),
  create: (endpoint, options, env) => new UdpListener(endpoint, options, env),
};
