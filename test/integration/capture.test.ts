/**
 * The privacy promise, checked on the wire: in a network namespace of its own, Veil answers a
 * query mix (UDP and TCP, several types, cache hits and misses) through DNS-over-TLS,
 * DNS-over-HTTPS and Anonymized DNSCrypt only, while tcpdump records every packet on the
 * namespace's only interface. Then every packet is searched for the names asked: they may appear
 * between the client and Veil's listeners, and nowhere else. Nothing at all may use port 53.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeProviderKeys } from '../../lib/dnscrypt/provider-key.js';
import { dnscryptStamp, relayStamp } from '../helpers/dnscrypt.js';
import { createNamespace, whyNoNamespace, type Namespace, type NsProcess } from '../helpers/netns.js';
import { readPcap, type CapturedPacket } from '../helpers/pcap.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { makeTempDir, VEIL } from '../helpers/veil-process.js';

/** A client in the namespace: each query over UDP or TCP, one line per answer. */
const CLIENT = `
import dgram from 'node:dgram';
import net from 'node:net';
const [udpPort, tcpPort, ...asks] = process.argv.slice(2);
const types = { A: 1, AAAA: 28, TXT: 16, MX: 15 };
const build = (id, name, type) => Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, types[type], 0, 1])]);
const viaUdp = (q) => new Promise((resolve) => { const s = dgram.createSocket('udp4'); const t = setTimeout(() => { s.close(); resolve(null); }, 5000); s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); }); s.send(q, Number(udpPort), '127.0.0.1'); });
const viaTcp = (q) => new Promise((resolve) => { const s = net.connect(Number(tcpPort), '127.0.0.1'); let buf = Buffer.alloc(0); const t = setTimeout(() => { s.destroy(); resolve(null); }, 5000); s.on('connect', () => s.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q]))); s.on('data', (d) => { buf = Buffer.concat([buf, d]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { clearTimeout(t); s.end(); resolve(buf.subarray(2)); } }); s.on('error', () => resolve(null)); });
let id = 1;
for (const ask of asks) {
  const [transport, name, type] = ask.split(':');
  // One more try when a busy machine loses the first (UDP has no retransmission of its own).
  const send = transport === 'tcp' ? viaTcp : viaUdp;
  const answer = (await send(build(id++, name, type))) ?? (await send(build(id++, name, type)));
  console.log('ANSWER ' + ask + ' ' + (answer ? 'rcode=' + (answer[3] & 15) + ' answers=' + answer.readUInt16BE(6) : 'none'));
}
console.log('DONE');
`;

