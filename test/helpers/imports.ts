/**
 * The static imports between compiled modules (dist/), as Node loads them: type-only imports
 * are gone by then, so what is left is what runs. Dynamic `import()` is left out: it loads
 * later, so it makes no cycle of evaluation.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** `import … from './x.js'`, `export … from '../y.js'`, `import './z.js'`, over several lines too. */
const STATIC_IMPORT = /^\s*(?:import|export)\s(?:[^;'"]*?\sfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm;

/** Every .js file under `root` (folders named node_modules left out), with the files it imports, as paths relative to `root`. */
export function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(full);
      } else if (entry.name.endsWith('.js')) {
        const text = readFileSync(full, 'utf8');
        const targets = [...text.matchAll(STATIC_IMPORT)].map((m) => path.relative(root, path.resolve(dir, m[1]!)));
        graph.set(path.relative(root, full), targets);
      }
    }
  };
  walk(root);
  return graph;
}

/**
 * The import cycles: each group of files that reach one another (Tarjan's strongly connected
 * components, with more than one file or a file that imports itself), each sorted, in order.
 */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (file: string): void => {
    index.set(file, counter);
    low.set(file, counter++);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!graph.has(target)) continue;
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file)!, index.get(target)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const group: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      group.push(member);
    } while (member !== file);
    if (group.length > 1 || graph.get(file)!.includes(file)) cycles.push(group.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}
