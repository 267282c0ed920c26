/**
 * `node dist/bench/tls-io.js [--reads N] [--rounds N]`
 *
 * What one small read and one small write of a TLS connection on loopback cost this process in
 * CPU, the unit of a DoT upstream's work when the server wants each query alone (dnsdist's
 * front-end: one query written a connection a turn, one answer read a query):
 *
 * - reads, one 64-byte record each: the socket's 'data' events against core/net/direct-reads.ts
 *   (Node's `onread`, one buffer of ours, the bytes copied into a pooled Buffer); the server, in
 *   another process, writes one record a turn of its event loop;
 * - writes, one 62-byte framed query a turn: corked and uncorked at the end of the turn (as the
 *   stream pool writes) against written at once.
 *
 * The ways alternate within each round.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { directReadOptions, onChunks } from '../core/net/direct-reads.js';
import { makeTestCerts } from '../test/helpers/peers.js';

const RECORD = 64;
const WRITE = 62;

function parseArgs(argv: string[]): { reads: number; rounds: number } {
  const options = { reads: 50_000, rounds: 4 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--reads') options.reads = Number(argv[++i]);
    else if (arg === '--rounds') options.rounds = Number(argv[++i]);
    else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

/** The server: on a 4-byte count it gets first, writes that many records, one a turn; reads and drops the rest. */
async function serve(key: string, cert: string): Promise<void> {
  const record = Buffer.alloc(RECORD, 7);
  const server = tls.createServer({ key, cert }, (socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('data', (data) => {
      let left = data.readUInt32BE(0);
      const next = (): void => {
        if (left-- <= 0 || socket.destroyed) return;
        if (socket.write(record)) setImmediate(next);
        else socket.once('drain', next);
      };
      next();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send!((server.address() as AddressInfo).port);
}

/** µs of this process's CPU a read, and records a read, for `count` records read one way. */
async function measure(port: number, ca: Buffer, count: number, direct: boolean): Promise<{ perRead: number; recordsPerRead: number }> {
  const reads = direct ? directReadOptions() : null;
  const options: tls.ConnectionOptions & { onread?: unknown } = { host: '127.0.0.1', port, ca, servername: 'dns.test', ...(reads ? { onread: reads.onread } : {}) };
  const socket = tls.connect(options);
  reads?.adopt(socket);
  await once(socket, 'secureConnect');
  let bytes = 0;
  let events = 0;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  onChunks(socket, (chunk) => {
    events++;
    bytes += chunk.length;
    if (bytes >= count * RECORD) finished();
  });
  const request = Buffer.alloc(4);
  request.writeUInt32BE(count);
  const before = process.cpuUsage();
  socket.write(request);
  await done;
  const used = process.cpuUsage(before);
  socket.destroy();
  return { perRead: (used.user + used.system) / events, recordsPerRead: count / events };
}

/** µs of this process's CPU a write, for `count` framed queries written one a turn, corked or not. */
async function measureWrites(port: number, ca: Buffer, count: number, corked: boolean): Promise<number> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'dns.test' });
  await once(socket, 'secureConnect');
  socket.setNoDelay(true);
  socket.write(Buffer.alloc(4)); // a count of 0: the server sends nothing
  const query = Buffer.alloc(WRITE - 2, 1);
  const before = process.cpuUsage();
  await new Promise<void>((resolve) => {
    let written = 0;
    const turn = (): void => {
      if (written++ >= count) return resolve();
      const framed = Buffer.allocUnsafe(WRITE);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      if (corked) {
        socket.cork();
        socket.write(framed);
        setImmediate(() => socket.uncork());
      } else {
        socket.write(framed);
      }
      setImmediate(turn);
    };
    turn();
  });
  const used = process.cpuUsage(before);
  socket.destroy();
  return (used.user + used.system) / count;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'serve') return serve(process.argv[3]!, process.argv[4]!);
  const options = parseArgs(process.argv.slice(2));
  const certs = makeTestCerts();
  const child = fork(new URL(import.meta.url).pathname, ['serve', readFileSync(certs.key, 'utf8'), readFileSync(certs.chain, 'utf8')]);
  try {
    const [port] = (await once(child, 'message')) as [number];
    const ca = readFileSync(certs.ca);
    for (let round = 1; round <= options.rounds; round++) {
      const data = await measure(port, ca, options.reads, false);
      const direct = await measure(port, ca, options.reads, true);
      const corked = await measureWrites(port, ca, options.reads, true);
      const plain = await measureWrites(port, ca, options.reads, false);
      console.log(
        `round ${round}: a read: 'data' ${data.perRead.toFixed(2)} µs, direct ${direct.perRead.toFixed(2)} µs ` +
          `(${(direct.perRead / data.perRead).toFixed(2)}×; records a read ${data.recordsPerRead.toFixed(2)} / ${direct.recordsPerRead.toFixed(2)}); ` +
          `a write: corked ${corked.toFixed(2)} µs, at once ${plain.toFixed(2)} µs`,
      );
    }
  } finally {
    child.kill();
  }
}

await main();
