/**
 * Does a DNSCrypt server take fragmented UDP? Through a relay it must: the relay's hop to the
 * server is UDP, and large queries (the ones that let large answers come back, since a server
 * never answers with more than it was sent) are fragmented on the way. Some servers sit behind
 * firewalls that drop IP fragments; through a relay their large answers would never arrive.
 *
 * The probe follows dnscrypt-proxy's rule: certificate queries of two sizes race, a large one
 * (3200 bytes on the wire, fragmented on any usual path) at 0, 200 and 400 ms and a small one
 * (480 bytes) at 250, 500 and 750 ms. The first answer wins; when it is an answer to a small
 * query, the server is taken to drop fragments.
 */

/** Bytes on the wire of each probe, relay header included (the relay strips it). */
export const LARGE_PROBE_SIZE = 3200;
export const SMALL_PROBE_SIZE = 480;

export interface ProbeStep {
  atMs: number;
  size: number;
}

export const PROBE_SCHEDULE: readonly ProbeStep[] = [
  { atMs: 0, size: LARGE_PROBE_SIZE },
  { atMs: 200, size: LARGE_PROBE_SIZE },
  { atMs: 250, size: SMALL_PROBE_SIZE },
  { atMs: 400, size: LARGE_PROBE_SIZE },
  { atMs: 500, size: SMALL_PROBE_SIZE },
  { atMs: 750, size: SMALL_PROBE_SIZE },
];

export interface ProbeResult<T> {
  value: T;
  /** Only a small query was answered. */
  fragmentsBlocked: boolean;
}

/**
 * Runs the schedule: `send(size)` sends one certificate query of that many bytes on the wire
 * and settles with its answer (each call its own query ID, its own timeout). Resolves with the
 * first answer; rejects with the last failure when every query failed.
 */
export function probeFragments<T>(send: (size: number) => Promise<T>, schedule: readonly ProbeStep[] = PROBE_SCHEDULE): Promise<ProbeResult<T>> {
  return new Promise((resolve, reject) => {
    const timers: NodeJS.Timeout[] = [];
    let settled = false;
    let failed = 0;
    for (const step of schedule) {
      const timer = setTimeout(() => {
        send(step.size).then(
          (value) => {
            if (settled) return;
            settled = true;
            for (const t of timers) clearTimeout(t);
            resolve({ value, fragmentsBlocked: step.size < LARGE_PROBE_SIZE });
          },
          (err: unknown) => {
            if (settled || ++failed < schedule.length) return;
            settled = true;
            reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      }, step.atMs);
      timers.push(timer);
    }
  });
}
