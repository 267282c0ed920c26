/**
 * The benchmark workloads: each starts Veil and its peer for the same job, runs the same load
 * against both (alternating), and reports the ratio. A workload whose plugin or tool is missing
 * is skipped with the reason.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LAB_PROGRAMS, startDnssecLab, type DnssecLab } from '../test/helpers/dnssec-lab.js';
import { dnscryptStamp, relayStamp } from '../test/helpers/dnscrypt.js';
import { freePort, makeTestCerts, skipUnless, startDnsdist, startUnboundDot, type Dnsdist, type Peer, type TestCerts } from '../test/helpers/peers.js';
import { buildQuery } from '../core/dns/message.js';
import { QType } from '../core/dns/constants.js';
import { startVeil, type VeilProcess } from '../test/helpers/veil-process.js';
import { cacheShared } from './shared-cache.js';
import { captured, captureUnavailable, describeAnonymized, followAnonymized, udpHops, type AnonymizedHops } from './hops.js';
import { readPcap } from '../test/helpers/pcap.js';
import { dnsperf, h2load, percentile, writeSkewedQueries, writeUniqueQueries, type LoadResult } from './tools.js';
import { needsAnotherPair, quietestPairs } from './quiet-rounds.js';

export interface WorkloadContext {
  dir: string;
  origin: Peer;
  seconds: number;
  rounds: number;
  log(line: string): void;
}

export interface Measurement {
  /** `throughput`: QPS of Veil against a peer; `latency`: a fixed rate through Veil against direct. */
  kind: 'throughput' | 'latency' | 'other';
  veil: LoadResult;
  peer: LoadResult | null;
  /** Latency workloads: the same rate through dnsdist doing Veil's job, where dnsdist can (for scale). */
  proxy?: LoadResult | null;
  /** Veil/peer QPS (or latency, as the workload says). */
  ratio: number | null;
  rssMb: number | null;
  summary: string;
  commands: string[];
  notes: string[];
}

export interface Workload {
  name: string;
  description: string;
  /** The goal, as the issue states it. */
  target: string;
  /** A reason to skip, or false. */
  requires?(): string | false;
  run(ctx: WorkloadContext): Promise<Measurement>;
}

/** What the issue asks of every path at 2,000 queries a second. */
const LATENCY_TARGET = 'added p50 ≤ 0.15 ms; p99 ≤ 1.0 ms and ≤ 3 × direct';

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** User + system CPU seconds the process has used so far (/proc/PID/stat, clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds the process's threads have run so far, from each /proc/PID/task/TID/schedstat (in
 * nanoseconds): at a home's rate a round is a few hundred queries and a few tens of milliseconds
 * of CPU, which clock ticks of 10 ms cannot tell apart. A thread that ended no longer counts.
 */
export function threadCpuSeconds(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ns / 1e9;
}

/**
 * The machine's busy, idle and stolen CPU seconds so far, all cores together (/proc/stat's first
 * line, clock ticks of 10 ms: user, nice, system, irq and softirq are busy, idle and iowait idle,
 * and steal is the time the hypervisor ran other machines while this one had work).
 */
export function machineCpuSeconds(): { busy: number; idle: number; stolen: number } {
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = ticks;
  return { busy: (user + nice + system + irq + softirq) / 100, idle: (idle + iowait) / 100, stolen: steal / 100 };
}

/**
 * Runs `load` and notes the CPU time process `pid` spent per answered query (µs), and the whole
 * machine's (every process on the way, the load generator's, the kernel's), with the share of
 * the cores' time nobody used: on a machine the processes share, a side's throughput is the CPU
 * it leaves, divided by the machine's CPU a query. And the share the host took (quiet-rounds.ts).
 */
export async function withCpuOf(pid: number | undefined, load: () => Promise<LoadResult>): Promise<LoadResult> {
  const before = pid === undefined ? 0 : cpuSeconds(pid);
  const machineBefore = machineCpuSeconds();
  const result = await load();
  const machine = machineCpuSeconds();
  const answered = Math.max(1, result.sent - result.lost);
  const busy = machine.busy - machineBefore.busy;
  const idle = machine.idle - machineBefore.idle;
  const stolen = machine.stolen - machineBefore.stolen;
  return {
    ...result,
    ...(pid === undefined ? {} : { cpuUs: ((cpuSeconds(pid) - before) / answered) * 1e6 }),
    machineUs: (busy / answered) * 1e6,
    idleShare: busy + idle > 0 ? idle / (busy + idle) : null,
    hostShare: busy + idle + stolen > 0 ? stolen / (busy + idle + stolen) : null,
  };
}

/** The processes whose CPU time a comparison reads: Veil's, and the peer's. */
export interface Pids {
  veil?: number;
  peer?: number;
}

export interface Alternated {
  /** Each side's best round (by QPS) of those kept. */
  veil: LoadResult;
  peer: LoadResult;
  /** The rounds kept, in order. */
  rounds: { veil: LoadResult[]; peer: LoadResult[] };
  /** Which pairs were kept, by the order they ran in (0 first). */
  kept: number[];
}

/**
 * Runs Veil and peer loads in turn, `rounds` times each, and more pairs while the host is busy
 * (quiet-rounds.ts); keeps the quietest pairs, and each side's best round of those.
 */
export async function alternate(ctx: WorkloadContext, veil: () => Promise<LoadResult>, peer: () => Promise<LoadResult>, pids: Pids = {}): Promise<Alternated> {
  const ran: { veil: LoadResult; peer: LoadResult }[] = [];
  const cpu = (r: LoadResult) => (r.cpuUs === undefined || r.cpuUs === null ? '' : `, ${r.cpuUs.toFixed(1)} µs CPU per query`);
  const host = (r: LoadResult) => (r.hostShare ? `, host took ${(r.hostShare * 100).toFixed(0)}%` : '');
  const pairShares = () => ran.map((pair) => ({ veil: pair.veil.hostShare, peer: pair.peer.hostShare }));
  while (ran.length < ctx.rounds || needsAnotherPair(pairShares(), ctx.rounds)) {
    const round = ran.length + 1;
    const v = await withCpuOf(pids.veil, veil);
    ctx.log(`round ${round}: Veil ${v.qps.toFixed(0)} qps, mean ${v.meanMs.toFixed(3)} ms${cpu(v)}${host(v)}`);
    const p = await withCpuOf(pids.peer, peer);
    ctx.log(`round ${round}: peer ${p.qps.toFixed(0)} qps, mean ${p.meanMs.toFixed(3)} ms${cpu(p)}${host(p)}`);
    ran.push({ veil: v, peer: p });
  }
  const kept = quietestPairs(pairShares(), ctx.rounds);
  if (kept.length < ran.length) ctx.log(`the host was busy: kept rounds ${kept.map((i) => i + 1).join(', ')} of ${ran.length}`);
  const rounds = { veil: kept.map((i) => ran[i]!.veil), peer: kept.map((i) => ran[i]!.peer) };
  const best = (list: LoadResult[]) => list.reduce((a, b) => (b.qps > a.qps ? b : a));
  return { veil: best(rounds.veil), peer: best(rounds.peer), rounds, kept };
}

async function withVeil<T>(corefile: string, fn: (veil: VeilProcess) => Promise<T>): Promise<T> {
  const veil = await startVeil(corefile);
  try {
    return await fn(veil);
  } finally {
    await veil.stop();
  }
}

