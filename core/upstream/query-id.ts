/**
 * Random 16-bit query IDs, from the CSPRNG block of core/util/random-pool.ts: cheaper than a
 * `randomInt` call per query, and just as unpredictable (an off-path attacker must guess it).
 */
import { randomUint16 } from '../util/random-pool.js';

export const randomId = randomUint16;

/** A random ID not yet in `taken`. The caller bounds `taken` well below 65536 entries. */
export function freeId(taken: { has(id: number): boolean }): number {
  for (;;) {
    const id = randomId();
    if (!taken.has(id)) return id;
  }
}
