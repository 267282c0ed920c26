/**
 * Overload, against the real bin/veil: a crowd of idle TCP and TLS connections, a client that
 * sends and never reads, and queries arriving faster than the upstream answers. Expected: Veil
 * keeps answering UDP and new stream clients, every limit holds and is logged once, and queries
 * over `max_concurrent` are answered REFUSED at once rather than queued.
 *
 * The crowd is 10,000 connections (VEIL_OVERLOAD_TCP TCP + VEIL_OVERLOAD_TLS TLS, 8,000 + 2,000
 * by default): both processes stay under a 20,000 descriptor limit, and 2,000 TLS handshakes are
 * what a shared 2-core machine does in a few seconds.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, rcodeName } from '../../core/dns/constants.js';
import { frame, FrameReader } from '../../core/dns/framing.js';
import { buildQuery } from '../../core/dns/message.js';
import { fullRcode } from '../../core/dns/wire.js';
import { queryTcp, queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { startVeil, type VeilProcess } from '../helpers/veil-process.js';

const TCP_CROWD = Number(process.env.VEIL_OVERLOAD_TCP ?? 8000);
const TLS_CROWD = Number(process.env.VEIL_OVERLOAD_TLS ?? 2000);
const rcode = (b: Buffer) => rcodeName(fullRcode(b));
const firstA = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as { data?: string } | undefined)?.data;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Opens `count` connections, `batch` at a time; resolves with those that connected. */
async function crowd<T extends net.Socket>(count: number, batch: number, open: () => T, ready: 'connect' | 'secureConnect'): Promise<T[]> {
  const sockets: T[] = [];
  for (let done = 0; done < count; done += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, count - done) }, () => {
        const socket = open();
        socket.on('error', () => {});
        return new Promise<T | null>((resolve) => {
          socket.once(ready, () => resolve(socket));
          socket.once('close', () => resolve(null));
        });
      }),
    );
    for (const s of opened) if (s) sockets.push(s);
  }
  return sockets;
}

let certs: TestCerts;
let origin: FakeDns;
before(async () => {
  certs = makeTestCerts();
  origin = await startFakeDns((q) => {
    const name = q.packet.questions![0]!.name;
    // Names arrive in random case (DNS 0x20).
    if (name.toLowerCase().startsWith('hang.')) return null;
    if (name.toLowerCase().startsWith('big.')) return answerFor(q, Array.from({ length: 16 }, () => ({ type: 'TXT' as const, name, ttl: 60, data: ['x'.repeat(250)] })));
    return answerFor(q, [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }]);
  });
});
after(async () => {
  await origin.close();
  rmSync(certs.dir, { recursive: true, force: true });
});

describe('overload: a crowd of idle connections', () => {
  let veil: VeilProcess;
  const clients: net.Socket[] = [];
  before(async () => {
    veil = await startVeil(`. {
    listen udp://127.0.0.1:0
    listen tcp://127.0.0.1:0 {
        max_connections ${TCP_CROWD}
        idle_timeout 120s
    }
    listen tls://127.0.0.1:0 {
        cert ${certs.chain}
        key ${certs.key}
        max_connections ${TLS_CROWD + 100}
        idle_timeout 120s
    }
    forward . 127.0.0.1:${origin.port}
}
`);
    await veil.waitFor('listening on tls://');
  });
  after(async () => {
    for (const s of clients) s.destroy();
    await veil.stop();
  });

  const ask = (name: string, type: number = QType.A) => {
    const udp = veil.address('udp');
    return queryUdp(udp.host, udp.port, buildQuery(name, type, { id: 7 }), 8000);
  };

  it(`${TCP_CROWD + TLS_CROWD} idle TCP and TLS connections: UDP, new TCP and new TLS clients are still answered; the limit is logged once`, async (t) => {
    const tcpAddress = veil.address('tcp');
    const tlsAddress = veil.address('tls');
    const rssBefore = rssOf(veil.child.pid!);
    // a few hundred more than max_connections: the oldest idle ones make room
    const extra = 300;
    const tcpCrowd = await crowd(TCP_CROWD + extra, 500, () => net.connect(tcpAddress.port, tcpAddress.host), 'connect');
    clients.push(...tcpCrowd);
    const tlsCrowd = await crowd(TLS_CROWD, 100, () => tls.connect({ host: tlsAddress.host, port: tlsAddress.port, servername: 'dns.test', ca: readFileSync(certs.ca) }), 'secureConnect');
    clients.push(...tlsCrowd);
    assert.equal(tlsCrowd.length, TLS_CROWD, 'every TLS client completed its handshake');
    await sleep(200);
    const tcpOpen = tcpCrowd.filter((s) => !s.destroyed && s.readyState === 'open').length;
    t.diagnostic(`open: ${tcpOpen} TCP + ${tlsCrowd.filter((s) => !s.destroyed).length} TLS; Veil RSS ${Math.round(rssBefore / 2 ** 20)} MiB → ${Math.round(rssOf(veil.child.pid!) / 2 ** 20)} MiB`);
    assert.ok(tcpOpen <= TCP_CROWD, `${tcpOpen} TCP connections open, over max_connections`);
    assert.ok(tcpOpen >= TCP_CROWD - extra, `${tcpOpen} TCP connections open: idle ones were closed beyond need`);

    assert.equal(firstA(await ask('udp.test')), '192.0.2.1');
    const [overTcp] = await queryTcp(tcpAddress.host, tcpAddress.port, [buildQuery('tcp.test', QType.A, { id: 8 })], 8000);
    assert.equal(firstA(overTcp!), '192.0.2.1');
    const overTls = await new Promise<Buffer>((resolve, reject) => {
      const socket = tls.connect({ host: tlsAddress.host, port: tlsAddress.port, servername: 'dns.test', ca: readFileSync(certs.ca) }, () => socket.write(frame(buildQuery('tls.test', QType.A, { id: 9 }))));
      const reader = new FrameReader();
      socket.on('data', (chunk: Buffer) => {
        const [message] = reader.push(chunk);
        if (message) {
          socket.destroy();
          resolve(message);
        }
      });
      socket.on('error', reject);
      setTimeout(() => reject(new Error('no answer over TLS')), 8000).unref();
    });
    assert.equal(firstA(overTls), '192.0.2.1');
    assert.equal(veil.stderr().split('closing the oldest idle ones').length - 1, 1, 'the eviction is logged once');
    for (const s of [...tcpCrowd, ...tlsCrowd]) s.destroy();
  });

});