async function withPeer<T>(start: () => Promise<Peer>, fn: (peer: Peer) => Promise<T>): Promise<T> {
  const peer = await start();
  try {
    return await fn(peer);
  } finally {
    await peer.stop();
  }
}

function throughput(name: string, result: { veil: LoadResult; peer: LoadResult }, rss: number, notes: string[] = []): Measurement {
  const ratio = result.veil.qps / result.peer.qps;
  return {
    kind: 'throughput',
    veil: result.veil,
    peer: result.peer,
    ratio,
    rssMb: rss,
    summary: `Veil ${result.veil.qps.toFixed(0)} qps vs peer ${result.peer.qps.toFixed(0)} qps: ${ratio.toFixed(2)}× (${name})`,
    commands: [result.veil.command, result.peer.command],
    notes,
  };
}

/**
 * dnsperf against Veil and against the peer, alternating, with the same query file; the CPU time
 * of Veil's process and of `peerPid` (the process answering the peer's queries) per query.
 */
async function compareQps(ctx: WorkloadContext, label: string, queries: string, veil: VeilProcess, veilPort: number, peerPort: number, peerPid: number | undefined): Promise<Measurement> {
  const result = await alternate(
    ctx,
    () => dnsperf({ port: veilPort, queryFile: queries, seconds: ctx.seconds }),
    () => dnsperf({ port: peerPort, queryFile: queries, seconds: ctx.seconds }),
    { veil: veil.child.pid, peer: peerPid },
  );
  return throughput(label, result, rssMb(veil.child.pid!));
}

