/**
 * Batched UDP sockets from native/udp-batch.c: a batch of datagrams per system call and per
 * JavaScript call, answers sent in batches. Optional: `udpBatchAddon()` is null when the addon
 * was not built (no C compiler, not Linux) or VEIL_UDP_BATCH=off, and the udp:// listener then
 * uses node:dgram. Both give the listener the same thing: a datagram, a client, a way to reply.
 * `ConnectedUdpSocket` is the upstream side (core/upstream/datagram.ts): a socket connected to
 * one server, its answers read in batches, its queries sent with those of every other
 * connected socket after the batch that caused them.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import type { ClientAddress } from '../context.js';

interface UdpBatchAddon {
  open(
    self: object,
    host: string,
    port: number,
    reusePort: boolean,
    receiveBufferBytes: number,
    recvData: Buffer,
    recvMeta: Int32Array,
    sendData: Buffer,
    sendMeta: Int32Array,
    onBatch: (count: number) => void,
  ): [handle: unknown, boundPort: number];
  flush(handle: unknown): void;
  close(handle: unknown): void;
  connect(
    self: object,
    host: string,
    port: number,
    receiveBufferBytes: number,
    recvData: Buffer,
    recvMeta: Int32Array,
    onBatch: (count: number) => void,
    /** The address to send from (an IP literal of the server's family); else the kernel picks. */
    localHost?: string,
  ): [handle: unknown, localPort: number];
  send(handle: unknown, datagram: Buffer): void;
  flushQueued(): void;
  /** Hands the addon the word it sets to 1 while a batch and the sends it caused are under way. */
  batchState(word: Int32Array): void;
  readonly BATCH: number;
  readonly META_INTS: number;
}

let addon: UdpBatchAddon | null | undefined;

/**
 * 1 while the addon hands a batch of datagrams to JavaScript and until it has sent what the
 * batch caused: a datagram queued then leaves with the batch, so no later turn of the event loop
 * is asked for. At a home's rate every query is a batch of one, and that turn was an extra
 * epoll_wait and a run of the immediates for each (docs/benchmarks.md).
 */
const inBatch = new Int32Array(1);

/** The addon, or null when it is not built or turned off (VEIL_UDP_BATCH=off). */
export function udpBatchAddon(): UdpBatchAddon | null {
  if (addon === undefined) {
    addon = null;
    if (process.env.VEIL_UDP_BATCH !== 'off') {
      try {
        addon = createRequire(import.meta.url)('../../native/udp-batch.node') as UdpBatchAddon;
        addon.batchState(inBatch);
      } catch {
        // Not built on this machine: node:dgram serves instead.
        addon = null;
      }
    }
  }
  return addon;
}

/** A datagram's sender, with the address words the addon needs to answer it. */
export class BatchPeer implements ClientAddress {
  constructor(
    readonly address: string,
    readonly port: number,
    readonly family: 'IPv4' | 'IPv6',
    /** 4 or 6, and the address bytes as four int32 words, as the addon wrote them. */
    readonly ipVersion: number,
    readonly w0: number,
    readonly w1: number,
    readonly w2: number,
    readonly w3: number,
  ) {}
}

/** Datagrams bigger than a slot are dropped by the addon; 64 KiB holds any UDP payload. */
const SLOT_BYTES = 65536;
/** Answers queued before a send; a full queue is sent at once. */
const SEND_BYTES = 256 * 1024;

export class BatchedUdpSocket {
  readonly port: number;
  private readonly handle: unknown;
  private readonly recvData: Buffer;
  private readonly recvMeta: Int32Array;
  private readonly recvMetaBytes: Buffer;
  private readonly sendData: Buffer;
  private readonly sendMeta: Int32Array;
  private sendUsed = 0;
  private flushScheduled = false;
  private closed = false;
  // Most datagrams in a row come from the same address: its string is made once.
  private lastWords = [0, 0, 0, 0, 0];
  private lastAddress = '';

