/**
 * core/util/id-table.ts: the same answers as a Map under random use (growing, shrinking,
 * wrapping around the end of its arrays), and what it is for: entries taken out of a table that
 * has been in the old generation are not promoted by minor GCs, as a Map's are.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { IdTable } from '../core/util/id-table.js';

/** A small deterministic generator (xorshift32), so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

describe('IdTable', () => {
  for (const [name, keyOf] of [
    ['random keys in a small range (collisions, wrap-around)', (r: () => number) => Math.floor(r() * 200)],
    ['DNS message IDs', (r: () => number) => Math.floor(r() * 65536)],
    ['rising stream IDs', null],
  ] as const) {
    it(`answers as a Map does: ${name}`, () => {
      const r = random(0x5eed + name.length);
      const table = new IdTable<string>();
      const map = new Map<number, string>();
      let next = 1;
      for (let step = 0; step < 50_000; step++) {
        const key = keyOf ? keyOf(r) : r() < 0.5 ? next : Math.max(1, next - 2 * Math.floor(r() * 300));
        const op = r();
        // Phases of filling and emptying, so the table grows and shrinks again.
        const filling = Math.floor(step / 5000) % 2 === 0;
        if (op < (filling ? 0.6 : 0.3)) {
          table.set(key, `v${step}`);
          map.set(key, `v${step}`);
          if (!keyOf && key === next) next += 2;
        } else if (op < 0.9) {
          assert.equal(table.delete(key), map.delete(key), `delete ${key} at step ${step}`);
        } else {
          assert.equal(table.get(key), map.get(key), `get ${key} at step ${step}`);
          assert.equal(table.has(key), map.has(key));
        }
        assert.equal(table.size, map.size, `size at step ${step}`);
        if (step % 997 === 0) assert.deepEqual(table.values().sort(), [...map.values()].sort());
      }
      for (const key of [...map.keys()]) assert.equal(table.get(key), map.get(key));
      table.clear();
      assert.equal(table.size, 0);
      assert.deepEqual(table.values(), []);
      assert.equal(table.get([...map.keys()][0] ?? 1), undefined);
    });
  }

  it('keeps its room when emptied if small (a connection drained by every burst), gives it back if large', () => {
    const slots = (table: IdTable<number>) => (table as unknown as { keys: Int32Array }).keys.length;
    const small = new IdTable<number>();
    for (let i = 1; i <= 200; i += 2) small.set(i, i);
    const grown = slots(small);
    assert.ok(grown > 16, `grew to ${grown} slots`);
    for (let i = 1; i <= 200; i += 2) small.delete(i);
    assert.equal(slots(small), grown, 'no resize on the way down');
    const large = new IdTable<number>();
    for (let i = 0; i < 2000; i++) large.set(i, i);
    const big = slots(large);
    for (let i = 0; i < 1990; i++) large.delete(i);
    assert.ok(slots(large) < big, `${slots(large)} slots left of ${big}`);
    for (let i = 1990; i < 2000; i++) assert.equal(large.get(i), i);
  });

  it('takes keys from 0 to 2^31 - 1 and no others', () => {
    const table = new IdTable<number>();
    table.set(0, 1);
    table.set(0x7fffffff, 2);
    assert.equal(table.get(0), 1);
    assert.equal(table.get(0x7fffffff), 2);
    for (const bad of [-1, 0x8000_0000, 1.5, Number.NaN]) assert.throws(() => table.set(bad, 3), RangeError);
    assert.equal(table.size, 2);
  });

  it('lets what it held die young, where a Map that has been old promotes it all', () => {
    // In a child with --expose-gc: an entry, then three minor GCs, make the table's storage old;
    // then 40 rounds of 64 entries of 8 KB each put in and taken out, two minor GCs after each.
    // The old space's growth over the rounds is what the minor GCs promoted.
    const module = fileURLToPath(new URL('../core/util/id-table.js', import.meta.url));
    const probe = (kind: 'map' | 'table'): number => {
      const script = `
        import v8 from 'node:v8';
        const { IdTable } = await import(${JSON.stringify(module)});
        const table = ${kind === 'map' ? 'new Map()' : 'new IdTable()'};
        const oldUsed = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
        const minor = () => globalThis.gc({ type: 'minor' });
        table.set(1, { keep: true });
        minor(); minor(); minor();
        let promoted = 0, id = 3;
        for (let round = 0; round < 40; round++) {
          const before = oldUsed();
          const ids = [];
          for (let i = 0; i < 64; i++) { table.set(id, new Array(1000).fill(round + 0.5)); ids.push(id); id += 2; }
          for (const i of ids) table.delete(i);
          minor(); minor();
          promoted += Math.max(0, oldUsed() - before);
        }
        console.log(promoted);`;
      const child = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(child.status, 0, child.stderr);
      return Number(child.stdout.trim());
    };
    const churned = 40 * 64 * 8000;
    const byMap = probe('map');
    const byTable = probe('table');
    assert.ok(byTable < churned / 10, `IdTable: ${byTable} bytes promoted of ${churned} churned (a Map in the same test: ${byMap})`);
  });
});
