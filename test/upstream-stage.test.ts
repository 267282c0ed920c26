/**
 * core/upstream/stage.ts: one query's attempts over the block's upstreams, in the policy's order.
 * The upstreams are the test's own (an answer, a rejection or a throw each), so every rule of
 * the stage shows on its own: SERVFAIL and REFUSED move on but are kept, a failure moves on, a
 * synchronous throw is a failure like any other, the deadline stops the attempts, and nothing
 * usable is an error of its own.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { RequestContext } from '../core/context.js';
import { QType, Rcode } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { rcodeOf } from '../core/dns/wire.js';
import { DeadlineError, UpstreamTimeoutError, UpstreamUnavailableError } from '../core/errors.js';
import { upstreamFailover } from '../core/events.js';
import { createUpstreamStage } from '../core/upstream/stage.js';
import { InOrderPolicy, UpstreamSet, type AttemptOutcome, type Upstream } from '../core/upstream/upstream.js';

const query = buildQuery('www.example.test', QType.A, { id: 7 });

/** The query back as a response with `rcode`. */
function answer(rcode: number): Buffer {
  const out = Buffer.from(query);
  out[2] = out[2]! | 0x80;
  out[3] = (out[3]! & 0xf0) | rcode;
  return out;
}

type Behaviour = Buffer | Error | 'throw';

/** An upstream that answers, rejects or throws as told, and counts what it was asked. */
function scripted(name: string, behaviour: Behaviour, clock?: ManualClock, takesMs = 0): Upstream & { asked: number } {
  return {
    name,
    protocol: 'test',
    address: name,
    asked: 0,
    exchange(this: { asked: number }): Promise<Buffer> {
      this.asked++;
      clock?.advance(takesMs);
      if (behaviour === 'throw') throw new Error(`${name} threw`);
      return behaviour instanceof Error ? Promise.reject(behaviour) : Promise.resolve(behaviour);
    },
  };
}

/** In-order policy that records every report. */
class Recording extends InOrderPolicy {
  readonly reports: Array<[string, AttemptOutcome]> = [];
  override report(upstream: Upstream, outcome: AttemptOutcome): void {
    this.reports.push([upstream.name, outcome]);
  }
}

function stageOf(upstreams: Upstream[], policy = new Recording()) {
  const set = new UpstreamSet();
  for (const upstream of upstreams) set.add(upstream);
  return { exchange: createUpstreamStage(set, policy).handler, policy };
}

const contextFor = (clock = new ManualClock(), timeoutMs = 4000) => RequestContext.ownQuery({ query, transport: 'internal', server: '.', clock, timeoutMs });

describe('the upstream stage', () => {
  it('a SERVFAIL or REFUSED moves on to the next upstream; a real answer ends the attempts', async () => {
    const first = scripted('first', answer(Rcode.SERVFAIL));
    const second = scripted('second', answer(Rcode.REFUSED));
    const third = scripted('third', answer(Rcode.NOERROR));
    const fourth = scripted('fourth', answer(Rcode.NOERROR));
    const { exchange, policy } = stageOf([first, second, third, fourth]);
    const ctx = contextFor();
    const got = await exchange(ctx);
    assert.equal(rcodeOf(got!), Rcode.NOERROR);
    assert.deepEqual([first.asked, second.asked, third.asked, fourth.asked], [1, 1, 1, 0]);
    assert.deepEqual(policy.reports.map(([name, outcome]) => [name, outcome.ok]), [['first', false], ['second', false], ['third', true]]);
    assert.equal(ctx.meta.upstream, 'third');
    assert.equal(ctx.meta.attempts, 3);
  });

  it('when every upstream says SERVFAIL or REFUSED, the client gets the last of those answers, not one made up', async () => {
    const { exchange } = stageOf([scripted('first', answer(Rcode.SERVFAIL)), scripted('second', answer(Rcode.REFUSED))]);
    const ctx = contextFor();
    assert.equal(rcodeOf((await exchange(ctx))!), Rcode.REFUSED);
    assert.equal(ctx.meta.attempts, 2);
  });

  it('a failure, a rejection or a synchronous throw, moves on; the last failure is what the query fails with', async () => {
    const timeout = new UpstreamTimeoutError('first: no answer');
    const second = scripted('second', 'throw');
    const third = scripted('third', answer(Rcode.NOERROR));
    const { exchange, policy } = stageOf([scripted('first', timeout), second, third]);
    assert.equal(rcodeOf((await exchange(contextFor()))!), Rcode.NOERROR);
    assert.deepEqual(policy.reports.map(([name, outcome]) => [name, outcome.ok, (outcome.error as Error | undefined)?.message]), [
      ['first', false, 'first: no answer'],
      ['second', false, 'second threw'],
      ['third', true, undefined],
    ]);

    const last = new UpstreamTimeoutError('second: no answer');
    const failing = stageOf([scripted('first', 'throw'), scripted('second', last)]);
    await assert.rejects(failing.exchange(contextFor()), (error) => error === last);
  });

  it('tells the failover channel which upstream a query left', async () => {
    const seen: string[] = [];
    const listen = (message: unknown) => seen.push((message as { from: Upstream }).from.name);
    upstreamFailover.subscribe(listen);
    try {
      const { exchange } = stageOf([scripted('first', answer(Rcode.SERVFAIL)), scripted('second', new Error('down')), scripted('third', answer(Rcode.NOERROR))]);
      await exchange(contextFor());
    } finally {
      upstreamFailover.unsubscribe(listen);
    }
    assert.deepEqual(seen, ['first', 'second']);
  });

  it('stops at the deadline: no attempt once it has passed, and the query fails with a DeadlineError', async () => {
    const clock = new ManualClock();
    // The first attempt takes the whole budget (the clock moves while it runs) and fails.
    const first = scripted('first', new Error('slow and wrong'), clock, 5000);
    const second = scripted('second', answer(Rcode.NOERROR));
    const { exchange } = stageOf([first, second]);
    await assert.rejects(exchange(contextFor(clock, 4000)), (error) => error instanceof Error && error.message === 'slow and wrong');
    assert.equal(second.asked, 0, 'no attempt after the deadline');

    const late = contextFor(clock, 4000);
    clock.advance(4000);
    await assert.rejects(stageOf([scripted('only', answer(Rcode.NOERROR))]).exchange(late), DeadlineError);
  });

  it('nothing usable: an error that says so, and no attempt', async () => {
    const down = { ...scripted('down', answer(Rcode.NOERROR)), usable: false };
    const { exchange } = stageOf([down]);
    const ctx = contextFor();
    await assert.rejects(exchange(ctx), (error) => error instanceof UpstreamUnavailableError && /marked down or left out/.test(error.message));
    assert.equal(down.asked, 0);
    assert.equal(ctx.meta.attempts, 0);
  });
});
