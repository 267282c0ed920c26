/**
 * Corefile.example as a fresh clone runs it (`npm start` is the build, then
 * `bin/veil -conf Corefile.example`), without the internet.
 *
 * Corefile.example names public resolvers and public lists, so this test starts it ONLY inside
 * a network namespace of its own that has no route out: a loopback interface and nothing else,
 * so no packet can ever go towards a public address. (Everywhere else it is only checked, as
 * `veil check` does: test/docs.test.ts.) The namespace's /etc/resolv.conf points at a trap DNS
 * server, and tcpdump records every packet on its interface.
 *
 * Offline, Veil must start, say once per upstream and per list that it cannot reach it, answer
 * its local name, answer SERVFAIL with an Extended DNS Error for the rest, and send nothing: no
 * packet but the client's, nothing to the system resolver. Then the network "comes back": the
 * namespace gets the address of the fallback upstream (9.9.9.9) on its loopback, with a fake
 * DNS-over-TLS server there (Veil, with a certificate for dns.quad9.net from a test CA that the
 * offline Veil is told to trust through NODE_EXTRA_CA_CERTS; the Corefile is unchanged), and
 * Veil must recover by itself. The real lists never verify here, and nothing depends on them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EdnsOption, QClass, QType, rcodeName } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { forEachEdnsOption, fullRcode, readEdns } from '../../core/dns/wire.js';
import dnsPacket from 'dns-packet';
import { parsePathAnswer } from '../../cli/path.js';
import { createNamespace, whyNoNamespace, type Namespace, type NsProcess } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { makeTempDir, ROOT, VEIL } from '../helpers/veil-process.js';

const TRAP = `
import dgram from 'node:dgram';
import net from 'node:net';
const heard = () => console.log('HEARD');
const udp = dgram.createSocket('udp4');
udp.on('message', heard);
udp.bind(53, '127.0.0.1', () => {
  net.createServer((s) => s.on('data', heard)).listen(53, '127.0.0.1', () => console.log('READY'));
});
`;

/** Sends the query (hex) to 127.0.0.1:PORT over UDP; prints the answer in hex, or TIMEOUT. */
const ASK = `
import dgram from 'node:dgram';
const [port, hex] = process.argv.slice(2);
const s = dgram.createSocket('udp4');
const timer = setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 6000);
s.on('message', (m) => { clearTimeout(timer); console.log('ANSWER ' + m.toString('hex')); s.close(); });
s.send(Buffer.from(hex, 'hex'), Number(port), '127.0.0.1');
`;

const PORT = 5353;

function extendedErrors(answer: Buffer): Array<[number, string]> {
  const found: Array<[number, string]> = [];
  const edns = readEdns(answer);
  if (edns) forEachEdnsOption(answer, edns, (code, start, length) => {
    if (code === EdnsOption.EDE) found.push([answer.readUInt16BE(start), answer.toString('utf8', start + 2, start + length)]);
  });
  return found;
}

