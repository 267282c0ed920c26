/**
 * Signed resolver and relay lists: the list format, minisign (against the real minisign tool
 * when installed), and the sources plugin reading files, fetching over HTTPS by IP with the
 * host name only in TLS and Host, caching, and keeping the last good copy.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { formatKeyId, generateMinisignKey, parsePublicKey, signedAt, signMinisign, verifyMinisign, MinisignError } from '../../lib/minisign.js';
import { SourceCatalog, SourcesService } from '../../lib/sources/catalog.js';
import { UpstreamSet } from '../../core/upstream/upstream.js';
import { ListSource } from './list-source.js';
import { parseList } from '../../lib/sources/list.js';
import { encodeStamp } from '../../lib/stamps.js';
import type { ServiceContainer } from '../../core/services.js';
import { startTestServer } from '../../core/testing/server.js';
import { MemoryLogger } from '../../core/logger.js';
import { SystemClock } from '../../core/clock.js';
import { createBuiltinRegistry } from '../index.js';
import { makeTestCerts, skipUnless, which, type TestCerts } from '../../test/helpers/peers.js';
import { SourcesPlugin } from './index.js';
import { startVeil } from '../../test/helpers/veil-process.js';

const LAB_STAMP = encodeStamp({
  protocol: 'dnscrypt',
  props: { dnssec: true, noLogs: true, noFilter: true },
  address: '127.0.0.1:5443',
  providerKey: Buffer.alloc(32, 7),
  providerName: '2.dnscrypt-cert.dns.test',
});
const RELAY_STAMP = encodeStamp({ protocol: 'dnscryptRelay', address: '127.0.0.2:5443' });

const LIST = `# Test resolvers

A preamble that is not an entry.

## lab

A DNSCrypt server on loopback.
// a comment line
${LAB_STAMP}

## relay-a

A relay.
${RELAY_STAMP}

## broken

sdns://AAEAAAAAAAAADlsyMDAxOmRiODo6MV0
sdns://AAcAAAAAAAAABzguOC44Ljg

## lab

A second entry with the same name is ignored.
sdns://gQkxOTIuMC4yLjE
`;

const key = generateMinisignKey(Buffer.alloc(32, 9), Buffer.from('0102030405060708', 'hex'));

describe('the list format', () => {
  it('reads names, descriptions and stamps; skips bad stamps and duplicate names; applies a prefix', () => {
    const entries = parseList(LIST, 'test-');
    assert.deepEqual(entries.map((e) => e.name), ['test-lab', 'test-relay-a', 'test-broken']);
    assert.equal(entries[0]!.description, 'A DNSCrypt server on loopback.');
    assert.equal(entries[0]!.stamps[0]!.protocol, 'dnscrypt');
    assert.deepEqual(entries[1]!.stamps[0], { protocol: 'dnscryptRelay', address: '127.0.0.2:5443' });
    assert.equal(entries[2]!.stamps.length, 1);
    assert.equal(entries[2]!.rejected.length, 1);
    assert.match(entries[2]!.rejected[0]!.reason, /address/);
  });
});

describe('minisign', () => {
  const data = Buffer.from(LIST);
  const pk = parsePublicKey(key.publicKey);
  for (const prehash of [true, false]) {
    const form = prehash ? 'prehashed ED' : 'legacy Ed';
    it(`verifies the ${form} form and refuses any change`, () => {
      const signature = signMinisign(data, key, 'timestamp:1700000000\tfile:test.md', prehash);
      assert.equal(verifyMinisign(data, signature, pk), 'timestamp:1700000000\tfile:test.md');
      const changed = Buffer.from(data);
      changed[50] = changed[50]! ^ 1;
      assert.throws(() => verifyMinisign(changed, signature, pk), /does not match the file/);
      const lines = signature.split('\n');
      const sig = Buffer.from(lines[1]!, 'base64');
      sig[20] = sig[20]! ^ 1;
      assert.throws(() => verifyMinisign(data, [lines[0], sig.toString('base64'), ...lines.slice(2)].join('\n'), pk), MinisignError);
      assert.throws(() => verifyMinisign(data, signature.replace('file:test.md', 'file:other.md'), pk), /trusted comment has been changed/);
    });
  }

  it('names both key ids when the key is not the one that signed', () => {
    const other = generateMinisignKey(Buffer.alloc(32, 1), Buffer.from('1111111111111111', 'hex'));
    assert.throws(() => verifyMinisign(data, signMinisign(data, other, 'c'), pk), new RegExp(`signed by key 1111111111111111, but the configured key is ${formatKeyId(key.keyId)}`));
  });

  describe('against the minisign tool', { skip: skipUnless('minisign') }, () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'veil-minisign-'));
      writeFileSync(path.join(dir, 'list.md'), data);
      const gen = spawnSync(which('minisign')!, ['-G', '-W', '-p', 'key.pub', '-s', 'key.sec'], { cwd: dir, encoding: 'utf8' });
      assert.equal(gen.status, 0, gen.stderr);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    for (const legacy of [false, true]) {
      it(`verifies what minisign signs (${legacy ? 'legacy' : 'prehashed'})`, () => {
        const sign = spawnSync(which('minisign')!, ['-S', ...(legacy ? ['-l'] : []), '-s', 'key.sec', '-m', 'list.md', '-t', 'timestamp:1 file:list.md'], { cwd: dir, encoding: 'utf8' });
        assert.equal(sign.status, 0, sign.stderr);
        const publicKey = parsePublicKey(readFileSync(path.join(dir, 'key.pub'), 'utf8'));
        const signature = readFileSync(path.join(dir, 'list.md.minisig'), 'utf8');
        assert.equal(Buffer.from(signature.split('\n')[1]!, 'base64').toString('latin1', 0, 2), legacy ? 'Ed' : 'ED', 'the algorithm we asked for');
        assert.equal(verifyMinisign(data, signature, publicKey), 'timestamp:1 file:list.md');
      });
    }

    it('minisign verifies what we sign', () => {
      writeFileSync(path.join(dir, 'ours.md'), data);
      writeFileSync(path.join(dir, 'ours.pub'), `untrusted comment: veil test key\n${key.publicKey}\n`);
      writeFileSync(path.join(dir, 'ours.md.minisig'), signMinisign(data, key, 'timestamp:2 file:ours.md'));
      const verify = spawnSync(which('minisign')!, ['-V', '-p', 'ours.pub', '-m', 'ours.md'], { cwd: dir, encoding: 'utf8' });
      assert.equal(verify.status, 0, verify.stderr + verify.stdout);
    });
  });
});

function catalogOf(server: { server: { config: unknown } }): SourceCatalog {
  const config = (server.server.config as { blocks: Array<{ container: ServiceContainer }> });
  return config.blocks[0]!.container.get(SourcesService)!;
}

describe('sources from a local file', () => {
  it('uses a file whose signature verifies, and refuses one changed by a byte', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-sources-'));
    try {
      writeFileSync(path.join(dir, 'resolvers.md'), LIST);
      writeFileSync(path.join(dir, 'resolvers.md.minisig'), signMinisign(Buffer.from(LIST), key, 'timestamp:1 file:resolvers.md'));
      const corefile = `. {\n  listen udp://127.0.0.1:0\n  sources {\n    list test resolvers.md {\n      minisign_key ${key.publicKey}\n    }\n  }\n}`;
      let veil = await startTestServer(corefile, { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') });
      try {
        const catalog = catalogOf(veil);
        assert.equal(catalog.list('test')!.state, 'verified');
        assert.equal(catalog.find('relay-a')!.entry.stamps[0]!.protocol, 'dnscryptRelay');
      } finally {
        await veil.stop();
      }
      writeFileSync(path.join(dir, 'resolvers.md'), LIST.replace('A relay.', 'A relay!'));
      veil = await startTestServer(corefile, { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') });
      try {
        const catalog = catalogOf(veil);
        assert.equal(catalog.list('test')!.state, 'unavailable');
        assert.equal(catalog.find('relay-a'), undefined);
        assert.match(catalog.explain('relay-a'), /never verified: test \(signature does not match the file\)/);
        assert.ok(veil.logs.some((l) => /plugin\/sources: list test: .* is not usable: signature does not match the file/.test(l)));
      } finally {
        await veil.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Serves what `served()` holds now at /v3/relays.md and its signature at /v3/relays.md.minisig; 404 for anything else. */
