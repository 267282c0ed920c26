/**
 * Privacy guarantees that are a property of the upstream stage, whatever the upstream: no EDNS
 * option of the client leaves (Client Subnet, cookies, ...); DoT queries are padded; datagram sockets cannot resolve a host
 * name through the system. (The others have tests of their own, listed
 * in docs/privacy.md.)
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import { after, before, describe, it } from 'node:test';
import { EdnsOption, QType } from '../core/dns/constants.js';
import { buildQuery, ednsOption } from '../core/dns/message.js';
import { forEachEdnsOption, readEdns } from '../core/dns/wire.js';
import { ipLiteralLookup } from '../core/net/ip-lookup.js';
import { queryUdp } from '../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import type { RequestContext } from '../core/context.js';
import { queryDone } from '../core/events.js';
import { dnscryptStamp, makeProviderKeys, relayStamp } from './helpers/dnscrypt.js';
import { startFakeDot, type FakeDot } from './helpers/fake-dot.js';
import { freePort, makeTestCerts, type TestCerts } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';
import { startVeil } from './helpers/veil-process.js';

function optionCodes(msg: Buffer): number[] {
  const codes: number[] = [];
  const edns = readEdns(msg);
  if (edns) forEachEdnsOption(msg, edns, (code) => codes.push(code));
  return codes;
}

describe('privacy: no client EDNS option leaves', () => {
  let certs: TestCerts;
  let plain: FakeDns;
  let tls: FakeDot;
  before(async () => {
    certs = makeTestCerts();
    plain = await startFakeDns();
    tls = await startFakeDot({ cert: certs.chain, key: certs.key });
  });
  after(async () => {
    await plain.close();
    await tls.close();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  // A client that sends its subnet (192.0.2.0/24), a cookie and an NSID request, and says it
  // takes 4096-byte answers.
  const ecs = ednsOption(EdnsOption.ECS, Buffer.from([0, 1, 24, 0, 192, 0, 2]));
  const cookie = ednsOption(EdnsOption.COOKIE, Buffer.alloc(8, 7));
  const nsid = ednsOption(3, Buffer.alloc(0));
  const query = () => buildQuery('www.veil.test', QType.A, { id: 9, edns: { options: Buffer.concat([ecs, cookie, nsid]), udpSize: 4096, dnssecOk: true } });

  it('issue 24 low: forward (bin/veil): no client option goes upstream, DO stays, buffer size at most 1232', async () => {
    const veil = await startVeil(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${plain.port}\n}\n`);
    try {
      plain.queries.length = 0;
      const { host, port } = veil.address('udp');
      await queryUdp(host, port, query());
      assert.equal(plain.queries.length, 1);
      const sent = plain.queries[0]!.wire;
      assert.deepEqual(optionCodes(sent), []);
      assert.equal(readEdns(sent)!.udpSize, 1232);
      assert.equal(readEdns(sent)!.dnssecOk, true);
    } finally {
      await veil.stop();
    }
  });

  it('dot: no client option goes upstream; the query is padded to 128 bytes', async () => {
    const veil = await startTestServer(
      `. {\n listen udp://127.0.0.1:0\n dot {\n  server up tls://127.0.0.1:${tls.port} {\n   server_name dns.test\n   ca ${certs.ca}\n  }\n }\n}`,
      { registry: testRegistry() },
    );
    try {
      const { host, port } = veil.address('udp://127.0.0.1:0');
      await queryUdp(host, port, query());
      assert.equal(tls.queries.length, 1);
      const sent = tls.queries[0]!.wire;
      assert.deepEqual(optionCodes(sent), [EdnsOption.PADDING]);
      assert.equal(sent.length % 128, 0);
    } finally {
      await veil.stop();
    }
  });

  it('issue 24 low: Anonymized DNSCrypt: the resolver behind the relay sees none of the client\'s options', async () => {
    const keys = makeProviderKeys();
    const provider = '2.dnscrypt-cert.veil.test';
    const seen: Buffer[] = [];
    const watch = ({ ctx }: { ctx: RequestContext }) => {
      if (ctx.transport === 'dnscrypt') seen.push(Buffer.from(ctx.query));
    };
    queryDone.subscribe(watch);
    const servers: TestServer[] = [];
    try {
      const resolver = await startTestServer(
        `. {\n  listen dnscrypt://127.0.0.1:0 {\n    provider ${provider}\n    key ${keys.keyFile}\n  }\n  hosts {\n    192.0.2.10 www.veil.test\n  }\n}`,
        { registry: testRegistry() },
      );
      servers.push(resolver);
      const resolverPort = resolver.address('dnscrypt://127.0.0.1:0').port;
      const relayPort = await freePort();
      servers.push(await startTestServer(`. {\n  listen relay://127.0.0.2:${relayPort} {\n    allow_ports ${resolverPort}\n    allow_private\n  }\n}`, { registry: testRegistry() }));
      const client = await startTestServer(
        `. {\n  listen udp://127.0.0.1:0\n  dnscrypt {\n    server resolver ${dnscryptStamp(`127.0.0.1:${resolverPort}`, keys.publicKey, provider)}\n  }\n  anonymize {\n    relay r1 ${relayStamp(`127.0.0.2:${relayPort}`)}\n    route resolver via r1\n  }\n}`,
        { registry: testRegistry() },
      );
      servers.push(client);
      const { host, port } = client.address('udp://127.0.0.1:0');
      const answer = dnsPacket.decode(await queryUdp(host, port, query()));
      assert.equal((answer.answers?.[0] as { data?: unknown } | undefined)?.data, '192.0.2.10', 'answered through the relay');
      assert.equal(seen.length, 1);
      assert.deepEqual(optionCodes(seen[0]!), [], 'the resolver got the query without ECS, cookie or NSID');
    } finally {
      queryDone.unsubscribe(watch);
      for (const server of servers.reverse()) await server.stop();
      keys.cleanup();
    }
  });
});

describe('privacy: datagram sockets take IP addresses only', () => {
  it('an IP literal is answered at once; a host name is an error, never a system lookup', () => {
    const seen: Array<[string | null, string, number]> = [];
    ipLiteralLookup('192.0.2.1', 4, (err, address, family) => seen.push([err?.code ?? null, address, family]));
    ipLiteralLookup('2001:db8::1', 6, (err, address, family) => seen.push([err?.code ?? null, address, family]));
    ipLiteralLookup('resolver.example', 4, (err, address, family) => seen.push([err?.code ?? null, address, family]));
    assert.deepEqual(seen, [
      [null, '192.0.2.1', 4],
      [null, '2001:db8::1', 6],
      ['EINVAL', '', 0],
    ]);
  });

  it('a UDP socket made with it refuses to send to a host name', async () => {
    const socket = dgram.createSocket({ type: 'udp4', lookup: ipLiteralLookup });
    try {
      const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => socket.send(Buffer.from([0]), 53, 'localhost', resolve));
      assert.match(String(error?.message), /localhost is not an IP address/);
    } finally {
      socket.close();
    }
  });
});
