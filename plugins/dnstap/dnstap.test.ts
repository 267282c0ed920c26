/**
 * dnstap: the messages Veil sends over Frame Streams, received by Debian's real `fstrm_capture`
 * (fstrm-bin) over a Unix socket and over TCP with the bidirectional handshake, and decoded by
 * BIND's `dnstap-read` (bind9-dnsutils): client query and response, forwarder query and
 * response per upstream attempt. Then a reader that is away: messages beyond the queue are
 * dropped and counted, queries are answered, and once the reader comes the writer reconnects.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer } from '../../core/testing/server.js';
import { freePort, skipUnless } from '../../test/helpers/peers.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const skip = skipUnless('fstrm_capture', 'dnstap-read');

interface Capture {
  process: ChildProcess;
  file: string;
  /** Stops fstrm_capture (by PID), which closes its file; then the messages as dnstap-read prints them. */
  read(): Promise<Array<Record<string, string>>>;
  stop(): Promise<void>;
}

async function startCapture(dir: string, where: { unix: string } | { tcp: number }): Promise<Capture> {
  const file = path.join(dir, `capture-${Date.now()}.fstrm`);
  const args = ['-t', 'protobuf:dnstap.Dnstap', '-w', file, ...('unix' in where ? ['-u', where.unix] : ['-a', '127.0.0.1', '-p', String(where.tcp)])];
  const child = spawn('fstrm_capture', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const until = Date.now() + 5000;
  // Listening once the socket exists (Unix) or it says so (TCP).
  while ('unix' in where ? !existsSync(where.unix) : !/[Oo]pened|listen/i.test(stderr) && !existsSync(file)) {
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!('unix' in where)) await new Promise((r) => setTimeout(r, 200));
  const stop = async () => {
    if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGTERM');
    await exited;
  };
  return {
    process: child,
    file,
    stop,
    async read() {
      await stop();
      const out = spawnSync('dnstap-read', ['-y', file], { encoding: 'utf8' });
      assert.equal(out.status, 0, `dnstap-read: ${out.stderr}\nfstrm_capture: ${stderr}`);
      return out.stdout
        .split(/^---$/m)
        .map((doc) => Object.fromEntries([...doc.matchAll(/^\s*([a-z_]+): (.*)$/gm)].map((m) => [m[1]!, m[2]!.trim().replace(/^"(.*)"$/, '$1')])))
        .filter((m) => m.type !== undefined);
    },
  };
}

describe('dnstap to fstrm_capture, read by dnstap-read', { skip }, () => {
  let dir: string;
  let origin: FakeDns;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'veil-dnstap-'));
    origin = await startFakeDns();
  });
  after(async () => {
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('unix socket, full: client and forwarder queries and responses with their messages', async () => {
    const socket = path.join(dir, 'dnstap.sock');
    const capture = await startCapture(dir, { unix: socket });
    try {
      const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0 tcp://127.0.0.1:0\n dnstap unix://${socket} full\n forward . 127.0.0.1:${origin.port}\n}`, {
        registry: testRegistry(),
      });
      const udp = veil.address('udp://127.0.0.1:0');
      const tcp = veil.address('tcp://127.0.0.1:0');
      // Give the writer its handshake before the first query (frames would wait in the queue otherwise; both are fine).
      await new Promise((r) => setTimeout(r, 200));
      await queryUdp(udp.host, udp.port, buildQuery('one.dnstap.test', QType.A, { id: 1 }));
      await queryTcp(tcp.host, tcp.port, [buildQuery('two.dnstap.test', QType.AAAA, { id: 2 })]);
      await veil.stop();
      const messages = await capture.read();
      const types = messages.map((m) => m.type);
      assert.deepEqual(types.filter((t) => t === 'CLIENT_QUERY').length, 2, JSON.stringify(messages, null, 1));
      assert.equal(types.filter((t) => t === 'CLIENT_RESPONSE').length, 2);
      assert.equal(types.filter((t) => t === 'FORWARDER_QUERY').length, 2);
      assert.equal(types.filter((t) => t === 'FORWARDER_RESPONSE').length, 2);
      const clientUdp = messages.find((m) => m.type === 'CLIENT_QUERY' && m.socket_protocol === 'UDP')!;
      assert.equal(clientUdp.query_address, '127.0.0.1');
      assert.equal(clientUdp.socket_family, 'INET');
      assert.ok(messages.some((m) => m.type === 'CLIENT_QUERY' && m.socket_protocol === 'TCP'));
      const forwarded = messages.find((m) => m.type === 'FORWARDER_RESPONSE')!;
      assert.equal(forwarded.response_address, '127.0.0.1');
      assert.equal(forwarded.response_port, String(origin.port));
      // Full: dnstap-read decodes the DNS messages themselves.
      const text = spawnSync('dnstap-read', ['-p', capture.file], { encoding: 'utf8' }).stdout;
      assert.match(text, /one\.dnstap\.test\.\s+IN\s+A/);
      assert.match(text, /two\.dnstap\.test\.\s+IN\s+AAAA/);
      assert.match(text, /ANSWER SECTION/);
    } finally {
      await capture.stop();
    }
  });

  it('TCP, without full: the same messages, no DNS messages inside', async () => {
    const port = await freePort();
    const capture = await startCapture(dir, { tcp: port });
    try {
      const veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n dnstap tcp://127.0.0.1:${port}\n forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry() });
      const udp = veil.address('udp://127.0.0.1:0');
      await new Promise((r) => setTimeout(r, 200));
      await queryUdp(udp.host, udp.port, buildQuery('three.dnstap.test', QType.A, { id: 3 }));
      await veil.stop();
      const messages = await capture.read();
      assert.deepEqual(messages.map((m) => m.type).sort(), ['CLIENT_QUERY', 'CLIENT_RESPONSE', 'FORWARDER_QUERY', 'FORWARDER_RESPONSE']);
      assert.ok(messages.every((m) => m.query_message === undefined && m.response_message === undefined), JSON.stringify(messages));
    } finally {
      await capture.stop();
    }
  });

  it('a reader that is away: the queue drops beyond its bound (counted), queries are answered, and the writer reconnects when it comes', async () => {
    const socket = path.join(dir, 'late.sock');
    const veil = await startTestServer(
      `. {\n listen udp://127.0.0.1:0\n metrics 127.0.0.1:0\n dnstap unix://${socket} {\n queue 16\n }\n forward . 127.0.0.1:${origin.port}\n}`,
      { registry: testRegistry() },
    );
    let capture: Capture | null = null;
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      for (let i = 0; i < 10; i++) {
        const answer = await queryUdp(udp.host, udp.port, buildQuery(`away${i}.dnstap.test`, QType.A, { id: 100 + i }));
        assert.equal(answer.readUInt16BE(0), 100 + i);
      }
      const metricsLine = veil.logs.find((l) => l.includes('plugin/metrics: serving http://'))!;
      const metricsUrl = /(http:\/\/\S+\/metrics)/.exec(metricsLine)![1]!;
      const scrape = async () => await (await fetch(metricsUrl)).text();
      // 10 queries make 40 messages: 16 wait, 24 are dropped.
      const text = await scrape();
      assert.match(text, /veil_plugin_dnstap_messages_total\{server="\.",result="queued"\} 16/);
      assert.match(text, /veil_plugin_dnstap_messages_total\{server="\.",result="dropped"\} 24/);
      assert.ok(veil.logs.some((l) => /dnstap reader unix:\/\/\S+ is not connected: dropped 1 message/.test(l)), veil.logs.join('\n'));
      capture = await startCapture(dir, { unix: socket });
      // Back-off: the next try comes within a few seconds.
      const until = Date.now() + 15_000;
      while (!veil.logs.some((l) => l.includes('dnstap: connected to unix://'))) {
        assert.ok(Date.now() < until, `no reconnection:\n${veil.logs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await queryUdp(udp.host, udp.port, buildQuery('back.dnstap.test', QType.A, { id: 7 }));
      await veil.stop();
      const messages = await capture.read();
      // The 16 that waited, then the new query's 4.
      assert.equal(messages.length, 20, JSON.stringify(messages.map((m) => m.type)));
    } finally {
      await veil.stop();
      await capture?.stop();
    }
  });
});
