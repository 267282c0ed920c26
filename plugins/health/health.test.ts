/**
 * health: /health while the process runs, /ready once listeners are bound and every block can
 * reach an upstream; the server state behind it; sharing an address with metrics.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { ServerState } from '../../core/state.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { InOrderPolicy, UpstreamSet, type Upstream } from '../../core/upstream/upstream.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { startVeil } from '../../test/helpers/veil-process.js';

function healthUrl(veil: TestServer): string {
  const line = veil.logs.find((l) => l.includes('plugin/health: serving http://'));
  assert.ok(line, `no health endpoint in the log:\n${veil.logs.join('\n')}`);
  return /(http:\/\/[^/\s]+)\//.exec(line)![1]!;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/** `markdown NAME…`: a policy that keeps the named upstreams out of rotation. */
const markDownPlugin: PluginDefinition<string[]> = {
  name: 'markdown',
  position: { after: 'loadbalance' },
  provides: [Services.upstreamPolicy],
  parse: (directives) => directives[0]!.args.map((t) => t.text),
  create: (names, scope) => {
    class DownPolicy extends InOrderPolicy {
      override healthy(upstream: Upstream): boolean {
        return !names.includes(upstream.name);
      }
    }
    scope.provide(Services.upstreamPolicy, new DownPolicy());
    return { name: 'markdown' };
  },
};

const upstream = (name: string, usable = true): Upstream => ({
  name,
  protocol: 'udp',
  address: '127.0.0.1:1',
  exchange: () => Promise.reject(new Error('not used')),
  usable,
});

describe('health: /health and /ready', () => {
  it('answers 200 on both once the server serves, with upstreams in rotation', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n health 127.0.0.1:0\n forward . 127.0.0.1:9\n}`, { registry: testRegistry() });
    try {
      const base = healthUrl(veil);
      assert.deepEqual(await get(`${base}/health`), { status: 200, body: 'OK\n' });
      assert.deepEqual(await get(`${base}/ready`), { status: 200, body: 'OK\n' });
      assert.equal((await get(`${base}/metrics`)).status, 404);
    } finally {
      await veil.stop();
    }
  });

  it('a block that needs no upstream is ready', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n health 127.0.0.1:0\n hosts {\n 192.0.2.1 a.test\n }\n}`, { registry: testRegistry() });
    try {
      assert.equal((await get(`${healthUrl(veil)}/ready`)).status, 200);
    } finally {
      await veil.stop();
    }
  });

  it('/ready answers 503 with the reasons while every upstream of a zone is marked down', async () => {
    const veil = await startTestServer(
      `. {
    listen udp://127.0.0.1:0
    health 127.0.0.1:0
    markdown a b
    forward {
        server a udp://127.0.0.1:9
        server b udp://127.0.0.1:10
    }
    forward corp.test {
        server c udp://127.0.0.1:11
    }
}
lan.test {
    markdown d
    forward lan.test {
        server d udp://127.0.0.1:12
    }
}`,
      { registry: testRegistry([markDownPlugin]) },
    );
    try {
      const base = healthUrl(veil);
      assert.equal((await get(`${base}/health`)).status, 200);
      assert.deepEqual(await get(`${base}/ready`), {
        status: 503,
        body: 'block ".": no usable upstream for . (a: marked down, b: marked down)\nblock "lan.test": no usable upstream for lan.test. (d: marked down)\n',
      });
    } finally {
      await veil.stop();
    }
  });

  it('shares an address with metrics: each keeps its paths', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0\n health 127.0.0.1:0\n hosts {\n 192.0.2.1 a.test\n }\n}`, { registry: testRegistry() });
    try {
      const base = healthUrl(veil);
      assert.equal((await get(`${base}/ready`)).status, 200);
      const metrics = await get(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /^veil_build_info\{/m);
    } finally {
      await veil.stop();
    }
    await assert.rejects(fetch(`${healthUrl(veil)}/health`), 'the endpoint closes with the server');
  });
});

describe('server state: readiness', () => {
  const block = (server: string, upstreams: Upstream[], policy = new InOrderPolicy()) => {
    const set = new UpstreamSet();
    for (const u of upstreams) set.add(u);
    return { server, upstreams: set, policy };
  };

  it('is not ready before every listener is bound, then is', () => {
    const state = new ServerState();
    state.activate([block('.', [upstream('a')])], ['udp://127.0.0.1:53', 'tcp://127.0.0.1:53'], false);
    assert.deepEqual(state.readiness(), { ready: false, reasons: ['not listening yet on udp://127.0.0.1:53, tcp://127.0.0.1:53'] });
    state.listenerBound('udp://127.0.0.1:53');
    assert.deepEqual(state.readiness(), { ready: false, reasons: ['not listening yet on tcp://127.0.0.1:53'] });
    state.listenerBound('tcp://127.0.0.1:53');
    assert.deepEqual(state.readiness(), { ready: true, reasons: [] });
  });

  it('names upstreams that cannot take queries, and is ready when one of a zone can', () => {
    const state = new ServerState();
    state.activate([block('.', [upstream('x', false)])], [], true);
    assert.deepEqual(state.readiness().reasons, ['block ".": no usable upstream for . (x: not usable)']);
    state.activate([block('.', [upstream('x', false), upstream('y')])], [], true);
    assert.equal(state.readiness().ready, true);
  });

  it('is not ready once stopping', () => {
    const state = new ServerState();
    state.activate([], ['udp://127.0.0.1:53'], true);
    assert.equal(state.readiness().ready, true);
    state.stopping();
    assert.deepEqual(state.readiness(), { ready: false, reasons: ['shutting down'] });
  });

  it('the running server keeps it: not ready after stop begins', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n hosts {\n 192.0.2.1 a.test\n }\n}`, { registry: testRegistry() });
    assert.equal(veil.server.state.readiness().ready, true);
    await veil.stop();
    assert.equal(veil.server.state.readiness().ready, false);
  });
});

