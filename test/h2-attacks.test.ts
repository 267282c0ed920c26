/**
 * The HTTP/2 attacks of the security review of 2026-12-04 (issue 24), each reproduced with raw
 * frames against Veil's HTTP/2 server connection on a real socket. Each test fails on the code
 * before the fix: the connection then kept growing (fragments, the line of blocked streams, empty
 * body pieces) or never ended.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestHandler } from '../lib/http2/message.js';
import { block, E, echo, GET, h2Frame, RawClient, startServer, T, text, u32 } from './helpers/h2-frames.js';

const POST = (length?: number): [string, string][] => [
  [':method', 'POST'],
  [':scheme', 'https'],
  [':path', '/dns-query'],
  ...(length === undefined ? [] : [['content-length', String(length)] as [string, string]]),
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits (at most `ms`) until `done()` holds; returns whether it did. */
async function until(done: () => boolean, ms = 3000): Promise<boolean> {
  for (const deadline = Date.now() + ms; !done(); await sleep(10)) if (Date.now() > deadline) return false;
  return true;
}
const answers = (size: number): RequestHandler => (_request, respond) => respond(text(200, 'x'.repeat(size)));

describe('issue 24: HTTP/2 attacks of the security review (raw frames)', () => {
  it('issue 24 finding 1: empty CONTINUATION frames end the connection after a bounded number of frames', async () => {
    const server = await startServer({}, echo);
    const c = await RawClient.open(server.port);
    try {
      c.send(T.HEADERS, 0, 1, block(GET()).subarray(0, 3));
      // 20,000 empty CONTINUATIONs: no bytes for the header-block limit to count.
      c.write(Buffer.concat(Array.from({ length: 20_000 }, () => h2Frame(T.CONTINUATION, 0, 1))));
      assert.equal(await c.goaway(), E.ENHANCE_YOUR_CALM);
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 1: a header block that never ends is an error after request_timeout, though frames keep arriving', async () => {
    const server = await startServer({ idleTimeoutMs: 60_000, requestTimeoutMs: 300 }, echo);
    const c = await RawClient.open(server.port);
    try {
      const fields = block(GET('/dns-query', [['x-a', 'drip']]));
      c.send(T.HEADERS, 0, 1, fields.subarray(0, 2));
      for (let i = 2; i < 7; i++) {
        c.send(T.CONTINUATION, 0, 1, fields.subarray(i, i + 1));
        await sleep(100);
      }
      assert.equal(await c.goaway(3000), E.PROTOCOL_ERROR);
      assert.equal(server.connections[0]!.holdings().blockFrames, 0);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 2: reset streams whose answers wait for window leave the line at once; the line stays bounded', async () => {
    const server = await startServer({ maxStreams: 100 }, answers(1000));
    const c = await RawClient.open(server.port);
    const connection = () => server.connections[0]!;
    try {
      // 66 answers of 1000 bytes spend the connection window (65,535): the last waits, partly sent.
      let id = 1;
      for (let i = 0; i < 66; i++, id += 2) c.request(id, GET());
      assert.ok(await c.waitFor((f) => f.type === T.HEADERS && f.stream === id - 2));
      const partly = id - 2;
      // Batches of 90 streams: each answered (its answer waits for window), then reset by the client.
      let most = 0;
      for (let batch = 0; batch < 30; batch++) {
        const first = id;
        for (let i = 0; i < 90; i++, id += 2) c.request(id, GET());
        assert.ok(await c.waitFor((f) => f.type === T.HEADERS && f.stream === id - 2), `batch ${batch} answered`);
        most = Math.max(most, connection().holdings().waitingForWindow);
        for (let s = first; s < id; s += 2) c.send(T.RST_STREAM, 0, s, u32(E.CANCEL));
        assert.ok(await until(() => connection().holdings().waitingForWindow === 1), `batch ${batch}: reset streams still in line`);
      }
      assert.ok(most <= 100, `${most} streams in line, more than max_streams`);
      const held = connection().holdings();
      assert.equal(held.streams, 1);
      assert.equal(held.pendingBytes, 1000 - (65_535 % 1000));
      // Window at last: the one stream still open is answered, and nothing is left.
      c.send(T.WINDOW_UPDATE, 0, 0, u32(1 << 20));
      assert.equal((await c.body(partly))!.length, 1000);
      assert.deepEqual({ ...connection().holdings(), timers: 0 }, { streams: 0, waitingForWindow: 0, pendingBytes: 0, bodyBytes: 0, blockFrames: 0, unflushedBytes: 0, timers: 0 });
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 2: a stream waiting on a zero window is reset after request_timeout', async () => {
    const server = await startServer({ requestTimeoutMs: 300 }, answers(100));
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no answer byte may be sent until the client says so.
    const c = await RawClient.open(server.port, Buffer.from([0, 4, 0, 0, 0, 0]));
    try {
      c.request(1, GET());
      assert.ok(await c.waitFor((f) => f.type === T.HEADERS && f.stream === 1));
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 1, 3000), 'the stalled stream was not reset');
      assert.equal(c.reset(1), E.CANCEL);
      assert.equal(server.connections[0]!.holdings().streams, 0);
      assert.equal(server.connections[0]!.holdings().pendingBytes, 0);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 2: past 1 MiB of answers waiting for window, new streams are refused', async () => {
    const server = await startServer({}, answers(200_000));
    const c = await RawClient.open(server.port, Buffer.from([0, 4, 0, 0, 0, 0]));
    try {
      for (let id = 1; id <= 11; id += 2) c.request(id, GET());
      assert.ok(await c.waitFor((f) => f.type === T.HEADERS && f.stream === 11));
      assert.equal(server.connections[0]!.holdings().pendingBytes, 6 * 200_000);
      c.request(13, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 13));
      assert.equal(c.reset(13), E.REFUSED_STREAM);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 3: empty DATA frames are not stored nor answered with a WINDOW_UPDATE of 0; a flood ends the connection', async () => {
    const server = await startServer({}, echo);
    const c = await RawClient.open(server.port);
    try {
      // A few empty frames within a body are allowed, and cost nothing.
      c.request(1, POST(3), false);
      for (let i = 0; i < 20; i++) c.send(T.DATA, 0, 1);
      c.send(T.DATA, 1, 1, Buffer.from('abc'));
      assert.equal(JSON.parse((await c.body(1))!).body, 'abc');
      // A flood of them is not.
      c.request(3, POST(), false);
      c.write(Buffer.concat(Array.from({ length: 5000 }, () => h2Frame(T.DATA, 0, 3))));
      assert.equal(await c.goaway(), E.ENHANCE_YOUR_CALM);
      const zero = c.frames.filter((f) => f.type === T.WINDOW_UPDATE && f.payload.readUInt32BE(0) === 0);
      assert.equal(zero.length, 0, 'WINDOW_UPDATE with an increment of 0 (RFC 9113 §6.9)');
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 finding 3: a body sent a byte a frame is held in one buffer, not a Buffer per frame', async () => {
    const server = await startServer({}, echo);
    const c = await RawClient.open(server.port);
    try {
      const body = Buffer.alloc(30_000, 0x61);
      c.request(1, POST(body.length), false);
      c.write(Buffer.concat(Array.from(body, (byte) => h2Frame(T.DATA, 0, 1, Buffer.from([byte])))));
      await until(() => server.sockets[0]!.bytesRead >= body.length * 10);
      const held = server.connections[0]!.holdings();
      assert.ok(held.bodyBytes <= 65_535, `${held.bodyBytes} bytes held for a body of ${body.length}`);
      c.send(T.DATA, 1, 1);
      assert.equal(JSON.parse((await c.body(1))!).body.length, body.length);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24 low: refused streams are forgiven over time (the counter decays)', async () => {
    const held: (() => void)[] = [];
    const server = await startServer({ maxStreams: 1 }, (_request, respond) => held.push(() => respond(text(200, 'late'))));
    const c = await RawClient.open(server.port);
    try {
      c.request(1, GET()); // holds the only stream
      let id = 3;
      for (let i = 0; i < 98; i++, id += 2) c.request(id, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === id - 2));
      await sleep(3000);
      // 98 + 4 refused streams in all: over 100, but not at once.
      for (let i = 0; i < 4; i++, id += 2) c.request(id, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === id - 2));
      assert.equal(await c.goaway(300), null, 'the connection was cut off for refusals spread over time');
      assert.equal(c.reset(id - 2), E.REFUSED_STREAM);
      for (const release of held.splice(0)) release();
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('issue 24: PINGs do not keep a connection with no stream open past idle_timeout', async () => {
    const server = await startServer({ idleTimeoutMs: 300 }, echo);
    const c = await RawClient.open(server.port);
    try {
      let goaway: number | null = null;
      for (let i = 0; i < 40 && goaway === null; i++) {
        c.send(T.PING, 0, 0, Buffer.alloc(8));
        goaway = await c.goaway(50);
      }
      assert.equal(goaway, E.NO_ERROR);
    } finally {
      c.destroy();
      await server.close();
    }
  });
});
