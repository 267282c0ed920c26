/**
 * core/upstream/base.ts: what every upstream does around its transport. A protocol written in
 * the test (its transport a function) shows the rules; the plain DNS upstream against a DNS
 * server on loopback shows close (drain) apart from destroy.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { RequestContext } from '../core/context.js';
import { EdnsOption, QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { forEachEdnsOption, isTruncated, readEdns, readId } from '../core/dns/wire.js';
import { DeadlineError, UpstreamResponseError, UpstreamUnavailableError } from '../core/errors.js';
import { upstreamRetry } from '../core/events.js';
import { answerFor, startFakeDns } from '../core/testing/fake-dns.js';
// Through the public entry, as a plugin outside the tree would write its own protocol.
import { BaseUpstream, type ExchangeRules, type Outcome } from '../api/plugin.js';
import { padMessage } from '../core/dns/edns.js';
import { PlainDnsUpstream } from '../plugins/forward/upstream.js';

/** A response to `wire`: the same bytes with QR set (its OPT record, if any, kept). */
function echo(wire: Buffer, flags = 0x80): Buffer {
  const out = Buffer.from(wire);
  out[2] = out[2]! | flags;
  return out;
}

type Transport = (wire: Buffer, timeoutMs: number) => Promise<Buffer>;

/** A protocol whose transports are the test's functions; `sent` records what each was given. */
class Scripted extends BaseUpstream {
  readonly sent: Array<{ leg: 'datagram' | 'stream'; wire: Buffer; timeoutMs: number }> = [];
  releases = 0;

  constructor(
    rules: ExchangeRules,
    private readonly stream: Transport,
    private readonly datagram: Transport | null = null,
  ) {
    super({ name: 'scripted', protocol: 'test', address: 'nowhere' }, rules);
  }

  protected override sendDatagram(wire: Buffer, timeoutMs: number, _ctx: RequestContext, outcome: Outcome): boolean {
    if (!this.datagram) return false;
    this.sent.push({ leg: 'datagram', wire, timeoutMs });
    this.datagram(wire, timeoutMs).then(outcome.resolve, outcome.reject);
    return true;
  }

  protected send(wire: Buffer, timeoutMs: number): Promise<Buffer> {
    this.sent.push({ leg: 'stream', wire, timeoutMs });
    return this.stream(wire, timeoutMs);
  }

  protected release(): void {
    this.releases++;
  }
}

const contextFor = (query: Buffer, timeoutMs = 4000) => RequestContext.ownQuery({ query, transport: 'internal', server: '.', clock: new ManualClock(), timeoutMs });

function paddingOf(msg: Buffer): number | null {
  const edns = readEdns(msg);
  let length: number | null = null;
  if (edns) forEachEdnsOption(msg, edns, (code, _start, len) => code === EdnsOption.PADDING && (length = len));
  return length;
}

