/**
 * A DNSCrypt server behind a firewall that drops fragmented UDP, reached through a relay: the
 * certificate probe finds it out (dnscrypt-proxy's rule), and then `skip_incompatible` leaves
 * it out, or, without it, relayed queries stay small enough for one datagram and large answers
 * come back truncated instead of never. The firewall is a UDP forwarder in front of Veil's
 * DNSCrypt listener that drops every datagram longer than an Ethernet frame's payload.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, Rcode } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { rcodeOf } from '../core/dns/wire.js';
import { queryTcp, queryUdp } from '../core/testing/client.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { LARGE_PROBE_SIZE, probeFragments, SMALL_PROBE_SIZE } from '../lib/dnscrypt/fragment-probe.js';
import { dnscryptStamp, makeProviderKeys, type ProviderKeys } from './helpers/dnscrypt.js';
import { freePort } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

const PROVIDER = '2.dnscrypt-cert.veil.test';
/** What fits one 1500-byte IPv4 frame: anything longer would be fragmented. */
const LARGEST_UNFRAGMENTED = 1472;

interface Firewall {
  port: number;
  dropped: number[];
  passed: number[];
  close(): Promise<void>;
}

/** Forwards datagrams to 127.0.0.1:target and back, dropping those a fragment filter would. */
async function startFirewall(target: number): Promise<Firewall> {
  const front = dgram.createSocket('udp4');
  const open = new Set<dgram.Socket>();
  const dropped: number[] = [];
  const passed: number[] = [];
  front.on('message', (msg, from) => {
    if (msg.length > LARGEST_UNFRAGMENTED) return void dropped.push(msg.length);
    passed.push(msg.length);
    const back = dgram.createSocket('udp4');
    open.add(back);
    const done = () => {
      clearTimeout(timer);
      open.delete(back);
      back.close();
    };
    const timer = setTimeout(done, 5000);
    back.on('message', (answer) => {
      if (answer.length <= LARGEST_UNFRAGMENTED) front.send(answer, from.port, from.address);
      done();
    });
    back.send(msg, target, '127.0.0.1');
  });
  await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', resolve));
  return {
    port: front.address().port,
    dropped,
    passed,
    close: async () => {
      for (const socket of open) socket.close();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    },
  };
}

describe('the fragment probe', () => {
  const attempts = (answered: (size: number) => boolean) => (size: number) =>
    answered(size) ? Promise.resolve(size) : new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`no answer to ${size}`)), 1000));

  it('a large query answered: fragments pass', async () => {
    const result = await probeFragments(attempts(() => true));
    assert.deepEqual(result, { value: LARGE_PROBE_SIZE, fragmentsBlocked: false });
  });

  it('only small queries answered: fragments are blocked', async () => {
    const result = await probeFragments(attempts((size) => size === SMALL_PROBE_SIZE));
    assert.deepEqual(result, { value: SMALL_PROBE_SIZE, fragmentsBlocked: true });
  });

  it('nothing answered: the last failure', async () => {
    await assert.rejects(probeFragments(attempts(() => false)), /no answer to 480/);
  });
});