/** Veil forwarding to the origin over UDP, and dnsdist (no packet cache) in front of the same origin. */
function withForwardingPair<T>(ctx: WorkloadContext, fn: (veil: VeilProcess, dnsdist: Dnsdist) => Promise<T>): Promise<T> {
  const corefile = `. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
  return withVeil(corefile, (veil) => withPeer(() => startDnsdist({ backendPort: ctx.origin.port, plain: true }), (peer) => fn(veil, peer as Dnsdist)));
}

const udpForward: Workload = {
  name: 'udp-forward',
  description: 'misses forwarded over UDP, no cache: Veil `forward` vs dnsdist without packet cache, both to the origin',
  target: '≥ 1.0 × dnsdist without packet cache',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'forward.txt', 1000, 10000);
    return withForwardingPair(ctx, (veil, dnsdist) => compareQps(ctx, 'UDP forward', queries, veil, veil.address('udp').port, dnsdist.ports.plain!, dnsdist.process.pid));
  },
};

const udpLatency: Workload = {
  name: 'udp-latency',
  description: 'added latency at 2,000 qps, UDP forward: Veil in front of the origin vs the origin directly (and, for scale, dnsdist in front of it)',
  target: LATENCY_TARGET,
  async run(ctx) {
    return withForwardingPair(ctx, async (veil, dnsdist) => {
      const proxy = { port: dnsdist.ports.plain!, name: 'dnsdist (no packet cache)', pid: dnsdist.process.pid! };
      return { ...(await addedLatency(ctx, veil.address('udp').port, ctx.origin.port, 'udp', [veil.child.pid!], 'udp', proxy)), rssMb: rssMb(veil.child.pid!) };
    });
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

/** Queries a second of a household at rest: each query finds every process on its way asleep. */
const IDLE_RATE = 20;

const udpLatencyIdle: Workload = {
  name: 'udp-latency-idle',
  description: `latency at ${IDLE_RATE} qps (a home at rest: every process on the way wakes for each query), UDP forward: Veil and dnsdist (no packet cache) in front of the origin, and the origin directly; and the CPU Veil and dnsdist each take a query at that rate`,
  target: 'context (what a person at home feels, beside dnsdist in the same place)',
  async run(ctx) {
    return withForwardingPair(ctx, async (veil, dnsdist) => {
      const queries = writeSkewedQueries(ctx.dir, 'idle.txt', 1000, 10000, 'idle.example');
      // At least 200 answers a side a round: a percentile of fewer says little.
      const fixed = { queryFile: queries, seconds: Math.max(ctx.seconds, 10), rate: IDLE_RATE, clients: 1, outstanding: 10, verbose: true };
      const ports = { veil: veil.address('udp').port, dnsdist: dnsdist.ports.plain!, direct: ctx.origin.port };
      // The same warm-up as at 2,000 qps: JIT and caches filled, then left to go cold between queries.
      for (const port of Object.values(ports)) await dnsperf({ ...fixed, port, seconds: 2, rate: 2000, verbose: false });
      const rounds: Record<keyof typeof ports, LoadResult[]> = { veil: [], dnsdist: [], direct: [] };
      // The CPU a query of the two that forward.
      const pids = { veil: [veil.child.pid!], dnsdist: [dnsdist.process.pid!], direct: [] };
      for (let round = 0; round < ctx.rounds; round++) {
        for (const side of Object.keys(ports) as (keyof typeof ports)[]) {
          const result = await withThreadCpuOf(pids[side], () => dnsperf({ ...fixed, port: ports[side] }));
          ctx.log(`round ${round + 1}: ${side} p50 ${(result.p50Ms ?? NaN).toFixed(3)} ms, mean ${result.meanMs.toFixed(3)} ms`);
          rounds[side].push(result);
        }
      }
      const [v, d, o] = [pooled(rounds.veil), pooled(rounds.dnsdist), pooled(rounds.direct)];
      const ms = (x: number | null | undefined) => (x ?? NaN).toFixed(3);
      const side = (name: string, r: LoadResult) => `${name} p50 ${ms(r.p50Ms)} / p99 ${ms(r.p99Ms)} / mean ${ms(r.meanMs)} ms`;
      const cpuUs = (of: LoadResult) => (of.cpuUs ?? NaN).toFixed(0);
      return {
        kind: 'other',
        veil: v,
        peer: d,
        ratio: null,
        rssMb: null,
        summary: `${side('Veil', v)} (added p50 ${ms((v.p50Ms ?? NaN) - (o.p50Ms ?? NaN))}; ${cpuUs(v)} µs CPU a query); ${side('dnsdist', d)} (added p50 ${ms((d.p50Ms ?? NaN) - (o.p50Ms ?? NaN))}; ${cpuUs(d)} µs CPU a query); ${side('direct', o)}`,
        commands: [v.command, d.command, o.command],
        notes: [`${ctx.rounds} rounds of each pooled, ${fixed.seconds} s each`],
      };
    });
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const cacheHits: Workload = {
  name: 'cache-hits',
  description: 'UDP cache hits (1,000 names, skewed popularity): Veil `cache` vs dnsdist packet cache, both warmed first',
  target: '≥ 1.2 × dnsdist packet cache',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'cache.txt', 1000, 10000);
    const corefile = `. {\n  listen udp://127.0.0.1:0\n  cache 10000\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
    return withVeil(corefile, (veil) =>
      withPeer(
        () => startDnsdist({ backendPort: ctx.origin.port, plain: true, cache: true }),
        async (peer) => {
          const veilPort = veil.address('udp').port;
          const peerPort = (peer as unknown as { ports: { plain: number } }).ports.plain;
          // One short pass each fills both caches with every name of the file.
          await dnsperf({ port: veilPort, queryFile: queries, seconds: 2 });
          await dnsperf({ port: peerPort, queryFile: queries, seconds: 2 });
          return compareQps(ctx, 'UDP cache hits', queries, veil, veilPort, peerPort, peer.process.pid);
        },
      ),
    );
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const MILLION = 1_000_000;

/** What the metrics endpoint at `port` says `series` is (the first sample of it). */
async function metricValue(port: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

const cacheMemory: Workload = {
  name: 'cache-memory',
  description: "RSS with 1,000,000 cached answers: a million distinct names sent once through Veil's `cache 1000000` and through dnsdist with a 1,000,000-entry packet cache, then both processes' RSS",
  target: '≤ 250 MB RSS with 1M cached entries',
  async run(ctx) {
    const queries = writeUniqueQueries(ctx.dir, 'million.txt', MILLION, 'memory.example');
    const metricsPort = await freePort();
    const corefile = `. {\n  listen udp://127.0.0.1:0\n  metrics 127.0.0.1:${metricsPort}\n  cache ${MILLION}\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
    // One pass through the file; the time limit is only a bound.
    const fill = (port: number) => dnsperf({ port, queryFile: queries, seconds: 600, passes: 1, clients: 4, outstanding: 200 });
    const settle = () => new Promise((resolve) => setTimeout(resolve, 5000));
    const veilSide = await withVeil(corefile, async (veil) => {
      const before = rssMb(veil.child.pid!);
      const load = await fill(veil.address('udp').port);
      await settle();
      const entries = await metricValue(metricsPort, 'veil_cache_entries');
      // Where the RSS is: V8's heap (reserved), and memory outside it (the cache's arena, Buffers).
      const heapMb = (await metricValue(metricsPort, 'nodejs_heap_total_bytes')) / 1e6;
      const externalMb = (await metricValue(metricsPort, 'nodejs_external_memory_bytes')) / 1e6;
      return { load, before, rss: rssMb(veil.child.pid!), entries, heapMb, externalMb };
    });
    ctx.log(
      `Veil: ${veilSide.entries} entries, RSS ${veilSide.before.toFixed(0)} MB at start, ${veilSide.rss.toFixed(0)} MB after the fill (${veilSide.load.qps.toFixed(0)} qps); ` +
        `V8 heap ${veilSide.heapMb.toFixed(0)} MB, outside it ${veilSide.externalMb.toFixed(0)} MB`,
    );
    const peerSide = await withPeer(
      () => startDnsdist({ backendPort: ctx.origin.port, plain: true, cache: true }),
      async (peer) => {
        const port = (peer as unknown as { ports: { plain: number } }).ports.plain;
        const load = await fill(port);
        await settle();
        return { load, rss: rssMb(peer.process.pid!) };
      },
    );
    ctx.log(`dnsdist: RSS ${peerSide.rss.toFixed(0)} MB after the fill (${peerSide.load.qps.toFixed(0)} qps)`);
    const answered = veilSide.load.sent - veilSide.load.lost;
    return {
      kind: 'other',
      veil: veilSide.load,
      peer: peerSide.load,
      ratio: null,
      rssMb: veilSide.rss,
      summary: `Veil ${veilSide.rss.toFixed(0)} MB RSS holding ${veilSide.entries} answers (${answered} of ${MILLION} answered), dnsdist ${peerSide.rss.toFixed(0)} MB (RSS ratio ${(veilSide.rss / peerSide.rss).toFixed(2)}×)`,
      commands: [veilSide.load.command, peerSide.load.command],
      notes: [`RSS with 1M cached answers: Veil ${veilSide.rss.toFixed(0)} MB (${veilSide.before.toFixed(0)} MB at start), dnsdist ${peerSide.rss.toFixed(0)} MB`],
    };
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

/** Every round's latencies together, sorted. */
function pooled(rounds: LoadResult[]): LoadResult {
  const latencies = rounds.flatMap((r) => r.latencies ?? []).sort((a, b) => a - b);
  const mean = latencies.reduce((sum, v) => sum + v, 0) / Math.max(1, latencies.length);
  const answered = (r: LoadResult) => r.sent - r.lost;
  const allAnswered = Math.max(1, rounds.reduce((sum, r) => sum + answered(r), 0));
  const cpuRounds = rounds.filter((r) => r.cpuUs !== undefined && r.cpuUs !== null);
  return {
    ...rounds[0]!,
    qps: rounds.reduce((sum, r) => sum + r.qps, 0) / rounds.length,
    meanMs: mean,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    p999Ms: percentile(latencies, 99.9),
    maxMs: latencies.length ? latencies[latencies.length - 1]! : null,
    sent: rounds.reduce((sum, r) => sum + r.sent, 0),
    lost: rounds.reduce((sum, r) => sum + r.lost, 0),
    latencies: [],
    // CPU a query over every answer of the rounds; the host's share of the busiest round.
    cpuUs: cpuRounds.length === rounds.length ? rounds.reduce((sum, r) => sum + r.cpuUs! * answered(r), 0) / allAnswered : null,
    hostShare: Math.max(...rounds.map((r) => r.hostShare ?? 0)),
  };
}

/** How long the latency workloads warm Veil's path before they measure it. */
const VEIL_WARM_UP_SECONDS = 10;

/** The Veil processes a latency workload's queries pass through (a client, and a relay when there is one). */
type VeilPids = number[];

/** CPU seconds of all these processes' threads so far. */
function cpuOfAll(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + threadCpuSeconds(pid), 0);
}

/** Runs `load` and notes the CPU these processes' threads spent per answered query (µs), from `schedstat`: fine enough for a slow rate's few ms. */
async function withThreadCpuOf(pids: readonly number[], load: () => Promise<LoadResult>): Promise<LoadResult> {
  const before = cpuOfAll(pids);
  const result = await load();
  return { ...result, cpuUs: ((cpuOfAll(pids) - before) / Math.max(1, result.sent - result.lost)) * 1e6 };
}

/**
 * Fixed-rate runs through Veil and straight to `directPort` (with dnsperf's `directMode`),
 * alternating; the percentiles are over every round's answers together, and Veil's CPU a query
 * is that of every Veil process on the way (`veilPids`) over its rounds. With `proxy`, each
 * round also runs through that other proxy of the same server (dnsdist): what any process in
 * between costs on this machine, beside what Veil costs, its CPU a query included.
 */
async function addedLatency(
  ctx: WorkloadContext,
  veilPort: number,
  directPort: number,
  label: string,
  veilPids: VeilPids,
  directMode = 'udp',
  proxy?: { port: number; name: string; pid: number },
): Promise<Measurement> {
  const queries = writeSkewedQueries(ctx.dir, `${label}-latency.txt`, 1000, 10000, `${label}.example`);
  const fixed = { queryFile: queries, seconds: ctx.seconds, rate: 2000, clients: 1, outstanding: 50, verbose: true };
  // Warm both paths first (JIT, connection pools, session tickets, the origin's cache): the
  // target is the steady-state cost, not the first second's. Veil's for longer: 2 s in, V8's
  // workers were still compiling and collecting at 9.6 µs of CPU a query, and 10 s in they had
  // stopped (docs/benchmarks.md, 2026-12-06 from 08:22).
  await dnsperf({ ...fixed, seconds: VEIL_WARM_UP_SECONDS, verbose: false, port: veilPort });
  await dnsperf({ ...fixed, seconds: 2, verbose: false, port: directPort, mode: directMode });
  if (proxy) await dnsperf({ ...fixed, seconds: 2, verbose: false, port: proxy.port });
  // The proxy's round runs in the peer's turn; a pair the host was too busy in drops it too.
  const proxied: LoadResult[] = [];
  const result = await alternate(
    ctx,
    () => withThreadCpuOf(veilPids, () => dnsperf({ ...fixed, port: veilPort })),
    async () => {
      if (proxy) proxied.push(await withThreadCpuOf([proxy.pid], () => dnsperf({ ...fixed, port: proxy.port })));
      return dnsperf({ ...fixed, port: directPort, mode: directMode });
    },
  );
  const veil = pooled(result.rounds.veil);
  const direct = pooled(result.rounds.peer);
  const other = proxy ? pooled(result.kept.map((i) => proxied[i]!)) : null;
  const added = (veil.p50Ms ?? NaN) - (direct.p50Ms ?? NaN);
  const addedMean = veil.meanMs - direct.meanMs;
  const tail = (veil.p99Ms ?? NaN) / (direct.p99Ms ?? NaN);
  const ms = (v: number | null | undefined) => (v ?? NaN).toFixed(3);
  const fmtCpu = (us: number | null | undefined) => (us ?? NaN).toFixed(1);
  return {
    kind: 'latency',
    veil,
    peer: direct,
    proxy: other,
    ratio: null,
    rssMb: null,
    summary:
      `${label}: p50 ${ms(veil.p50Ms)} / p99 ${ms(veil.p99Ms)} / p99.9 ${ms(veil.p999Ms)} / max ${ms(veil.maxMs)} ms through Veil vs ` +
      `${ms(direct.p50Ms)} / ${ms(direct.p99Ms)} / ${ms(direct.p999Ms)} / ${ms(direct.maxMs)} direct: +${added.toFixed(3)} ms p50, +${addedMean.toFixed(3)} ms mean, p99 ${tail.toFixed(1)}× direct`,
    commands: [veil.command, direct.command, ...(other ? [other.command] : [])],
    notes: [
      `added p50 ${added.toFixed(3)} ms, mean ${addedMean.toFixed(3)} ms; p99 ${tail.toFixed(1)}× direct (${ctx.rounds} rounds of each pooled)`,
      ...(other
        ? [`through ${proxy!.name} instead (the same rate, rounds between Veil's and direct's): p50 ${ms(other.p50Ms)} / p99 ${ms(other.p99Ms)} / p99.9 ${ms(other.p999Ms)} / max ${ms(other.maxMs)} ms, added p50 ${((other.p50Ms ?? NaN) - (direct.p50Ms ?? NaN)).toFixed(3)} ms, p99 ${((other.p99Ms ?? NaN) / (direct.p99Ms ?? NaN)).toFixed(1)}× direct, ${fmtCpu(other.cpuUs)} µs CPU a query (Veil ${fmtCpu(veil.cpuUs)})`]
        : []),
    ],
  };
}

const dotForward: Workload = {
  name: 'dot-forward',
  description: 'UDP in, DoT out, no cache: Veil `dot` vs dnsdist with a TLS backend, both to unbound serving DoT',
  target: '≥ 1.5 × dnsdist with a TLS backend',
  async run(ctx) {
    const certs = makeTestCerts();
    const queries = writeSkewedQueries(ctx.dir, 'dot.txt', 1000, 10000, 'dot.example');
    return withPeer(
      () => startUnboundDot(certs),
      (origin) =>
        withVeil(`. {\n  listen udp://127.0.0.1:0\n  dot {\n    server o tls://127.0.0.1:${origin.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }\n}\n`, (veil) =>
          withPeer(
            () => startDnsdist({ backendPort: origin.port, backendTls: { serverName: 'dns.test', ca: certs.ca }, plain: true }),
            async (peer) => {
              const peerPort = (peer as unknown as { ports: { plain: number } }).ports.plain;
              return compareQps(ctx, 'UDP in, DoT out', queries, veil, veil.address('udp').port, peerPort, peer.process.pid);
            },
          ),
        ),
    );
  },
  requires: () => skipUnless('dnsperf', 'dnsdist', 'unbound'),
};

const dotLatency: Workload = {
  name: 'dot-latency',
  description: 'added latency at 2,000 qps: UDP to Veil, DoT to unbound, vs plain UDP to the same unbound (and, for scale, dnsdist with a TLS backend in Veil\'s place)',
  target: LATENCY_TARGET,
  async run(ctx) {
    const certs = makeTestCerts();
    return withPeer(
      () => startUnboundDot(certs),
      (origin) =>
        withVeil(`. {\n  listen udp://127.0.0.1:0\n  dot {\n    server o tls://127.0.0.1:${origin.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }\n}\n`, (veil) =>
          withPeer(
            () => startDnsdist({ backendPort: origin.port, backendTls: { serverName: 'dns.test', ca: certs.ca }, plain: true }),
            (peer) => {
              const proxy = { port: (peer as Dnsdist).ports.plain!, name: 'dnsdist with a TLS backend', pid: peer.process.pid! };
              return addedLatency(ctx, veil.address('udp').port, origin.port, 'dot', [veil.child.pid!], 'udp', proxy);
            },
          ),
        ),
    );
  },
  requires: () => skipUnless('dnsperf', 'unbound', 'dnsdist'),
};

/**
 * dnsdist's own DoT front-end with its default options (it reads a connection's next query only
 * when new bytes arrive, so of queries that came together it answers the first and sits on the
 * others), forwarding to the origin; and Veil (UDP in) with it as its `dot` upstream.
 */
function withDnsdistDot<T>(ctx: WorkloadContext, fn: (veil: VeilProcess, dnsdist: Dnsdist, certs: TestCerts) => Promise<T>): Promise<T> {
  const certs = makeTestCerts();
  return withPeer(
    () => startDnsdist({ backendPort: ctx.origin.port, plain: true, tls: certs }),
    (peer) => {
      const dnsdist = peer as Dnsdist;
      const corefile = `. {\n  listen udp://127.0.0.1:0\n  dot {\n    server d tls://127.0.0.1:${dnsdist.ports.tls} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }\n}\n`;
      return withVeil(corefile, (veil) => fn(veil, dnsdist, certs));
    },
  );
}

const dotDnsdistLatency: Workload = {
  name: 'dot-dnsdist-latency',
  description: "added latency at 2,000 qps: UDP to Veil, DoT to dnsdist's DoT front-end (default options), vs dnsperf's DoT client straight to the same front-end (and, for scale, a second dnsdist with that front-end as its TLS backend in Veil's place)",
  target: LATENCY_TARGET,
  run: (ctx) =>
    withDnsdistDot(ctx, (veil, dnsdist, certs) =>
      withPeer(
        () => startDnsdist({ backendPort: dnsdist.ports.tls!, backendTls: { serverName: 'dns.test', ca: certs.ca }, plain: true }),
        (peer) => {
          const proxy = { port: (peer as Dnsdist).ports.plain!, name: 'a second dnsdist with a TLS backend', pid: peer.process.pid! };
          return addedLatency(ctx, veil.address('udp').port, dnsdist.ports.tls!, 'dot-dnsdist', [veil.child.pid!], 'dot', proxy);
        },
      ),
    ),
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const dotDnsdistForward: Workload = {
  name: 'dot-dnsdist-forward',
  description: "UDP in, DoT out to dnsdist's DoT front-end (default options), no cache: Veil `dot` vs a second dnsdist with that front-end as its TLS backend",
  target: '≥ 1.5 × dnsdist with a TLS backend',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'dot-dnsdist.txt', 1000, 10000, 'dot-dnsdist.example');
    return withDnsdistDot(ctx, (veil, dnsdist, certs) =>
      withPeer(
        () => startDnsdist({ backendPort: dnsdist.ports.tls!, backendTls: { serverName: 'dns.test', ca: certs.ca }, plain: true }),
        (peer) => compareQps(ctx, 'UDP in, DoT out to dnsdist', queries, veil, veil.address('udp').port, (peer as Dnsdist).ports.plain!, peer.process.pid),
      ),
    );
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

/**
 * dnsdist with a plain and a DNSCrypt front-end, and Veil (UDP in) using that DNSCrypt
 * front-end once its certificate is in hand (through a relay: a second Veil serving
 * `relay://127.0.0.2`, when `relayed`); `measure` gets Veil's port, dnsdist's plain one,
 * dnsdist's PID, and what is on the wire: dnsdist's DNSCrypt port, and the relay's port and PID
 * (null without a relay).
 */
function withDnscryptPair(
  ctx: WorkloadContext,
  measure: (veilPort: number, plainPort: number, veil: VeilProcess, dnsdistPid: number | undefined, wire: { dnscrypt: number; relay: number | null; relayPid: number | null }) => Promise<Measurement>,
  relayed = false,
): Promise<Measurement> {
  return withPeer(
    () => startDnsdist({ backendPort: ctx.origin.port, plain: true, dnscrypt: { providerName: '2.dnscrypt-cert.bench.test' } }),
    async (peer) => {
      const dnsdist = peer as unknown as { ports: { plain: number; dnscrypt: number }; providerKey: Buffer };
      const stamp = dnscryptStamp(`127.0.0.1:${dnsdist.ports.dnscrypt}`, dnsdist.providerKey, '2.dnscrypt-cert.bench.test');
      const client = (anonymize: string) => `. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server d ${stamp}\n  }\n${anonymize}}\n`;
      const run = (corefile: string, relay: VeilProcess | null, relayPort: number | null) =>
        withVeil(corefile, async (veil) => {
          await veil.waitFor(/certificate serial/);
          return measure(veil.address('udp').port, dnsdist.ports.plain, veil, peer.process.pid, { dnscrypt: dnsdist.ports.dnscrypt, relay: relayPort, relayPid: relay?.child.pid ?? null });
        });
      if (!relayed) return run(client(''), null, null);
      const relayPort = await freePort();
      return withVeil(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${dnsdist.ports.dnscrypt}\n    allow_private\n  }\n}\n`, (relay) =>
        run(client(`  anonymize {\n    relay r ${relayStamp(`127.0.0.2:${relayPort}`)}\n    route * via r\n  }\n`), relay, relayPort),
      );
    },
  );
}

const dnscryptLatency: Workload = {
  name: 'dnscrypt-latency',
  description: "added latency at 2,000 qps: UDP to Veil, DNSCrypt to dnsdist's DNSCrypt front-end, vs plain UDP to the same dnsdist",
  target: LATENCY_TARGET,
  async run(ctx) {
    return withDnscryptPair(ctx, (veilPort, plainPort, veil) => addedLatency(ctx, veilPort, plainPort, 'dnscrypt', [veil.child.pid!]));
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const anonymizedLatency: Workload = {
  name: 'anonymized-latency',
  description: "added latency at 2,000 qps: UDP to Veil, Anonymized DNSCrypt through a Veil relay (127.0.0.2) to dnsdist's DNSCrypt front-end, vs plain UDP to the same dnsdist",
  target: LATENCY_TARGET,
  run: (ctx) => withDnscryptPair(ctx, (veilPort, plainPort, veil, _dnsdistPid, wire) => addedLatency(ctx, veilPort, plainPort, 'anonymized', [veil.child.pid!, wire.relayPid!]), true),
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const anonymizedHops: Workload = {
  name: 'anonymized-hops',
  description: "where an anonymized query's time goes at 2,000 qps, from a capture of loopback (anonymized-latency's set-up): the client Veil each way, the Veil relay each way, and dnsdist's DNSCrypt front-end with the origin behind it",
  target: "context (which hop holds the anonymized path's added latency)",
  run: (ctx) =>
    withDnscryptPair(
      ctx,
      async (veilPort, _plainPort, _veil, _dnsdistPid, wire) => {
        const queries = writeSkewedQueries(ctx.dir, 'anonymized-hops.txt', 1000, 10000, 'anonymized-hops.example');
        const fixed = { queryFile: queries, rate: 2000, clients: 1, outstanding: 50 };
        await dnsperf({ ...fixed, port: veilPort, seconds: 2 });
        const ports = { front: veilPort, relay: wire.relay!, server: wire.dnscrypt };
        const hops: AnonymizedHops[] = [];
        const loads: LoadResult[] = [];
        for (let round = 0; round < ctx.rounds; round++) {
          const file = path.join(ctx.dir, `anonymized-hops-${round}.pcap`);
          const load = await captured(file, Object.values(ports), () => dnsperf({ ...fixed, port: veilPort, seconds: ctx.seconds, verbose: true }));
          const followed = followAnonymized(readPcap(file), ports);
          ctx.log(`round ${round + 1}: ${followed.length} of ${load.sent - load.lost} answers followed, p50 ${(load.p50Ms ?? NaN).toFixed(3)} ms`);
          hops.push(...followed);
          loads.push(load);
        }
        return {
          kind: 'other',
          veil: loads[loads.length - 1]!,
          peer: null,
          ratio: null,
          rssMb: null,
          summary: describeAnonymized(hops),
          commands: [loads[0]!.command],
          notes: [`${ctx.rounds} rounds, ${ctx.seconds} s each, ${hops.length} queries followed; captured with \`tcpdump -i lo -s 128 -w FILE\` on the client's, the relay's and the server's ports`],
        };
      },
      true,
    ),
  requires: () => skipUnless('dnsperf', 'dnsdist') || captureUnavailable(),
};

