/**
 * Issue 24 (security review), the DNSCrypt findings, reproduced against the real `bin/veil`
 * with raw packets from several loopback addresses:
 *
 * - finding 5: a key exchange per packet before any acl or ratelimit. A client outside the acl
 *   or over its rate now costs no crypto at all, and fresh client keys have a budget per client.
 * - low: certificate answers over UDP larger than the query (amplification).
 * - finding 8: one client flooding a silent host through a relay held every place of the relay;
 *   and the relay carried any payload of 81 bytes or more.
 *
 * The listener's key exchanges are read from `veil_dnscrypt_key_exchanges_total`, its drops
 * from `veil_dns_rejected_total`, the relay's from `veil_relay_dropped_total`.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { padMessage } from '../../core/dns/edns.js';
import { buildQuery } from '../../core/dns/message.js';
import { isTruncated } from '../../core/dns/wire.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { buildCertQuery, certificatesFromAnswer } from '../../lib/dnscrypt/cert-query.js';
import { selectCertificate, type Certificate } from '../../lib/dnscrypt/certificate.js';
import { RESOLVER_MAGIC } from '../../lib/dnscrypt/constants.js';
import { sharedKey, x25519KeyPair } from '../../lib/dnscrypt/crypto.js';
import { decryptResponse, encryptQuery, type ClientKeys } from '../../lib/dnscrypt/packet.js';
import { relayHeader } from '../../lib/dnscrypt/relay-header.js';
import { makeProviderKeys, type ProviderKeys } from '../helpers/dnscrypt.js';
import { startVeil, type VeilProcess } from '../helpers/veil-process.js';

const PROVIDER = '2.dnscrypt-cert.abuse.test';
const firstData = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as { data?: unknown } | undefined)?.data;

function metricsEndpoint(veil: VeilProcess): string {
  const m = /plugin\/metrics: serving (http:\/\/[\d.]+:\d+)/.exec(veil.stderr());
  assert.ok(m, `no metrics endpoint in:\n${veil.stderr()}`);
  return m[1]!;
}

/** The sum of a metric's series whose labels include `labels`. */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Waits (a bound, not an assertion) until `condition` holds; returns whether it did. */
async function until(condition: () => Promise<boolean> | boolean, timeoutMs = 8000): Promise<boolean> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return condition();
}

/** A UDP socket on a loopback address of its own: sends many packets, keeps what comes back. */
async function clientAt(address: string): Promise<{ send(packet: Buffer, port: number, host?: string): void; answers: Buffer[]; close(): void }> {
  const socket = dgram.createSocket('udp4');
  const answers: Buffer[] = [];
  socket.on('message', (msg) => answers.push(msg));
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return { send: (packet, port, host = '127.0.0.1') => socket.send(packet, port, host), answers, close: () => socket.close() };
}

/** The listener's certificate, asked for from 127.0.0.1. */
async function certificateOf(port: number, keys: ProviderKeys): Promise<Certificate> {
  const query = buildCertQuery(PROVIDER, 0x4242);
  const certs = certificatesFromAnswer(query, await queryUdp('127.0.0.1', port, query, 3000));
  return selectCertificate(certs, keys.publicKey, Math.floor(Date.now() / 1000)).chosen!;
}

/** A valid encrypted query under a client key of its own (a fresh key exchange for the server). */
function freshKeyQuery(cert: Certificate, id: number): { packet: Buffer; keys: ClientKeys; nonce: Buffer } {
  const pair = x25519KeyPair();
  const keys: ClientKeys = { esVersion: cert.esVersion, clientMagic: cert.clientMagic, clientPublicKey: pair.publicKey, sharedKey: sharedKey(cert.esVersion, pair.secretKey, cert.resolverPublicKey)! };
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(id, 0);
  return { packet: encryptQuery(keys, nonce, buildQuery('web.abuse.test', QType.A, { id }), 256), keys, nonce };
}

async function startResolver(keys: ProviderKeys, listenerOptions: string, blockLines: string): Promise<{ veil: VeilProcess; port: number; metrics: string }> {
  const veil = await startVeil(`. {
    listen dnscrypt://127.0.0.1:0 {
        provider ${PROVIDER}
        key ${keys.keyFile}
${listenerOptions}
    }
${blockLines}
    hosts {
        192.0.2.24 web.abuse.test
    }
    metrics 127.0.0.1:0
}
`);
  return { veil, port: veil.address('dnscrypt').port, metrics: metricsEndpoint(veil) };
}

