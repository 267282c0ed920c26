/**
 * `veil doctor` against a Veil this test starts, in a network namespace of its own (loopback
 * only) whose /etc/resolv.conf is bind-mounted by `ip netns exec` from a file the test rewrites
 * between runs: pointing at Veil over IPv4 and over IPv6 (PASS, exit 0), elsewhere (FAIL, exit 1),
 * and at another DNS server on loopback that answers every name, canary included: the resolv.conf
 * check and the canary both FAIL there, because Veil never saw the name. The canary cannot pass
 * unless the system resolver is Veil. Then behind systemd-resolved, whose resolvectl output and
 * stub listener are stood in for (see STUB).
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNamespace, whyNoNamespace, type Namespace, type NsProcess } from '../helpers/netns.js';
import { makeTempDir, VEIL } from '../helpers/veil-process.js';
import { installResolvConf } from '../helpers/install-doc.js';

/** A DNS server on 127.0.0.2:53 that answers every A query with 192.0.2.1, as Veil's canary would. */
const IMPOSTOR = `
import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
s.on('message', (q, from) => {
  let pos = 12; while (q[pos] > 0 && pos < q.length) pos += q[pos] + 1;
  const question = q.subarray(12, pos + 5);
  const type = q.readUInt16BE(pos + 1);
  const head = Buffer.from(q.subarray(0, 12)); head[2] = 0x81; head[3] = 0x80; head.writeUInt16BE(1, 4); head.writeUInt16BE(type === 1 ? 1 : 0, 6); head.writeUInt16BE(0, 8); head.writeUInt16BE(0, 10);
  const answer = type === 1 ? Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1]) : Buffer.alloc(0);
  s.send(Buffer.concat([head, question, answer]), from.port, from.address);
});
s.bind(53, '127.0.0.2', () => console.log('READY'));
`;

/**
 * Stands in for systemd-resolved's stub listener (not installed here, and installing it would
 * take over this machine's own resolv.conf): 127.0.0.53:53 hands each query to 127.0.0.1:53.
 */
const STUB = `
import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
s.on('message', (q, from) => {
  const up = dgram.createSocket('udp4');
  up.on('message', (a) => { s.send(a, from.port, from.address); up.close(); });
  up.send(q, 53, '127.0.0.1');
});
s.bind(53, '127.0.0.53', () => console.log('READY'));
`;

interface DoctorResult {
  code: number | null;
  json: { ok: boolean; checks: Array<{ id: string; status: string; summary: string; fix?: string }> };
  output: string;
}

