/**
 * The real program: `bin/veil` started from a Corefile, queried over UDP and TCP sockets,
 * signalled, fed garbage. The upstream is a scriptable fake on loopback (the interop tests use
 * unbound and dig when installed).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp, queryUdp, sendUdpRaw } from '../../core/testing/client.js';
import { startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { makeTempDir, runVeil, startVeil, type VeilProcess } from '../helpers/veil-process.js';

const decode = (b: Buffer) => dnsPacket.decode(b);
const firstA = (b: Buffer) => (decode(b).answers?.[0] as any)?.data;

function corefile(originPort: number, hostsIp = '192.0.2.10'): string {
  return `. {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    hosts {
        ${hostsIp} web.veil.test
    }
    forward {
        server origin udp://127.0.0.1:${originPort}
    }
    log
}
`;
}

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

describe('veil serving the foundation Corefile', () => {
  let origin: FakeDns;
  let veil: VeilProcess;
  let udp: { host: string; port: number };
  let tcp: { host: string; port: number };

  before(async () => {
    origin = await startFakeDns();
    veil = await startVeil(corefile(origin.port));
    udp = veil.address('udp');
    tcp = veil.address('tcp');
  });
  after(async () => {
    await veil.stop();
    await origin.close();
  });

  it('answers web.veil.test from hosts and other names from the upstream', async () => {
    assert.equal(firstA(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }))), '192.0.2.10');
    assert.equal(firstA(await queryUdp(udp.host, udp.port, buildQuery('www.example.test', QType.A, { id: 2 }))), '203.0.113.1');
    assert.ok(origin.queries.some((q) => q.packet.questions![0]!.name.toLowerCase() === 'www.example.test'));
  });

  it('answers over TCP, 20 queries pipelined on one connection', async () => {
    const queries = Array.from({ length: 20 }, (_, i) => buildQuery(i % 2 ? 'web.veil.test' : `n${i}.example.test`, QType.A, { id: 500 + i }));
    const answers = await queryTcp(tcp.host, tcp.port, queries);
    const byId = new Map(answers.map((a) => [decode(a).id, a]));
    for (let i = 0; i < 20; i++) assert.equal(firstA(byId.get(500 + i)!), i % 2 ? '192.0.2.10' : '203.0.113.1');
  });

  it('writes a JSON log line per query to stdout', () => {
    const lines = veil.stdout().trim().split('\n').map((l) => JSON.parse(l));
    const web = lines.find((l) => l.name === 'web.veil.test.');
    assert.ok(web);
    assert.equal(web.rcode, 'NOERROR');
    const forwarded = lines.find((l) => l.name === 'www.example.test.');
    assert.equal(forwarded.upstream, 'origin');
  });

  it('keeps answering, with bounded memory, through garbage and idle connections', async () => {
    const pid = veil.child.pid!;
    const before = rssKiB(pid);
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const sender = dgram.createSocket('udp4');
    for (let i = 0; i < 3000; i++) {
      const length = Math.floor(random() * 64);
      const bytes = Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
      if (i % 3 === 0 && length >= 12) bytes.writeUInt16BE(1, 4); // claims a question
      sender.send(bytes, udp.port, udp.host);
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    sender.close();
    // compression loop and QDCOUNT 0 over TCP: FORMERR, connection still usable
    const loop = Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    const zero = Buffer.from([0, 10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const formerrs = await queryTcp(tcp.host, tcp.port, [loop, zero]);
    assert.deepEqual(formerrs.map((a) => a[3]! & 0x0f), [1, 1]);
    // idle connections and one promising 65535 bytes that never come
    const idle: net.Socket[] = [];
    for (let i = 0; i < 1500; i++) {
      const s = net.connect(tcp.port, tcp.host);
      s.on('error', () => {});
      if (i === 0) s.on('connect', () => s.write(Buffer.from([0xff, 0xff, 0, 1])));
      idle.push(s);
    }
    await new Promise((r) => setTimeout(r, 300));
    try {
      assert.equal(firstA(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 99 }))), '192.0.2.10');
      const [viaTcp] = await queryTcp(tcp.host, tcp.port, [buildQuery('web.veil.test', QType.A, { id: 98 })]);
      assert.equal(firstA(viaTcp!), '192.0.2.10');
      const grown = rssKiB(pid) - before;
      assert.ok(grown < 64 * 1024, `RSS grew by ${grown} KiB`);
    } finally {
      for (const s of idle) s.destroy();
    }
  });

  it('answers FORMERR to a truncated header over UDP and nothing to a short packet', async () => {
    const truncated = Buffer.from([0x11, 0x22, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x77]);
    const answer = await sendUdpRaw(udp.host, udp.port, truncated, 1000);
    assert.equal(answer?.readUInt16BE(0), 0x1122);
    assert.equal(answer![3]! & 0x0f, 1);
    assert.equal(await sendUdpRaw(udp.host, udp.port, Buffer.from([1, 2, 3, 4, 5]), 300), null);
  });
});

describe('signals', () => {
  let origin: FakeDns;
  before(async () => {
    origin = await startFakeDns();
  });
  after(() => origin.close());

  it('SIGHUP reloads a good Corefile and keeps serving the old one when the new is bad', async () => {
    const veil = await startVeil(corefile(origin.port));
    try {
      const udp = veil.address('udp');
      const ask = async () => firstA(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 3 })));
      assert.equal(await ask(), '192.0.2.10');
      writeFileSync(path.join(veil.dir, 'Corefile'), corefile(origin.port, '192.0.2.11'));
      veil.signal('SIGHUP');
      await veil.waitFor('reloaded configuration');
      assert.equal(await ask(), '192.0.2.11');
      writeFileSync(path.join(veil.dir, 'Corefile'), corefile(origin.port).replace('hosts {', 'hosts {\n        192.0.2.999 x.test'));
      veil.signal('SIGHUP');
      await veil.waitFor('reload failed');
      assert.match(veil.stderr(), /reload failed, keeping the running configuration: Corefile:4:9: hosts: "192\.0\.2\.999" is not an IP address/);
      assert.equal(await ask(), '192.0.2.11');
    } finally {
      await veil.stop();
    }
  });

  it('SIGTERM finishes and exits 0', async () => {
    const veil = await startVeil(corefile(origin.port));
    veil.signal('SIGTERM');
    assert.equal(await veil.exited(), 0);
    await veil.stop();
  });
});

describe('veil check and bad configurations', () => {
  it('check prints listeners and the chain', async () => {
    const dir = makeTempDir({ Corefile: corefile(5300) });
    const result = await runVeil(['check', 'Corefile'], dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /listeners: udp:\/\/127\.0\.0\.1:0, tcp:\/\/127\.0\.0\.1:0/);
    assert.match(result.stdout, /chain: {5}log → hosts → upstreams/);
    assert.match(result.stdout, /upstreams: origin \(udp 127\.0\.0\.1:5300\)/);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['an unknown directive', '. {\n    listen udp://127.0.0.1:{PORT}\n    cachee 100\n}\n', /^Corefile:3:5: unknown directive "cachee"/m],
    ['a missing }', '. {\n    listen udp://127.0.0.1:{PORT}\n    hosts {\n        192.0.2.1 a.test\n}\n', /^Corefile:1:3: missing "}"/m],
    ['a bad address', '. {\n    listen udp://127.0.0.1:{PORT}\n    forward {\n        server o udp://127.0.0.300:53\n    }\n}\n', /^Corefile:4:18: forward: "127\.0\.0\.300" is not an IP address/m],
  ];
  for (const [label, text, message] of bad) {
    it(`check and -conf exit 1 with file:line:col for ${label}, and bind nothing`, async () => {
      const port = await freeUdpPort();
      const dir = makeTempDir({ Corefile: text.replace('{PORT}', String(port)) });
      for (const args of [['check', 'Corefile'], ['-conf', 'Corefile']]) {
        const result = await runVeil(args, dir);
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, message);
      }
      assert.ok(await udpPortFree(port), 'nothing was bound');
    });
  }

  it('serves the JSONC form the same way', async () => {
    const origin = await startFakeDns();
    const jsonc = JSON.stringify({
      servers: [{ zones: ['.'], directives: [['listen', 'udp://127.0.0.1:0'], ['hosts', [['192.0.2.10', 'web.veil.test']]], ['forward', [['server', 'origin', `udp://127.0.0.1:${origin.port}`]]]] }],
    });
    const veil = await startVeil(jsonc, {}, 'veil.jsonc');
    try {
      const udp = veil.address('udp');
      assert.equal(firstA(await queryUdp(udp.host, udp.port, buildQuery('web.veil.test', QType.A, { id: 1 }))), '192.0.2.10');
      assert.equal(firstA(await queryUdp(udp.host, udp.port, buildQuery('other.test', QType.A, { id: 2 }))), '203.0.113.1');
    } finally {
      await veil.stop();
      await origin.close();
    }
  });

  it('prints its version', async () => {
    const result = await runVeil(['--version'], process.cwd());
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^veil \d+\.\d+\.\d+ \(node v24\./);
  });
});

function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
