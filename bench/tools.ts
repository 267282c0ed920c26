/**
 * The load generators, run as child processes and read from their reports: dnsperf for UDP,
 * TCP and DoT, h2load for DoH. Both run with bounded counts and times.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { which } from '../test/helpers/peers.js';

export interface LoadResult {
  qps: number;
  /** Milliseconds. */
  meanMs: number;
  p50Ms: number | null;
  p99Ms: number | null;
  p999Ms?: number | null;
  /** The slowest answer (dnsperf with `verbose`). */
  maxMs?: number | null;
  /** Every answer's latency in ms, sorted (dnsperf with `verbose`). */
  latencies?: number[];
  /** CPU time (user + system) of the process under test per answered query, in µs, when measured. */
  cpuUs?: number | null;
  /** The whole machine's busy CPU time per answered query, in µs (bench/workloads.ts withCpuOf). */
  machineUs?: number | null;
  /** The share of the cores' time nobody used during the load, 0 to 1. */
  idleShare?: number | null;
  /** The share of the cores' time the host gave other machines during the load, 0 to 1 (bench/quiet-rounds.ts). */
  hostShare?: number | null;
  sent: number;
  lost: number;
  /** Answers by response code (dnsperf's "Response codes" line). */
  rcodes?: Record<string, number>;
  command: string;
}

function run(program: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(which(program) ?? program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${program} ${args.join(' ')} exited ${code}:\n${out.slice(-2000)}`));
    });
  });
}

export interface DnsperfOptions {
  port: number;
  host?: string;
  queryFile: string;
  /** udp, tcp, dot, doh */
  mode?: string;
  clients?: number;
  /** Queries outstanding per run. */
  outstanding?: number;
  seconds: number;
  /** Fixed rate (queries per second); unset = as fast as it can. */
  rate?: number;
  /** Per-query latencies, for percentiles (use only at modest rates: one line per query). */
  verbose?: boolean;
  /** Stop after this many passes through the query file (and at `seconds` at the latest). */
  passes?: number;
}

export async function dnsperf(options: DnsperfOptions): Promise<LoadResult> {
  const args = [
    '-s', options.host ?? '127.0.0.1',
    '-p', String(options.port),
    '-d', options.queryFile,
    '-m', options.mode ?? 'udp',
    '-c', String(options.clients ?? 4),
    '-q', String(options.outstanding ?? 100),
    '-l', String(options.seconds),
    '-t', '3',
    ...(options.rate ? ['-Q', String(options.rate)] : []),
    ...(options.verbose ? ['-v'] : []),
    ...(options.passes ? ['-n', String(options.passes)] : []),
  ];
  const out = await run('dnsperf', args, (options.seconds + 30) * 1000);
  const number = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const latencies = options.verbose ? [...out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b) : [];
  return {
    qps: number(/Queries per second:\s+([\d.]+)/),
    meanMs: number(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    p999Ms: percentile(latencies, 99.9),
    maxMs: latencies.length ? latencies[latencies.length - 1]! : number(/Average Latency \(s\):.*max ([\d.]+)\)/) * 1000 || null,
    ...(options.verbose ? { latencies } : {}),
    sent: number(/Queries sent:\s+(\d+)/),
    lost: number(/Queries lost:\s+(\d+)/),
    rcodes: Object.fromEntries([...(/Response codes:\s+(.*)/.exec(out)?.[1] ?? '').matchAll(/([A-Z]+) (\d+)/g)].map((m) => [m[1]!, Number(m[2])])),
    command: `dnsperf ${args.join(' ')}`,
  };
}

/** The `p`th percentile of sorted values (nearest rank), or null when there are none. */
export function percentile(sorted: readonly number[], p: number): number | null {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : null;
}

export interface H2loadOptions {
  url: string;
  clients: number;
  streams: number;
  seconds: number;
  /** POST this file's bytes, as `content-type` (GET when absent). */
  post?: { file: string; contentType: string };
}

export async function h2load(options: H2loadOptions): Promise<LoadResult> {
  const post = options.post ? ['-d', options.post.file, '-H', `content-type: ${options.post.contentType}`] : [];
  const args = ['-c', String(options.clients), '-m', String(options.streams), '-D', String(options.seconds), '-t', '1', ...post, options.url];
  const out = await run('h2load', args, (options.seconds + 30) * 1000);
  const qps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const request = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const toMs = (v: string, unit: string): number => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  const done = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(out)?.[1] ?? NaN);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  return {
    qps,
    meanMs: request ? toMs(request[5]!, request[6]!) : NaN,
    p50Ms: null,
    p99Ms: null,
    sent: done,
    lost: failed,
    command: `h2load ${args.join(' ')}`,
  };
}

/**
 * A query file of `count` lines over `names` distinct names with Zipf-like popularity
 * (name i is asked about 1/(i+1) as often as name 0): what a cache sees from real clients.
 */
export function writeSkewedQueries(dir: string, file: string, names: number, count: number, suffix = 'bench.example'): string {
  const weights = Array.from({ length: names }, (_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const cumulative: number[] = [];
  let sum = 0;
  for (const w of weights) cumulative.push((sum += w / total));
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = random();
    let low = 0;
    let high = names - 1;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (cumulative[mid]! < r) low = mid + 1;
      else high = mid;
    }
    lines.push(`n${low}.${suffix} A`);
  }
  const target = path.join(dir, file);
  writeFileSync(target, lines.join('\n') + '\n');
  return target;
}

/** `count` distinct names, each once: every query misses a cache. */
export function writeUniqueQueries(dir: string, file: string, count: number, suffix = 'unique.example'): string {
  const target = path.join(dir, file);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`u${i}.${suffix} A`);
  writeFileSync(target, lines.join('\n') + '\n');
  return target;
}
