/**
 * `npm run bench [WORKLOAD…] [--seconds N] [--rounds N] [--no-write]`
 *
 * On this one machine: starts a loopback origin (unbound with local data), the peers (dnsdist)
 * and Veil with equivalent configurations, runs the same load against each, alternating Veil and
 * peer runs, and prints QPS, the Veil/peer ratio, the CPU time each spent per query, latency
 * percentiles at a fixed rate (p50, p99, p99.9, max) through Veil and direct, and RSS. Writes
 * docs/benchmarks.md from the run (unless --no-write). Numbers drift between machines and runs;
 * the ratio, measured in one run, is what to compare.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnless, startUnboundOrigin, type Peer } from '../test/helpers/peers.js';
import { ROOT } from '../test/helpers/veil-process.js';
import { workloads, type Measurement, type Workload, type WorkloadContext } from './workloads.js';
import { BUSY_HOST_SHARE } from './quiet-rounds.js';

interface Options {
  names: string[];
  seconds: number;
  rounds: number;
  write: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { names: [], seconds: 15, rounds: 2, write: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--seconds') options.seconds = Number(argv[++i]);
    else if (arg === '--rounds') options.rounds = Number(argv[++i]);
    else if (arg === '--no-write') options.write = false;
    else if (arg.startsWith('-')) throw new Error(`unknown option ${arg}`);
    else options.names.push(arg);
  }
  const unknown = options.names.filter((n) => !workloads.some((w) => w.name === n));
  if (unknown.length) throw new Error(`unknown workload(s) ${unknown.join(', ')}; workloads: ${workloads.map((w) => w.name).join(', ')}`);
  if (!(options.seconds > 0 && options.rounds > 0)) throw new Error('--seconds and --rounds take positive numbers');
  return options;
}

function fmt(n: number | null | undefined, digits = 2): string {
  return n === null || n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits);
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const missing = skipUnless('unbound', 'dnsdist', 'dnsperf');
  if (missing) throw new Error(`the benchmark needs unbound, dnsdist and dnsperf (${missing})`);
  const chosen = options.names.length ? workloads.filter((w) => options.names.includes(w.name)) : workloads;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'veil-bench-'));
  let origin: Peer | null = null;
  const results: Result[] = [];
  try {
    origin = await startUnboundOrigin();
    const ctx: WorkloadContext = { dir, origin, seconds: options.seconds, rounds: options.rounds, log: (line) => console.log(`  ${line}`) };
    for (const workload of chosen) {
      const skip = workload.requires?.();
      if (skip) {
        console.log(`${workload.name}: skipped (${skip})`);
        results.push({ workload, measurement: null, skipped: skip });
        continue;
      }
      console.log(`${workload.name}: ${workload.description}`);
      const measurement = await workload.run(ctx);
      results.push({ workload, measurement });
      console.log(`  → ${measurement.summary}`);
    }
  } finally {
    await origin?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const table = tables(results);
  console.log(`\n${table}\n`);
  for (const { workload, measurement } of results) if (measurement?.notes.length) console.log(`${workload.name}: ${measurement.notes.join('; ')}`);

  if (options.write && options.names.length === 0) writeReport(table, results, options);
}

type Result = { workload: Workload; measurement: Measurement | null; skipped?: string };

/**
 * Two tables: throughput (QPS against the peer, and the CPU time each process spent per
 * query) and latency at a fixed rate (percentiles through Veil and direct); the rest (memory,
 * scaling, DNSSEC, the shared cache) in a third with their summaries.
 */
