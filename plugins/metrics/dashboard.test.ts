/**
 * The live page, in a real browser: Debian's chromium driven by playwright-core loads
 * `metrics { dashboard }` from a running bin/veil after a known query mix (answers from an
 * encrypted DoH upstream and its cache, blocked names, a hosts name, and a zone forwarded in
 * plaintext to a LAN server), and the numbers it shows must be those /metrics shows. The
 * screenshot is kept in test-artifacts/ (docs/dashboard.png is one of them).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer } from '../../core/testing/server.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { startFakeDoh, type FakeDoh } from '../../test/helpers/fake-doh.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';
import { ROOT, startVeil, type VeilProcess } from '../../test/helpers/veil-process.js';

const CHROMIUM = '/usr/bin/chromium';
let playwright: typeof import('playwright-core') | null = null;
try {
  playwright = await import('playwright-core');
} catch {
  playwright = null;
}
const skip = !existsSync(CHROMIUM) ? `skipped: ${CHROMIUM} not installed (apt-get install chromium)` : !playwright ? 'skipped: playwright-core not installed' : false;

/** `name{labels} value` lines whose name is `metric`, summed (optionally only those whose labels match). */
function total(exposition: string, metric: string, labels = ''): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('dashboard in headless chromium', { skip }, () => {
  let certs: TestCerts;
  let doh: FakeDoh;
  let lan: FakeDns;
  let veil: VeilProcess;
  let userData: string;

  before(async () => {
    certs = makeTestCerts();
    doh = await startFakeDoh({ cert: certs.chain, key: certs.key });
    lan = await startFakeDns();
    veil = await startVeil(`. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    metrics 127.0.0.1:0 {
        dashboard 127.0.0.1:0
    }
    filter {
        block ads.example tracker.example
    }
    hosts {
        192.0.2.7 printer.home.arpa
    }
    cache 1000
    doh {
        server cloud https://127.0.0.1:${doh.port}/dns-query {
            ca ${certs.ca}
        }
    }
}

corp.lan {
    metrics 127.0.0.1:0 {
        dashboard 127.0.0.1:0
    }
    forward . 127.0.0.1:${lan.port}
}`);
    const udp = veil.address('udp');
    const tcp = veil.address('tcp');
    // The known mix: 3 names over DoH, each asked 3 times (6 cache hits), 2 blocked, 1 from hosts, 2 to the LAN in plaintext.
    let id = 1;
    for (const name of ['www.example', 'mail.example', 'news.example']) {
      for (let i = 0; i < 3; i++) await queryUdp(udp.host, udp.port, buildQuery(name, QType.A, { id: id++ }));
    }
    await queryUdp(udp.host, udp.port, buildQuery('ads.example', QType.A, { id: id++ }));
    await queryTcp(tcp.host, tcp.port, [buildQuery('tracker.example', QType.AAAA, { id: id++ })]);
    await queryUdp(udp.host, udp.port, buildQuery('printer.home.arpa', QType.A, { id: id++ }));
    await queryUdp(udp.host, udp.port, buildQuery('wiki.corp.lan', QType.A, { id: id++ }));
    await queryUdp(udp.host, udp.port, buildQuery('git.corp.lan', QType.A, { id: id++ }));
    userData = mkdtempSync(path.join(tmpdir(), 'veil-chromium-'));
  });

  after(async () => {
    await veil?.stop();
    await doh?.close();
    await lan?.close();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
    if (userData) rmSync(userData, { recursive: true, force: true });
  });

  it('shows the numbers /metrics shows, the upstreams, the blocked lists and the privacy picture; screenshot kept', async () => {
    const dashboardUrl = /serving the dashboard at (http:\/\/\S+\/)/.exec(veil.stderr())![1]!;
    const metricsUrl = /serving (http:\/\/\S+\/metrics)/.exec(veil.stderr())![1]!;
    const exposition = await (await fetch(metricsUrl)).text();
    const expected = {
      queries: total(exposition, 'veil_dns_requests_total'),
      hits: total(exposition, 'veil_cache_hits_total'),
      blocked: total(exposition, 'veil_filter_blocked_total'),
      cloud: total(exposition, 'veil_upstream_requests_total', 'upstream="cloud"'),
      lan: total(exposition, 'veil_upstream_requests_total', 'protocol="udp"'),
    };
    // The mix, as /metrics counts it: the page must agree with these, not with our arithmetic.
    assert.deepEqual(expected, { queries: 14, hits: 6, blocked: 2, cloud: 3, lan: 2 });

    const context = await playwright!.chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1100, height: 900 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await context.newPage();
      const outside: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith(dashboardUrl)) outside.push(request.url());
      });
      const response = await page.goto(dashboardUrl);
      assert.equal(response!.status(), 200);
      assert.match(response!.headers()['content-security-policy'] ?? '', /default-src 'none'/);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
      const text = async (selector: string) => ((await page.textContent(selector)) ?? '').replace(/,/g, '').trim();
      assert.equal(Number(await text('#queries-total')), expected.queries);
      assert.equal(Number(await text('#cache-hits-total')), expected.hits);
      assert.equal(Number(await text('#blocked-total')), expected.blocked);
      assert.equal(Number(await text('tr[data-upstream="cloud"] .requests')), expected.cloud);
      assert.equal(await text('tr[data-upstream="cloud"] td:nth-child(2)'), 'doh');
      assert.equal(await text('tr[data-upstream="cloud"] td:nth-child(3)'), 'up');
      assert.match(await text('tr[data-upstream="cloud"] .p50'), /^[\d.]+ ms$/);
      // Privacy: DoH attempts left encrypted; the LAN zone's left in plaintext, and the page says so loudly.
      assert.equal(await text('#privacy-encrypted li[data-protocol="DoH"]'), `DoH: ${expected.cloud}`);
      assert.equal(await page.getAttribute('#privacy-plaintext', 'class'), 'plaintext-alarm');
      assert.match(await text('#privacy-plaintext'), new RegExp(`^${expected.lan} queries left IN PLAINTEXT`));
      assert.match(await text('#privacy-plaintext'), new RegExp(`127\\.0\\.0\\.1:${lan.port}: 2`));
      assert.equal(Number(await text('tr[data-list] td.num')), expected.blocked);
      assert.deepEqual(outside, [], 'the page asked nothing of anyone but Veil');
      const artifacts = path.join(ROOT, 'test-artifacts');
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
      assert.ok(existsSync(path.join(artifacts, 'dashboard.png')));
    } finally {
      await context.close();
    }
  });

});

describe('dashboard: off unless asked', () => {
  it('a metrics endpoint without dashboard answers / with 404', async () => {
    const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0\n}`, { registry: testRegistry() });
    try {
      const line = veil.logs.find((l) => l.includes('plugin/metrics: serving http://'))!;
      const url = /(http:\/\/\S+\/)metrics/.exec(line)![1]!;
      assert.equal((await fetch(url)).status, 404);
      assert.equal((await fetch(`${url}dashboard.json`)).status, 404);
      assert.equal((await fetch(`${url}metrics`)).status, 200);
    } finally {
      await veil.stop();
    }
  });
});
