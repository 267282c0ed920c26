/** listen: URLs and the udp and tcp options, good and bad, with the place of each mistake (tls: dot's table). */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

interface Request {
  endpoint: { text: string };
  options: unknown;
}
/** Each listener's address and options, in the order written. */
const listeners = (...expected: Array<[string, unknown]>) => (requests: Request[]) =>
  assert.deepEqual(requests.map((r) => [r.endpoint.text, r.options]), expected);

setupTable('listen', [
  builds('listen udp://127.0.0.1:5353', listeners(['udp://127.0.0.1:5353', { maxInflight: 10_000 }])),
  builds('listen tcp://127.0.0.1', listeners(['tcp://127.0.0.1:53', { idleTimeoutMs: 10_000, maxConnections: 1000, pipeline: 100 }])),
  builds('listen udp://[::1]:5353 tcp://[::1]:5353 {\nidle_timeout 30s\nmax_connections 10\npipeline 5\nmax_inflight 50\n}\nlisten udp://127.0.0.2', listeners(
    ['udp://[::1]:5353', { maxInflight: 50 }],
    ['tcp://[::1]:5353', { idleTimeoutMs: 30_000, maxConnections: 10, pipeline: 5 }],
    ['udp://127.0.0.2:53', { maxInflight: 10_000 }],
  )),
  refused('listen', 1, 1, /listen takes at least 1 argument, got 0$/),
  refused('listen 127.0.0.1:53', 1, 8, /"127\.0\.0\.1:53" is not a listener URL \(examples: udp:\/\/127\.0\.0\.1:53, tcp:\/\/\[::1\]:53\)$/),
  refused('listen ud://127.0.0.1', 1, 8, /unknown listener scheme "ud" \(did you mean "udp"\?\); known: .*\budp\b/),
  refused('listen udp://localhost:53', 1, 8, /"localhost" is not an IP address/),
  refused('listen udp://::1', 1, 8, /IPv6 addresses go in brackets: udp:\/\/\[::1\]:PORT$/),
  refused('listen tcp://127.0.0.1:70000', 1, 8, /port 70000 is out of range \(0-65535\)$/),
  refused('listen udp://127.0.0.1 udp://127.0.0.1:53', 1, 24, /udp:\/\/127\.0\.0\.1:53 is listed twice$/),
  refused('listen udp://127.0.0.1:53\nlisten udp://127.0.0.1:53', 2, 8, /udp:\/\/127\.0\.0\.1:53 is listed twice$/),
  refused('listen udp://127.0.0.1 {\nidle_timeout 5s\n}', 2, 1, /unknown option "idle_timeout" for udp$/),
  refused('listen tcp://127.0.0.1 {\npipelin 5\n}', 2, 1, /unknown option "pipelin" for tcp \(did you mean "pipeline"\?\)$/),
  refused('listen tcp://127.0.0.1 {\npipeline 5\npipeline 6\n}', 3, 1, /option "pipeline" is given twice$/),
  refused('listen tcp://127.0.0.1 {\nidle_timeout 50ms\n}', 2, 14, /50ms is below the minimum of 100ms$/),
  refused('listen tcp://127.0.0.1 {\nidle_timeout 2h\n}', 2, 14, /2h is above the maximum of 1h$/),
  refused('listen tcp://127.0.0.1 {\nmax_connections 0\n}', 2, 17, /0 is out of range \(1-1000000\)$/),
  refused('listen tcp://127.0.0.1 {\npipeline 70000\n}', 2, 10, /70000 is out of range \(1-65535\)$/),
  refused('listen tcp://127.0.0.1 {\npipeline\n}', 2, 1, /pipeline takes 1 argument, got 0$/),
  refused('listen udp://127.0.0.1 {\nmax_inflight 0\n}', 2, 14, /0 is out of range \(1-10000000\)$/),
  refused('listen udp://127.0.0.1 {\nmax_inflight 5 6\n}', 2, 16, /max_inflight takes 1 argument, got 2$/),
]);
