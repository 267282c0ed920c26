/**
 * What both ends of an HTTP/2 connection do alike with frames: cut the bytes read into whole
 * frames, strip padding, write a frame header, and the error that ends a connection
 * (connection.ts serves, client-connection.ts asks).
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { Flag, Frame, FRAME_HEADER, H2Error, MAX_FRAME_SIZE } from './protocol.js';

/** A connection error: GOAWAY with this code, then the connection closes. */
export class ConnectionError extends Error {
  constructor(
    readonly code: H2Error,
    message: string,
  ) {
    super(message);
  }
}

/** A leaky bucket: `burst` events at once, then `perSecond`; counting is O(1). */
export class Allowance {
  private level = 0;
  private at = 0;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  /** Counts one event; false once the allowance is spent. */
  take(): boolean {
    const now = performance.now();
    this.level = Math.max(0, this.level - ((now - this.at) / 1000) * this.perSecond) + 1;
    this.at = now;
    return this.level <= this.burst;
  }
}

export type OnFrame = (type: number, flags: number, streamId: number, payload: Buffer) => void;

/** A header block being received in HEADERS and CONTINUATION frames. */
export interface OpenBlock {
  streamId: number;
  endStream: boolean;
  fragments: Buffer[];
  size: number;
  frames: number;
}

/**
 * Cuts the bytes a connection reads into frames of at most MAX_FRAME_SIZE (the size both ends
 * advertise), after `preface` when one must come first (the server's side), and holds the peer
 * to its first frame being SETTINGS (§3.4, either side). The bytes of an
 * unfinished frame wait as chunks and are joined once it is whole, so a frame that arrives a byte
 * at a time is copied once, not once per byte; what waits is never more than one frame.
 */
export class FrameReader {
  private input: Buffer[] = [];
  private inputBytes = 0;
  private inputNeeded = 0;
  private settingsSeen = false;

  constructor(
    private readonly onFrame: OnFrame,
    /** Stops reading as soon as the connection has closed (a frame may close it). */
    private readonly closed: () => boolean,
    private preface: Buffer | null = null,
  ) {}

  /**
   * Takes a chunk; hands every whole frame to `onFrame`. False when the chunk only waits for
   * more bytes (nothing was read). Throws ConnectionError for a wrong preface, a first frame not
   * SETTINGS, or a frame too large.
   */
  push(chunk: Buffer): boolean {
    if (this.inputBytes + chunk.length < this.inputNeeded) {
      this.input.push(chunk);
      this.inputBytes += chunk.length;
      return false;
    }
    const data = this.input.length === 0 ? chunk : Buffer.concat([...this.input, chunk]);
    this.clear();
    let at = 0;
    if (this.preface) {
      const seen = Math.min(data.length, this.preface.length);
      if (!data.subarray(0, seen).equals(this.preface.subarray(0, seen))) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'no HTTP/2 preface');
      if (seen < this.preface.length) {
        this.keep(data, this.preface.length);
        return false;
      }
      at = this.preface.length;
      this.preface = null;
    }
    while (!this.closed()) {
      if (data.length - at < FRAME_HEADER) {
        if (at < data.length) this.keep(data.subarray(at), FRAME_HEADER);
        break;
      }
      const length = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
      if (length > MAX_FRAME_SIZE) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `a frame of ${length} bytes`);
      if (data.length - at < FRAME_HEADER + length) {
        this.keep(data.subarray(at), FRAME_HEADER + length);
        break;
      }
      const type = data[at + 3]!;
      const flags = data[at + 4]!;
      const streamId = data.readUInt32BE(at + 5) & 0x7fffffff;
      const payload = data.subarray(at + FRAME_HEADER, at + FRAME_HEADER + length);
      at += FRAME_HEADER + length;
      if (!this.settingsSeen) {
        if (type !== Frame.SETTINGS || flags & Flag.ACK) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'the first frame is not SETTINGS');
        this.settingsSeen = true;
      }
      this.onFrame(type, flags, streamId, payload);
    }
    return true;
  }

  /** Lets go of what waits (the connection is done). */
  clear(): void {
    this.input = [];
    this.inputBytes = 0;
    this.inputNeeded = 0;
  }

  /** Keeps the start of an unfinished frame (a copy: the chunk it is part of may be large). */
  private keep(bytes: Buffer, needed: number): void {
    this.input = [Buffer.from(bytes)];
    this.inputBytes = bytes.length;
    this.inputNeeded = needed;
  }
}

/** A frame's payload without its padding (§6.1). */
export function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a padded frame with no pad length');
  const padding = payload[0]!;
  if (padding >= payload.length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'padding as long as the frame');
  return payload.subarray(1, payload.length - padding);
}

/** GOAWAY's payload: the last stream this end will handle, and why. */
export function goawayPayload(lastStreamId: number, code: H2Error): Buffer {
  const payload = Buffer.allocUnsafe(8);
  payload.writeUInt32BE(lastStreamId, 0);
  payload.writeUInt32BE(code, 4);
  return payload;
}
