/**
 * The native addons. Batched UDP (native/udp-batch.c through core/net/udp-batch.ts): datagrams
 * in bursts, answers that come later, answers too big to queue at once, IPv6 clients, binding
 * errors; connected upstream sockets (queued sends, a closed port, strangers' datagrams); the
 * node:dgram path that serves when the addon is not built, through the real bin/veil; quick ACKs
 * on upstream stream connections. And native/memory.c, which gives freed memory back after full collections.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import dnsPacket from 'dns-packet';
import { QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { queryUdp } from '../core/testing/client.js';
import { loadMemoryAddon, trimAfterCollections } from '../core/memory.js';
import { quickAcker } from '../core/net/tcp-ack.js';
import { BatchedUdpSocket, ConnectedUdpSocket, formatIPv6, udpBatchAddon, type BatchPeer } from '../core/net/udp-batch.js';
import { hasCompiler } from './helpers/peers.js';
import { startVeil, type VeilProcess } from './helpers/veil-process.js';

const addon = udpBatchAddon();
const notBuilt = addon ? false : 'skipped: native UDP batching not built (no C compiler, not Linux, or VEIL_UDP_BATCH=off)';

/** Opens a batched socket whose handler is `answer`; replies go back to the sender. */
function open(host: string, answer: (message: Buffer, peer: BatchPeer) => Buffer | null | Promise<Buffer | null>, port = 0, reusePort = false): BatchedUdpSocket {
  const socket: BatchedUdpSocket = new BatchedUdpSocket(addon!, host, port, reusePort, 1 << 20, (message, peer) => {
    void Promise.resolve(answer(message, peer)).then((reply) => reply && socket.send(reply, peer));
  });
  return socket;
}

/** Sends every datagram from one client socket at once; resolves with the replies (bounded wait). */
function burst(host: string, port: number, datagrams: Buffer[], waitMs = 5000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const client = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: 2 << 20 });
    const replies: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      client.close();
      resolve(replies);
    };
    const timer = setTimeout(finish, waitMs);
    client.on('error', reject);
    client.on('message', (message) => {
      replies.push(message);
      if (replies.length === datagrams.length) finish();
    });
    client.bind(0, host, () => {
      for (const datagram of datagrams) client.send(datagram, port, host);
    });
  });
}

describe('the native UDP addon', () => {
  it('is built on Linux where a C compiler is (npm run build)', { skip: process.platform !== 'linux' || !hasCompiler() || process.env.VEIL_UDP_BATCH === 'off' ? 'skipped: not Linux, no C compiler, or VEIL_UDP_BATCH=off' : false }, () => {
    assert.ok(addon, 'dist/native/udp-batch.node did not load');
    assert.equal(addon.BATCH, 64);
  });

  it('writes IPv6 addresses as inet_ntop does', () => {
    const cases = ['::1', '::', '2001:db8::1', '::ffff:127.0.0.1', '2001:db8:0:1:1:1:1:1', '1:0:0:2::3', '1::2:0:0:3', 'fe80::1:0:0:1', '::1.2.3.4', '1:2:3:4:5:6:7:8'];
    for (const text of cases) assert.equal(formatIPv6(ipv6Bytes(text)), text);
  });
});

/** The 16 bytes of an IPv6 address (test helper; the dotted tail is allowed). */
function ipv6Bytes(text: string): Buffer {
  let words = text;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) words = text.slice(0, dotted.index) + `${((+dotted[1]! << 8) | +dotted[2]!).toString(16)}:${((+dotted[3]! << 8) | +dotted[4]!).toString(16)}`;
  const [head, tail] = words.split('::');
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

