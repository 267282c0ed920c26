/**
 * A datagram lost between Veil and its upstream (a busy server's full receive buffer, a lossy
 * link): the query is sent once more after a fraction of a second instead of costing the whole
 * deadline and ending in SERVFAIL (core/upstream/datagram.ts). Against the real bin/veil and a
 * scripted server that ignores the first copy of each query, and the UDP client on its own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, Rcode } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { rcodeOf } from '../../core/dns/wire.js';
import { queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns, type FakeQuery } from '../../core/testing/fake-dns.js';
import { RESEND_MIN_MS } from '../../core/upstream/datagram.js';
import { UdpClient } from '../../core/upstream/udp-client.js';
import { startVeil } from '../../test/helpers/veil-process.js';

const firstA = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;
const nameOf = (query: FakeQuery) => query.packet.questions?.[0]?.name.toLowerCase() ?? '';

/** A server that loses the first `lost` copies of every name it is asked and answers the next ones. */
async function losingFirstCopies(lost = 1): Promise<FakeDns> {
  const seen = new Map<string, number>();
  return startFakeDns((query) => {
    const name = nameOf(query);
    const copies = (seen.get(name) ?? 0) + 1;
    seen.set(name, copies);
    if (copies <= lost) return null;
    return answerFor(query, [{ type: 'A', name: query.packet.questions![0]!.name, ttl: 60, data: '192.0.2.7' }]);
  });
}

