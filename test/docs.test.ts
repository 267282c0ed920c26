/**
 * Docs that cannot rot: every Corefile example in the plugin READMEs and docs/ is started (its
 * ports moved to 0), every plugin folder has its README in the fixed form, and the error table
 * matches the code.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { SystemClock } from '../core/clock.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { ERROR_CODES } from '../core/errors.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { startTestServer } from '../core/testing/server.js';
import { builtinPlugins, createBuiltinRegistry } from '../plugins/index.js';
import { makeProviderKeys } from './helpers/dnscrypt.js';
import { makeTestCerts } from './helpers/peers.js';
import { ROOT } from './helpers/veil-process.js';

function markdownFiles(): string[] {
  const plugins = readdirSync(path.join(ROOT, 'plugins'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => path.join(ROOT, 'plugins', d.name, 'README.md'));
  const docs = readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(ROOT, 'docs', f));
  return [...plugins, ...docs, path.join(ROOT, 'README.md')];
}

/** Fenced blocks marked `corefile` (``` or ~~~). */
function corefileExamples(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(```|~~~) ?corefile\n([\s\S]*?)^\1$/gm)].map((m) => m[2]!);
}

// Examples that serve TLS name their files as {$VEIL_CERT}, {$VEIL_KEY} and {$VEIL_CA}; give
// them a throw-away certificate so they start here as they would for a user.
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

describe('Corefile examples in the docs start', () => {
  const examples = markdownFiles().flatMap((file) => corefileExamples(file).map((text, i) => ({ label: `${path.relative(ROOT, file)} example ${i + 1}`, text })));
  it('there are examples to check', () => assert.ok(examples.length >= 10, `only ${examples.length}`));
  for (const { label, text } of examples) {
    it(label, async () => {
      // Same configuration on free ports, so examples never collide with each other or the host.
      const local = text
        .replace(/(udp|tcp|tls|https|dnscrypt|relay):\/\/(\[[^\]]+\]|[\d.]+):\d+/g, '$1://$2:0')
        // The HTTP endpoints too: written bare, metrics and health would take ports 9153 and 8080.
        .replace(/^([ \t]*(?:metrics|health))(?:[ \t]+(\[[^\]]+\]|[\d.]+)(?::\d+)?)?(?=[ \t]*(?:\{|$))/gm, (_m, head: string, host?: string) => `${head} ${host ?? '127.0.0.1'}:0`);
      assert.ok(/listen /.test(local), `${label} should say where it listens`);
      const veil = await startTestServer(local, { registry: createBuiltinRegistry(), file: path.join(ROOT, 'docs', 'Corefile') });
      await veil.stop();
    });
  }
});

describe('Corefile.example', () => {
  // It names public resolvers and fetches public lists: here it is only checked (as `veil
  // check` does). test/integration/example-offline.test.ts starts it, in a network namespace
  // with no route out.
  it('builds (veil check)', () => {
    const file = path.join(ROOT, 'Corefile.example');
    const built = buildConfig(parseCorefileText(readFileSync(file, 'utf8'), file), { registry: createBuiltinRegistry(), logger: new MemoryLogger(), clock: new SystemClock() });
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
