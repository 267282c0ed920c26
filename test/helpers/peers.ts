/**
 * Real, independent DNS software for interop tests, started on loopback with configurations
 * written here, and stopped by PID. Tests that need a peer skip with "skipped: NAME not
 * installed" when it is missing; .ci/run installs them so CI runs those tests.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin', '/usr/local/sbin'];

/** The full path of an installed program, or null. */
export function which(program: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...SEARCH_PATH]) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    if (spawnSync('test', ['-x', candidate]).status === 0) return candidate;
  }
  return null;
}

/** `false` when installed, else the skip message node:test prints. */
export function skipUnless(...programs: string[]): false | string {
  const missing = programs.filter((p) => !which(p));
  return missing.length === 0 ? false : `skipped: ${missing.join(', ')} not installed`;
}

/** A port free for both UDP and TCP on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (tcpFree) return port;
  }
  throw new Error('no free port');
}

export interface Peer {
  port: number;
  dir: string;
  process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** Waits until something answers DNS on 127.0.0.1:port over UDP. */
export async function waitForDns(port: number, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  const probe = Buffer.from('abcd01000001000000000000056865616c7468000001' + '0001', 'hex');
  while (Date.now() - started < timeoutMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      const t = setTimeout(() => {
        s.close();
        resolve(false);
      }, 200);
      s.on('message', () => {
        clearTimeout(t);
        s.close();
        resolve(true);
      });
      s.on('error', () => {
        clearTimeout(t);
        s.close();
        resolve(false);
      });
      s.send(probe, port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answered DNS on 127.0.0.1:${port} within ${timeoutMs}ms`);
}

export function startDaemon(program: string, args: string[], dir: string, port: number): Peer {
  let output = '';
  const child = spawn(which(program) ?? program, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => ((exited = true), resolve())));
  return {
    port,
    dir,
    process: child,
    log: () => output,
    async stop() {
      if (!exited && child.pid) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exit, new Promise((r) => (timer = setTimeout(r, 5000)))]);
        clearTimeout(timer);
        if (!exited) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * unbound as an origin with local data only (never recurses): any name → A 203.0.113.1 /
 * AAAA 2001:db8::1; lab.test with MX, CNAME, a TTL-5 name, and big.lab.test TXT (~3.4 KB, so
 * UDP answers are truncated at 1232 bytes); nx.test answers NXDOMAIN; refused.test REFUSED.
 */
export async function startUnboundOrigin(): Promise<Peer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-unbound-'));
  const port = await freePort();
  const big = Array.from({ length: 16 }, (_, i) => `    local-data: 'big.lab.test. 60 IN TXT "${String(i).padStart(2, '0')}${'a'.repeat(198)}"'`).join('\n');
  const config = `server:
    interface: 127.0.0.1@${port}
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    username: ""
    chroot: ""
    directory: "${dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-not-query-localhost: yes
    module-config: "iterator"
    edns-buffer-size: 1232
    max-udp-size: 1232
    minimal-responses: yes
    local-zone: "." redirect
    local-data: ". 3600 IN A 203.0.113.1"
    local-data: ". 3600 IN AAAA 2001:db8::1"
    local-zone: "test." nodefault
    local-zone: "lab.test." static
    local-data: "lab.test. 3600 IN SOA ns1.lab.test. hostmaster.lab.test. 1 7200 3600 1209600 300"
    local-data: "lab.test. 3600 IN A 198.51.100.10"
    local-data: "lab.test. 3600 IN MX 10 mail.lab.test."
    local-data: "www.lab.test. 300 IN CNAME lab.test."
    local-data: "short-ttl.lab.test. 5 IN A 198.51.100.5"
${big}
    local-zone: "nx.test." static
    local-data: "nx.test. 3600 IN SOA ns.nx.test. admin.nx.test. 1 7200 3600 1209600 60"
    local-zone: "refused.test." refuse
remote-control:
    control-enable: no
`;
  writeFileSync(path.join(dir, 'unbound.conf'), config);
  const peer = startDaemon('unbound', ['-d', '-c', path.join(dir, 'unbound.conf')], dir, port);
  try {
    await waitForDns(port);
  } catch (err) {
    const log = peer.log();
    await peer.stop();
    throw new Error(`${(err as Error).message}; unbound said: ${log}`);
  }
  return peer;
}

/** Runs a command to completion and returns its output (for dig and kdig). */
export function run(program: string, args: string[], timeoutMs = 10_000): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(which(program) ?? program, args, { encoding: 'utf8', timeout: timeoutMs });
  return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}