describe('overload: slow clients and slow upstreams', () => {
  let veil: VeilProcess;
  before(async () => {
    veil = await startVeil(`{
    max_concurrent 50
}
. {
    listen udp://127.0.0.1:0
    listen tcp://127.0.0.1:0 {
        idle_timeout 3s
    }
    forward . 127.0.0.1:${origin.port} {
        timeout 1s
    }
}
`);
    await veil.waitFor('listening on tcp://');
  });
  after(() => veil.stop());

  const ask = (name: string, type: number = QType.A) => {
    const udp = veil.address('udp');
    return queryUdp(udp.host, udp.port, buildQuery(name, type, { id: 7 }), 8000);
  };

  it('a client that sends and never reads is cut off; others are answered meanwhile', async () => {
    const address = veil.address('tcp');
    const slow = net.connect(address.port, address.host);
    slow.on('error', () => {});
    await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
    slow.pause();
    const closed = new Promise<void>((resolve) => slow.once('close', () => resolve()));
    // 40 at a time (under max_concurrent), 4 KiB answers: far more than the socket buffers hold
    for (let batch = 0; batch < 100 && !slow.destroyed; batch++) {
      slow.write(Buffer.concat(Array.from({ length: 40 }, (_, i) => frame(buildQuery(`big.${batch}-${i}.test`, QType.TXT, { id: i })))));
      await sleep(20);
    }
    // others are answered while the slow client holds its answers
    for (let i = 0; i < 5; i++) assert.equal(firstA(await ask(`other${i}.test`)), '192.0.2.1');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => (timer = setTimeout(() => r('still open'), 30_000)))]);
    clearTimeout(timer);
    assert.equal(outcome, 'closed', 'Veil stops queueing answers for a client that does not read');
  });

  it('queries faster than the upstream answers: REFUSED beyond max_concurrent, at once; logged once; recovers', async () => {
    const logged = () => veil.stderr().split('(max_concurrent)').length - 1;
    const loggedBefore = logged();
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => ask(`hang.${i}.test`)));
    const counts: Record<string, number> = {};
    for (const a of answers) counts[rcode(a)] = (counts[rcode(a)] ?? 0) + 1;
    assert.ok((counts.REFUSED ?? 0) >= 250, `REFUSED beyond max_concurrent: ${JSON.stringify(counts)}`);
    assert.equal((counts.REFUSED ?? 0) + (counts.SERVFAIL ?? 0), 300, JSON.stringify(counts));
    assert.equal(firstA(await ask('after.test')), '192.0.2.1', 'answering again once the slow queries ended');
    assert.equal(logged() - loggedBefore, 1, 'reaching the bound is logged once');
    await veil.waitFor('below max_concurrent again', 5000, loggedBefore + 1);
  });
});
