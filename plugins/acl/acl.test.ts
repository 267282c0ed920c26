import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { ManualClock, SystemClock } from '../../core/clock.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { createDispatcher } from '../../core/dispatch.js';
import { MemoryLogger } from '../../core/logger.js';
import { buildConfig } from '../../core/server.js';
import { queryTcp, sendUdpRaw } from '../../core/testing/client.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { clientKey } from '../ratelimit/index.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const HOSTS = 'hosts {\n  192.0.2.10 web.veil.test\n }';
const rcode = (wire: Buffer | null) => (wire ? (dnsPacket.decode(wire) as { rcode?: string }).rcode : 'no answer');

/** One UDP query from a chosen source address on loopback; null when nothing comes back. */
const askFrom = (source: string, port: number, id = 1): Promise<Buffer | null> => sendUdpRaw('127.0.0.1', port, buildQuery('web.veil.test', QType.A, { id }), 400, source);

describe('access policy: the default admits loopback and private addresses only', () => {
  async function dispatcherFor(inner: string) {
    const built = buildConfig(parseCorefileText(`. {\n listen udp://127.0.0.1:0\n ${inner}\n}`, 'Corefile'), {
      registry: testRegistry(),
      logger: new MemoryLogger(),
      clock: new SystemClock(),
    });
    return createDispatcher([...built.listeners.values()][0]!.routes, new SystemClock());
  }
  const from = (address: string) => ({ client: { address, port: 5353, family: address.includes(':') ? ('IPv6' as const) : ('IPv4' as const) }, transport: 'udp', datagram: true });

  it('without acl: public addresses are refused, local and private ones answered', async () => {
    const dispatch = await dispatcherFor(HOSTS);
    const query = buildQuery('web.veil.test', QType.A, { id: 3 });
    for (const address of ['203.0.113.5', '8.8.8.8', '2001:db8::5']) assert.equal(rcode(await dispatch(query, from(address))), 'REFUSED', address);
    for (const address of ['127.0.0.1', '10.1.2.3', '192.168.1.5', '172.20.0.1', '::1', 'fd00::5', '::ffff:192.168.1.5', '169.254.1.1', 'fe80::1']) {
      assert.equal(rcode(await dispatch(query, from(address))), 'NOERROR', address);
    }
  });

  it('issue 24 low: without acl, the carrier NAT range (100.64/10) is not private: refused', async () => {
    const dispatch = await dispatcherFor(HOSTS);
    const query = buildQuery('web.veil.test', QType.A, { id: 3 });
    for (const address of ['100.64.0.1', '100.127.255.254', '::ffff:100.100.1.1']) assert.equal(rcode(await dispatch(query, from(address))), 'REFUSED', address);
  });

  it('acl rules come first, in order; the default still applies to addresses they do not name', async () => {
    const dispatch = await dispatcherFor(`acl {\n  allow 203.0.113.0/24\n  deny 10.0.0.0/8\n }\n ${HOSTS}`);
    const query = buildQuery('web.veil.test', QType.A, { id: 3 });
    assert.equal(rcode(await dispatch(query, from('203.0.113.5'))), 'NOERROR');
    assert.equal(rcode(await dispatch(query, from('10.1.2.3'))), 'REFUSED');
    assert.equal(rcode(await dispatch(query, from('192.168.1.5'))), 'NOERROR');
    assert.equal(rcode(await dispatch(query, from('198.51.100.1'))), 'REFUSED');
    const open = await dispatcherFor(`acl {\n  allow *\n }\n ${HOSTS}`);
    assert.equal(rcode(await open(query, from('198.51.100.1'))), 'NOERROR');
  });
});

