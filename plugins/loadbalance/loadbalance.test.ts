/**
 * loadbalance: each policy against fake upstreams with a manual clock and scripted randomness
 * (its distribution and its failure behaviour), then the plugin in a running server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { ManualClock } from '../../core/clock.js';
import { RequestContext } from '../../core/context.js';
import { QType, rcodeName } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { fullRcode, readQuestion } from '../../core/dns/wire.js';
import { UpstreamTimeoutError } from '../../core/errors.js';
import { upstreamHealth } from '../../core/events.js';
import { MemoryLogger } from '../../core/logger.js';
import { queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer } from '../../core/testing/server.js';
import type { AttemptOutcome, Upstream } from '../../core/upstream/upstream.js';
import {
  AvailabilityPolicy,
  FailoverPolicy,
  FastestPolicy,
  LeastConnectionsPolicy,
  PowerOfTwoPolicy,
  RandomPolicy,
  RoundRobinPolicy,
  type BalancingPolicy,
  type HealthSettings,
  type PolicyEnvironment,
} from './policies.js';
import { rotateAddresses } from './shuffle.js';
import { testRegistry } from '../../test/helpers/plugins.js';

// ---- fakes -------------------------------------------------------------------------------------

function fakeUpstream(name: string): Upstream {
  return { name, protocol: 'fake', address: `${name}:53`, exchange: () => Promise.reject(new Error('fake upstreams are not called')) };
}

/** A small deterministic generator (mulberry32), so "random" tests give the same run every time. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns the scripted values in turn, then repeats the last. */
function script(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)]!;
}

const query = buildQuery('example.test', QType.A, { id: 1 });
const clockForCtx = new ManualClock();
const ctx = new RequestContext({
  query,
  question: readQuestion(query),
  edns: null,
  client: { address: '127.0.0.1', port: 1, family: 'IPv4' },
  transport: 'udp',
  datagram: true,
  server: '.',
  zone: '.',
  clock: clockForCtx,
  timeoutMs: 4000,
});

interface Rig<P extends BalancingPolicy> {
  policy: P;
  clock: ManualClock;
  logs: string[];
  probes: string[];
  /** Behaviour of each upstream for attempts and probes: ok with an RTT, or an error. */
  behave: Map<string, { rttMs: number } | 'fail'>;
}

function rig<P extends BalancingPolicy>(
  Policy: new (env: PolicyEnvironment) => P,
  options: { random?: () => number; settings?: Partial<HealthSettings>; fallback?: string[] } = {},
): Rig<P> {
  const clock = new ManualClock();
  const logs: string[] = [];
  const probes: string[] = [];
  const behave = new Map<string, { rttMs: number } | 'fail'>();
  const policy = new Policy({
    clock,
    logger: new MemoryLogger(logs),
    random: options.random ?? seeded(1),
    settings: { maxFails: 2, failTimeoutMs: 1000, healthCheckMs: null, ...options.settings },
    probe: async (upstream) => {
      probes.push(upstream.name);
      if (behave.get(upstream.name) === 'fail') throw new UpstreamTimeoutError(`${upstream.name}: no answer`);
    },
    fallback: new Set(options.fallback ?? []),
  });
  return { policy, clock, logs, probes, behave };
}

/**
 * One query through the policy the way core's upstream stage runs it: attempts in the policy's
 * order until one succeeds. Returns the names tried.
 */
function send(r: Rig<BalancingPolicy>, candidates: readonly Upstream[]): string[] {
  const tried: string[] = [];
  for (const upstream of r.policy.order(candidates, ctx)) {
    tried.push(upstream.name);
    r.policy.begin(upstream);
    const behaviour = r.behave.get(upstream.name) ?? { rttMs: 10 };
    const outcome: AttemptOutcome =
      behaviour === 'fail' ? { ok: false, rttMs: 5, error: new UpstreamTimeoutError(`${upstream.name}: no answer`) } : { ok: true, rttMs: behaviour.rttMs };
    r.policy.report(upstream, outcome);
    if (outcome.ok) break;
  }
  return tried;
}

/** How often each upstream was tried first, over `rounds` queries. */
function firstChoices(r: Rig<BalancingPolicy>, candidates: readonly Upstream[], rounds: number): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(candidates.map((u) => [u.name, 0]));
  for (let i = 0; i < rounds; i++) {
    const tried = send(r, candidates);
    if (tried[0]) counts[tried[0]]!++;
  }
  return counts;
}

const [a, b, c] = ['a', 'b', 'c'].map(fakeUpstream) as [Upstream, Upstream, Upstream];
const abc = [a, b, c] as const;

