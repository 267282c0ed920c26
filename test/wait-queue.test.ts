/** core/wait-queue.ts: oldest first, a bound on what waits, and giving up in O(1). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WaitQueue } from '../core/wait-queue.js';

describe('wait queue', () => {
  it('hands out the oldest first, skips those that gave up, and refuses past its limit', () => {
    const queue = new WaitQueue<number>(3);
    const one = queue.push(1)!;
    queue.push(2);
    queue.push(3);
    assert.equal(queue.push(4), null, 'a fourth over a limit of three');
    queue.cancel(one);
    queue.cancel(one); // twice is once
    assert.equal(queue.size, 2);
    assert.ok(queue.push(5), 'room again once one gave up');
    assert.deepEqual([queue.shift(), queue.shift(), queue.shift(), queue.shift()], [2, 3, 5, undefined]);
    assert.equal(queue.size, 0);
  });

  it('a request taken off the queue cannot be cancelled any more; takeAll empties it', () => {
    const queue = new WaitQueue<string>(10);
    const a = queue.push('a')!;
    queue.push('b');
    queue.push('c');
    assert.equal(queue.shift(), 'a');
    queue.cancel(a);
    assert.equal(queue.size, 2, 'cancelling what was already taken changes nothing');
    assert.deepEqual(queue.takeAll(), ['b', 'c']);
    assert.equal(queue.size, 0);
    assert.equal(queue.shift(), undefined);
  });

  it('requests that give up while no turn ever comes do not pile up', () => {
    const queue = new WaitQueue<number>(4);
    // 10,000 requests, each giving up before the next comes: never more than 4 wait.
    for (let i = 0; i < 10_000; i++) {
      const ticket = queue.push(i);
      assert.ok(ticket, `request ${i} was refused`);
      queue.cancel(ticket);
    }
    assert.equal(queue.size, 0);
    const held = (queue as unknown as { items: unknown[]; head: number }).items.length;
    assert.ok(held <= 8, `${held} entries kept for a limit of 4`);
    queue.push(42);
    assert.equal(queue.shift(), 42);
  });
});
