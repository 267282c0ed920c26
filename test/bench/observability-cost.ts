/**
 * What metrics and trace cost per query, in process (no sockets, so the network does not hide
 * it): the door and a block whose hosts plugin answers, the cheapest path there is, with and
 * without observability. Not a test: run it by hand after `npm run build`:
 *
 *     node_modules/.bin/node dist/test/bench/observability-cost.js [QUERIES] [ROUNDS]
 *
 * Prints the median time per query of each configuration and its difference to the baseline.
 */
import { SystemClock } from '../../core/clock.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { createDispatcher } from '../../core/dispatch.js';
import { MemoryLogger } from '../../core/logger.js';
import { buildConfig } from '../../core/server.js';
import { createBuiltinRegistry } from '../../plugins/index.js';

const QUERIES = Number(process.argv[2] ?? 200_000);
const ROUNDS = Number(process.argv[3] ?? 7);
/** Queries in flight at once, as a busy listener would have. */
const CONCURRENCY = 64;

const HOSTS = 'hosts {\n 192.0.2.10 web.veil.test\n }';
const configurations: Record<string, string> = {
  'baseline (hosts)': HOSTS,
  'metrics': `metrics 127.0.0.1:0\n ${HOSTS}`,
  'trace, sample 0': `trace {\n sample 0\n }\n ${HOSTS}`,
  'trace, sample 0.01': `trace {\n sample 0.01\n endpoint http://127.0.0.1:9/v1/traces\n }\n ${HOSTS}`,
  'metrics + trace sample 0': `metrics 127.0.0.1:0\n trace {\n sample 0\n }\n ${HOSTS}`,
  // Not observability, but measured the same way: what the path plugin costs queries it does not answer.
  'path': `path\n ${HOSTS}`,
};

async function measure(inner: string): Promise<number[]> {
  const clock = new SystemClock();
  const env = { registry: createBuiltinRegistry(), logger: new MemoryLogger(), clock };
  const built = buildConfig(parseCorefileText(`. {\n listen udp://127.0.0.1:0\n ${inner}\n}`, 'Corefile'), env);
  for (const block of built.blocks) for (const plugin of block.plugins) await plugin.start?.();
  const dispatch = createDispatcher([...built.listeners.values()][0]!.routes, clock);
  const query = buildQuery('web.veil.test', QType.A, { id: 1 });
  const info = { client: { address: '127.0.0.1', port: 5353, family: 'IPv4' as const }, transport: 'udp', datagram: true };
  const worker = async (count: number) => {
    for (let i = 0; i < count; i++) await dispatch(query, info);
  };
  const perQueryNs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.hrtime.bigint();
    await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(QUERIES / CONCURRENCY)));
    perQueryNs.push(Number(process.hrtime.bigint() - started) / QUERIES);
  }
  for (const block of built.blocks) for (const plugin of block.plugins) await plugin.stop?.();
  return perQueryNs;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

// ONLY=label measures one configuration (in a process of its own: loading the OpenTelemetry SDK,
// say, could change what every configuration measured after it costs).
const chosen = Object.entries(configurations).filter(([label]) => !process.env.ONLY || label === process.env.ONLY);
const results: Array<[string, number]> = [];
// A first pass warms the JIT for every path; only the second counts.
for (const pass of [0, 1]) {
  for (const [label, inner] of chosen) {
    const times = await measure(inner);
    if (pass === 1) results.push([label, median(times.slice(1))]);
  }
}
const baseline = results[0]![1];
console.log(`${QUERIES} queries × ${ROUNDS} rounds, ${CONCURRENCY} in flight, Node ${process.versions.node}`);
for (const [label, ns] of results) {
  console.log(`${label.padEnd(28)} ${(ns / 1000).toFixed(3)} µs/query  ${label === results[0]![0] ? '' : `${ns >= baseline ? '+' : ''}${((ns - baseline) / 1000).toFixed(3)} µs (${(((ns - baseline) / baseline) * 100).toFixed(1)}%)`}`);
}
