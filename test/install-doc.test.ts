/**
 * docs/install.md stays true: its `veil init` lines run (writing to a temporary folder instead
 * of /etc/veil) and give Corefiles `veil check` accepts; the resolv.conf it shows is the one its
 * command writes (test/integration/doctor.test.ts runs `veil doctor` on exactly that file); the
 * systemd-resolved drop-in is the one `veil doctor` asks for; the unit it copies exists; and its
 * `veil query` and `veil doctor` lines are valid command lines. The commands that change a
 * machine (apt-get, systemctl, nmcli, docker) are what `veil doctor` then checks.
 */
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseQueryArgs } from '../cli/query.js';
import { installResolvConf, installShellLines } from './helpers/install-doc.js';
import { makeTempDir, ROOT, runVeil } from './helpers/veil-process.js';

const shellLines = installShellLines;

/** The text a `printf '…' | sudo tee FILE` line writes to FILE. */
function printed(file: string): string {
  const line = shellLines.find((l) => l.startsWith('printf ') && l.endsWith(`tee ${file}`));
  assert.ok(line, `no printf … | sudo tee ${file} in install.md`);
  return /^printf '([^']*)'/.exec(line)![1]!.replace(/\\n/g, '\n');
}

describe('docs/install.md', () => {
  const dir = makeTempDir();
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('its veil init lines write Corefiles that veil check accepts', async () => {
    const inits = shellLines.filter((l) => /bin\/veil init /.test(l));
    assert.ok(inits.length >= 2, inits.join('\n'));
    for (const [i, line] of inits.entries()) {
      const file = path.join(dir, `Corefile.${i}`);
      const args = line.replace(/^sudo /, '').split(/\s+/).slice(1).map((a) => (a === '/etc/veil/Corefile' ? file : a));
      assert.equal(args[0], 'init');
      const written = await runVeil(args, dir);
      assert.equal(written.code, 0, `${line}\n${written.stderr}`);
      const checked = await runVeil(['check', file], dir);
      assert.equal(checked.code, 0, `${line}\n${checked.stderr}`);
    }
  });

  it('the resolv.conf it shows is the one its command writes', () => {
    assert.equal(printed('/etc/resolv.conf'), installResolvConf());
  });

  it('the systemd-resolved drop-in sends every name to Veil, with no fallback (what veil doctor asks for)', () => {
    assert.equal(printed('/etc/systemd/resolved.conf.d/veil.conf'), '[Resolve]\nDNS=127.0.0.1\nDomains=~.\nFallbackDNS=\n');
  });

  it('the unit it installs exists, and its veil query and veil doctor lines are valid', () => {
    assert.ok(shellLines.includes('sudo cp /opt/veil/deploy/veil.service /etc/systemd/system/'));
    assert.ok(existsSync(path.join(ROOT, 'deploy/veil.service')));
    const query = shellLines.find((l) => /bin\/veil query /.test(l))!;
    assert.equal(parseQueryArgs(query.split(/\s+/).slice(2)).path, true);
    assert.ok(shellLines.includes('sudo /opt/veil/bin/veil doctor -conf /etc/veil/Corefile'));
  });
});
