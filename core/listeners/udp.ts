/** `udp://IP:PORT`: plain DNS over UDP. */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { ListenError } from '../errors.js';
import type { Endpoint } from '../net/address.js';
import { ipLiteralLookup } from '../net/ip-lookup.js';
import type { Listener, ListenerEnvironment, QueryHandler, TransportDefinition } from './listener.js';
import { DATAGRAM_OPTION_NAMES, parseDatagramLimits, type DatagramLimits } from './options.js';

/**
 * The socket's receive buffer: a burst of queries waits there while the event loop is busy.
 * Linux's default (208 KiB) holds about 270 small datagrams and drops the rest of a burst
 * unseen; the kernel caps what we ask at net.core.rmem_max.
 */
const RECEIVE_BUFFER_BYTES = 4 << 20;

export class UdpListener implements Listener {
  private socket: dgram.Socket | null = null;
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
    const socket = dgram.createSocket({
      type: isIPv6(this.endpoint.host) ? 'udp6' : 'udp4',
      reusePort: this.env.reusePort,
      recvBufferSize: RECEIVE_BUFFER_BYTES,
      lookup: ipLiteralLookup,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(new ListenError(`cannot listen on ${this.endpoint.text}: ${err.message}`, { cause: err })));
      socket.bind(this.endpoint.port, this.endpoint.host, () => {
        socket.removeAllListeners('error');
        resolve();
      });
    });
    socket.on('error', (err) => this.env.logger.warn(`${this.endpoint.text}: ${err.message}`));
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.socket = socket;
    const address = socket.address();
    this.boundAddress = `udp://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    this.limits = options as DatagramLimits;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
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
    const info = {
      client: { address: rinfo.address, port: rinfo.port, family: rinfo.family as 'IPv4' | 'IPv6' },
      transport: 'udp',
      datagram: true,
    };
    this.handler!(msg, info).then(
      (answer) => {
        if (answer && this.socket) this.socket.send(answer, rinfo.port, rinfo.address, () => {});
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
    if (!this.socket) return;
    this.stopping = true;
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.whenIdle = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
    }
    const socket = this.socket;
    this.socket = null;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

export const udpTransport: TransportDefinition<DatagramLimits> = {
  scheme: 'udp',
  defaultPort: 53,
  optionNames: DATAGRAM_OPTION_NAMES,
  parseOptions: (_endpoint, options) => parseDatagramLimits(options),
  create: (endpoint, options, env) => new UdpListener(endpoint, options, env),
};