/** Veil's https:// listener (HTTP/2 by `implementation`) against dnsdist's DoH front-end, both answering from their caches. */
function dohListenerWorkload(name: string, implementation: 'veil' | 'node', description: string, target: string): Workload {
  return {
    name,
    description,
    target,
    async run(ctx) {
      const certs = makeTestCerts();
      const path = `/dns-query?dns=${buildQuery('www.doh.example', QType.A).toString('base64url')}`;
      const corefile = `. {\n  listen https://127.0.0.1:0/dns-query {\n    cert ${certs.chain}\n    key ${certs.key}\n    http2 ${implementation}\n  }\n  cache\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
      return withVeil(corefile, (veil) =>
        withPeer(
          () => startDnsdist({ backendPort: ctx.origin.port, cache: true, doh: certs }),
          async (peer) => {
            const peerPort = (peer as unknown as { ports: { doh: number } }).ports.doh;
            const load = (port: number) => h2load({ url: `https://127.0.0.1:${port}${path}`, clients: 8, streams: 16, seconds: ctx.seconds });
            await load(veil.address('https').port);
            const result = await alternate(
              ctx,
              () => load(veil.address('https').port),
              () => load(peerPort),
              { veil: veil.child.pid, peer: peer.process.pid },
            );
            return throughput('DoH listener', result, rssMb(veil.child.pid!));
          },
        ),
      );
    },
    requires: () => skipUnless('h2load', 'dnsdist'),
  };
}

