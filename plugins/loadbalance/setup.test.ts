/** loadbalance: every policy and option, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('loadbalance', [
  builds('loadbalance', { policy: 'round_robin', health: { maxFails: 2, failTimeoutMs: 5000, healthCheckMs: null }, shuffleAnswers: false, fallback: [] }),
  ...['random', 'least_connections', 'availability', 'failover', 'p2'].map((policy) => builds(`loadbalance ${policy}`, { policy })),
  builds('loadbalance fastest {\nmax_fails 0\nfail_timeout 2s\nhealth_check 1s\nshuffle_answers\nfallback b c\nfallback d\n}', (o) => {
    assert.deepEqual([o.policy, o.health, o.shuffleAnswers, o.fallback.map((t: { text: string }) => t.text)], ['fastest', { maxFails: 0, failTimeoutMs: 2000, healthCheckMs: 1000 }, true, ['b', 'c', 'd']]);
  }),
  refused('loadbalance round_robbin', 1, 13, /unknown policy "round_robbin" \(did you mean "round_robin"\?\); policies: round_robin, random, least_connections, availability, failover, fastest, p2$/),
  refused('loadbalance p2 random', 1, 16, /loadbalance takes 0 to 1 arguments, got 2$/),
  refused('loadbalance p2 {\nmax_fail 3\n}', 2, 1, /unknown option "max_fail" \(did you mean "max_fails"\?\)$/),
  refused('loadbalance {\nmax_fails 1001\n}', 2, 11, /1001 is out of range \(0-1000\)$/),
  refused('loadbalance {\nmax_fails\n}', 2, 1, /max_fails takes 1 argument, got 0$/),
  refused('loadbalance {\nfail_timeout 50ms\n}', 2, 14, /50ms is below the minimum of 100ms$/),
  refused('loadbalance {\nhealth_check 10ms\n}', 2, 14, /10ms is below the minimum of 100ms$/),
  refused('loadbalance {\nhealth_check 2h\n}', 2, 14, /2h is above the maximum of 1h$/),
  refused('loadbalance {\nshuffle_answers yes\n}', 2, 17, /shuffle_answers takes 0 arguments, got 1$/),
  refused('loadbalance {\nfallback\n}', 2, 1, /fallback takes at least 1 argument, got 0$/),
  refused('loadbalance {\nfallback a {\n}\n}', 2, 12, /fallback takes no block$/),
  refused('loadbalance {\nmax_fails 1\nmax_fails 2\n}', 3, 1, /option "max_fails" is given twice$/),
  refused('loadbalance\nloadbalance random', 2, 1, /loadbalance is given twice in this block; a block has one policy$/),
]);
