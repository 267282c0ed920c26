/**
 * Privacy guarantees that are a property of the upstream stage, whatever the upstream: EDNS
 * Client Subnet never leaves; DoT queries are padded; datagram sockets cannot resolve a host
 * name through the system. (The others have tests of their own, listed
 * in docs/privacy.md.)
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { EdnsOption, QType } from '../core/dns/constants.js';
import { buildQuery, ednsOption } from '../core/dns/message.js';
import { forEachEdnsOption, readEdns } from '../core/dns/wire.js';
import { ipLiteralLookup } from '../core/net/ip-lookup.js';
import { queryUdp } from '../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { startTestServer } from '../core/testing/server.js';
import { startFakeDot, type FakeDot } from './helpers/fake-dot.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

function optionCodes(msg: Buffer): number[] {
  const codes: number[] = [];
  const edns = readEdns(msg);
  if (edns) forEachEdnsOption(msg, edns, (code) => codes.push(code));
  return codes;
}

describe('privacy: EDNS Client Subnet never leaves', () => {
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

  // A client that sends its subnet (192.0.2.0/24) and a cookie.
  const ecs = ednsOption(EdnsOption.ECS, Buffer.from([0, 1, 24, 0, 192, 0, 2]));
  const cookie = ednsOption(EdnsOption.COOKIE, Buffer.alloc(8, 7));
  const query = () => buildQuery('www.veil.test', QType.A, { id: 9, edns: { options: Buffer.concat([ecs, cookie]) } });

  it('forward: the subnet is removed, other options stay', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n forward . 127.0.0.1:${plain.port}\n}`, { registry: testRegistry() });
    try {
      const { host, port } = veil.address('udp://127.0.0.1:0');
      await queryUdp(host, port, query());
      assert.equal(plain.queries.length, 1);
      assert.deepEqual(optionCodes(plain.queries[0]!.wire), [EdnsOption.COOKIE]);
    } finally {
      await veil.stop();
    }
  });

  it('dot: the subnet is removed and the query padded to 128 bytes', async () => {
    const veil = await startTestServer(
      `. {\n listen udp://127.0.0.1:0\n dot {\n  server up tls://127.0.0.1:${tls.port} {\n   server_name dns.test\n   ca ${certs.ca}\n  }\n }\n}`,
      { registry: testRegistry() },
    );
    try {
      const { host, port } = veil.address('udp://127.0.0.1:0');
      await queryUdp(host, port, query());
      assert.equal(tls.queries.length, 1);
      const sent = tls.queries[0]!.wire;
      assert.deepEqual(optionCodes(sent), [EdnsOption.COOKIE, EdnsOption.PADDING]);
      assert.equal(sent.length % 128, 0);
    } finally {
      await veil.stop();
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
