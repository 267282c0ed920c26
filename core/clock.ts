/** The clock service: swapped for a manual one in tests of TTLs, back-off and deadlines. */
import { performance } from 'node:perf_hooks';

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