function listHandler(served: () => { list: string; signature: string }, onRequest?: (req: http.IncomingMessage) => void): http.RequestListener {
  return (req, res) => {
    onRequest?.(req);
    if (req.url === '/v3/relays.md') res.end(served().list);
    else if (req.url === '/v3/relays.md.minisig') res.end(served().signature);
    else {
      res.statusCode = 404;
      res.end();
    }
  };
}

describe('sources over HTTPS', () => {
  let certs: TestCerts;
  let dir: string;
  let server: https.Server;
  let port: number;
  let served = { list: LIST, signature: '' };
  const requests: Array<{ host?: string; servername?: string; path?: string }> = [];

  before(async () => {
    certs = makeTestCerts();
    dir = mkdtempSync(path.join(tmpdir(), 'veil-sources-https-'));
    served.signature = signMinisign(Buffer.from(LIST), key, 'timestamp:1700000000\tfile:relays.md');
    server = https.createServer(
      { cert: readFileSync(certs.chain), key: readFileSync(certs.key) },
      listHandler(
        () => served,
        (req) => requests.push({ host: req.headers.host, servername: (req.socket as unknown as { servername?: string }).servername, path: req.url }),
      ),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
    rmSync(certs.dir, { recursive: true, force: true });
  });

  const corefile = () =>
    `. {\n  listen udp://127.0.0.1:0\n  sources {\n    list relays https://dns.test:${port}/v3/relays.md {\n      minisign_key ${key.publicKey}\n      cache cache/relays.md\n      bootstrap 127.0.0.1\n      ca ${certs.ca}\n      prefix lab-\n    }\n  }\n}`;

  it('fetches by IP with the name only in TLS and Host, verifies, caches, and works offline after', async () => {
    let veil = await startTestServer(corefile(), { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') });
    try {
      const catalog = catalogOf(veil);
      assert.equal(catalog.list('relays')!.state, 'verified');
      assert.ok(catalog.find('lab-relay-a'));
      assert.ok(requests.length >= 2);
      assert.ok(requests.every((r) => r.host === `dns.test:${port}` && r.servername === 'dns.test'), JSON.stringify(requests));
      assert.ok(existsSync(path.join(dir, 'cache/relays.md')) && existsSync(path.join(dir, 'cache/relays.md.minisig')));
    } finally {
      await veil.stop();
    }

    // The server now serves a tampered list: the refresh is refused and the cached copy stays.
    served = { ...served, list: LIST.replace('A relay.', 'A relay!') };
    veil = await startTestServer(corefile(), { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') });
    try {
      const catalog = catalogOf(veil);
      assert.equal(catalog.list('relays')!.state, 'cached');
      const source = veil.server.config!.blocks[0]!.plugins.find((p) => p.name === 'sources') as SourcesPlugin;
      assert.equal(await source.sources[0]!.refresh(), false);
      assert.equal(catalog.list('relays')!.state, 'cached');
      assert.deepEqual(catalog.find('lab-relay-a')!.entry.stamps[0], { protocol: 'dnscryptRelay', address: '127.0.0.2:5443' });
      assert.ok(veil.logs.some((l) => /list relays: refresh failed \(signature does not match the file\); keeping the last verified copy/.test(l)), veil.logs.join('\n'));
    } finally {
      await veil.stop();
    }

    // The server is gone: start-up still works from the cache.
    await new Promise<void>((resolve) => server.close(() => resolve()));
    veil = await startTestServer(corefile(), { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') });
    try {
      assert.equal(catalogOf(veil).list('relays')!.state, 'cached');
      assert.ok(catalogOf(veil).find('lab-lab'));
    } finally {
      await veil.stop();
      server = https.createServer();
      server.listen(0, '127.0.0.1');
    }
  });
});

describe('issue 24 low: an older signed list never replaces a newer one (bin/veil)', () => {
  let certs: TestCerts;
  let dir: string;
  let server: https.Server;
  let port: number;
  let served = { list: '', signature: '' };

  // Two versions of the list, both validly signed; the older one still names a relay since removed.
  const OLD_LIST = LIST.replace('## relay-a', '## retired-relay');
  const NEW_LIST = LIST;
  const sign = (list: string, timestamp: number) => ({ list, signature: signMinisign(Buffer.from(list), key, `timestamp:${timestamp}\tfile:relays.md\thashed`) });

  before(async () => {
    certs = makeTestCerts();
    dir = mkdtempSync(path.join(tmpdir(), 'veil-sources-rollback-'));
    server = https.createServer({ cert: readFileSync(certs.chain), key: readFileSync(certs.key) }, listHandler(() => served));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
    rmSync(certs.dir, { recursive: true, force: true });
  });

  const corefile = () =>
    `. {\n  listen udp://127.0.0.1:0\n  sources {\n    list relays https://dns.test:${port}/v3/relays.md {\n      minisign_key ${key.publicKey}\n      cache ${dir}/cache/relays.md\n      bootstrap 127.0.0.1\n      ca ${certs.ca}\n    }\n  }\n}\n`;

  it('issue 24 low: a list signed before the cached one is refused at refresh; the cache keeps the newer list', async () => {
    served = sign(NEW_LIST, 1_700_000_200);
    let veil = await startVeil(corefile());
    try {
      await veil.waitFor(/list relays: 3 entries, verified \(timestamp:1700000200 file:relays\.md hashed\)/);
    } finally {
      await veil.stop();
    }
    assert.equal(readFileSync(path.join(dir, 'cache/relays.md'), 'utf8'), NEW_LIST);

    // Now the server (a mirror, or someone on the way) hands out the older list.
    served = sign(OLD_LIST, 1_700_000_100);
    veil = await startVeil(corefile());
    try {
      await veil.waitFor(/list relays: 3 entries, from the verified cache \(timestamp:1700000200/);
      await veil.waitFor(
        /list relays: refresh failed \(signed at 2023-11-14T22:15:00\.000Z, before the copy held \(2023-11-14T22:16:40\.000Z\): an older list is never taken\); keeping the last verified copy/,
      );
      assert.doesNotMatch(veil.stderr(), /timestamp:1700000100/, 'the older list is never announced as taken');
    } finally {
      await veil.stop();
    }
    assert.equal(readFileSync(path.join(dir, 'cache/relays.md'), 'utf8'), NEW_LIST, 'the cache still holds the newer list');
    assert.match(readFileSync(path.join(dir, 'cache/relays.md.minisig'), 'utf8'), /timestamp:1700000200/);

    // A newer list is taken as before.
    served = sign(OLD_LIST, 1_700_000_300);
    veil = await startVeil(corefile());
    try {
      await veil.waitFor(/list relays: 3 entries, verified \(timestamp:1700000300/);
    } finally {
      await veil.stop();
    }
    assert.equal(readFileSync(path.join(dir, 'cache/relays.md'), 'utf8'), OLD_LIST);
  });

  it('signedAt reads minisign\'s timestamp from a trusted comment, and nothing else', () => {
    assert.equal(signedAt('timestamp:1700000000\tfile:public-resolvers.md\thashed'), 1_700_000_000);
    assert.equal(signedAt('file:x timestamp:42'), 42);
    assert.equal(signedAt('timestamp:abc'), null);
    assert.equal(signedAt('mytimestamp:5'), null);
    assert.equal(signedAt(null), null);
  });
});

describe('a list whose fetch fails', () => {
  it('is fetched again from a minute on, doubling (not after refresh), and the failure is said once', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-sources-retry-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const logs: string[] = [];
    const source = new ListSource(
      {
        name: 'relays',
        url: new URL('https://dns.test/v3/relays.md'),
        file: null,
        key: parsePublicKey(key.publicKey),
        cache: path.join(dir, 'relays.md'),
        refreshMs: 72 * 3_600_000,
        prefix: '',
        // No bootstrap and no upstream: every fetch fails at once, before any packet is sent.
        bootstrap: [],
        ca: null,
        token: { text: 'relays', file: 'Corefile', line: 1, column: 1, quoted: false, endLine: 1 },
      },
      new SourceCatalog(),
      new MemoryLogger(logs),
      new UpstreamSet(),
      new SystemClock(),
    );
    let fetches = 0;
    const refresh = source.refresh.bind(source);
    source.refresh = () => {
      fetches++;
      return refresh();
    };
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const settle = async () => {
      for (let i = 0; i < 20; i++) await Promise.resolve();
    };
    await source.start();
    t.mock.timers.tick(0);
    await settle();
    assert.equal(fetches, 1);
    const after = async (ms: number) => {
      t.mock.timers.tick(ms);
      await settle();
      return fetches;
    };
    assert.equal(await after(59_000), 1);
    assert.equal(await after(1_000), 2, 'a minute after the first failure');
    assert.equal(await after(119_000), 2);
    assert.equal(await after(1_000), 3, 'then two minutes');
    assert.equal(await after(240_000), 4, 'then four');
    source.stop();
    assert.equal(logs.filter((l) => /list relays: refresh failed/.test(l)).length, 1, logs.join('\n'));
  });
});
