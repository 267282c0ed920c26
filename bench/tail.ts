/**
 * `npm run build && node dist/bench/tail.js [--rounds N] [--seconds N] [--semi MB]`
 *
 * What a slow query waited for, on the udp-latency path (UDP in, UDP forward to the origin, 2,000
 * queries a second): how many answers through Veil and straight from the origin took over 1, 2
 * and 5 ms, and, inside Veil, the event loop's delay and each garbage collection's pause over
 * the same run (bench/tail-preload.ts). The pauses bound how many slow answers the collector can
 * explain: those that arrived during one (its pause times the rate). `--semi` sets V8's
 * semi-space size instead of bin/veil's 8 MB, to see whether the young generation matters.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startUnboundOrigin } from '../test/helpers/peers.js';
import { dnsperf } from './tools.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RATE = 2000;

function options(argv: string[]) {
  const o = { rounds: 2, seconds: 8, semi: 8 };
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1]);
    if (argv[i] === '--rounds') o.rounds = value;
    else if (argv[i] === '--seconds') o.seconds = value;
    else if (argv[i] === '--semi') o.semi = value;
    else throw new Error(`unknown argument ${argv[i]}`);
    i++;
    if (!(value > 0)) throw new Error(`${argv[i - 1]} takes a positive number`);
  }
  return o;
}

function over(latencies: number[], ms: number): number {
  return latencies.filter((v) => v > ms).length;
}

const o = options(process.argv.slice(2));
const dir = mkdtempSync(path.join(tmpdir(), 'veil-tail-'));
const origin = await startUnboundOrigin();
try {
  const queries = path.join(dir, 'q.txt');
  writeFileSync(queries, `${Array.from({ length: 5000 }, (_, i) => `n${i}.tail.test A`).join('\n')}\n`);
  for (let round = 1; round <= o.rounds; round++) {
    const port = await freePort();
    writeFileSync(path.join(dir, 'Corefile'), `. {\n  listen udp://127.0.0.1:${port}\n  forward . 127.0.0.1:${origin.port}\n}\n`);
    const node = path.join(ROOT, 'node_modules/node/bin/node');
    const veil = spawn(node, [`--max-semi-space-size=${o.semi}`, '--import', path.join(ROOT, 'dist/bench/tail-preload.js'), path.join(ROOT, 'dist/cli/main.js'), '-conf', path.join(dir, 'Corefile')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    veil.stderr!.on('data', (d) => (stderr += d));
    try {
      for (let i = 0; i < 100 && !/serving/.test(stderr); i++) await new Promise((r) => setTimeout(r, 50));
      const run = (target: number) => dnsperf({ port: target, queryFile: queries, clients: 1, outstanding: 50, seconds: o.seconds, rate: RATE, verbose: true });
      const through = await run(port);
      veil.kill('SIGUSR2');
      for (let i = 0; i < 40 && !/^TAIL /m.test(stderr); i++) await new Promise((r) => setTimeout(r, 50));
      const direct = await run(origin.port);
      const line = stderr.split('\n').find((l) => l.startsWith('TAIL '));
      const inside = line ? (JSON.parse(line.slice(5)) as { loopDelayMs: Record<string, number>; gc: Array<{ kind: number; ms: number }> }) : null;
      const say = (name: string, l: number[]) => `${name}: ${l.length} answers, over 1 ms ${over(l, 1)}, over 2 ms ${over(l, 2)}, over 5 ms ${over(l, 5)}`;
      console.log(`round ${round} (semi-space ${o.semi} MB)`);
      console.log(`  ${say('through Veil', through.latencies ?? [])}`);
      console.log(`  ${say('direct', direct.latencies ?? [])}`);
      if (inside) {
        const young = inside.gc.filter((g) => g.kind === 1);
        const total = inside.gc.reduce((sum, g) => sum + g.ms, 0);
        const biggest = Math.max(0, ...inside.gc.map((g) => g.ms));
        console.log(`  Veil's event loop: a 1 ms timer fired after p50 ${inside.loopDelayMs.p50} / p99 ${inside.loopDelayMs.p99} / p99.9 ${inside.loopDelayMs.p999} / max ${inside.loopDelayMs.max} ms`);
        console.log(
          `  Veil's collector since start: ${inside.gc.length} pauses (${young.length} scavenges), ${total.toFixed(1)} ms in all, longest ${biggest.toFixed(1)} ms: at ${RATE} queries a second, at most ~${Math.round((total / 1000) * RATE)} answers arrived during one`,
        );
      }
    } finally {
      veil.kill('SIGTERM');
      await new Promise((r) => veil.once('exit', r));
    }
  }
} finally {
  await origin.stop();
  rmSync(dir, { recursive: true, force: true });
}
