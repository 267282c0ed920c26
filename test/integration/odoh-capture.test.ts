/**
 * ODoH on the wire: in a network namespace of its own, a Veil client (`odoh`), a Veil relay on
 * 127.0.0.2 and a Veil target answer a query mix while tcpdump records the only interface. The
 * names asked may appear between the stub client and Veil's UDP listener, and nowhere else: not
 * between client and relay, not between relay and target. The target's log names the relay's
 * address only. Nothing uses port 53.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNamespace, whyNoNamespace, type Namespace, type NsProcess } from '../helpers/netns.js';
import { readPcap, type CapturedPacket } from '../helpers/pcap.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { makeTempDir, VEIL } from '../helpers/veil-process.js';

/** A stub client in the namespace: each name over UDP, one line per answer. */
const CLIENT = `
import dgram from 'node:dgram';
const [port, ...names] = process.argv.slice(2);
const build = (id, name) => Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
const ask = (q) => new Promise((resolve) => { const s = dgram.createSocket('udp4'); const t = setTimeout(() => { s.close(); resolve(null); }, 6000); s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); }); s.send(q, Number(port), '127.0.0.1'); });
let id = 1;
for (const name of names) {
  const answer = (await ask(build(id++, name))) ?? (await ask(build(id++, name)));
  console.log('ANSWER ' + name + ' ' + (answer ? 'rcode=' + (answer[3] & 15) + ' answers=' + answer.readUInt16BE(6) : 'none'));
}
console.log('DONE');
`;

describe('ODoH: no plaintext query between client, relay and target (packet capture)', { skip: whyNoNamespace('tcpdump') }, () => {
  let ns: Namespace;
  let dir = '';
  let certs: TestCerts | null = null;
  const label = `odoh${randomBytes(5).toString('hex')}`;
  const names = [`${label}-a.cap.test`, `${label}-b.cap.test`, `${label}-c.cap.test`];
  let packets: CapturedPacket[] = [];
  let clientPort = 0;
  let hopPorts: number[] = [];
  let clientOutput = '';
  let targetOutput = '';

  const veil = async (name: string, corefile: string): Promise<NsProcess> => {
    writeFileSync(path.join(dir, name), corefile);
    const proc = ns.run([VEIL, '-conf', name], dir);
    await proc.waitFor(/veil \S+ serving/);
    return proc;
  };
  const port = (proc: NsProcess, scheme: string): number => Number(proc.output().match(new RegExp(`listening on ${scheme}://127\\.0\\.0\\.\\d+:(\\d+)`))![1]);

  before(async () => {
    ns = createNamespace('veil-odoh');
    certs = makeTestCerts();
    dir = makeTempDir({ 'client.mjs': CLIENT });
    const capture = ns.run(['tcpdump', '-i', 'lo', '-n', '-U', '-B', '16384', '-s', '0', '-w', path.join(dir, 'lo.pcap')], dir);
    await capture.waitFor(/listening on lo/);

    const target = await veil(
      'Target',
      `. {
    listen https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
        odoh_target
    }
    log stderr
    hosts {
${names.map((n, i) => `        192.0.2.${i + 1} ${n}`).join('\n')}
    }
}
`,
    );
    const targetPort = port(target, 'https');
    const relay = await veil(
      'Relay',
      `. {
    listen https://127.0.0.2:0/proxy {
        cert ${certs.chain}
        key ${certs.key}
        odoh_relay {
            target dns.test:${targetPort} 127.0.0.1
            allow_private
            ca ${certs.ca}
        }
    }
}
`,
    );
    const relayPort = port(relay, 'https');
    hopPorts = [relayPort, targetPort];
    const client = await veil(
      'Client',
      `. {
    listen udp://127.0.0.1:0
    odoh {
        server t https://dns.test:${targetPort}/dns-query
        relay r https://dns.test:${relayPort}/proxy {
            bootstrap 127.0.0.2
            ca ${certs.ca}
        }
    }
}
`,
    );
    clientPort = port(client, 'udp');
    const stub = ns.run([process.execPath, 'client.mjs', String(clientPort), ...names], dir);
    await stub.waitFor(/DONE/, 30_000);
    clientOutput = stub.output();
    await new Promise((r) => setTimeout(r, 1000));
    await capture.stop('SIGINT');
    targetOutput = target.output();
    packets = readPcap(path.join(dir, 'lo.pcap'));
  });

  after(() => {
    ns?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('every query was answered through the relay', () => {
    for (const name of names) assert.match(clientOutput, new RegExp(`ANSWER ${name.replace(/\./g, '\\.')} rcode=0 answers=1`), clientOutput);
  });

  it('the capture saw encrypted traffic to the relay and to the target (so its silence below means something)', () => {
    assert.ok(packets.some((p) => (p.srcPort === clientPort || p.dstPort === clientPort) && p.payload.includes(label)), 'names visible where allowed');
    for (const hop of hopPorts) assert.ok(packets.some((p) => (p.srcPort === hop || p.dstPort === hop) && p.payload.length > 0), `traffic on port ${hop}`);
  });

  it('no packet between client and relay, or relay and target, carries a name asked; nothing used port 53', () => {
    const hops = packets.filter((p) => hopPorts.includes(p.srcPort) || hopPorts.includes(p.dstPort));
    assert.ok(hops.length > 0);
    assert.deepEqual(hops.filter((p) => p.payload.includes(label)).map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`), []);
    const elsewhere = packets.filter((p) => p.srcPort !== clientPort && p.dstPort !== clientPort);
    assert.deepEqual(elsewhere.filter((p) => p.payload.includes(label)).map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`), []);
    assert.deepEqual(packets.filter((p) => p.srcPort === 53 || p.dstPort === 53).map((p) => `${p.protocol} ${p.srcPort}→${p.dstPort}`), []);
  });

  it("the target's log names the relay's address, never the client's", () => {
    const lines = targetOutput.split('\n').filter((l) => l.includes(label));
    assert.equal(lines.length >= names.length, true, targetOutput);
    for (const line of lines) {
      assert.match(line, /127\.0\.0\.2/, line);
      assert.doesNotMatch(line, /127\.0\.0\.1\b/, line);
    }
  });
});
