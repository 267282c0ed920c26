/**
 * V8's background threads at a lower priority than the event loop.
 *
 * V8 compiles hot functions with TurboFan on its own worker threads (Node names them
 * "V8Worker"), and marks the heap there too. A compile takes up to tens of milliseconds of CPU,
 * and they come in bunches while traffic warms code up: on two cores shared with other
 * processes, a bunch on each core kept Veil's event loops (and other processes) off the CPU
 * for 15–70 ms: the slowest queries of the latency workloads (docs/benchmarks.md, 2026-12-05
 * from 16:58).
 * With the workers `nice`r than the main thread the scheduler runs the event loop first when
 * both want a core; the compiles run in the time left over, which a DNS server has plenty of,
 * and take the CPU they need when the event loop sleeps. Linux only (threads are tasks under
 * /proc/self/task, and setpriority takes a thread's id); elsewhere nothing changes.
 * `VEIL_V8_WORKER_NICE=0` leaves them as they are.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How much nicer than the process the workers are: 10 gives them ~1/10 of a contended core. */
export const DEFAULT_NICE_STEP = 10;
const MAX_NICE = 19;

/** Raises the nice value of this process's V8 worker threads by `step`; returns how many. */
export function lowerV8WorkerPriority(step = niceStepFromEnv(), taskDir = '/proc/self/task'): number {
  if (step <= 0) return 0;
  let tasks: string[];
  try {
    tasks = readdirSync(taskDir);
  } catch {
    return 0; // not Linux
  }
  let lowered = 0;
  for (const task of tasks) {
    try {
      if (readFileSync(`${taskDir}/${task}/comm`, 'utf8').trim() !== 'V8Worker') continue;
      const tid = Number(task);
      setPriority(tid, Math.min(MAX_NICE, getPriority(tid) + step));
      lowered++;
    } catch {
      // The thread ended meanwhile, or the system refused: it keeps its priority.
    }
  }
  return lowered;
}

function niceStepFromEnv(): number {
  const text = process.env.VEIL_V8_WORKER_NICE;
  if (text === undefined || text === '') return DEFAULT_NICE_STEP;
  const step = Number(text);
  return Number.isInteger(step) && step >= 0 && step <= MAX_NICE ? step : DEFAULT_NICE_STEP;
}
