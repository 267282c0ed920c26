/**
 * The doh upstream against Veil's own https listener and against scriptable DoH servers on
 * loopback: POST and GET, ID 0 upstream and the client's ID back, padding, no ECS, sessions
 * reused and replaced on GOAWAY, HTTP/1.1 when h2 is not offered, TLS that fails closed (wrong
 * CA, wrong name, wrong pin, wrong stamp hash), bad answers, unreachable servers, and no
 * system-resolver lookup ever.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import dns from 'node:dns';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { EdnsOption, QType, Rcode } from '../../core/dns/constants.js';
import { buildQuery, ednsOption } from '../../core/dns/message.js';
import { forEachEdnsOption, readEdns, readId, rcodeOf } from '../../core/dns/wire.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { queryUdp } from '../../core/testing/client.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { encodeStamp } from '../../lib/stamps.js';
import { tbsSha256 } from '../../lib/tls/certificates.js';
import { answerFor, startFakeDoh, type FakeDoh, type FakeReply } from '../../test/helpers/fake-doh.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

/** `record`: keeps every query that reaches this point of the chain (the DoH server's view). */
const seenByBack: Buffer[] = [];
const recordPlugin: PluginDefinition<null> = {
  name: 'record',
  position: { before: 'hosts' },
  parse: () => null,
  create: () => ({
    name: 'record',
    async serve(ctx, next) {
      seenByBack.push(Buffer.from(ctx.query));
      return next(ctx);
    },
  }),
};

