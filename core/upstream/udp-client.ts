/**
 * Plain DNS over UDP to one upstream address. A few connected sockets (the kernel then drops
 * datagrams from any other source, and ICMP "port unreachable" surfaces as an error at once),
 * a random ID per query, and an answer accepted only when its ID and question match ours.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion, writeId } from '../dns/wire.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';
import { freeId } from './query-id.js';

interface Pending {
  query: Buffer;
  originalId: number;
  resolve: (answer: Buffer) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Queries in flight per socket before a new exchange waits for room (IDs must stay sparse). */
const MAX_PENDING_PER_SOCKET = 4096;

class UdpSocket {
  readonly pending = new Map<number, Pending>();
  private readonly socket: dgram.Socket;
  private ready: Promise<void>;
  private connected = false;
  closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly onDead: (socket: UdpSocket) => void,
  ) {
    this.socket = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg) => this.onMessage(msg));
    this.socket.on('error', (err) => this.fail(new UpstreamUnavailableError(`udp ${host}:${port}: ${err.message}`, { cause: err })));
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

  async send(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (!this.connected) await this.ready;
    if (this.closed) throw new UpstreamUnavailableError(`udp ${this.host}:${this.port}: socket closed`);
    const id = freeId(this.pending);
    const wire = Buffer.from(query);
    writeId(wire, id);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamTimeoutError(`udp ${this.host}:${this.port}: no answer within ${Math.round(timeoutMs)}ms`));
      }, timeoutMs);
      this.pending.set(id, { query: wire, originalId: readId(query), resolve, reject, timer });
      this.socket.send(wire, (err) => {
        if (!err) return;
        const entry = this.pending.get(id);
        if (!entry) return;
        this.pending.delete(id);
        clearTimeout(entry.timer);
        reject(new UpstreamUnavailableError(`udp ${this.host}:${this.port}: ${err.message}`, { cause: err }));
      });
    });
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < HEADER_SIZE || !isResponse(msg)) return;
    const entry = this.pending.get(readId(msg));
    // An answer with an unknown ID or another question is ignored, not trusted: keep waiting.
    if (!entry || !sameQuestion(entry.query, msg)) return;
    this.pending.delete(readId(msg));
    clearTimeout(entry.timer);
    writeId(msg, entry.originalId);
    entry.resolve(msg);
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.close(error);
    this.onDead(this);
  }

  close(error: Error = new UpstreamUnavailableError('upstream stopped')): void {
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

export class UdpClient {
  private sockets: UdpSocket[] = [];
  private next = 0;
  private stopped = false;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly socketCount = 4,
  ) {}

  /** Queries waiting for an answer. */
  get inflight(): number {
    return this.sockets.reduce((sum, s) => sum + s.pending.size, 0);
  }

  /** Sends one query and waits up to `timeoutMs` for its answer (ID restored to the query's). */
  async exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.stopped) throw new UpstreamUnavailableError('upstream stopped');
    return this.pick().send(query, timeoutMs);
  }

  private pick(): UdpSocket {
    if (this.sockets.length < this.socketCount) {
      const socket = new UdpSocket(this.host, this.port, (dead) => {
        this.sockets = this.sockets.filter((s) => s !== dead);
      });
      this.sockets.push(socket);
      return socket;
    }
    for (let i = 0; i < this.sockets.length; i++) {
      const socket = this.sockets[this.next++ % this.sockets.length]!;
      if (socket.pending.size < MAX_PENDING_PER_SOCKET) return socket;
    }
    // Bounded memory: past this many queries in flight, this upstream is overloaded.
    throw new UpstreamUnavailableError(`udp ${this.host}:${this.port}: ${this.socketCount * MAX_PENDING_PER_SOCKET} queries already in flight`);
  }

  close(): void {
    this.stopped = true;
    for (const socket of this.sockets) socket.close();
    this.sockets = [];
  }
}
