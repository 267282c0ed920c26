/**
 * DoH with software nobody here wrote: Veil's doh upstream against dnsdist's DoH front-end
 * (POST and GET, dnsdist forwarding to unbound; Veil's own HTTP/2 client and `http2 node`), and Veil's https listener answering kdig
 * +https and curl over HTTP/2 and HTTP/1.1 (GET, POST and JSON). A second Veil chained to the
 * first's listener covers Veil talking to itself across real processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { makeTestCerts, run, skipUnless, startDnsdist, startUnboundOrigin, which, type Dnsdist, type Peer, type TestCerts } from '../helpers/peers.js';
import { startVeil, type VeilProcess } from '../helpers/veil-process.js';

const skip = skipUnless('unbound', 'dnsdist');

describe('doh interop: Veil, dnsdist, unbound, kdig, curl', { skip }, () => {
  let certs: TestCerts;
  let origin: Peer;
  let dnsdist: Dnsdist;
  let veil: VeilProcess;
  let chained: VeilProcess;
  let udpPort: number;
  let httpsPort: number;
  let httpPort: number;

  before(async () => {
    certs = makeTestCerts();
    origin = await startUnboundOrigin();
    dnsdist = await startDnsdist({ backendPort: origin.port, doh: certs });
    // `.` goes to dnsdist by POST; lab.test by GET.
    veil = await startVeil(`. {
    listen udp://127.0.0.1:0 https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen http://127.0.0.1:0/dns-query
    doh {
        server dnsdist-post https://dns.test:${dnsdist.ports.doh}/dns-query {
            bootstrap 127.0.0.1
            ca ${certs.ca}
        }
    }
    log
}
lab.test {
    doh {
        server dnsdist-get https://dns.test:${dnsdist.ports.doh}/dns-query {
            bootstrap 127.0.0.1
            ca ${certs.ca}
            method get
        }
    }
}
node.example {
    doh {
        server dnsdist-node https://dns.test:${dnsdist.ports.doh}/dns-query {
            bootstrap 127.0.0.1
            ca ${certs.ca}
            http2 node
        }
    }
    log
}
`);
    udpPort = veil.address('udp').port;
    httpsPort = veil.address('https').port;
    httpPort = veil.address('http').port;
    chained = await startVeil(`. {
    listen udp://127.0.0.1:0
    doh {
        server first-veil https://localhost:${httpsPort}/dns-query {
            bootstrap 127.0.0.1
            ca ${certs.ca}
            pin_sha256 ${certs.spkiPin}
        }
    }
}
`);
  });
  after(async () => {
    await chained?.stop();
    await veil?.stop();
    await dnsdist?.stop();
    await origin?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  const ask = async (port: number, name: string, type: number = QType.A) => dnsPacket.decode(await queryUdp('127.0.0.1', port, buildQuery(name, type, { id: 777 }), 5000));
  const data = (packet: dnsPacket.Packet) => (packet.answers ?? []).map((a) => (a as { data: unknown }).data);

  describe("Veil's doh upstream against dnsdist's DoH front-end", () => {
    it('POST: names come from unbound through dnsdist', async () => {
      const answer = await ask(udpPort, 'anything.example.');
      assert.equal(answer.id, 777);
      assert.deepEqual(data(answer), ['203.0.113.1']);
      assert.equal(((await ask(udpPort, 'x.nx.test')) as { rcode?: string }).rcode, 'NXDOMAIN');
    });

    it('GET (lab.test): the MX from unbound', async () => {
      const answer = await ask(udpPort, 'lab.test', QType.MX);
      assert.deepEqual(data(answer), [{ preference: 10, exchange: 'mail.lab.test' }]);
    });

    it('a 3.4 KB answer arrives whole over DoH and is truncated only for the UDP client', async () => {
      const tc = await queryUdp('127.0.0.1', udpPort, buildQuery('big.lab.test', QType.TXT, { id: 1 }), 5000);
      assert.ok((tc[2]! & 0x02) !== 0, 'TC expected over UDP without EDNS');
      const whole = await queryUdp('127.0.0.1', udpPort, buildQuery('big.lab.test', QType.TXT, { id: 1, edns: { udpSize: 4096 } }), 5000);
      assert.equal(dnsPacket.decode(whole).answers!.length, 16);
    });

    it('http2 node (node:http2 instead of Veil\'s own client): the same answers', async () => {
      const answer = await ask(udpPort, 'a.node.example.');
      assert.deepEqual(data(answer), ['203.0.113.1']);
      const started = Date.now();
      while (!/"upstream":"dnsdist-node"/.test(veil.stdout()) && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
      assert.match(veil.stdout(), /"upstream":"dnsdist-node"/);
    });

    it('the log names the doh upstream', async () => {
      await ask(udpPort, 'logged.example.');
      const started = Date.now();
      while (!/"upstream":"dnsdist-post"/.test(veil.stdout()) && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
      assert.match(veil.stdout(), /"upstream":"dnsdist-post"/);
    });
  });

  it("a second Veil through the first one's https listener (pinned)", async () => {
    const answer = await ask(chained.address('udp').port, 'chained.example.');
    assert.deepEqual(data(answer), ['203.0.113.1']);
  });

  describe("kdig and curl against Veil's listener", () => {
    it('kdig +https, POST and GET', { skip: skipUnless('kdig') }, () => {
      const kdig = (...extra: string[]) =>
        run('kdig', ['@127.0.0.1', '-p', String(httpsPort), `+tls-ca=${certs.ca}`, '+tls-hostname=dns.test', '+short', '+timeout=5', ...extra]);
      assert.equal(kdig('+https', 'lab.test', 'MX').stdout.trim(), '10 mail.lab.test.');
      assert.equal(kdig('+https=/dns-query', '+https-get', 'anything.example.').stdout.trim(), '203.0.113.1');
    });

    const curlSkip = skipUnless('curl');
    const curl = (args: string[], body?: Buffer) => {
      const out = path.join(certs.dir, `curl-${Math.random().toString(16).slice(2)}.out`);
      const result = spawnSync(which('curl')!, ['-sS', '--max-time', '5', '-o', out, '-w', '%{http_code} %{http_version} %{content_type}', ...args], { input: body });
      const [code, version, type] = result.stdout.toString().split(' ');
      const content = spawnSync('cat', [out]).stdout;
      rmSync(out, { force: true });
      return { code: Number(code), version, type, body: content, stderr: result.stderr.toString() };
    };
    const tlsArgs = () => ['--cacert', certs.ca, '--resolve', `dns.test:${httpsPort}:127.0.0.1`];
    const wire = (name: string, type: number = QType.A) => buildQuery(name, type, { id: 0 });

    for (const [flag, version] of [
      ['--http2', '2'],
      ['--http1.1', '1.1'],
    ] as const) {
      it(`curl ${flag}: GET, POST and JSON`, { skip: curlSkip }, () => {
        const url = `https://dns.test:${httpsPort}/dns-query`;
        const get = curl([flag, ...tlsArgs(), `${url}?dns=${wire('lab.test', QType.MX).toString('base64url')}`]);
        assert.equal(get.code, 200, get.stderr);
        assert.equal(get.version, version);
        assert.equal(get.type, 'application/dns-message');
        assert.deepEqual(data(dnsPacket.decode(get.body)), [{ preference: 10, exchange: 'mail.lab.test' }]);

        const body = wire('anything.example.');
        const post = curl([flag, ...tlsArgs(), '-H', 'content-type: application/dns-message', '--data-binary', '@-', url], body);
        assert.equal(post.code, 200, post.stderr);
        assert.equal(post.version, version);
        assert.deepEqual(data(dnsPacket.decode(post.body)), ['203.0.113.1']);

        const json = curl([flag, ...tlsArgs(), '-H', 'accept: application/dns-json', `${url}?name=lab.test&type=MX`]);
        assert.equal(json.code, 200, json.stderr);
        assert.equal(json.type, 'application/dns-json');
        const doc = JSON.parse(json.body.toString());
        assert.equal(doc.Status, 0);
        assert.equal(doc.Answer[0].data, '10 mail.lab.test.');

        const wrongType = curl([flag, ...tlsArgs(), '-H', 'content-type: text/plain', '--data-binary', '@-', url], body);
        assert.equal(wrongType.code, 415);
      });
    }

    it('curl over plain http://, HTTP/1.1 and h2c', { skip: curlSkip }, () => {
      for (const flag of ['--http1.1', '--http2-prior-knowledge']) {
        const result = curl([flag, `http://127.0.0.1:${httpPort}/dns-query?name=anything.example.&type=A`]);
        assert.equal(result.code, 200, result.stderr);
        assert.equal(result.version, flag === '--http1.1' ? '1.1' : '2');
        assert.equal(JSON.parse(result.body.toString()).Answer[0].data, '203.0.113.1');
      }
    });
  });
});
