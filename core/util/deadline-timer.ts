/**
 * One Node timer for the deadlines of many waiting things (an upstream socket's or connection's
 * queries), not one each: a Node timer is an object, an insertion in a list and a removal, 4–6%
 * of a forwarded query's CPU (docs/benchmarks.md). The timer is set for the earliest deadline it
 * was told of and moved earlier when a sooner one comes; when one of them ends otherwise (an
 * answer), it is left alone. When it fires, the owner fails what is due and says which deadline
 * is the earliest left, and the timer is set for that, but no sooner than EXPIRY_SLACK_MS later:
 * a firing looks at everything waiting, and thousands of deadlines a millisecond apart (a flood
 * to a silent server) must not each cost a look at all the others.
 *
 * Unreferenced: what waits is kept alive by its socket, and the owner clears the timer when it
 * closes.
 */
import { performance } from 'node:perf_hooks';

/** The longest delay a Node timer takes (a longer one fires after 1 ms). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The least time between two firings: a deadline may be met this late when others fell due just before it. */
export const EXPIRY_SLACK_MS = 10;

/** A wait in milliseconds as a timer can keep it: cut to MAX_TIMER_MS, and to none when it is no number or below zero. */
export function timerWait(ms: number): number {
  return ms >= 0 ? Math.min(ms, MAX_TIMER_MS) : 0;
}

export class DeadlineTimer {
  private timer: NodeJS.Timeout | null = null;
  /** The deadline the timer is set for; Infinity when none is. */
  private at = Infinity;

  /**
   * `expire(now)` fails what is due by `now` (a Node timer may fire up to a millisecond before
   * performance.now() reaches its deadline: what falls due within that millisecond is due) and
   * returns the earliest deadline left, or Infinity for none.
   */
  constructor(private readonly expire: (now: number) => number) {}

  /** True while the timer is set. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Something new waits until `deadline` (performance.now() time); `now` is the clock as just read. */
  add(deadline: number, now: number): void {
    if (deadline < this.at) this.set(deadline, now);
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.at = Infinity;
  }

  private set(at: number, now: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(this.fired, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(at - now)))).unref();
  }

  private readonly fired = (): void => {
    this.timer = null;
    this.at = Infinity;
    const now = performance.now();
    const next = this.expire(now);
    // (Something added from inside `expire` may have set the timer already, for itself.)
    if (next < this.at) this.set(Math.max(next, now + EXPIRY_SLACK_MS), now);
  };
}
