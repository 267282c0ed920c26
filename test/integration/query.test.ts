/**
 * `veil query` against real servers on loopback, and `npm run demo --once`, which asks every
 * transport (DoT, DoH, DNSCrypt direct and through a relay) with it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import type { CommandIo } from '../../cli/io.js';
import { runSubcommand } from '../../cli/main.js';
import { describeResponse, formatData } from '../../cli/present.js';
import { freePort, skipUnless } from '../helpers/peers.js';
import { ROOT, runVeil, startVeil, type VeilProcess } from '../helpers/veil-process.js';

async function query(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CommandIo = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await runSubcommand('query', args, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('veil query: command line', () => {
  const mistakes: Array<[string[], RegExp]> = [
    [[], /veil query \[@SERVER\] NAME/],
    [['@127.0.0.1'], /which name/],
    [['a.test', 'NOPE'], /unknown type "NOPE"/],
    [['a.test', '--tcp', '--tls', '--tls-hostname', 'x'], /choose one transport/],
    [['a.test', '--relay', 'sdns://x'], /--relay goes with --dnscrypt/],
    [['a.test', '--tls'], /--tls needs --tls-hostname/],
    [['@dns.google', 'a.test'], /names are not resolved/],
    [['a.test', '--port', '70000'], /not a port number/],
    [['a.test', '--https', 'https://x/dns-query', '--port', '443'], /--port does not apply/],
    [['a.test', '--dnscrypt', 'sdns://a b'], /cannot contain spaces/],
    [['a test'], /is not a domain name/],
    [['a.test', '--timeout', '0'], /--timeout takes seconds/],
  ];
  for (const [args, message] of mistakes) {
    it(`refuses ${JSON.stringify(args)} with exit 2`, async () => {
      const result = await query(args);
      assert.equal(result.code, 2);
      assert.match(result.err + result.out, message);
    });
  }

  it('a bad stamp is exit 1 in the words of the command line, not of a Corefile', async () => {
    const result = await query(['a.test', '--dnscrypt', 'sdns://AQcAAAAAAAAA']);
    assert.equal(result.code, 1);
    assert.match(result.err, /^veil query: dnscrypt: /);
    assert.doesNotMatch(result.err, /veil-query:\d+:\d+/);
  });
});

describe('veil query: plain DNS against a server on loopback', () => {
  let server: VeilProcess;
  let port: number;
  before(async () => {
    server = await startVeil(`. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    path
    hosts {
        192.0.2.10 web.veil.test
        2001:db8::10 web.veil.test
    }
    log
}
`);
    port = server.address('udp').port;
  });
  after(() => server?.stop());

  /** The log plugin writes one JSON line per query to stdout. */
  async function logged(line: RegExp): Promise<void> {
    for (let i = 0; i < 100 && !line.test(server.stdout()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(server.stdout(), line);
  }

  it('UDP by default: the answer in dig form, with the server and a query time', async () => {
    const result = await query(['@127.0.0.1', '-p', String(port), 'web.veil.test']);
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /;; status: NOERROR/);
    assert.match(result.out, /^web\.veil\.test\.\t3600\tIN\tA\t192\.0\.2\.10$/m);
    assert.match(result.out, new RegExp(`;; SERVER: udp 127\\.0\\.0\\.1:${port}`));
    assert.match(result.out, /;; Query time: [\d.]+ ms/);
    await logged(/"proto":"udp","name":"web\.veil\.test\.","type":"A"/);
  });

  it('--tcp goes over TCP; --short prints the data only; AAAA works', async () => {
    const result = await query([`@127.0.0.1:${server.address('tcp').port}`, 'web.veil.test', 'AAAA', '--tcp', '--short']);
    assert.equal(result.code, 0, result.err);
    assert.equal(result.out, '2001:db8::10');
    await logged(/"proto":"tcp","name":"web\.veil\.test\.","type":"AAAA"/);
  });

  it('a server that does not answer: SERVFAIL, and why the attempt failed', async () => {
    const result = await query([`@127.0.0.1`, '-p', String(await freePort()), 'web.veil.test', '--timeout', '2']);
    assert.equal(result.code, 0);
    assert.match(result.out, /;; status: SERVFAIL/);
    assert.match(result.err, /attempt failed: .*127\.0\.0\.1/);
  });

  it('--path: which way a name goes, in sentences, over the transport asked', async () => {
    const udp = await query(['@127.0.0.1', '-p', String(port), '--path', 'web.veil.test']);
    assert.equal(udp.code, 0, udp.err);
    assert.match(udp.out, new RegExp(`^your query came in on  udp://127\\.0\\.0\\.1:${port} \\(udp\\) from 127\\.0\\.0\\.1$`, 'm'));
    assert.match(udp.out, /^server block {11}\.$/m);
    assert.match(udp.out, /^resolved {15}web\.veil\.test\. A$/m);
    assert.match(udp.out, /^answered by {12}hosts \(nothing left Veil\)$/m);
    const tcpPort = server.address('tcp').port;
    const tcp = await query([`@127.0.0.1:${tcpPort}`, '--tcp', '--path', 'web.veil.test']);
    assert.equal(tcp.code, 0, tcp.err);
    assert.match(tcp.out, new RegExp(`came in on  tcp://127\\.0\\.0\\.1:${tcpPort} \\(tcp\\)`));
    await logged(/"proto":"tcp","name":"web\.veil\.test\.","type":"TXT"/);
  });

  it('--path to a server that gives no path answer: exit 1, and why that may be', async () => {
    const result = await query(['@127.0.0.1', '-p', String(await freePort()), '--path', 'web.veil.test', '--timeout', '2']);
    assert.equal(result.code, 1);
    assert.match(result.err, /gave no path answer \(SERVFAIL\): the server may not be Veil with the path plugin/);
    assert.equal((await query(['--path', 'web.veil.test', 'AAAA'])).code, 2);
  });

  it('the real program: bin/veil query', async () => {
    const result = await runVeil(['query', `@127.0.0.1:${port}`, 'web.veil.test', '--short'], ROOT);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), '192.0.2.10');
  });
});