describe('bin/veil DNSCrypt listener: no crypto before the door', () => {
  let keys: ProviderKeys;
  let resolver: { veil: VeilProcess; port: number; metrics: string };
  let cert: Certificate;
  const exchanges = () => metric(resolver.metrics, 'veil_dnscrypt_key_exchanges_total');
  const rejected = (reason: string) => metric(resolver.metrics, 'veil_dns_rejected_total', { proto: 'dnscrypt', reason });

  before(async () => {
    keys = makeProviderKeys();
    // 127.0.0.2 is outside the acl; every client has 5 queries, then 1 a second.
    resolver = await startResolver(keys, '', '    acl {\n        deny 127.0.0.2\n        allow 127.0.0.0/8\n    }\n    ratelimit 1 5');
    cert = await certificateOf(resolver.port, keys);
  });
  after(async () => {
    await resolver?.veil.stop();
    keys?.cleanup();
  });

  it('issue 24 finding 5: a client outside the acl sending valid encrypted queries with fresh keys gets no key exchange, no answer', async () => {
    const outsider = await clientAt('127.0.0.2');
    try {
      const before = await exchanges();
      const refusedBefore = await rejected('acl');
      for (let i = 0; i < 20; i++) outsider.send(freshKeyQuery(cert, i).packet, resolver.port);
      assert.ok(await until(async () => (await rejected('acl')) - refusedBefore === 20), 'all 20 turned away by the acl');
      assert.equal((await exchanges()) - before, 0, 'no key exchange for a client the acl refuses');
      assert.equal(outsider.answers.length, 0);
      // A client inside the acl is served, and its fresh key is counted: the count can move.
      const { packet, keys: k, nonce } = freshKeyQuery(cert, 99);
      const answer = await sendUdpRaw('127.0.0.1', resolver.port, packet, 3000, '127.0.0.5');
      assert.equal(firstData(decryptResponse(2, k.sharedKey, nonce, answer!)!), '192.0.2.24');
      assert.equal((await exchanges()) - before, 1);
    } finally {
      outsider.close();
    }
  });

  it('issue 24 finding 5: a rate-limited client’s excess packets are dropped before decryption', async () => {
    const flooder = await clientAt('127.0.0.3');
    try {
      const before = await exchanges();
      const limitedBefore = await rejected('ratelimit');
      const sent = 30;
      for (let i = 0; i < sent; i++) flooder.send(freshKeyQuery(cert, 1000 + i).packet, resolver.port);
      const limited = async () => (await rejected('ratelimit')) - limitedBefore;
      assert.ok(await until(async () => flooder.answers.length + (await limited()) === sent), 'every packet answered or limited');
      const answered = flooder.answers.length;
      assert.ok(answered >= 5 && answered < sent, `${answered} of ${sent} answered`);
      assert.equal((await exchanges()) - before, answered, 'a key exchange for each answered query, none for the limited ones');
    } finally {
      flooder.close();
    }
  });

  it('issue 24 (low): a certificate query over UDP smaller than the answer gets TC, never more bytes than it sent', async () => {
    const small = buildQuery(PROVIDER, QType.TXT, { id: 0x77 });
    const answer = await queryUdp('127.0.0.1', resolver.port, small, 3000);
    assert.ok(answer.length <= small.length, `${answer.length}-byte answer to a ${small.length}-byte query`);
    assert.equal(isTruncated(answer), true);
    assert.equal(dnsPacket.decode(answer).answers?.length ?? 0, 0);
    // the same query over TCP, and a padded one over UDP (as clients send), get the certificate
    const [overTcp] = await queryTcp('127.0.0.1', resolver.port, [small], 3000);
    assert.equal(certificatesFromAnswer(small, overTcp!).length, 1);
    const padded = padMessage(buildQuery(PROVIDER, QType.TXT, { id: 0x78, edns: true }), 480);
    const full = await queryUdp('127.0.0.1', resolver.port, padded, 3000);
    assert.equal(isTruncated(full), false);
    assert.equal(certificatesFromAnswer(padded, full).length, 1);
  });
});