// ---- policies ----------------------------------------------------------------------------------

describe('round_robin', () => {
  it('starts each query one further along: an even spread', () => {
    const r = rig(RoundRobinPolicy);
    assert.deepEqual(
      Array.from({ length: 6 }, () => send(r, abc)[0]),
      ['a', 'b', 'c', 'a', 'b', 'c'],
    );
    assert.deepEqual(r.policy.order(abc, ctx).map((u) => u.name), ['a', 'b', 'c']);
  });

  it('a failing upstream: its queries move on, it is marked down after max_fails, tried again after fail_timeout', () => {
    const r = rig(RoundRobinPolicy);
    r.behave.set('b', 'fail');
    const health: Array<{ upstream: string; healthy: boolean }> = [];
    const listen = (m: { upstream: string; healthy: boolean }) => health.push({ upstream: m.upstream, healthy: m.healthy });
    upstreamHealth.subscribe(listen);
    try {
      const rounds = Array.from({ length: 6 }, () => send(r, abc));
      // b fails twice (each query then goes on to c), then it is out of the rotation
      assert.deepEqual(rounds, [['a'], ['b', 'c'], ['c'], ['a'], ['b', 'c'], ['c']]);
      assert.ok(r.policy.state(b).down);
      assert.deepEqual(firstChoices(r, abc, 10), { a: 5, b: 0, c: 5 });
      assert.equal(r.logs.filter((l) => /upstream b \(fake b:53\) marked down after 2 failures in a row \(b: no answer\); tried again in 1s/.test(l)).length, 1, r.logs.join('\n'));
      assert.deepEqual(health, [{ upstream: 'b', healthy: false }]);
      // after fail_timeout one query may try it; still failing: out for fail_timeout again (no doubling)
      r.clock.advance(1000);
      assert.ok(r.policy.order(abc, ctx).some((u) => u.name === 'b'));
      while (!send(r, abc).includes('b'));
      assert.equal(r.policy.state(b).retryAt, r.clock.monotonic() + 1000);
      // recovered: the next try marks it up
      r.behave.delete('b');
      r.clock.advance(1000);
      while (!send(r, abc).includes('b'));
      assert.equal(r.policy.state(b).down, false);
      assert.deepEqual(health, [{ upstream: 'b', healthy: false }, { upstream: 'b', healthy: true }]);
      assert.ok(r.logs.some((l) => /upstream b is up again/.test(l)));
    } finally {
      upstreamHealth.unsubscribe(listen);
    }
  });
});

describe('random', () => {
  it('spreads queries evenly at random', () => {
    const r = rig(RandomPolicy, { random: seeded(42) });
    const counts = firstChoices(r, abc, 3000);
    for (const name of ['a', 'b', 'c']) assert.ok(counts[name]! > 850 && counts[name]! < 1150, JSON.stringify(counts));
  });

  it('an upstream marked down gets nothing until fail_timeout', () => {
    const r = rig(RandomPolicy, { random: seeded(7), settings: { maxFails: 1 } });
    r.behave.set('a', 'fail');
    while (!send(r, abc).includes('a'));
    assert.ok(r.policy.state(a).down);
    r.behave.delete('a');
    const counts = firstChoices(r, abc, 300);
    assert.equal(counts.a, 0);
    assert.ok(counts.b! > 100 && counts.c! > 100, JSON.stringify(counts));
  });
});

describe('least_connections', () => {
  it('hands the next query to the upstream handed the fewest so far', () => {
    const r = rig(LeastConnectionsPolicy);
    for (let i = 0; i < 4; i++) r.policy.begin(a); // a busy history
    assert.deepEqual(Array.from({ length: 6 }, () => send(r, abc)[0]), ['b', 'c', 'b', 'c', 'b', 'c']);
    assert.deepEqual(firstChoices(r, abc, 9), { a: 3, b: 3, c: 3 });
  });

  it('a failed attempt counts as handed, and the query moves on', () => {
    const r = rig(LeastConnectionsPolicy, { settings: { maxFails: 0 } });
    r.behave.set('a', 'fail');
    assert.deepEqual(send(r, abc), ['a', 'b']);
    assert.deepEqual(send(r, abc), ['c']);
    assert.equal(r.policy.state(a).down, false, 'max_fails 0 never marks an upstream down');
  });
});

