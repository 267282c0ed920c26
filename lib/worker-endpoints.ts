/**
 * Operator endpoints (`/metrics`, `/health`, `/ready`) under `--workers N`. The workers cannot
 * each bind the address (a scrape would reach one worker at random), so the supervisor binds it
 * once and, per request, asks every worker over the IPC channel `fork` opened:
 *
 *   worker → supervisor   { veil: 'http-open', id, address, paths }   bind these for me
 *   supervisor → worker   { veil: 'http-opened', id, bound | error }
 *   supervisor → worker   { veil: 'http-request', id, key, path }     your answer, please
 *   worker → supervisor   { veil: 'http-answer', id, answer }
 *
 * Metrics are merged (mergeExpositions: every worker's counts added up); health and readiness
 * are good only when every worker says so.
 *
 * A worker's server has `WorkerHttpEndpoints` as its HttpEndpointsService (cli/workers.ts
 * provides it in the server's root container); the supervisor binds through an
 * HttpEndpointRegistry of its own.
 */
import type { ChildProcess } from 'node:child_process';
import { mergeExpositions } from './exposition-merge.js';
import { formatHttpAddress, HttpEndpointRegistry, type HttpAddress, type HttpAnswer, type HttpEndpoints, type HttpLease, type HttpRoute } from './http-endpoints.js';

const EXPOSITION = /^text\/plain; version=0\.0\.4/;
const ASK_TIMEOUT_MS = 3000;

type Message =
  | { veil: 'http-open'; id: number; address: HttpAddress; paths: string[] }
  | { veil: 'http-opened'; id: number; bound?: string; error?: string }
  | { veil: 'http-request'; id: number; key: string; path: string }
  | { veil: 'http-answer'; id: number; answer: HttpAnswer };

const isMessage = (value: unknown): value is Message => typeof value === 'object' && value !== null && typeof (value as { veil?: unknown }).veil === 'string';

// ---- the worker's side ----------------------------------------------------------------------

/** The channel to the supervisor `fork` opened: the worker's `process`. */
export interface SupervisorChannel {
  send(message: unknown): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  readonly channel?: { unref(): void } | undefined;
}

/**
 * HttpEndpoints in a worker: the supervisor binds; this worker answers its questions. One per
 * worker process (it answers every request the supervisor sends on the channel).
 */
export class WorkerHttpEndpoints implements HttpEndpoints {
  /** Routes this worker holds, by `ADDRESS PATH`; the newest holder answers, as in http-endpoints. */
  private readonly held = new Map<string, HttpRoute[]>();
  private readonly opening = new Map<number, (reply: { bound?: string; error?: string }) => void>();
  private nextId = 1;
  private listening = false;

  constructor(private readonly supervisor: SupervisorChannel) {}

  async open(address: HttpAddress, routes: Record<string, HttpRoute>): Promise<HttpLease> {
    this.listen();
    const held = this.held;
    const key = formatHttpAddress(address);
    const mine = Object.entries(routes);
    const first = mine.every(([path]) => !held.has(`${key} ${path}`));
    for (const [path, route] of mine) held.set(`${key} ${path}`, [...(held.get(`${key} ${path}`) ?? []), route]);
    const id = this.nextId++;
    const reply = await new Promise<{ bound?: string; error?: string }>((resolve) => {
      const timer = setTimeout(() => {
        this.opening.delete(id);
        resolve({ error: 'the supervisor did not answer' });
      }, ASK_TIMEOUT_MS);
      this.opening.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.supervisor.send({ veil: 'http-open', id, address, paths: mine.map(([path]) => path) } satisfies Message);
    });
    const release = async (): Promise<void> => {
      for (const [path, route] of mine) {
        const rest = (held.get(`${key} ${path}`) ?? []).filter((r) => r !== route);
        if (rest.length) held.set(`${key} ${path}`, rest);
        else held.delete(`${key} ${path}`);
      }
    };
    if (reply.error) {
      await release();
      throw new Error(reply.error);
    }
    return { bound: reply.bound!, first, release };
  }

  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    this.supervisor.on('message', (message: unknown) => {
      if (!isMessage(message)) return;
      if (message.veil === 'http-opened') {
        this.opening.get(message.id)?.(message);
        this.opening.delete(message.id);
      } else if (message.veil === 'http-request') {
        void this.answerRequest(message.id, message.key, message.path);
      }
    });
    // The channel must not keep a stopping worker alive.
    this.supervisor.channel?.unref();
  }

  private async answerRequest(id: number, key: string, path: string): Promise<void> {
    const route = this.held.get(`${key} ${path}`)?.at(-1);
    let answer: HttpAnswer;
    try {
      answer = route ? await route() : { status: 404, type: 'text/plain; charset=utf-8', body: 'no such path in this worker\n' };
    } catch (error) {
      answer = { status: 500, type: 'text/plain; charset=utf-8', body: `${error instanceof Error ? error.message : String(error)}\n` };
    }
    this.supervisor.send({ veil: 'http-answer', id, answer } satisfies Message);
  }
}

