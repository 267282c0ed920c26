/**
 * Which rounds of a comparison to keep when the host is busy. This machine is a virtual one on a
 * shared host: at times the hypervisor runs other machines for a fifth or more of the cores' time
 * (/proc/stat's `steal`), and a round measured then shows the host, not Veil or its peer (a p99 of
 * 20 ms where 0.4 is usual, half the usual QPS). A pair of rounds (Veil's and the peer's) in
 * which the host took more than `BUSY_HOST_SHARE` of either side's time is run again, up to as
 * many extra pairs as were asked for, and the quietest pairs are kept: both sides of a pair are
 * kept or dropped together, so the two sides are always measured side by side.
 */

/** A round the host took more than this share of (0 to 1) is run again. */
export const BUSY_HOST_SHARE = 0.05;

/** What a pair of rounds needs for the choice: the share of each side's time the host took. */
export interface PairShares {
  veil: number | null | undefined;
  peer: number | null | undefined;
}

/** The larger share the host took of either side (unknown counts as quiet: no steal counter). */
function hostShare(pair: PairShares): number {
  return Math.max(pair.veil ?? 0, pair.peer ?? 0);
}

/** Whether another pair should run: fewer than `wanted` were quiet, and the extra pairs are not used up. */
export function needsAnotherPair(pairs: readonly PairShares[], wanted: number): boolean {
  const quiet = pairs.filter((pair) => hostShare(pair) <= BUSY_HOST_SHARE).length;
  return quiet < wanted && pairs.length < 2 * wanted;
}

/** The indices of the `wanted` quietest pairs, in the order they ran. */
export function quietestPairs(pairs: readonly PairShares[], wanted: number): number[] {
  return pairs
    .map((pair, index) => ({ index, share: hostShare(pair) }))
    .sort((a, b) => a.share - b.share || a.index - b.index)
    .slice(0, wanted)
    .map((pair) => pair.index)
    .sort((a, b) => a - b);
}
