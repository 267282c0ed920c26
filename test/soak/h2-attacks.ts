/**
 * `npm run soak:h2 [-- --seconds S]`: the three HTTP/2 attacks of the security review (issue 24)
 * against a real bin/veil, S seconds each (default 10), over TLS on loopback. Every 100 ms it
 * samples Veil's resident memory and the time a UDP query from another client takes; at the end
 * of each attack it prints the RSS at the start and at most, the UDP latency percentiles, and
 * Veil's own event-loop delay over the attack (from its /metrics: what it did, apart from what
 * a busy machine did to both processes). The review's bar: RSS within 150 MB of the start, and
 * every UDP query answered within 200 ms.
 */
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { ATTACKS, attackedCorefile, rssMegabytes, runAttack, type AttackName } from '../helpers/h2-attacks.js';
import { freePort, makeTestCerts } from '../helpers/peers.js';
import { startVeil } from '../helpers/veil-process.js';

const secondsArg = process.argv.indexOf('--seconds');
const seconds = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 10;
if (!(seconds > 0)) throw new Error('usage: npm run soak:h2 [-- --seconds S]');

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** Veil's event-loop delay quantile over the last 10 s, in ms. */
async function lagMs(port: number, quantile: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  const line = text.split('\n').find((l) => l.startsWith(`veil_event_loop_lag_seconds{quantile="${quantile}"}`));
  return Number(line?.split(' ')[1] ?? NaN) * 1000;
}

const certs = makeTestCerts();
const metricsPort = await freePort();
const veil = await startVeil(attackedCorefile(certs, `\n  metrics 127.0.0.1:${metricsPort}`));
try {
  const pid = veil.child.pid!;
  const udp = veil.address('udp');
  const https = veil.address('https');
  const ca = readFileSync(certs.ca, 'utf8');
  console.log(`bin/veil (pid ${pid}), ${seconds} s per attack; UDP probe every 100 ms`);
  console.log('attack               | MB written | connections cut off | RSS start → max (MB) | UDP p50 / p99 / max (ms) | unanswered | Veil event-loop delay p99 / max (ms)');
  for (const attack of Object.keys(ATTACKS) as AttackName[]) {
    const start = rssMegabytes(pid);
    let most = start;
    const latencies: number[] = [];
    let unanswered = 0;
    const deadline = Date.now() + seconds * 1000;
    const attacking = runAttack(attack, https.port, ca, () => Date.now() > deadline);
    for (let id = 0; Date.now() < deadline + 500; id++) {
      const sent = performance.now();
      try {
        await queryUdp('127.0.0.1', udp.port, buildQuery('web.veil.test', QType.A, { id }), 5000);
        latencies.push(performance.now() - sent);
      } catch {
        unanswered++;
      }
      most = Math.max(most, rssMegabytes(pid));
      await new Promise((r) => setTimeout(r, 100));
    }
    const result = await attacking;
    const lag = [(await lagMs(metricsPort, '0.99')).toFixed(1), (await lagMs(metricsPort, '1')).toFixed(1)].join(' / ');
    latencies.sort((a, b) => a - b);
    console.log(
      `${attack.padEnd(20)} | ${(result.bytes / 2 ** 20).toFixed(0).padStart(10)} | ${`${result.cutOff} of ${result.connections}`.padStart(19)} | ${`${start.toFixed(0)} → ${most.toFixed(0)}`.padStart(20)} | ${[50, 99, 100].map((p) => percentile(latencies, p).toFixed(2)).join(' / ').padStart(24)} | ${String(unanswered).padStart(10)} | ${lag}`,
    );
  }
} finally {
  await veil.stop();
  rmSync(certs.dir, { recursive: true, force: true });
}