describe('veil doctor, with resolv.conf variants in a network namespace', { skip: whyNoNamespace() }, () => {
  let ns: Namespace;
  let dir = '';
  let veil: NsProcess;

  const setResolvConf = (text: string): void => writeFileSync(path.join('/etc/netns', ns.name, 'resolv.conf'), `${text}\noptions timeout:1 attempts:1\n`);
  const doctor = async (...extra: string[]): Promise<DoctorResult> => {
    // bin/ first on PATH: its resolvectl stands in for systemd's (see the systemd-resolved tests).
    const proc = ns.run(['env', `PATH=${path.join(dir, 'bin')}:${process.env.PATH}`, VEIL, 'doctor', '-conf', 'Corefile', '--json', ...extra], dir);
    assert.ok(await proc.ended(60_000), `veil doctor did not end within 60 s:\n${proc.output()}`);
    const code = proc.child.exitCode;
    const output = proc.output();
    return { code, json: JSON.parse(output.slice(output.indexOf('{'))) as DoctorResult['json'], output };
  };
  const status = (r: DoctorResult, id: string): string[] => r.json.checks.filter((c) => c.id === id).map((c) => c.status);
  const check = (r: DoctorResult, id: string) => r.json.checks.find((c) => c.id === id)!;

  before(async () => {
    ns = createNamespace('veil-doctor');
    dir = makeTempDir({
      Corefile: `. {\n    listen udp://127.0.0.1:53 tcp://127.0.0.1:53 udp://[::1]:53\n    path\n    hosts {\n        192.0.2.10 web.veil.test\n    }\n}\n`,
      'impostor.mjs': IMPOSTOR,
      'stub.mjs': STUB,
    });
    mkdirSync(path.join(dir, 'bin'));
    veil = ns.run([VEIL, '-conf', 'Corefile'], dir);
    await veil.waitFor(/veil \S+ serving Corefile/);
    await ns.run([process.execPath, 'impostor.mjs'], dir).waitFor(/READY/);
    await ns.run([process.execPath, 'stub.mjs'], dir).waitFor(/READY/);
  });

  /** What `resolvectl status` prints, from here on (a script on the doctor's PATH). */
  const setResolvectl = (status: string | null): void => {
    const file = path.join(dir, 'bin', 'resolvectl');
    if (status === null) rmSync(file, { force: true });
    else {
      writeFileSync(path.join(dir, 'bin', 'status.txt'), status);
      writeFileSync(file, '#!/bin/sh\ncat "$(dirname "$0")/status.txt"\n', { mode: 0o755 });
    }
  };
  const RESOLVED_HEAD = 'Global\n       Protocols: -LLMNR -mDNS -DNSOverTLS DNSSEC=no/unsupported\nresolv.conf mode: stub\n';
  after(() => {
    ns?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('resolv.conf points to Veil (IPv4, the file docs/install.md writes): resolv.conf and the canary PASS, exit 0', async () => {
    writeFileSync(path.join('/etc/netns', ns.name, 'resolv.conf'), installResolvConf());
    const r = await doctor();
    assert.equal(r.code, 0, r.output);
    assert.equal(r.json.ok, true);
    assert.deepEqual(status(r, 'resolv.conf'), ['PASS']);
    assert.deepEqual(status(r, 'veil'), ['PASS']);
    assert.deepEqual(status(r, 'canary'), ['PASS'], r.output);
    assert.match(check(r, 'canary').summary, /reached Veil \(over udp on udp:\/\/127\.0\.0\.1:53, from 127\.0\.0\.1\)/);
    assert.equal(r.json.checks.filter((c) => c.status === 'FAIL').length, 0);
  });

  it('resolv.conf points to Veil over IPv6 (::1): PASS too', async () => {
    setResolvConf('nameserver ::1');
    const r = await doctor();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(status(r, 'resolv.conf'), ['PASS']);
    assert.deepEqual(status(r, 'canary'), ['PASS'], r.output);
    assert.match(check(r, 'canary').summary, /over udp on udp:\/\/\[::1\]:53, from ::1/);
  });

  it('resolv.conf points elsewhere: resolv.conf and the canary FAIL, exit 1, with what to do', async () => {
    setResolvConf('nameserver 192.0.2.53\nnameserver 2001:db8::53');
    const r = await doctor();
    assert.equal(r.code, 1, r.output);
    assert.equal(r.json.ok, false);
    assert.deepEqual(status(r, 'resolv.conf'), ['FAIL']);
    assert.match(check(r, 'resolv.conf').summary, /192\.0\.2\.53 \(IPv4\), 2001:db8::53 \(IPv6\)/);
    assert.match(check(r, 'resolv.conf').fix!, /nameserver 127\.0\.0\.1/);
    assert.deepEqual(status(r, 'canary'), ['FAIL']);
    assert.deepEqual(status(r, 'veil'), ['PASS'], 'Veil itself answers: it is the system that does not use it');
  });

  it('another server on loopback answers every name, canary included: the canary still FAILs', async () => {
    setResolvConf('nameserver 127.0.0.2');
    const r = await doctor();
    assert.equal(r.code, 1, r.output);
    assert.deepEqual(status(r, 'resolv.conf'), ['FAIL']);
    const canary = check(r, 'canary');
    assert.equal(canary.status, 'FAIL');
    assert.match(canary.summary, /Veil never saw .*getaddrinfo answered 192\.0\.2\.1/);
  });

  it('Veil not running where it is asked: FAIL, and no canary claim', async () => {
    setResolvConf('nameserver 127.0.0.1');
    const r = await doctor('--server', '127.0.0.3:53');
    assert.equal(r.code, 1, r.output);
    assert.deepEqual(status(r, 'veil'), ['FAIL']);
    assert.deepEqual(status(r, 'canary'), []);
  });

  describe('behind systemd-resolved (its resolvectl and stub stood in for)', () => {
    after(() => setResolvectl(null));

    it('every server resolved uses is Veil: PASS, and the canary comes through the stub', async () => {
      setResolvConf('nameserver 127.0.0.53');
      setResolvectl(`${RESOLVED_HEAD}Current DNS Server: 127.0.0.1\n       DNS Servers: 127.0.0.1 ::1\n        DNS Domain: ~.\n\nLink 2 (eth0)\n    Current Scopes: none\n         Protocols: -DefaultRoute -LLMNR -mDNS\n`);
      const r = await doctor();
      assert.equal(r.code, 0, r.output);
      assert.deepEqual(status(r, 'resolv.conf'), ['PASS']);
      assert.match(check(r, 'resolv.conf').summary, /hands every query to systemd-resolved/);
      assert.deepEqual(status(r, 'systemd-resolved'), ['PASS']);
      assert.deepEqual(status(r, 'canary'), ['PASS'], r.output);
    });

    it('a link with a server of its own (IPv4 and IPv6): FAIL, naming the interface', async () => {
      setResolvConf('nameserver 127.0.0.53');
      setResolvectl(`${RESOLVED_HEAD}       DNS Servers: 127.0.0.1\n\nLink 2 (eth0)\n    Current Scopes: DNS\n         Protocols: +DefaultRoute -LLMNR -mDNS\nCurrent DNS Server: 192.168.1.1\n       DNS Servers: 192.168.1.1 fe80::1%eth0\n`);
      const r = await doctor();
      assert.equal(r.code, 1, r.output);
      const resolved = check(r, 'systemd-resolved');
      assert.equal(resolved.status, 'FAIL');
      assert.match(resolved.summary, /192\.168\.1\.1 on eth0 \(IPv4\), fe80::1%eth0 on eth0 \(IPv6\)/);
      assert.match(resolved.fix!, /DNS=127\.0\.0\.1 and Domains=~\./);
    });

    it('no server configured at all: resolved uses its fallback servers, FAIL', async () => {
      setResolvConf('nameserver 127.0.0.53');
      setResolvectl(`${RESOLVED_HEAD}Fallback DNS Servers: 1.1.1.1#cloudflare-dns.com 9.9.9.9#dns.quad9.net\n`);
      const r = await doctor();
      assert.equal(r.code, 1, r.output);
      assert.match(check(r, 'systemd-resolved').summary, /no DNS server configured, so it uses its fallback servers \(1\.1\.1\.1#cloudflare-dns\.com \(IPv4\)/);
    });
  });

  it('prints PASS / WARN / FAIL / HINT lines with what to do, without --json', async () => {
    setResolvConf('nameserver 192.0.2.53');
    const proc = ns.run([VEIL, 'doctor', '-conf', 'Corefile'], dir);
    assert.ok(await proc.ended(60_000), `veil doctor did not end within 60 s:\n${proc.output()}`);
    assert.equal(proc.child.exitCode, 1);
    assert.match(proc.output(), /^FAIL  resolv\.conf +\/etc\/resolv\.conf names 192\.0\.2\.53/m);
    assert.match(proc.output(), /^ +→ write "nameserver 127\.0\.0\.1"/m);
    assert.match(proc.output(), /^PASS  veil +Veil answers at 127\.0\.0\.1:53$/m);
    assert.match(proc.output(), /^HINT  browser /m);
  });
});
