/**
 * dot: DNS-over-TLS upstreams against in-process TLS servers on loopback (certificates from a
 * throw-away CA), and the tls:// listener against Node's TLS client.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../../core/dns/constants.js';
import { ednsOption, buildQuery } from '../../core/dns/message.js';
import { FrameReader, frame } from '../../core/dns/framing.js';
import { fullRcode, readEdns, forEachEdnsOption } from '../../core/dns/wire.js';
import { upstreamConnection } from '../../core/events.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { encodeStamp } from '../../lib/stamps.js';
import { tbsSha256 } from '../../lib/tls/certificates.js';
import { startFakeDot, type FakeDot } from '../../test/helpers/fake-dot.js';
import { freePort, makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const decode = (b: Buffer) => dnsPacket.decode(b);
const rcode = (b: Buffer) => rcodeName(fullRcode(b));
const firstA = (b: Buffer) => (decode(b).answers?.[0] as { data?: string } | undefined)?.data;
const pem = (file: string) => readFileSync(file, 'utf8');

let certs: TestCerts;
before(() => {
  certs = makeTestCerts();
});
after(() => rmSync(certs.dir, { recursive: true, force: true }));

function optionCodes(msg: Buffer): number[] {
  const edns = readEdns(msg);
  if (!edns) return [];
  const codes: number[] = [];
  forEachEdnsOption(msg, edns, (code) => codes.push(code));
  return codes;
}

/** A Veil serving UDP and TCP on loopback with the given dot (and other) directives. */
async function veilWith(directives: string, queryTimeoutMs = 3000): Promise<TestServer & { ask: (name: string, type?: number, edns?: boolean) => Promise<Buffer> }> {
  const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n${directives}\n}`, { registry: testRegistry(), queryTimeoutMs });
  const udp = veil.address('udp://127.0.0.1:0');
  let id = 1;
  return Object.assign(veil, {
    ask: (name: string, type: number = QType.A, edns = false) => queryUdp(udp.host, udp.port, buildQuery(name, type, { id: id++, edns }), queryTimeoutMs + 2000),
  });
}

const dotBlock = (servers: string) => `  dot {\n${servers}\n  }`;
const serverLine = (name: string, port: number, options: string) => `    server ${name} tls://127.0.0.1:${port} {\n${options}\n    }`;

