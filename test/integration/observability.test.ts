/**
 * The real `bin/veil` with metrics, health and trace: endpoints up, counts and spans for real
 * queries, the endpoints and counts kept across SIGHUP, spans flushed on SIGTERM, and
 * `veil check` binding nothing.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { SpanKindNumber, startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp.js';
import { makeTempDir, runVeil, startVeil } from '../helpers/veil-process.js';

const corefile = (origin: number, receiver: string, address = '192.0.2.10') => `. {
    listen udp://127.0.0.1:0
    metrics 127.0.0.1:0
    health 127.0.0.1:0
    trace {
        endpoint ${receiver}
        sample 1
    }
    hosts {
        ${address} web.veil.test
    }
    forward . 127.0.0.1:${origin}
}
`;

function endpoint(stderr: string, plugin: string): string {
  const m = new RegExp(`plugin/${plugin}: serving (http://[\\d.]+:\\d+)`).exec(stderr);
  assert.ok(m, `no ${plugin} endpoint in:\n${stderr}`);
  return m[1]!;
}

const requests = async (base: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = /^veil_dns_requests_total\{server=".",zone=".",proto="udp",type="A"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
};

describe('observability in the real process', () => {
  let origin: FakeDns;
  let receiver: OtlpReceiver;
  before(async () => {
    origin = await startFakeDns();
    receiver = await startOtlpReceiver('http/protobuf');
  });
  after(async () => {
    await origin.close();
    await receiver.close();
  });

  it('serves metrics, health and traces; keeps them across SIGHUP; flushes spans on SIGTERM', async () => {
    const veil = await startVeil(corefile(origin.port, receiver.url));
    try {
      const metrics = endpoint(veil.stderr(), 'metrics');
      const health = endpoint(veil.stderr(), 'health');
      const udp = veil.address('udp');
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }));
      await queryUdp(udp.host, udp.port, buildQuery('out.example', QType.A, { id: 2 }));
      assert.equal(await requests(metrics), 2);
      assert.equal((await fetch(`${health}/health`)).status, 200);
      assert.equal((await fetch(`${health}/ready`)).status, 200);
      await receiver.waitFor((spans) => spans.filter((s) => s.kind === SpanKindNumber.SERVER).length === 2);
      assert.ok(receiver.spans.some((s) => s.name === 'exchange 127.0.0.1:' + origin.port && s.service === 'veil'));

      writeFileSync(path.join(veil.dir, 'Corefile'), corefile(origin.port, receiver.url, '192.0.2.11'));
      veil.signal('SIGHUP');
      await veil.waitFor('reloaded configuration');
      await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 3 }));
      assert.equal(await requests(metrics), 3, 'the same endpoint, and the counts go on');
      assert.equal((await fetch(`${health}/ready`)).status, 200);

      veil.signal('SIGTERM');
      assert.equal(await veil.exited(), 0);
      await receiver.waitFor((spans) => spans.filter((s) => s.kind === SpanKindNumber.SERVER).length === 3);
      await assert.rejects(fetch(`${metrics}/metrics`), 'the endpoint is closed');
    } finally {
      await veil.stop();
    }
  });

  it('veil check builds metrics, health and trace without binding or connecting', async () => {
    const dir = makeTempDir({ Corefile: corefile(5300, 'http://127.0.0.1:4318/v1/traces').replaceAll('127.0.0.1:0', '127.0.0.1:1') });
    const result = await runVeil(['check', 'Corefile'], dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /plugins: {3}listen, metrics, health, trace, hosts, forward/);
    assert.doesNotMatch(result.stderr, /serving|tracing/);
  });
});
