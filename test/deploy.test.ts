/**
 * deploy/ stays true to itself: the Corefile the container and the Kubernetes manifests ship is
 * one Corefile that `veil check` accepts, and the ports the Dockerfile, the manifests and the
 * health check name are the ones that Corefile listens on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { skipUnless } from './helpers/peers.js';
import { makeTempDir, ROOT, runVeil } from './helpers/veil-process.js';

const read = (file: string) => readFileSync(path.join(ROOT, 'deploy', file), 'utf8');
const corefile = read('Corefile');
const dockerfile = read('Dockerfile');
const manifests = read('kubernetes/veil.yaml');
const unit = read('veil.service');

/** The text of a `key: |` block scalar in the YAML (its lines, dedented). */
function blockScalar(yaml: string, key: string): string {
  const lines = yaml.split('\n');
  const start = lines.findIndex((l) => l.trimEnd().endsWith(`${key}: |`));
  assert.ok(start >= 0, `no "${key}: |" in the manifests`);
  const indent = lines[start + 1]!.length - lines[start + 1]!.trimStart().length;
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() !== '' && line.length - line.trimStart().length < indent) break;
    body.push(line.slice(indent));
  }
  return body.join('\n').trimEnd() + '\n';
}

/** The port of `NAME ADDR:PORT` in the Corefile (metrics, health). */
function directivePort(name: string): number {
  const m = new RegExp(`^\\s*${name}\\s+\\S*:(\\d+)\\s*$`, 'm').exec(corefile);
  assert.ok(m, `deploy/Corefile has no "${name} ADDR:PORT" line`);
  return Number(m[1]);
}

describe('deploy/', () => {
  it('the ConfigMap holds deploy/Corefile, unchanged', () => {
    assert.equal(blockScalar(manifests, 'Corefile'), corefile.trimEnd() + '\n');
  });

  it('veil check accepts deploy/Corefile', async () => {
    const result = await runVeil(['check', path.join(ROOT, 'deploy/Corefile')], ROOT);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /listeners: udp:\/\/0\.0\.0\.0:53, tcp:\/\/0\.0\.0\.0:53/);
  });

  it('the image builds every folder of shipped code (tsconfig), with a C compiler for the UDP addon', () => {
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const shipped = tsconfig.include.map((glob) => glob.split('/')[0]!).filter((dir) => !['test', 'bench', 'demo'].includes(dir));
    assert.ok(shipped.includes('native'));
    for (const dir of shipped) assert.match(dockerfile, new RegExp(`^COPY ${dir} ${dir}$`, 'm'), `the Dockerfile does not copy ${dir}/`);
    assert.match(dockerfile, /apt-get install[^\n]* gcc libc6-dev/);
  });

  it('the health check, probes and exposed ports are the ones the Corefile serves', () => {
    const health = directivePort('health');
    const metrics = directivePort('metrics');
    assert.match(dockerfile, new RegExp(`HEALTHCHECK[\\s\\S]*http://127\\.0\\.0\\.1:${health}/health`));
    assert.match(dockerfile, new RegExp(`^EXPOSE 53/udp 53/tcp ${metrics}/tcp ${health}/tcp$`, 'm'));
    assert.match(manifests, new RegExp(`containerPort: ${health}`));
    assert.match(manifests, new RegExp(`containerPort: ${metrics}`));
    assert.match(manifests, /httpGet: \{ path: \/health, port: health \}/);
    assert.match(manifests, /httpGet: \{ path: \/ready, port: health \}/);
  });

  it('the image runs unprivileged and serves /etc/veil/Corefile', () => {
    assert.match(dockerfile, /^FROM node:24-slim$/m);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /^COPY deploy\/Corefile \/etc\/veil\/Corefile$/m);
    assert.match(dockerfile, /^CMD \["-conf", "\/etc\/veil\/Corefile"\]$/m);
  });

  it('the systemd unit checks before it starts, and binds port 53 with one capability, as a dynamic user', () => {
    assert.match(unit, /^ExecStartPre=\/opt\/veil\/bin\/veil check \/etc\/veil\/Corefile$/m);
    assert.match(unit, /^ExecStart=\/opt\/veil\/bin\/veil -conf \/etc\/veil\/Corefile$/m);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    assert.match(unit, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
    assert.match(unit, /^DynamicUser=yes$/m);
    assert.match(unit, /^StateDirectory=veil$/m);
    assert.doesNotMatch(unit, /^User=/m);
  });
});

describe('deploy/veil.service under systemd-analyze', { skip: skipUnless('systemd-analyze') }, () => {
  // verify wants the programs the unit runs to exist: the same unit, pointing at this checkout.
  const dir = makeTempDir({ 'veil.service': unit.replaceAll('/opt/veil', ROOT) });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('systemd-analyze verify passes, without a warning', () => {
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'veil.service')], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr.trim(), '');
  });

  it('systemd-analyze security rates its exposure 2.5 or lower ("OK")', (t) => {
    const result = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', path.join(dir, 'veil.service')], { encoding: 'utf8' });
    if (result.status !== 0 && /offline/.test(result.stderr)) {
      t.skip('this systemd-analyze has no --offline');
      return;
    }
    const m = /Overall exposure level for veil\.service: ([\d.]+)/.exec(result.stdout);
    assert.ok(m, result.stdout + result.stderr);
    assert.ok(Number(m[1]) <= 2.5, `exposure ${m[1]}`);
  });
});
