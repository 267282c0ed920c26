/**
 * A fresh network namespace for tests that must see everything a process sends: only a
 * loopback interface, its own /etc/resolv.conf (bind-mounted by `ip netns exec`), and helpers to
 * run processes inside it. Needs root and iproute2; `whyNoNamespace()` says when they are
 * missing. The namespace, its folder and its processes go when `cleanup()` runs, or when the
 * test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { which } from './peers.js';

export function whyNoNamespace(...tools: string[]): string | false {
  if (process.getuid?.() !== 0) return 'skipped: network namespaces need root';
  for (const tool of ['ip', ...tools]) if (!which(tool)) return `skipped: ${tool} not installed`;
  return namespacesWork();
}

let probed: string | false | undefined;

/**
 * Root and iproute2 are not always enough (a container may refuse the mounts `ip netns exec`
 * makes): make one namespace and run a program in it, each step bounded, once per process.
 */
function namespacesWork(): string | false {
  if (probed !== undefined) return probed;
  const name = `veil-probe-${randomBytes(4).toString('hex')}`;
  const step = (args: string[]): string | false => {
    const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 ? false : `skipped: \`ip ${args.join(' ')}\` failed here (${(r.error?.message ?? r.stderr ?? '').trim() || `status ${r.status}`})`;
  };
  probed = step(['netns', 'add', name]);
  if (!probed) {
    probed = step(['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    spawnSync('ip', ['netns', 'del', name], { timeout: 10_000 });
  }
  return probed;
}

export interface NsProcess {
  child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal and waits for the exit (SIGKILL after 5 s). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Waits for the process to end by itself; after `timeoutMs` it is killed and this says false. */
  ended(timeoutMs: number): Promise<boolean>;
}

export interface Namespace {
  name: string;
  /** Runs `args` inside the namespace, in `cwd`; stdout and stderr are collected together. */
  run(args: string[], cwd: string): NsProcess;
  cleanup(): void;
}

export function createNamespace(prefix: string, resolvConf = 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n'): Namespace {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const config = path.join('/etc/netns', name);
  const running: ChildProcess[] = [];
  const cleanup = (): void => {
    for (const child of running) {
      if (child.exitCode === null && child.signalCode === null && child.pid) child.kill('SIGKILL');
      // A process it started may still hold the pipes: they must not keep this test process alive.
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
    running.length = 0;
    // Whatever our processes started in the namespace and left behind ends with it (by PID).
    const left = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000 });
    for (const pid of (left.stdout ?? '').split('\n').map(Number).filter((n) => n > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'del', name], { timeout: 10_000 });
    rmSync(config, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8', timeout: 10_000 });
  if (add.status !== 0) throw new Error(`ip netns add ${name}: ${add.stderr}`);
  mkdirSync(config, { recursive: true });
  writeFileSync(path.join(config, 'resolv.conf'), resolvConf);
  const up = spawnSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'], { encoding: 'utf8', timeout: 10_000 });
  if (up.status !== 0) {
    cleanup();
    throw new Error(`bringing lo up in ${name}: ${up.stderr}`);
  }
  return {
    name,
    cleanup,
    run(args, cwd) {
      const child = spawn('ip', ['netns', 'exec', name, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      running.push(child);
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      // 'exit' may never come for a process that could not be started: 'error' ends the wait too.
      const exited = new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', (err) => {
          out += `\n${err.message}\n`;
          resolve();
        });
      });
      return {
        child,
        output: () => out,
        async waitFor(pattern, timeoutMs = 15_000) {
          const started = Date.now();
          for (;;) {
            const m = out.match(pattern);
            if (m) return m;
            if (Date.now() - started > timeoutMs) throw new Error(`no ${pattern} within ${timeoutMs}ms; output:\n${out}`);
            if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${pattern}; output:\n${out}`);
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        async ended(timeoutMs) {
          if (child.exitCode !== null || child.signalCode !== null) return true;
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
          const inTime = await Promise.race([exited.then(() => true as const), late]);
          clearTimeout(timer);
          if (!inTime) {
            child.kill('SIGKILL');
            await exited;
          }
          return inTime;
        },
        async stop(signal = 'SIGTERM') {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill(signal);
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        },
      };
    },
  };
}
