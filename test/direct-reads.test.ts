/**
 * core/net/direct-reads.ts over real loopback sockets: reads that come before anybody listens are
 * kept and delivered first, each chunk handed on is a copy that later reads do not overwrite, the
 * socket still ends and closes as usual, and a socket opened without it falls back to 'data'.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { onChunks, readsDirectly } from '../core/net/direct-reads.js';
import { connectTcp } from '../core/upstream/connect.js';

/** A server that sends `greeting` at once, then answers each read with `reply:<bytes>`, then ends after `endAfter` reads. */
async function server(greeting: string, endAfter: number): Promise<{ port: number; close: () => void }> {
  const accepted = new Set<net.Socket>();
  const srv = net.createServer((socket) => {
    accepted.add(socket);
    socket.setNoDelay(true);
    socket.write(greeting);
    let reads = 0;
    socket.on('data', (data) => {
      reads++;
      const reply = Buffer.from(`reply:${data.toString()}`);
      if (reads >= endAfter) socket.end(reply);
      else socket.write(reply);
    });
    socket.on('error', () => {});
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const close = (): void => {
    for (const socket of accepted) socket.destroy();
    srv.close();
  };
  return { port: (srv.address() as net.AddressInfo).port, close };
}

/** Resolves once `chunks` holds `text` in all. */
function until(chunks: Buffer[], text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      if (Buffer.concat(chunks).toString() === text) resolve();
      else if (Date.now() - started > 5000) reject(new Error(`got "${Buffer.concat(chunks).toString()}", wanted "${text}"`));
      else setTimeout(check, 5);
    };
    check();
  });
}

/** `promise`, or a failure after 5 s. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within 5 s`)), 5000);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('direct reads', () => {
  it('keeps what came before a receiver was set, delivers it first, then reads on', async () => {
    const srv = await server('hello', 2);
    const socket = await connectTcp('127.0.0.1', srv.port, 2000);
    try {
      assert.equal(readsDirectly(socket), true);
      let dataEvents = 0;
      socket.on('data', () => dataEvents++);
      // The greeting arrives while nobody reads.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const chunks: Buffer[] = [];
      onChunks(socket, (chunk) => chunks.push(chunk));
      assert.equal(chunks.map(String).join(''), 'hello', 'the early read is delivered when the receiver is set');
      socket.write('one');
      await until(chunks, 'helloreply:one');
      const ended = once(socket, 'end');
      const closed = once(socket, 'close');
      socket.write('two');
      await until(chunks, 'helloreply:onereply:two');
      await within(ended, "'end'");
      await within(closed, "'close'");
      assert.equal(dataEvents, 0, "a direct socket emits no 'data'");
    } finally {
      socket.destroy();
      srv.close();
    }
  });

  it('hands on copies: a chunk kept by the receiver survives the reads after it', async () => {
    const srv = await server('', 3);
    const socket = await connectTcp('127.0.0.1', srv.port, 2000);
    try {
      const chunks: Buffer[] = [];
      onChunks(socket, (chunk) => chunks.push(chunk));
      socket.write('aaaa');
      await until(chunks, 'reply:aaaa');
      const first = chunks[0]!;
      socket.write('bbbb');
      await until(chunks, 'reply:aaaareply:bbbb');
      socket.write('cccc');
      await until(chunks, 'reply:aaaareply:bbbbreply:cccc');
      assert.equal(first.toString(), 'reply:aaaa', 'later reads did not overwrite the first chunk');
    } finally {
      socket.destroy();
      srv.close();
    }
  });

  it("a socket opened otherwise is read through 'data'", async () => {
    const srv = await server('plain', 1);
    const socket = net.connect({ host: '127.0.0.1', port: srv.port });
    try {
      await once(socket, 'connect');
      assert.equal(readsDirectly(socket), false);
      const chunks: Buffer[] = [];
      onChunks(socket, (chunk) => chunks.push(chunk));
      await until(chunks, 'plain');
    } finally {
      socket.destroy();
      srv.close();
    }
  });
});
