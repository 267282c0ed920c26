/**
 * `npm run build && node dist/bench/tail.js [--path udp|dot|dnscrypt|anonymized|doh|all] [--rounds N] [--seconds N] [--semi MB]`
 *
 * What a slow query waited for, path by path, at 2,000 queries a second (the latency
 * workloads' rate and shape): UDP in, then UDP, DoT (unbound), DNSCrypt (dnsdist), Anonymized
 * DNSCrypt (through a Veil relay on 127.0.0.2) or DoH (dnsdist) out. For each round it prints how
 * many answers through Veil and straight from the server took over 1, 2 and 5 ms, and, from
 * inside Veil (bench/tail-preload.ts), the same queries split into the time between the door and
 * the answer, the upstream exchange as Veil timed it (with the pool's and the TLS write's waits),
 * and Veil's own share; the event loop's delay (beside the same timer's in an idle Node
 * process: most of a 1 ms timer's lateness is the timer's own); every garbage collection's
 * pause. What dnsperf saw beyond the door-to-answer time was spent outside Veil's JavaScript: in
 * the kernel, or waiting to be scheduled. `--semi` sets V8's semi-space size instead of bin/veil's 8 MB.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dnscryptStamp, relayStamp } from '../test/helpers/dnscrypt.js';
import { freePort, makeTestCerts, startDnsdist, startUnboundDot, startUnboundOrigin, type Dnsdist, type Peer } from '../test/helpers/peers.js';
import { dnsperf } from './tools.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NODE = path.join(ROOT, 'node_modules/node/bin/node');
const RATE = 2000;
const PATHS = ['udp', 'dot', 'dnscrypt', 'anonymized', 'doh'] as const;
type PathName = (typeof PATHS)[number];

function options(argv: string[]) {
  const o = { rounds: 2, seconds: 8, semi: 8, paths: [...PATHS] as PathName[] };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, text] = [argv[i], argv[i + 1]];
    if (flag === '--path') {
      if (text === 'all') o.paths = [...PATHS];
      else if ((PATHS as readonly string[]).includes(text ?? '')) o.paths = [text as PathName];
      else throw new Error(`--path takes one of ${PATHS.join(', ')} or all`);
      continue;
    }
    const value = Number(text);
    if (!(value > 0)) throw new Error(`${flag} takes a positive number`);
    if (flag === '--rounds') o.rounds = value;
    else if (flag === '--seconds') o.seconds = value;
    else if (flag === '--semi') o.semi = value;
    else throw new Error(`unknown argument ${flag}`);
  }
  return o;
}

/** One path: the Corefile Veil runs (its UDP port is `port`), where "direct" queries go, and how. */
interface PathSetup {
  corefile(port: number): string;
  directPort: number;
  directMode: 'udp' | 'dot';
  /** Printed under the path's name: what "direct" is. */
  direct: string;
  stop(): Promise<void>;
}

interface Summary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  over1ms: number;
}

interface InsideReport {
  loopDelayMs: Record<string, number>;
  gc: Array<{ kind: number; ms: number }>;
  doorToAnswerMs: Summary;
  upstreamMs: Summary;
  ownMs: Summary;
}

const o = options(process.argv.slice(2));
const dir = mkdtempSync(path.join(tmpdir(), 'veil-tail-'));
const origin = await startUnboundOrigin();

