/** Veil's version, from package.json (for `veil --version`, metrics and traces). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function veilVersion(): string {
  if (cached === null) {
    // Compiled, this file is dist/lib/version.js: package.json is two folders up.
    const file = fileURLToPath(new URL('../../package.json', import.meta.url));
    cached = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return cached;
}
