/**
 * Docs that cannot rot: every Corefile example in the plugin READMEs, docs/ and the README is
 * started (its ports moved to 0), an untagged fence that is a Corefile fails (tag it `corefile`
 * so that it runs, or `txt` for a sketch), every plugin folder has its README in the fixed form,
 * and the error table matches the code.
 *
 * Examples name public resolvers and lists, and starting one opens its upstreams and fetches
 * its lists: they are started inside a network namespace with no route out (only loopback), so
 * that nothing is ever sent towards a public address. Where no namespace can be made (not root),
 * each is built as `veil check` does, and none is started.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SystemClock } from '../core/clock.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { ERROR_CODES } from '../core/errors.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { builtinPlugins, createBuiltinRegistry } from '../plugins/index.js';
import { makeProviderKeys } from './helpers/dnscrypt.js';
import { createNamespace, whyNoNamespace } from './helpers/netns.js';
import { makeTestCerts } from './helpers/peers.js';
import { EXAMPLE_BUDGET_MS, onFreePorts, type Example, type ExampleResult } from './helpers/start-examples.js';
import { ROOT } from './helpers/veil-process.js';

function markdownFiles(): string[] {
  const plugins = readdirSync(path.join(ROOT, 'plugins'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => path.join(ROOT, 'plugins', d.name, 'README.md'))
    .filter((file) => existsSync(file));
  const docs = readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(ROOT, 'docs', f));
  return [...plugins, ...docs, path.join(ROOT, 'README.md')];
}

interface Fence {
  file: string;
  tag: string;
  text: string;
}

/** Every fenced block (``` or ~~~) with its info string. */
function fences(file: string): Fence[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(```|~~~)[ \t]*([^\n]*)\n([\s\S]*?)^\1$/gm)].map((m) => ({ file, tag: m[2]!.trim(), text: m[3]! }));
}

const registry = createBuiltinRegistry();

/** A Corefile: it parses, and every directive in it is a plugin. */
function isCorefile(text: string): boolean {
  try {
    const config = parseCorefileText(text, 'fence');
    const names = config.blocks.flatMap((b) => b.directives.map((d) => d.name.text));
    return config.blocks.length > 0 && names.length > 0 && names.every((n) => registry.get(n));
  } catch {
    return false;
  }
}

// Examples that serve TLS name their files as {$VEIL_CERT}, {$VEIL_KEY} and {$VEIL_CA}; give
// them a throw-away certificate so they start here as they would for a user (the namespace's
// processes inherit this environment).
const certs = makeTestCerts();
process.env.VEIL_CERT ??= certs.chain;
process.env.VEIL_KEY ??= certs.key;
process.env.VEIL_CA ??= certs.ca;
// …and DNSCrypt listeners name their provider key {$VEIL_DNSCRYPT_KEY}.
const dnscryptKeys = makeProviderKeys();
process.env.VEIL_DNSCRYPT_KEY ??= dnscryptKeys.keyFile;
after(() => {
  rmSync(certs.dir, { recursive: true, force: true });
  dnscryptKeys.cleanup();
});

const allFences = markdownFiles().flatMap(fences);
const label = (fence: Fence, i: number) => `${path.relative(ROOT, fence.file)} example ${i + 1}`;

describe('Corefile examples in the docs start', () => {
  const examples: Example[] = [];
  for (const file of markdownFiles()) {
    allFences
      .filter((f) => f.file === file && f.tag === 'corefile')
      .forEach((fence, i) => examples.push({ label: label(fence, i), text: fence.text }));
  }
  const noNamespace = whyNoNamespace();
  const results = new Map<string, ExampleResult>();

  // Each example has its own budget inside the run; the run as a whole is bounded too, so that a
  // hang is reported (the examples after it say they were not started) and never holds the suite.
  const runBudgetMs = Math.min(100_000, examples.length * EXAMPLE_BUDGET_MS);
  before(async () => {
    if (noNamespace) return;
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-docs-'));
    const ns = createNamespace('veil-docs');
    try {
      writeFileSync(path.join(dir, 'examples.json'), JSON.stringify(examples));
      const child = ns.run([process.execPath, path.join(ROOT, 'dist/test/helpers/start-examples.js'), path.join(dir, 'examples.json')], ROOT);
      const inTime = await child.ended(runBudgetMs);
      if (!inTime) process.stderr.write(`the examples' run was stopped after ${runBudgetMs / 1000} s; its output:\n${child.output()}\n`);
      for (const line of child.output().split('\n')) {
        if (!line.startsWith('{"label"')) continue;
        const result = JSON.parse(line) as ExampleResult;
        results.set(result.label, result);
      }
    } finally {
      ns.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, { timeout: runBudgetMs + 15_000 });

  it('there are examples to check', () => assert.ok(examples.length >= 10, `only ${examples.length}`));
  for (const example of examples) {
    it(example.label, () => {
      if (noNamespace) {
        // Built, not started: nothing binds and nothing is sent.
        const local = onFreePorts(example.text);
        assert.ok(/listen /.test(local), `${example.label} should say where it listens`);
        buildConfig(parseCorefileText(local, path.join(ROOT, 'docs', 'Corefile')), { registry, logger: new MemoryLogger(), clock: new SystemClock() });
        return;
      }
      const result = results.get(example.label);
      assert.ok(result, `${example.label} was not started (the run ended before it)`);
      assert.equal(result.error, null);
    });
  }

  it('an untagged fence that is a Corefile fails: tag it corefile (it runs) or txt (a sketch)', () => {
    const untagged = allFences.filter((f) => f.tag === '' && isCorefile(f.text)).map((f) => `${path.relative(ROOT, f.file)}: ${f.text.split('\n').find((l) => l.trim())}`);
    assert.deepEqual(untagged, []);
  });
});

describe('Corefile.example', () => {
  // It names public resolvers and fetches public lists: here it is only checked (as `veil
  // check` does). test/integration/example-offline.test.ts starts it, in a network namespace
  // with no route out.
  it('builds (veil check)', () => {
    const file = path.join(ROOT, 'Corefile.example');
    const built = buildConfig(parseCorefileText(readFileSync(file, 'utf8'), file), { registry, logger: new MemoryLogger(), clock: new SystemClock() });
    assert.deepEqual([...built.listeners.keys()], ['udp://127.0.0.1:5353', 'tcp://127.0.0.1:5353']);
  });
});

describe('plugin READMEs', () => {
  const sections = ['Name', 'Description', 'Syntax', 'Examples', 'Metrics'];
  for (const plugin of builtinPlugins) {
    it(`${plugin.name} has README.md with ${sections.join(', ')}`, () => {
      const file = path.join(ROOT, 'plugins', plugin.name, 'README.md');
      assert.ok(existsSync(file), `${file} is missing`);
      const headings = [...readFileSync(file, 'utf8').matchAll(/^## (.+)$/gm)].map((m) => m[1]);
      assert.deepEqual(headings.filter((h) => sections.includes(h!)), sections);
    });
  }

  it('the README lists every built-in plugin', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const plugin of builtinPlugins) assert.match(readme, new RegExp(`\\[${plugin.name}\\]\\(plugins/${plugin.name}/README\\.md\\)`));
  });
});

describe('docs/errors.md', () => {
  it('lists exactly the error codes of core/errors.ts', () => {
    const table = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
    const documented = [...table.matchAll(/^\| `(VEIL_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual([...documented].sort(), [...ERROR_CODES].sort());
  });

});