// ---- the supervisor's side ------------------------------------------------------------------

/** Binds what workers ask for, and answers each request from all of them. */
export class EndpointBroker {
  private readonly leases = new Map<string, HttpLease>();
  /** The supervisor binds for its workers: endpoints of its own, as a server's are. */
  private readonly endpoints = new HttpEndpointRegistry();
  private readonly pending = new Map<number, (answer: HttpAnswer) => void>();
  private nextId = 1;

  constructor(private readonly workers: () => ChildProcess[]) {}

  /** Handles a message from a worker; false when it is not for the broker. */
  handle(child: ChildProcess, message: unknown): boolean {
    if (!isMessage(message)) return false;
    if (message.veil === 'http-answer') {
      this.pending.get(message.id)?.(message.answer);
      this.pending.delete(message.id);
      return true;
    }
    if (message.veil !== 'http-open') return false;
    void this.open(message.address, message.paths).then(
      (bound) => child.send({ veil: 'http-opened', id: message.id, bound } satisfies Message),
      (error: Error) => child.send({ veil: 'http-opened', id: message.id, error: error.message } satisfies Message),
    );
    return true;
  }

  private async open(address: HttpAddress, paths: string[]): Promise<string> {
    const key = formatHttpAddress(address);
    let bound = '';
    for (const path of paths) {
      const existing = this.leases.get(`${key} ${path}`);
      if (existing) {
        bound = existing.bound;
        continue;
      }
      const lease = await this.endpoints.open(address, { [path]: () => this.ask(key, path) });
      this.leases.set(`${key} ${path}`, lease);
      bound = lease.bound;
    }
    return bound;
  }

  /** Every worker's answer, combined: metrics merged; otherwise the first one that is not 200. */
  private async ask(key: string, path: string): Promise<HttpAnswer> {
    const workers = this.workers().filter((w) => w.connected);
    if (workers.length === 0) return { status: 503, type: 'text/plain; charset=utf-8', body: 'no worker is running\n' };
    const answers = await Promise.all(workers.map((worker) => this.askOne(worker, key, path)));
    const failed = answers.find((a) => a.status !== 200);
    if (failed) return failed;
    if (EXPOSITION.test(answers[0]!.type)) return { ...answers[0]!, body: mergeExpositions(answers.map((a) => a.body)) };
    return answers[0]!;
  }

  private askOne(worker: ChildProcess, key: string, path: string): Promise<HttpAnswer> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ status: 503, type: 'text/plain; charset=utf-8', body: `worker ${worker.pid} did not answer\n` });
      }, ASK_TIMEOUT_MS);
      this.pending.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      worker.send({ veil: 'http-request', id, key, path } satisfies Message);
    });
  }

  async close(): Promise<void> {
    for (const lease of this.leases.values()) await lease.release();
    this.leases.clear();
  }
}