  constructor(
    private readonly addon: UdpBatchAddon,
    host: string,
    port: number,
    reusePort: boolean,
    receiveBufferBytes: number,
    private readonly onDatagram: (message: Buffer, peer: BatchPeer) => void,
  ) {
    // allocUnsafeSlow: unpooled and not zero-filled, so the slots' untouched pages cost no memory.
    this.recvData = Buffer.allocUnsafeSlow(addon.BATCH * SLOT_BYTES);
    this.recvMeta = new Int32Array(addon.BATCH * addon.META_INTS);
    this.recvMetaBytes = Buffer.from(this.recvMeta.buffer);
    this.sendData = Buffer.allocUnsafeSlow(SEND_BYTES);
    this.sendMeta = new Int32Array(1 + addon.BATCH * addon.META_INTS);
    [this.handle, this.port] = addon.open(this, host, port, reusePort, receiveBufferBytes, this.recvData, this.recvMeta, this.sendData, this.sendMeta, (count) => this.onBatch(count));
  }

  /** Queues an answer; it leaves with the batch's others, or on the next turn of the event loop. */
  send(answer: Buffer, to: BatchPeer): void {
    if (this.closed) return;
    const meta = this.sendMeta;
    if (meta[0] === 0) this.sendUsed = 0; // the addon sent the queue
    if (meta[0] === this.addon.BATCH || this.sendUsed + answer.length > SEND_BYTES) {
      this.addon.flush(this.handle);
      this.sendUsed = 0;
    }
    const count = meta[0]!;
    const at = 1 + count * this.addon.META_INTS;
    answer.copy(this.sendData, this.sendUsed);
    meta[at] = this.sendUsed;
    meta[at + 1] = answer.length;
    meta[at + 2] = to.ipVersion;
    meta[at + 3] = to.port;
    meta[at + 4] = to.w0;
    meta[at + 5] = to.w1;
    meta[at + 6] = to.w2;
    meta[at + 7] = to.w3;
    meta[0] = count + 1;
    this.sendUsed += answer.length;
    if (!this.flushScheduled && inBatch[0] === 0) {
      // Answers of a batch go when it ends; this catches those that come later (from a TLS read, a timer).
      this.flushScheduled = true;
      setImmediate(this.flushLater);
    }
  }

  private readonly flushLater = (): void => {
    this.flushScheduled = false;
    if (this.sendMeta[0] !== 0 && !this.closed) this.addon.flush(this.handle);
  };

  close(): void {
    if (this.closed) return;
    this.flushLater();
    this.closed = true;
    this.addon.close(this.handle);
  }

  private onBatch(count: number): void {
    const meta = this.recvMeta;
    const stride = this.addon.META_INTS;
    for (let i = 0; i < count; i++) {
      const at = i * stride;
      const length = meta[at]!;
      // A copy: the slot takes the next batch while this query may still be in use (forwarded, retried).
      const message = copyOut(this.recvData, i * SLOT_BYTES, length);
      const version = meta[at + 1]!;
      const w0 = meta[at + 3]!, w1 = meta[at + 4]!, w2 = meta[at + 5]!, w3 = meta[at + 6]!;
      const peer = new BatchPeer(this.addressOf(version, w0, w1, w2, w3, at), meta[at + 2]!, version === 4 ? 'IPv4' : 'IPv6', version, w0, w1, w2, w3);
      this.onDatagram(message, peer);
    }
  }

  private addressOf(version: number, w0: number, w1: number, w2: number, w3: number, at: number): string {
    const last = this.lastWords;
    if (last[0] === version && last[1] === w0 && last[2] === w1 && last[3] === w2 && last[4] === w3) return this.lastAddress;
    const bytes = this.recvMetaBytes.subarray((at + 3) * 4, (at + 3) * 4 + (version === 4 ? 4 : 16));
    this.lastAddress = version === 4 ? formatIPv4(bytes, 0) : formatIPv6(bytes);
    this.lastWords = [version, w0, w1, w2, w3];
    return this.lastAddress;
  }
}

/** Messages up to this long are copied byte by byte; longer ones by Buffer#copy. */
const SHORT_COPY = 256;