describe('a batched UDP socket', { skip: notBuilt }, () => {
  it('answers every datagram of a burst larger than a batch, each to its sender, byte for byte', async () => {
    const seen = new Set<string>();
    const socket = open('127.0.0.1', (message, peer) => {
      seen.add(`${peer.family} ${peer.address}`);
      return message; // echo
    });
    try {
      const datagrams = Array.from({ length: 300 }, (_, i) => Buffer.from(`datagram ${i} `.padEnd(20 + (i % 50), '.')));
      const replies = await burst('127.0.0.1', socket.port, datagrams);
      assert.equal(replies.length, 300);
      assert.deepEqual(new Set(replies.map(String)), new Set(datagrams.map(String)));
      assert.deepEqual([...seen], ['IPv4 127.0.0.1']);
    } finally {
      socket.close();
    }
  });

  it('sends answers that come after their batch (forwarded queries)', async () => {
    const socket = open('127.0.0.1', (message) => new Promise((resolve) => setTimeout(() => resolve(Buffer.concat([Buffer.from('late:'), message])), 20)));
    try {
      const replies = await burst('127.0.0.1', socket.port, [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]);
      assert.deepEqual(replies.map(String).sort(), ['late:a', 'late:b', 'late:c']);
    } finally {
      socket.close();
    }
  });

  it('sends the answers made during their batch with it, asking no later turn of the event loop; later ones ask one', async () => {
    const immediates = countImmediatesFromUdpBatch();
    let client: BatchPeer | null = null;
    const socket = open('127.0.0.1', (message, peer) => {
      client = peer;
      return message; // answered in the batch's own microtasks
    });
    try {
      const replies = await burst('127.0.0.1', socket.port, [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]);
      assert.deepEqual(replies.map(String).sort(), ['a', 'b', 'c']);
      assert.equal(immediates.count, 0, 'no setImmediate for answers the batch itself sends');
      socket.send(Buffer.from('outside'), client!);
      assert.equal(immediates.count, 1, 'an answer queued outside a batch asks for the next turn');
    } finally {
      immediates.restore();
      socket.close();
    }
  });

  it('keeps every byte when a batch answers more than the send queue holds (256 KiB)', async () => {
    const socket = open('127.0.0.1', (message) => Buffer.alloc(60_000, message[0]!));
    try {
      const datagrams = Array.from({ length: 6 }, (_, i) => Buffer.from([65 + i]));
      const replies = await burst('127.0.0.1', socket.port, datagrams);
      assert.equal(replies.length, 6);
      for (const reply of replies) {
        assert.equal(reply.length, 60_000);
        assert.ok(reply.every((b) => b === reply[0]), 'a reply mixes bytes of two answers');
      }
      assert.deepEqual(replies.map((r) => r[0]).sort(), [65, 66, 67, 68, 69, 70]);
    } finally {
      socket.close();
    }
  });

  it('serves IPv6 clients with their address as text', async () => {
    const peers: string[] = [];
    const socket = open('::1', (message, peer) => {
      peers.push(`${peer.family} ${peer.address}`);
      return message;
    });
    try {
      const replies = await burst('::1', socket.port, [Buffer.from('six')]);
      assert.deepEqual(replies.map(String), ['six']);
      assert.deepEqual(peers, ['IPv6 ::1']);
    } finally {
      socket.close();
    }
  });

  it('refuses a host that is not an IP literal and buffers too small for a batch, for listening and connected sockets alike', () => {
    const a = addon!;
    const slots = Buffer.alloc(a.BATCH * 512);
    const meta = new Int32Array(a.BATCH * a.META_INTS);
    const sendMeta = new Int32Array(1 + a.BATCH * a.META_INTS);
    const none = () => {};
    assert.throws(() => a.open({}, 'localhost', 0, false, 0, slots, meta, Buffer.alloc(4096), sendMeta, none), (err: Error) => err instanceof TypeError && /IP literal/.test(err.message));
    assert.throws(() => a.connect({}, 'dns.example', 53, 0, slots, meta, none), (err: Error) => err instanceof TypeError && /IP literal/.test(err.message));
    assert.throws(() => a.connect({}, '127.0.0.1', 70_000, 0, slots, meta, none), (err: Error) => err instanceof TypeError && /port must be a number from 0 to 65535/.test(err.message));
    assert.throws(() => a.open({}, '127.0.0.1', -1, false, 0, slots, meta, Buffer.alloc(4096), sendMeta, none), (err: Error) => err instanceof TypeError && /port/.test(err.message));
    assert.throws(() => a.open({}, '127.0.0.1', 0, false, 0, Buffer.alloc(a.BATCH * 100), meta, Buffer.alloc(4096), sendMeta, none), RangeError);
    assert.throws(() => a.open({}, '127.0.0.1', 0, false, 0, slots, meta, Buffer.alloc(4096), new Int32Array(8), none), RangeError);
    assert.throws(() => a.connect({}, '127.0.0.1', 53, 0, slots, new Int32Array(8), none), RangeError);
    // What was refused holds no port: the same listening address opens at once afterwards.
    const socket = open('127.0.0.1', (m) => m);
    socket.close();
  });

  it('says when the address is taken, shares it with SO_REUSEPORT, and frees it on close', async () => {
    const first = open('127.0.0.1', (m) => m);
    assert.throws(() => open('127.0.0.1', (m) => m, first.port), (err: Error & { code?: string }) => err.code === 'EADDRINUSE');
    first.close();
    const again = open('127.0.0.1', (m) => m, first.port);
    again.close();
    const a = open('127.0.0.1', (m) => m, 0, true);
    const b = open('127.0.0.1', (m) => m, a.port, true);
    a.close();
    b.close();
    a.close(); // twice is harmless
    a.send(Buffer.from('after close'), { ipVersion: 4, port: 9, w0: 0x0100007f, w1: 0, w2: 0, w3: 0 } as BatchPeer);
  });
});

