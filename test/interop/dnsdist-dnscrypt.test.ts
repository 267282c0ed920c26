/**
 * Veil's DNSCrypt client and relay against an independent DNSCrypt server: dnsdist 1.7 with
 * `addDNSCryptBind`, forwarding to unbound. Quirks of that dnsdist: it does not serve its
 * certificate over TCP (Veil takes it over UDP), and it drops DNSCrypt TCP queries with more
 * than 256 bytes of padding (so relayed TCP is tested against Veil's own listener elsewhere).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import type { RequestContext } from '../../core/context.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { isTruncated } from '../../core/dns/wire.js';
import { queryDone } from '../../core/events.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import type { DnscryptUpstream } from '../../plugins/dnscrypt/upstream.js';
import { createBuiltinRegistry } from '../../plugins/index.js';
import { generateMinisignKey, signMinisign } from '../../lib/minisign.js';
import { dnscryptStamp, relayStamp } from '../helpers/dnscrypt.js';
import { freePort, skipUnless, startDnsdist, startUnboundOrigin, type Dnsdist, type Peer } from '../helpers/peers.js';

const PROVIDER = '2.dnscrypt-cert.dns.test';
const skip = skipUnless('dnsdist', 'unbound');
const decode = (b: Buffer) => dnsPacket.decode(b);
const firstData = (b: Buffer) => (decode(b).answers?.[0] as { data?: unknown } | undefined)?.data;

async function veilClient(stamp: string, extra = ''): Promise<{ veil: TestServer; udp: { host: string; port: number } }> {
  const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server dnsdist ${stamp}\n  }\n${extra}}`, { registry: createBuiltinRegistry() });
  return { veil, udp: veil.address('udp://127.0.0.1:0') };
}

describe('Veil against dnsdist’s DNSCrypt front-end', { skip }, () => {
  let origin: Peer;
  let both: Dnsdist;
  let xsalsaOnly: Dnsdist;

  before(async () => {
    origin = await startUnboundOrigin();
    both = await startDnsdist({ backendPort: origin.port, dnscrypt: { providerName: PROVIDER }, queryLog: true });
    xsalsaOnly = await startDnsdist({ backendPort: origin.port, dnscrypt: { providerName: PROVIDER, esVersions: [1] } });
  });
  after(async () => {
    await both?.stop();
    await xsalsaOnly?.stop();
    await origin?.stop();
  });

  it('es-version 2 (XChaCha20): dnsdist’s serial-2 certificate is chosen, and answers come through', async () => {
    const client = await veilClient(dnscryptStamp(`127.0.0.1:${both.ports.dnscrypt}`, both.providerKey!, PROVIDER));
    try {
      const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('lab.test', QType.MX, { id: 31 }), 8000);
      assert.deepEqual((decode(answer).answers![0] as { data: unknown }).data, { preference: 10, exchange: 'mail.lab.test' });
      const upstream = client.veil.server.config!.blocks[0]!.upstreams.get('dnsdist') as DnscryptUpstream;
      assert.deepEqual([upstream.certificate!.serial, upstream.certificate!.esVersion], [2, 2]);
    } finally {
      await client.veil.stop();
    }
  });

  it('es-version 1 (XSalsa20) when that is all the server offers', async () => {
    const client = await veilClient(dnscryptStamp(`127.0.0.1:${xsalsaOnly.ports.dnscrypt}`, xsalsaOnly.providerKey!, PROVIDER));
    try {
      const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('anything.example', QType.A, { id: 32 }), 8000);
      assert.equal(firstData(answer), '203.0.113.1');
      const upstream = client.veil.server.config!.blocks[0]!.upstreams.get('dnsdist') as DnscryptUpstream;
      assert.equal(upstream.certificate!.esVersion, 1);
    } finally {
      await client.veil.stop();
    }
  });

  it('big.lab.test TXT: truncated over UDP, whole through the DNSCrypt TCP retry', async () => {
    const client = await veilClient(dnscryptStamp(`127.0.0.1:${both.ports.dnscrypt}`, both.providerKey!, PROVIDER), '  listen tcp://127.0.0.1:0\n');
    try {
      const tcp = client.veil.address('tcp://127.0.0.1:0');
      const [answer] = await queryTcp(tcp.host, tcp.port, [buildQuery('big.lab.test', QType.TXT, { id: 33 })], 8000);
      assert.equal(isTruncated(answer!), false);
      assert.equal(decode(answer!).answers!.length, 16);
    } finally {
      await client.veil.stop();
    }
  });

  it('Veil client → Veil relay on 127.0.0.2 → dnsdist: answered, and dnsdist sees only the relay', async () => {
    const relayPort = await freePort();
    const relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${both.ports.dnscrypt}\n    allow_private\n  }\n}`, { registry: createBuiltinRegistry() });
    const client = await veilClient(
      dnscryptStamp(`127.0.0.1:${both.ports.dnscrypt}`, both.providerKey!, PROVIDER),
      `  anonymize {\n    relay r1 ${relayStamp(`127.0.0.2:${relayPort}`)}\n    route * via r1\n  }\n`,
    );
    const relays: Array<string | undefined> = [];
    const onDone = ({ ctx }: { ctx: RequestContext }) => {
      if (ctx.name === 'via-relay.example.') relays.push(ctx.meta.relay);
    };
    queryDone.subscribe(onDone);
    try {
      const answer = await queryUdp(client.udp.host, client.udp.port, buildQuery('via-relay.example', QType.A, { id: 34 }), 8000);
      assert.equal(firstData(answer), '203.0.113.1');
      assert.deepEqual(relays, ['r1']);
      const upstream = client.veil.server.config!.blocks[0]!.upstreams.get('dnsdist') as DnscryptUpstream;
      assert.equal(upstream.relay, 'r1');
      // dnsdist logs the source of every query it decrypted
      const lines = both.queryLog().split('\n').filter((l) => l.includes('via-relay.example'));
      assert.equal(lines.length, 1, both.queryLog());
      assert.match(lines[0]!, /^Packet from 127\.0\.0\.2:\d+ for via-relay\.example\. A /);
      assert.doesNotMatch(both.queryLog(), /127\.0\.0\.1:\d+ for via-relay/);
    } finally {
      queryDone.unsubscribe(onDone);
      await client.veil.stop();
      await relay.stop();
    }
  });

  it('by names only, from a signed list: dnscrypt { server lab } and anonymize { route lab via relay-a } answer through dnsdist via the relay', async () => {
    const relayPort = await freePort();
    const relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${both.ports.dnscrypt}\n    allow_private\n  }\n}`, { registry: createBuiltinRegistry() });
    const key = generateMinisignKey(Buffer.alloc(32, 5), Buffer.from('b1b2b3b4b5b6b7b8', 'hex'));
    const list = `# a list signed with a key made for this test\n\n## lab\n\ndnsdist\n${dnscryptStamp(`127.0.0.1:${both.ports.dnscrypt}`, both.providerKey!, PROVIDER)}\n\n## relay-a\n\nVeil's relay\n${relayStamp(`127.0.0.2:${relayPort}`)}\n`;
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-names-'));
    writeFileSync(path.join(dir, 'resolvers.md'), list);
    writeFileSync(path.join(dir, 'resolvers.md.minisig'), signMinisign(Buffer.from(list), key, 'timestamp:1 file:resolvers.md'));
    const client = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  sources {\n    list public resolvers.md {\n      minisign_key ${key.publicKey}\n    }\n  }\n  dnscrypt {\n    server lab\n  }\n  anonymize {\n    relay relay-a\n    route lab via relay-a\n  }\n}`,
      { registry: createBuiltinRegistry(), file: path.join(dir, 'Corefile') },
    );
    try {
      const udp = client.address('udp://127.0.0.1:0');
      let answer: Buffer | null = null;
      // The certificate is fetched once the list has named the server: allow it a moment.
      for (let i = 0; i < 50 && !answer; i++) {
        const attempt = await queryUdp(udp.host, udp.port, buildQuery('by-name.example', QType.A, { id: 40 + i }), 3000);
        if ((attempt[3]! & 0x0f) === 0) answer = attempt;
        else await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(answer, client.logs.join('\n'));
      assert.equal(firstData(answer), '203.0.113.1');
      const lines = both.queryLog().split('\n').filter((l) => l.includes('by-name.example'));
      assert.ok(lines.length >= 1, both.queryLog());
      for (const line of lines) assert.match(line, /^Packet from 127\.0\.0\.2:\d+ for by-name\.example\. A /);
    } finally {
      await client.stop();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
