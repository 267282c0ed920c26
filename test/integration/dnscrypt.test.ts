/**
 * The real program on every side: one `bin/veil` serves DNSCrypt with a key from
 * `veil dnscrypt keygen`, one is a relay on 127.0.0.2, and clients reach the first directly and
 * through the relay, over UDP and TCP.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { relayStamp } from '../helpers/dnscrypt.js';
import { freePort } from '../helpers/peers.js';
import { makeTempDir, runVeil, startVeil, type VeilProcess } from '../helpers/veil-process.js';

const firstData = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as { data?: unknown } | undefined)?.data;

describe('bin/veil: DNSCrypt listener, relay and clients', () => {
  let resolver: VeilProcess;
  let relay: VeilProcess;
  let stamp: string;
  let relayPort: number;
  const clients: VeilProcess[] = [];

  before(async () => {
    const port = await freePort();
    const keys = path.join(makeTempDir(), 'keys');
    const keygen = await runVeil(['dnscrypt', 'keygen', '--provider', '2.dnscrypt-cert.integration.test', '--out', keys, '--addr', `127.0.0.1:${port}`], keys.replace(/keys$/, ''));
    assert.equal(keygen.code, 0, keygen.stderr);
    stamp = keygen.stdout.trim().split('\n').at(-1)!;
    resolver = await startVeil(`. {
    listen dnscrypt://127.0.0.1:${port} {
        provider 2.dnscrypt-cert.integration.test
        key ${keys}/provider.key
    }
    hosts {
        192.0.2.77 secret.veil.test
    }
    log
}
`);
    relayPort = await freePort();
    relay = await startVeil(`. {
    listen relay://127.0.0.2:${relayPort} {
        allow_ports ${port}
        allow_private
    }
}
`);
  });
  after(async () => {
    for (const client of clients) await client.stop();
    await relay?.stop();
    await resolver?.stop();
  });

  async function client(anonymize: boolean, tcpOnly: boolean): Promise<VeilProcess> {
    const veil = await startVeil(`. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    dnscrypt {
        server veil ${stamp}
${tcpOnly ? '        tcp_only\n' : ''}    }
${anonymize ? `    anonymize {\n        relay r ${relayStamp(`127.0.0.2:${relayPort}`)}\n        route veil via r\n    }\n` : ''}    log
}
`);
    clients.push(veil);
    await veil.waitFor(/veil: certificate serial/);
    return veil;
  }

  for (const anonymize of [false, true]) {
    for (const tcpOnly of [false, true]) {
      it(`${anonymize ? 'through the relay' : 'directly'}, ${tcpOnly ? 'TCP' : 'UDP'}`, async () => {
        const veil = await client(anonymize, tcpOnly);
        const udp = veil.address('udp');
        const tcp = veil.address('tcp');
        assert.equal(firstData(await queryUdp(udp.host, udp.port, buildQuery('secret.veil.test', QType.A, { id: 41 }), 5000)), '192.0.2.77');
        const [answer] = await queryTcp(tcp.host, tcp.port, [buildQuery('secret.veil.test', QType.A, { id: 42 })], 5000);
        assert.equal(firstData(answer!), '192.0.2.77');
        // the resolver's log lines show where queries came from: the relay, or the client
        const from = anonymize ? '"client":"127.0.0.2"' : '"client":"127.0.0.1"';
        const proto = '"proto":"dnscrypt"';
        const started = Date.now();
        const lines = () => resolver.stdout().split('\n').filter((l) => l.includes('secret.veil.test') && l.includes(from) && l.includes(proto));
        while (lines().length < 2 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
        assert.ok(lines().length >= 2, resolver.stdout());
        if (anonymize) assert.match(veil.stdout(), /"relay":"r"/);
      });
    }
  }
});
