/**
 * The DoH listener's bounds on what one client can hold (security review of 2026-12-04, issue
 * 24): pipelined HTTP/1.1 requests per connection, connections held open by requests that never
 * finish, connections per client address; and padded answers to padded queries.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { QType, Rcode } from '../../core/dns/constants.js';
import { hasPadding, padMessage } from '../../core/dns/edns.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { HTTP2_IMPLEMENTATIONS } from '../../lib/http2/server.js';
import { h1Call } from '../../test/helpers/doh-client.js';
import { block, RawClient, T } from '../../test/helpers/h2-frames.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const getPath = (wire: Buffer) => `/dns-query?dns=${wire.toString('base64url')}`;
const rcode = (wire: Buffer) => wire[3]! & 0x0f;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A plain TCP connection from `localAddress` (127.0.0.0/8 gives each test client its own address). */
async function connectFrom(localAddress: string, host: string, port: number): Promise<net.Socket> {
  const socket = net.connect({ host, port, localAddress });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  return socket;
}

function closed(socket: net.Socket): Promise<void> {
  return socket.destroyed ? Promise.resolve() : new Promise((r) => socket.once('close', () => r()));
}

/** An HTTP/1.1 POST whose body never completes. */
async function slowH1Post(localAddress: string, port: number): Promise<net.Socket> {
  const socket = await connectFrom(localAddress, '127.0.0.2', port);
  socket.write('POST /dns-query HTTP/1.1\r\nhost: x\r\ncontent-type: application/dns-message\r\ncontent-length: 100\r\n\r\nabc');
  return socket;
}

/** An HTTP/2 (prior knowledge) POST whose body never completes. */
async function slowH2Post(localAddress: string, port: number): Promise<net.Socket> {
  const client = new RawClient(await connectFrom(localAddress, '127.0.0.2', port));
  client.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
  client.send(T.SETTINGS, 0, 0);
  const fields: [string, string][] = [[':method', 'POST'], [':scheme', 'http'], [':path', '/dns-query'], ['content-type', 'application/dns-message']];
  client.send(T.HEADERS, 0x4, 1, block(fields));
  client.send(T.DATA, 0, 1, Buffer.from('abc'));
  return client.socket;
}