describe('bin/veil DNSCrypt listener: a budget of key exchanges per client', () => {
  let keys: ProviderKeys;
  let resolver: { veil: VeilProcess; port: number; metrics: string };
  let cert: Certificate;

  before(async () => {
    keys = makeProviderKeys();
    resolver = await startResolver(keys, '        key_exchanges 10 1000', '');
    cert = await certificateOf(resolver.port, keys);
  });
  after(async () => {
    await resolver?.veil.stop();
    keys?.cleanup();
  });

  it('issue 24 finding 5: a flood of fresh client keys from one source gets 10 key exchanges a second; cached keys and other clients are served', async () => {
    const overBudget = () => metric(resolver.metrics, 'veil_dns_rejected_total', { proto: 'dnscrypt', reason: "dnscrypt: over the client's key exchange budget" });
    const flooder = await clientAt('127.0.0.6');
    try {
      const sent = 40;
      const queries = Array.from({ length: sent }, (_, i) => freshKeyQuery(cert, 2000 + i));
      for (const q of queries) flooder.send(q.packet, resolver.port);
      assert.ok(await until(async () => flooder.answers.length + (await overBudget()) === sent), 'every packet answered or over budget');
      const answered = flooder.answers.length;
      assert.ok(answered >= 10 && answered < sent, `${answered} of ${sent} answered`);
      assert.equal(await metric(resolver.metrics, 'veil_dnscrypt_key_exchanges_total'), answered);
      // A key the server has cached costs no exchange: served even now, from the same source.
      const answeredIds = new Set(flooder.answers.map((a) => a.readUInt32BE(8)));
      const served = queries.find((q) => answeredIds.has(q.nonce.readUInt32BE(0)))!;
      const nonce = Buffer.alloc(12, 0x33);
      const again = encryptQuery(served.keys, nonce, buildQuery('web.abuse.test', QType.A, { id: 7 }), 256);
      const reply = await sendUdpRaw('127.0.0.1', resolver.port, again, 3000, '127.0.0.6');
      assert.equal(firstData(decryptResponse(2, served.keys.sharedKey, nonce, reply!)!), '192.0.2.24');
      // Another client has a budget of its own.
      const other = freshKeyQuery(cert, 3000);
      const otherReply = await sendUdpRaw('127.0.0.1', resolver.port, other.packet, 3000, '127.0.0.7');
      assert.equal(firstData(decryptResponse(2, other.keys.sharedKey, other.nonce, otherReply!)!), '192.0.2.24');
    } finally {
      flooder.close();
    }
  });
});

