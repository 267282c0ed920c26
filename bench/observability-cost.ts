/**
 * `node dist/bench/observability-cost.js [--root DIR] [--queries N] [--rounds N] [VARIANT…]`
 *
 * CPU time per query, in-process, through the whole door and chain of one block (a hosts
 * answer, so no socket and no upstream add noise), for a block without observability and for
 * each observability feature turned on: what a query pays for each, and that a block without
 * them pays nothing. `--root` runs the same measurement against another checkout's build (the
 * commit before a change, to compare "none" across it). Variants alternate within each round.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const VARIANTS: Record<string, string> = {
  none: '',
  metrics: 'metrics 127.0.0.1:0',
  'trace-sample-0': 'trace {\n endpoint http://127.0.0.1:9/v1/traces\n sample 0\n }',
  log: `log ${path.join(tmpdir(), 'veil-cost.log')}`,
  'log-tsv': `log ${path.join(tmpdir(), 'veil-cost.log')} {\n format tsv\n }`,
  dnstap: `dnstap unix://${path.join(tmpdir(), 'veil-cost-nobody.sock')}`,
};

function parseArgs(argv: string[]) {
  const options = { root: path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..'), queries: 200_000, rounds: 3, names: [] as string[] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--root') options.root = path.resolve(argv[++i]!);
    else if (arg === '--queries') options.queries = Number(argv[++i]);
    else if (arg === '--rounds') options.rounds = Number(argv[++i]);
    else options.names.push(arg);
  }
  return options;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const load = (module: string) => import(pathToFileURL(path.join(options.root, 'dist', module)).href);
  const [{ parseCorefileText }, { buildConfig }, { createDispatcher }, { SystemClock }, { MemoryLogger }, { buildQuery }, { createBuiltinRegistry }] = await Promise.all([
    load('core/config/corefile.js'),
    load('core/server.js'),
    load('core/dispatch.js'),
    load('core/clock.js'),
    load('core/logger.js'),
    load('core/dns/message.js'),
    load('plugins/index.js'),
  ]);
  const names = options.names.length ? options.names : Object.keys(VARIANTS);
  const clock = new SystemClock();
  const info = { client: { address: '127.0.0.1', port: 5353, family: 'IPv4' }, transport: 'udp', datagram: true };
  const query = buildQuery('www.example.org', 1, { id: 7 });
  const results = new Map<string, number[]>();

  for (let round = 0; round < options.rounds; round++) {
    for (const name of names) {
      const corefile = `. {\n ${VARIANTS[name]}\n hosts {\n 192.0.2.1 www.example.org\n }\n}\n`;
      const env = { registry: createBuiltinRegistry(), logger: new MemoryLogger(), clock };
      const built = buildConfig(parseCorefileText(corefile, path.join(options.root, 'Corefile')), env);
      const plugins = built.blocks.flatMap((b: { plugins: Array<{ start?(): unknown; stop?(): unknown }> }) => b.plugins);
      for (const plugin of plugins) await plugin.start?.();
      const door = createDispatcher([{ zone: '.', block: built.blocks[0] }], clock);
      // Warm up (JIT, series created), in batches so that timers and I/O get their turn.
      const run = async (count: number) => {
        for (let done = 0; done < count; ) {
          const batch = Math.min(1000, count - done);
          const pending = [];
          for (let i = 0; i < batch; i++) pending.push(door(Buffer.from(query), info));
          await Promise.all(pending);
          done += batch;
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      await run(20_000);
      const before = process.cpuUsage();
      await run(options.queries);
      const spent = process.cpuUsage(before);
      const usPerQuery = (spent.user + spent.system) / options.queries;
      results.set(name, [...(results.get(name) ?? []), usPerQuery]);
      for (const plugin of plugins) await plugin.stop?.();
    }
  }
  rmSync(path.join(tmpdir(), 'veil-cost.log'), { force: true });
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const none = results.has('none') ? median(results.get('none')!) : null;
  console.log(`CPU µs per query (median of ${options.rounds} rounds of ${options.queries}), build at ${options.root}`);
  for (const [name, values] of results) {
    const m = median(values);
    console.log(`${name.padEnd(16)} ${m.toFixed(2).padStart(7)} µs${none && name !== 'none' ? `  ×${(m / none).toFixed(2)} of none` : ''}   (rounds: ${values.map((v) => v.toFixed(2)).join(', ')})`);
  }
  process.exit(0);
}

await main();