const dohListener = dohListenerWorkload(
  'doh-listener',
  'veil',
  "DoH listener, h2load (HTTP/2, GET of one cached name): Veil's https:// listener with cache vs dnsdist's DoH front-end with its packet cache",
  '≥ 1.0 × dnsdist DoH',
);
const dohListenerNode = dohListenerWorkload(
  'doh-listener-node',
  'node',
  'the same with `http2 node`: HTTP/2 by node:http2 instead of Veil\'s own (what the fallback costs)',
  'context',
);

const dnscryptForward: Workload = {
  name: 'dnscrypt-forward',
  description: "UDP in, DNSCrypt out to dnsdist's DNSCrypt front-end, vs the same queries straight to dnsdist's plain front-end (what DNSCrypt through Veil costs)",
  target: '≥ 0.38 × dnsdist plain (2 × 2026-12-04)',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'dnscrypt.txt', 1000, 10000, 'dnscrypt.example');
    return withDnscryptPair(ctx, (veilPort, plainPort, veil, dnsdistPid) => compareQps(ctx, 'UDP in, DNSCrypt out', queries, veil, veilPort, plainPort, dnsdistPid));
  },
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

/** Veil with a DoH upstream on dnsdist's DoH front-end (which forwards to the origin). */
function dohForwardSetup<T>(ctx: WorkloadContext, fn: (veilPort: number, plainPort: number, veil: VeilProcess, dnsdistPid: number | undefined, dohPort: number) => Promise<T>): Promise<T> {
  const certs = makeTestCerts();
  return withPeer(
    () => startDnsdist({ backendPort: ctx.origin.port, plain: true, doh: certs }),
    (peer) => {
      const ports = (peer as unknown as { ports: { plain: number; doh: number } }).ports;
      const corefile = `. {\n  listen udp://127.0.0.1:0\n  doh {\n    server d https://127.0.0.1:${ports.doh}/dns-query {\n      ca ${certs.ca}\n      pool 2\n    }\n  }\n}\n`;
      return withVeil(corefile, (veil) => fn(veil.address('udp').port, ports.plain, veil, peer.process.pid, ports.doh));
    },
  );
}

