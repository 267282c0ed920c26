/**
 * Server-wide services live in each server's root container (core/services.ts), not in module
 * globals: two servers in one process keep their own metrics, operator endpoints and TLS
 * contexts; a reload keeps the server's; a test replaces one in the root container.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { QType, Rcode } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { rcodeOf } from '../core/dns/wire.js';
import { queryUdp } from '../core/testing/client.js';
import { inject } from '../core/testing/inject.js';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { HttpEndpointsService, type HttpAddress, type HttpEndpoints, type HttpRoute } from '../lib/http-endpoints.js';
import { TlsContexts, TlsContextsService } from '../lib/tls/contexts.js';
import { MetricsHubService } from '../plugins/metrics/hub.js';
import { startFakeDot, type FakeDot } from './helpers/fake-dot.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

let nextId = 1;
const ask = (server: TestServer, name: string) => {
  const { host, port } = server.address('udp://127.0.0.1:0');
  return queryUdp(host, port, buildQuery(name, QType.A, { id: nextId++ }), 5000);
};

/** Where the server said it serves `path` (`serving http://127.0.0.1:PORT/metrics`). */
function servedAt(server: TestServer, path: string): string {
  const line = server.logs.find((l) => l.includes(`serving http://`) && l.includes(path));
  assert.ok(line, `no "serving …${path}" line in\n${server.logs.join('\n')}`);
  return /http:\/\/([^/\s]+)/.exec(line)![1]!;
}

const block = (zone: string, directives: string) => `${zone} {\n  listen udp://127.0.0.1:0\n  hosts {\n    192.0.2.1 www.${zone}\n  }\n${directives}\n}`;

describe('two servers in one process', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const server of servers) await server.stop();
  });

  it('count their own queries, each on its own /metrics, and a reload keeps the counts', async () => {
    const a = await startTestServer(block('a.test', '  metrics 127.0.0.1:0'), { registry: testRegistry() });
    servers.push(a);
    const b = await startTestServer(block('b.test', '  metrics 127.0.0.1:0'), { registry: testRegistry() });
    servers.push(b);
    assert.equal(rcodeOf((await ask(a, 'www.a.test'))!), Rcode.NOERROR);
    assert.equal(rcodeOf((await ask(b, 'www.b.test'))!), Rcode.NOERROR);
    const aAt = servedAt(a, '/metrics');
    const bAt = servedAt(b, '/metrics');
    // Both said port 0: each bound its own rather than joining the other's.
    assert.notEqual(aAt, bAt);
    const scrape = async (at: string) => (await fetch(`http://${at}/metrics`)).text();
    const requests = (text: string, server: string) => [...text.matchAll(new RegExp(`^veil_dns_requests_total\\{server="${server}"[^}]*\\} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
    const fromA = await scrape(aAt);
    assert.equal(requests(fromA, 'a.test'), 1);
    assert.doesNotMatch(fromA, /server="b\.test"/);
    const fromB = await scrape(bAt);
    assert.equal(requests(fromB, 'b.test'), 1);
    assert.doesNotMatch(fromB, /server="a\.test"/);

    const hub = a.server.services.get(MetricsHubService);
    assert.notEqual(hub, b.server.services.get(MetricsHubService));
    assert.equal(await a.reload(block('a.test', '  metrics 127.0.0.1:0\n  cache')), true);
    assert.equal(a.server.services.get(MetricsHubService), hub);
    await ask(a, 'www.a.test');
    assert.equal(requests(await scrape(aAt), 'a.test'), 2);
  });

  it('a second server cannot take over the operator endpoint the first one holds', async () => {
    const a = await startTestServer(block('a.test', '  health 127.0.0.1:0'), { registry: testRegistry() });
    servers.push(a);
    const at = servedAt(a, '/health');
    await assert.rejects(startTestServer(block('b.test', `  health ${at}`), { registry: testRegistry() }), /health: cannot listen on .*: the address is in use/);
    assert.equal((await fetch(`http://${at}/ready`)).status, 200);
  });
});

describe('a test replaces a server-wide service in the root container', () => {
  let certs: TestCerts;
  let origin: FakeDot;
  before(async () => {
    certs = makeTestCerts();
    origin = await startFakeDot({ cert: certs.chain, key: certs.key });
  });
  after(async () => {
    await origin.close();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  it('TLS contexts: a server trusting the test CA by default verifies the upstream; another in the same process does not', async () => {
    const corefile = `. {\n  listen udp://127.0.0.1:0\n  dot {\n    server origin tls://127.0.0.1:${origin.port} {\n      server_name dns.test\n    }\n  }\n}`;
    const ca = readFileSync(certs.ca, 'utf8');
    class TestAnchors extends TlsContexts {
      override defaultAnchors(): string[] {
        return [ca];
      }
    }
    const trusting = await startTestServer(corefile, { registry: testRegistry(), services: (root) => root.provide(TlsContextsService, new TestAnchors()) });
    const plain = await startTestServer(corefile, { registry: testRegistry() });
    try {
      assert.equal(rcodeOf((await ask(trusting, 'www.example.test'))!), Rcode.NOERROR);
      assert.equal(origin.queries.length, 1);
      assert.equal(rcodeOf((await ask(plain, 'www.example.test'))!), Rcode.SERVFAIL);
      assert.equal(origin.queries.length, 1);
      assert.ok(plain.logs.some((l) => /certificate rejected/.test(l)), plain.logs.join('\n'));
    } finally {
      await trusting.stop();
      await plain.stop();
    }
  });

  it('HTTP endpoints: health opens its paths through the one provided, and binds nothing', async () => {
    const opened: Array<{ address: HttpAddress; routes: Record<string, HttpRoute> }> = [];
    let released = 0;
    const fake: HttpEndpoints = {
      async open(address, routes) {
        opened.push({ address, routes });
        return { bound: '192.0.2.9:8080', first: true, release: async () => void released++ };
      },
    };
    const veil = await inject('. {\n  health 127.0.0.1:1\n  hosts {\n    192.0.2.1 a.test\n  }\n}', { registry: testRegistry(), services: (root) => root.provide(HttpEndpointsService, fake) });
    assert.deepEqual(
      opened.map((o) => [o.address, Object.keys(o.routes)]),
      [[{ host: '127.0.0.1', port: 1 }, ['/health', '/ready']]],
    );
    assert.equal((await opened[0]!.routes['/health']!()).status, 200);
    assert.ok(veil.logs.some((l) => l.includes('serving http://192.0.2.9:8080/health')), veil.logs.join('\n'));
    await veil.stop();
    assert.equal(released, 1);
  });
});
