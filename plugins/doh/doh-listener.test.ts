/**
 * The https:// and http:// listeners: RFC 8484 GET and POST over HTTP/2 and HTTP/1.1, the JSON
 * form, status codes, Cache-Control, X-Forwarded-For from trusted proxies only, and hostile
 * clients (bad base64, wrong types, huge and cut-off bodies, broken HTTP/2 frames, streams that
 * never send), each answered by an HTTP error or a closed connection while the server goes on.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery, buildReply } from '../../core/dns/message.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { HTTP2_IMPLEMENTATIONS } from '../../lib/http2/server.js';
import { answerToJson } from './server/json.js';
import { h1Call, h2Call, h2Request, type HttpResult } from '../../test/helpers/doh-client.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

/** `whoami`: TXT whoami.test → the client address the chain was given. */
const whoamiPlugin: PluginDefinition<null> = {
  name: 'whoami',
  position: { after: 'hosts' },
  parse: () => null,
  create: () => ({
    name: 'whoami',
    async serve(ctx, next) {
      if (ctx.name !== 'whoami.test.') return next(ctx);
      const text = Buffer.from(`${ctx.client.address} ${ctx.transport}`);
      return buildReply(ctx.query, { questionEnd: ctx.question.end, edns: ctx.edns, answers: [{ type: QType.TXT, ttl: 0, rdata: Buffer.concat([Buffer.from([text.length]), text]) }] });
    },
  }),
};

const a = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;
const txt = (wire: Buffer) => String((dnsPacket.decode(wire).answers?.[0] as { data: Buffer[] }).data[0]);
const query = (name: string, id = 4321, type: number = QType.A) => buildQuery(name, type, { id });
const getPath = (wire: Buffer) => `/dns-query?dns=${wire.toString('base64url')}`;
const post = (wire: Buffer, extra: Record<string, string | number> = {}) => ({ path: '/dns-query', body: wire, headers: { 'content-type': 'application/dns-message', ...extra } });

