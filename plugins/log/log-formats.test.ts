/**
 * log: the formats people already parse (Veil's JSON, CoreDNS's text line, dnscrypt-proxy's
 * tsv and ltsv query log, nx_log and blocked-names log), hashed or dropped client addresses,
 * and size-based rotation, through a real server on loopback.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { answerFor, defaultHandler, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer } from '../../core/testing/server.js';
import { goQuote } from './formats.js';
import { testRegistry } from '../../test/helpers/plugins.js';

let dir: string;
let origin: FakeDns;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'veil-log-'));
  // nx.example does not exist; everything else as the default fake.
  origin = await startFakeDns((query) => (query.packet.questions?.[0]?.name.toLowerCase() === 'nx.example' ? answerFor(query, [], { rcode: 'NXDOMAIN' }) : defaultHandler(query)));
});
after(async () => {
  await origin.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the query mix through a block whose log says `options`; returns the files' lines. */
async function run(options: string, files: string[]): Promise<Record<string, string[]>> {
  const veil = await startTestServer(
    `. {\n listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n log ${path.join(dir, 'query.log')} {\n ${options}\n }\n filter {\n block ads.example\n }\n hosts {\n 192.0.2.7 printer.lan\n }\n cache 100\n forward . 127.0.0.1:${origin.port}\n}`,
    { registry: testRegistry() },
  );
  const udp = veil.address('udp://127.0.0.1:0');
  const tcp = veil.address('tcp://127.0.0.1:0');
  await queryUdp(udp.host, udp.port, buildQuery('www.example', QType.A, { id: 1 }));
  await queryUdp(udp.host, udp.port, buildQuery('www.example', QType.A, { id: 2 }));
  await queryTcp(tcp.host, tcp.port, [buildQuery('nx.example', QType.AAAA, { id: 3 })]);
  await queryUdp(udp.host, udp.port, buildQuery('ads.example', QType.A, { id: 4 }));
  await queryUdp(udp.host, udp.port, buildQuery('printer.lan', QType.A, { id: 5 }));
  await veil.stop();
  const out: Record<string, string[]> = {};
  for (const file of files) out[file] = existsSync(path.join(dir, file)) ? readFileSync(path.join(dir, file), 'utf8').trim().split('\n') : [];
  for (const file of readdirSync(dir)) rmSync(path.join(dir, file));
  return out;
}