describe('dot upstream', () => {
  let origin: FakeDot;
  before(async () => {
    origin = await startFakeDot({ cert: certs.chain, key: certs.key });
  });
  after(() => origin.close());

  const trusted = (name = 'up', extra = '') => dotBlock(serverLine(name, origin.port, `      server_name dns.test\n      ca ${certs.ca}\n${extra}`));

  it('answers through a verified TLS connection, every query padded to 128 bytes', async () => {
    const veil = await veilWith(trusted());
    try {
      origin.queries.length = 0;
      assert.equal(firstA(await veil.ask('a.test')), '203.0.113.1');
      assert.equal(firstA(await veil.ask('b.test', QType.A, true)), '203.0.113.1');
      assert.equal(origin.queries.length, 2);
      for (const q of origin.queries) {
        assert.equal(q.wire.length % 128, 0, `query of ${q.wire.length} bytes`);
        assert.deepEqual(optionCodes(q.wire), [12]);
      }
    } finally {
      await veil.stop();
    }
  });

  it('gives the client no OPT record when it sent none, and no padding when it sent EDNS', async () => {
    origin.setHandler((q) => {
      const answer = answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: '192.0.2.8' }]);
      // an upstream that pads its answers (RFC 8467: 468-byte blocks)
      const withOpt = dnsPacket.encode({ ...dnsPacket.decode(answer), additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [{ code: 12, data: Buffer.alloc(400) } as never] } as never] });
      return withOpt;
    });
    const veil = await veilWith(trusted());
    try {
      const plain = await veil.ask('plain.test');
      assert.equal(firstA(plain), '192.0.2.8');
      assert.equal(readEdns(plain), null);
      const edns = await veil.ask('edns.test', QType.A, true);
      assert.equal(firstA(edns), '192.0.2.8');
      assert.ok(readEdns(edns));
      assert.deepEqual(optionCodes(edns), []);
      assert.ok(edns.length < 468, `answer of ${edns.length} bytes still padded`);
    } finally {
      await veil.stop();
      origin.setHandler((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 300, data: '203.0.113.1' }]));
    }
  });

  it('pipelines: many queries in flight on the pool, answers accepted out of order', async () => {
    origin.setHandler(async (q) => {
      const name = q.packet.questions![0]!.name;
      const n = Number(/^q(\d+)\./.exec(name)?.[1] ?? 0);
      await new Promise((r) => setTimeout(r, (40 - n) * 5)); // the first asked is answered last
      return answerFor(q, [{ type: 'A', name, ttl: 60, data: `192.0.2.${n + 1}` }]);
    });
    const veil = await veilWith(trusted('up', '      pool 2'));
    try {
      const handshakes = origin.handshakes;
      const answers = await Promise.all(Array.from({ length: 40 }, (_, n) => veil.ask(`q${n}.test`)));
      answers.forEach((answer, n) => assert.equal(firstA(answer), `192.0.2.${n + 1}`));
      assert.ok(origin.handshakes - handshakes <= 2, `${origin.handshakes - handshakes} connections for 40 queries`);
    } finally {
      await veil.stop();
      origin.setHandler((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 300, data: '203.0.113.1' }]));
    }
  });

  it('opens the pool at start and resumes the TLS session on reconnect', async () => {
    const before = { handshakes: origin.handshakes, resumed: origin.resumed };
    const veil = await veilWith(trusted('up', '      pool 1'));
    try {
      await waitFor(() => origin.handshakes > before.handshakes, 'the pool to open at start');
      assert.equal(firstA(await veil.ask('warm.test')), '203.0.113.1');
      origin.dropConnections();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(firstA(await veil.ask('again.test')), '203.0.113.1');
      assert.ok(origin.resumed > before.resumed, 'the second connection should resume the first one\'s session');
    } finally {
      await veil.stop();
    }
  });

  it('replaces a stale connection that carried queries, and lets an unused one go', async () => {
    const events: string[] = [];
    const listener = (message: { upstream: string; event: string }) => {
      if (message.upstream === 'stale') events.push(message.event);
    };
    upstreamConnection.subscribe(listener);
    const veil = await veilWith(trusted('stale', '      pool 1\n      stale_timeout 150ms'));
    try {
      await waitFor(() => events.includes('created'), 'the pool to open');
      assert.equal(firstA(await veil.ask('x.test')), '203.0.113.1');
      await waitFor(() => events.filter((e) => e === 'stale-closed').length >= 2, 'two stale closes', 3000);
      await new Promise((r) => setTimeout(r, 400));
      // created (warm), reused, stale-closed, created (replacement), stale-closed: then nothing
      assert.deepEqual(events, ['created', 'reused', 'stale-closed', 'created', 'stale-closed']);
    } finally {
      upstreamConnection.unsubscribe(listener);
      await veil.stop();
    }
  });

  it('a UDP client gets TC for an answer larger than its buffer; a TCP client gets it whole', async () => {
    origin.setHandler((q) => {
      const name = q.packet.questions![0]!.name;
      return answerFor(q, Array.from({ length: 12 }, (_, i) => ({ type: 'TXT', name, ttl: 60, data: [`${i}`.padEnd(200, 'x')] })));
    });
    const veil = await veilWith(trusted());
    try {
      const udp = await veil.ask('big.test', QType.TXT, true);
      assert.ok(decode(udp).flags! & dnsPacket.TRUNCATED_RESPONSE, 'TC should be set');
      assert.equal(decode(udp).answers?.length ?? 0, 0);
      const tcp = veil.address('tcp://127.0.0.1:0');
      const [whole] = await queryTcp(tcp.host, tcp.port, [buildQuery('big.test', QType.TXT, { id: 7, edns: true })]);
      assert.equal(decode(whole!).answers?.length, 12);
    } finally {
      await veil.stop();
      origin.setHandler((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 300, data: '203.0.113.1' }]));
    }
  });

  it('a DoT stamp gives the address, the name and certificate hashes that must match', async () => {
    const caDer = new (await import('node:crypto')).X509Certificate(readFileSync(certs.ca)).raw;
    const stamp = (hashes: Buffer[]) =>
      encodeStamp({ protocol: 'dot', props: { dnssec: true, noLogs: true, noFilter: true }, address: `127.0.0.1:${origin.port}`, hashes, host: 'dns.test', bootstrap: [] });
    const good = await veilWith(dotBlock(`    server st ${stamp([tbsSha256(caDer)])} {\n      ca ${certs.ca}\n    }`));
    try {
      assert.equal(firstA(await good.ask('stamp.test')), '203.0.113.1');
    } finally {
      await good.stop();
    }
    origin.queries.length = 0;
    const bad = await veilWith(dotBlock(`    server st ${stamp([Buffer.alloc(32, 7)])} {\n      ca ${certs.ca}\n    }`));
    try {
      assert.equal(rcode(await bad.ask('stamp.test')), 'SERVFAIL');
      assert.equal(origin.queries.length, 0);
      assert.ok(bad.logs.some((l) => /certificate rejected: no certificate in the server's chain matches the stamp's hashes/.test(l)), bad.logs.join('\n'));
    } finally {
      await bad.stop();
    }
  });

  it('a pin alone authenticates a server whose CA nobody trusts (RFC 7858 pinning)', async () => {
    const veil = await veilWith(dotBlock(serverLine('pinned', origin.port, `      pin_sha256 ${certs.spkiPin}`)));
    try {
      assert.equal(firstA(await veil.ask('pin.test')), '203.0.113.1');
    } finally {
      await veil.stop();
    }
  });
});

