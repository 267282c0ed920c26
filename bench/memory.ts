/**
 * `npm run bench:memory`: what a full cache and a large blocklist cost, in one process of their
 * own so that nothing else is counted:
 *
 *   cache      1,000,000 answers stored through the real cache plugin (typical A answers of
 *              2 records, distinct names), then RSS and heap measured after a GC;
 *   blocklist  a 1,000,000-name list written in hosts format and loaded by the filter plugin's
 *              reader; load time, RSS and heap after a GC, and lookups per second.
 *
 * Run: npm run build && node --expose-gc dist/bench/memory.js [cache|blocklist] [COUNT]
 */
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SystemClock } from '../core/clock.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { buildReply } from '../core/dns/message.js';
import { createDispatcher } from '../core/dispatch.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { loadNameList } from '../plugins/filter/rules.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import type { PluginDefinition } from '../core/plugin.js';

const which = process.argv[2] ?? 'cache';
const COUNT = Number(process.argv[3] ?? 1_000_000);

function settle(): { rssMb: number; heapMb: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  // Heap and the Buffers' memory outside it: what the entries themselves hold.
  return { rssMb: m.rss / 2 ** 20, heapMb: (m.heapUsed + m.arrayBuffers) / 2 ** 20 };
}

/** Stands in for the upstream: two A records for any name, TTL 3600. */
const origin: PluginDefinition<null> = {
  name: 'bench-origin',
  position: { after: 'hosts' },
  parse: () => null,
  create: () => ({
    name: 'bench-origin',
    serve: async (ctx) =>
      buildReply(ctx.query, {
        questionEnd: ctx.question.end,
        edns: ctx.edns,
        answers: [
          { type: QType.A, ttl: 3600, rdata: Buffer.from([192, 0, 2, 1]) },
          { type: QType.A, ttl: 3600, rdata: Buffer.from([192, 0, 2, 2]) },
        ],
      }),
  }),
};

async function cache(): Promise<void> {
  const registry = createBuiltinRegistry();
  registry.register(origin);
  const clock = new SystemClock();
  const built = buildConfig(parseCorefileText(`. {\n listen udp://127.0.0.1:0\n cache ${COUNT}\n bench-origin\n}`, 'Corefile'), { registry, logger: new MemoryLogger(), clock });
  const dispatch = createDispatcher([...built.listeners.values()][0]!.routes, clock);
  const info = { client: { address: '127.0.0.1', port: 5353, family: 'IPv4' as const }, transport: 'udp', datagram: true };
  const before = settle();
  const started = performance.now();
  for (let i = 0; i < COUNT; i++) await dispatch(buildQuery(`host-${i}.example-${i % 997}.test`, QType.A, { id: i & 0xffff }), info);
  const fillS = (performance.now() - started) / 1000;
  // Let V8 give back the pages the fill's garbage used, as a server at rest would.
  for (let i = 0; i < 5; i++) {
    settle();
    await new Promise((r) => setTimeout(r, 500));
  }
  const after = settle();
  // Still in use here, so the GC above could not take the entries away.
  await dispatch(buildQuery('host-0.example-0.test', QType.A), info);
  console.log(`cache: ${COUNT} entries stored in ${fillS.toFixed(1)} s; RSS ${after.rssMb.toFixed(0)} MB (+${(after.rssMb - before.rssMb).toFixed(0)} MB), heap ${after.heapMb.toFixed(0)} MB (+${(after.heapMb - before.heapMb).toFixed(0)} MB), about ${(((after.heapMb - before.heapMb) * 2 ** 20) / COUNT).toFixed(0)} bytes an entry`);
}

function blocklist(): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'veil-blocklist-'));
  const file = path.join(dir, 'hosts.txt');
  const lines: string[] = ['# a generated blocklist in hosts format'];
  for (let i = 0; i < COUNT; i++) lines.push(`0.0.0.0 ad${i}.tracker-${i % 5003}.example`);
  writeFileSync(file, lines.join('\n'));
  const before = settle();
  const started = performance.now();
  const { rules } = loadNameList(readFileSync(file, 'utf8'));
  const loadS = (performance.now() - started) / 1000;
  const after = settle();
  const lookups = 1_000_000;
  const t0 = performance.now();
  let hits = 0;
  for (let i = 0; i < lookups; i++) if (rules.matches(i % 2 ? `www.ad${i % COUNT}.tracker-${(i % COUNT) % 5003}.example` : `clean-${i}.example.org`)) hits++;
  const lookupS = (performance.now() - t0) / 1000;
  console.log(`blocklist: ${rules.size} names loaded in ${loadS.toFixed(2)} s; RSS ${after.rssMb.toFixed(0)} MB (+${(after.rssMb - before.rssMb).toFixed(0)} MB), heap +${(after.heapMb - before.heapMb).toFixed(0)} MB; ${(lookups / lookupS / 1e6).toFixed(2)} M lookups/s (${hits} blocked)`);
  rmSync(dir, { recursive: true, force: true });
}

if (which === 'cache') await cache();
else if (which === 'blocklist') blocklist();
else throw new Error('usage: memory.js cache|blocklist [COUNT]');
