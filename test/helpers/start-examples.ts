/**
 * Starts Corefile examples from the docs, one after another, each on free ports, and says for
 * each whether it started: `node start-examples.js FILE` reads `[{ label, text }]` from FILE and
 * prints one JSON line per example. The docs test runs it inside a network namespace with no
 * route out: examples name public resolvers and lists, and starting one opens its upstreams.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer } from '../../core/testing/server.js';
import { createBuiltinRegistry } from '../../plugins/index.js';
import { ROOT } from './veil-process.js';

export interface Example {
  label: string;
  text: string;
}

export interface ExampleResult {
  label: string;
  error: string | null;
}

/** The same configuration on free ports, so examples never collide with each other or the host. */
export function onFreePorts(text: string): string {
  return (
    text
      .replace(/(udp|tcp|tls|https|http|dnscrypt|relay):\/\/(\[[^\]]+\]|[\d.]+):\d+/g, '$1://$2:0')
      // The HTTP endpoints too: written bare, metrics and health would take ports 9153 and 8080.
      .replace(/^([ \t]*(?:metrics|health))(?:[ \t]+(\[[^\]]+\]|[\d.]+)(?::\d+)?)?(?=[ \t]*(?:\{|$))/gm, (_m, head: string, host?: string) => `${head} ${host ?? '127.0.0.1'}:0`)
  );
}

export async function startExample(example: Example): Promise<ExampleResult> {
  try {
    const local = onFreePorts(example.text);
    if (!/listen /.test(local)) return { label: example.label, error: 'the example does not say where it listens' };
    const veil = await startTestServer(local, { registry: createBuiltinRegistry(), file: path.join(ROOT, 'docs', 'Corefile') });
    await veil.stop();
    return { label: example.label, error: null };
  } catch (err) {
    return { label: example.label, error: (err as Error).message };
  }
}

/** How long one example may take to start and stop: one that takes longer is reported, and the next goes on. */
export const EXAMPLE_BUDGET_MS = 20_000;

function withinBudget(example: Example): Promise<ExampleResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<ExampleResult>((resolve) => {
    timer = setTimeout(() => resolve({ label: example.label, error: `did not start and stop within ${EXAMPLE_BUDGET_MS / 1000} s` }), EXAMPLE_BUDGET_MS);
  });
  return Promise.race([startExample(example), late]).finally(() => clearTimeout(timer));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const examples = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Example[];
  for (const example of examples) console.log(JSON.stringify(await withinBudget(example)));
  // An example that overran its budget may still hold sockets or timers: end here regardless.
  process.exit(0);
}