describe('dot refuses servers it cannot authenticate, and never falls back to plaintext', () => {
  let impostor: FakeDot;
  before(async () => {
    // a valid certificate for dns.test, but from a CA Veil was not told to trust
    impostor = await startFakeDot({ cert: certs.otherCert, key: certs.otherKey });
  });
  after(() => impostor.close());

  const cases: Array<{ name: string; server: () => string; reason: RegExp }> = [
    { name: 'unknown CA', server: () => serverLine('u', impostor.port, `      server_name dns.test\n      ca ${certs.ca}`), reason: /certificate rejected: .*(unable to|self.signed|issuer)/i },
    { name: 'wrong server_name', server: () => serverLine('u', impostor.port, `      server_name other.test\n      ca ${certs.otherCa}`), reason: /certificate rejected: .*(does not match|altnames)/i },
    { name: 'wrong pin', server: () => serverLine('u', impostor.port, `      server_name dns.test\n      ca ${certs.otherCa}\n      pin_sha256 ${certs.spkiPin}`), reason: /certificate rejected: the certificate's public key matches no pin_sha256/ },
  ];
  for (const { name, server, reason } of cases) {
    it(`${name}: SERVFAIL, the reason logged once, no query sent`, async () => {
      impostor.queries.length = 0;
      const failed = impostor.failedHandshakes;
      const veil = await veilWith(dotBlock(server()));
      try {
        for (let i = 0; i < 3; i++) assert.equal(rcode(await veil.ask(`secret${i}.test`)), 'SERVFAIL');
        assert.equal(impostor.queries.length, 0, 'no query may reach a server that failed verification');
        const warnings = veil.logs.filter((l) => l.startsWith('[WARN] plugin/dot:'));
        assert.equal(warnings.length, 1, veil.logs.join('\n'));
        assert.match(warnings[0]!, reason);
        assert.match(warnings[0]!, /never in plaintext/);
        assert.ok(impostor.failedHandshakes > failed || name === 'wrong pin', 'the handshake should have been refused');
      } finally {
        await veil.stop();
      }
    });
  }

  it('a plaintext DNS server on the port never receives a query', async () => {
    const plain = await startFakeDns();
    const veil = await veilWith(dotBlock(serverLine('p', plain.port, `      server_name dns.test\n      ca ${certs.ca}\n      handshake_timeout 300ms`)));
    try {
      assert.equal(rcode(await veil.ask('leak.test')), 'SERVFAIL');
      assert.equal(plain.queries.length, 0);
    } finally {
      await veil.stop();
      await plain.close();
    }
  });
});

describe('dot upstream availability', () => {
  it('an unreachable server does not stop start-up; logged once down and once back up', async () => {
    const port = await freePort();
    const veil = await veilWith(dotBlock(serverLine('later', port, `      server_name dns.test\n      ca ${certs.ca}`)));
    let origin: FakeDot | null = null;
    try {
      assert.equal(rcode(await veil.ask('early.test')), 'SERVFAIL');
      assert.equal(rcode(await veil.ask('early2.test')), 'SERVFAIL');
      assert.equal(veil.logs.filter((l) => /\[WARN\] plugin\/dot: dot later .*ECONNREFUSED/.test(l)).length, 1, veil.logs.join('\n'));
      origin = await startFakeDot({ cert: certs.chain, key: certs.key, port });
      assert.equal(firstA(await veil.ask('late.test')), '203.0.113.1');
      assert.equal(veil.logs.filter((l) => /\[INFO\] plugin\/dot: later: connected to 127\.0\.0\.1:\d+ again/.test(l)).length, 1, veil.logs.join('\n'));
    } finally {
      await veil.stop();
      await origin?.close();
    }
  });

  it('a silent server: the query moves to the next upstream after read_timeout', async () => {
    const silent = await startFakeDot({ cert: certs.chain, key: certs.key }, () => null);
    const good = await startFakeDot({ cert: certs.chain, key: certs.key });
    const opts = `      server_name dns.test\n      ca ${certs.ca}\n      read_timeout 300ms`;
    const veil = await veilWith(dotBlock(`${serverLine('silent', silent.port, opts)}\n${serverLine('good', good.port, opts)}`));
    try {
      assert.equal(firstA(await veil.ask('slow.test')), '203.0.113.1');
      assert.equal(silent.queries.length, 1);
      assert.equal(good.queries.length, 1);
    } finally {
      await veil.stop();
      await silent.close();
      await good.close();
    }
  });

  it('a server killed under load: queries in flight go to the next server; the pool recovers when it returns', async () => {
    // The first server holds every query: only its death can send them elsewhere in time.
    const first = await startFakeDot({ cert: certs.chain, key: certs.key }, () => new Promise<null>(() => {}));
    const second = await startFakeDot({ cert: certs.chain, key: certs.key }, (q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: '192.0.2.2' }]));
    const port = first.port;
    const opts = `      server_name dns.test\n      ca ${certs.ca}\n      read_timeout 5s`;
    const veil = await veilWith(dotBlock(`${serverLine('first', port, opts)}\n${serverLine('second', second.port, opts)}`));
    let revived: FakeDot | null = null;
    try {
      const load = Array.from({ length: 60 }, (_, i) => veil.ask(`load${i}.test`));
      await waitFor(() => first.queries.length >= 20, 'queries in flight on the first server');
      await first.close(); // connections reset with queries in flight
      for (const answer of await Promise.all(load)) {
        assert.equal(rcode(answer), 'NOERROR');
        assert.equal(firstA(answer), '192.0.2.2');
      }
      revived = await startFakeDot({ cert: certs.chain, key: certs.key, port }, (q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: '192.0.2.3' }]));
      assert.equal(firstA(await veil.ask('back.test')), '192.0.2.3');
    } finally {
      await veil.stop();
      await second.close();
      await revived?.close();
    }
  });
});

