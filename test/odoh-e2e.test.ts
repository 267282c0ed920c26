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
import { QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { queryUdp } from '../core/testing/client.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';
import { startVeil, type VeilProcess } from './helpers/veil-process.js';

const firstA = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;

describe('ODoH: client → relay (127.0.0.2) → target, real processes', () => {
  let certs: TestCerts;
  let target: VeilProcess;
  let relay: VeilProcess;
  let client: VeilProcess;
  let clientPort = 0;

  before(async () => {
    certs = makeTestCerts();
    target = await startVeil(`. {
    listen https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
        odoh_target
    }
    log
    hosts {
        192.0.2.7 hidden.odoh.test
    }
}
`);
    const targetPort = target.address('https').port;
    relay = await startVeil(`. {
    listen https://127.0.0.2:0/proxy {
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
    const relayPort = relay.address('https').port;
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
});
