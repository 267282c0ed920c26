/** docs/install.md, read by the tests that check it: its shell lines and the resolv.conf it shows. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './veil-process.js';

export const installDoc = readFileSync(path.join(ROOT, 'docs/install.md'), 'utf8');

/** Every line of its `sh` fences. */
export const installShellLines = [...installDoc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].flatMap((m) => m[1]!.split('\n').filter(Boolean));

/** The resolv.conf install.md shows (its `resolv.conf` fence). */
export function installResolvConf(): string {
  const m = /^```resolv\.conf\n([\s\S]*?)^```$/m.exec(installDoc);
  assert.ok(m, 'no resolv.conf fence in install.md');
  return m[1]!;
}