describe('a query lost on its way upstream over UDP is sent once more', () => {
  let lossy: FakeDns;
  before(async () => {
    lossy = await losingFirstCopies();
  });
  after(() => lossy.close());

  it('through bin/veil: answered from the second copy, the same bytes from the same port', async () => {
    const veil = await startVeil(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${lossy.port} {\n    timeout 2s\n  }\n  metrics 127.0.0.1:0\n}\n`);
    try {
      const { host, port } = veil.address('udp');
      lossy.queries.length = 0;
      const started = performance.now();
      const answer = await queryUdp(host, port, buildQuery('lost-once.veil.test', QType.A, { id: 41 }), 5000);
      const took = performance.now() - started;
      assert.equal(rcodeOf(answer), Rcode.NOERROR);
      assert.equal(firstA(answer), '192.0.2.7');
      assert.equal(lossy.queries.length, 2, 'the first copy and the one sent again');
      const [first, second] = lossy.queries as [FakeQuery, FakeQuery];
      assert.ok(first.wire.equals(second.wire), 'the same query, ID and case and all');
      assert.equal(first.from.port, second.from.port, 'from the socket that waits for its answer');
      // Well before the 2 s deadline (the first resend comes after 400 ms, before any round trip is known).
      assert.ok(took < 1500, `answered after ${Math.round(took)} ms`);
      const metricsAt = /serving (http:\/\/[\d.]+:\d+\/metrics)/.exec(veil.stderr())![1]!;
      const metrics = await (await fetch(metricsAt)).text();
      assert.match(metrics, /veil_upstream_retries_total\{[^}]*reason="resent"[^}]*\} 1\b/);
    } finally {
      await veil.stop();
    }
  });

  it('the UDP client on its own: one resend when it is answered, and none when the deadline leaves no room for one', async () => {
    const client = new UdpClient('127.0.0.1', lossy.port);
    try {
      lossy.queries.length = 0;
      const answer = await client.exchange(buildQuery('client-lost-once.veil.test', QType.A, { id: 7 }), 2000);
      assert.equal(firstA(answer), '192.0.2.7');
      assert.equal(answer.readUInt16BE(0), 7, 'the caller gets its own ID back');
      assert.equal(lossy.queries.length, 2);

      // A deadline shorter than two resend waits: the query goes once and times out.
      lossy.queries.length = 0;
      await assert.rejects(client.exchange(buildQuery('short-deadline.veil.test', QType.A, { id: 8 }), 2 * RESEND_MIN_MS - 50), /no answer within/);
      assert.equal(lossy.queries.length, 1, 'not sent again');
    } finally {
      client.close();
    }
  });

  it('once every query is answered the next sweep arms no other: an idle Veil stops waking for resends', async () => {
    const answering = await startFakeDns((query) => answerFor(query, [{ type: 'A', name: query.packet.questions![0]!.name, ttl: 60, data: '192.0.2.8' }]));
    const client = new UdpClient('127.0.0.1', answering.port);
    try {
      const resender = (client as unknown as { sockets: { resender: { timer: { armed: boolean }; planned: number } } }).sockets.resender;
      const pending = client.exchange(buildQuery('idle.veil.test', QType.A, { id: 5 }), 2000);
      assert.ok(resender.timer.armed, 'a sweep is due while the query waits');
      assert.equal(firstA(await pending), '192.0.2.8');
      assert.equal(resender.planned, 0);
      // The armed sweep is left to run (clearing it would not spare libuv's wake-up); it finds
      // nothing planned and arms no next one.
      for (let waited = 0; resender.timer.armed && waited < 2000; waited += 10) await new Promise((ok) => setTimeout(ok, 10));
      assert.ok(!resender.timer.armed, 'the sweep after the answer arms no other');
      await new Promise((ok) => setTimeout(ok, 150)); // three ticks
      assert.ok(!resender.timer.armed, 'nor does anything later, with no query');
      assert.equal(answering.queries.length, 1);
    } finally {
      client.close();
      await answering.close();
    }
  });

  it('one query at a time: the sweep is set for the first resend that can fall due, and the queries after it leave it as it is', async () => {
    const answering = await startFakeDns((query) => answerFor(query, [{ type: 'A', name: query.packet.questions![0]!.name, ttl: 60, data: '192.0.2.9' }]));
    const client = new UdpClient('127.0.0.1', answering.port);
    try {
      const resender = (client as unknown as { sockets: { resender: { timer: { armed: boolean; at: number }; afterMs: number } } }).sockets.resender;
      // The first answer's round trip brings the wait down from its initial 400 ms to 200 ms, the
      // least, where a loopback server keeps it; the sweep is then set sooner, once.
      assert.equal(firstA(await client.exchange(buildQuery('home-0.veil.test', QType.A, { id: 20 }), 2000)), '192.0.2.9');
      assert.equal(resender.afterMs, RESEND_MIN_MS);
      const sentAt = performance.now();
      assert.equal(firstA(await client.exchange(buildQuery('home-1.veil.test', QType.A, { id: 21 }), 2000)), '192.0.2.9');
      const armedFor = resender.timer.at;
      // Ticks are 50 ms of performance.now(): the sweep comes a whole wait after the query at the
      // soonest (a tick sooner at most), not at the next tick, which would wake Veil once a query.
      assert.ok(armedFor >= sentAt + resender.afterMs - 50, `set for ${Math.round(armedFor - sentAt)} ms after the query`);
      for (let i = 2; i <= 6; i++) assert.equal(firstA(await client.exchange(buildQuery(`home-${i}.veil.test`, QType.A, { id: 20 + i }), 2000)), '192.0.2.9');
      assert.equal(resender.timer.at, armedFor, 'the same sweep serves the later queries');
      assert.ok(resender.timer.armed);
      assert.equal(answering.queries.length, 7, 'none sent again');
    } finally {
      client.close();
      await answering.close();
    }
  });

  it('two copies lost (a server a burst keeps full): answered from the third', async () => {
    const losing = await losingFirstCopies(2);
    const client = new UdpClient('127.0.0.1', losing.port);
    try {
      const answer = await client.exchange(buildQuery('lost-twice.veil.test', QType.A, { id: 10 }), 3000);
      assert.equal(firstA(answer), '192.0.2.7');
      assert.equal(losing.queries.length, 3);
      assert.ok(losing.queries.every((q) => q.wire.equals(losing.queries[0]!.wire)), 'the same bytes each time');
    } finally {
      client.close();
      await losing.close();
    }
  });

  it('a silent server gets three copies of a query at most, and the third only when a whole wait is left after it', async () => {
    const silent = await startFakeDns(() => null);
    const client = new UdpClient('127.0.0.1', silent.port);
    try {
      await assert.rejects(client.exchange(buildQuery('silent.veil.test', QType.A, { id: 9 }), 3000), /no answer within/);
      assert.equal(silent.queries.length, 3);
      silent.queries.length = 0;
      // 1.5 s: after the second copy (at 400–600 ms), the third (800–1200 ms later) would leave less than a wait.
      await assert.rejects(client.exchange(buildQuery('silent-short.veil.test', QType.A, { id: 11 }), 1500), /no answer within/);
      assert.equal(silent.queries.length, 2);
    } finally {
      client.close();
      await silent.close();
    }
  });
});