const dohForward: Workload = {
  name: 'doh-forward',
  description: "UDP in, DoH out to dnsdist's DoH front-end, vs the same queries straight to dnsdist's plain front-end",
  target: '≥ 0.54 × dnsdist plain (2 × 2026-12-04)',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'doh.txt', 1000, 10000, 'doh-forward.example');
    return dohForwardSetup(ctx, async (veilPort, plainPort, veil, dnsdistPid, dohPort) => {
      const measured = await compareQps(ctx, 'UDP in, DoH out', queries, veil, veilPort, plainPort, dnsdistPid);
      // The same DoH front-end with a native client and as many requests in flight (100): what
      // it can do by itself, so that the ratio can be read as Veil's share or the front-end's.
      const body = path.join(ctx.dir, 'doh-forward.bin');
      writeFileSync(body, buildQuery('n0.doh-forward.example', QType.A));
      const native = await h2load({ url: `https://127.0.0.1:${dohPort}/dns-query`, clients: 2, streams: 50, seconds: ctx.seconds, post: { file: body, contentType: 'application/dns-message' } });
      ctx.log(`dnsdist's DoH front-end, h2load: ${native.qps.toFixed(0)} qps`);
      measured.commands.push(native.command);
      measured.notes.push(`dnsdist's DoH front-end with h2load POSTing one query, 2 connections × 50 streams: ${native.qps.toFixed(0)} qps, ${(native.qps / measured.peer!.qps).toFixed(2)}× the plain front-end`);
      return measured;
    });
  },
  requires: () => skipUnless('dnsperf', 'dnsdist', 'h2load'),
};

const dohLatency: Workload = {
  name: 'doh-latency',
  description: "added latency at 2,000 qps: UDP to Veil, DoH to dnsdist's DoH front-end, vs plain UDP to the same dnsdist",
  target: LATENCY_TARGET,
  run: (ctx) => dohForwardSetup(ctx, (veilPort, plainPort, veil) => addedLatency(ctx, veilPort, plainPort, 'doh', [veil.child.pid!])),
  requires: () => skipUnless('dnsperf', 'dnsdist'),
};

const workersScaling: Workload = {
  name: 'workers-scaling',
  description: 'UDP cache hits with 1 and 2 workers (SO_REUSEPORT), to see how throughput scales with processes',
  target: 'context',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'scaling.txt', 1000, 10000);
    const measured: LoadResult[] = [];
    for (const workers of [1, 2]) {
      const port = await freePort();
      const corefile = `{\n  workers ${workers}\n}\n. {\n  listen udp://127.0.0.1:${port}\n  cache 10000\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
      measured.push(
        await withVeil(corefile, async () => {
          await dnsperf({ port, queryFile: queries, seconds: 2 });
          let best: LoadResult | null = null;
          for (let round = 0; round < ctx.rounds; round++) {
            const r = await dnsperf({ port, queryFile: queries, seconds: ctx.seconds });
            ctx.log(`${workers} worker(s), round ${round + 1}: ${r.qps.toFixed(0)} qps`);
            if (!best || r.qps > best.qps) best = r;
          }
          return best!;
        }),
      );
    }
    const [one, two] = measured as [LoadResult, LoadResult];
    return {
      kind: 'other',
      veil: two,
      peer: one,
      ratio: two.qps / one.qps,
      rssMb: null,
      summary: `1 worker ${one.qps.toFixed(0)} qps, 2 workers ${two.qps.toFixed(0)} qps: ${(two.qps / one.qps).toFixed(2)}× (dnsperf shares the same 2 cores)`,
      commands: [one.command],
      notes: [`scaling 1→2 workers: ${(two.qps / one.qps).toFixed(2)}×`],
    };
  },
  requires: () => skipUnless('dnsperf'),
};

/**
 * One Veil target (`odoh_target`, no cache, forwarding to the origin), one Veil relay on
 * 127.0.0.2, and two Veil fronts with a UDP listener: one asks the target through the relay
 * (`odoh`), the other asks the same target directly (`doh`). Neither front caches. `fn` gets
 * the two fronts' ports and processes, and the relay's PID.
 */
async function withOdohPair<T>(ctx: WorkloadContext, fn: (odohPort: number, dohPort: number, odoh: VeilProcess, doh: VeilProcess, relayPid: number) => Promise<T>): Promise<T> {
  const certs = makeTestCerts();
  const target = `. {\n  listen https://127.0.0.1:0/dns-query {\n    cert ${certs.chain}\n    key ${certs.key}\n    odoh_target\n  }\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`;
  return withVeil(target, async (t) => {
    const targetPort = t.address('https').port;
    const relay = `. {\n  listen https://127.0.0.2:0/proxy {\n    cert ${certs.chain}\n    key ${certs.key}\n    odoh_relay {\n      target dns.test:${targetPort} 127.0.0.1\n      allow_private\n      ca ${certs.ca}\n      rate 100000\n    }\n  }\n}\n`;
    return withVeil(relay, async (r) => {
      const relayPort = r.address('https').port;
      const odoh = `. {\n  listen udp://127.0.0.1:0\n  odoh {\n    server t https://dns.test:${targetPort}/dns-query\n    relay r https://dns.test:${relayPort}/proxy {\n      bootstrap 127.0.0.2\n      ca ${certs.ca}\n    }\n  }\n}\n`;
      const doh = `. {\n  listen udp://127.0.0.1:0\n  doh {\n    server t https://dns.test:${targetPort}/dns-query {\n      bootstrap 127.0.0.1\n      ca ${certs.ca}\n    }\n  }\n}\n`;
      return withVeil(odoh, (o) => withVeil(doh, (d) => fn(o.address('udp').port, d.address('udp').port, o, d, r.child.pid!)));
    });
  });
}

const odohForward: Workload = {
  name: 'odoh-forward',
  description: 'UDP in, ODoH out through a Veil relay to a Veil target, vs UDP in, DoH out to the same target directly (no cache anywhere)',
  target: 'context',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'odoh.txt', 1000, 10000, 'odoh.example');
    return withOdohPair(ctx, async (odohPort, dohPort, odoh, doh) => {
      const result = await alternate(
        ctx,
        () => dnsperf({ port: odohPort, queryFile: queries, seconds: ctx.seconds }),
        () => dnsperf({ port: dohPort, queryFile: queries, seconds: ctx.seconds }),
        { veil: odoh.child.pid, peer: doh.child.pid },
      );
      const measured = throughput('ODoH via relay vs DoH direct', result, rssMb(odoh.child.pid!), ['"peer" is DoH straight to the same target; the ratio is ODoH/DoH']);
      return { ...measured, summary: `ODoH via relay ${result.veil.qps.toFixed(0)} qps vs DoH direct ${result.peer.qps.toFixed(0)} qps: ${(result.veil.qps / result.peer.qps).toFixed(2)}×` };
    });
  },
  requires: () => skipUnless('dnsperf', 'unbound'),
};

