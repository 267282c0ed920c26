/**
 * A request body read from a Node stream (an HTTP/1.1 request, a node:http2 stream) with the
 * bounds Veil's own HTTP/2 connection keeps: at most `limit` bytes, arriving within `timeoutMs`.
 */
import { Buffer } from 'node:buffer';
import { bodyCutOff, bodyTimedOut, bodyTooLarge, type BodyResult } from './message.js';

/** Readable enough: both IncomingMessage and ServerHttp2Stream are. */
type BodyStream = NodeJS.ReadableStream & { on(event: 'close', fn: () => void): unknown };

/**
 * Reads a request body of at most `limit` bytes that must arrive within `timeoutMs`; past
 * either, the reply to give instead (413, 408) and the rest is not read (the stream is paused,
 * so flow control, or TCP, holds the client back).
 */
export function readStreamBody(stream: BodyStream, limit: number, timeoutMs: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: BodyResult): void => {
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onClose);
      if (!Buffer.isBuffer(result)) stream.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) finish(bodyTooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(Buffer.concat(chunks, size));
    const onClose = (): void => finish(bodyCutOff());
    const timer = setTimeout(() => finish(bodyTimedOut()), timeoutMs);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
  });
}
