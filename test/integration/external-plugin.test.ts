/**
 * A plugin that lives outside the repo: the whoami example from docs/writing-plugins.md, copied
 * to a folder of its own with Veil linked as its `veil` package, loaded by `plugin ./…` in a
 * Corefile, served by the real bin/veil, and keeping its state across a reload; its own tests
 * run there on Veil's test kit. It imports Veil only through the public entry, `veil/plugin`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { makeTempDir, ROOT, runVeil, startVeil } from '../helpers/veil-process.js';

const example = readFileSync(path.join(ROOT, 'examples/plugins/whoami/index.js'), 'utf8');
const exampleTest = readFileSync(path.join(ROOT, 'examples/plugins/whoami/whoami.test.js'), 'utf8');

/** Links Veil as node_modules/veil, as `npm install veil` would provide it. */
function linkVeil(dir: string): void {
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'veil'));
}

const corefile = '. {\n    listen udp://127.0.0.1:0\n    plugin ./whoami/index.js\n    whoami {\n        ttl 5\n    }\n}\n';
const withMetrics = corefile.replace('    plugin', '    metrics 127.0.0.1:0\n    plugin');

describe('an external plugin', () => {
  it('is loaded from a path, answers, and keeps its state across a reload', async () => {
    const veil = await startVeil(corefile, { 'whoami/index.js': example }, 'Corefile', linkVeil);
    try {
      const udp = veil.address('udp');
      const answer = dnsPacket.decode(await queryUdp(udp.host, udp.port, buildQuery('whoami', QType.TXT, { id: 1 })));
      const txt = (answer.answers![0] as any).data.map((b: Buffer) => b.toString()).join('');
      assert.match(txt, /^127\.0\.0\.1 port \d+ via udp$/);
      assert.equal((answer.answers![0] as any).ttl, 5);
      assert.match(veil.stderr(), /plugin\/whoami: answering TXT whoami\. \(0 answered so far\)/);
      veil.signal('SIGHUP');
      await veil.waitFor('reloaded configuration');
      assert.match(veil.stderr(), /plugin\/whoami: answering TXT whoami\. \(1 answered so far\)/);
    } finally {
      await veil.stop();
    }
  });

  it('defines a metric of its own, which the metrics plugin exposes', async () => {
    const veil = await startVeil(withMetrics, { 'whoami/index.js': example }, 'Corefile', linkVeil);
    try {
      const udp = veil.address('udp');
      for (let id = 1; id <= 3; id++) await queryUdp(udp.host, udp.port, buildQuery('whoami', QType.TXT, { id }));
      const endpoint = /serving (http:\/\/[\d.]+:\d+\/metrics)/.exec(veil.stderr())![1]!;
      const text = await (await fetch(endpoint)).text();
      assert.match(text, /^# TYPE veil_plugin_whoami_answers_total counter$/m);
      assert.match(text, /^veil_plugin_whoami_answers_total\{server="\.",transport="udp"\} 3$/m);
    } finally {
      await veil.stop();
    }
  });

  it('veil check loads it and shows it in the chain, after hosts', async () => {
    const dir = makeTempDir({ Corefile: corefile.replace('plugin', 'hosts {\n        192.0.2.1 a.test\n    }\n    plugin'), 'whoami/index.js': example });
    linkVeil(dir);
    const result = await runVeil(['check', 'Corefile'], dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /chain: {5}hosts → whoami → upstreams/);
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['a missing file', {}, /^Corefile:3:12: plugin: cannot load \.\/whoami\/index\.js/m],
    ['a module without a plugin', { 'whoami/index.js': 'export const x = 1;\n' }, /^Corefile:3:12: plugin: \.\/whoami\/index\.js exports no plugin/m],
    ['a plugin without create', { 'whoami/index.js': "export default { name: 'whoami', parse() {} };\n" }, /plugin "whoami" has no create\(options, scope\) function/],
    ['a plugin not in the order without a position', { 'whoami/index.js': "export default { name: 'whoami', parse() {}, create() { return { name: 'whoami' }; } };\n" }, /not in the built-in order; declare position/],
    ['a declaration of the wrong kind', { 'whoami/index.js': "export default { name: 'whoami', provides: 'upstreams', parse() {}, create() {} };\n" }, /^Corefile:3:12: plugin: \.\/whoami\/index\.js: plugin "whoami": provides is a list/m],
  ];
  for (const [label, files, message] of bad) {
    it(`refuses ${label} with file:line:col`, async () => {
      const dir = makeTempDir({ Corefile: corefile, ...files });
      const result = await runVeil(['check', 'Corefile'], dir);
      assert.equal(result.code, 1);
      assert.match(result.stderr, message);
    });
  }

  it('imports nothing of Veil but veil/plugin and veil/plugin/testing, and no other module of Veil can be imported', () => {
    const specifiers = (text: string) => [...text.matchAll(/^import [^;]*?from '([^']+)';/gms)].map((m) => m[1]!);
    assert.deepEqual(specifiers(example).filter((s) => s.startsWith('veil')), ['veil/plugin']);
    assert.deepEqual(specifiers(exampleTest).filter((s) => s.startsWith('veil')), ['veil/plugin', 'veil/plugin/testing']);
    const dir = makeTempDir({ 'inside.mjs': "import 'veil/core/plugin.js';\n" });
    linkVeil(dir);
    const result = spawnSync(process.execPath, ['inside.mjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });

  it('its own tests pass on the test kit, in its own folder', () => {
    const dir = makeTempDir({ 'whoami/index.js': example, 'whoami/whoami.test.js': exampleTest });
    linkVeil(dir);
    // Without the variable that makes a child of `node --test` report to its parent instead of to stdout.
    const env = { ...process.env, NODE_TEST_CONTEXT: undefined };
    const result = spawnSync(process.execPath, ['--test', '--test-reporter=tap', 'whoami.test.js'], { cwd: path.join(dir, 'whoami'), encoding: 'utf8', timeout: 60_000, env });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /^# pass 3$/m);
  });

  it('the example in the repo loads by its path too', async () => {
    const dir = makeTempDir({ Corefile: corefile.replace('./whoami/index.js', path.join(ROOT, 'examples/plugins/whoami/index.js')) });
    writeFileSync(path.join(dir, 'unused'), '');
    const result = await runVeil(['check', 'Corefile'], dir);
    assert.equal(result.code, 0, result.stderr);
  });
});
