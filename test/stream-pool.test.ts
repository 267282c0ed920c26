/**
 * core/upstream/stream-pool.ts against scripted TCP servers: what is retried and what is not,
 * read and idle bounds, replacement of idle connections, and the connection events.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../core/dns/constants.js';
import { FrameReader, frame } from '../core/dns/framing.js';
import { buildQuery } from '../core/dns/message.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../core/errors.js';
import { upstreamConnection } from '../core/events.js';
import { connectTcp } from '../core/upstream/connect.js';
import { StreamPool, type StreamPoolOptions } from '../core/upstream/stream-pool.js';

type Behaviour = (query: Buffer, socket: net.Socket, connection: number) => void;

interface Scripted {
  port: number;
  connections: number;
  queries: number;
  close(): Promise<void>;
}

const answer = (query: Buffer): Buffer => {
  const packet = dnsPacket.decode(query);
  return dnsPacket.encode({ id: packet.id, type: 'response', flags: dnsPacket.RECURSION_DESIRED, questions: packet.questions, answers: [] });
};

const answering: Behaviour = (query, socket) => socket.write(frame(answer(query)));

async function scripted(behave: Behaviour): Promise<Scripted> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, queries: 0 };
  const server = net.createServer((socket) => {
    const connection = ++state.connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) => {
      for (const query of reader.push(chunk)) {
        state.queries++;
        behave(query, socket, connection);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    get queries() {
      return state.queries;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function pool(port: number, options: Partial<StreamPoolOptions> = {}): StreamPool & { connects: number } {
  const counter = { connects: 0 };
  const created = new StreamPool({
    label: `tcp 127.0.0.1:${port}`,
    connect: (timeoutMs) => {
      counter.connects++;
      return connectTcp('127.0.0.1', port, timeoutMs);
    },
    ...options,
  });
  return Object.defineProperty(created, 'connects', { get: () => counter.connects }) as StreamPool & { connects: number };
}

const query = (name: string, id = 1) => buildQuery(name, QType.A, { id });

describe('stream pool', () => {
  it('answers with the caller\'s ID, whatever ID went on the wire', async () => {
    const server = await scripted(answering);
    const p = pool(server.port);
    try {
      const reply = await p.exchange(query('a.test', 4321), 1000);
      assert.equal(reply.readUInt16BE(0), 4321);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('a connection that cannot be opened is not retried: the caller fails over', async () => {
    const server = await scripted(answering);
    const port = server.port;
    await server.close();
    const p = pool(port, { retries: 3 });
    try {
      await assert.rejects(p.exchange(query('a.test'), 1000), UpstreamUnavailableError);
      assert.equal(p.connects, 1);
    } finally {
      p.close();
    }
  });

  it('a connection dying under a query: the query is sent again on a fresh one', async () => {
    const server = await scripted((q, socket, connection) => (connection === 1 ? socket.destroy() : answering(q, socket, connection)));
    const p = pool(server.port, { retries: 1 });
    try {
      const reply = await p.exchange(query('a.test', 7), 1000);
      assert.equal(reply.readUInt16BE(0), 7);
      assert.equal(server.connections, 2);
      assert.equal(server.queries, 2);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('with max retries spent, the failure goes to the caller', async () => {
    const server = await scripted((_q, socket) => socket.destroy());
    const p = pool(server.port, { retries: 1 });
    try {
      await assert.rejects(p.exchange(query('a.test'), 1000), /closed/);
      assert.equal(server.queries, 2);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('read timeout: the query times out, and a silent connection is presumed dead and replaced', async () => {
    let silent = true;
    const server = await scripted((q, socket, connection) => {
      if (!silent) answering(q, socket, connection);
    });
    const p = pool(server.port, { readTimeoutMs: 100 });
    try {
      await assert.rejects(p.exchange(query('a.test'), 2000), UpstreamTimeoutError);
      assert.equal(p.openConnections, 0, 'nothing came back for a whole read timeout: the connection is dropped');
      silent = false;
      await p.exchange(query('b.test'), 2000);
      assert.equal(server.connections, 2);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('a query cut short by its own deadline does not condemn the connection', async () => {
    const server = await scripted(() => {});
    const p = pool(server.port, { readTimeoutMs: 1000 });
    try {
      await assert.rejects(p.exchange(query('a.test'), 50), UpstreamTimeoutError);
      assert.equal(p.openConnections, 1);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('pipelines on a busy connection while a second one opens, up to the pool size', async () => {
    const held: Array<() => void> = [];
    const server = await scripted((q, socket) => held.push(() => socket.write(frame(answer(q)))));
    const p = pool(server.port, { size: 2 });
    try {
      const first = p.exchange(query('a.test', 1), 2000);
      await waitFor(() => held.length === 1);
      const second = p.exchange(query('b.test', 2), 2000);
      await waitFor(() => held.length === 2);
      await waitFor(() => p.openConnections === 2);
      assert.equal(server.connections, 2, 'a second connection opened for the queries to come');
      const third = p.exchange(query('c.test', 3), 2000);
      await waitFor(() => held.length === 3);
      assert.equal(server.connections, 2, 'never more than the pool size');
      for (const release of held) release();
      assert.deepEqual((await Promise.all([first, second, third])).map((r) => r.readUInt16BE(0)), [1, 2, 3]);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('publishes its connection events under the upstream\'s name', async () => {
    const server = await scripted(answering);
    const events: string[] = [];
    const listener = (m: { upstream: string; event: string; open: number }) => {
      if (m.upstream === 'pool-events') events.push(`${m.event}:${m.open}`);
    };
    upstreamConnection.subscribe(listener);
    const p = pool(server.port, { idleTimeoutMs: 100, replaceIdle: false, events: { upstream: 'pool-events', protocol: 'tcp' } });
    try {
      await p.exchange(query('a.test'), 1000);
      await p.exchange(query('b.test'), 1000);
      await waitFor(() => events.includes('stale-closed:0'));
      assert.deepEqual(events, ['created:1', 'reused:1', 'stale-closed:0']);
    } finally {
      upstreamConnection.unsubscribe(listener);
      p.close();
      await server.close();
    }
  });

  it('close() fails the queries in flight and refuses new ones', async () => {
    const server = await scripted(() => {});
    const p = pool(server.port);
    const pending = p.exchange(query('a.test'), 2000);
    await waitFor(() => server.queries === 1);
    p.close();
    await assert.rejects(pending, /stopped/);
    await assert.rejects(p.exchange(query('b.test'), 1000), /stopped/);
    await server.close();
  });
});

async function waitFor(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}
