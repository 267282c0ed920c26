/**
 * ODoH end to end with three real `bin/veil` processes on loopback: a client (`odoh` upstream,
 * UDP listener), a relay on 127.0.0.2 (`odoh_relay`) and a target (`odoh_target`), over HTTP/2.
 * The target answers and its log shows only the relay's address; the relay's metrics count the
 * target and never the client.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';
import { makeTempDir, runVeil, startVeil, type VeilProcess } from '../../test/helpers/veil-process.js';
import { h2Call } from '../../test/helpers/doh-client.js';
import { HTTP2_IMPLEMENTATIONS } from '../../lib/http2/server.js';
import { parseConfigs } from '../../lib/odoh/configs.js';
import path from 'node:path';
import { readFileSync, statSync } from 'node:fs';

const firstA = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;

// The target and the relay on each HTTP/2 implementation a listener may use (`http2 veil|node`).
for (const implementation of HTTP2_IMPLEMENTATIONS) {
  describe(`ODoH: client → relay (127.0.0.2) → target, real processes (http2 ${implementation})`, () => {
    let certs: TestCerts;
    let target: VeilProcess;
    let relay: VeilProcess;
    let client: VeilProcess;
    let clientPort = 0;
    let targetPort = 0;
    let relayPort = 0;
    let keyDir = '';
    let keyId = '';

    before(async () => {
      certs = makeTestCerts();
      keyDir = makeTempDir();
      const keygen = await runVeil(['odoh', 'keygen', '--out', 'target.key', '--host', 'dns.test'], keyDir);
      assert.equal(keygen.code, 0, keygen.stderr);
      keyId = /key id ([0-9a-f]{64})/.exec(keygen.stdout)![1]!;
      target = await startVeil(`. {
      listen https://127.0.0.1:0/dns-query {
          http2 ${implementation}
          cert ${certs.chain}
          key ${certs.key}
          odoh_target ${path.join(keyDir, 'target.key')}
      }
      log
      hosts {
          192.0.2.7 hidden.odoh.test
      }
  }
  `);
      targetPort = target.address('https').port;
      relay = await startVeil(`. {
      listen https://127.0.0.2:0/proxy {
          http2 ${implementation}
          cert ${certs.chain}
          key ${certs.key}
          odoh_relay {
              target dns.test:${targetPort} 127.0.0.1
              allow_private
              ca ${certs.ca}
          }
      }
      metrics 127.0.0.2:0
  }
  `);
      relayPort = relay.address('https').port;
      client = await startVeil(`. {
      listen udp://127.0.0.1:0
      odoh {
          server t https://dns.test:${targetPort}/dns-query
          relay r https://dns.test:${relayPort}/proxy {
              bootstrap 127.0.0.2
              ca ${certs.ca}
          }
      }
  }
  `);
      clientPort = client.address('udp').port;
    });

    after(async () => {
      await client?.stop();
      await relay?.stop();
      await target?.stop();
      if (certs) rmSync(certs.dir, { recursive: true, force: true });
      if (keyDir) rmSync(keyDir, { recursive: true, force: true });
    });

    it('veil odoh keygen writes a key only its owner reads, and the target serves that key', async () => {
      assert.equal(statSync(path.join(keyDir, 'target.key')).mode & 0o777, 0o600);
      const configs = await h2Call(`https://127.0.0.1:${targetPort}`, { path: '/.well-known/odohconfigs' }, { ca: readFileSync(certs.ca, 'utf8') });
      assert.equal(parseConfigs(configs.body).usable[0]!.keyId.toString('hex'), keyId);
    });

    it('veil query --odoh asks through a relay', async () => {
      const r = await runVeil(
        ['query', '@127.0.0.2', 'hidden.odoh.test', 'A', '--odoh', `https://dns.test:${targetPort}/dns-query`, '--relay', `https://dns.test:${relayPort}/proxy`, '--ca', certs.ca, '--short'],
        keyDir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '192.0.2.7');
      const usage = await runVeil(['query', 'x.test', '--odoh', `https://dns.test:${targetPort}/dns-query`], keyDir);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--odoh needs --relay/);
    });

    it('answers through the relay', async () => {
      const answer = await queryUdp('127.0.0.1', clientPort, buildQuery('hidden.odoh.test', QType.A, { id: 77 }), 8000);
      assert.equal(answer.readUInt16BE(0), 77);
      assert.equal(firstA(answer), '192.0.2.7');
    });

    it("the target's log shows the relay's address, never the client's", async () => {
      const lines = target.stdout().split('\n').filter((l) => l.includes('hidden.odoh.test'));
      assert.ok(lines.length > 0);
      for (const line of lines) {
        assert.match(line, /127\.0\.0\.2/, line);
        assert.doesNotMatch(line, /127\.0\.0\.1\b/, line);
      }
    });

    it("the relay's metrics count by target, never by client", async () => {
      const base = /plugin\/metrics: serving (http:\/\/[\d.]+:\d+)/.exec(relay.stderr())![1]!;
      const text = await (await fetch(`${base}/metrics`)).text();
      const lines = text.split('\n').filter((l) => l.startsWith('veil_odoh_relay_requests_total{'));
      assert.ok(lines.some((l) => /event="forwarded",target="dns\.test"/.test(l) && !l.endsWith(' 0')), text);
      for (const line of lines) assert.doesNotMatch(line, /127\.0\.0\.1/, line);
    });
  });
}