describe('no plaintext DNS leaves Veil but towards its client (packet capture)', { skip: whyNoNamespace('tcpdump') }, () => {
  let ns: Namespace;
  let dir = '';
  let certs: TestCerts | null = null;
  const label = `cap${randomBytes(5).toString('hex')}`;
  const names = {
    dot: `${label}-a.dot.cap.test`,
    doh: `${label}-b.doh.cap.test`,
    dnscrypt: `${label}-c.cap.test`,
    missing: `${label}-missing.dot.cap.test`,
  };
  let packets: CapturedPacket[] = [];
  let clientPorts: number[] = [];
  let upstreamPorts: number[] = [];
  let clientOutput = '';

  const run = (args: string[]): NsProcess => ns.run(args, dir);
  const veil = async (name: string, corefile: string): Promise<NsProcess> => {
    writeFileSync(path.join(dir, name), corefile);
    const proc = run([VEIL, '-conf', name]);
    await proc.waitFor(/veil \S+ serving/);
    return proc;
  };
  const port = (proc: NsProcess, scheme: string): number => Number(proc.output().match(new RegExp(`listening on ${scheme}://127\\.0\\.0\\.\\d+:(\\d+)`))![1]);

  before(async () => {
    ns = createNamespace('veil-capture');
    certs = makeTestCerts();
    dir = makeTempDir({ 'client.mjs': CLIENT });
    const keys = writeProviderKeys(path.join(dir, 'keys'));

    // A large buffer: under load the kernel must not drop packets before tcpdump reads them.
    const capture = run(['tcpdump', '-i', 'lo', '-n', '-U', '-B', '16384', '-s', '0', '-w', path.join(dir, 'lo.pcap')]);
    await capture.waitFor(/listening on lo/);

    const back = await veil(
      'Back',
      `. {
    listen tls://127.0.0.1:0 {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen dnscrypt://127.0.0.1:0 {
        provider 2.dnscrypt-cert.capture.test
        key ${keys.keyFile}
    }
    hosts {
        192.0.2.1 ${names.dot}
        192.0.2.2 ${names.doh}
        192.0.2.3 ${names.dnscrypt}
    }
}
`,
    );
    const dnscryptPort = port(back, 'dnscrypt');
    const relay = await veil('Relay', `. {\n    listen relay://127.0.0.2:0 {\n        allow_ports ${dnscryptPort}\n        allow_private\n    }\n}\n`);
    const relayPort = port(relay, 'relay');
    upstreamPorts = [port(back, 'tls'), port(back, 'https'), dnscryptPort, relayPort];

    const front = await veil(
      'Front',
      `dot.cap.test {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    cache
    dot {
        server back-tls tls://127.0.0.1:${port(back, 'tls')} {
            server_name dns.test
            ca ${certs.ca}
        }
    }
}
doh.cap.test {
    cache
    doh {
        server back-https https://127.0.0.1:${port(back, 'https')}/dns-query {
            ca ${certs.ca}
        }
    }
}
. {
    cache
    dnscrypt {
        server back-dnscrypt ${dnscryptStamp(`127.0.0.1:${dnscryptPort}`, keys.publicKey, '2.dnscrypt-cert.capture.test')}
    }
    anonymize {
        relay r ${relayStamp(`127.0.0.2:${relayPort}`)}
        route back-dnscrypt via r
    }
}
`,
    );
    await front.waitFor(/certificate serial/);
    clientPorts = [port(front, 'udp'), port(front, 'tcp')];

    const asks = [
      ...['udp', 'tcp'].flatMap((t) => [`${t}:${names.dot}:A`, `${t}:${names.doh}:A`, `${t}:${names.dnscrypt}:A`]),
      `udp:${names.dot}:AAAA`,
      `udp:${names.doh}:TXT`,
      `tcp:${names.dnscrypt}:MX`,
      `udp:${names.missing}:A`,
      `udp:${names.dot}:A`, // a cache hit
    ];
    const client = run([process.execPath, 'client.mjs', String(clientPorts[0]), String(clientPorts[1]), ...asks]);
    await client.waitFor(/DONE/, 30_000);
    clientOutput = client.output();
    // Let the last packets reach the capture before it stops.
    await new Promise((r) => setTimeout(r, 1000));
    await capture.stop('SIGINT');
    packets = readPcap(path.join(dir, 'lo.pcap'));
  });

  after(() => {
    ns?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('every query was answered through the encrypted upstreams', () => {
    for (const name of [names.dot, names.doh, names.dnscrypt]) {
      assert.match(clientOutput, new RegExp(`ANSWER udp:${name.replace(/\./g, '\\.')}:A rcode=0 answers=1`), clientOutput);
      assert.match(clientOutput, new RegExp(`ANSWER tcp:${name.replace(/\./g, '\\.')}:A rcode=0 answers=1`), clientOutput);
    }
    assert.doesNotMatch(clientOutput, / none$/m, 'no query went unanswered');
  });

  it('the capture saw the client traffic and encrypted traffic to every upstream (so its silence below means something)', () => {
    const toClientPorts = packets.filter((p) => clientPorts.includes(p.srcPort) || clientPorts.includes(p.dstPort));
    assert.ok(toClientPorts.some((p) => p.payload.includes(label)), 'the names are visible where they are allowed to be');
    for (const upstream of upstreamPorts) {
      assert.ok(
        packets.some((p) => (p.srcPort === upstream || p.dstPort === upstream) && p.payload.length > 0),
        `traffic to port ${upstream}`,
      );
    }
  });

  it('no packet anywhere else carries a name that was asked, and nothing used port 53', () => {
    const elsewhere = packets.filter((p) => !clientPorts.includes(p.srcPort) && !clientPorts.includes(p.dstPort));
    assert.ok(elsewhere.length > 0);
    const leaks = elsewhere.filter((p) => p.payload.includes(label));
    assert.deepEqual(
      leaks.map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`),
      [],
      'a query name in the clear outside the client connection',
    );
    assert.deepEqual(
      packets.filter((p) => p.srcPort === 53 || p.dstPort === 53).map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`),
      [],
    );
  });
});
