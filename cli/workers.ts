/**
 * `--workers N`: N processes serve the same configuration on the same addresses, the kernel
 * spreading queries between them (SO_REUSEPORT). This process supervises: it starts the
 * workers, passes SIGHUP (reload) and SIGTERM/SIGINT (stop) on to every one, and restarts a
 * worker that dies — unless workers keep dying, then it stops them all and exits 1. It also
 * binds the operator endpoints (metrics, health) the workers ask for, and answers them from
 * all workers at once (lib/worker-endpoints.ts); a worker's server opens its endpoints through
 * the supervisor (`provideWorkerServices`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from '../core/logger.js';
import type { ServiceContainer } from '../core/services.js';
import { HttpEndpointsService } from '../lib/http-endpoints.js';
import { EndpointBroker, WorkerHttpEndpoints } from '../lib/worker-endpoints.js';

/** Set in a worker's environment to its 1-based index. */
const WORKER_ENV = 'VEIL_WORKER';

/** Restarts allowed within RESTART_WINDOW_MS before the supervisor gives up. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

/** The 1-based index of this process when it is a worker, else null. */
export function workerIndex(): number | null {
  const value = process.env[WORKER_ENV];
  return value ? Number(value) : null;
}

/**
 * In a worker: the server's services that go through the supervisor, provided in its root
 * container before it starts (its HTTP endpoints: the supervisor binds them for every worker).
 */
export function provideWorkerServices(services: ServiceContainer): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error(`${WORKER_ENV} is set but this process has no channel to a supervisor`);
  services.provide(HttpEndpointsService, new WorkerHttpEndpoints({ send, on: (event, listener) => process.on(event, listener), channel: process.channel }));
}

export function superviseWorkers(count: number, script: string, args: string[], logger: Logger): Promise<number> {
  const workers = new Map<number, ChildProcess>();
  const broker = new EndpointBroker(() => [...workers.values()]);
  const restarts: number[] = [];
  let stopping = false;

  return new Promise<number>((resolve) => {
    let exitCode = 0;
    const finished = (): void => {
      if (workers.size === 0) void broker.close().then(() => resolve(exitCode));
    };

    const stop = (code: number): void => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      for (const child of workers.values()) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        for (const child of workers.values()) child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      timer.unref();
      finished();
    };

    const start = (index: number): void => {
      const child = fork(script, args, {
        env: { ...process.env, [WORKER_ENV]: String(index) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      workers.set(index, child);
      child.on('message', (message) => broker.handle(child, message));
      child.on('exit', (code, signal) => {
        workers.delete(index);
        if (stopping) {
          finished();
          return;
        }
        const now = Date.now();
        restarts.push(now);
        while (restarts.length && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
        if (restarts.length > MAX_RESTARTS) {
          logger.error(`worker ${index} exited (${signal ?? code}); workers died ${restarts.length} times in a minute, stopping`);
          stop(1);
          return;
        }
        logger.warn(`worker ${index} exited (${signal ?? code}); starting it again`);
        setTimeout(() => {
          if (!stopping) start(index);
        }, 1000);
      });
    };

    process.on('SIGHUP', () => {
      logger.info(`SIGHUP: reloading ${workers.size} worker(s)`);
      for (const child of workers.values()) child.kill('SIGHUP');
    });
    process.on('SIGTERM', () => stop(0));
    process.on('SIGINT', () => stop(0));

    logger.info(`starting ${count} workers`);
    for (let i = 1; i <= count; i++) start(i);
  });
}
