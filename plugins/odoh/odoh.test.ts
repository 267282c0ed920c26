/**
 * ODoH's target, relay and client, in one process, against hostile peers: a relay that alters,
 * cuts or replays answers (the client moves to the next relay, or answers SERVFAIL, never
 * something wrong), a target whose key changed (401: configs fetched again), and requests a
 * relay or target must refuse (other targets, other media types, oversized, replayed, cut
 * off, too many). A scripted target records what the relay passes on: no client header.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeStamp } from '../../lib/stamps.js';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, Rcode } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { rcodeOf } from '../../core/dns/wire.js';
import { queryUdp } from '../../core/testing/client.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { parseConfigs } from '../../lib/odoh/configs.js';
import { TargetKeyRing } from '../../lib/odoh/key-ring.js';
import { sealQuery } from '../../lib/odoh/crypto.js';
import { OBLIVIOUS_MEDIA_TYPE, parseMessage } from '../../lib/odoh/message.js';
import { createBuiltinRegistry } from '../index.js';
import { h2Call, type HttpResult } from '../../test/helpers/doh-client.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';

interface Scripted {
  port: number;
  seen: Array<{ method: string; path: string; headers: http2.IncomingHttpHeaders; body: Buffer }>;
  close(): Promise<void>;
}

type Handler = (req: { method: string; path: string; headers: http2.IncomingHttpHeaders; body: Buffer }) => Promise<{ status: number; headers?: Record<string, string>; body?: Buffer }>;

/** An HTTP/2 server for dns.test on 127.0.0.1 that answers as `handler` says. */
async function scripted(certs: TestCerts, handler: Handler): Promise<Scripted> {
  const seen: Scripted['seen'] = [];
  const server = http2.createSecureServer({ cert: readFileSync(certs.chain), key: readFileSync(certs.key) });
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const req = { method: String(headers[':method']), path: String(headers[':path']), headers, body: Buffer.concat(chunks) };
      seen.push(req);
      handler(req).then(
        (reply) => {
          if (stream.destroyed) return;
          stream.respond({ ':status': reply.status, ...(reply.headers ?? {}) });
          stream.end(reply.body ?? Buffer.alloc(0));
        },
        () => stream.destroyed || stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
      );
    });
    stream.on('error', () => {});
  });
  server.on('sessionError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const firstA = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;

describe('ODoH against hostile peers', () => {
  let certs: TestCerts;
  let ca: string;
  let target: TestServer;
  let relay: TestServer;
  let recorder: Scripted;
  let evil: Scripted;
  let targetOrigin = '';
  let relayOrigin = '';
  let targetPort = 0;
  /** What the evil relay does to the target's answer next. */
  let mischief: 'flip' | 'cut' | 'replay' | 'query back' | 'honest' | '401 once' = 'honest';
  let lastAnswer: Buffer | null = null;
  let evilConfigFetches = 0;
  const registry = createBuiltinRegistry();

  before(async () => {
    certs = makeTestCerts();
    ca = readFileSync(certs.ca, 'utf8');
    target = await startTestServer(
      `. {
    listen https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
        odoh_target
    }
    hosts {
        192.0.2.7 hidden.odoh.test
        192.0.2.8 other.odoh.test
    }
}`,
      { registry },
    );
    targetPort = target.address('https://127.0.0.1:0/dns-query').port;
    targetOrigin = `https://127.0.0.1:${targetPort}`;
    recorder = await scripted(certs, async () => ({ status: 200, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE }, body: Buffer.from([2, 0, 0, 0, 1, 0]) }));
    relay = await startTestServer(
      `. {
    listen https://127.0.0.2:0/proxy {
        cert ${certs.chain}
        key ${certs.key}
        odoh_relay {
            target dns.test:${targetPort} 127.0.0.1
            target localhost:${recorder.port} 127.0.0.1
            allow_private
            ca ${certs.ca}
            rate 200
        }
    }
}`,
      { registry },
    );
    relayOrigin = `https://127.0.0.2:${relay.address('https://127.0.0.2:0/proxy').port}`;
    // A relay that passes requests to the target and does `mischief` to the answers.
    evil = await scripted(certs, async (req) => {
      const url = new URL(req.path, 'https://x');
      const path = url.searchParams.get('targetpath')!;
      if (req.method === 'GET') {
        evilConfigFetches++;
        const r = await h2Call(targetOrigin, { method: 'GET', path }, { ca });
        return { status: r.status, body: r.body };
      }
      if (mischief === '401 once') {
        mischief = 'honest';
        return { status: 401, body: Buffer.from('unauthorized') };
      }
      if (mischief === 'query back') return { status: 200, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE }, body: req.body };
      const r = await h2Call(targetOrigin, { path, body: req.body, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE } }, { ca });
      let body = r.body;
      if (mischief === 'flip') body = Buffer.from(body).fill(body[body.length - 1]! ^ 1, body.length - 1);
      if (mischief === 'cut') body = body.subarray(0, body.length - 5);
      if (mischief === 'replay' && lastAnswer) body = lastAnswer;
      lastAnswer = r.body;
      return { status: r.status, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE }, body };
    });
  });

  after(async () => {
    await relay?.stop();
    await target?.stop();
    await recorder?.close();
    await evil?.close();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  const client = (relays: string, route: string) =>
    startTestServer(
      `. {
    listen udp://127.0.0.1:0
    odoh {
        server t https://dns.test:${targetPort}/dns-query {
            timeout 3s
        }
${relays}
        route t via ${route}
    }
}`,
      { registry, queryTimeoutMs: 4000 },
    );
  const evilLine = () => `        relay evil https://dns.test:${evil.port}/proxy {\n            bootstrap 127.0.0.1\n            ca ${certs.ca}\n        }`;
  const goodLine = () => `        relay good https://dns.test:${relayOrigin.split(':')[2]}/proxy {\n            bootstrap 127.0.0.2\n            ca ${certs.ca}\n        }`;
  const ask = async (server: TestServer, name = 'hidden.odoh.test') => queryUdp('127.0.0.1', server.address('udp://127.0.0.1:0').port, buildQuery(name, QType.A, { id: 99 }), 6000);

  it('an answer a relay altered, cut, replayed or swapped for the query never reaches the client: SERVFAIL with no other relay', async () => {
    const veil = await client(evilLine(), 'evil');
    try {
      mischief = 'honest';
      assert.equal(firstA(await ask(veil)), '192.0.2.7', 'an honest pass works');
      for (const m of ['flip', 'cut', 'replay', 'query back'] as const) {
        mischief = m;
        const answer = await ask(veil, m === 'replay' ? 'other.odoh.test' : 'hidden.odoh.test');
        assert.equal(rcodeOf(answer), Rcode.SERVFAIL, m);
      }
    } finally {
      mischief = 'honest';
      await veil.stop();
    }
  });

  it('with a second relay in the route, the query goes on to it and is answered', async () => {
    const veil = await client(`${evilLine()}\n${goodLine()}`, 'evil good');
    try {
      mischief = 'flip';
      for (let i = 0; i < 3; i++) assert.equal(firstA(await ask(veil)), '192.0.2.7');
    } finally {
      mischief = 'honest';
      await veil.stop();
    }
  });

  it('a 401 (the target changed keys) makes the client fetch the configs again and retry', async () => {
    const veil = await client(evilLine(), 'evil');
    try {
      assert.equal(firstA(await ask(veil)), '192.0.2.7');
      const before = evilConfigFetches;
      mischief = '401 once';
      assert.equal(firstA(await ask(veil)), '192.0.2.7');
      assert.equal(evilConfigFetches, before + 1, 'one more config fetch');
    } finally {
      mischief = 'honest';
      await veil.stop();
    }
  });

  describe('the target', () => {
    const configs = async () => parseConfigs((await h2Call(targetOrigin, { path: '/.well-known/odohconfigs' }, { ca })).body).usable[0]!;
    const postOblivious = (body: Buffer): Promise<HttpResult> => h2Call(targetOrigin, { path: '/dns-query', body, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE } }, { ca });

    it('serves its configs with a lifetime', async () => {
      const r = await h2Call(targetOrigin, { path: '/.well-known/odohconfigs' }, { ca });
      assert.equal(r.status, 200);
      assert.match(String(r.headers['cache-control']), /^max-age=\d+$/);
      assert.equal(parseConfigs(r.body).usable.length, 1);
    });

    it('refuses an unknown key id (401), a cut or altered query and a replay (400)', async () => {
      const config = await configs();
      const { message } = await sealQuery(config, buildQuery('hidden.odoh.test', QType.A, { id: 0 }));
      const otherKey = Buffer.from(message);
      otherKey[3]! ^= 0xff;
      assert.equal((await postOblivious(otherKey)).status, 401);
      assert.equal((await postOblivious(message.subarray(0, message.length - 3))).status, 400);
      const altered = Buffer.from(message);
      altered[altered.length - 1]! ^= 1;
      assert.equal((await postOblivious(altered)).status, 400);
      const first = await postOblivious(message);
      assert.equal(first.status, 200);
      assert.equal(parseMessage(first.body).type, 2);
      const again = await postOblivious(message);
      assert.equal(again.status, 400);
      assert.match(again.body.toString(), /seen already/);
    });

    it('still speaks plain DoH on the same path', async () => {
      const r = await h2Call(targetOrigin, { path: '/dns-query', body: buildQuery('hidden.odoh.test', QType.A, { id: 5 }), headers: { 'content-type': 'application/dns-message' } }, { ca });
      assert.equal(r.status, 200);
      assert.equal(firstA(r.body), '192.0.2.7');
    });
  });

  describe('the relay', () => {
    const through = (host: string, extra: Partial<{ method: string; body: Buffer; headers: Record<string, string | number>; path: string }> = {}) =>
      h2Call(
        relayOrigin,
        {
          method: extra.method ?? 'POST',
          path: extra.path ?? `/proxy?targethost=${encodeURIComponent(host)}&targetpath=%2Fdns-query`,
          ...(extra.body ? { body: extra.body } : {}),
          headers: extra.headers ?? { 'content-type': OBLIVIOUS_MEDIA_TYPE },
        },
        { ca },
      );
    const someQuery = async () => (await sealQuery(parseConfigs((await h2Call(targetOrigin, { path: '/.well-known/odohconfigs' }, { ca })).body).usable[0]!, buildQuery('hidden.odoh.test', QType.A, { id: 0 }))).message;

    it('refuses targets that are not on its list, and requests without one', async () => {
      const body = await someQuery();
      assert.equal((await through('evil.example', { body })).status, 403);
      assert.equal((await through(`127.0.0.1:${targetPort}`, { body })).status, 403, 'an address is not the listed name');
      assert.equal((await through('', { body, path: '/proxy?targetpath=%2Fdns-query' })).status, 400);
      assert.equal((await through('', { body, path: `/proxy?targethost=dns.test:${targetPort}&targethost=dns.test:${targetPort}&targetpath=%2Fdns-query` })).status, 400);
      assert.equal((await through('', { body, path: `/proxy?targethost=dns.test:${targetPort}&targetpath=..%2Fx` })).status, 400);
    });

    it('takes oblivious queries only: other media types, bodies that are not one, oversized ones', async () => {
      const host = `dns.test:${targetPort}`;
      assert.equal((await through(host, { body: buildQuery('hidden.odoh.test', QType.A, { id: 1 }), headers: { 'content-type': 'application/dns-message' } })).status, 415);
      assert.equal((await through(host, { body: Buffer.from('not an oblivious message') })).status, 400);
      assert.equal((await through(host, { body: Buffer.alloc(10), headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE, 'content-length': 200_000 } }).catch(() => ({ status: 413 }))).status, 413);
      assert.equal((await through(host, { method: 'PUT' })).status, 405);
      assert.equal((await through(host, { method: 'GET' })).status, 405, 'GET only for the configs');
    });

    it('passes a query on and the answer back; the configs too', async () => {
      const r = await through(`dns.test:${targetPort}`, { body: await someQuery() });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], OBLIVIOUS_MEDIA_TYPE);
      assert.equal(parseMessage(r.body).type, 2);
      const c = await through(`dns.test:${targetPort}`, { method: 'GET', path: `/proxy?targethost=dns.test:${targetPort}&targetpath=%2F.well-known%2Fodohconfigs` });
      assert.equal(c.status, 200);
      assert.equal(parseConfigs(c.body).usable.length, 1);
    });

    it("passes the target's 401 back as it is", async () => {
      const body = Buffer.from(await someQuery());
      body[3]! ^= 0xff;
      const r = await through(`dns.test:${targetPort}`, { body });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['proxy-status']), /received-status=401/);
    });

    it("passes on nothing of the client's request: no forwarding header, cookie or user agent", async () => {
      const r = await through(`localhost:${recorder.port}`, {
        body: await someQuery(),
        headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE, 'x-forwarded-for': '198.51.100.9', cookie: 'id=client', 'user-agent': 'client/1.0', forwarded: 'for=198.51.100.9', via: '1.1 client' },
      });
      assert.equal(r.status, 200);
      const headers = recorder.seen.at(-1)!.headers;
      for (const name of ['x-forwarded-for', 'cookie', 'user-agent', 'forwarded', 'via']) assert.equal(headers[name], undefined, name);
      assert.equal(recorder.seen.at(-1)!.headers[':authority'], `localhost:${recorder.port}`);
    });
  });

  it('targets_from: listed targets are served, their addresses found through the relay\'s own block, private ones only with allow_private', async () => {
    const list = path.join(certs.dir, 'odoh-servers.md');
    writeFileSync(list, `# ODoH targets\n\n## test-target\nA target for the test.\n${encodeStamp({ protocol: 'odohTarget', props: { dnssec: false, noLogs: true, noFilter: true }, host: `dns.test:${targetPort}`, path: '/dns-query' })}\n`);
    const relayWith = (allowPrivate: boolean) =>
      startTestServer(
        `. {\n    listen https://127.0.0.2:0/proxy {\n        cert ${certs.chain}\n        key ${certs.key}\n        odoh_relay {\n            targets_from ${list}\n            ca ${certs.ca}\n${allowPrivate ? '            allow_private\n' : ''}        }\n    }\n    hosts {\n        127.0.0.1 dns.test\n    }\n}`,
        { registry },
      );
    const configsThrough = async (server: TestServer) =>
      h2Call(`https://127.0.0.2:${server.address('https://127.0.0.2:0/proxy').port}`, { method: 'GET', path: `/proxy?targethost=dns.test:${targetPort}&targetpath=%2F.well-known%2Fodohconfigs` }, { ca });
    const open = await relayWith(true);
    try {
      const r = await configsThrough(open);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(parseConfigs(r.body).usable.length, 1);
    } finally {
      await open.stop();
    }
    const closed = await relayWith(false);
    try {
      const r = await configsThrough(closed);
      assert.equal(r.status, 502);
      assert.match(String(r.headers['proxy-status']), /dns_error/);
      assert.match(r.body.toString(), /addresses a relay may not send to/);
    } finally {
      await closed.stop();
    }
  });

  it('targets and relays by name from odoh-servers.md / odoh-relays.md lists, and servers_from', async () => {
    const relayPort = relayOrigin.split(':')[2]!;
    writeFileSync(
      path.join(certs.dir, 'odoh-servers.md'),
      `# ODoH servers\n\n## listed-target\nTest target.\n${encodeStamp({ protocol: 'odohTarget', props: { dnssec: false, noLogs: true, noFilter: true }, host: `dns.test:${targetPort}`, path: '/dns-query' })}\n`,
    );
    writeFileSync(
      path.join(certs.dir, 'odoh-relays.md'),
      `# ODoH relays\n\n## listed-relay\nTest relay.\n${encodeStamp({ protocol: 'odohRelay', props: { dnssec: false, noLogs: true, noFilter: false }, address: `127.0.0.2:${relayPort}`, hashes: [], host: `dns.test:${relayPort}`, path: '/proxy', bootstrap: [] })}\n`,
    );
    for (const servers of ['server listed-target', 'servers_from odoh-servers']) {
      const veil = await startTestServer(
        `. {
    listen udp://127.0.0.1:0
    sources {
        list odoh-servers ${path.join(certs.dir, 'odoh-servers.md')}
        list odoh-relays ${path.join(certs.dir, 'odoh-relays.md')}
    }
    odoh {
        ${servers}
        relay listed-relay {
            ca ${certs.ca}
        }
        route * via listed-relay
    }
}`,
        { registry, queryTimeoutMs: 4000 },
      );
      try {
        const answer = await ask(veil);
        assert.equal(firstA(answer), "192.0.2.7", `${servers}: ${veil.logs.join("\n")}`);
      } finally {
        await veil.stop();
      }
    }
  });

  it('too many requests from one client address are refused (429)', async () => {
    const limited = await startTestServer(
      `. {\n    listen https://127.0.0.2:0/proxy {\n        cert ${certs.chain}\n        key ${certs.key}\n        odoh_relay {\n            target dns.test:${targetPort} 127.0.0.1\n            allow_private\n            ca ${certs.ca}\n            rate 2\n        }\n    }\n}`,
      { registry },
    );
    try {
      const origin = `https://127.0.0.2:${limited.address('https://127.0.0.2:0/proxy').port}`;
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await h2Call(origin, { method: 'GET', path: `/proxy?targethost=dns.test:${targetPort}&targetpath=%2F.well-known%2Fodohconfigs` }, { ca })).status);
      assert.deepEqual(statuses.slice(0, 2), [200, 200]);
      assert.ok(statuses.slice(2).includes(429), statuses.join(' '));
    } finally {
      await limited.stop();
    }
  });
});

