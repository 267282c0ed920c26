/**
 * `veil init`: every combination of its answers (listen addresses, each set of protocols,
 * anonymization on and off, blocklists or none) gives a Corefile that the real `veil check`
 * accepts and that says what was asked; then the command itself: --out, --force, mistakes,
 * and the questions answered on stdin.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PROTOCOLS, renderCorefile, type InitSettings, type Protocol } from '../cli/init.js';
import { SystemClock } from '../core/clock.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { makeTempDir, runVeil, VEIL } from './helpers/veil-process.js';

const dir = makeTempDir({ 'ads.txt': 'ads.example\ntracker.example\n' });
after(() => rmSync(dir, { recursive: true, force: true }));

function subsets(): Protocol[][] {
  const out: Protocol[][] = [];
  for (let mask = 1; mask < 1 << PROTOCOLS.length; mask++) out.push(PROTOCOLS.filter((_, i) => mask & (1 << i)));
  return out;
}

function combinations(): InitSettings[] {
  const all: InitSettings[] = [];
  for (const listen of [['127.0.0.1:53'], ['127.0.0.1:5353', '[::1]:5353']]) {
    for (const protocols of subsets()) {
      for (const anonymize of protocols.includes('dnscrypt') ? [true, false] : [false]) {
        for (const blocklists of [[], [path.join(dir, 'ads.txt')]]) all.push({ listen, protocols, anonymize, blocklists, stateDir: null });
      }
    }
  }
  return all;
}

/** Runs `jobs` with at most `limit` at a time (the machine is shared). */
async function pool<T>(jobs: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

describe('veil init: every combination passes veil check', () => {
  const all = combinations();

  it(`there are ${all.length} combinations (2 listen sets × 7 protocol sets × anonymization × blocklists)`, () => {
    assert.equal(all.length, 2 * (4 * 2 + 3) * 2);
  });

  it('veil check accepts each, and each says what was asked', async () => {
    const failures = await pool(
      all.map((settings, i) => async () => {
        const text = renderCorefile(settings);
        const file = path.join(dir, `Corefile.${i}`);
        writeFileSync(file, text);
        const label = JSON.stringify({ ...settings, blocklists: settings.blocklists.length });
        const result = await runVeil(['check', file], dir);
        if (result.code !== 0) return `${label}: ${result.stderr}`;
        const listeners = settings.listen.flatMap((a) => [`udp://${a}`, `tcp://${a}`]).join(', ');
        if (!result.stdout.includes(`listeners: ${listeners}`)) return `${label}: listeners ${result.stdout}`;
        const has = (p: Protocol) => settings.protocols.includes(p);
        const plugins = /plugins: +(.*)/.exec(result.stdout)![1]!.split(', ');
        for (const p of PROTOCOLS) if (plugins.includes(p) !== has(p)) return `${label}: plugins ${plugins.join(',')}`;
        if (plugins.includes('anonymize') !== settings.anonymize) return `${label}: anonymize ${plugins.join(',')}`;
        if (plugins.includes('filter') !== settings.blocklists.length > 0) return `${label}: filter ${plugins.join(',')}`;
        if (!plugins.includes('path')) return `${label}: no path plugin (veil doctor needs it)`;
        if (/forward|insecure/.test(text)) return `${label}: a plaintext upstream`;
        // What only the start checks (loadbalance's fallback names), without starting anything that connects.
        const built = buildConfig(parseCorefileText(text, file), { registry: createBuiltinRegistry(), logger: new MemoryLogger(), clock: new SystemClock() });
        try {
          for (const plugin of built.blocks[0]!.plugins) if (plugin.name === 'loadbalance') await plugin.start?.();
        } catch (err) {
          return `${label}: ${(err as Error).message}`;
        }
        return null;
      }),
      4,
    );
    assert.deepEqual(failures.filter(Boolean), []);
  });
});

describe('veil init, the command', () => {
  it('writes FILE from flags, and will not overwrite it without --force', async () => {
    const file = path.join(dir, 'flags.Corefile');
    const args = ['init', '--out', file, '--listen', '127.0.0.1:5353', '--protocols', 'doh,dot', '--blocklist', path.join(dir, 'ads.txt')];
    const first = await runVeil(args, dir);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /wrote .*flags\.Corefile\. Next: veil check/);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /listen udp:\/\/127\.0\.0\.1:5353 tcp:\/\/127\.0\.0\.1:5353/);
    assert.match(text, /doh \{\n {8}servers_from public-resolvers/);
    assert.match(text, /fallback quad9-dot cloudflare-dot/);
    assert.doesNotMatch(text, /dnscrypt \{|anonymize \{/);
    assert.match(text, /block .*ads\.txt/);
    const again = await runVeil(args, dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists; --force to overwrite it/);
    assert.equal((await runVeil([...args, '--force'], dir)).code, 0);
  });

  it('mistakes are usage errors (status 2), and nothing is written', async () => {
    const file = path.join(dir, 'never.Corefile');
    for (const [args, message] of [
      [['--protocols', 'dot', '--anonymize'], /--anonymize routes DNSCrypt servers through relays: add dnscrypt/],
      [['--protocols', 'dnscrypt,plain'], /"plain" is not one of dnscrypt, doh, dot/],
      [['--blocklist', path.join(dir, 'missing.txt')], /--blocklist .*missing\.txt: no such file/],
      [['--listen', 'localhost:53'], /--listen localhost:53: .*an IP address and port/],
      [['--anonymize', '--no-anonymize'], /not both/],
    ] as Array<[string[], RegExp]>) {
      const result = await runVeil(['init', '--out', file, ...args], dir);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    assert.equal(existsSync(file), false);
  });

  it('without --out, the Corefile goes to stdout (defaults: 127.0.0.1:53, DNSCrypt anonymized, DoT fallback)', async () => {
    const result = await runVeil(['init', '--protocols', 'dnscrypt,dot'], dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /listen udp:\/\/127\.0\.0\.1:53 tcp:\/\/127\.0\.0\.1:53/);
    assert.match(result.stdout, /anonymize \{\n {8}route \* via \*\n {8}skip_incompatible/);
    assert.match(result.stdout, /cache \{\$STATE_DIRECTORY:lists\}\/relays\.md/);
  });

  it('asks the questions, reading the answers from stdin (empty: the default)', async () => {
    const file = path.join(dir, 'asked.Corefile');
    const child = spawn(VEIL, ['init', '--interactive', '--out', file], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end('127.0.0.1:5353 [::1]:5353\ndnscrypt\nn\n\n');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /Listen on which addresses .*\n.*Which upstream protocols .*\n.*Anonymize DNSCrypt .*\n.*Blocklist files/);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /listen udp:\/\/127\.0\.0\.1:5353 tcp:\/\/127\.0\.0\.1:5353 udp:\/\/\[::1\]:5353 tcp:\/\/\[::1\]:5353/);
    assert.match(text, /server quad9-dnscrypt sdns:/);
    assert.doesNotMatch(text, /anonymize \{|dot \{|doh \{|filter \{/);
    const check = await runVeil(['check', file], dir);
    assert.equal(check.code, 0, check.stderr);
  });
});
