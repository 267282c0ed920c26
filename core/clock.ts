/** The clock service: swapped for a manual one in tests of TTLs, back-off and deadlines. */
import { performance } from 'node:perf_hooks';

/**
 * The longest delay a Node timer takes (a longer one fires after 1 ms): waits are cut to it, and
 * a wait that is not a number to none.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Where one timer serves many deadlines (an upstream socket's or connection's queries), it is set
 * again no sooner than this after it fired: a deadline may be met this late when others fell due
 * just before it, and thousands a millisecond apart cost a sweep each 10 ms, not one each.
 */
export const EXPIRY_SLACK_MS = 10;

export abstract class Clock {
  /** Wall-clock milliseconds since the epoch. */
  abstract now(): number;
  /** Monotonic milliseconds, for durations and deadlines. */
  abstract monotonic(): number;
}

export class SystemClock extends Clock {
  now(): number {
    return Date.now();
  }
  monotonic(): number {
    return performance.now();
  }
}

/** A clock that moves only when told to. */
export class ManualClock extends Clock {
  constructor(
    private wall = 1_700_000_000_000,
    private mono = 0,
  ) {
    super();
  }
  now(): number {
    return this.wall;
  }
  monotonic(): number {
    return this.mono;
  }
  advance(ms: number): void {
    this.wall += ms;
    this.mono += ms;
  }
}
