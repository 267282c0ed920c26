/**
 * The classic DoH leak: resolving the upstream's host name through the system resolver tells
 * the network which resolver is used. Here the whole world is a fresh network namespace whose
 * /etc/resolv.conf (bind-mounted by `ip netns exec`) points at a trap DNS server on
 * 127.0.0.1:53. A DoH server (Veil's https listener) and the real bin/veil with a doh upstream
 * named by host name plus `bootstrap` run inside it; a query is answered through DoH, and the
 * trap must have heard nothing. A lookup made the ordinary way first proves the trap catches.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNamespace, whyNoNamespace, type Namespace, type NsProcess } from '../helpers/netns.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { makeTempDir, VEIL } from '../helpers/veil-process.js';

const TRAP = `
import dgram from 'node:dgram';
import net from 'node:net';
const heard = (msg) => {
  let pos = 12, labels = [];
  while (pos < msg.length && msg[pos] > 0 && labels.length < 64) { labels.push(msg.toString('latin1', pos + 1, pos + 1 + msg[pos])); pos += msg[pos] + 1; }
  console.log('QUERY ' + labels.join('.'));
};
const udp = dgram.createSocket('udp4');
udp.on('message', heard);
udp.bind(53, '127.0.0.1', () => {
  net.createServer((s) => s.on('data', (d) => heard(d.subarray(2)))).listen(53, '127.0.0.1', () => console.log('READY'));
});
`;

const ASK = `
import dgram from 'node:dgram';
const [port, name] = process.argv.slice(2);
const q = Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
const s = dgram.createSocket('udp4');
const timer = setTimeout(() => { console.log('TIMEOUT'); process.exit(1); }, 5000);
// The first answer's RDATA: after the question (as sent) and the answer's name pointer and fixed fields.
s.on('message', (m) => { clearTimeout(timer); const at = q.length + 2 + 10; console.log('ANSWER ' + (m.readUInt16BE(6) ? [...m.subarray(at, at + 4)].join('.') : 'none') + ' RCODE ' + (m[3] & 15) + ' ADDITIONAL ' + m.readUInt16BE(10)); s.close(); });
s.send(q, Number(port), '127.0.0.1');
`;

const LOOKUP = `require('node:dns').lookup(process.argv[1], (err, address) => console.log('LOOKUP ' + (err ? err.code : address)));`;

describe('no system-resolver lookup for a DoH upstream named by host name', { skip: whyNoNamespace() }, () => {
  let ns: Namespace;
  let dir = '';
  let certs: TestCerts | null = null;
  let trap: NsProcess;

  const inNamespace = (args: string[]): NsProcess => ns.run(args, dir);
  const cleanup = (): void => {
    ns?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  };

  const trapped = (): string[] => [...trap.output().matchAll(/^QUERY (.*)$/gm)].map((m) => m[1]!);

  before(async () => {
    ns = createNamespace('veil-leak');
    certs = makeTestCerts();
    dir = makeTempDir({ 'trap.mjs': TRAP, 'ask.mjs': ASK });
    trap = inNamespace([process.execPath, 'trap.mjs']);
    await trap.waitFor(/READY/);
  });
  after(cleanup);

  it('the trap catches an ordinary lookup (so its silence below means something)', async () => {
    const lookup = inNamespace([process.execPath, '-e', LOOKUP, 'control.dns.test']);
    await lookup.waitFor(/LOOKUP/);
    const started = Date.now();
    while (!trapped().includes('control.dns.test') && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(trapped().includes('control.dns.test'), `the trap heard: ${trapped().join(', ')}`);
  });

  it('a query answered through DoH, and the trap hears nothing', async () => {
    const before = trapped().length;
    writeFileSync(
      path.join(dir, 'Back'),
      `. {\n  listen https://127.0.0.1:0/dns-query {\n    cert ${certs!.chain}\n    key ${certs!.key}\n  }\n  hosts {\n    192.0.2.10 web.veil.test\n  }\n}\n`,
    );
    const back = inNamespace([VEIL, '-conf', 'Back']);
    const [, backPort] = await back.waitFor(/listening on https:\/\/127\.0\.0\.1:(\d+)/);
    writeFileSync(
      path.join(dir, 'Front'),
      `. {\n  listen udp://127.0.0.1:0\n  doh {\n    server by-name https://dns.test:${backPort}/dns-query {\n      bootstrap 127.0.0.1\n      ca ${certs!.ca}\n    }\n  }\n}\n`,
    );
    const front = inNamespace([VEIL, '-conf', 'Front']);
    const [, frontPort] = await front.waitFor(/listening on udp:\/\/127\.0\.0\.1:(\d+)/);
    for (const name of ['web.veil.test', 'web.veil.test']) {
      const ask = inNamespace([process.execPath, 'ask.mjs', frontPort!, name]);
      const [line] = await ask.waitFor(/ANSWER .*|TIMEOUT/);
      // No OPT record in the answer: the client sent none (the one added for padding stays upstream).
      assert.equal(line, 'ANSWER 192.0.2.10 RCODE 0 ADDITIONAL 0', front.output());
    }
    // Anything asked of the system resolver would have reached the trap by now (1 s timeout).
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(trapped().slice(before), []);
  });
});
