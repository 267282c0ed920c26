/** ratelimit: its arguments and every option, good and bad, with the place of each mistake. */
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('ratelimit', [
  builds('ratelimit 50', { perSecond: 50, burst: 50, ipv4Prefix: 32, ipv6Prefix: 56, maxClients: 100_000 }),
  builds('ratelimit 50 200 {\nipv4_prefix 24\nipv6_prefix 48\nmax_clients 1000\n}', { perSecond: 50, burst: 200, ipv4Prefix: 24, ipv6Prefix: 48, maxClients: 1000 }),
  refused('ratelimit', 1, 1, /ratelimit takes 1 to 2 arguments, got 0$/),
  refused('ratelimit 1 2 3', 1, 15, /ratelimit takes 1 to 2 arguments, got 3$/),
  refused('ratelimit fast', 1, 11, /"fast" is not a whole number$/),
  refused('ratelimit 0', 1, 11, /0 is out of range \(1-1000000\)$/),
  refused('ratelimit 10 0', 1, 14, /0 is out of range \(1-10000000\)$/),
  refused('ratelimit 10 {\nipv4_prefix 40\n}', 2, 13, /40 is out of range \(8-32\)$/),
  refused('ratelimit 10 {\nipv4_prefix\n}', 2, 1, /ipv4_prefix takes 1 argument, got 0$/),
  refused('ratelimit 10 {\nipv6_prefix 8\n}', 2, 13, /8 is out of range \(16-128\)$/),
  refused('ratelimit 10 {\nipv6_prefix 48 {\n}\n}', 2, 16, /ipv6_prefix takes no block$/),
  refused('ratelimit 10 {\nmax_clients 0\n}', 2, 13, /0 is out of range \(1-10000000\)$/),
  refused('ratelimit 10 {\nmax_clients 10 20\n}', 2, 16, /max_clients takes 1 argument, got 2$/),
  refused('ratelimit 10 {\nmax_client 10\n}', 2, 1, /unknown option "max_client" \(did you mean "max_clients"\?\)$/),
  refused('ratelimit 10 {\nmax_clients 10\nmax_clients 20\n}', 3, 1, /option "max_clients" is given twice$/),
  refused('ratelimit 10\nratelimit 20', 2, 1, /ratelimit is given twice in this block$/),
]);