describe('availability', () => {
  it('random among the available upstreams', () => {
    const r = rig(AvailabilityPolicy, { random: seeded(3) });
    const counts = firstChoices(r, abc, 3000);
    for (const name of ['a', 'b', 'c']) assert.ok(counts[name]! > 850 && counts[name]! < 1150, JSON.stringify(counts));
  });

  it('pulls a failing upstream out for exponentially longer periods; success resets it', () => {
    // random() = 0.99 leaves the shuffle in declared order, so a goes first whenever it is usable
    const r = rig(AvailabilityPolicy, { random: script(0.99), settings: { maxFails: 1, failTimeoutMs: 1000 } });
    r.behave.set('a', 'fail');
    const tryA = () => {
      for (let i = 0; i < 5; i++) if (send(r, abc).includes('a')) return true;
      return false;
    };
    assert.ok(tryA());
    const periods: number[] = [];
    for (let round = 0; round < 4; round++) {
      const state = r.policy.state(a);
      const period = state.retryAt - r.clock.monotonic();
      periods.push(period);
      r.clock.advance(period - 1);
      assert.ok(!r.policy.order(abc, ctx).includes(a), `a must stay out for ${period}ms`);
      r.clock.advance(1);
      assert.ok(tryA(), 'a gets a try once its period is over');
    }
    assert.deepEqual(periods, [1000, 2000, 4000, 8000]);
    r.behave.delete('a');
    r.clock.advance(16_000);
    assert.ok(tryA());
    assert.equal(r.policy.state(a).down, false);
    r.behave.set('a', 'fail');
    assert.ok(tryA());
    assert.equal(r.policy.state(a).retryAt - r.clock.monotonic(), 1000, 'the back-off starts over after a recovery');
  });
});

describe('failover', () => {
  it('always the first healthy upstream in declared order', () => {
    const r = rig(FailoverPolicy);
    assert.deepEqual(firstChoices(r, abc, 10), { a: 10, b: 0, c: 0 });
    r.behave.set('a', 'fail');
    assert.deepEqual(send(r, abc), ['a', 'b']);
    assert.deepEqual(send(r, abc), ['a', 'b']);
    assert.deepEqual(send(r, abc), ['b'], 'a is down after two failures');
    r.behave.delete('a');
    r.clock.advance(1000);
    assert.deepEqual(send(r, abc), ['a']);
    assert.deepEqual(firstChoices(r, abc, 5), { a: 5, b: 0, c: 0 });
  });
});

describe('fastest', () => {
  it('lowest moving-average RTT first, after measuring each', () => {
    const r = rig(FastestPolicy, { random: script(0.5) });
    r.behave.set('a', { rttMs: 30 }).set('b', { rttMs: 10 }).set('c', { rttMs: 20 });
    // unmeasured upstreams count as fastest, so each is measured once
    assert.deepEqual([send(r, abc), send(r, abc), send(r, abc)], [['a'], ['b'], ['c']]);
    assert.deepEqual(r.policy.order(abc, ctx).map((u) => u.name), ['b', 'c', 'a']);
    assert.deepEqual(firstChoices(r, abc, 20), { a: 0, b: 20, c: 0 });
  });

  it('a failure counts as slow: the next fastest takes over at once', () => {
    const r = rig(FastestPolicy, { random: script(0.5), settings: { maxFails: 0 } });
    r.behave.set('a', { rttMs: 30 }).set('b', { rttMs: 10 }).set('c', { rttMs: 20 });
    firstChoices(r, abc, 3);
    r.behave.set('b', 'fail');
    assert.deepEqual(send(r, abc), ['b', 'c']);
    assert.deepEqual(r.policy.order(abc, ctx).map((u) => u.name), ['c', 'a', 'b']);
  });

  it('now and then a random upstream goes first, to keep the estimates current', () => {
    const r = rig(FastestPolicy, { random: script(0.5, 0.5, 0.5, 0.01, 0.9) });
    r.behave.set('a', { rttMs: 30 }).set('b', { rttMs: 10 }).set('c', { rttMs: 20 });
    firstChoices(r, abc, 3);
    assert.deepEqual(send(r, abc), ['a'], 'random() < 0.05 explores; 0.9 picks the last by speed');
  });
});

