/**
 * The shape of the tree, checked on what runs (dist/): no module imports itself back through
 * others, core and lib import no plugin (a plugin reaches others through core's interfaces,
 * DESIGN.md), and the walker itself finds a cycle when there is one.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importCycles, importGraph } from './helpers/imports.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Cycles known when this test was written, each to be broken by the change named: the test
 * fails on any other cycle, and on one of these once it is gone (then delete its line).
 */
const KNOWN_CYCLES: string[][] = [];

describe('imports', () => {
  const graph = importGraph(DIST);

  it('reads the whole build', () => {
    for (const file of ['core/block.js', 'core/chain.js', 'plugins/index.js', 'cli/main.js', 'test/imports.test.js']) assert.ok(graph.has(file), file);
    assert.ok(graph.get('core/block.js')!.includes('core/chain.js'));
  });

  it('form no cycle', () => {
    assert.deepEqual(importCycles(graph), KNOWN_CYCLES);
  });

  for (const layer of ['core', 'lib']) {
    it(`${layer} imports no plugin`, () => {
      const wrong = [...graph].flatMap(([file, targets]) => (file.startsWith(`${layer}/`) ? targets.filter((t) => t.startsWith('plugins/')).map((t) => `${file} → ${t}`) : []));
      assert.deepEqual(wrong, []);
    });
  }

  it('the walker finds a cycle through several files, and a module that imports itself', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-imports-'));
    try {
      mkdirSync(path.join(dir, 'sub'));
      writeFileSync(path.join(dir, 'a.js'), "import { b } from './sub/b.js';\nexport const a = 1;\n");
      writeFileSync(path.join(dir, 'sub', 'b.js'), "export {\n  c as b,\n} from '../c.js';\n");
      writeFileSync(path.join(dir, 'c.js'), "import '../x/outside.js';\nimport './a.js';\nexport const c = 2;\n");
      writeFileSync(path.join(dir, 'self.js'), "import * as me from './self.js';\nexport const s = me;\n");
      writeFileSync(path.join(dir, 'lazy.js'), "export const later = () => import('./a.js');\nconst text = 'import x from \"./a.js\"';\n");
      assert.deepEqual(importCycles(importGraph(dir)), [['a.js', 'c.js', 'sub/b.js'], ['self.js']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