describe('health under a slowloris (bin/veil)', () => {
  /** A client at `localAddress` that opens a connection and sends part of a request's headers, forever. */
  function slowClient(port: number, localAddress: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
        socket.write('GET /health HTTP/1.1\r\nHost: veil\r\nX-Slow: ');
        resolve({ socket, closed: new Promise((done) => socket.once('close', () => done())) });
      });
      socket.on('error', () => {});
      socket.once('error', reject);
    });
  }

  /** One GET, on a connection of its own, with no retry. */
  function getOnce(port: number, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
    });
  }

  it('issue 24 low: 70 clients that never finish their headers do not keep /health from answering, and are closed by the header deadline', async () => {
    const veil = await startVeil('. {\n  listen udp://127.0.0.1:0\n  health 127.0.0.1:0\n  hosts {\n    192.0.2.1 a.veil.test\n  }\n}\n');
    try {
      await veil.waitFor(/serving http:\/\/127\.0\.0\.1:\d+\/health/);
      const port = Number(/serving http:\/\/127\.0\.0\.1:(\d+)\/health/.exec(veil.stderr())![1]);
      // 70 clients, each from an address of its own (127.0.0.0/8 is all loopback): more than the
      // endpoint's 64 connections, and none over its 8 per client.
      const slow = [];
      for (let i = 0; i < 70; i++) slow.push(await slowClient(port, `127.0.1.${i + 1}`));
      // Before the fix the 65th connection was closed at once, and /health with it, for as long
      // as the slow clients held on (Node checked header deadlines every 30 s).
      for (let i = 0; i < 3; i++) assert.deepEqual(await getOnce(port, '/health'), { status: 200, body: 'OK\n' });
      // Every slow client is closed in the end: the oldest to make room, the rest by the deadline.
      await Promise.all(slow.map((s) => s.closed));
      assert.deepEqual(await getOnce(port, '/ready'), { status: 200, body: 'OK\n' });
    } finally {
      await veil.stop();
    }
  });
});
