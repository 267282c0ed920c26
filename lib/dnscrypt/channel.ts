/**
 * Carrying DNSCrypt packets to one address: the server itself, or a relay with the relay
 * header in front of every packet. UDP goes out on a few connected sockets (the kernel drops
 * datagrams from anyone else); an answer is matched to its query by a key (the client nonce of
 * an encrypted answer, the ID of a certificate answer) and only taken when the caller's `accept`
 * says it is the answer, so forged or stray datagrams are ignored while waiting. TCP is one
 * exchange per connection, as DNSCrypt servers expect.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { FrameReader } from '../../core/dns/framing.js';
import { readId } from '../../core/dns/wire.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { connectTcp } from '../../core/upstream/connect.js';
import { HALF_NONCE_SIZE, RESOLVER_MAGIC } from './constants.js';

/** Turns a datagram into a result, or null to keep waiting for another. */
export type Accept<T> = (packet: Buffer) => T | null;

/** The key under which an answer is expected: its client nonce, or the ID of a plain answer. */
export function answerKey(packet: Buffer): string | null {
  if (packet.length >= 8 + HALF_NONCE_SIZE && packet.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0) return packet.toString('latin1', 8, 8 + HALF_NONCE_SIZE);
  if (packet.length >= 12) return `#${readId(packet)}`;
  return null;
}

export const nonceKey = (clientNonce: Buffer): string => clientNonce.toString('latin1', 0, HALF_NONCE_SIZE);
export const idKey = (id: number): string => `#${id}`;

interface Pending {
  accept: Accept<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Exchanges in flight per socket; past that many on every socket the channel is overloaded. */
const MAX_PENDING_PER_SOCKET = 4096;
const SOCKETS = 4;

class ChannelSocket {
  readonly pending = new Map<string, Pending>();
  private readonly socket: dgram.Socket;
  private readonly ready: Promise<void>;
  closed = false;

  constructor(
    host: string,
    port: number,
    private readonly label: string,
    private readonly onDead: (socket: ChannelSocket) => void,
  ) {
    this.socket = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg) => this.onMessage(msg));
    this.socket.on('error', (err) => this.fail(new UpstreamUnavailableError(`${label}: ${err.message}`, { cause: err })));
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.ready.catch(() => {});
    this.socket.connect(port, host);
  }

  async send<T>(packet: Buffer, key: string, accept: Accept<T>, timeoutMs: number): Promise<T> {
    await this.ready;
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
    const key = answerKey(msg);
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

export class DnscryptChannel {
  private sockets: ChannelSocket[] = [];
  private next = 0;
  private stopped = false;
  /** For messages: `udp 192.0.2.1:443` or `relay anon-a (192.0.2.9:443)`. */
  readonly label: string;

  /**
   * @param host, port  where packets go (the server, or the relay)
   * @param header      the relay header to put in front of every packet, or null
   */
  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly header: Buffer | null,
    label: string,
  ) {
    this.label = label;
  }

  /** Sends one packet over UDP and resolves with what `accept` makes of its answer. */
  udp<T>(packet: Buffer, key: string, accept: Accept<T>, timeoutMs: number): Promise<T> {
    if (this.stopped) return Promise.reject(new UpstreamUnavailableError(`${this.label}: stopped`));
    const wire = this.header ? Buffer.concat([this.header, packet]) : packet;
    return this.pick().send(wire, key, accept, timeoutMs);
  }

  /** One exchange on a fresh TCP connection (length-prefixed both ways), then closes it. */
  async tcp<T>(packet: Buffer, accept: Accept<T>, timeoutMs: number): Promise<T> {
    if (this.stopped) throw new UpstreamUnavailableError(`${this.label}: stopped`);
    const deadline = performance.now() + timeoutMs;
    const socket = await connectTcp(this.host, this.port, timeoutMs);
    const headerLength = this.header?.length ?? 0;
    const framed = Buffer.allocUnsafe(2 + headerLength + packet.length);
    framed.writeUInt16BE(headerLength + packet.length, 0);
    this.header?.copy(framed, 2);
    packet.copy(framed, 2 + headerLength);
    return new Promise<T>((resolve, reject) => {
      const reader = new FrameReader();
      const finish = (error: Error | null, value?: T): void => {
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(value!);
      };
      const timer = setTimeout(
        () => finish(new UpstreamTimeoutError(`${this.label} over TCP: no answer within ${Math.round(timeoutMs)}ms`)),
        Math.max(0, deadline - performance.now()),
      );
      socket.on('data', (chunk: Buffer) => {
        const [message] = reader.push(chunk);
        if (!message) return;
        const value = accept(message);
        if (value === null) finish(new UpstreamResponseError(`${this.label} over TCP: the answer is not a valid answer to the query`));
        else finish(null, value);
      });
      socket.on('error', (err) => finish(new UpstreamUnavailableError(`${this.label} over TCP: ${err.message}`, { cause: err })));
      socket.on('close', () => finish(new UpstreamUnavailableError(`${this.label} over TCP: the connection closed without an answer`)));
      socket.write(framed);
    });
  }

  private pick(): ChannelSocket {
    if (this.sockets.length < SOCKETS) {
      const socket = new ChannelSocket(this.host, this.port, this.label, (dead) => {
        this.sockets = this.sockets.filter((s) => s !== dead);
      });
      this.sockets.push(socket);
      return socket;
    }
    for (let i = 0; i < this.sockets.length; i++) {
      const socket = this.sockets[this.next++ % this.sockets.length]!;
      if (socket.pending.size < MAX_PENDING_PER_SOCKET) return socket;
    }
    throw new UpstreamUnavailableError(`${this.label}: ${SOCKETS * MAX_PENDING_PER_SOCKET} queries already in flight`);
  }

  close(): void {
    this.stopped = true;
    for (const socket of this.sockets) socket.close();
    this.sockets = [];
  }
}