describe('tls:// listener', () => {
  let veil: TestServer;
  let address: { host: string; port: number };
  before(async () => {
    veil = await startTestServer(
      `. {\n  listen tls://127.0.0.1:0 {\n    cert ${certs.chain}\n    key ${certs.key}\n    handshake_timeout 300ms\n    max_connections 4\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n  slow 150\n}`,
      { registry: testRegistry() },
    );
    address = veil.address('tls://127.0.0.1:0');
  });
  after(() => veil.stop());

  function connect(): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: address.host, port: address.port, servername: 'dns.test', ca: pem(certs.ca) }, () => resolve(socket));
      socket.once('error', reject);
    });
  }

  function exchange(socket: tls.TLSSocket, queries: Buffer[]): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      const reader = new FrameReader();
      const answers: Buffer[] = [];
      const onData = (chunk: Buffer) => {
        answers.push(...reader.push(chunk));
        if (answers.length >= queries.length) {
          socket.off('data', onData);
          resolve(answers);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error(`closed after ${answers.length} answers`)));
      socket.write(Buffer.concat(queries.map(frame)));
    });
  }

  it('serves pipelined queries on one connection, answering each as soon as it is ready', async () => {
    const socket = await connect();
    try {
      const answers = await exchange(socket, [buildQuery('slow.web.veil.test', QType.A, { id: 1 }), buildQuery('web.veil.test', QType.A, { id: 2 })]);
      assert.deepEqual(answers.map((a) => decode(a).id), [2, 1]);
      assert.equal(rcode(answers[1]!), 'REFUSED');
      assert.equal(firstA(answers[0]!), '192.0.2.10');
    } finally {
      socket.destroy();
    }
  });

  it('pads answers to padded queries to 468-byte blocks', async () => {
    const socket = await connect();
    try {
      const padded = buildQuery('web.veil.test', QType.A, { id: 3, edns: { options: ednsOption(12, Buffer.alloc(60)) } });
      const plain = buildQuery('web.veil.test', QType.A, { id: 4, edns: true });
      const [a, b] = await exchange(socket, [padded, plain]);
      const byId = new Map([a!, b!].map((x) => [decode(x).id, x]));
      assert.equal(byId.get(3)!.length % 468, 0);
      assert.deepEqual(optionCodes(byId.get(3)!), [12]);
      assert.deepEqual(optionCodes(byId.get(4)!), []);
    } finally {
      socket.destroy();
    }
  });

  it('closes a connection that does not complete its handshake in time', async () => {
    const raw = net.connect(address.port, address.host);
    const closedAfter = await new Promise<number>((resolve) => {
      const started = Date.now();
      raw.on('error', () => {});
      raw.on('close', () => resolve(Date.now() - started));
    });
    assert.ok(closedAfter < 2000, `closed after ${closedAfter}ms`);
  });

  it('drops bytes that are not TLS without answering them', async () => {
    const raw = net.connect(address.port, address.host);
    const received: Buffer[] = [];
    raw.on('data', (d) => received.push(d));
    raw.on('error', () => {});
    raw.write(frame(buildQuery('web.veil.test', QType.A, { id: 5 })));
    await new Promise((resolve) => raw.on('close', resolve));
    const text = Buffer.concat(received);
    assert.ok(!text.includes(Buffer.from([192, 0, 2, 10])), 'no DNS answer may go out in plaintext');
  });

  it('bounds handshakes in progress by max_connections', async () => {
    const server = await startTestServer(`. {\n  listen tls://127.0.0.1:0 {\n    cert ${certs.chain}\n    key ${certs.key}\n    handshake_timeout 10s\n    max_connections 2\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}`, {
      registry: testRegistry(),
    });
    const at = server.address('tls://127.0.0.1:0');
    const sockets: net.Socket[] = [];
    try {
      const closed: boolean[] = [];
      for (let i = 0; i < 3; i++) {
        const socket = net.connect(at.port, at.host);
        const index = i;
        closed[index] = false;
        socket.on('close', () => (closed[index] = true));
        socket.on('error', () => {});
        sockets.push(socket);
        await new Promise((resolve) => socket.once('connect', resolve));
      }
      await waitFor(() => closed[2] === true, 'the third handshake to be refused');
      assert.deepEqual(closed, [false, false, true]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await server.stop();
    }
  });

  it('takes a new certificate on reload, for new connections', async () => {
    const corefile = (cert: string, key: string) => `. {\n  listen tls://127.0.0.1:0 {\n    cert ${cert}\n    key ${key}\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}`;
    const server = await startTestServer(corefile(certs.chain, certs.key), { registry: testRegistry() });
    const at = server.address('tls://127.0.0.1:0');
    const handshake = (ca: string) =>
      new Promise<string>((resolve) => {
        const socket = tls.connect({ host: at.host, port: at.port, servername: 'dns.test', ca: pem(ca) }, () => {
          socket.destroy();
          resolve('trusted');
        });
        socket.on('error', (err) => resolve(err.message));
      });
    try {
      assert.equal(await handshake(certs.ca), 'trusted');
      assert.equal(await server.reload(corefile(certs.otherCert, certs.otherKey)), true);
      assert.equal(await handshake(certs.otherCa), 'trusted');
      assert.notEqual(await handshake(certs.ca), 'trusted');
    } finally {
      await server.stop();
    }
  });

  it('answers a Veil dot upstream (Veil on both ends)', async () => {
    const front = await veilWith(dotBlock(serverLine('self', address.port, `      server_name dns.test\n      ca ${certs.ca}`)));
    try {
      assert.equal(firstA(await front.ask('web.veil.test')), '192.0.2.10');
    } finally {
      await front.stop();
    }
  });
});

async function waitFor(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