function tables(results: Result[]): string {
  const ms = (n: number | null | undefined) => fmt(n, 3);
  const share = (of: number | null | undefined) => (of === null || of === undefined ? '–' : `${fmt(of * 100, 0)}%`);
  const skippedRow = (r: Result, columns: number) => row([r.workload.name, `skipped: ${r.skipped}`, ...Array<string>(columns - 3).fill(''), r.workload.target]);
  const throughput = results.filter((r) => r.measurement?.kind === 'throughput' || (!r.measurement && !/latency/.test(r.workload.name)));
  const latency = results.filter((r) => r.measurement?.kind === 'latency' || (!r.measurement && /latency/.test(r.workload.name)));
  const other = results.filter((r) => r.measurement?.kind === 'other');
  const out: string[] = [];
  if (throughput.length) {
    out.push(
      row(['workload', 'Veil QPS', 'peer QPS', 'Veil/peer', 'Veil CPU µs/query', 'peer CPU µs/query', 'machine CPU µs/query, Veil / peer side', 'cores idle, Veil / peer side', 'host took, Veil / peer side', 'Veil mean ms', 'peer mean ms', 'Veil RSS MB', 'target']),
      row(Array(13).fill('---')),
      ...throughput.map((r) => {
        const m = r.measurement;
        if (!m) return skippedRow(r, 13);
        return row([
          r.workload.name,
          fmt(m.veil.qps, 0),
          fmt(m.peer?.qps, 0),
          m.ratio === null ? '–' : `${fmt(m.ratio)}×`,
          fmt(m.veil.cpuUs, 1),
          fmt(m.peer?.cpuUs, 1),
          `${fmt(m.veil.machineUs, 1)} / ${fmt(m.peer?.machineUs, 1)}`,
          `${share(m.veil.idleShare)} / ${share(m.peer?.idleShare)}`,
          `${share(m.veil.hostShare)} / ${share(m.peer?.hostShare)}`,
          ms(m.veil.meanMs),
          ms(m.peer?.meanMs),
          fmt(m.rssMb, 0),
          r.workload.target,
        ]);
      }),
      '',
    );
  }
  if (latency.length) {
    out.push(
      "Latency at 2,000 queries a second (ms; every round of each side pooled; Veil's CPU a query is every Veil process's on the way, a relay's included; where dnsdist can do Veil's job on the path, it ran at the same rate in Veil's place, for scale):",
      '',
      row(['workload', 'Veil p50', 'Veil p99', 'Veil p99.9', 'Veil max', 'direct p50', 'direct p99', 'direct p99.9', 'direct max', 'added p50', 'p99 ÷ direct', 'Veil CPU µs/query', 'dnsdist in Veil\'s place: added p50 / p99 / CPU µs/query', 'host took, Veil / direct', 'target']),
      row(Array(15).fill('---')),
      ...latency.map((r) => {
        const m = r.measurement;
        if (!m) return skippedRow(r, 15);
        const v = m.veil;
        const d = m.peer!;
        const p = m.proxy;
        const inVeilsPlace = p ? `${ms((p.p50Ms ?? NaN) - (d.p50Ms ?? NaN))} / ${ms(p.p99Ms)} / ${fmt(p.cpuUs, 1)}` : '–';
        return row([r.workload.name, ms(v.p50Ms), ms(v.p99Ms), ms(v.p999Ms), ms(v.maxMs), ms(d.p50Ms), ms(d.p99Ms), ms(d.p999Ms), ms(d.maxMs), ms((v.p50Ms ?? NaN) - (d.p50Ms ?? NaN)), `${fmt((v.p99Ms ?? NaN) / (d.p99Ms ?? NaN), 1)}×`, fmt(v.cpuUs, 1), inVeilsPlace, `${share(v.hostShare)} / ${share(d.hostShare)}`, r.workload.target]);
      }),
      '',
    );
  }
  if (other.length) {
    out.push(row(['workload', 'result', 'target']), row(Array(3).fill('---')), ...other.map((r) => row([r.workload.name, r.measurement!.summary, r.workload.target])), '');
  }
  return out.join('\n').trimEnd();
}

function writeReport(table: string, results: Result[], options: Options): void {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const versions = readFileSync(path.join(ROOT, 'package.json'), 'utf8');
  const version = (JSON.parse(versions) as { version: string }).version;
  const commands = results
    .filter((r) => r.measurement)
    .map((r) => `* **${r.workload.name}**: ${r.workload.description}\n${r.measurement!.commands.map((c) => `  * \`${c}\``).join('\n')}${r.measurement!.notes.length ? `\n  * ${r.measurement!.notes.join('; ')}` : ''}`)
    .join('\n');
  const text = `# Benchmarks

Measured by \`npm run bench\` (${options.seconds} s per run, ${options.rounds} alternating rounds of Veil and
peer; throughput keeps each side's best round, latency pools every round's answers) on ${new Date().toISOString().slice(0, 10)}: Veil ${version} on Node ${veilNodeVersion()},
${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}. The load generator,
the origin (unbound with local data), the peers (dnsdist ${peerVersion()}) and Veil share these cores.
Absolute numbers move from run to run and machine to machine; compare the ratios. "Machine CPU" is
every process's CPU during the round (the load generator's, the origin's, any front-end's, the
kernel's) per answered query: a side's throughput is the machine's CPU it does not leave idle,
divided by that, so a ratio can be no better than the two sides' machine costs allow. This
machine is a virtual one on a shared host: "host took" is the share of the cores' time the
hypervisor gave other machines during a round (/proc/stat's steal). A pair of rounds in which it
took more than ${(BUSY_HOST_SHARE * 100).toFixed(0)}% of either side's is run again, up to as many extra pairs as were asked
for, and the quietest pairs are kept (bench/quiet-rounds.ts).

${table}

## What ran

${commands}
`;
  // The written analysis below the measured part (from "## Analysis" on) is kept as it is.
  const target = path.join(ROOT, 'docs/benchmarks.md');
  let analysis = '';
  try {
    const before = readFileSync(target, 'utf8');
    const at = before.indexOf('\n## Analysis');
    if (at >= 0) analysis = before.slice(at);
  } catch {
    // first run: nothing to keep
  }
  writeFileSync(target, text + analysis);
  console.log('wrote docs/benchmarks.md');
}

/** The Node bin/veil runs: the project's pinned one when installed (what `npm run` also puts first on PATH), else the one on PATH. */
function veilNodeVersion(): string {
  const pinned = path.join(ROOT, 'node_modules/node/bin/node');
  const out = spawnSync(existsSync(pinned) ? pinned : 'node', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return out.trim() || process.version;
}

function peerVersion(): string {
  const out = spawnSync('dnsdist', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /dnsdist (\S+)/.exec(out)?.[1] ?? 'unknown';
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