describe('the door before the question (QueryHandler.admitClient, for DNSCrypt and relays)', () => {
  it('passes a client any block of the listener admits; a query paid for there pays no second token', async () => {
    const corefile = `a.test {\n listen udp://127.0.0.1:0\n acl {\n  deny 127.0.0.2\n }\n hosts {\n  192.0.2.1 web.a.test\n }\n}\nb.test {\n listen udp://127.0.0.1:0\n ratelimit 1 1\n hosts {\n  192.0.2.2 web.b.test\n }\n}`;
    const clock = new ManualClock();
    const built = buildConfig(parseCorefileText(corefile, 'Corefile'), { registry: testRegistry(), logger: new MemoryLogger(), clock });
    const dispatch = createDispatcher([...built.listeners.values()][0]!.routes, clock);
    const from = (address: string) => ({ client: { address, port: 5353, family: 'IPv4' as const }, transport: 'dnscrypt', datagram: true });
    const door = dispatch.admitClient!(from('127.0.0.2'));
    assert.ok(door, 'b.test admits it');
    // b.test's only token was taken at the door: the query still goes through
    assert.equal(rcode(await dispatch(buildQuery('web.b.test', QType.A, { id: 1 }), { ...from('127.0.0.2'), door })), 'NOERROR');
    assert.equal(rcode(await dispatch(buildQuery('web.a.test', QType.A, { id: 2 }), { ...from('127.0.0.2'), door })), 'REFUSED', 'a.test still refuses it');
    assert.equal(dispatch.admitClient!(from('127.0.0.2')), null, 'b.test has no token left, a.test refuses: turned away');
    assert.ok(dispatch.admitClient!(from('127.0.0.3')), 'another client');
    clock.advance(1000);
    assert.ok(dispatch.admitClient!(from('127.0.0.2')), 'a token back a second later');
  });
});

describe('acl over real sockets', () => {
  let veil: TestServer;
  afterEach(() => veil?.stop());

  it('refuses a denied source (127.0.0.2) and answers an allowed one', async () => {
    veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n acl {\n  deny 127.0.0.2\n  allow 127.0.0.0/8\n }\n ${HOSTS}\n}`, { registry: testRegistry() });
    const { port } = veil.address('udp://127.0.0.1:0');
    assert.equal(rcode(await askFrom('127.0.0.2', port)), 'REFUSED');
    assert.equal(rcode(await askFrom('127.0.0.1', port)), 'NOERROR');
    assert.equal(rcode(await askFrom('127.0.0.3', port)), 'NOERROR');
  });
});

describe('ratelimit', () => {
  let veil: TestServer;
  afterEach(() => veil?.stop());

  it('lets BURST queries through, then drops UDP and refuses TCP until tokens come back', async () => {
    const clock = new ManualClock();
    veil = await startTestServer(`. {\n listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n ratelimit 2 3\n ${HOSTS}\n}`, { registry: testRegistry(), clock });
    const udp = veil.address('udp://127.0.0.1:0').port;
    const tcp = veil.address('tcp://127.0.0.1:0').port;
    for (let i = 0; i < 3; i++) assert.equal(rcode(await askFrom('127.0.0.1', udp, i)), 'NOERROR', `query ${i + 1} of the burst`);
    assert.equal(await askFrom('127.0.0.1', udp, 9), null, 'over the rate on UDP: no answer at all');
    const [refused] = await queryTcp('127.0.0.1', tcp, [buildQuery('web.veil.test', QType.A, { id: 10 })]);
    assert.equal(rcode(refused!), 'REFUSED');
    assert.equal(rcode(await askFrom('127.0.0.2', udp, 11)), 'NOERROR', 'another client has its own bucket');
    clock.advance(1000);
    assert.equal(rcode(await askFrom('127.0.0.1', udp, 12)), 'NOERROR', 'a second later, two more');
    assert.equal(rcode(await askFrom('127.0.0.1', udp, 13)), 'NOERROR');
    assert.equal(await askFrom('127.0.0.1', udp, 14), null);
    assert.equal(veil.logs.filter((l) => /over 2 queries per second/.test(l)).length, 1, 'logged once');
  });

  it('counts a network as one client with ipv4_prefix and ipv6_prefix', () => {
    const prefixes = { ipv4Prefix: 24, ipv6Prefix: 56 };
    assert.equal(clientKey('192.0.2.77', prefixes), '192.0.2.0/24');
    assert.equal(clientKey('::ffff:192.0.2.77', prefixes), '192.0.2.0/24');
    assert.equal(clientKey('2001:db8:1:2ff:1::1', prefixes), '2001:db8:1:200/56');
    assert.equal(clientKey('192.0.2.77', { ipv4Prefix: 32, ipv6Prefix: 128 }), '192.0.2.77');
  });
});