/**
 * `length` bytes of `slots` from `start`, in a Buffer of their own. A query or a short answer is
 * copied in a loop: Buffer#copy crosses into C++ and asks V8 for both buffers' memory, 2–3% of
 * a cache hit's CPU (perf) for some 40 bytes.
 */
function copyOut(slots: Buffer, start: number, length: number): Buffer {
  const message = Buffer.allocUnsafe(length);
  if (length > SHORT_COPY) {
    slots.copy(message, 0, start, start + length);
    return message;
  }
  for (let i = 0; i < length; i++) message[i] = slots[start + i]!;
  return message;
}

function formatIPv4(bytes: Uint8Array, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

/**
 * RFC 5952 text, as inet_ntop writes it (and node:dgram reports): lower-case hex, the longest
 * run of two or more zero groups as `::`, IPv4-mapped and -compatible addresses dotted.
 */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1, bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  if (bestLength < 2) bestStart = -1;
  if (bestStart === 0 && (bestLength === 6 || (bestLength === 5 && groups[5] === 0xffff))) {
    return `::${bestLength === 5 ? 'ffff:' : ''}${formatIPv4(bytes, 12)}`;
  }
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += '::';
      i += bestLength - 1;
      continue;
    }
    if (text !== '' && !text.endsWith(':')) text += ':';
    text += groups[i]!.toString(16);
  }
  return text;
}

/** A connected socket's receive buffer: answers wait there while the event loop is busy. */
const CONNECTED_RECEIVE_BUFFER_BYTES = 1 << 20;

/**
 * Receive buffers every connected socket shares: the addon hands a batch to JavaScript, which
 * copies each datagram out, before it reads the next batch of any socket.
 */
let connectedBuffers: { data: Buffer; meta: Int32Array } | null = null;
let flushQueuedScheduled = false;

function flushQueued(): void {
  flushQueuedScheduled = false;
  udpBatchAddon()?.flushQueued();
}

function errnoName(code: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === code) return name;
  return `error ${code}`;
}

/**
 * A UDP socket connected to one server, on a port the kernel picks at random. Datagrams from
 * any other source are dropped by the kernel; an ICMP error (the server's port is closed) comes
 * to `onError`. Sends are queued and leave together: after the batch of datagrams being handled
 * (the listener's or this socket's), else at the end of this turn of the event loop.
 */
export class ConnectedUdpSocket {
  readonly localPort: number;
  private readonly handle: unknown;
  private closed = false;

  constructor(
    private readonly addon: UdpBatchAddon,
    host: string,
    port: number,
    private readonly onMessage: (message: Buffer) => void,
    private readonly onError: (error: Error) => void,
    /** The local address to send from (a relay bound to one); else the kernel picks. */
    localAddress?: string,
  ) {
    connectedBuffers ??= { data: Buffer.allocUnsafeSlow(addon.BATCH * SLOT_BYTES), meta: new Int32Array(addon.BATCH * addon.META_INTS) };
    const { data, meta } = connectedBuffers;
    [this.handle, this.localPort] = addon.connect(this, host, port, CONNECTED_RECEIVE_BUFFER_BYTES, data, meta, (count) => this.onBatch(count), localAddress);
  }

  send(datagram: Buffer): void {
    if (this.closed) return;
    this.addon.send(this.handle, datagram);
    if (!flushQueuedScheduled && inBatch[0] === 0) {
      flushQueuedScheduled = true;
      setImmediate(flushQueued);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }

  private onBatch(count: number): void {
    if (count < 0) {
      const code = errnoName(-count);
      this.onError(Object.assign(new Error(`${code}: the server's port answered with an ICMP error`), { code }));
      return;
    }
    const { data, meta } = connectedBuffers!;
    const stride = this.addon.META_INTS;
    for (let i = 0; i < count; i++) {
      const length = meta[i * stride]!;
      // A copy: the buffers take the next batch, of any socket.
      const message = copyOut(data, i * SLOT_BYTES, length);
      this.onMessage(message);
    }
  }
}