describe('the upstream base', () => {
  it('pads, sends ID 0, gives the answer the client ID back and fits it: no padding, no OPT the query did not have', async () => {
    const upstream = new Scripted({ pad: true, zeroId: true, fitAnswer: true }, async (wire) => echo(padMessage(echo(wire), 468)));
    const query = buildQuery('example.test', QType.A, { id: 4242 });
    const answer = await upstream.exchange(query, contextFor(query));
    const { wire } = upstream.sent[0]!;
    assert.equal(readId(wire), 0);
    assert.equal(wire.length % 128, 0, 'padded to a 128-byte block');
    assert.notEqual(paddingOf(wire), null);
    assert.equal(readId(answer), 4242);
    assert.equal(readEdns(answer), null, 'the query had no OPT: the answer has none');
    assert.equal(readId(query), 4242, 'the client query is left as it was');

    const withEdns = buildQuery('example.test', QType.A, { id: 7, edns: { udpSize: 1232 } });
    const fitted = await upstream.exchange(withEdns, contextFor(withEdns));
    assert.notEqual(readEdns(fitted), null, 'the query had OPT: so has the answer');
    assert.equal(paddingOf(fitted), null, 'without the padding');
  });

  it('without rules, the query leaves as it is and the answer comes back as sent', async () => {
    const upstream = new Scripted({}, async (wire) => echo(padMessage(wire)));
    const query = buildQuery('example.test', QType.A, { id: 9 });
    const answer = await upstream.exchange(query, contextFor(query));
    assert.equal(upstream.sent[0]!.wire, query);
    assert.notEqual(paddingOf(answer), null, 'not fitted');
  });

  it('an answer that is no response, or for another question, fails the attempt', async () => {
    const query = buildQuery('example.test', QType.A, { id: 1 });
    const notResponse = new Scripted({}, async (wire) => Buffer.from(wire));
    await assert.rejects(notResponse.exchange(query, contextFor(query)), (err) => err instanceof UpstreamResponseError && /not a DNS response/.test(err.message));
    const other = new Scripted({}, async () => echo(buildQuery('other.test', QType.A, { id: 1 })));
    await assert.rejects(other.exchange(query, contextFor(query)), (err) => err instanceof UpstreamResponseError && /another question/.test(err.message));
    const otherType = new Scripted({}, async () => echo(buildQuery('example.test', QType.AAAA, { id: 1 })));
    await assert.rejects(otherType.exchange(query, contextFor(query)), UpstreamResponseError);
  });

  it('each attempt gets the smaller of its cap and the time left; none when the deadline has passed', async () => {
    const query = buildQuery('example.test', QType.A, { id: 1 });
    const capped = new Scripted({ timeoutMs: 300 }, async (wire) => echo(wire));
    await capped.exchange(query, contextFor(query, 4000));
    assert.equal(capped.sent[0]!.timeoutMs, 300);
    await capped.exchange(query, contextFor(query, 120));
    assert.ok(capped.sent[1]!.timeoutMs <= 120, `${capped.sent[1]!.timeoutMs}`);
    const uncapped = new Scripted({}, async (wire) => echo(wire));
    await uncapped.exchange(query, contextFor(query, 900));
    assert.ok(uncapped.sent[0]!.timeoutMs <= 900 && uncapped.sent[0]!.timeoutMs > 800, `${uncapped.sent[0]!.timeoutMs}`);
    await assert.rejects(uncapped.exchange(query, contextFor(query, 0)), DeadlineError);
    assert.equal(uncapped.sent.length, 1, 'nothing sent past the deadline');
  });

  it('a truncated datagram answer is asked again over the stream, with its own time; the retry is published', async () => {
    const retries: Array<{ upstream: string; reason: string }> = [];
    const listen = (message: unknown) => retries.push(message as { upstream: string; reason: string });
    upstreamRetry.subscribe(listen);
    try {
      const upstream = new Scripted(
        { timeoutMs: 1000, datagramTimeoutMs: 200 },
        async (wire) => echo(wire),
        async (wire) => echo(wire, 0x82),
      );
      const query = buildQuery('example.test', QType.A, { id: 3 });
      const answer = await upstream.exchange(query, contextFor(query));
      assert.equal(isTruncated(answer), false);
      assert.deepEqual(
        upstream.sent.map((s) => [s.leg, s.timeoutMs]),
        [
          ['datagram', 200],
          ['stream', 1000],
        ],
      );
      assert.deepEqual(retries, [{ upstream: 'scripted', protocol: 'test', reason: 'truncated' }]);

      const whole = new Scripted({}, async (wire) => echo(wire), async (wire) => echo(wire));
      await whole.exchange(query, contextFor(query));
      assert.deepEqual(whole.sent.map((s) => s.leg), ['datagram'], 'an answer that fits: no second attempt');
    } finally {
      upstreamRetry.unsubscribe(listen);
    }
  });

  it('over datagrams, an answer to another question, a failed sending and a throw each fail the query, and end its exchange', async () => {
    const query = buildQuery('example.test', QType.A, { id: 6 });
    const stream = async (wire: Buffer) => echo(wire);
    const cases: Array<[string, Transport, (err: unknown) => boolean]> = [
      ['another question', async () => echo(buildQuery('other.test', QType.A, { id: 6 })), (err) => err instanceof UpstreamResponseError && /another question/.test((err as Error).message)],
      ['a failed sending', () => Promise.reject(new UpstreamUnavailableError('port unreachable')), (err) => err instanceof UpstreamUnavailableError && /unreachable/.test((err as Error).message)],
      [
        'a throw',
        () => {
          throw new UpstreamUnavailableError('no socket');
        },
        (err) => err instanceof UpstreamUnavailableError && /no socket/.test((err as Error).message),
      ],
    ];
    for (const [what, datagram, expected] of cases) {
      const upstream = new Scripted({}, stream, datagram);
      await assert.rejects(upstream.exchange(query, contextFor(query)), expected, what);
      assert.deepEqual(upstream.sent.map((s) => s.leg), ['datagram'], `${what}: no retry over the stream`);
      // Nothing is under way any more: close releases the transport at once, not after a wait.
      const closing = upstream.close();
      assert.equal(upstream.releases, 1, `${what}: released at once`);
      await closing;
    }
  });

  it('close takes no new query, lets those under way finish, then releases the transport once', async () => {
    let answerNow: () => void = () => {};
    const upstream = new Scripted({}, (wire) => new Promise((resolve) => (answerNow = () => resolve(echo(wire)))));
    const query = buildQuery('example.test', QType.A, { id: 5 });
    const under = upstream.exchange(query, contextFor(query));
    let closed = false;
    const closing = upstream.close().then(() => (closed = true));
    await assert.rejects(upstream.exchange(query, contextFor(query)), (err) => err instanceof UpstreamUnavailableError && /closed/.test(err.message));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false, 'still draining');
    assert.equal(upstream.releases, 0);
    answerNow();
    assert.equal(readId(await under), 5);
    await closing;
    assert.equal(upstream.releases, 1);
    upstream.destroy();
    await upstream.close();
    assert.equal(upstream.releases, 1, 'released once');
  });
});

