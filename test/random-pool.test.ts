/**
 * core/util/random-pool.ts: bytes handed out once each from a refilled CSPRNG block, for every
 * size (a block's worth and more), across refills.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBuffer, randomByte, randomInto, randomUint16 } from '../core/util/random-pool.js';

describe('random pool', () => {
  it('never hands out the same bytes twice: 20,000 nonces of 16 bytes across several refills are all different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(randomBuffer(16).toString('hex'));
    assert.equal(seen.size, 20_000);
  });

  it('fills what it is asked to, at the offset asked, whatever the size (past a block too)', () => {
    for (const size of [0, 1, 12, 24, 8191, 8192, 8193, 20_000]) {
      const target = Buffer.alloc(size + 8);
      randomInto(target, 4, size);
      assert.equal(target.readUInt32BE(0), 0, `the bytes before, size ${size}`);
      assert.equal(target.readUInt32BE(size + 4), 0, `the bytes after, size ${size}`);
      if (size >= 24) assert.ok(target.subarray(4, size + 4).some((b) => b !== 0), `filled, size ${size}`);
    }
  });

  it('bytes and 16-bit numbers take every value', () => {
    const bytes = new Set<number>();
    const halves = new Set<number>();
    for (let i = 0; i < 20_000; i++) {
      bytes.add(randomByte());
      halves.add(randomUint16() >> 8);
    }
    assert.equal(bytes.size, 256);
    assert.equal(halves.size, 256);
  });
});
