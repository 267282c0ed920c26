/**
 * `--workers N` / global `workers N`: several processes on the same addresses (SO_REUSEPORT),
 * reloaded and stopped together by signals to the supervisor.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { freePort } from '../helpers/peers.js';
import { makeTempDir, runVeil, startVeil } from '../helpers/veil-process.js';

const firstA = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as any)?.data;

/** Sockets bound to a UDP port, from /proc/net/udp (port in hex, column local_address). */
function udpSocketsOn(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/udp', 'utf8').split('\n').filter((line) => line.trim().split(/\s+/)[1]?.endsWith(`:${hex}`)).length;
}

describe('workers', () => {
  it('two workers share the port, both reload on SIGHUP, and stop on SIGTERM', async () => {
    const port = await freePort();
    const corefile = (ip: string) => `{\n    workers 2\n}\n\n. {\n    listen udp://127.0.0.1:${port} tcp://127.0.0.1:${port}\n    hosts {\n        ${ip} web.veil.test\n    }\n}\n`;
    const veil = await startVeil(corefile('192.0.2.10'));
    try {
      await veil.waitFor(/worker \d: \[INFO\] veil .* serving/, 15000, 2);
      assert.equal(udpSocketsOn(port), 2, 'two sockets on the port');
      for (let i = 0; i < 20; i++) {
        assert.equal(firstA(await queryUdp('127.0.0.1', port, buildQuery('web.veil.test', QType.A, { id: i }))), '192.0.2.10');
      }
      const [tcp] = await queryTcp('127.0.0.1', port, [buildQuery('web.veil.test', QType.A, { id: 99 })]);
      assert.equal(firstA(tcp!), '192.0.2.10');

      writeFileSync(path.join(veil.dir, 'Corefile'), corefile('192.0.2.11'));
      veil.signal('SIGHUP');
      await veil.waitFor(/worker \d: \[INFO\] reloaded configuration/, 15000, 2);
      for (let i = 0; i < 20; i++) {
        assert.equal(firstA(await queryUdp('127.0.0.1', port, buildQuery('web.veil.test', QType.A, { id: i }))), '192.0.2.11');
      }
      veil.signal('SIGTERM');
      assert.equal(await veil.exited(), 0);
      assert.equal(udpSocketsOn(port), 0, 'every worker is gone');
    } finally {
      await veil.stop();
    }
  });

  it('metrics and health are served once, by the supervisor, with every worker counted', async () => {
    const [port, metricsPort, healthPort] = [await freePort(), await freePort(), await freePort()];
    const workers = await startVeil(
      `{\n    workers 2\n}\n. {\n    listen udp://127.0.0.1:${port}\n    metrics 127.0.0.1:${metricsPort}\n    health 127.0.0.1:${healthPort}\n    hosts {\n        192.0.2.10 web.veil.test\n    }\n}\n`,
    );
    try {
      await workers.waitFor(/worker \d: \[INFO\] veil .* serving/, 15000, 2);
      // Fresh sockets each time: the kernel spreads them over both workers.
      for (let i = 0; i < 40; i++) assert.equal(firstA(await queryUdp('127.0.0.1', port, buildQuery('web.veil.test', QType.A, { id: i }))), '192.0.2.10');
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const total = [...text.matchAll(/^veil_dns_requests_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
      assert.equal(total, 40, text);
      assert.equal((text.match(/^# TYPE veil_dns_requests_total counter$/gm) ?? []).length, 1);
      const health = await fetch(`http://127.0.0.1:${healthPort}/health`);
      assert.equal(health.status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${healthPort}/ready`)).status, 200);
    } finally {
      await workers.stop();
    }
  });

  it('refuses port 0 with several workers, before starting any', async () => {
    const dir = makeTempDir({ Corefile: '. {\n    listen udp://127.0.0.1:0\n    hosts {\n        192.0.2.1 a.test\n    }\n}\n' });
    const result = await runVeil(['-conf', 'Corefile', '--workers', '3'], dir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /udp:\/\/127\.0\.0\.1:0: with 3 workers every listener needs a fixed port/);
  });

  it('checks the global block like any other', async () => {
    const dir = makeTempDir({ Corefile: '{\n    workers 0\n    wrokers 2\n}\n. {\n    listen udp://127.0.0.1:0\n}\n' });
    const result = await runVeil(['check', 'Corefile'], dir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^Corefile:2:13: global: 0 is out of range \(1-64\)/m);
    const dir2 = makeTempDir({ Corefile: '{\n    wrokers 2\n}\n. {\n    listen udp://127.0.0.1:0\n}\n' });
    assert.match((await runVeil(['check', 'Corefile'], dir2)).stderr, /^Corefile:2:5: global: unknown option "wrokers" \(did you mean "workers"\?\)/m);
  });
});