describe('the target key ring', () => {
  it('publishes the newest key, accepts the one it replaced for the overlap, then refuses it', async () => {
    let now = 0;
    const ring = new TargetKeyRing({ seed: null, rotateMs: 3_600_000, overlapMs: 60_000 }, () => now);
    await ring.start();
    try {
      const first = ring.current!.config;
      assert.deepEqual(parseConfigs(ring.configs).usable[0]!.keyId, first.keyId);
      await ring.rotate();
      const second = ring.current!.config;
      assert.notDeepEqual(second.keyId, first.keyId);
      assert.deepEqual(parseConfigs(ring.configs).usable[0]!.keyId, second.keyId, 'only the newest is published');
      assert.ok(ring.find(first.keyId), 'the replaced key during the overlap');
      now += 60_001;
      assert.equal(ring.find(first.keyId), null, 'and not after');
      assert.ok(ring.find(second.keyId));
    } finally {
      ring.stop();
    }
  });

  it('a key file is not rotated on a schedule; a reload with another file replaces it, with overlap', async () => {
    let now = 0;
    const seedA = Buffer.alloc(32, 1);
    const seedB = Buffer.alloc(32, 2);
    const ring = new TargetKeyRing({ seed: seedA, rotateMs: 3_600_000, overlapMs: 60_000 }, () => now);
    await ring.start();
    try {
      const a = ring.current!.config.keyId;
      await ring.update({ seed: seedA, rotateMs: 3_600_000, overlapMs: 60_000 });
      assert.deepEqual(ring.current!.config.keyId, a, 'the same file keeps its key');
      await ring.update({ seed: seedB, rotateMs: 3_600_000, overlapMs: 60_000 });
      assert.notDeepEqual(ring.current!.config.keyId, a);
      assert.ok(ring.find(a));
      now += 60_001;
      assert.equal(ring.find(a), null);
    } finally {
      ring.stop();
    }
  });
});