/** A node:dgram server on 127.0.0.1 that answers each datagram with `reply(datagram)`; and what it saw. */
async function dgramServer(reply: (message: Buffer) => Buffer | null = (m) => m): Promise<{ port: number; sources: Set<number>; addresses: Set<string>; received: Buffer[]; close(): void }> {
  const server = dgram.createSocket('udp4');
  const sources = new Set<number>();
  const addresses = new Set<string>();
  const received: Buffer[] = [];
  server.on('message', (message, rinfo) => {
    sources.add(rinfo.port);
    addresses.add(rinfo.address);
    received.push(message);
    const answer = reply(message);
    if (answer) server.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', resolve));
  return { port: server.address().port, sources, addresses, received, close: () => server.close() };
}

describe('a connected (upstream) batched UDP socket', { skip: notBuilt }, () => {
  it('sends what one turn queued together, from one random port, and reads the answers', async () => {
    const server = await dgramServer((m) => Buffer.concat([Buffer.from('re:'), m]));
    const answers: string[] = [];
    const socket = new ConnectedUdpSocket(addon!, '127.0.0.1', server.port, (m) => answers.push(String(m)), (err) => assert.fail(err));
    try {
      assert.ok(socket.localPort > 0);
      const sent = Array.from({ length: 100 }, (_, i) => `q${i}`);
      for (const text of sent) socket.send(Buffer.from(text)); // more than a batch: a full queue leaves at once
      await waitUntil(() => answers.length === sent.length);
      assert.deepEqual(answers.sort(), sent.map((t) => `re:${t}`).sort());
      assert.deepEqual([...server.sources], [socket.localPort], 'every datagram from the socket\'s port');
    } finally {
      socket.close();
      server.close();
    }
  });

  it('sends a query queued while an answer\'s batch is handled with that batch: one later turn asked for in a chain of ten', async () => {
    const server = await dgramServer((m) => Buffer.concat([Buffer.from('re:'), m]));
    const immediates = countImmediatesFromUdpBatch();
    const answers: string[] = [];
    const socket: ConnectedUdpSocket = new ConnectedUdpSocket(addon!, '127.0.0.1', server.port, (m) => {
      answers.push(String(m));
      if (answers.length < 10) socket.send(Buffer.from(`q${answers.length}`)); // inside the answer's batch
    }, (err) => assert.fail(err));
    try {
      socket.send(Buffer.from('q0')); // outside any batch: the one turn asked for
      await waitUntil(() => answers.length === 10);
      assert.deepEqual(answers, Array.from({ length: 10 }, (_, i) => `re:q${i}`));
      assert.equal(immediates.count, 1);
    } finally {
      immediates.restore();
      socket.close();
      server.close();
    }
  });

  it('leaves from the local address it is given (a relay on its own address), and reads the answers there', async () => {
    const server = await dgramServer((m) => Buffer.concat([Buffer.from('re:'), m]));
    const answers: string[] = [];
    const socket = new ConnectedUdpSocket(addon!, '127.0.0.1', server.port, (m) => answers.push(String(m)), (err) => assert.fail(err), '127.0.0.2');
    try {
      for (const text of ['a', 'b', 'c']) socket.send(Buffer.from(text));
      await waitUntil(() => answers.length === 3);
      assert.deepEqual(answers.sort(), ['re:a', 're:b', 're:c']);
      assert.deepEqual([...server.addresses], ['127.0.0.2'], 'the server sees the given address, not the kernel\'s choice (127.0.0.1)');
      assert.deepEqual([...server.sources], [socket.localPort]);
    } finally {
      socket.close();
      server.close();
    }
  });

  it('refuses a local address that is not an IP literal, of the other family, or not this machine\'s', () => {
    // What opening with `local` throws; a socket that opens anyway is closed, so a failure cannot hang the run.
    const refusal = (local: string): Error & { code?: string } => {
      try {
        new ConnectedUdpSocket(addon!, '127.0.0.1', 53, () => {}, () => {}, local).close();
      } catch (err) {
        return err as Error;
      }
      return assert.fail(`${local} was taken`);
    };
    assert.match(refusal('relay.example').message, /IP literal/);
    assert.ok(refusal('relay.example') instanceof TypeError);
    assert.match(refusal('::1').message, /not of the server's family/);
    const foreign = refusal('192.0.2.1'); // TEST-NET-1: no interface of this machine has it
    assert.match(foreign.message, /^bind: /);
    assert.equal(foreign.code, 'EADDRNOTAVAIL');
  });

  it('takes datagrams from its server only', async () => {
    const server = await dgramServer(() => null);
    const answers: Buffer[] = [];
    const socket = new ConnectedUdpSocket(addon!, '127.0.0.1', server.port, (m) => answers.push(m), () => {});
    const stranger = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve) => stranger.send(Buffer.from('forged'), socket.localPort, '127.0.0.1', () => resolve()));
      socket.send(Buffer.from('ping'));
      await waitUntil(() => server.received.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(answers.length, 0, 'the kernel drops what does not come from the connected address');
    } finally {
      stranger.close();
      socket.close();
      server.close();
    }
  });

  it('reports a closed port (ICMP port unreachable) as an error', async () => {
    const server = await dgramServer();
    const port = server.port;
    server.close();
    const errors: Array<Error & { code?: string }> = [];
    const socket = new ConnectedUdpSocket(addon!, '127.0.0.1', port, () => {}, (err) => errors.push(err));
    try {
      socket.send(Buffer.from('anyone?'));
      await waitUntil(() => errors.length > 0);
      assert.equal(errors[0]!.code, 'ECONNREFUSED');
      socket.send(Buffer.from('after the error')); // harmless
    } finally {
      socket.close();
      socket.close(); // twice is harmless
      socket.send(Buffer.from('after close'));
    }
  });
});

/** Counts the setImmediate calls made from core/net/udp-batch's code until `restore`. */
function countImmediatesFromUdpBatch(): { readonly count: number; restore(): void } {
  const original = globalThis.setImmediate;
  const counter = { count: 0, restore: () => void (globalThis.setImmediate = original) };
  globalThis.setImmediate = Object.assign((...args: Parameters<typeof setImmediate>) => {
    if (new Error().stack?.includes('udp-batch.js')) counter.count++;
    return original(...args);
  }, original) as typeof setImmediate;
  return counter;
}

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('bin/veil with VEIL_UDP_BATCH=off (node:dgram)', () => {
  let veil: VeilProcess;
  before(async () => {
    veil = await startVeil('. {\n  listen udp://127.0.0.1:0 udp://[::1]:0\n  hosts {\n    192.0.2.44 plain.test\n  }\n}\n', {}, 'Corefile', undefined, { VEIL_UDP_BATCH: 'off' });
  });
  after(() => veil?.stop());

  it('answers over IPv4 and IPv6, and a burst', async () => {
    for (const index of [0, 1]) {
      const { host, port } = veil.address('udp', index);
      const answer = dnsPacket.decode(await queryUdp(host, port, buildQuery('plain.test', QType.A, { id: 9 })));
      assert.equal((answer.answers![0] as { data: string }).data, '192.0.2.44');
    }
    const { host, port } = veil.address('udp', 0);
    const replies = await burst(host, port, Array.from({ length: 100 }, (_, i) => buildQuery('plain.test', QType.A, { id: i + 1 })));
    assert.deepEqual(replies.map((r) => r.readUInt16BE(0)).sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1));
  });
});

