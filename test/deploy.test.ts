/**
 * deploy/ stays true to itself: the Corefile the container and the Kubernetes manifests ship is
 * one Corefile that `veil check` accepts, and the ports the Dockerfile, the manifests and the
 * health check name are the ones that Corefile listens on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { makeTestCerts, skipUnless } from './helpers/peers.js';
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

describe('deploy/: a fleet sharing its cache', () => {
  const fleetCorefile = read('fleet/Corefile');
  const fleet = read('kubernetes/fleet.yaml');
  const composeCorefile = read('compose/Corefile');
  const compose = read('docker-compose.yml');
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  /** The Corefile with its absolute paths moved into a folder holding those files, checked by `veil check`. */
  async function check(text: string, root: string, files: Record<string, string>, env: Record<string, string>) {
    const dir = makeTempDir();
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      writeFileSync(path.join(dir, name), content);
      chmodSync(path.join(dir, name), 0o600);
    }
    writeFileSync(path.join(dir, 'Corefile'), text.replaceAll(root, `${dir}/`));
    Object.assign(process.env, env);
    return runVeil(['check', 'Corefile'], dir);
  }

  function tlsFiles(): Record<string, string> {
    const certs = makeTestCerts();
    dirs.push(certs.dir);
    return { 'tls/tls.crt': readFileSync(certs.chain, 'utf8'), 'tls/tls.key': readFileSync(certs.key, 'utf8') };
  }
  const KEY = `${'3c'.repeat(16)}${'a7'.repeat(16)}`;

  it("the ConfigMap holds deploy/fleet/Corefile, which veil check accepts with the Secret's files", async () => {
    assert.equal(blockScalar(fleet, 'Corefile'), fleetCorefile.trimEnd() + '\n');
    const files = { ...tlsFiles(), 'secret/cache.key': KEY, 'secret/valkey.password': 'pw\n' };
    const result = await check(fleetCorefile, '/etc/veil/', files, { VALKEY_SERVICE_HOST: '10.96.0.20', VALKEY_SERVICE_PORT: '6379' });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /listeners: udp:\/\/0\.0\.0\.0:53, tcp:\/\/0\.0\.0\.0:53, tls:\/\/0\.0\.0\.0:853, https:\/\/0\.0\.0\.0:443\/dns-query/);
    assert.match(fleetCorefile, /shared redis:\/\/\{\$VALKEY_SERVICE_HOST\}:\{\$VALKEY_SERVICE_PORT\}\/0/);
  });

  it("the Secret's placeholder is refused: a fleet never starts with a secret everyone knows", async () => {
    const placeholder = /cache\.key: (\S+)/.exec(fleet)![1]!;
    const files = { ...tlsFiles(), 'secret/cache.key': placeholder, 'secret/valkey.password': 'pw\n' };
    const result = await check(fleetCorefile, '/etc/veil/', files, { VALKEY_SERVICE_HOST: '10.96.0.20', VALKEY_SERVICE_PORT: '6379' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cache: .*does not hold a 32-byte secret/);
  });

  it('three replicas, a Service for DNS, DoT and DoH, Valkey and its Service, readiness, a disruption budget', () => {
    const objects = fleet.split(/^---$/m);
    const object = (kind: string, name: string) => {
      const found = objects.find((o) => new RegExp(`^kind: ${kind}$`, 'm').test(o) && new RegExp(`^  name: ${name}$`, 'm').test(o));
      assert.ok(found, `no ${kind} ${name}`);
      return found;
    };
    const veil = object('Deployment', 'veil-fleet');
    assert.match(veil, /^  replicas: 3$/m);
    assert.match(veil, /readinessProbe:\n\s+httpGet: \{ path: \/ready, port: health \}/);
    assert.match(veil, /secretName: veil-fleet\n\s+defaultMode: 0440/, 'the secret readable by the group alone');
    assert.match(veil, /fsGroup: 1000/);
    assert.match(veil, /mountPath: \/etc\/veil\/secret/);
    assert.match(veil, /args: \["-conf", "\/etc\/veil\/config\/Corefile"\]/);
    const service = object('Service', 'veil-fleet');
    for (const port of [/port: 53, targetPort: dns, protocol: UDP/, /port: 53, targetPort: dns-tcp, protocol: TCP/, /port: 853, targetPort: dot, protocol: TCP/, /port: 443, targetPort: doh, protocol: TCP/]) {
      assert.match(service, port);
    }
    assert.match(object('Deployment', 'valkey'), /--requirepass\n\s+- \$\(VALKEY_PASSWORD\)/);
    assert.match(object('Service', 'valkey'), /port: 6379/);
    assert.ok(objects.findIndex((o) => /^kind: Service$/m.test(o) && /^  name: valkey$/m.test(o)) < objects.findIndex((o) => /^  name: veil-fleet$/m.test(o) && /^kind: Deployment$/m.test(o)), 'the Valkey Service exists before the pods that read its address');
    assert.match(object('Secret', 'veil-fleet'), /cache\.key: /);
    assert.match(object('PodDisruptionBudget', 'veil-fleet'), /minAvailable: 2/);
  });

  it('docker-compose.yml: two instances and Valkey, with a Corefile veil check accepts', async () => {
    for (const service of ['keygen', 'valkey', 'veil-1', 'veil-2']) assert.match(compose, new RegExp(`^  ${service}:$`, 'm'));
    const address = /ipv4_address: (\S+)/.exec(compose)![1]!;
    assert.equal(compose.split(`VALKEY_ADDRESS: ${address}`).length - 1, 2, 'both instances get the address Valkey has');
    assert.equal(compose.split('./compose/Corefile:/etc/veil/fleet/Corefile:ro').length - 1, 2);
    assert.match(compose, /chmod 0400 \/keys\/cache\.key/);
    const result = await check(composeCorefile, '/run/veil/', { 'cache.key': KEY }, { VALKEY_ADDRESS: address });
    assert.equal(result.code, 0, result.stderr);
  });
});