// The same bounds for each HTTP/2 implementation a listener may use (`http2 veil|node`).
for (const implementation of HTTP2_IMPLEMENTATIONS) {
  describe(`DoH listener: what one client can hold (http2 ${implementation})`, () => {
    let veil: TestServer;
    let udpPort: number;
    let pipelined: number;
    let crowded: number;
    let perClient: number;

    before(async () => {
      veil = await startTestServer(
        `{
    max_concurrent 50
  }
  . {
    listen udp://127.0.0.1:0
    listen http://127.0.0.1:0/dns-query {
      http2 ${implementation}
      max_streams 4
    }
    listen http://127.0.0.2:0/dns-query {
      http2 ${implementation}
      max_connections 4
      request_timeout 30s
      idle_timeout 60s
    }
    hosts {
      192.0.2.10 web.veil.test
    }
    slow 100
  }
  . {
    listen http://127.0.0.3:0/dns-query {
      http2 ${implementation}
      max_connections_per_client 2
    }
    hosts {
      192.0.2.10 web.veil.test
    }
    slow 3000
  }`,
        { registry: testRegistry(), queryTimeoutMs: 5000 },
      );
      udpPort = veil.address('udp://127.0.0.1:0').port;
      pipelined = veil.address('http://127.0.0.1:0/dns-query').port;
      crowded = veil.address('http://127.0.0.2:0/dns-query').port;
      perClient = veil.address('http://127.0.0.3:0/dns-query').port;
    });
    after(() => veil?.stop());

    it("issue 24 finding 4: one HTTP/1.1 connection's pipelined requests cannot take the server's max_concurrent", async () => {
      const socket = await connectFrom('127.0.0.1', '127.0.0.1', pipelined);
      let reply = '';
      socket.on('data', (d) => (reply += d.toString('latin1')));
      const request = `GET ${getPath(buildQuery('slow.veil.test', QType.A, { id: 7 }))} HTTP/1.1\r\nhost: x\r\n\r\n`;
      socket.write(request.repeat(100)); // 100 queries of 100 ms each, pipelined; max_concurrent is 50
      await sleep(50);
      const udp = await Promise.all(Array.from({ length: 40 }, (_, i) => queryUdp('127.0.0.1', udpPort, buildQuery('web.veil.test', QType.A, { id: i }))));
      assert.deepEqual(
        udp.map(rcode).filter((code) => code !== Rcode.NOERROR),
        [],
        'UDP queries of another client were refused',
      );
      for (let i = 0; i < 200 && (reply.match(/HTTP\/1\.1 200 /g) ?? []).length < 100; i++) await sleep(50);
      assert.equal((reply.match(/HTTP\/1\.1 200 /g) ?? []).length, 100, 'every pipelined request is answered, in turn');
      assert.ok(!veil.logs.some((line) => line.includes('(max_concurrent)')), 'max_concurrent was reached');
      socket.destroy();
    });

    it('issue 24 finding 7: requests whose bodies never arrive do not lock new clients out at max_connections', async () => {
      const holders = await Promise.all([
        slowH1Post('127.0.0.4', crowded),
        slowH1Post('127.0.0.5', crowded),
        slowH2Post('127.0.0.6', crowded),
        slowH2Post('127.0.0.7', crowded),
      ]);
      await sleep(200); // the four requests are in, their bodies awaited for up to 30 s
      // A fifth client is served: a connection only waiting for its client makes room.
      const answer = await h1Call(`http://127.0.0.2:${crowded}`, { path: getPath(buildQuery('web.veil.test', QType.A, { id: 9 })) });
      assert.equal(answer.status, 200);
      assert.ok(holders.some((s) => s.destroyed || s.readableEnded), 'no waiting connection was closed to make room');
      for (const socket of holders) socket.destroy();
    });

    it('issue 24 finding 7: one client address holds at most max_connections_per_client connections', async () => {
      const busy = await Promise.all(
        [0, 1].map(async () => {
          const socket = await connectFrom('127.0.0.8', '127.0.0.3', perClient);
          socket.write(`GET ${getPath(buildQuery('slow.veil.test', QType.A, { id: 1 }))} HTTP/1.1\r\nhost: x\r\n\r\n`);
          return socket;
        }),
      );
      await sleep(100); // both queries are being answered (3 s each)
      const third = await connectFrom('127.0.0.8', '127.0.0.3', perClient);
      let thirdReply = '';
      third.on('data', (d) => (thirdReply += d));
      third.write(`GET ${getPath(buildQuery('web.veil.test', QType.A, { id: 2 }))} HTTP/1.1\r\nhost: x\r\n\r\n`);
      await closed(third);
      assert.equal(thirdReply, '', 'a third busy-client connection was served');
      // Another address is not held back, and the client's own connections still get their answers.
      const other = await h1Call(`http://127.0.0.3:${perClient}`, { path: getPath(buildQuery('web.veil.test', QType.A, { id: 3 })) });
      assert.equal(other.status, 200);
      for (const socket of busy) socket.destroy();
    });

    it('issue 24 low: answers to padded queries are padded (RFC 8467), as over DoT', async () => {
      const origin = `http://127.0.0.1:${pipelined}`;
      const padded = await h1Call(origin, { path: '/dns-query', body: padMessage(buildQuery('web.veil.test', QType.A, { id: 5 })), headers: { 'content-type': 'application/dns-message' } });
      assert.equal(padded.status, 200);
      assert.ok(hasPadding(padded.body), 'the answer has no padding option');
      assert.equal(padded.body.length % 468, 0, `${padded.body.length} bytes`);
      const plain = await h1Call(origin, { path: '/dns-query', body: buildQuery('web.veil.test', QType.A, { id: 6 }), headers: { 'content-type': 'application/dns-message' } });
      assert.ok(!hasPadding(plain.body));
    });
  });
}
