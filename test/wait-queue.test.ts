/** core/wait-queue.ts: oldest first, a bound on what waits, and giving up at a deadline in O(1). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WaitQueue } from '../core/wait-queue.js';

const never = (): void => assert.fail('timed out');

describe('wait queue', () => {
  it('hands out the oldest first, skips those that gave up, and refuses past its limit', async () => {
    const queue = new WaitQueue<number>(3);
    const expired: number[] = [];
    assert.ok(queue.push(1, 5, (n) => expired.push(n)));
    queue.push(2, 5000, never);
    queue.push(3, 5000, never);
    assert.equal(queue.push(4, 5000, never), false, 'a fourth over a limit of three');
    await sleep(30);
    assert.deepEqual(expired, [1], 'the first gave up at its deadline, once');
    assert.equal(queue.size, 2);
    assert.ok(queue.push(5, 5000, never), 'room again once one gave up');
    assert.deepEqual([queue.shift(), queue.shift(), queue.shift(), queue.shift()], [2, 3, 5, undefined]);
    assert.equal(queue.size, 0);
  });

  it('a request taken off the queue never times out; takeAll empties it and ends every timer', async () => {
    const queue = new WaitQueue<string>(10);
    queue.push('a', 5, never);
    queue.push('b', 5, never);
    queue.push('c', 5, never);
    assert.equal(queue.shift(), 'a');
    assert.deepEqual(queue.takeAll(), ['b', 'c']);
    assert.equal(queue.size, 0);
    assert.equal(queue.shift(), undefined);
    await sleep(30); // `never` would fail the test here
  });

  it('requests that give up while no turn ever comes do not pile up', async () => {
    const queue = new WaitQueue<number>(4);
    let expired = 0;
    // 400 requests, in rounds of 4 that all give up: never more than 4 wait.
    for (let round = 0; round < 100; round++) {
      for (let i = 0; i < 4; i++) assert.ok(queue.push(round * 4 + i, 1, () => expired++), `request ${round * 4 + i} was refused`);
      await sleep(5);
    }
    assert.equal(expired, 400);
    assert.equal(queue.size, 0);
    const held = (queue as unknown as { items: unknown[]; head: number }).items.length;
    assert.ok(held <= 8, `${held} entries kept for a limit of 4`);
    queue.push(42, 5000, never);
    assert.equal(queue.shift(), 42);
  });
});
