/**
 * A stateful fuzz target for Veil's HTTP/2 server connection: sequences of frames (not one
 * frame's bytes) from a client that opens, resets and starves streams, sends bodies in pieces,
 * changes its windows and settings, with the handler answering late and in any order. After
 * every step the connection's holdings must stay within their bounds; after the connection
 * closes, it must hold no timer and no answer. This is the class of bug the security review of
 * 2026-12-04 found by hand (a reset stream left in the line of blocked answers, fragments of a
 * header block that never ends, empty body pieces kept one by one).
 */
import type net from 'node:net';
import fc from 'fast-check';
import { H2ServerConnection, type H2Holdings } from '../../lib/http2/connection.js';
import { PREFACE } from '../../lib/http2/protocol.js';
import { textReply, type HttpReply } from '../../lib/http2/message.js';
import { block, h2Frame, RecordingSocket, T, u32 } from '../helpers/h2-frames.js';
import { asJson, BugError, type FuzzTarget } from './targets.js';

const MAX_STREAMS = 8;
const MAX_HEADER_LIST = 8192;
/** ceil(2 × 8192 / 16384) + 8: the frames a header block may take. */
const MAX_BLOCK_FRAMES = 9;
const MAX_ANSWER = 100_000;
const WRITE_HIGH_WATER = 1 << 20;

/** One thing the client (or the handler behind the connection) does. */
type Step =
  | { op: 'headers'; stream: number; endStream: boolean; endHeaders: boolean; post: boolean; length: number; padded: boolean }
  | { op: 'continuation'; stream: number; endHeaders: boolean; bytes: number }
  | { op: 'data'; stream: number; endStream: boolean; bytes: number; padded: boolean }
  | { op: 'rst'; stream: number }
  | { op: 'window'; stream: number; increment: number }
  | { op: 'settings'; initialWindow: number; maxFrame: number }
  | { op: 'ping' }
  | { op: 'priority'; stream: number; length: number }
  | { op: 'goaway' }
  | { op: 'respond'; which: number; size: number }
  | { op: 'raw'; type: number; flags: number; stream: number; bytes: Buffer };

/** Stream numbers: mostly the few a sequence opens, sometimes 0, an even one, or far ahead. */
const streamId = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 12 }).map((i) => 2 * i + 1) }, fc.constantFrom(0, 2, 1001));

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('headers' as const), stream: streamId, endStream: fc.boolean(), endHeaders: fc.boolean(), post: fc.boolean(), length: fc.integer({ min: -1, max: 40 }), padded: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('continuation' as const), stream: streamId, endHeaders: fc.boolean(), bytes: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('data' as const), stream: streamId, endStream: fc.boolean(), bytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 16_384 })), padded: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rst' as const), stream: streamId }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('window' as const), stream: fc.oneof(fc.constant(0), streamId), increment: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1 << 20 }), fc.constant(0x7fffffff)) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('settings' as const), initialWindow: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 70_000 }), fc.constant(-1)), maxFrame: fc.oneof(fc.constant(-1), fc.integer({ min: 16_384, max: 1 << 20 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('ping' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('priority' as const), stream: streamId, length: fc.constantFrom(5, 4) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('goaway' as const) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('respond' as const), which: fc.nat(7), size: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 600, max: MAX_ANSWER })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('raw' as const), type: fc.nat(12), flags: fc.nat(255), stream: streamId, bytes: fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)) }) },
);

function settingsPayload(initialWindow: number, maxFrame: number): Buffer {
  const parts: Buffer[] = [];
  const setting = (id: number, value: number) => {
    const b = Buffer.alloc(6);
    b.writeUInt16BE(id, 0);
    b.writeUInt32BE(value, 2);
    parts.push(b);
  };
  if (initialWindow >= 0) setting(4, initialWindow);
  if (maxFrame >= 0) setting(5, maxFrame);
  return Buffer.concat(parts);
}

function padded(payload: Buffer, pad: boolean): Buffer {
  return pad ? Buffer.concat([Buffer.from([3]), payload, Buffer.alloc(3)]) : payload;
}

/** The bytes a client step puts on the wire (null for the handler's steps). */
function wire(s: Step): Buffer | null {
  switch (s.op) {
    case 'headers': {
      const fields: [string, string][] = [
        [':method', s.post ? 'POST' : 'GET'],
        [':scheme', 'https'],
        [':path', '/dns-query'],
        ...(s.length >= 0 ? [['content-length', String(s.length)] as [string, string]] : []),
      ];
      const bytes = block(fields);
      return h2Frame(T.HEADERS, (s.endStream ? 0x1 : 0) | (s.endHeaders ? 0x4 : 0) | (s.padded ? 0x8 : 0), s.stream, padded(s.endHeaders ? bytes : bytes.subarray(0, 5), s.padded));
    }
    case 'continuation':
      return h2Frame(T.CONTINUATION, s.endHeaders ? 0x4 : 0, s.stream, block([['x-more', 'v']]).subarray(0, s.bytes));
    case 'data':
      return h2Frame(T.DATA, (s.endStream ? 0x1 : 0) | (s.padded ? 0x8 : 0), s.stream, padded(Buffer.alloc(Math.min(s.bytes, 16_376), 0x61), s.padded));
    case 'rst':
      return h2Frame(T.RST_STREAM, 0, s.stream, u32(8));
    case 'window':
      return h2Frame(T.WINDOW_UPDATE, 0, s.stream, u32(s.increment));
    case 'settings':
      return h2Frame(T.SETTINGS, 0, 0, settingsPayload(s.initialWindow, s.maxFrame));
    case 'ping':
      return h2Frame(T.PING, 0, 0, Buffer.alloc(8));
    case 'priority':
      return h2Frame(T.PRIORITY, 0, s.stream, Buffer.alloc(s.length));
    case 'goaway':
      return h2Frame(T.GOAWAY, 0, 0, Buffer.alloc(8));
    case 'raw':
      return h2Frame(s.type, s.flags, s.stream, s.bytes);
    case 'respond':
      return null;
  }
}

