/**
 * Starts the real `bin/veil` from a Corefile written to a temporary folder, waits until it says
 * it serves, and reads the bound addresses from its log. Stops it by its PID only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const VEIL = path.join(ROOT, 'bin/veil');

export interface VeilProcess {
  child: ChildProcess;
  dir: string;
  stdout(): string;
  stderr(): string;
  /** `udp://127.0.0.1:0` (as configured) → bound host and port. */
  address(scheme: string, index?: number): { host: string; port: number };
  signal(name: NodeJS.Signals): void;
  /** Waits for the process to exit; resolves with its exit code. */
  exited(timeoutMs?: number): Promise<number | null>;
  /** Waits until stderr contains `text` (count occurrences). */
  waitFor(text: string | RegExp, timeoutMs?: number, count?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A temporary folder with the given files (names may contain folders). */
export function makeTempDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-test-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

/** Runs `veil ARGS…` to completion (for check and bad configs); `env` adds to the test's environment. */
export function runVeil(args: string[], cwd: string, timeoutMs = 15000, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(VEIL, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`veil ${args.join(' ')} did not finish in ${timeoutMs}ms; stderr: ${stderr}`));
    }, timeoutMs);
    // 'close', not 'exit': the process may exit before the last of its output has been read.
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `env` adds to (or, with undefined values, removes from) the test's environment. */
export async function startVeil(corefile: string, files: Record<string, string> = {}, configName = 'Corefile', prepare?: (dir: string) => void, env: NodeJS.ProcessEnv = {}): Promise<VeilProcess> {
  const dir = makeTempDir({ ...files, [configName]: corefile });
  prepare?.(dir);
  const child = spawn(VEIL, ['-conf', configName], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  let exitCode: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve((exitCode = code))));

  const waitFor = async (text: string | RegExp, timeoutMs = 15000, count = 1): Promise<void> => {
    const started = Date.now();
    const occurrences = (): number => (typeof text === 'string' ? err.split(text).length - 1 : (err.match(new RegExp(text.source, 'g')) ?? []).length);
    while (occurrences() < count) {
      if (exitCode !== undefined) throw new Error(`veil exited (${exitCode}) before "${text}"; stderr:\n${err}`);
      if (Date.now() - started > timeoutMs) throw new Error(`veil did not log "${text}" within ${timeoutMs}ms; stderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const proc: VeilProcess = {
    child,
    dir,
    stdout: () => out,
    stderr: () => err,
    address(scheme, index = 0) {
      const found = [...err.matchAll(/listening on (\w+):\/\/(\[[^\]]+\]|[\d.]+):(\d+)/g)].filter((m) => m[1] === scheme);
      const m = found[index];
      if (!m) throw new Error(`no ${scheme} listener in:\n${err}`);
      return { host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]) };
    },
    signal(name) {
      if (exitCode === undefined && child.pid) process.kill(child.pid, name);
    },
    async exited(timeoutMs = 15000) {
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([exit, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))]);
      clearTimeout(timer);
      if (result === 'timeout') throw new Error(`veil did not exit within ${timeoutMs}ms`);
      return result;
    },
    waitFor,
    async stop() {
      if (exitCode === undefined && child.pid) {
        process.kill(child.pid, 'SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const done = await Promise.race([exit.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10000)))]);
        clearTimeout(timer);
        if (!done && child.pid) process.kill(child.pid, 'SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // The CLI says "veil VERSION serving FILE" once every listener is bound.
  await waitFor(/veil \S+ serving /);
  return proc;
}
