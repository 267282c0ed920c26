/**
 * Where an exchange's answer or failure goes, once: the two functions of the one promise its
 * caller made, or the caller's own handling. A transport that settles an Outcome instead of
 * making a promise of its own saves the caller a `then` a query (a promise, a microtask and the
 * lookup of `then` down Buffer's prototypes when it resolves; about 0.13 µs, measured): the
 * HTTPS pool (lib/https-client/connections.ts) and the datagram sockets (core/upstream/datagram.ts)
 * take one.
 */
export interface Outcome<T = Buffer> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** A promise settled through the Outcome `send` is given: for callers that want a promise after all. */
export function promised<T = Buffer>(send: (outcome: Outcome<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => send({ resolve, reject }));
}
