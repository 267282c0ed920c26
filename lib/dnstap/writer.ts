/**
 * A Frame Streams writer to one dnstap reader (a Unix socket or TCP to an IP), shared by every
 * block that names it. It connects, does the bidirectional handshake (READY → ACCEPT naming
 * dnstap's content type → START), and sends what is queued. The queue is bounded in frames and
 * bytes: while the reader is slow or away, new frames are dropped and counted, never held
 * without end, and queries never wait for it. A lost connection is made again with back-off
 * (0.5 s doubling to 30 s); on stop the writer sends STOP and waits briefly for FINISH.
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import type { Logger } from '../../core/logger.js';
import { ControlFrameReader, ControlType, controlFrame, DNSTAP_CONTENT_TYPE, FrameStreamsError } from './frame-streams.js';

export type DnstapTarget = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Bytes waiting at most, whatever the frame count. */
export const QUEUE_BYTES = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 5_000;
const FINISH_TIMEOUT_MS = 1_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A failing reader or a full queue is reported at most this often. */
const REPORT_EVERY_MS = 60_000;

export function describeTarget(target: DnstapTarget): string {
  return target.kind === 'unix' ? `unix://${target.path}` : `tcp://${net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`;
}

export class DnstapWriter {
  readonly label: string;
  private socket: net.Socket | null = null;
  /** True once START is sent: frames may flow. */
  private started = false;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private waitingForDrain = false;
  private backoffMs = BACKOFF_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private lastConnectReport = -Infinity;
  private lastDropReport = -Infinity;
  private droppedSinceReport = 0;
  sent = 0;
  dropped = 0;

  constructor(
    readonly target: DnstapTarget,
    private readonly logger: Logger,
    private readonly maxFrames: number,
  ) {
    this.label = describeTarget(target);
  }

  start(): void {
    this.connect();
  }

  /** Queues one data frame; false (and counted) when the queue is full. Never blocks. */
  enqueue(frame: Buffer): boolean {
    if (this.queue.length >= this.maxFrames || this.queuedBytes + frame.length > QUEUE_BYTES) {
      this.dropped++;
      this.droppedSinceReport++;
      const now = performance.now();
      if (now - this.lastDropReport >= REPORT_EVERY_MS) {
        this.lastDropReport = now;
        this.logger.warn(`dnstap reader ${this.label} is ${this.started ? 'slower than the queries' : 'not connected'}: dropped ${this.droppedSinceReport} message(s) (queue full)`);
        this.droppedSinceReport = 0;
      }
      return false;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    if (this.started && !this.waitingForDrain && this.queue.length === 1) setImmediate(() => this.flush());
    return true;
  }

  get queued(): number {
    return this.queue.length;
  }

  private connect(): void {
    if (this.stopping) return;
    const socket = this.target.kind === 'unix' ? net.connect({ path: this.target.path }) : net.connect({ host: this.target.host, port: this.target.port });
    this.socket = socket;
    const reader = new ControlFrameReader();
    let accepted = false;
    socket.setNoDelay?.(true);
    socket.once('connect', () => {
      socket.write(controlFrame(ControlType.READY, DNSTAP_CONTENT_TYPE));
      this.handshakeTimer = setTimeout(() => this.fail(socket, 'no ACCEPT within 5 s'), HANDSHAKE_TIMEOUT_MS);
    });
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        return this.fail(socket, (err as FrameStreamsError).message);
      }
      for (const frame of frames) {
        if (!accepted && frame.type === ControlType.ACCEPT) {
          if (!frame.contentTypes.includes(DNSTAP_CONTENT_TYPE)) return this.fail(socket, `the reader does not accept ${DNSTAP_CONTENT_TYPE}`);
          accepted = true;
          if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
          socket.write(controlFrame(ControlType.START, DNSTAP_CONTENT_TYPE));
          this.started = true;
          this.backoffMs = BACKOFF_MIN_MS;
          this.logger.info(`dnstap: connected to ${this.label}`);
          this.flush();
        } else if (frame.type === ControlType.FINISH) {
          socket.destroy();
        } else {
          return this.fail(socket, `unexpected control frame ${frame.type}`);
        }
      }
    });
    socket.on('drain', () => {
      this.waitingForDrain = false;
      this.flush();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.reportConnect(err.code ?? err.message));
    socket.on('close', () => {
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      this.started = false;
      this.waitingForDrain = false;
      this.scheduleReconnect();
    });
  }

  private fail(socket: net.Socket, why: string): void {
    this.reportConnect(why);
    socket.destroy();
  }

  private reportConnect(why: string): void {
    if (this.stopping) return;
    const now = performance.now();
    if (now - this.lastConnectReport < REPORT_EVERY_MS) return;
    this.lastConnectReport = now;
    this.logger.warn(`dnstap: cannot deliver to ${this.label} (${why}); trying again with back-off, ${this.queue.length} message(s) waiting`);
  }

  private scheduleReconnect(): void {
    if (this.stopping || this.reconnectTimer) return;
    const delay = this.backoffMs * (0.75 + Math.random() / 2);
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Writes queued frames until the socket asks to wait. */
  private flush(): void {
    const socket = this.socket;
    if (!socket || !this.started || this.waitingForDrain) return;
    while (this.queue.length > 0) {
      // Many frames in one write: one system call for a burst of queries.
      const batch: Buffer[] = [];
      let bytes = 0;
      while (this.queue.length > 0 && batch.length < 256) {
        const frame = this.queue.shift()!;
        batch.push(frame);
        bytes += frame.length;
      }
      this.queuedBytes -= bytes;
      this.sent += batch.length;
      if (!socket.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes))) {
        this.waitingForDrain = true;
        return;
      }
    }
  }

  /** Sends what is queued, STOP, and waits a moment for FINISH; then closes. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    if (!socket) return;
    if (this.started) {
      this.waitingForDrain = false;
      this.flush();
      socket.write(controlFrame(ControlType.STOP));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          socket.destroy();
          resolve();
        }, FINISH_TIMEOUT_MS);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    } else {
      socket.destroy();
    }
  }
}