describe('p2 (power of two choices)', () => {
  it('of two random upstreams, the one with the lower RTT × in-flight score goes first', () => {
    const r = rig(PowerOfTwoPolicy, { random: script(0.5, 0.0, 0.9) });
    const rtts: Record<string, number> = { a: 30, b: 10, c: 20 };
    for (const u of abc) {
      r.policy.begin(u);
      r.policy.report(u, { ok: true, rttMs: rtts[u.name]! });
    }
    // picks b (index 1 of 3) and a (index 0 of the other two): b is faster
    assert.deepEqual(r.policy.order(abc, ctx).map((u) => u.name), ['b', 'a', 'c']);
  });

  it('spreads evenly over equal upstreams, steers away from a slow or busy one', () => {
    const r = rig(PowerOfTwoPolicy, { random: seeded(11) });
    const even = firstChoices(r, abc, 3000);
    for (const name of ['a', 'b', 'c']) assert.ok(even[name]! > 800 && even[name]! < 1200, JSON.stringify(even));
    r.behave.set('c', { rttMs: 200 });
    for (let i = 0; i < 20; i++) {
      r.policy.begin(c);
      r.policy.report(c, { ok: true, rttMs: 200 });
    }
    const slow = firstChoices(r, abc, 3000);
    assert.ok(slow.c! < 150, `the slow upstream went first ${slow.c} times: ${JSON.stringify(slow)}`);
    // many queries in flight on a make it lose its pairings
    for (let i = 0; i < 50; i++) r.policy.begin(a);
    const order = Array.from({ length: 100 }, () => r.policy.order(abc, ctx)[0]!.name);
    assert.ok(order.filter((n) => n === 'a').length < 10, order.join(','));
  });

  it('all marked down: nothing to try, the query fails at once', () => {
    const r = rig(PowerOfTwoPolicy, { settings: { maxFails: 1 } });
    for (const name of ['a', 'b', 'c']) r.behave.set(name, 'fail');
    assert.deepEqual(send(r, abc).sort(), ['a', 'b', 'c']);
    assert.deepEqual(r.policy.order(abc, ctx), []);
  });
});

describe('health checks', () => {
  it('probe only upstreams marked down, once their back-off passed; a good probe brings one back', async () => {
    const r = rig(RoundRobinPolicy, { settings: { maxFails: 1, failTimeoutMs: 500, healthCheckMs: 200 } });
    r.behave.set('b', 'fail');
    while (!send(r, abc).includes('b'));
    assert.ok(r.policy.state(b).down);
    await r.policy.probeDown();
    assert.deepEqual(r.probes, [], 'not before fail_timeout');
    r.clock.advance(500);
    assert.ok(!r.policy.order(abc, ctx).includes(b), 'with health checks, queries never try a down upstream');
    await r.policy.probeDown();
    assert.deepEqual(r.probes, ['b']);
    assert.ok(r.policy.state(b).down);
    r.behave.delete('b');
    r.clock.advance(500);
    await r.policy.probeDown();
    assert.deepEqual(r.probes, ['b', 'b']);
    assert.equal(r.policy.state(b).down, false);
    await r.policy.probeDown();
    assert.deepEqual(r.probes, ['b', 'b'], 'healthy upstreams are not probed');
  });
});

describe('shuffle_answers', () => {
  it('rotates A and AAAA RRsets on the wire, leaving other records and offsets alone', () => {
    const answer = dnsPacket.encode({
      type: 'response',
      id: 1,
      questions: [{ type: 'A', name: 'www.test' }],
      answers: [
        { type: 'CNAME', name: 'www.test', ttl: 60, data: 'web.test' },
        { type: 'A', name: 'web.test', ttl: 60, data: '192.0.2.1' },
        { type: 'A', name: 'web.test', ttl: 60, data: '192.0.2.2' },
        { type: 'A', name: 'web.test', ttl: 60, data: '192.0.2.3' },
        { type: 'AAAA', name: 'web.test', ttl: 60, data: '2001:db8::1' },
        { type: 'AAAA', name: 'web.test', ttl: 60, data: '2001:db8::2' },
      ],
    });
    const length = answer.length;
    const addresses = (msg: Buffer) => dnsPacket.decode(msg).answers!.map((r) => (r as { data: string }).data);
    rotateAddresses(answer, 1);
    assert.equal(answer.length, length);
    assert.deepEqual(addresses(answer), ['web.test', '192.0.2.2', '192.0.2.3', '192.0.2.1', '2001:db8::2', '2001:db8::1']);
    rotateAddresses(answer, 1);
    assert.deepEqual(addresses(answer), ['web.test', '192.0.2.3', '192.0.2.1', '192.0.2.2', '2001:db8::1', '2001:db8::2']);
  });

  it('leaves malformed messages as they are', () => {
    const broken = Buffer.from('00018180000100050000000003777777047465737400000100', 'hex');
    const copy = Buffer.from(broken);
    rotateAddresses(broken, 1);
    assert.deepEqual(broken, copy);
  });
});

// ---- the plugin ----------------------------------------------------------------------------

