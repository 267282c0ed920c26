/**
 * Carrying DNSCrypt packets to one address: the server itself, or a relay with the relay
 * header in front of every packet. UDP goes out on the shared datagram sockets
 * (core/upstream/datagram.ts), an answer waited for under a key (the client nonce of an encrypted
 * answer, the ID of a certificate answer) and taken only when the caller's `accept` says it is
 * the answer. TCP is one exchange per connection, as DNSCrypt servers expect.
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { FrameReader } from '../../core/dns/framing.js';
import { readId } from '../../core/dns/wire.js';
import { UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { onChunks } from '../../core/net/direct-reads.js';
import { connectTcp } from '../../core/upstream/connect.js';
import { DatagramSockets, type Accept, type DatagramSocket } from '../../core/upstream/datagram.js';
import { promised, type Outcome } from '../../core/upstream/outcome.js';
import { HALF_NONCE_SIZE, RESOLVER_MAGIC } from './constants.js';

/** The key under which an answer is expected: its client nonce, or the ID of a plain answer. */
export function answerKey(packet: Buffer): string | null {
  if (packet.length >= 8 + HALF_NONCE_SIZE && packet.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0) return packet.toString('latin1', 8, 8 + HALF_NONCE_SIZE);
  if (packet.length >= 12) return `#${readId(packet)}`;
  return null;
}

export const nonceKey = (clientNonce: Buffer): string => clientNonce.toString('latin1', 0, HALF_NONCE_SIZE);
export const idKey = (id: number): string => `#${id}`;

export class DnscryptChannel {
  private readonly sockets: DatagramSockets<string>;
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
    this.sockets = new DatagramSockets(host, port, label, answerKey, { resend: true });
  }

  /** Bytes of the relay header put in front of every packet (0 when direct). */
  get headerLength(): number {
    return this.header?.length ?? 0;
  }

  /**
   * Sends one packet over UDP and resolves with what `accept` makes of its answer. With
   * `headroom`, the packet's first `headerLength` bytes are free for the relay header, written
   * there rather than copied in front.
   */
  udp<T>(packet: Buffer, key: string, accept: Accept<T>, timeoutMs: number, headroom = false): Promise<T> {
    return promised<T>((outcome) => this.udpTo(packet, key, accept, timeoutMs, outcome, headroom));
  }

  /** `udp`, with the result or the failure given to `outcome` (core/upstream/outcome.ts). */
  udpTo<T>(packet: Buffer, key: string, accept: Accept<T>, timeoutMs: number, outcome: Outcome<T>, headroom = false): void {
    if (this.stopped) return outcome.reject(new UpstreamUnavailableError(`${this.label}: stopped`));
    let wire = packet;
    if (this.header) {
      if (headroom) this.header.copy(wire, 0);
      else wire = Buffer.concat([this.header, packet]);
    }
    let socket: DatagramSocket<string>;
    try {
      socket = this.sockets.pick();
    } catch (error) {
      return outcome.reject(error);
    }
    socket.sendTo(wire, key, accept, timeoutMs, outcome);
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
      const finish = (error: Error | null, value?: T | Promise<T>): void => {
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(value!);
      };
      const timer = setTimeout(
        () => finish(new UpstreamTimeoutError(`${this.label} over TCP: no answer within ${Math.round(timeoutMs)}ms`)),
        Math.max(0, deadline - performance.now()),
      );
      onChunks(socket, (chunk) => {
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

  close(): void {
    this.stopped = true;
    this.sockets.close();
  }
}