function checkBounds(held: H2Holdings, at: string): void {
  const problem =
    held.streams > MAX_STREAMS ? `${held.streams} streams` :
    held.waitingForWindow > held.streams ? `${held.waitingForWindow} in line for window, ${held.streams} streams` :
    held.pendingBytes < 0 || held.pendingBytes > WRITE_HIGH_WATER + MAX_ANSWER ? `${held.pendingBytes} answer bytes waiting` :
    held.bodyBytes > held.streams * 65_535 ? `${held.bodyBytes} body bytes for ${held.streams} streams` :
    held.blockFrames > MAX_BLOCK_FRAMES ? `a header block of ${held.blockFrames} frames` :
    held.timers > held.streams + 2 ? `${held.timers} timers for ${held.streams} streams` :
    null;
  if (problem) throw new BugError(`${at}: ${problem}`);
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

export const h2Stateful: FuzzTarget<Step[]> = {
  name: 'h2-stateful',
  inputs: 'sequences of HTTP/2 client frames and late answers → the connection, its bounds checked after every step and after close',
  arbitrary: fc.array(step, { minLength: 1, maxLength: 40 }),
  seeds: [
    [
      { op: 'settings', initialWindow: 0, maxFrame: -1 },
      { op: 'headers', stream: 1, endStream: true, endHeaders: true, post: false, length: -1, padded: false },
      { op: 'respond', which: 0, size: 5000 },
      { op: 'rst', stream: 1 },
      { op: 'window', stream: 0, increment: 100_000 },
    ],
    [
      { op: 'headers', stream: 3, endStream: false, endHeaders: false, post: true, length: 4, padded: true },
      { op: 'continuation', stream: 3, endHeaders: false, bytes: 0 },
      { op: 'continuation', stream: 3, endHeaders: true, bytes: 2 },
      { op: 'data', stream: 3, endStream: false, bytes: 0, padded: false },
      { op: 'data', stream: 3, endStream: true, bytes: 4, padded: true },
      { op: 'respond', which: 0, size: 70_000 },
    ],
  ],
  fromCorpus: asJson,
  async check(steps) {
    const socket = new RecordingSocket();
    const waiting: ((reply: HttpReply) => void)[] = [];
    const connection = new H2ServerConnection(socket as unknown as net.Socket, { maxStreams: MAX_STREAMS, maxHeaderListSize: MAX_HEADER_LIST, idleTimeoutMs: 5000, requestTimeoutMs: 5000 }, (request, respond) => {
      if (request.method === 'POST') void request.readBody(65_535).then((body) => (Buffer.isBuffer(body) ? waiting.push(respond) : respond(body)));
      else waiting.push(respond);
    });
    socket.emit('data', Buffer.concat([PREFACE, h2Frame(T.SETTINGS, 0, 0)]));
    for (const [i, s] of steps.entries()) {
      const bytes = wire(s);
      if (bytes) socket.emit('data', bytes);
      else if (waiting.length > 0) waiting.splice(s.op === 'respond' ? s.which % waiting.length : 0, 1)[0]!(textReply(200, 'x'.repeat(s.op === 'respond' ? s.size : 0)));
      await turn();
      checkBounds(connection.holdings(), `after step ${i} (${s.op})`);
      if (connection.holdings().unflushedBytes > 0) throw new BugError(`after step ${i}: written bytes not flushed after a turn`);
    }
    socket.emit('close');
    // Answers that come after the close are dropped, and the connection lets everything go.
    for (const respond of waiting.splice(0)) respond(textReply(200, 'late'));
    await turn();
    const held = connection.holdings();
    if (held.timers !== 0 || held.pendingBytes !== 0 || held.waitingForWindow !== 0 || held.bodyBytes !== 0) throw new BugError(`after close: ${JSON.stringify(held)}`);
    const out = Buffer.concat(socket.chunks);
    for (let at = 0; at + 9 <= out.length; at += 9 + out.readUIntBE(at, 3)) {
      if (out[at + 3] === T.GOAWAY && at + 17 <= out.length && out.readUInt32BE(at + 13) === 2) throw new BugError('GOAWAY INTERNAL_ERROR: an exception inside the connection');
      if (out[at + 3] === T.WINDOW_UPDATE && at + 13 <= out.length && (out.readUInt32BE(at + 9) & 0x7fffffff) === 0) throw new BugError('a WINDOW_UPDATE of 0 (RFC 9113 §6.9)');
    }
  },
};