const odohLatency: Workload = {
  name: 'odoh-latency',
  description: 'added latency at 2,000 qps: UDP to Veil, ODoH through a Veil relay to a Veil target, vs UDP to Veil, DoH to the same target directly',
  target: 'context (what ODoH adds over DoH)',
  run: (ctx) => withOdohPair(ctx, (odohPort, dohPort, odoh, _doh, relayPid) => addedLatency(ctx, odohPort, dohPort, 'odoh', [odoh.child.pid!, relayPid])),
  requires: () => skipUnless('dnsperf', 'unbound'),
};

// ---- DNSSEC validation (the lab of test/helpers/dnssec-lab.ts: nsd with signed zones, unbound) ----


async function withLab<T>(fn: (lab: DnssecLab) => Promise<T>): Promise<T> {
  const lab = await startDnssecLab();
  try {
    return await fn(lab);
  } finally {
    await lab.stop();
  }
}

const labCorefile = (lab: DnssecLab, validate: boolean, extra = '') =>
  `. {\n  listen udp://127.0.0.1:0\n${extra}${validate ? `  dnssec {\n    trust_anchor ${lab.anchorFile}\n  }\n` : ''}  forward . 127.0.0.1:${lab.resolver.port}\n}\n`;

/** dnsperf against a Veil, with the CPU time Veil spent per answered query. */
async function withCpu(pid: number, load: () => Promise<LoadResult>): Promise<{ load: LoadResult; cpuUs: number }> {
  const before = cpuSeconds(pid);
  const result = await load();
  return { load: result, cpuUs: ((cpuSeconds(pid) - before) / Math.max(1, result.sent - result.lost)) * 1e6 };
}

/**
 * Validation on (`on`) against off, alternating rounds; QPS and CPU per answer. The machine is
 * shared with other work, so each side's median round is compared (a best round is mostly luck
 * here), and CPU per answer is the steadier number.
 */
async function onOff(ctx: WorkloadContext, label: string, on: VeilProcess, off: VeilProcess, load: (port: number) => Promise<LoadResult>, describe: (on: { load: LoadResult; cpuUs: number }, off: { load: LoadResult; cpuUs: number }) => string): Promise<Measurement> {
  const onRounds: Array<{ load: LoadResult; cpuUs: number }> = [];
  const offRounds: Array<{ load: LoadResult; cpuUs: number }> = [];
  const runOn = async (round: number) => {
    const a = await withCpu(on.child.pid!, () => load(on.address('udp').port));
    ctx.log(`round ${round + 1}: validating ${a.load.qps.toFixed(0)} qps, ${a.cpuUs.toFixed(1)} µs CPU per answer`);
    onRounds.push(a);
  };
  const runOff = async (round: number) => {
    const b = await withCpu(off.child.pid!, () => load(off.address('udp').port));
    ctx.log(`round ${round + 1}: not validating ${b.load.qps.toFixed(0)} qps, ${b.cpuUs.toFixed(1)} µs CPU per answer`);
    offRounds.push(b);
  };
  // each side goes first every other round, so neither gets the quieter moment every time
  for (let round = 0; round < ctx.rounds; round++) {
    if (round % 2 === 0) {
      await runOn(round);
      await runOff(round);
    } else {
      await runOff(round);
      await runOn(round);
    }
  }
  const median = (rounds: Array<{ load: LoadResult; cpuUs: number }>) => {
    const middle = (values: number[]) => {
      const sorted = [...values].sort((x, y) => x - y);
      const m = sorted.length >> 1;
      return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
    };
    const qps = middle(rounds.map((r) => r.load.qps));
    // the round closest to the median QPS stands for the side (its command, latencies)
    const typical = rounds.reduce((best, r) => (Math.abs(r.load.qps - qps) < Math.abs(best.load.qps - qps) ? r : best));
    return { load: { ...typical.load, qps }, cpuUs: middle(rounds.map((r) => r.cpuUs)) };
  };
  const a = median(onRounds);
  const b = median(offRounds);
  return {
    kind: 'other',
    veil: a.load,
    peer: b.load,
    ratio: a.load.qps / b.load.qps,
    rssMb: rssMb(on.child.pid!),
    summary: describe(a, b),
    commands: [a.load.command, b.load.command],
    notes: [`${label} (medians of ${ctx.rounds} rounds): ${describe(a, b)}`],
  };
}

const dnssecCacheHits: Workload = {
  name: 'dnssec-cache-hits',
  description: 'UDP cache hits on 1,000 signed names (wildcard answers of the lab): Veil with `dnssec` vs the same Veil without, both warmed first',
  target: '≥ 0.95 × without validation',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'dnssec-cache.txt', 1000, 10000, 'wild.secure.lab');
    return withLab((lab) =>
      withVeil(labCorefile(lab, true, '  cache 10000\n'), (on) =>
        withVeil(labCorefile(lab, false, '  cache 10000\n'), async (off) => {
          await dnsperf({ port: on.address('udp').port, queryFile: queries, seconds: 3 });
          await dnsperf({ port: off.address('udp').port, queryFile: queries, seconds: 3 });
          return onOff(ctx, 'cache hits', on, off, (port) => dnsperf({ port, queryFile: queries, seconds: ctx.seconds }), (a, b) =>
            `validating ${a.load.qps.toFixed(0)} qps at ${a.cpuUs.toFixed(1)} µs CPU per hit vs ${b.load.qps.toFixed(0)} qps at ${b.cpuUs.toFixed(1)} µs without: ${(a.load.qps / b.load.qps).toFixed(2)}× QPS, ${(b.cpuUs / a.cpuUs).toFixed(2)}× CPU efficiency`);
        }),
      ),
    );
  },
  requires: () => skipUnless('dnsperf', ...LAB_PROGRAMS),
};