describe('log formats', () => {
  it('tsv: dnscrypt-proxy query_log columns, nx_log and blocked-names log', async () => {
    const logs = await run(`format tsv\n nx ${path.join(dir, 'nx.log')}\n blocked ${path.join(dir, 'blocked.log')}`, ['query.log', 'nx.log', 'blocked.log']);
    const lines = logs['query.log']!;
    assert.equal(lines.length, 5);
    const ts = String.raw`\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]`;
    assert.match(lines[0]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\twww\.example\tA\tPASS\t\d+ms\t127\.0\.0\.1:${origin.port}$`));
    assert.match(lines[1]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\twww\.example\tA\tPASS\t\d+ms\t-$`), 'a cache hit names no server');
    assert.match(lines[2]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\tnx\.example\tAAAA\tNXDOMAIN\t\d+ms\t127\.0\.0\.1:\d+$`));
    assert.match(lines[3]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\tads\.example\tA\tREJECT\t\d+ms\t-$`));
    assert.match(lines[4]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\tprinter\.lan\tA\tCLOAK\t\d+ms\t-$`));
    assert.deepEqual(logs['nx.log']!.map((l) => l.split('\t').slice(1)), [['127.0.0.1', 'nx.example', 'AAAA']]);
    assert.match(logs['nx.log']![0]!, new RegExp(`^${ts}\t`));
    assert.equal(logs['blocked.log']!.length, 1);
    assert.match(logs['blocked.log']![0]!, new RegExp(String.raw`^${ts}\t127\.0\.0\.1\tads\.example\t\S+$`));
  });

  it('ltsv: labels as dnscrypt-proxy writes them', async () => {
    const logs = await run(`format ltsv\n nx ${path.join(dir, 'nx.log')}\n blocked ${path.join(dir, 'blocked.log')}`, ['query.log', 'nx.log', 'blocked.log']);
    const fields = (line: string) => Object.fromEntries(line.split('\t').map((f) => [f.slice(0, f.indexOf(':')), f.slice(f.indexOf(':') + 1)]));
    const lines = logs['query.log']!.map(fields);
    assert.deepEqual(Object.keys(lines[0]!), ['time', 'host', 'message', 'type', 'return', 'cached', 'duration', 'server']);
    assert.match(lines[0]!.time!, /^\d{10}$/);
    assert.deepEqual([lines[0]!.host, lines[0]!.message, lines[0]!.type, lines[0]!.return, lines[0]!.cached], ['127.0.0.1', 'www.example', 'A', 'PASS', '0']);
    assert.equal(lines[1]!.cached, '1');
    assert.equal(lines[3]!.return, 'REJECT');
    assert.deepEqual(Object.keys(fields(logs['nx.log']![0]!)), ['time', 'host', 'message', 'type']);
    assert.deepEqual(Object.keys(fields(logs['blocked.log']![0]!)), ['time', 'host', 'qname', 'message']);
    assert.equal(fields(logs['blocked.log']![0]!).qname, 'ads.example');
  });

  it("text: CoreDNS's log line", async () => {
    const lines = (await run('format text', ['query.log']))['query.log']!;
    assert.match(lines[0]!, /^\[INFO\] 127\.0\.0\.1:\d+ - 1 "A IN www\.example\. udp \d+ false 512" NOERROR qr,rd,ra \d+ [\d.]+s$/);
    assert.match(lines[2]!, /^\[INFO\] 127\.0\.0\.1:\d+ - 3 "AAAA IN nx\.example\. tcp \d+ false 512" NXDOMAIN qr,rd,ra \d+ [\d.]+s$/);
  });

  it('json stays the default', async () => {
    const lines = (await run('class all', ['query.log']))['query.log']!.map((l) => JSON.parse(l));
    assert.equal(lines[0].client, '127.0.0.1');
    assert.equal(typeof lines[0].port, 'number');
    assert.equal(lines[3].blocked_by !== undefined, true);
  });

  it('client_address hash: a stable keyed pseudonym, never the address; none: no address at all', async () => {
    const hashed = (await run('format tsv\n client_address hash', ['query.log']))['query.log']!.map((l) => l.split('\t')[1]);
    assert.match(hashed[0]!, /^[0-9a-f]{16}$/);
    assert.equal(new Set(hashed).size, 1, 'the same client, the same pseudonym');
    assert.ok(hashed.every((h) => !h!.includes('127.0.0.1')));
    const none = (await run('client_address none', ['query.log']))['query.log']!.map((l) => JSON.parse(l));
    assert.ok(none.every((l) => l.client === null && l.port === undefined));
    const text = (await run('format text\n client_address none', ['query.log']))['query.log']!;
    assert.ok(text.every((l) => l.startsWith('[INFO] - - ')), text.join('\n'));
  });
});

describe('log rotation', () => {
  it('max_size rotates FILE to FILE.1 … and keeps max_files of them', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n log ${path.join(dir, 'rot.log')} {\n max_size 4K\n max_files 2\n }\n forward . 127.0.0.1:${origin.port}\n}`, {
      registry: testRegistry(),
    });
    const udp = veil.address('udp://127.0.0.1:0');
    // About 200 bytes a line: 4 KiB holds some 20 lines; 120 queries make several files.
    for (let i = 0; i < 120; i++) {
      await queryUdp(udp.host, udp.port, buildQuery(`n${i}.rotation.example`, QType.A, { id: i }));
      // One batch per turn: let each query's line be its own write, as on a quiet server.
      await new Promise((r) => setImmediate(r));
    }
    await veil.stop();
    const files = readdirSync(dir).filter((f) => f.startsWith('rot.log')).sort();
    assert.deepEqual(files, ['rot.log', 'rot.log.1', 'rot.log.2']);
    for (const file of files) assert.ok(readFileSync(path.join(dir, file)).length <= 4096, `${file} within max_size`);
    const newest = readFileSync(path.join(dir, 'rot.log'), 'utf8').trim().split('\n');
    assert.equal(JSON.parse(newest.at(-1)!).name, 'n119.rotation.example.');
    const older = readFileSync(path.join(dir, 'rot.log.1'), 'utf8').trim().split('\n');
    const lastOlder = Number(/^n(\d+)\./.exec(JSON.parse(older.at(-1)!).name)![1]);
    const firstNewest = Number(/^n(\d+)\./.exec(JSON.parse(newest[0]!).name)![1]);
    assert.equal(firstNewest, lastOlder + 1, 'no line lost or repeated across the rotation');
    for (const file of files) rmSync(path.join(dir, file));
  });
});

describe("log: dnscrypt-proxy's escaping", () => {
  it('escapes as Go QuoteToGraphic does, without the quotes', () => {
    assert.equal(goQuote('a\tb\nc"d\\e\x01'), 'a\\tb\\nc\\"d\\\\e\\x01');
    assert.equal(goQuote('plain.example'), 'plain.example');
  });
});
