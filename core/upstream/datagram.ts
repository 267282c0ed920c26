/**
 * Exchanges over UDP with one address, for every protocol that sends datagrams upstream (plain
 * DNS, DNSCrypt, DNSCrypt through a relay). A few connected sockets (the kernel then drops
 * datagrams from any other source, and ICMP "port unreachable" surfaces as an error at once);
 * each exchange waits under a key the protocol derives from its answer (the DNS ID, a DNSCrypt
 * nonce), and an answer is taken only when the exchange's `accept` says it is the one, so forged
 * or stray datagrams are ignored while waiting.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';

/** Turns a datagram into the exchange's result, or null to keep waiting for another. */
export type Accept<T> = (packet: Buffer) => T | null;

interface Pending {
  accept: Accept<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Exchanges in flight per socket; past that many on every socket the address is overloaded. */
const MAX_PENDING_PER_SOCKET = 4096;

export class DatagramSocket<K> {
  readonly pending = new Map<K, Pending>();
  private readonly socket: dgram.Socket;
  private readonly ready: Promise<void>;
  private connected = false;
  closed = false;

  constructor(
    host: string,
    port: number,
    private readonly label: string,
    private readonly keyOf: (packet: Buffer) => K | null,
    private readonly onDead: (socket: DatagramSocket<K>) => void,
  ) {
    this.socket = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg) => this.onMessage(msg));
    this.socket.on('error', (err) => this.fail(new UpstreamUnavailableError(`${label}: ${err.message}`, { cause: err })));
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => {
        this.connected = true;
        resolve();
      });
      this.socket.once('error', reject);
    });
    this.ready.catch(() => {});
    this.socket.connect(port, host);
  }

  /** Sends `packet`; resolves with what `accept` makes of the first datagram it takes under `key`. */
  async send<T>(packet: Buffer, key: K, accept: Accept<T>, timeoutMs: number): Promise<T> {
    // Once connected, no await: one less turn of the event loop per query.
    if (!this.connected) await this.ready;
    if (this.closed) throw new UpstreamUnavailableError(`${this.label}: socket closed`);
    if (this.pending.has(key)) throw new UpstreamUnavailableError(`${this.label}: an exchange with the same key is in flight`);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new UpstreamTimeoutError(`${this.label}: no answer within ${Math.round(timeoutMs)}ms`));
      }, timeoutMs);
      this.pending.set(key, { accept, resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.send(packet, (err) => {
        if (!err) return;
        const entry = this.pending.get(key);
        if (!entry) return;
        this.pending.delete(key);
        clearTimeout(entry.timer);
        reject(new UpstreamUnavailableError(`${this.label}: ${err.message}`, { cause: err }));
      });
    });
  }

  private onMessage(msg: Buffer): void {
    const key = this.keyOf(msg);
    const entry = key === null ? undefined : this.pending.get(key);
    if (!entry) return;
    const result = entry.accept(msg);
    if (result === null) return; // not the answer: keep waiting for the real one
    this.pending.delete(key!);
    clearTimeout(entry.timer);
    entry.resolve(result);
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.close(error);
    this.onDead(this);
  }

  close(error: Error = new UpstreamUnavailableError(`${this.label}: closed`)): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
    this.socket.close();
  }
}

/** Up to `count` sockets to one address, used in turn. */
export class DatagramSockets<K> {
  private sockets: DatagramSocket<K>[] = [];
  private next = 0;
  private stopped = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly label: string,
    private readonly keyOf: (packet: Buffer) => K | null,
    private readonly count = 4,
  ) {}

  /** Exchanges waiting for an answer. */
  get inflight(): number {
    return this.sockets.reduce((sum, s) => sum + s.pending.size, 0);
  }

  /** The socket the next exchange goes on (its `pending` tells which keys are taken). */
  pick(): DatagramSocket<K> {
    if (this.stopped) throw new UpstreamUnavailableError(`${this.label}: stopped`);
    if (this.sockets.length < this.count) {
      const socket = new DatagramSocket<K>(this.host, this.port, this.label, this.keyOf, (dead) => {
        this.sockets = this.sockets.filter((s) => s !== dead);
      });
      this.sockets.push(socket);
      return socket;
    }
    for (let i = 0; i < this.sockets.length; i++) {
      const socket = this.sockets[this.next++ % this.sockets.length]!;
      if (socket.pending.size < MAX_PENDING_PER_SOCKET) return socket;
    }
    // Bounded memory: past this many exchanges in flight, the address is overloaded.
    throw new UpstreamUnavailableError(`${this.label}: ${this.count * MAX_PENDING_PER_SOCKET} queries already in flight`);
  }

  close(): void {
    this.stopped = true;
    for (const socket of this.sockets) socket.close(new UpstreamUnavailableError(`${this.label}: stopped`));
    this.sockets = [];
  }
}
