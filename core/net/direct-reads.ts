/**
 * Reads of our own upstream connections (DoT, DoH, TCP), handed straight to the code that parses
 * them. A socket's 'data' events cost, for every read, a buffer allocated outside the JavaScript
 * heap (malloc, freed later by the collector's sweeper), an ArrayBuffer and a Buffer over it, and
 * the Readable stream's bookkeeping; against a server that writes each answer alone (dnsdist's
 * DoT front-end) that is a read a query. A socket opened with Node's `onread` option instead reads
 * into one buffer we own and calls us; we copy the bytes into a pooled Buffer (a slice of Node's
 * 8 KB slab for anything under 4 KB) and pass that on. docs/benchmarks.md has the measurement.
 *
 * One read buffer serves every socket of the process: Node fills it and calls back synchronously,
 * and the bytes are copied out before the callback returns.
 *
 * Only for sockets whose every reader is ours (`onChunks`): Node's own HTTP clients read with
 * 'data' events, which such a socket never emits.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts, Socket } from 'node:net';

/** Node reads at most this much at once into it (a TLS record's cleartext is at most 16 KB). */
const READ_BUFFER_SIZE = 64 * 1024;
let sharedBuffer: Buffer | null = null;

function readBuffer(): Buffer {
  return (sharedBuffer ??= Buffer.allocUnsafe(READ_BUFFER_SIZE));
}

type Receiver = (chunk: Buffer) => void;

const DIRECT = Symbol('veil.directReads');

/** Where a direct socket's reads go: to its receiver, or kept until it has one. */
class DirectReads {
  receiver: Receiver | null = null;
  /** Reads before a receiver was set (an HTTP/2 server's SETTINGS right after the handshake). */
  early: Buffer[] = [];
  /** Reading was paused until a receiver is set. */
  held = false;

  readonly options: OnReadOpts = {
    buffer: readBuffer(),
    callback: (length: number, buffer: Uint8Array): boolean => {
      const chunk = Buffer.from(buffer.subarray(0, length));
      if (this.receiver) {
        this.receiver(chunk);
        return true;
      }
      // Nobody reads yet: keep this one, read no more until somebody does.
      this.early.push(chunk);
      this.held = true;
      return false;
    },
  };
}

/** The `onread` option for `net.connect` / `tls.connect`; `adopt` the socket it opened right after. */
export function directReadOptions(): { onread: OnReadOpts; adopt: (socket: Socket) => void } {
  const reads = new DirectReads();
  return {
    onread: reads.options,
    adopt: (socket) => {
      (socket as Socket & { [DIRECT]?: DirectReads })[DIRECT] = reads;
    },
  };
}

/** True for a socket opened with `directReadOptions` (it emits no 'data'). */
export function readsDirectly(socket: Socket): boolean {
  return (socket as Socket & { [DIRECT]?: DirectReads })[DIRECT] !== undefined;
}

/**
 * Sends every chunk `socket` reads to `receiver`, directly when the socket was opened for it,
 * through 'data' events otherwise. One receiver a socket; reads held until now come first.
 */
export function onChunks(socket: Socket, receiver: Receiver): void {
  const reads = (socket as Socket & { [DIRECT]?: DirectReads })[DIRECT];
  if (!reads) {
    socket.on('data', receiver);
    return;
  }
  reads.receiver = receiver;
  const early = reads.early;
  reads.early = [];
  for (const chunk of early) receiver(chunk);
  if (reads.held) {
    reads.held = false;
    socket.resume();
  }
}