// The same tests for each HTTP/2 implementation a listener may use (`http2 veil|node`).
for (const implementation of HTTP2_IMPLEMENTATIONS) {
  describe(`DoH listener (http2 ${implementation})`, () => {
    let certs: TestCerts;
    let ca: string;
    let veil: TestServer;
    let https: string;
    let plain: string;
    let proxied: string;
    let strict: string;

    before(async () => {
      certs = makeTestCerts();
      ca = readFileSync(certs.ca, 'utf8');
      veil = await startTestServer(
        `. {
    listen https://127.0.0.1:0/dns-query {
      http2 ${implementation}
      cert ${certs.chain}
      key ${certs.key}
      idle_timeout 1s
      max_streams 8
    }
    listen http://127.0.0.1:0/dns-query {
      http2 ${implementation}
      trusted_proxies 127.0.0.0/8 ::1
      idle_timeout 1s
    }
    listen http://127.0.0.2:0/dns-query {
      http2 ${implementation}
      trusted_proxies 10.0.0.0/8
    }
    listen http://127.0.0.3:0/dns-query {
      http2 ${implementation}
      max_connections 2
      idle_timeout 30s
    }
    acl {
      allow *
    }
    hosts {
      192.0.2.10 web.veil.test
      ttl 42
    }
    whoami
  }`,
        { registry: testRegistry([whoamiPlugin]), queryTimeoutMs: 3000 },
      );
      const at = (url: string) => {
        const { port } = veil.address(url);
        return port;
      };
      https = `https://127.0.0.1:${at('https://127.0.0.1:0/dns-query')}`;
      plain = `http://127.0.0.1:${at('http://127.0.0.1:0/dns-query')}`;
      proxied = `http://127.0.0.2:${at('http://127.0.0.2:0/dns-query')}`;
      strict = `http://127.0.0.3:${at('http://127.0.0.3:0/dns-query')}`;
    });
    after(async () => {
      await veil?.stop();
      rmSync(certs.dir, { recursive: true, force: true });
    });

    const assertDnsAnswer = (result: HttpResult, id = 4321) => {
      assert.equal(result.status, 200, result.body.toString());
      assert.equal(result.headers['content-type'], 'application/dns-message');
      assert.equal(result.headers['cache-control'], 'max-age=42');
      assert.equal(dnsPacket.decode(result.body).id, id);
      assert.equal(a(result.body), '192.0.2.10');
    };

    describe('answers', () => {
      it('GET and POST over HTTP/2 with TLS', async () => {
        assertDnsAnswer(await h2Call(https, { path: getPath(query('web.veil.test')) }, { ca }));
        assertDnsAnswer(await h2Call(https, post(query('web.veil.test', 9)), { ca }), 9);
      });

      it('GET and POST over HTTP/1.1 with TLS (ALPN http/1.1)', async () => {
        assertDnsAnswer(await h1Call(https, { path: getPath(query('web.veil.test')) }, { ca }));
        assertDnsAnswer(await h1Call(https, post(query('web.veil.test', 0)), { ca }), 0);
      });

      it('http:// serves h2c (prior knowledge) and HTTP/1.1 on one port', async () => {
        assertDnsAnswer(await h2Call(plain, { path: getPath(query('web.veil.test')) }));
        assertDnsAnswer(await h1Call(plain, post(query('web.veil.test'))));
      });

      it('many concurrent streams on one HTTP/2 session', async () => {
        const session = http2.connect(https, { ca, servername: 'dns.test' });
        // Past the server's max_streams (8) the client queues, once it knows the limit.
        await new Promise((r) => session.once('remoteSettings', r));
        try {
          const results = await Promise.all(Array.from({ length: 40 }, (_, i) => h2Request(session, post(query('web.veil.test', i)))));
          results.forEach((r, i) => assertDnsAnswer(r, i));
        } finally {
          session.close();
        }
      });

      it("POSTs past the session's flow control window keep being answered (the window comes back)", async () => {
        // 160 queries padded to ~500 bytes: ~80 KB on one session, past the 65,535-byte
        // connection window. nghttp2 sends no DATA past the window, so this hangs unless the
        // listener gives the window back as it reads (it does so in steps, not per request).
        const padded = (id: number) => {
          const wire = Buffer.from(query('web.veil.test', id));
          wire.writeUInt16BE(1, 10); // ARCOUNT
          const opt = Buffer.alloc(11 + 4 + 460);
          opt.writeUInt16BE(41, 1); // OPT, root owner name
          opt.writeUInt16BE(1232, 3);
          opt.writeUInt16BE(4 + 460, 9);
          opt.writeUInt16BE(12, 11); // Padding (RFC 7830)
          opt.writeUInt16BE(460, 13);
          return Buffer.concat([wire, opt]);
        };
        const session = http2.connect(plain);
        try {
          for (let batch = 0; batch < 8; batch++) {
            const ids = Array.from({ length: 20 }, (_, i) => batch * 20 + i);
            const results = await Promise.all(ids.map((id) => h2Request(session, post(padded(id)))));
            results.forEach((r, i) => assert.equal(dnsPacket.decode(r.body).id, ids[i]));
          }
        } finally {
          session.close();
        }
      });

      it('the JSON form: ?name=&type= with accept: application/dns-json', async () => {
        const result = await h2Call(https, { path: '/dns-query?name=web.veil.test&type=A', headers: { accept: 'application/dns-json' } }, { ca });
        assert.equal(result.status, 200);
        assert.equal(result.headers['content-type'], 'application/dns-json');
        assert.equal(result.headers['cache-control'], 'max-age=42');
        const doc = JSON.parse(result.body.toString());
        assert.equal(doc.Status, 0);
        assert.deepEqual(doc.Question, [{ name: 'web.veil.test.', type: 1 }]);
        assert.deepEqual(doc.Answer, [{ name: 'web.veil.test.', type: 1, TTL: 42, data: '192.0.2.10' }]);
        const nx = JSON.parse((await h1Call(plain, { path: '/dns-query?name=whoami.test&type=TXT' })).body.toString());
        assert.equal(nx.Answer[0].data, '"127.0.0.1 http"');
      });

      it('the pipeline hears transport https or http', async () => {
        const overTls = await h2Call(https, { path: getPath(query('whoami.test', 1, QType.TXT)) }, { ca });
        assert.equal(txt(overTls.body), '127.0.0.1 https');
      });
    });

    describe('status codes', () => {
      it('400 for malformed base64, a message shorter than a header, a response, a missing parameter', async () => {
        for (const path of ['/dns-query?dns=@@not*base64', '/dns-query?dns=AAAA', '/dns-query?dns=A', '/dns-query', '/dns-query?name=web.veil.test&type=NOPE', '/dns-query?name=a..b']) {
          const result = await h2Call(https, { path }, { ca });
          assert.equal(result.status, 400, path);
        }
        const response = query('web.veil.test');
        response[2] |= 0x80;
        assert.equal((await h2Call(https, { path: getPath(response) }, { ca })).status, 400);
        const garbage = Buffer.from('0102030405060708090a0b0c0d0e0f', 'hex');
        assert.equal((await h1Call(https, post(garbage), { ca })).status, 400);
      });

      it('415 for a POST that is not application/dns-message', async () => {
        const result = await h2Call(https, { path: '/dns-query', body: query('web.veil.test'), headers: { 'content-type': 'application/x-www-form-urlencoded' } }, { ca });
        assert.equal(result.status, 415);
        assert.equal((await h1Call(plain, { path: '/dns-query', body: query('web.veil.test') })).status, 415);
      });

      it('413 for a body over 65535 bytes, announced or streamed', async () => {
        const big = Buffer.alloc(70_000, 1);
        assert.equal((await h2Call(https, post(big), { ca })).status, 413);
        assert.equal((await h1Call(plain, post(big))).status, 413);
        // No content-length: HTTP/1.1 chunked, counted as it arrives.
        assert.equal((await h1Call(plain, post(big, { 'transfer-encoding': 'chunked' }))).status, 413);
      });

      it('405 with Allow for other methods, 404 for other paths', async () => {
        for (const method of ['PUT', 'DELETE', 'PATCH', 'HEAD']) {
          const result = await h2Call(https, { method, path: '/dns-query' }, { ca });
          assert.equal(result.status, 405, method);
          assert.equal(result.headers.allow, 'GET, POST');
        }
        assert.equal((await h1Call(plain, { method: 'OPTIONS', path: '/dns-query' })).status, 405);
        assert.equal((await h2Call(https, { path: `/other?dns=${query('web.veil.test').toString('base64url')}` }, { ca })).status, 404);
      });

      it('DNS errors are DNS answers: a FORMERR in a 200', async () => {
        const withBadOpt = Buffer.concat([query('web.veil.test'), Buffer.from([0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 9])]);
        withBadOpt.writeUInt16BE(1, 10);
        const result = await h2Call(https, post(withBadOpt), { ca });
        assert.equal(result.status, 200);
        assert.equal((result.body[3]! & 0x0f), 1); // FORMERR
        assert.equal(result.headers['cache-control'], 'max-age=0');
      });
    });

    describe('X-Forwarded-For', () => {
      const ask = async (origin: string, forwarded?: string) => {
        const result = await h1Call(origin, { path: getPath(query('whoami.test', 1, QType.TXT)), headers: forwarded ? { 'x-forwarded-for': forwarded } : {} });
        return txt(result.body).split(' ')[0];
      };

      it('is believed from a trusted proxy: the nearest untrusted hop is the client', async () => {
        assert.equal(await ask(plain, '203.0.113.9'), '203.0.113.9');
        assert.equal(await ask(plain, '198.51.100.1, 203.0.113.9, 127.0.0.5'), '203.0.113.9');
        assert.equal(await ask(plain, '[2001:db8::7]:443'), '2001:db8::7');
        assert.equal(await ask(plain), '127.0.0.1');
      });

      it('an unreadable hop ends the walk', async () => {
        assert.equal(await ask(plain, '203.0.113.9, not-an-ip'), '127.0.0.1');
      });

      it('is ignored from anyone else, and on listeners without trusted_proxies', async () => {
        assert.equal(await ask(proxied, '203.0.113.9'), '127.0.0.1');
        const overTls = await h2Call(https, { path: getPath(query('whoami.test', 1, QType.TXT)), headers: { 'x-forwarded-for': '203.0.113.9' } }, { ca });
        assert.equal(txt(overTls.body).split(' ')[0], '127.0.0.1');
      });
    });

    describe('hostile clients', () => {
      const stillServes = async () => assertDnsAnswer(await h2Call(https, { path: getPath(query('web.veil.test')) }, { ca }));

      /** Resolves when the server closes the socket; rejects after `ms`. */
      const closedWithin = (socket: net.Socket, ms: number) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`connection still open after ${ms}ms`)), ms);
          socket.on('close', () => {
            clearTimeout(timer);
            resolve();
          });
          socket.on('error', () => {});
          socket.resume(); // a paused socket would never see the end
        });

      const brokenFrames = Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        // A SETTINGS frame whose length is not a multiple of 6: FRAME_SIZE_ERROR.
        Buffer.from([0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]),
        Buffer.from('garbage that is no frame at all'.repeat(20)),
      ]);

      it('invalid HTTP/2 frames after the preface over plain TCP: the connection is closed', async () => {
        const { port } = new URL(plain);
        const socket = net.connect(Number(port), '127.0.0.1');
        await new Promise((r) => socket.once('connect', r));
        socket.write(brokenFrames);
        await closedWithin(socket, 5000);
        assertDnsAnswer(await h2Call(plain, { path: getPath(query('web.veil.test')) }));
      });

      it('invalid HTTP/2 frames after the preface over TLS: the connection is closed', async () => {
        const { port } = new URL(https);
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca, servername: 'dns.test', ALPNProtocols: ['h2'] });
        await new Promise((r) => socket.once('secureConnect', r));
        assert.equal(socket.alpnProtocol, 'h2');
        socket.write(brokenFrames);
        await closedWithin(socket, 5000);
        await stillServes();
      });

      it('streams that are opened and never finish get 408 or are reset; the server goes on', async () => {
        const session = http2.connect(https, { ca, servername: 'dns.test' });
        session.on('error', () => {});
        const outcomes = await Promise.all(
          Array.from({ length: 20 }, () =>
            new Promise<string>((resolve) => {
              const stream = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, { endStream: false });
              stream.write(Buffer.from([0x12])); // one byte of a body that never completes
              const timer = setTimeout(() => resolve('still open'), 8000);
              stream.on('response', (h) => {
                clearTimeout(timer);
                resolve(String(h[':status']));
                stream.close();
              });
              stream.on('error', () => {
                clearTimeout(timer);
                resolve('reset');
              });
              stream.on('close', () => {
                clearTimeout(timer);
                resolve('reset');
              });
            }),
          ),
        );
        session.destroy();
        assert.ok(!outcomes.includes('still open'), outcomes.join(','));
        // max_streams 8: the first streams waited for their body and got 408; the others were refused.
        assert.ok(outcomes.includes('408'), outcomes.join(','));
        await stillServes();
      });

      it('an HTTP/1.1 body shorter than its content-length: 408, or nothing when the client leaves', async () => {
        const { port } = new URL(plain);
        const head = 'POST /dns-query HTTP/1.1\r\nhost: x\r\ncontent-type: application/dns-message\r\ncontent-length: 100\r\n\r\n';
        const waiting = net.connect(Number(port), '127.0.0.1');
        let reply = '';
        waiting.on('data', (d) => (reply += d));
        waiting.write(head + 'abc');
        await closedWithin(waiting, 5000);
        assert.match(reply, /^HTTP\/1\.1 408 /);

        const leaving = net.connect(Number(port), '127.0.0.1');
        leaving.on('error', () => {});
        leaving.end(head + 'abc');
        await closedWithin(leaving, 5000);
        assertDnsAnswer(await h1Call(plain, post(query('web.veil.test'))));
      });

      it('an HTTP/2 body cut off by the client: no crash', async () => {
        const session = http2.connect(https, { ca, servername: 'dns.test' });
        session.on('error', () => {});
        const stream = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message', 'content-length': '100' }, { endStream: false });
        stream.on('error', () => {});
        stream.write(Buffer.alloc(10));
        await new Promise((r) => setTimeout(r, 50));
        stream.close(http2.constants.NGHTTP2_CANCEL);
        session.destroy();
        await stillServes();
      });

      it('a huge body is cut off early, not buffered', async () => {
        const { port } = new URL(plain);
        const socket = net.connect(Number(port), '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((r) => socket.once('connect', r));
        let reply = '';
        socket.on('data', (d) => (reply += d));
        socket.write('POST /dns-query HTTP/1.1\r\nhost: x\r\ncontent-type: application/dns-message\r\ntransfer-encoding: chunked\r\n\r\n');
        const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 7), Buffer.from('\r\n')]);
        let written = 0;
        const total = 64 * 1024 * 1024;
        const closed = closedWithin(socket, 10_000);
        let open = true;
        socket.on('close', () => (open = false));
        while (open && written < total) {
          if (!socket.write(chunk)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed.catch(() => {})]);
          written += chunk.length;
        }
        await closed;
        assert.match(reply, /^HTTP\/1\.1 413 /);
        assert.ok(written < total, `the server read all ${written} bytes`);
      });

      it('headers over max_header_size are refused', async () => {
        const result = await h1Call(plain, { path: getPath(query('web.veil.test')), headers: { 'x-big': 'a'.repeat(20_000) } }).catch(() => ({ status: 0 }));
        assert.ok(result.status === 431 || result.status === 400 || result.status === 0, String(result.status));
        // HTTP/2: the limit is a setting; once the client has it, a larger header list is refused.
        const session = http2.connect(https, { ca, servername: 'dns.test' });
        session.on('error', () => {});
        await new Promise((r) => session.once('remoteSettings', r));
        assert.equal(session.remoteSettings.maxHeaderListSize, 8192);
        await new Promise((r) => session.ping(r));
        // Veil answers 431 (RFC 9113 §10.5.1); a client that checks the setting itself refuses to send.
        const big = await h2Request(session, { path: getPath(query('web.veil.test')), headers: { 'x-big': 'a'.repeat(20_000) } }, 3000).catch(() => ({ status: 0 }));
        assert.ok(big.status === 431 || big.status === 0, String(big.status));
        session.destroy();
        await stillServes();
      });

      it('an idle connection is closed after idle_timeout', async () => {
        const { port } = new URL(https);
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca, servername: 'dns.test', ALPNProtocols: ['h2'] });
        await new Promise((r) => socket.once('secureConnect', r));
        await closedWithin(socket, 5000);
        const h1 = net.connect(Number(new URL(plain).port), '127.0.0.1');
        await closedWithin(h1, 5000);
      });

      it('at max_connections an idle connection makes room for a new one', async () => {
        const { port } = new URL(strict);
        const idle = await Promise.all(
          [0, 1].map(async () => {
            const s = net.connect(Number(port), '127.0.0.3');
            s.on('error', () => {});
            await new Promise((r) => s.once('connect', r));
            return s;
          }),
        );
        const first = closedWithin(idle[0]!, 5000);
        assertDnsAnswer(await h1Call(strict, { path: getPath(query('web.veil.test')) }));
        await first;
        for (const s of idle) s.destroy();
      });
    });
  });
}

describe('DoH JSON rendering of hostile answers', () => {
  // Found by the doh-json fuzz target: an SOA whose numbers ran past the message made the
  // rendering throw a RangeError (a 500 instead of the answer).
  const soa = (rdata: Buffer) =>
    buildReply(buildQuery('example.org', QType.SOA, { id: 1 }), {
      questionEnd: 29,
      answers: [{ type: QType.SOA, ttl: 60, rdata }],
    });
  const name = (text: string) => Buffer.concat([...text.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);

  it('RDATA that does not hold what its type promises is shown in the generic form', () => {
    const short = soa(Buffer.concat([name('ns.example.org'), name('h.example.org'), Buffer.alloc(8)]));
    const doc = JSON.parse(answerToJson(short)) as { Answer: Array<{ data: string }> };
    assert.match(doc.Answer[0]!.data, /^\\# 39 /);
  });

  it('well-formed RDATA keeps its presentation form', () => {
    const whole = soa(Buffer.concat([name('ns.example.org'), name('h.example.org'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5])]));
    const doc = JSON.parse(answerToJson(whole)) as { Answer: Array<{ data: string }> };
    assert.equal(doc.Answer[0]!.data, 'ns.example.org. h.example.org. 1 2 3 4 5');
  });
});