/** A UDP "server" that answers every packet as a DNSCrypt server would (magic, its nonce). */
async function fakeDnscryptServer(): Promise<{ port: number; received: Buffer[]; close(): void }> {
  const socket = dgram.createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (msg, from) => {
    received.push(msg);
    const answer = Buffer.alloc(Math.min(msg.length, 100));
    RESOLVER_MAGIC.copy(answer, 0);
    msg.copy(answer, 8, 40, 52);
    socket.send(answer, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, received, close: () => socket.close() };
}

/** A host that takes packets and never answers. */
async function silentHost(): Promise<{ port: number; received: () => number; close(): void }> {
  const socket = dgram.createSocket('udp4');
  let count = 0;
  socket.on('message', () => count++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, received: () => count, close: () => socket.close() };
}

/** Bytes shaped like a DNSCrypt query (magic, key, nonce, tag, 256 bytes of ciphertext). */
function dnscryptShaped(seed: number): Buffer {
  const packet = Buffer.alloc(68 + 256, 0xa5);
  packet.writeUInt32BE(seed, 40); // the client nonce, which the answer echoes
  return packet;
}

describe('bin/veil relay: the door first, places shared per client and per server, DNSCrypt only', () => {
  let relay: VeilProcess;
  let relayPort: number;
  let metrics: string;
  let server: Awaited<ReturnType<typeof fakeDnscryptServer>>;
  const silent: Array<Awaited<ReturnType<typeof silentHost>>> = [];
  const dropped = (reason: string) => metric(metrics, 'veil_relay_dropped_total', { reason });
  const relayed = (port: number, inner: Buffer) => Buffer.concat([relayHeader('127.0.0.1', port), inner]);

  before(async () => {
    server = await fakeDnscryptServer();
    silent.push(await silentHost(), await silentHost());
    relay = await startVeil(`. {
    listen relay://127.0.0.2:0 {
        allow_ports ${server.port} ${silent[0]!.port} ${silent[1]!.port}
        allow_private
        max_inflight 40
        max_inflight_per_client 8
        max_inflight_per_server 16
    }
    acl {
        deny 127.0.0.9
        allow 127.0.0.0/8
    }
    metrics 127.0.0.1:0
}
`);
    relayPort = relay.address('relay').port;
    metrics = metricsEndpoint(relay);
  });
  after(async () => {
    await relay?.stop();
    server?.close();
    for (const host of silent) host.close();
  });

  /** Five relayed queries from `address` to the answering server: how many came back. */
  async function goodClientAnswers(address: string): Promise<number> {
    let answered = 0;
    for (let i = 0; i < 5; i++) {
      const reply = await sendUdpRaw('127.0.0.2', relayPort, relayed(server.port, dnscryptShaped(500 + i)), 3000, address);
      if (reply && reply.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0) answered++;
    }
    return answered;
  }

  it('issue 24 finding 8: a client flooding a silent host holds its own share of places, and another client’s queries still go through', async () => {
    const hostile = await clientAt('127.0.0.3');
    try {
      const sent = 100;
      for (let i = 0; i < sent; i++) hostile.send(relayed(silent[0]!.port, dnscryptShaped(i)), relayPort, '127.0.0.2');
      const decided = async () => (await dropped('client over its share')) + (await dropped('busy')) + silent[0]!.received();
      assert.ok(await until(async () => (await decided()) === sent), 'every packet passed on or dropped');
      assert.equal(silent[0]!.received(), 8, 'max_inflight_per_client packets passed on');
      assert.equal(await goodClientAnswers('127.0.0.4'), 5);
    } finally {
      hostile.close();
    }
  });

  it('issue 24 finding 8: many sources flooding one silent host hold that server’s share only', async () => {
    const sources = await Promise.all(Array.from({ length: 20 }, (_, i) => clientAt(`127.0.0.${10 + i}`)));
    try {
      sources.forEach((source, s) => {
        for (let i = 0; i < 5; i++) source.send(relayed(silent[1]!.port, dnscryptShaped(10_000 + s * 10 + i)), relayPort, '127.0.0.2');
      });
      const decided = async () => (await dropped('server over its share')) + (await dropped('busy')) + silent[1]!.received();
      assert.ok(await until(async () => (await decided()) === 100), 'every packet passed on or dropped');
      assert.equal(silent[1]!.received(), 16, 'max_inflight_per_server packets passed on');
      assert.equal(await goodClientAnswers('127.0.0.5'), 5);
    } finally {
      for (const source of sources) source.close();
    }
  });

  it('issue 24 finding 8: a payload that is not DNSCrypt-shaped is dropped and counted, never passed on', async () => {
    const before = server.received.length;
    const notDnscryptBefore = await dropped('not DNSCrypt');
    const junk = Buffer.alloc(100, 0x41); // 81+ bytes: the relay used to carry it
    const plainDns = padMessage(buildQuery('example.com', QType.A, { id: 9, edns: true }), 320); // plain DNS, padded past any size rule
    for (const inner of [junk, plainDns]) {
      assert.equal(await sendUdpRaw('127.0.0.2', relayPort, relayed(server.port, inner), 300, '127.0.0.8'), null);
    }
    assert.equal((await dropped('not DNSCrypt')) - notDnscryptBefore, 2);
    // a DNSCrypt-shaped packet from the same client goes through
    const reply = await sendUdpRaw('127.0.0.2', relayPort, relayed(server.port, dnscryptShaped(77)), 3000, '127.0.0.8');
    assert.ok(reply, 'the DNSCrypt-shaped packet was carried');
    assert.equal(server.received.length - before, 1, 'only the DNSCrypt-shaped packet reached the server');
  });

  it('issue 24 (same class): the relay asks the block’s acl before anything, and carries nothing for a client it refuses', async () => {
    const before = server.received.length;
    const refusedBefore = await metric(metrics, 'veil_dns_rejected_total', { proto: 'relay', reason: 'acl' });
    assert.equal(await sendUdpRaw('127.0.0.2', relayPort, relayed(server.port, dnscryptShaped(88)), 300, '127.0.0.9'), null);
    assert.equal((await metric(metrics, 'veil_dns_rejected_total', { proto: 'relay', reason: 'acl' })) - refusedBefore, 1);
    assert.equal(server.received.length, before, 'nothing passed on');
    assert.ok(await sendUdpRaw('127.0.0.2', relayPort, relayed(server.port, dnscryptShaped(89)), 3000, '127.0.0.11'), 'a client the acl admits is carried');
  });
});
