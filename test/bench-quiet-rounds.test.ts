/**
 * The bench runs a pair of rounds again when the host took more than BUSY_HOST_SHARE of either
 * side's time, up to as many extra pairs as were asked for, and keeps the quietest pairs
 * (bench/quiet-rounds.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUSY_HOST_SHARE, needsAnotherPair, quietestPairs } from '../bench/quiet-rounds.js';

const quiet = { veil: 0.01, peer: 0 };
const busyVeil = { veil: 0.2, peer: 0.01 };
const busyPeer = { veil: 0, peer: 0.3 };

describe('bench rounds on a busy host', () => {
  it('runs no more pairs once as many as asked for were quiet', () => {
    assert.equal(needsAnotherPair([quiet, quiet], 2), false);
    assert.equal(needsAnotherPair([busyVeil, quiet, quiet], 2), false);
  });

  it('runs another pair while fewer were quiet, whichever side the host took', () => {
    assert.equal(needsAnotherPair([quiet, busyVeil], 2), true);
    assert.equal(needsAnotherPair([busyPeer, quiet], 2), true);
    assert.equal(needsAnotherPair([busyPeer, busyVeil, quiet], 2), true);
  });

  it('stops at twice the pairs asked for, however busy the host', () => {
    assert.equal(needsAnotherPair([busyPeer, busyVeil, busyVeil], 2), true);
    assert.equal(needsAnotherPair([busyPeer, busyVeil, busyVeil, busyPeer], 2), false);
    assert.equal(needsAnotherPair([busyVeil, busyVeil], 1), false);
  });

  it('takes a share at the limit as quiet, and an unknown one (no steal counter) too', () => {
    assert.equal(needsAnotherPair([{ veil: BUSY_HOST_SHARE, peer: BUSY_HOST_SHARE }], 1), false);
    assert.equal(needsAnotherPair([{ veil: BUSY_HOST_SHARE + 0.001, peer: 0 }], 1), true);
    assert.equal(needsAnotherPair([{ veil: null, peer: undefined }], 1), false);
  });

  it('keeps the quietest pairs in the order they ran, by the busier side of each', () => {
    assert.deepEqual(quietestPairs([busyVeil, quiet, busyPeer, quiet], 2), [1, 3]);
    assert.deepEqual(quietestPairs([{ veil: 0.1, peer: 0 }, { veil: 0, peer: 0.4 }, { veil: 0.2, peer: 0.2 }], 2), [0, 2]);
  });

  it('keeps the first of pairs the host took alike, and every pair when no more ran', () => {
    assert.deepEqual(quietestPairs([quiet, quiet, quiet], 2), [0, 1]);
    assert.deepEqual(quietestPairs([busyVeil, busyPeer], 2), [0, 1]);
  });
});
