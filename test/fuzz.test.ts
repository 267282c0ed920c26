/**
 * Every fuzz target, briefly and deterministically on each test run: its corpus (including
 * every crash found before), then a fixed number of generated inputs from a fixed seed.
 * `npm run fuzz` runs them for longer.
 */
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { dnssecTargets } from './fuzz/dnssec-targets.js';
import { odohTargets } from './fuzz/odoh-targets.js';
import { protocolTargets } from './fuzz/protocol-targets.js';
import { allSeeds, targets } from './fuzz/targets.js';

describe('fuzz targets (short, fixed seed)', () => {
  for (const target of [...targets, ...protocolTargets, ...odohTargets, ...dnssecTargets]) {
    it(`${target.name}: ${target.inputs}`, async () => {
      for (const input of allSeeds(target)) await target.check(input);
      await fc.assert(fc.asyncProperty(target.arbitrary, async (input) => target.check(input)), { numRuns: 400, seed: 20261124 });
    });
  }
});