/** Starts a Veil (bin/veil's Node, `semi` MB semi-spaces, the preload when `watched`) and waits until it serves. */
async function startVeil(corefile: string, name: string, watched: boolean): Promise<{ child: ChildProcess; stderr: () => string }> {
  const file = path.join(dir, name);
  writeFileSync(file, corefile);
  const preload = watched ? ['--import', path.join(ROOT, 'dist/bench/tail-preload.js')] : [];
  const child = spawn(NODE, [`--max-semi-space-size=${o.semi}`, ...preload, path.join(ROOT, 'dist/cli/main.js'), '-conf', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  for (let i = 0; i < 200 && !/serving/.test(stderr); i++) await new Promise((r) => setTimeout(r, 50));
  if (!/serving/.test(stderr)) throw new Error(`${name} did not start:\n${stderr}`);
  return { child, stderr: () => stderr };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function setUp(name: PathName): Promise<PathSetup> {
  const udpIn = (port: number, body: string) => `. {\n  listen udp://127.0.0.1:${port}\n${body}}\n`;
  if (name === 'udp') {
    return { corefile: (port) => udpIn(port, `  forward . 127.0.0.1:${origin.port}\n`), directPort: origin.port, directMode: 'udp', direct: 'UDP to the origin', stop: async () => {} };
  }
  if (name === 'dot') {
    const certs = makeTestCerts();
    const unbound: Peer = await startUnboundDot(certs);
    const dot = `  dot {\n    server o tls://127.0.0.1:${unbound.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }\n`;
    return { corefile: (port) => udpIn(port, dot), directPort: unbound.port, directMode: 'dot', direct: "dnsperf's DoT client to the same unbound", stop: () => unbound.stop() };
  }
  if (name === 'doh') {
    const certs = makeTestCerts();
    const dnsdist = await startDnsdist({ backendPort: origin.port, plain: true, doh: certs });
    const doh = `  doh {\n    server d https://127.0.0.1:${dnsdist.ports.doh}/dns-query {\n      ca ${certs.ca}\n      pool 2\n    }\n  }\n`;
    return { corefile: (port) => udpIn(port, doh), directPort: dnsdist.ports.plain!, directMode: 'udp', direct: "UDP to the same dnsdist's plain front-end", stop: () => dnsdist.stop() };
  }
  // DNSCrypt, straight or through a Veil relay on 127.0.0.2.
  const provider = '2.dnscrypt-cert.tail.test';
  const dnsdist: Dnsdist = await startDnsdist({ backendPort: origin.port, plain: true, dnscrypt: { providerName: provider } });
  const stamp = dnscryptStamp(`127.0.0.1:${dnsdist.ports.dnscrypt}`, dnsdist.providerKey!, provider);
  let relay: ChildProcess | null = null;
  let anonymize = '';
  if (name === 'anonymized') {
    const relayPort = await freePort();
    relay = (await startVeil(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${dnsdist.ports.dnscrypt}\n    allow_private\n  }\n}\n`, 'Corefile.relay', false)).child;
    anonymize = `  anonymize {\n    relay r ${relayStamp(`127.0.0.2:${relayPort}`)}\n    route * via r\n  }\n`;
  }
  return {
    corefile: (port) => udpIn(port, `  dnscrypt {\n    server d ${stamp}\n  }\n${anonymize}`),
    directPort: dnsdist.ports.plain!,
    directMode: 'udp',
    direct: "UDP to the same dnsdist's plain front-end",
    stop: async () => {
      if (relay) await stopProcess(relay);
      await dnsdist.stop();
    },
  };
}

/**
 * The delay of a 1 ms timer in a Node process that does nothing else, over `seconds`: what the
 * timer and this machine's scheduling give by themselves, beside Veil's own figure (on a 2-core
 * virtual machine, p99 ~1.26 ms with nothing else running).
 */
async function idleTimerDelay(seconds: number): Promise<Record<'p50' | 'p99' | 'p999' | 'max', number>> {
  const probe = [
    "import { monitorEventLoopDelay } from 'node:perf_hooks';",
    'const delay = monitorEventLoopDelay({ resolution: 1 }); delay.enable();',
    'const ms = (ns) => Number((ns / 1e6).toFixed(3));',
    `setTimeout(() => { console.log(JSON.stringify({ p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), p999: ms(delay.percentile(99.9)), max: ms(delay.max) })); }, ${Math.round(seconds * 1000)});`,
  ].join('\n');
  const child = spawn(NODE, ['--input-type=module', '-e', probe], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  await new Promise((resolve) => child.once('exit', resolve));
  return JSON.parse(out) as Record<'p50' | 'p99' | 'p999' | 'max', number>;
}

function over(latencies: number[], ms: number): number {
  return latencies.filter((v) => v > ms).length;
}

try {
  const queries = path.join(dir, 'q.txt');
  writeFileSync(queries, `${Array.from({ length: 5000 }, (_, i) => `n${i}.tail.test A`).join('\n')}\n`);
  for (const name of o.paths) {
    const setup = await setUp(name);
    try {
      for (let round = 1; round <= o.rounds; round++) {
        const port = await freePort();
        const veil = await startVeil(setup.corefile(port), 'Corefile', true);
        try {
          // DNSCrypt answers only once the server's certificate is in hand.
          for (let i = 0; i < 100 && name.match(/dnscrypt|anonymized/) && !/certificate serial/.test(veil.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
          const run = (target: number, mode: 'udp' | 'dot', seconds = o.seconds) =>
            dnsperf({ port: target, queryFile: queries, clients: 1, outstanding: 50, seconds, rate: RATE, verbose: true, mode });
          // Warm both paths (JIT, pools, the server's cache): the steady state is what counts.
          await run(port, 'udp', 2);
          await run(setup.directPort, setup.directMode, 2);
          const reports = () => veil.stderr().split('\n').filter((l) => l.startsWith('TAIL '));
          const report = async (count: number) => {
            veil.child.kill('SIGUSR2');
            for (let i = 0; i < 40 && reports().length < count; i++) await new Promise((r) => setTimeout(r, 50));
          };
          await report(1); // ends the warm-up's record
          const [through, idleTimer] = await Promise.all([run(port, 'udp'), idleTimerDelay(o.seconds)]);
          await report(2);
          const direct = await run(setup.directPort, setup.directMode);
          const line = reports()[1];
          const inside = line ? (JSON.parse(line.slice(5)) as InsideReport) : null;
          const say = (label: string, l: number[]) => `${label}: ${l.length} answers, over 1 ms ${over(l, 1)}, over 2 ms ${over(l, 2)}, over 5 ms ${over(l, 5)}`;
          console.log(`${name}, round ${round} (semi-space ${o.semi} MB; direct is ${setup.direct})`);
          console.log(`  ${say('through Veil', through.latencies ?? [])}`);
          console.log(`  ${say('direct', direct.latencies ?? [])}`);
          if (inside) {
            const part = (label: string, s: Summary) => `  ${label}: p50 ${s.p50} / p99 ${s.p99} / p99.9 ${s.p999} / max ${s.max} ms, over 1 ms ${s.over1ms} of ${s.count}`;
            console.log(part('inside Veil, door to answer', inside.doorToAnswerMs));
            console.log(part('  of which the upstream exchange', inside.upstreamMs));
            console.log(part('  and Veil’s own', inside.ownMs));
            const young = inside.gc.filter((g) => g.kind === 1);
            const total = inside.gc.reduce((sum, g) => sum + g.ms, 0);
            const biggest = Math.max(0, ...inside.gc.map((g) => g.ms));
            console.log(`  Veil's event loop: a 1 ms timer fired after p50 ${inside.loopDelayMs.p50} / p99 ${inside.loopDelayMs.p99} / p99.9 ${inside.loopDelayMs.p999} / max ${inside.loopDelayMs.max} ms`);
            console.log(`    the same timer in a Node process doing nothing else, meanwhile: p50 ${idleTimer.p50} / p99 ${idleTimer.p99} / p99.9 ${idleTimer.p999} / max ${idleTimer.max} ms`);
            console.log(
              `  Veil's collector over the run: ${inside.gc.length} pauses (${young.length} scavenges), ${total.toFixed(1)} ms in all, longest ${biggest.toFixed(1)} ms: at ${RATE} queries a second, at most ~${Math.round((total / 1000) * RATE)} answers arrived during one`,
            );
          }
        } finally {
          await stopProcess(veil.child);
        }
      }
    } finally {
      await setup.stop();
    }
  }
} finally {
  await origin.stop();
  rmSync(dir, { recursive: true, force: true });
}
