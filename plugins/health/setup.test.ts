/** health: its one argument, good and bad, with the place of each mistake. */
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('health', [
  builds('health', { address: { host: '127.0.0.1', port: 8080 } }),
  builds('health 0.0.0.0:8181', { address: { host: '0.0.0.0', port: 8181 } }),
  builds('health 127.0.0.2', { address: { host: '127.0.0.2', port: 8080 } }),
  builds('health [::1]:8181', { address: { host: '::1', port: 8181 } }),
  refused('health :8080', 1, 8, /":8080" has no IP address: write 127\.0\.0\.1:8080 \(loopback\) or 0\.0\.0\.0:8080 \(every interface\)$/),
  refused('health localhost:8080', 1, 8, /"localhost" is not an IP address/),
  refused('health 127.0.0.1:70000', 1, 8, /port 70000 is out of range/),
  refused('health 127.0.0.1:8080 extra', 1, 23, /health takes 0 to 1 arguments, got 2$/),
  refused('health {\nlameduck 5s\n}', 1, 8, /health takes no block$/),
  refused('health\nhealth 127.0.0.1:8081', 2, 1, /health is given twice in this block$/),
]);
