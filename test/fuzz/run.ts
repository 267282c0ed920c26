/**
 * `npm run fuzz [TARGET…] [--time SECONDS] [--seed N]`: runs each target for a while (default 10 s
 * each), prints executions per target, and writes any input that fails into the target's corpus
 * folder, where every `npm test` checks it from then on.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { dnssecTargets } from './dnssec-targets.js';
import { odohTargets } from './odoh-targets.js';
import { protocolTargets } from './protocol-targets.js';
import { allSeeds, CORPUS, targets as coreTargets, type FuzzTarget } from './targets.js';

const targets = [...coreTargets, ...protocolTargets, ...odohTargets, ...dnssecTargets];

interface Options {
  names: string[];
  seconds: number;
  seed: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { names: [], seconds: 10, seed: Date.now() & 0x7fffffff };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--time') options.seconds = Number(argv[++i]);
    else if (arg === '--seed') options.seed = Number(argv[++i]);
    else options.names.push(arg);
  }
  if (!(options.seconds > 0)) throw new Error('--time takes a number of seconds');
  const unknown = options.names.filter((n) => !targets.some((t) => t.name === n));
  if (unknown.length) throw new Error(`unknown target(s) ${unknown.join(', ')}; targets: ${targets.map((t) => t.name).join(', ')}`);
  return options;
}

function save(target: FuzzTarget, input: unknown): string {
  // the form target.fromCorpus reads back: raw bytes, text, or JSON for compound inputs
  const bytes = typeof input === 'string' ? Buffer.from(input) : Buffer.isBuffer(input) ? input : Buffer.from(JSON.stringify(input));
  const dir = path.join(CORPUS, target.name);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `crash-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`);
  writeFileSync(file, bytes);
  return file;
}

async function fuzz(target: FuzzTarget, seconds: number, seed: number): Promise<boolean> {
  for (const input of allSeeds(target)) await target.check(input);
  let executions = 0;
  const deadline = Date.now() + seconds * 1000;
  const property = fc.asyncProperty(target.arbitrary, async (input) => {
    executions++;
    await target.check(input);
  });
  let round = 0;
  while (Date.now() < deadline) {
    const result = await fc.check(property, { numRuns: 2000, seed: seed + round++, endOnFailure: false });
    if (result.failed) {
      const input = result.counterexample?.[0];
      const file = save(target, input);
      console.log(`${target.name.padEnd(10)} FAILED after ${executions} executions: ${result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)}`);
      console.log(`${''.padEnd(10)} input saved to ${path.relative(process.cwd(), file)} (now a regression seed)`);
      return false;
    }
  }
  console.log(`${target.name.padEnd(10)} ${String(executions).padStart(8)} executions in ${seconds}s, no failure — ${target.inputs}`);
  return true;
}

const options = parseArgs(process.argv.slice(2));
const chosen = options.names.length ? targets.filter((t) => options.names.includes(t.name)) : targets;
console.log(`fuzzing ${chosen.length} target(s), ${options.seconds}s each, seed ${options.seed}`);
let ok = true;
for (const target of chosen) ok = (await fuzz(target, options.seconds, options.seed)) && ok;
process.exit(ok ? 0 : 1);
