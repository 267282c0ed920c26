/** hosts, log and errors: table-driven, through a real server on loopback. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName, typeNumber } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { fullRcode } from '../core/dns/wire.js';
import { queryUdp } from '../core/testing/client.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { makeTempDir } from './helpers/veil-process.js';
import { testRegistry } from './helpers/plugins.js';
import { HostsPlugin } from '../plugins/hosts/index.js';

describe('hosts', () => {
  let veil: TestServer;
  let dir: string;
  let ask: (name: string, type: string) => Promise<dnsPacket.Packet & { rcode?: string }>;
  before(async () => {
    dir = makeTempDir({ 'hosts.txt': '# a hosts file\n198.51.100.7   files.veil.test files-alias.veil.test\n2001:db8::7    files.veil.test\nnot-an-ip      broken.veil.test\n' });
    veil = await startTestServer(
      '. {\n  listen udp://127.0.0.1:0\n  hosts hosts.txt {\n    192.0.2.10 web.veil.test\n    2001:db8::10 web.veil.test\n    ttl 60\n  }\n}',
      { registry: testRegistry(), file: path.join(dir, 'Corefile') },
    );
    const udp = veil.address('udp://127.0.0.1:0');
    ask = async (name, type) => {
      const wire = await queryUdp(udp.host, udp.port, buildQuery(name, typeNumber(type)!, { id: 5 }));
      return { ...dnsPacket.decode(wire), rcode: rcodeName(fullRcode(wire)) };
    };
  });
  after(() => veil.stop());

  const cases: Array<[string, string, string, string[]]> = [
    ['web.veil.test', 'A', 'NOERROR', ['192.0.2.10']],
    ['WEB.Veil.TEST', 'A', 'NOERROR', ['192.0.2.10']],
    ['web.veil.test', 'AAAA', 'NOERROR', ['2001:db8::10']],
    ['web.veil.test', 'MX', 'NOERROR', []],
    ['files.veil.test', 'A', 'NOERROR', ['198.51.100.7']],
    ['files-alias.veil.test', 'A', 'NOERROR', ['198.51.100.7']],
    ['files.veil.test', 'AAAA', 'NOERROR', ['2001:db8::7']],
    ['10.2.0.192.in-addr.arpa', 'PTR', 'NOERROR', ['web.veil.test']],
    ['7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', 'PTR', 'NOERROR', ['files.veil.test']],
    ['broken.veil.test', 'A', 'REFUSED', []],
    ['unknown.veil.test', 'A', 'REFUSED', []],
  ];
  for (const [name, type, rcode, data] of cases) {
    it(`${name} ${type} → ${rcode} ${data.join(' ')}`, async () => {
      const answer = await ask(name, type);
      assert.equal(answer.rcode, rcode);
      assert.deepEqual(answer.answers!.map((r: any) => r.data), data);
      if (data.length) assert.equal((answer.answers![0] as any).ttl, 60);
    });
  }

  it('warns about lines of the file it skipped', () => {
    assert.ok(veil.logs.some((l) => l.includes('plugin/hosts: hosts.txt: 1 line(s) are not "IP NAME…"')), veil.logs.join('\n'));
  });

  it('re-reads the file when it changes, keeping inline entries', async () => {
    writeFileSync(path.join(dir, 'hosts.txt'), '198.51.100.8 files.veil.test\n');
    const plugin = veil.server.config!.blocks[0]!.plugins.find((p) => p.name === 'hosts') as HostsPlugin;
    plugin.reloadIfChanged();
    assert.deepEqual((await ask('files.veil.test', 'A')).answers!.map((r: any) => r.data), ['198.51.100.8']);
    assert.deepEqual((await ask('web.veil.test', 'A')).answers!.map((r: any) => r.data), ['192.0.2.10']);
  });
});

describe('log', () => {
  it('writes one JSON line per query with the fields a person needs', async () => {
    const dir = makeTempDir();
    const veil = await startTestServer('. {\n  listen udp://127.0.0.1:0\n  log queries.log\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}', { registry: testRegistry(), file: path.join(dir, 'Corefile') });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }));
      await queryUdp(udp.host, udp.port, buildQuery('nope.veil.test', QType.AAAA, { id: 2 }));
    } finally {
      await veil.stop();
    }
    const lines = readFileSync(path.join(dir, 'queries.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    assert.deepEqual(
      lines.map((l) => [l.client, l.proto, l.name, l.type, l.rcode, l.flags, l.upstream]),
      [
        ['127.0.0.1', 'udp', 'web.veil.test.', 'A', 'NOERROR', 'qr aa rd ra', null],
        ['127.0.0.1', 'udp', 'nope.veil.test.', 'AAAA', 'REFUSED', 'qr rd ra', null],
      ],
    );
    for (const line of lines) {
      assert.equal(typeof line.duration_ms, 'number');
      assert.ok(!Number.isNaN(Date.parse(line.time)));
    }
  });

  it('logs only the classes asked for', async () => {
    const dir = makeTempDir();
    const veil = await startTestServer('. {\n  listen udp://127.0.0.1:0\n  log queries.log {\n    class error\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}', { registry: testRegistry(), file: path.join(dir, 'Corefile') });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }));
      await queryUdp(udp.host, udp.port, buildQuery('nope.veil.test', QType.A, { id: 2 }));
    } finally {
      await veil.stop();
    }
    const lines = readFileSync(path.join(dir, 'queries.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.name), ['nope.veil.test.']);
  });
});

describe('errors', () => {
  it('writes failures with the plugin name, and consolidates repetitive ones', async () => {
    const dir = makeTempDir();
    const veil = await startTestServer(
      '. {\n  listen udp://127.0.0.1:0\n  log queries.log\n  errors errors.log {\n    consolidate 1s "plugin/boom: noisy"\n  }\n  boom\n}',
      { registry: testRegistry(), file: path.join(dir, 'Corefile') },
    );
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      for (let i = 0; i < 3; i++) await queryUdp(udp.host, udp.port, buildQuery('noisy.test', QType.A, { id: i }));
      const answer = await queryUdp(udp.host, udp.port, buildQuery('other.test', QType.A, { id: 9 }));
      assert.equal(rcodeName(fullRcode(answer)), 'SERVFAIL');
      await new Promise((r) => setTimeout(r, 1300));
    } finally {
      await veil.stop();
    }
    const errors = readFileSync(path.join(dir, 'errors.log'), 'utf8');
    assert.match(errors, /^\[ERROR\] plugin\/boom: other\.test\. A: kaboom$/m);
    assert.doesNotMatch(errors, /noisy\.test\. A: kaboom/);
    assert.match(errors, /\[WARNING\] 3 errors like 'plugin\/boom: noisy' occurred in the last 1s/);
    // errors stands below log in the chain, so the log line shows the SERVFAIL the client got
    const lines = readFileSync(path.join(dir, 'queries.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.every((l) => l.rcode === 'SERVFAIL' && !l.error));
  });
});