describe('fallback', () => {
  const withFallback = (names: string[], random = seeded(3)) => {
    return rig(PowerOfTwoPolicy, { random, settings: { maxFails: 1 }, fallback: names });
  };

  it('the fallback set is tried only after every other usable upstream', () => {
    const r = withFallback(['c']);
    for (let i = 0; i < 50; i++) {
      const order = r.policy.order(abc, ctx).map((u) => u.name);
      assert.equal(order.at(-1), 'c', order.join(','));
    }
  });

  it('with the others down or failing, the fallback answers; it never goes first while one is up', () => {
    const r = withFallback(['c']);
    r.behave.set('a', 'fail');
    r.behave.set('b', 'fail');
    assert.deepEqual(send(r, abc).slice(-1), ['c']);
    assert.deepEqual(send(r, abc), ['c'], 'a and b are marked down now');
    r.clock.advance(1000);
    r.behave.delete('a');
    const tried = send(r, abc);
    assert.equal(tried[0], 'a', 'a is tried again before the fallback once its back-off passed');
  });
});

describe('loadbalance configuration', () => {
  it('a fallback that names no upstream of the block stops the start, with its place', async () => {
    const veil = startTestServer(`. {\n  listen udp://127.0.0.1:0\n  forward {\n    server main udp://127.0.0.1:53\n  }\n  loadbalance {\n    fallback mian\n  }\n}`, { registry: testRegistry() });
    await assert.rejects(veil, /Corefile:7:14: loadbalance: fallback: no upstream named "mian" in this block \(upstreams: main\)/);
  });
});

describe('loadbalance in a running server', () => {
  const rcode = (b: Buffer) => rcodeName(fullRcode(b));

  it('round_robin spreads queries over the block\'s upstreams', async () => {
    const one = await startFakeDns();
    const two = await startFakeDns();
    const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${one.port} 127.0.0.1:${two.port}\n  loadbalance round_robin\n}`, { registry: testRegistry() });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      for (let i = 0; i < 10; i++) assert.equal(rcode(await queryUdp(udp.host, udp.port, buildQuery(`n${i}.test`, QType.A, { id: i }))), 'NOERROR');
      assert.equal(one.queries.length, 5);
      assert.equal(two.queries.length, 5);
    } finally {
      await veil.stop();
      await one.close();
      await two.close();
    }
  });

  it('every upstream down: SERVFAIL at once, nothing sent; a health probe (. NS) brings one back', async () => {
    const silent = await startFakeDns(() => null);
    const veil = await startTestServer(
      `. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${silent.port} {\n    timeout 100ms\n  }\n  loadbalance failover {\n    max_fails 1\n    fail_timeout 200ms\n    health_check 100ms\n  }\n}`,
      { registry: testRegistry() },
    );
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      const ask = (name: string) => queryUdp(udp.host, udp.port, buildQuery(name, QType.A, { id: 9 }), 3000);
      assert.equal(rcode(await ask('first.test')), 'SERVFAIL');
      const sent = silent.queries.length;
      assert.equal(rcode(await ask('second.test')), 'SERVFAIL');
      assert.equal(silent.queries.filter((q) => q.packet.questions![0]!.name.toLowerCase() === 'second.test').length, 0, 'a down upstream gets no query');
      assert.equal(silent.queries.length, sent, 'and no probe before fail_timeout');
      assert.ok(veil.logs.some((l) => /\[WARN\] plugin\/loadbalance: upstream 127\.0\.0\.1:\d+ .* marked down after 1 failure in a row/.test(l)), veil.logs.join('\n'));
      silent.setHandler((q) => answerFor(q, []));
      const started = Date.now();
      while (!veil.logs.some((l) => /is up again/.test(l))) {
        if (Date.now() - started > 3000) throw new Error(`not brought back: ${veil.logs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const probe = silent.queries.find((q) => q.packet.questions![0]!.name === '.' && q.packet.questions![0]!.type === 'NS');
      assert.ok(probe, 'the probe is a real ". NS" query');
      assert.equal(rcode(await ask('third.test')), 'NOERROR');
    } finally {
      await veil.stop();
      await silent.close();
    }
  });

  it('shuffle_answers rotates the addresses of successive answers', async () => {
    const origin = await startFakeDns((q) =>
      answerFor(q, ['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((data) => ({ type: 'A' as const, name: q.packet.questions![0]!.name, ttl: 60, data }))),
    );
    const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${origin.port}\n  loadbalance {\n    shuffle_answers\n  }\n}`, { registry: testRegistry() });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      const firsts: string[] = [];
      for (let i = 0; i < 3; i++) {
        const answer = dnsPacket.decode(await queryUdp(udp.host, udp.port, buildQuery('web.test', QType.A, { id: i })));
        firsts.push((answer.answers![0] as { data: string }).data);
      }
      assert.deepEqual(firsts, ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
    } finally {
      await veil.stop();
      await origin.close();
    }
  });
});
