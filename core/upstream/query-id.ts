/**
 * Random 16-bit query IDs from a block of CSPRNG bytes refilled when used up: cheaper than a
 * `randomInt` call per query, and just as unpredictable (an off-path attacker must guess it).
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

export function randomId(): number {
  if (offset + 2 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.readUInt16BE(offset);
  offset += 2;
  return id;
}

/** A random ID not yet in `taken`. The caller bounds `taken` well below 65536 entries. */
export function freeId(taken: { has(id: number): boolean }): number {
  for (;;) {
    const id = randomId();
    if (!taken.has(id)) return id;
  }
}
