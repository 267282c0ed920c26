/**
 * Frame Streams (https://github.com/farsightsec/fstrm, the transport dnstap uses): data frames
 * are a 32-bit big-endian length and the payload; control frames start with a zero length (the
 * escape), then their own length, a type, and fields (the content type). A writer on a
 * bidirectional stream sends READY, waits for the reader's ACCEPT naming the content type, then
 * START, data, and STOP, to which the reader answers FINISH.
 *
 * The writer side is ours to write and the reader's control frames are the only bytes we read:
 * `ControlFrameReader` takes them with every length bounded (fuzzed in test/fuzz).
 */
import { Buffer } from 'node:buffer';

export const ControlType = { ACCEPT: 0x01, START: 0x02, STOP: 0x03, READY: 0x04, FINISH: 0x05 } as const;
export type ControlTypeValue = (typeof ControlType)[keyof typeof ControlType];
const FIELD_CONTENT_TYPE = 0x01;
/** fstrm's own limit on a control frame's length. */
export const MAX_CONTROL_FRAME = 512;

export const DNSTAP_CONTENT_TYPE = 'protobuf:dnstap.Dnstap';

export class FrameStreamsError extends Error {}

/** A control frame of `type`, with one content-type field when given. */
export function controlFrame(type: ControlTypeValue, contentType?: string): Buffer {
  const field = contentType === undefined ? Buffer.alloc(0) : Buffer.from(contentType, 'ascii');
  const fieldLength = contentType === undefined ? 0 : 8 + field.length;
  const frame = Buffer.alloc(12 + fieldLength);
  frame.writeUInt32BE(0, 0); // escape: a data frame of length 0 cannot exist
  frame.writeUInt32BE(4 + fieldLength, 4);
  frame.writeUInt32BE(type, 8);
  if (contentType !== undefined) {
    frame.writeUInt32BE(FIELD_CONTENT_TYPE, 12);
    frame.writeUInt32BE(field.length, 16);
    field.copy(frame, 20);
  }
  return frame;
}

/** A data frame: the payload behind its length. */
export function dataFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(4 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, 4);
  return frame;
}

export interface ControlFrame {
  type: number;
  contentTypes: string[];
}

/**
 * Reads the control frames a reader sends back on a bidirectional stream. Anything else (a
 * data frame, a frame over MAX_CONTROL_FRAME, a field running past its frame) is a protocol
 * error: the connection is dropped. Holds at most one frame's bytes.
 */
export class ControlFrameReader {
  private pending: Buffer = Buffer.alloc(0);

  /** The complete control frames in `chunk` (with what was held back before). */
  push(chunk: Buffer): ControlFrame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: ControlFrame[] = [];
    for (;;) {
      if (this.pending.length < 8) break;
      const escape = this.pending.readUInt32BE(0);
      if (escape !== 0) throw new FrameStreamsError(`the reader sent a data frame (${escape} bytes); only control frames come back`);
      const length = this.pending.readUInt32BE(4);
      if (length < 4 || length > MAX_CONTROL_FRAME) throw new FrameStreamsError(`control frame length ${length} is outside 4..${MAX_CONTROL_FRAME}`);
      if (this.pending.length < 8 + length) break;
      frames.push(parseControl(this.pending.subarray(8, 8 + length)));
      this.pending = this.pending.subarray(8 + length);
    }
    if (this.pending.length > 8 + MAX_CONTROL_FRAME) throw new FrameStreamsError('control frame too long');
    return frames;
  }
}

function parseControl(body: Buffer): ControlFrame {
  const type = body.readUInt32BE(0);
  const contentTypes: string[] = [];
  let at = 4;
  while (at < body.length) {
    if (body.length - at < 8) throw new FrameStreamsError('a control field is cut short');
    const fieldType = body.readUInt32BE(at);
    const fieldLength = body.readUInt32BE(at + 4);
    if (fieldLength > body.length - at - 8) throw new FrameStreamsError('a control field runs past its frame');
    if (fieldType === FIELD_CONTENT_TYPE) contentTypes.push(body.toString('latin1', at + 8, at + 8 + fieldLength));
    at += 8 + fieldLength;
  }
  return { type, contentTypes };
}