describe('quick ACKs on upstream stream connections (core/net/tcp-ack.ts, native/tcp-ack.c)', () => {
  it('are built on Linux where a C compiler is, and reach a connected socket\'s descriptor', { skip: process.platform !== 'linux' || !hasCompiler() ? 'skipped: not Linux or no C compiler' : false }, async () => {
    const server = net.createServer((socket) => socket.on('data', (d) => socket.write(d)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    try {
      await new Promise((resolve) => client.once('connect', resolve));
      const ack = quickAcker(client);
      assert.ok(ack, 'the tcp-ack addon did not load');
      client.write('ping');
      await new Promise((resolve) => client.once('data', resolve));
      ack(); // sets TCP_QUICKACK on the live descriptor
      client.destroy();
      ack(); // a closed socket has no descriptor: nothing happens
    } finally {
      client.destroy();
      server.close();
    }
  });

  it('VEIL_QUICKACK=off turns them off', () => {
    const before = process.env.VEIL_QUICKACK;
    process.env.VEIL_QUICKACK = 'off';
    try {
      assert.equal(quickAcker(new net.Socket()), null);
    } finally {
      if (before === undefined) delete process.env.VEIL_QUICKACK;
      else process.env.VEIL_QUICKACK = before;
    }
  });
});

describe('returning freed memory to the kernel (core/memory.ts, native/memory.c)', () => {
  /** A full collection on demand, without starting the test runner with --expose-gc. */
  const fullCollection = (): void => {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  };

  it('the addon is built on Linux where a C compiler is, and trims', { skip: process.platform !== 'linux' || !hasCompiler() ? 'skipped: not Linux or no C compiler' : false }, () => {
    const memory = loadMemoryAddon();
    assert.ok(memory, 'dist/native/memory.node did not load');
    assert.equal(typeof memory.trim(), 'boolean');
  });

  it('trims after a full collection, and not again within the interval', async () => {
    let trims = 0;
    // Objects that live through two collections sit in the old space; once let go, the next
    // full collection makes the old space smaller, which is what the trimmer looks for.
    let held: Array<{ n: number }> | null = Array.from({ length: 300_000 }, (_, n) => ({ n }));
    fullCollection();
    fullCollection();
    const stop = trimAfterCollections({ trim: () => (trims++, true) }, 20, 60_000)!;
    try {
      await new Promise((r) => setTimeout(r, 60));
      assert.equal(trims, 0, 'a trim before any full collection');
      assert.equal(held.length, 300_000);
      held = null;
      fullCollection();
      for (let i = 0; i < 100 && trims === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(trims, 1, 'no trim within 2 s of a full collection');
      fullCollection();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(trims, 1, 'a second trim within the minimum interval');
    } finally {
      stop();
    }
  });

  it('does nothing without the addon', () => {
    assert.equal(trimAfterCollections(null), null);
  });
});