describe('a relayed DNSCrypt server that drops fragmented UDP', () => {
  let keys: ProviderKeys;
  let resolver: TestServer;
  let firewall: Firewall;
  let relay: TestServer;
  let relayPort: number;
  let resolverPort: number;

  before(async () => {
    keys = makeProviderKeys();
    resolver = await startTestServer(
      `. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${PROVIDER}\n    key ${keys.keyFile}\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n  big 12\n}`,
      { registry: testRegistry() },
    );
    resolverPort = resolver.address('dnscrypt://127.0.0.1:0').port;
    firewall = await startFirewall(resolverPort);
    relayPort = await freePort();
    relay = await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${firewall.port} ${resolverPort}\n    allow_private\n  }\n}`, {
      registry: testRegistry(),
    });
  });
  after(async () => {
    await relay.stop();
    await firewall.close();
    await resolver.stop();
    keys.cleanup();
  });

  async function client(anonymizeOptions: string, serverPort = firewall.port) {
    const stamp = dnscryptStamp(`127.0.0.1:${serverPort}`, keys.publicKey, PROVIDER);
    const veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n  dnscrypt {\n    server walled ${stamp}\n  }\n  anonymize {\n    relay r 127.0.0.2:${relayPort}\n    route walled via r\n${anonymizeOptions}\n  }\n}`,
      { registry: testRegistry() },
    );
    const walled = veil.server.config!.blocks[0]!.upstreams.get('walled') as unknown as { refresh(): Promise<void>; usable: boolean };
    await walled.refresh();
    return { veil, walled, udp: veil.address('udp://127.0.0.1:0'), tcp: veil.address('tcp://127.0.0.1:0') };
  }

  it('found by the probe; still relayed, large answers come back truncated rather than never', async () => {
    firewall.dropped.length = 0;
    const c = await client('');
    try {
      assert.ok(firewall.dropped.includes(LARGE_PROBE_SIZE - 28), `the large probe was dropped: ${firewall.dropped.join(', ')}`);
      assert.ok(c.veil.logs.some((l) => /walled: drops fragmented UDP \(probed\); through relays its answers larger than 1152 bytes come back truncated/.test(l)), c.veil.logs.join('\n'));
      assert.equal(c.walled.usable, true);
      assert.ok(c.veil.logs.some((l) => /anonymize: walled via r$/.test(l)), 'one line says which relays the server goes through');
      const small = await queryUdp(c.udp.host, c.udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }), 5000);
      assert.equal((dnsPacket.decode(small).answers![0] as { data: string }).data, '192.0.2.10');
      const passedBefore = firewall.passed.length;
      const [big] = await queryTcp(c.tcp.host, c.tcp.port, [buildQuery('big.veil.test', QType.TXT, { id: 2 })], 5000);
      const decoded = dnsPacket.decode(big!);
      assert.equal(rcodeOf(big!), Rcode.NOERROR);
      assert.ok(decoded.flags! & 0x200, 'truncated (TC)');
      assert.equal(decoded.answers!.length, 0);
      assert.ok(firewall.passed.length > passedBefore, 'the relayed queries got through the firewall');
    } finally {
      await c.veil.stop();
    }
  });

  it('with skip_incompatible: left out, never reached directly', async () => {
    const c = await client('    skip_incompatible');
    try {
      assert.equal(c.walled.usable, false);
      assert.ok(c.veil.logs.some((l) => /walled: drops fragmented UDP \(probed\), so it is incompatible with relays; left out until the next refresh \(skip_incompatible\)/.test(l)), c.veil.logs.join('\n'));
      const answer = await queryUdp(c.udp.host, c.udp.port, buildQuery('web.veil.test', QType.A, { id: 3 }), 5000);
      assert.equal(rcodeOf(answer), Rcode.SERVFAIL);
    } finally {
      await c.veil.stop();
    }
  });

  it('without the firewall the probe finds nothing; fragments_blocked names it anyway', async () => {
    const open = await client('', resolverPort);
    try {
      assert.equal(open.walled.usable, true);
      assert.ok(!open.veil.logs.some((l) => /fragmented/.test(l)), open.veil.logs.join('\n'));
      const [big] = await queryTcp(open.tcp.host, open.tcp.port, [buildQuery('big.veil.test', QType.TXT, { id: 4 })], 5000);
      assert.equal((dnsPacket.decode(big!).answers![0] as { data: Buffer[] }).data.length, 12, 'the whole 2.4 KB answer');
    } finally {
      await open.veil.stop();
    }
    const named = await client('    fragments_blocked walled\n    skip_incompatible', resolverPort);
    try {
      assert.equal(named.walled.usable, false);
      assert.ok(named.veil.logs.some((l) => /walled: drops fragmented UDP \(fragments_blocked\)/.test(l)), named.veil.logs.join('\n'));
    } finally {
      await named.veil.stop();
    }
  });
});
