/**
 * A real Valkey (or Redis, whichever Debian gave us) for the shared-cache tests: started on a
 * random loopback port with no persistence, in a temporary folder, stopped by its PID. Tests
 * talk to it through ioredis, the client Veil itself uses.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startDaemon, which, type Peer, type TestCerts } from './peers.js';

/** valkey-server, else redis-server; null when neither is installed. */
export function valkeyProgram(): string | null {
  return which('valkey-server') ? 'valkey-server' : which('redis-server') ? 'redis-server' : null;
}

export function skipUnlessValkey(): false | string {
  return valkeyProgram() ? false : 'skipped: neither valkey-server nor redis-server installed';
}

export interface ValkeyOptions {
  /** The port to take (to start again where a stopped one was); a free one by default. */
  port?: number;
  /** AUTH password (requirepass). */
  password?: string;
  /** TLS only, with these certificates (no plain port). */
  tls?: TestCerts;
  /** Extra `--name value` arguments. */
  args?: string[];
}

export interface Valkey extends Peer {
  /** A client of its own, for raw looks at what Veil stored. */
  client(): Promise<Redis>;
  pause(): void;
  resume(): void;
}

export async function startValkey(options: ValkeyOptions = {}): Promise<Valkey> {
  const program = valkeyProgram();
  if (!program) throw new Error('no valkey-server or redis-server');
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-valkey-'));
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no', ...(options.args ?? [])];
  if (options.password) args.push('--requirepass', options.password);
  if (options.tls) {
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key, '--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no');
  } else {
    args.push('--port', String(port));
  }
  const peer = startDaemon(program, args, dir, port);
  await waitForPort(port, () => peer.log());
  const clients: Redis[] = [];
  return {
    ...peer,
    async client() {
      const client = new Redis({
        host: '127.0.0.1',
        port,
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        ...(options.password ? { password: options.password } : {}),
        ...(options.tls ? { tls: { ca: [readFileSync(options.tls.ca, 'utf8')], servername: 'localhost' } } : {}),
      });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    pause: () => peer.process.kill('SIGSTOP'),
    resume: () => peer.process.kill('SIGCONT'),
    async stop() {
      for (const client of clients) client.disconnect();
      peer.process.kill('SIGCONT'); // a paused server cannot hear SIGTERM
      await peer.stop();
    },
  };
}

async function waitForPort(port: number, log: () => string): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < 10_000) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Valkey did not listen on ${port}:\n${log()}`);
}

/** A fleet secret file (hex), readable by its owner only, in `dir`. */
export function writeFleetKey(dir: string, name = 'cache.key', hex = '5eed'.repeat(16)): string {
  const file = path.join(dir, name);
  writeFileSync(file, `${hex}\n`);
  chmodSync(file, 0o600);
  return file;
}

/** A Sentinel watching the primary at `primaryPort` as `name`, deciding alone (quorum 1), quickly. */
export async function startSentinel(primaryPort: number, name: string): Promise<Peer> {
  const program = valkeyProgram()!;
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-sentinel-'));
  // Sentinel rewrites its configuration file: it must be its own, and writable.
  writeFileSync(
    path.join(dir, 'sentinel.conf'),
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 3000`,
      `sentinel parallel-syncs ${name} 1`,
      '',
    ].join('\n'),
  );
  const peer = startDaemon(program, [path.join(dir, 'sentinel.conf'), '--sentinel'], dir, port);
  await waitForPort(port, () => peer.log());
  return peer;
}

export interface ValkeyCluster {
  ports: number[];
  nodes: Valkey[];
  stop(): Promise<void>;
}

/** A cluster of `count` primaries on loopback (no replicas), ready when every slot is served. */
export async function startCluster(count = 3): Promise<ValkeyCluster> {
  const nodes: Valkey[] = [];
  for (let i = 0; i < count; i++) {
    const busPort = await freePort();
    nodes.push(await startValkey({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', '--cluster-port', String(busPort)] }));
  }
  const ports = nodes.map((n) => n.port);
  const cli = which('valkey-cli') ?? which('redis-cli');
  if (!cli) throw new Error('no valkey-cli or redis-cli');
  const created = spawnSync(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
  if (created.status !== 0) throw new Error(`cluster create failed: ${created.stdout}${created.stderr}`);
  const started = Date.now();
  for (;;) {
    const states = await Promise.all(nodes.map(async (n) => (await (await n.client()).cluster('INFO')) as string));
    if (states.every((info) => info.includes('cluster_state:ok'))) break;
    if (Date.now() - started > 20_000) throw new Error(`the cluster did not become ready: ${states.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    ports,
    nodes,
    async stop() {
      for (const node of nodes) await node.stop();
    },
  };
}
