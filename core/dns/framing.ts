/**
 * DNS over a byte stream (TCP, TLS): each message is preceded by a two-byte length
 * (RFC 1035 §4.2.2). `FrameReader` collects chunks and yields whole messages; memory per
 * connection is bounded by one maximal message (64 KiB) plus the chunk being read.
 */
import { Buffer } from 'node:buffer';

export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Bytes held that do not yet form a whole message. */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Adds a chunk and returns the messages it completes. Zero-length frames are returned as
   * empty Buffers so the caller can treat them as malformed.
   */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const messages: Buffer[] = [];
    for (;;) {
      if (this.buffered < 2) break;
      const length = this.peekLength();
      if (this.buffered < 2 + length) break;
      const frame = this.take(2 + length);
      messages.push(frame.subarray(2));
    }
    return messages;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 2) return first.readUInt16BE(0);
    const second = this.chunks[1]!;
    return (first[0]! << 8) | second[0]!;
  }

  /** Removes `size` bytes from the front of the queue. */
  private take(size: number): Buffer {
    const first = this.chunks[0]!;
    this.buffered -= size;
    if (first.length === size) {
      this.chunks.shift();
      return first;
    }
    if (first.length > size) {
      this.chunks[0] = first.subarray(size);
      return first.subarray(0, size);
    }
    const out = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const chunk = this.chunks[0]!;
      const need = size - filled;
      if (chunk.length <= need) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, need);
        this.chunks[0] = chunk.subarray(need);
        filled += need;
      }
    }
    return out;
  }
}

/** The two-byte length prefix followed by the message, in one Buffer (one write, one segment). */
export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}
