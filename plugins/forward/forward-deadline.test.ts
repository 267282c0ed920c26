/**
 * Deadlines of queries sent upstream over UDP (core/upstream/datagram.ts): a socket keeps one
 * timer for all its queries rather than one each. Each query must still fail at its own
 * deadline, whatever order the queries were sent in, and not before it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { UdpClient } from '../../core/upstream/udp-client.js';

/**
 * A UDP client with one socket (so that one timer serves all its queries) to a server that answers
 * names starting with "answered" and is silent to the rest; both closed after `body`.
 */
async function withClient(body: (client: UdpClient, server: FakeDns) => Promise<void>): Promise<void> {
  const server = await startFakeDns((query) => {
    const name = query.packet.questions?.[0]?.name.toLowerCase() ?? '';
    return name.startsWith('answered') ? answerFor(query, [{ type: 'A', name, ttl: 60, data: '192.0.2.9' }]) : null;
  });
  const client = new UdpClient('127.0.0.1', server.port);
  try {
    await body(client, server);
  } finally {
    client.close();
    await server.close();
  }
}

describe('UDP upstream deadlines', () => {
  it('queries to a silent server fail in the order of their deadlines, not of their sending', () =>
    withClient(async (client) => {
      const failed: string[] = [];
      const ask = (name: string, timeoutMs: number) =>
        client.exchange(buildQuery(`${name}.veil.test`, QType.A), timeoutMs).then(
          () => failed.push(`${name} answered`),
          (err: Error) => failed.push(`${name}: ${err.message.replace(/^.*(no answer within \d+ms)$/, '$1')}`),
        );
      // The later ones have earlier deadlines: the socket's timer must be brought forward for each.
      await Promise.all([ask('long', 900), ask('short', 150), ask('middle', 450)]);
      assert.deepEqual(failed, ['short: no answer within 150ms', 'middle: no answer within 450ms', 'long: no answer within 900ms']);
    }));

  it('an answered query leaves the timer set for its deadline; a query sent after it still gets its whole wait', () =>
    withClient(async (client) => {
      await client.exchange(buildQuery('answered.veil.test', QType.A), 500);
      const started = performance.now();
      await assert.rejects(client.exchange(buildQuery('unanswered.veil.test', QType.A), 600), /no answer within 600ms/);
      // The timer fires at the answered query's deadline first, ~100 ms before the unanswered one's.
      // (A Node timer may fire up to a millisecond early; nothing else may shorten the wait.)
      const waited = performance.now() - started;
      assert.ok(waited >= 598, `failed after ${waited.toFixed(1)} ms of its 600`);
    }));

  it('deadlines milliseconds apart (a flood to a silent server) are met in sweeps, not one look at every query each', () =>
    withClient(async (client) => {
      const first = client.exchange(buildQuery('q0.flood.veil.test', QType.A), 100).catch((err: Error) => err);
      const socket = (client as unknown as { sockets: { sockets: { expire: (now: number) => number }[] } }).sockets.sockets[0]!;
      const expire = socket.expire;
      let firings = 0;
      socket.expire = (now) => {
        firings++;
        return expire.call(socket, now);
      };
      // 60 deadlines 2 ms apart, from 102 to 220 ms (a socket carries 64 queries: all on this one).
      const rest = Array.from({ length: 60 }, (_, i) => client.exchange(buildQuery(`q${i + 1}.flood.veil.test`, QType.A), 102 + 2 * i).catch((err: Error) => err));
      const failed = await Promise.all([first, ...rest]);
      assert.ok(failed.every((err) => err instanceof Error && /no answer within/.test(err.message)), 'each one timed out');
      // One sweep each EXPIRY_SLACK_MS (10 ms) over the 120 ms: about 12, against 60 without it.
      assert.ok(firings <= 25, `the timer fired ${firings} times`);
    }));

  it('a wait that is no number (a bug of the caller) ends at once rather than never', () =>
    withClient(async (client) => {
      await assert.rejects(client.exchange(buildQuery('nan.veil.test', QType.A), Number.NaN), /no answer within/);
      await assert.rejects(client.exchange(buildQuery('negative.veil.test', QType.A), -5), /no answer within/);
    }));

  it('closing the client fails what is pending at once and leaves no timer behind', () =>
    withClient(async (client) => {
      const pending = client.exchange(buildQuery('closed.veil.test', QType.A), 5000);
      const socket = (client as unknown as { sockets: { sockets: { deadlines: { armed: boolean } }[] } }).sockets.sockets[0]!;
      assert.equal(socket.deadlines.armed, true, 'a timer is set while the query waits');
      client.close();
      await assert.rejects(pending, /stopped|closed/);
      assert.equal(socket.deadlines.armed, false, 'and cleared with the socket');
    }));
});
