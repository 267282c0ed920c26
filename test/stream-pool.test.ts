/**
 * core/upstream/stream-pool.ts against scripted TCP servers: what is retried and what is not,
 * read and idle bounds, replacement of idle connections, and the connection events.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../core/dns/constants.js';
import { FrameReader, frame } from '../core/dns/framing.js';
import { buildQuery } from '../core/dns/message.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../core/errors.js';
import { upstreamConnection } from '../core/events.js';
import { quickAcker } from '../core/net/tcp-ack.js';
import { connectTcp } from '../core/upstream/connect.js';
import { StreamPool, type StreamPoolOptions } from '../core/upstream/stream-pool.js';
import { makeTestCerts } from './helpers/peers.js';

/** `indexInChunk`: where the query was among those one read of the socket brought. */
type Behaviour = (query: Buffer, socket: net.Socket, connection: number, indexInChunk: number) => void;

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

const answering = (query: Buffer, socket: net.Socket): void => void socket.write(frame(answer(query)));

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
      reader.push(chunk).forEach((query, index) => {
        state.queries++;
        behave(query, socket, connection, index);
      });
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
    const server = await scripted((q, socket, connection) => (connection === 1 ? socket.destroy() : answering(q, socket)));
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
    const server = await scripted((q, socket) => {
      if (!silent) answering(q, socket);
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

  it('queries on one connection time out in the order of their deadlines (one timer serves them all), each after its whole wait', async () => {
    const server = await scripted((q, socket) => {
      if (dnsPacket.decode(q).questions?.[0]?.name.startsWith('answered')) answering(q, socket);
    });
    const p = pool(server.port, { size: 1, retries: 0, readTimeoutMs: 5000 });
    try {
      // Answered: the connection's timer stays set for its deadline, later than all those below.
      await p.exchange(query('answered.test', 1), 1000);
      const failed: string[] = [];
      const started = performance.now();
      const ask = (name: string, timeoutMs: number, id: number) =>
        p.exchange(query(`${name}.test`, id), timeoutMs).catch((err: Error) => {
          failed.push(`${name}: ${err.message.replace(/^.*(no answer within \d+ms)$/, '$1')}`);
          return performance.now() - started;
        });
      // The later ones have earlier deadlines: the timer must be brought forward for each.
      const waited = await Promise.all([ask('long', 450, 2), ask('short', 150, 3), ask('middle', 300, 4)]);
      assert.deepEqual(failed, ['short: no answer within 150ms', 'middle: no answer within 300ms', 'long: no answer within 450ms']);
      // Never before its deadline (a Node timer may fire a millisecond early).
      [450, 150, 300].forEach((wait, i) => assert.ok((waited[i] as number) >= wait - 2, `failed after ${waited[i]} of ${wait} ms`));
      assert.equal(server.connections, 1, 'all on the one connection');
    } finally {
      p.close();
      await server.close();
    }
  });

  it('pipelines on a busy connection while a second one opens, up to the pool size', async () => {
    const held: Array<() => void> = [];
    const server = await scripted((q, socket) => held.push(() => socket.write(frame(answer(q)))));
    // retries 0: no copy of a held query goes out however long the test takes
    const p = pool(server.port, { size: 2, retries: 0 });
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

  it('the queries of one turn leave in one write of the connection, in order', async () => {
    const server = await scripted(answering);
    const writes: Buffer[] = [];
    const p = new StreamPool({
      label: `tcp 127.0.0.1:${server.port}`,
      size: 1,
      connect: async (timeoutMs) => {
        const socket = await connectTcp('127.0.0.1', server.port, timeoutMs);
        const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
        socket.write = ((chunk: Buffer) => {
          writes.push(Buffer.from(chunk));
          return write(chunk);
        }) as typeof socket.write;
        return socket;
      },
    });
    try {
      await p.warm();
      const ids = [11, 12, 13, 14, 15];
      const answers = await Promise.all(ids.map((id) => p.exchange(query(`n${id}.test`, id), 2000)));
      assert.deepEqual(answers.map((a) => a.readUInt16BE(0)), ids);
      assert.equal(writes.length, 1, 'one write for the five queries of the turn');
      const sent = new FrameReader().push(writes[0]!);
      assert.deepEqual(sent.map((m) => dnsPacket.decode(m).questions![0]!.name), ids.map((id) => `n${id}.test`));
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

  it('a server that sits on pipelined queries (dnsdist\'s DoT front-end): the held one is sent again elsewhere, and the pool spreads', async () => {
    const server = await scripted(lazyInOrder());
    const serial: string[] = [];
    const p = pool(server.port, { size: 1, onSerial: (detail) => serial.push(detail) });
    try {
      await p.exchange(query('warm.test', 1), 5000); // a round trip measured: copies go out after a few ms
      const names = ['a.test', 'b.test', 'c.test'];
      const replies = await Promise.all(names.map((name, i) => p.exchange(query(name, 10 + i), 5000)));
      assert.deepEqual(replies.map((r) => r.readUInt16BE(0)), [10, 11, 12]);
      assert.deepEqual(replies.map((r) => dnsPacket.decode(r).questions![0]!.name), names);
      assert.ok(p.stats.hedged >= 1, 'a held query went out again');
      assert.ok(p.stats.heldBack >= 1, 'and its copy was answered first');
      assert.equal(p.serverOrdering, 'serial');
      assert.equal(serial.length, 1, 'said once');
      assert.ok(p.openConnections > 1, 'the pool grew past its size for a serial server');
      // The first connection still owes the answers to what it sat on: they come with the next
      // bytes it gets, are ignored, and the connection goes on serving.
      const opened = server.connections;
      const more = await Promise.all(['d.test', 'e.test', 'f.test', 'g.test'].map((name, i) => p.exchange(query(name, 20 + i), 5000)));
      assert.deepEqual(more.map((r) => r.readUInt16BE(0)), [20, 21, 22, 23]);
      assert.equal(p.stats.failed, 0);
      assert.ok(server.connections <= Math.max(opened, 1) + 4);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('answers that came while this process was paused are read before any query is sent again', async () => {
    // The server is another process, so that it answers while this one is blocked.
    const server = await echoServerProcess();
    const p = pool(server.port, { size: 2 });
    try {
      await p.warm(2);
      await p.exchange(query('warm.test', 1), 5000); // a round trip measured: copies are due after a few ms
      const replies = Promise.all(['a.test', 'b.test', 'c.test'].map((name, i) => p.exchange(query(name, 10 + i), 5000)));
      await new Promise((resolve) => setImmediate(resolve)); // the queries leave (the pool writes a turn's queries at its end)
      // Blocked (as by a long collection) until the server has answered all three, and well past
      // the time a copy of the pipelined third is due: at the next turn its timer is late and the
      // three answers are waiting unread.
      const blockedUntil = Date.now() + 500;
      const giveUpAt = Date.now() + 10_000;
      while (server.answered() < 4 || Date.now() < blockedUntil) {
        if (Date.now() > giveUpAt) throw new Error(`the server answered ${server.answered()} of 4 queries in 10 s`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
      assert.deepEqual((await replies).map((r) => r.readUInt16BE(0)), [10, 11, 12]);
      assert.equal(p.stats.hedged, 0, 'no query went out twice');
      assert.equal(server.answered(), 4);
    } finally {
      p.close();
      server.stop();
    }
  });

  it('at the end of a burst, with every connection sitting on queries, each query is still answered', async () => {
    // dnsdist's DoT front-end reads one more query of a connection only when new bytes come:
    // once the burst is over nothing comes, and copies sent behind held queries are held too.
    const server = await scripted(onePerRead());
    const p = pool(server.port, { size: 1 });
    try {
      await p.exchange(query('warm.test', 1), 5000); // a round trip measured: copies go out after a few ms
      const names = Array.from({ length: 12 }, (_, i) => `q${i}.test`);
      const results = await Promise.allSettled(names.map((name, i) => p.exchange(query(name, 100 + i), 1500)));
      assert.deepEqual(
        results.map((r) => r.status),
        names.map(() => 'fulfilled'),
      );
      assert.deepEqual(
        results.map((r) => dnsPacket.decode((r as PromiseFulfilledResult<Buffer>).value).questions![0]!.name),
        names,
      );
      assert.ok(p.openConnections <= 5, 'never more than a serial server\'s connections and the copies\' extra');
    } finally {
      p.close();
      await server.close();
    }
  });

  it('a server that answers out of order is concurrent: nothing is sent twice', async () => {
    // Holds each connection's first query until the second comes, then answers the second first.
    const server = await scripted(swapPairs());
    const p = pool(server.port, { size: 1 });
    try {
      const replies = await Promise.all([p.exchange(query('a.test', 1), 5000), p.exchange(query('b.test', 2), 5000)]);
      assert.deepEqual(replies.map((r) => r.readUInt16BE(0)), [1, 2]);
      assert.equal(p.serverOrdering, 'concurrent');
      assert.equal(p.stats.hedged, 0);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('with max retries 0, a held query is never sent twice', async () => {
    const server = await scripted(lazyInOrder());
    const p = pool(server.port, { size: 1, retries: 0 });
    try {
      await p.exchange(query('warm.test', 1), 5000);
      const results = await Promise.allSettled(['a.test', 'b.test'].map((name, i) => p.exchange(query(name, 10 + i), 300)));
      assert.equal(results[0]!.status, 'fulfilled');
      assert.equal(results[1]!.status, 'rejected');
      assert.ok((results[1] as PromiseRejectedResult).reason instanceof UpstreamTimeoutError);
      assert.equal(server.queries, 3, 'no copy went out');
      assert.equal(p.stats.hedged, 0);
      assert.equal(p.serverOrdering, 'unknown');
    } finally {
      p.close();
      await server.close();
    }
  });

  it('every connection full: a query waits for room instead of failing, oldest first', async () => {
    const held: Array<() => void> = [];
    let most = 0;
    const server = await scripted((q, socket) => {
      held.push(() => socket.write(frame(answer(q))));
      most = Math.max(most, held.length);
    });
    // One connection of two queries in flight, no copies: eight more must wait their turn.
    const p = pool(server.port, { size: 1, maxInflight: 2, retries: 0 });
    try {
      const order: number[] = [];
      const exchanges = Array.from({ length: 10 }, (_, i) => p.exchange(query(`w${i}.test`, i + 1), 5000).then((r) => (order.push(r.readUInt16BE(0)), r)));
      // Answer whatever the server holds, a few at a time, until all ten were answered.
      for (let round = 0; round < 50 && order.length < 10; round++) {
        await waitFor(() => held.length > 0 || order.length === 10);
        for (const release of held.splice(0)) release();
      }
      await Promise.all(exchanges);
      assert.deepEqual(order, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.ok(most <= 2, `the server held ${most} at once`);
      assert.equal(server.connections, 1);
    } finally {
      p.close();
      await server.close();
    }
  });

  it('a query waiting for room gives up at its deadline, and close() ends those still waiting', async () => {
    const server = await scripted(() => {});
    const p = pool(server.port, { size: 1, maxInflight: 1, retries: 0 });
    try {
      const inFlight = p.exchange(query('a.test', 1), 5000);
      await waitFor(() => server.queries === 1);
      await assert.rejects(p.exchange(query('b.test', 2), 100), /every connection was full/);
      const stillWaiting = p.exchange(query('c.test', 3), 5000);
      p.close();
      await assert.rejects(stillWaiting, /stopped/);
      await assert.rejects(inFlight, /stopped/);
      assert.equal(server.queries, 1, 'no waiting query reached the server');
    } finally {
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

describe('stream pool over TLS 1.3', () => {
  const noAcks = quickAcker(new net.Socket()) ? false : 'skipped: quick ACKs not built (native/tcp-ack.c) or VEIL_QUICKACK=off';

  it('acknowledges the session tickets sent after the handshake at once: a server with Nagle on would hold the first answer behind them', { skip: noAcks }, async () => {
    const certs = makeTestCerts();
    // Node's TLS 1.3 server sends its tickets once the client's Finished is in, before any query.
    const server = tls.createServer({ key: readFileSync(certs.key), cert: readFileSync(certs.chain), minVersion: 'TLSv1.3' }, (socket) => {
      const reader = new FrameReader();
      socket.on('data', (chunk: Buffer) => reader.push(chunk).forEach((q) => answering(q, socket)));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const p = new StreamPool({
      label: `tls 127.0.0.1:${port}`,
      connect: () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = tls.connect({ host: '127.0.0.1', port, servername: 'dns.test', ca: readFileSync(certs.ca), minVersion: 'TLSv1.3' }, () => resolve(socket));
          socket.once('error', reject);
        }),
    });
    try {
      await p.exchange(query('a.test'), 2000);
      // The one answer left nothing in flight, so no read asked for an acknowledgement: only the tickets can have.
      assert.ok(p.stats.quickAcks >= 1, `the tickets were not acknowledged at once (${p.stats.quickAcks})`);
    } finally {
      p.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
});

/**
 * Like dnsdist's DoT front-end without maxInFlight: of the queries that arrive in one chunk it
 * answers the first, and the others only when the next chunk arrives on that connection.
 */
function lazyInOrder(): Behaviour {
  const backlog = new Map<net.Socket, Buffer[]>();
  return (q, socket, _connection, indexInChunk) => {
    const waiting = backlog.get(socket) ?? [];
    backlog.set(socket, waiting);
    if (indexInChunk > 0) return void waiting.push(q);
    for (const held of waiting.splice(0)) socket.write(frame(answer(held)));
    socket.write(frame(answer(q)));
  };
}

/** Like dnsdist's DoT front-end: each read of a connection lets it answer one query, the oldest it holds. */
function onePerRead(): Behaviour {
  const backlog = new Map<net.Socket, Buffer[]>();
  return (q, socket, _connection, indexInChunk) => {
    const waiting = backlog.get(socket) ?? [];
    backlog.set(socket, waiting);
    waiting.push(q);
    if (indexInChunk === 0) socket.write(frame(answer(waiting.shift()!)));
  };
}

/** Holds each connection's odd queries until the next one comes, then answers that one first. */
function swapPairs(): Behaviour {
  const held = new Map<net.Socket, Buffer>();
  return (q, socket) => {
    const first = held.get(socket);
    if (!first) {
      held.set(socket, q);
      return;
    }
    held.delete(socket);
    socket.write(frame(answer(q)));
    socket.write(frame(answer(first)));
  };
}

async function waitFor(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A DNS-over-TCP server in a child process that answers every query at once (the query itself,
 * QR set): it goes on answering while the test's process is blocked. `answered()` reads, without
 * the event loop, how many it has answered so far (the child counts them in a file).
 */
async function echoServerProcess(): Promise<{ port: number; answered(): number; stop(): void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-echo-'));
  const count = path.join(dir, 'answered');
  writeFileSync(count, '0');
  const script = `
    const net = require('node:net'); const fs = require('node:fs');
    let answered = 0;
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      let buffered = Buffer.alloc(0);
      socket.on('error', () => {});
      socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          const message = Buffer.from(buffered.subarray(0, 2 + buffered.readUInt16BE(0)));
          buffered = buffered.subarray(message.length);
          message[4] |= 0x80;
          socket.write(message, () => fs.writeFileSync(${JSON.stringify(count)}, String(++answered)));
        }
      });
    });
    server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the echo server exited (${code})`)));
    child.stdout!.once('data', (line: Buffer) => resolve(Number(line.toString().trim())));
  });
  return {
    port,
    answered: () => Number(readFileSync(count, 'utf8')),
    stop: () => {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