// Every test runs with both HTTP/2 clients: Veil's own (the default) and node:http2 (`http2 node`).
for (const http2 of ['veil', 'node'] as const) describe(`doh upstream (http2 ${http2})`, () => {
  let certs: TestCerts;
  let back: TestServer;
  let backPort: number;
  let fake: FakeDoh;

  before(async () => {
    certs = makeTestCerts();
    back = await startTestServer(
      `. {
  listen https://127.0.0.1:0/dns-query {
    cert ${certs.chain}
    key ${certs.key}
  }
  hosts {
    192.0.2.10 web.veil.test
  }
  record
}`,
      { registry: testRegistry([recordPlugin]) },
    );
    backPort = back.address('https://127.0.0.1:0/dns-query').port;
    fake = await startFakeDoh({ cert: certs.chain, key: certs.key });
  });
  after(async () => {
    await back?.stop();
    await fake?.close();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  /** A Veil with the given doh block, answering on UDP. */
  async function front(doh: string, extra = ''): Promise<{ veil: TestServer; ask: (name: string, id?: number, q?: Buffer) => Promise<Buffer> }> {
    // Each server line's block gets the client under test.
    doh = doh.replace(/(\n server [^\n]+ \{\n)/g, `$1 http2 ${http2}\n`);
    assert.ok(doh.split(`http2 ${http2}`).length - 1 === doh.split('\n server ').length - 1, `a server line without a block: ${doh}`);
    const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  ${doh}\n${extra}}`, { registry: testRegistry(), queryTimeoutMs: 3000 });
    const udp = veil.address('udp://127.0.0.1:0');
    return { veil, ask: (name, id = 1, q) => queryUdp(udp.host, udp.port, q ?? buildQuery(name, QType.A, { id }), 5000) };
  }
  const a = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;

  describe("against Veil's own listener", () => {
    it('POST (the default): ID 0 and padded to 128 bytes upstream, the client ID back', async () => {
      const { veil, ask } = await front(`doh {\n server back https://dns.test:${backPort}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n }\n }`);
      try {
        seenByBack.length = 0;
        const answer = await ask('web.veil.test', 4242);
        assert.equal(readId(answer), 4242);
        assert.equal(a(answer), '192.0.2.10');
        assert.equal(readEdns(answer), null, 'the client sent no OPT, so it gets none back');
        assert.equal(seenByBack.length, 1);
        const upstream = seenByBack[0]!;
        assert.equal(readId(upstream), 0);
        assert.equal(upstream.length % 128, 0, `query of ${upstream.length} bytes is not padded`);
        const options: number[] = [];
        forEachEdnsOption(upstream, readEdns(upstream)!, (code) => options.push(code));
        assert.ok(options.includes(EdnsOption.PADDING));
      } finally {
        await veil.stop();
      }
    });

    it('GET with base64url, and many concurrent queries on one session', async () => {
      const { veil, ask } = await front(`doh {\n server back https://127.0.0.1:${backPort}/dns-query {\n ca ${certs.ca}\n method get\n }\n }`);
      try {
        const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => ask('web.veil.test', i + 1)));
        answers.forEach((answer, i) => {
          assert.equal(readId(answer), i + 1);
          assert.equal(a(answer), '192.0.2.10');
        });
      } finally {
        await veil.stop();
      }
    });

    it('EDNS Client Subnet never leaves', async () => {
      const { veil, ask } = await front(`doh {\n server back https://127.0.0.1:${backPort}/dns-query {\n ca ${certs.ca}\n }\n }`);
      try {
        seenByBack.length = 0;
        const ecs = ednsOption(EdnsOption.ECS, Buffer.from([0, 1, 24, 0, 198, 51, 100]));
        const query = buildQuery('web.veil.test', QType.A, { id: 7, edns: { options: ecs } });
        assert.equal(a(await ask('', 7, query)), '192.0.2.10');
        const options: number[] = [];
        forEachEdnsOption(seenByBack[0]!, readEdns(seenByBack[0]!)!, (code) => options.push(code));
        assert.ok(!options.includes(EdnsOption.ECS), `options sent: ${options.join(',')}`);
      } finally {
        await veil.stop();
      }
    });
  });

  describe('sessions', () => {
    it('a GOAWAY retires the session; the next query opens a new one', async () => {
      const { veil, ask } = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n }\n }`);
      try {
        const before = fake.connections;
        fake.behave(() => ({ goaway: true }));
        for (let i = 0; i < 3; i++) assert.equal(a(await ask('x.test', i)), '203.0.113.1');
        assert.equal(fake.connections - before, 3);
        fake.behave(() => ({}));
        for (let i = 0; i < 3; i++) assert.equal(a(await ask('x.test', i)), '203.0.113.1');
        assert.equal(fake.connections - before, 4, 'without GOAWAY the session is kept');
      } finally {
        await veil.stop();
      }
    });

    it('pool N: up to N sessions when queries overlap', async () => {
      const { veil, ask } = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n pool 3\n }\n }`);
      try {
        assert.equal(a(await ask('warm.test', 1)), '203.0.113.1');
        const before = fake.connections;
        fake.behave(() => ({ delayMs: 100 }));
        const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => ask(`p${i}.test`, i)));
        for (const answer of answers) assert.equal(a(answer), '203.0.113.1');
        assert.ok(fake.connections - before >= 1 && fake.connections - before <= 2, `${fake.connections - before} new sessions beside the first`);
      } finally {
        fake.behave(() => ({}));
        await veil.stop();
      }
    });

    it('a burst above the streams the server allows waits for them, instead of failing', async () => {
      const narrow = await startFakeDoh({ cert: certs.chain, key: certs.key }, { maxConcurrentStreams: 4 });
      narrow.behave(() => ({ delayMs: 20 }));
      const { veil, ask } = await front(`doh {\n server narrow https://127.0.0.1:${narrow.port}/dns-query {\n ca ${certs.ca}\n pool 1\n }\n }`);
      try {
        assert.equal(a(await ask('warm.test', 1)), '203.0.113.1');
        const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => ask(`b${i}.test`, i + 2)));
        answers.forEach((answer, i) => {
          assert.equal(readId(answer), i + 2);
          assert.equal(a(answer), '203.0.113.1', `query ${i}: rcode ${rcodeOf(answer)}`);
        });
        assert.equal(narrow.connections, 1, 'one session carried them all');
        assert.ok(narrow.maxInFlight <= 4, `the server held ${narrow.maxInFlight} at once`);
      } finally {
        await veil.stop();
        await narrow.close();
      }
    });

    it('a request waiting for a stream gives up at its deadline: SERVFAIL, then service again', async () => {
      const narrow = await startFakeDoh({ cert: certs.chain, key: certs.key }, { maxConcurrentStreams: 1 });
      narrow.behave(() => ({ hang: true }));
      const { veil, ask } = await front(`doh {\n server narrow https://127.0.0.1:${narrow.port}/dns-query {\n ca ${certs.ca}\n pool 1\n timeout 300ms\n }\n }`);
      try {
        const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => ask(`h${i}.test`, i + 1)));
        // Each within its deadline (ask gives up after 5 s): none is left waiting for ever.
        for (const answer of answers) assert.equal(rcodeOf(answer), Rcode.SERVFAIL);
        narrow.behave(() => ({}));
        assert.equal(a(await ask('after.test', 9)), '203.0.113.1');
      } finally {
        await veil.stop();
        await narrow.close();
      }
    });

    it('HTTP/1.1 when the server does not offer h2', async () => {
      const http1 = await startFakeDoh({ cert: certs.chain, key: certs.key }, { http1Only: true });
      const { veil, ask } = await front(`doh {\n server old https://dns.test:${http1.port}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n }\n }`);
      try {
        const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => ask('x.test', i + 100)));
        answers.forEach((answer, i) => assert.equal(readId(answer), i + 100));
        assert.equal(http1.requests.length, 10);
        assert.equal(http1.requests[0]!.headers.host, `dns.test:${http1.port}`);
        assert.ok(veil.logs.some((l) => l.includes('does not offer HTTP/2')));
        assert.ok(http1.connections <= 4, `${http1.connections} connections`);
      } finally {
        await veil.stop();
        await http1.close();
      }
    });
  });

  describe('bad answers are upstream failures (and the next upstream is asked)', () => {
    const cases: Array<[string, FakeReply]> = [
      ['HTTP 503', { status: 503 }],
      ['HTTP 404', { status: 404 }],
      ['text/html', { type: 'text/html' }],
      ['a body over 65535 bytes', { body: Buffer.alloc(70_000) }],
      ['an empty body', { body: Buffer.alloc(0) }],
      ['a query instead of an answer', { body: buildQuery('x.test', QType.A) }],
      ['the answer to another question', { body: answerFor(buildQuery('other.test', QType.A)) }],
    ];
    for (const [label, reply] of cases) {
      it(label, async () => {
        fake.behave(() => reply);
        const { veil, ask } = await front(
          `doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n }\n server back https://127.0.0.1:${backPort}/dns-query {\n ca ${certs.ca}\n }\n }`,
        );
        try {
          const answer = await ask('web.veil.test', 3);
          assert.equal(a(answer), '192.0.2.10', 'the second upstream answered');
          const only = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n }\n }`);
          try {
            assert.equal(rcodeOf(await only.ask('web.veil.test', 4)), Rcode.SERVFAIL);
          } finally {
            await only.veil.stop();
          }
        } finally {
          fake.behave(() => ({}));
          await veil.stop();
        }
      });
    }

    it('a server that never answers: SERVFAIL within the deadline', async () => {
      fake.behave(() => ({ hang: true }));
      const { veil, ask } = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n timeout 300ms\n }\n }`);
      try {
        assert.equal(rcodeOf(await ask('x.test', 5)), Rcode.SERVFAIL);
      } finally {
        fake.behave(() => ({}));
        await veil.stop();
      }
    });
  });

  describe('TLS fails closed: nothing is sent', () => {
    const refused = async (doh: string, server: FakeDoh = fake) => {
      const before = server.requests.length;
      const { veil, ask } = await front(doh);
      try {
        assert.equal(rcodeOf(await ask('x.test', 9)), Rcode.SERVFAIL);
        assert.equal(server.requests.length, before, 'a request reached the server');
        return veil.logs.join('\n');
      } finally {
        await veil.stop();
      }
    };

    it('a certificate from a CA we do not trust', async () => {
      const other = await startFakeDoh({ cert: certs.otherCert, key: certs.otherKey });
      try {
        const logs = await refused(`doh {\n server other https://dns.test:${other.port}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n }\n }`, other);
        assert.match(logs, /certificate rejected: unable to verify the first certificate/);
      } finally {
        await other.close();
      }
    });

    it('without `ca`, only the system roots: the test CA is not one of them', async () => {
      await refused(`doh {\n server fake https://dns.test:${fake.port}/dns-query {\n bootstrap 127.0.0.1\n }\n }`);
    });

    it('a certificate for another name', async () => {
      const logs = await refused(`doh {\n server fake https://wrong.test:${fake.port}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n }\n }`);
      assert.match(logs, /certificate rejected: Hostname\/IP does not match/);
    });

    it('pin_sha256: a wrong pin refuses, the right one (or a backup) works', async () => {
      const wrong = createHash('sha256').update('not the key').digest('base64');
      const logs = await refused(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n pin_sha256 ${wrong}\n }\n }`);
      assert.match(logs, /pin_sha256/);
      const { veil, ask } = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n pin_sha256 ${wrong} ${certs.spkiPin}\n }\n }`);
      try {
        assert.equal(a(await ask('x.test', 10)), '203.0.113.1');
      } finally {
        await veil.stop();
      }
    });

    it("a stamp's certificate hashes: a wrong hash refuses, the CA's or the server's works", async () => {
      const tbsHash = (file: string) => tbsSha256(new X509Certificate(readFileSync(file)).raw);
      const stamp = (hashes: Buffer[]) =>
        encodeStamp({ protocol: 'doh', props: { dnssec: false, noLogs: true, noFilter: true }, address: `127.0.0.1:${fake.port}`, hashes, host: 'dns.test', path: '/dns-query', bootstrap: [] });
      const logs = await refused(`doh {\n server s ${stamp([Buffer.alloc(32, 1)])} {\n ca ${certs.ca}\n }\n }`);
      assert.match(logs, /stamp's hashes/);
      for (const hash of [tbsHash(certs.ca), tbsHash(certs.cert)]) {
        const { veil, ask } = await front(`doh {\n server s ${stamp([hash])} {\n ca ${certs.ca}\n }\n }`);
        try {
          assert.equal(a(await ask('x.test', 11)), '203.0.113.1');
        } finally {
          await veil.stop();
        }
      }
    });
  });

  it('an unreachable server does not stop Veil from starting; it is logged and fails over', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const { veil, ask } = await front(
      `doh {\n server gone https://127.0.0.1:${closedPort}/dns-query {\n ca ${certs.ca}\n }\n server back https://127.0.0.1:${backPort}/dns-query {\n ca ${certs.ca}\n }\n }`,
    );
    try {
      assert.equal(a(await ask('web.veil.test', 12)), '192.0.2.10');
      assert.ok(veil.logs.some((l) => /gone: cannot reach/.test(l)), veil.logs.join('\n'));
    } finally {
      await veil.stop();
    }
  });

  it('no lookup through the system resolver, ever (a host name with bootstrap)', async () => {
    const looked: string[] = [];
    const original = dns.lookup;
    // A spy on the function net and tls call to resolve a host name.
    (dns as { lookup: unknown }).lookup = (hostname: string, ...rest: unknown[]) => {
      looked.push(hostname);
      return (original as (...args: unknown[]) => unknown)(hostname, ...rest);
    };
    try {
      // The spy sees what net.connect resolves: check that it works before trusting its silence.
      await new Promise<void>((resolve) => {
        const probe = net.connect({ host: 'localhost', port: backPort }, () => {
          probe.destroy();
          resolve();
        });
        probe.on('error', () => resolve());
      });
      assert.deepEqual(looked, ['localhost']);
      looked.length = 0;
      const { veil, ask } = await front(
        `doh {\n server byname https://dns.test:${backPort}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n }\n server byget https://localhost:${fake.port}/dns-query {\n bootstrap 127.0.0.1\n ca ${certs.ca}\n method get\n }\n }`,
      );
      try {
        for (let i = 0; i < 5; i++) assert.equal(a(await ask('web.veil.test', i)), '192.0.2.10');
        assert.deepEqual(looked, []);
      } finally {
        await veil.stop();
      }
    } finally {
      (dns as { lookup: unknown }).lookup = original;
    }
  });

  it('the answer is checked against the padded query we sent, not trusted blindly', async () => {
    // The fake answers with ID 0 (as it got); Veil gives the client its own ID back.
    fake.behave(() => ({}));
    const { veil, ask } = await front(`doh {\n server fake https://127.0.0.1:${fake.port}/dns-query {\n ca ${certs.ca}\n }\n }`);
    try {
      const answer = await ask('x.test', 31337);
      assert.equal(readId(answer), 31337);
      const last = fake.requests[fake.requests.length - 1]!;
      assert.equal(readId(last.query), 0);
      assert.equal(last.headers['content-type'], 'application/dns-message');
      assert.equal(last.headers.accept, 'application/dns-message');
      assert.equal(last.query.length % 128, 0);
    } finally {
      await veil.stop();
    }
  });
});
