/**
 * `http2 node`: the bounds Veil keeps around node:http2 itself (lib/http2/node-connection.ts),
 * with raw frames on a real socket. nghttp2's own bounds are its own; these are the ones that
 * would be gone if the wrapper did not keep them: reset streams still being answered count
 * against max_streams, a connection kept busy by PINGs alone is closed when idle, and an answer
 * the client does not take within the request timeout is reset, and a header list over the
 * size announced is answered 431.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { H2Options } from '../lib/http2/connection.js';
import { HpackDecoder } from '../lib/http2/hpack.js';
import type { HttpReply, RequestHandler } from '../lib/http2/message.js';
import { http2Server } from '../lib/http2/server.js';
import { E, GET, RawClient, T, text, u32 } from './helpers/h2-frames.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** node:http2, as a listener with `http2 node` opens it, on a plain TCP listener of the test's own. */
async function startNodeServer(options: Partial<H2Options>, handler: RequestHandler): Promise<{ port: number; close(): Promise<void> }> {
  const h2 = http2Server('node', { maxStreams: 100, maxHeaderListSize: 8192, idleTimeoutMs: 5000, requestTimeoutMs: 5000, ...options });
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    sockets.push(socket);
    h2.open(socket, handler);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('http2 node: the bounds Veil keeps around node:http2', () => {
  it('streams reset while their query is answered still count against max_streams (rapid reset)', async () => {
    const held: ((reply: HttpReply) => void)[] = [];
    const server = await startNodeServer({ maxStreams: 4 }, (_request, respond) => held.push(respond));
    const c = await RawClient.open(server.port);
    try {
      for (const id of [1, 3, 5, 7]) {
        c.request(id, GET());
        c.send(T.RST_STREAM, 0, id, u32(E.CANCEL));
      }
      for (let i = 0; i < 100 && held.length < 4; i++) await sleep(10);
      assert.equal(held.length, 4);
      c.request(9, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 9), 'a fifth stream was taken while four queries were being answered');
      assert.equal(c.reset(9), E.REFUSED_STREAM);
      assert.equal(held.length, 4);
      // Answered (on streams long gone): there is room again.
      for (const respond of held.splice(0)) respond(text(200, 'late'));
      c.request(11, GET());
      for (let i = 0; i < 100 && held.length < 1; i++) await sleep(10);
      held[0]!(text(200, 'ok'));
      assert.equal(await c.body(11), 'ok');
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('a header list over max_header_size is answered 431 (node:http2 alone would take it)', async () => {
    let handed = 0;
    const server = await startNodeServer({ maxHeaderListSize: 1024 }, (_request, respond) => {
      handed++;
      respond(text(200, 'ok'));
    });
    const c = await RawClient.open(server.port);
    try {
      c.request(1, GET('/dns-query', [['x-big', 'a'.repeat(2000)]]));
      const head = await c.waitFor((f) => f.type === T.HEADERS && f.stream === 1);
      assert.ok(head, 'no answer');
      assert.deepEqual(new HpackDecoder().decode(head.payload, 8192).headers[0], [':status', '431']);
      assert.equal(handed, 0);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('a connection with no stream open is closed after idle_timeout, though PINGs keep arriving', async () => {
    const server = await startNodeServer({ idleTimeoutMs: 300 }, (_request, respond) => respond(text(200, 'ok')));
    const c = await RawClient.open(server.port);
    try {
      for (let i = 0; i < 15 && !c.closed; i++) {
        c.send(T.PING, 0, 0, Buffer.alloc(8, i));
        await sleep(100);
      }
      assert.equal(await c.goaway(1000), E.NO_ERROR);
      assert.ok(await c.closedWithin(3000), 'the connection is still open');
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('an answer the client takes no window for is reset after request_timeout', async () => {
    const server = await startNodeServer({ requestTimeoutMs: 300, idleTimeoutMs: 60_000 }, (_request, respond) => respond(text(200, 'x'.repeat(1000))));
    // SETTINGS_INITIAL_WINDOW_SIZE 0: the answer's DATA cannot be sent.
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    const c = await RawClient.open(server.port, settings);
    try {
      c.request(1, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 1, 3000), 'the stream is still open');
      assert.equal(c.reset(1), E.CANCEL);
    } finally {
      c.destroy();
      await server.close();
    }
  });
});