describe('Corefile.example offline, in a network namespace with no route out', { skip: whyNoNamespace('tcpdump') }, () => {
  let ns: Namespace;
  let dir = '';
  let certs: TestCerts | null = null;
  let trap: NsProcess;
  let capture: NsProcess;
  let veil: NsProcess;
  let id = 1;

  const run = (args: string[]): NsProcess => ns.run(args, dir);
  const ask = async (query: Buffer): Promise<Buffer | null> => {
    const [line] = await run([process.execPath, 'ask.mjs', String(PORT), query.toString('hex')]).waitFor(/ANSWER [0-9a-f]+|TIMEOUT/, 10_000);
    return line === 'TIMEOUT' ? null : Buffer.from(line.slice('ANSWER '.length), 'hex');
  };
  const addresses = (answer: Buffer): string[] => (dnsPacket.decode(answer).answers ?? []).map((a) => String((a as { data: unknown }).data));

  before(async () => {
    ns = createNamespace('veil-offline');
    certs = makeTestCerts(['dns.quad9.net']);
    // A fresh clone: Corefile.example and nothing else (no lists/ cache yet).
    dir = makeTempDir({ 'trap.mjs': TRAP, 'ask.mjs': ASK });
    copyFileSync(path.join(ROOT, 'Corefile.example'), path.join(dir, 'Corefile.example'));
    trap = run([process.execPath, 'trap.mjs']);
    await trap.waitFor(/READY/);
    capture = run(['tcpdump', '-i', 'lo', '-n', '-U', '--immediate-mode', '-B', '16384', '-s', '0', '-w', path.join(dir, 'lo.pcap')]);
    await capture.waitFor(/listening on lo/);
    veil = run(['env', `NODE_EXTRA_CA_CERTS=${certs.ca}`, VEIL, '-conf', 'Corefile.example']);
    await veil.waitFor(/veil \S+ serving Corefile\.example/);
  });
  after(() => {
    ns?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('starts, and says once per upstream and per list that it cannot reach it', async () => {
    await veil.waitFor(/list relays: refresh failed/);
    await veil.waitFor(/list public-resolvers: refresh failed/);
    await veil.waitFor(/quad9.*9\.9\.9\.9:853/);
    await veil.waitFor(/cloudflare.*1\.1\.1\.1:853/);
    const warnings = veil.output().split('\n').filter((l) => /\[WARN\]/.test(l));
    for (const subject of [/list relays:/, /list public-resolvers:/, /quad9/, /cloudflare/]) {
      assert.equal(warnings.filter((l) => subject.test(l)).length, 1, `one line for ${subject}:\n${warnings.join('\n')}`);
    }
  });

  it('answers its local name', async () => {
    const answer = await ask(buildQuery('web.veil.test', QType.A, { id: id++ }));
    assert.ok(answer, veil.output());
    assert.deepEqual(addresses(answer), ['192.0.2.10']);
  });

  it('answers SERVFAIL with an Extended DNS Error for the rest', async () => {
    for (const name of ['example.org', 'example.net', 'example.com']) {
      const answer = await ask(buildQuery(name, QType.A, { id: id++, edns: true }));
      assert.ok(answer, veil.output());
      assert.equal(rcodeName(fullRcode(answer)), 'SERVFAIL');
      assert.deepEqual(extendedErrors(answer).map(([code]) => code), [22]);
    }
    assert.doesNotMatch(veil.output(), /example\.(org|net|com)/, 'failures are counted, their names never written');
    // Both upstreams are marked down now: what follows must come back on its own.
    await veil.waitFor(/upstream quad9 .* marked down/);
    await veil.waitFor(/upstream cloudflare .* marked down/);
  });

  it('recovers by itself when the network comes back (a fake quad9 on 9.9.9.9:853)', async () => {
    const added = spawnSync('ip', ['netns', 'exec', ns.name, 'ip', 'addr', 'add', '9.9.9.9/32', 'dev', 'lo'], { encoding: 'utf8' });
    assert.equal(added.status, 0, added.stderr);
    writeFileSync(
      path.join(dir, 'Quad9'),
      // Veil sees its client at 9.9.9.9 too (the namespace's only other address): acl lets it in.
      `. {\n    listen tls://9.9.9.9:853 {\n        cert ${certs!.chain}\n        key ${certs!.key}\n    }\n    acl {\n        allow *\n    }\n    hosts {\n        192.0.2.99 example.org\n        192.0.2.98 path.example.org\n    }\n}\n`,
    );
    const fake = run([VEIL, '-conf', 'Quad9']);
    await fake.waitFor(/veil \S+ serving Quad9/);
    // Bounded: 60 queries, half a second apart (the upstream was marked down; it is tried again
    // after fail_timeout).
    let answer: Buffer | null = null;
    for (let i = 0; i < 60; i++) {
      answer = await ask(buildQuery('example.org', QType.A, { id: id++, edns: true }));
      if (answer && rcodeName(fullRcode(answer)) === 'NOERROR') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(answer, veil.output());
    assert.equal(rcodeName(fullRcode(answer)), 'NOERROR', veil.output());
    assert.deepEqual(addresses(answer), ['192.0.2.99']);
    assert.match(veil.output(), /quad9: connected to 9\.9\.9\.9:853 again/);
    assert.match(veil.output(), /upstream quad9 is up again/);
    const pathAnswer = await ask(buildQuery('path.example.org', QType.TXT, { id: id++, qclass: QClass.CH, edns: true }));
    assert.ok(pathAnswer, veil.output());
    const facts = parsePathAnswer(pathAnswer);
    assert.equal(facts.upstream, 'quad9');
    assert.equal(facts.protocol, 'dot');
    assert.equal(facts.encrypted, 'yes');
    assert.equal(facts.padded, 'yes');
    assert.equal(facts.listener, `udp://127.0.0.1:${PORT}`);
  });

  it('sent nothing but to its client and to the encrypted upstream; never to the system resolver', async () => {
    // tcpdump writes what it has read when it stops: give it the last packets first.
    await new Promise((r) => setTimeout(r, 1000));
    await capture.stop('SIGINT');
    assert.doesNotMatch(trap.output(), /HEARD/, 'the system resolver (the trap) heard a query');
    const packets = readPcap(path.join(dir, 'lo.pcap'));
    assert.ok(packets.length > 0, capture.output());
    const strays = packets.filter((p) => p.srcPort !== PORT && p.dstPort !== PORT && p.srcPort !== 853 && p.dstPort !== 853);
    assert.deepEqual(strays.map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`), []);
    // The names asked cross the wire in the clear only between the client and Veil.
    const clear = packets.filter((p) => p.srcPort !== PORT && p.dstPort !== PORT && p.payload.includes('example'));
    assert.deepEqual(clear.length, 0);
    assert.ok(packets.some((p) => p.dstPort === 853), 'the recovery went over DNS-over-TLS');
  });
});