const dnssecCold: Workload = {
  name: 'dnssec-cold',
  description: 'answers not in any cache (unique names under a signed wildcard, ECDSA P-256 and NSEC, zone keys known): Veil with `dnssec` vs without, both with no cache; CPU per answer',
  target: 'context',
  async run(ctx) {
    const queries = writeUniqueQueries(ctx.dir, 'dnssec-cold.txt', 200_000, 'wild.secure.lab');
    return withLab((lab) =>
      withVeil(labCorefile(lab, true), (on) =>
        withVeil(labCorefile(lab, false), async (off) => {
          // the zone keys once, so that each answer costs its own validation only
          await dnsperf({ port: on.address('udp').port, queryFile: writeUniqueQueries(ctx.dir, 'dnssec-warm.txt', 10, 'warm.wild.secure.lab'), seconds: 2 });
          return onOff(ctx, 'cold answers', on, off, (port) => dnsperf({ port, queryFile: queries, seconds: ctx.seconds, clients: 4, outstanding: 50 }), (a, b) =>
            `validating ${a.load.qps.toFixed(0)} qps at ${a.cpuUs.toFixed(0)} µs CPU per answer vs ${b.load.qps.toFixed(0)} qps at ${b.cpuUs.toFixed(0)} µs without: +${(a.cpuUs - b.cpuUs).toFixed(0)} µs per cold answer (ECDSA P-256: the answer's RRSIG and the RRSIG of the NSEC proving the wildcard)`);
        }),
      ),
    );
  },
  requires: () => skipUnless('dnsperf', ...LAB_PROGRAMS),
};

const dnssecKeytrap: Workload = {
  name: 'dnssec-keytrap',
  description: 'event-loop lag and cache-hit latency while KeyTrap queries (30 keys sharing a tag × 31 signatures, answer cached by unbound) arrive at 200 qps, vs idle',
  target: 'lag ≪ the 4 s query deadline',
  async run(ctx) {
    const probe = writeSkewedQueries(ctx.dir, 'dnssec-probe.txt', 100, 10000, 'wild.secure.lab');
    const attack = path.join(ctx.dir, 'dnssec-keytrap.txt');
    writeFileSync(attack, 'www.keytrap.lab A\n');
    const metricsPort = await freePort();
    // The event-loop lag quantiles cover the last complete 10 s window: phases of 21 s hold one.
    const seconds = Math.max(21, ctx.seconds);
    return withLab((lab) =>
      withVeil(labCorefile(lab, true, `  metrics 127.0.0.1:${metricsPort}\n  cache 10000 {\n    servfail 0s\n  }\n`), async (veil) => {
        const port = veil.address('udp').port;
        await dnsperf({ port, queryFile: probe, seconds: 2 });
        const fixed = { port, queryFile: probe, seconds, rate: 1000, clients: 1, outstanding: 50, verbose: true };
        const lag = async () => ({
          p99: (await metricValue(metricsPort, 'veil_event_loop_lag_seconds{quantile="0.99"}')) * 1000,
          max: (await metricValue(metricsPort, 'veil_event_loop_lag_seconds{quantile="1"}')) * 1000,
        });
        const idle = await dnsperf(fixed);
        const idleLag = await lag();
        const before = cpuSeconds(veil.child.pid!);
        const attackLoad = dnsperf({ port, queryFile: attack, seconds: seconds + 1, rate: 200, clients: 1, outstanding: 200 });
        const busy = await dnsperf(fixed);
        const busyLag = await lag();
        const attacked = await attackLoad;
        const cpuPerAttack = ((cpuSeconds(veil.child.pid!) - before) / Math.max(1, attacked.sent)) * 1000;
        return {
          kind: 'other',
          veil: busy,
          peer: idle,
          ratio: null,
          rssMb: rssMb(veil.child.pid!),
          summary:
            `cache hits p99 ${busy.p99Ms?.toFixed(3)} ms, slowest ${busy.maxMs?.toFixed(1)} ms under KeyTrap (${attacked.qps.toFixed(0)} qps, ${cpuPerAttack.toFixed(2)} ms CPU each, all SERVFAIL) ` +
            `vs p99 ${idle.p99Ms?.toFixed(3)} ms, slowest ${idle.maxMs?.toFixed(1)} ms idle; event-loop lag p99 ${busyLag.p99.toFixed(1)} ms, max ${busyLag.max.toFixed(1)} ms (idle ${idleLag.p99.toFixed(1)} / ${idleLag.max.toFixed(1)} ms)`,
          commands: [busy.command, attacked.command],
          notes: [`a KeyTrap query costs ${cpuPerAttack.toFixed(2)} ms of CPU; event-loop lag max ${busyLag.max.toFixed(1)} ms under attack vs ${idleLag.max.toFixed(1)} ms idle`],
        };
      }),
    );
  },
  requires: () => skipUnless('dnsperf', ...LAB_PROGRAMS),
};

/** Queries in flight at once in the burst workload: ten times what one pooled connection carries. */
const BURST_IN_FLIGHT = 1000;

const burst: Workload = {
  name: 'burst',
  description: `${BURST_IN_FLIGHT} queries in flight at once, UDP in, out over UDP to the origin, DoT to unbound and DoH to dnsdist: what share is answered, how many end in SERVFAIL, the slowest answer`,
  target: 'context (every query answered, none SERVFAIL for want of a connection or a lost datagram)',
  async run(ctx) {
    const queries = writeSkewedQueries(ctx.dir, 'burst.txt', 1000, 10000, 'burst.example');
    const certs = makeTestCerts();
    const load = (veil: VeilProcess) => dnsperf({ port: veil.address('udp').port, queryFile: queries, clients: 8, outstanding: BURST_IN_FLIGHT, seconds: ctx.seconds });
    const paths: Array<[string, LoadResult]> = [];
    paths.push(['UDP', await withVeil(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${ctx.origin.port}\n}\n`, load)]);
    paths.push([
      'DoT',
      await withPeer(
        () => startUnboundDot(certs),
        (origin) => withVeil(`. {\n  listen udp://127.0.0.1:0\n  dot {\n    server o tls://127.0.0.1:${origin.port} {\n      server_name dns.test\n      ca ${certs.ca}\n    }\n  }\n}\n`, load),
      ),
    ]);
    paths.push([
      'DoH',
      await withPeer(
        () => startDnsdist({ backendPort: ctx.origin.port, plain: true, doh: certs }),
        (peer) => withVeil(`. {\n  listen udp://127.0.0.1:0\n  doh {\n    server d https://127.0.0.1:${(peer as Dnsdist).ports.doh}/dns-query {\n      ca ${certs.ca}\n    }\n  }\n}\n`, load),
      ),
    ]);
    const describe = ([name, r]: [string, LoadResult]): string => {
      const answered = Object.values(r.rcodes ?? {}).reduce((a, b) => a + b, 0);
      const noerror = r.rcodes?.NOERROR ?? 0;
      return `${name} ${((100 * noerror) / Math.max(1, answered)).toFixed(2)}% NOERROR, ${r.rcodes?.SERVFAIL ?? 0} SERVFAIL, ${r.lost} lost, slowest ${((r.maxMs ?? NaN) / 1000).toFixed(2)} s, ${r.qps.toFixed(0)} qps`;
    };
    return {
      kind: 'other',
      veil: paths[0]![1],
      peer: null,
      ratio: null,
      rssMb: null,
      summary: `${BURST_IN_FLIGHT} in flight: ${paths.map(describe).join('; ')}`,
      commands: paths.map(([, r]) => r.command),
      notes: [],
    };
  },
  requires: () => skipUnless('dnsperf', 'dnsdist', 'unbound'),
};

export const workloads: Workload[] = [
  udpForward, udpLatency, udpLatencyIdle, udpHops, burst, cacheHits, cacheMemory, cacheShared, dotForward, dotLatency, dotDnsdistForward, dotDnsdistLatency, dnscryptLatency, anonymizedLatency, anonymizedHops, dnscryptForward,
  dohListener, dohListenerNode, dohForward, dohLatency, odohForward, odohLatency, workersScaling,
  dnssecCacheHits, dnssecCold, dnssecKeytrap,
];