describe('veil query: presentation', () => {
  it('formats the common record types as dig does, and unknown data as RFC 3597', () => {
    assert.equal(formatData('MX', { preference: 10, exchange: 'mail.test' }), '10 mail.test.');
    assert.equal(formatData('TXT', [Buffer.from('v=spf1 "x"')]), '"v=spf1 \\"x\\""');
    assert.equal(formatData('SOA', { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 }), 'ns.test. h.test. 1 2 3 4 5');
    assert.equal(formatData('SRV', { priority: 1, weight: 2, port: 853, target: 'dot.test' }), '1 2 853 dot.test.');
    assert.equal(formatData('CNAME', 'target.test'), 'target.test.');
    assert.equal(formatData('TYPE999', Buffer.from([1, 2])), '\\# 2 0102');
  });

  it('shows the header, EDNS, and every section but the OPT record', () => {
    const wire = dnsPacket.encode({
      type: 'response',
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3, // rcode 3: NXDOMAIN
      questions: [{ type: 'A', name: 'gone.test' }],
      authorities: [{ type: 'SOA', name: 'test', ttl: 300, data: { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 60 } }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    } as dnsPacket.Packet);
    const lines = describeResponse(wire);
    assert.equal(lines[0], ';; status: NXDOMAIN, id: 7, flags: qr rd ra');
    assert.ok(lines.includes(';; AUTHORITY SECTION:'));
    assert.ok(lines.includes('test.\t300\tIN\tSOA\tns.test. h.test. 1 2 3 4 60'));
    assert.ok(!lines.includes(';; ADDITIONAL SECTION:'), 'the OPT record is shown as the EDNS line, not as a record');
    assert.ok(lines.includes(';; EDNS: version 0, udp 1232'));
  });
});

describe('npm run demo', () => {
  it('asks DoT, DoH and DNSCrypt (direct and through the relay) and gets every answer', { skip: skipUnless('openssl') }, () => {
    const result = spawnSync(process.execPath, [path.join(ROOT, 'dist/demo/run.js'), '--once'], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const oks = result.stdout.split('\n').filter((l) => /^\s+ok\s/.test(l));
    assert.equal(oks.length, 6, result.stdout);
    assert.doesNotMatch(result.stdout, /FAIL/);
  });
});