describe('close and destroy on a real transport (plain DNS over UDP)', () => {
  /** A server that answers only when told. */
  async function heldServer() {
    const held: Array<() => void> = [];
    const dns = await startFakeDns((query) => new Promise((resolve) => held.push(() => resolve(answerFor(query, [{ type: 'A', name: query.packet.questions![0]!.name, ttl: 60, data: '192.0.2.7' }])))));
    return { dns, answerAll: () => held.splice(0).forEach((answer) => answer()), held };
  }

  const upstreamTo = (port: number) => new PlainDnsUpstream({ name: 'held', host: '127.0.0.1', port, tcpOnly: false, timeoutMs: 3000, randomizeCase: false });

  async function until(condition: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(condition());
  }

  it('close: the query under way gets its answer, a new one is refused', async () => {
    const { dns, answerAll, held } = await heldServer();
    const upstream = upstreamTo(dns.port);
    try {
      const query = buildQuery('drain.test', QType.A, { id: 11 });
      const under = upstream.exchange(query, contextFor(query));
      await until(() => held.length === 1);
      const closing = upstream.close();
      await assert.rejects(upstream.exchange(query, contextFor(query)), UpstreamUnavailableError);
      answerAll();
      const answer = await under;
      assert.equal(readId(answer), 11);
      await closing;
      assert.equal(upstream.inflight, 0);
      assert.equal(dns.queries.length, 1, 'the refused query never left');
    } finally {
      upstream.destroy();
      await dns.close();
    }
  });

  it('destroy: the query under way fails at once, before the server answers', async () => {
    const { dns, held } = await heldServer();
    const upstream = upstreamTo(dns.port);
    try {
      const query = buildQuery('destroy.test', QType.A, { id: 12 });
      const under = upstream.exchange(query, contextFor(query));
      await until(() => held.length === 1);
      upstream.destroy();
      await assert.rejects(under, UpstreamUnavailableError);
      assert.equal(held.length, 1, 'not answered yet');
    } finally {
      await dns.close();
    }
  });
});

