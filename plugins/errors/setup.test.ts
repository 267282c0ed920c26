/** errors: its destination and its option, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable(
  'errors',
  [
    builds('errors', { destination: 'stderr', consolidate: [] }),
    builds('errors stdout', { destination: 'stdout' }),
    builds('errors logs/errors.log', (o, { dir }) => assert.equal(o.destination, path.join(dir, 'logs/errors.log'))),
    builds('errors {\nconsolidate 5m ^plugin/forward:\nconsolidate 1s "timed out$"\n}', {
      consolidate: [
        { periodMs: 300_000, pattern: /^plugin\/forward:/, text: '^plugin/forward:' },
        { periodMs: 1000, pattern: /timed out$/, text: 'timed out$' },
      ],
    }),
    refused('errors stdout stderr', 1, 15, /errors takes 0 to 1 arguments, got 2$/),
    refused('errors {\nconsolidate 5m\n}', 2, 1, /consolidate takes 2 arguments, got 1$/),
    refused('errors {\nconsolidate 5m a b\n}', 2, 18, /consolidate takes 2 arguments, got 3$/),
    refused('errors {\nconsolidate 500ms timeout\n}', 2, 13, /500ms is below the minimum of 1s$/),
    refused('errors {\nconsolidate 25h timeout\n}', 2, 13, /25h is above the maximum of 24h$/),
    refused('errors {\nconsolidate often timeout\n}', 2, 13, /"often" is not a duration/),
    refused('errors {\nconsolidate 5m (unclosed\n}', 2, 16, /invalid regular expression: .*Unterminated group/),
    refused('errors {\nconsolidat 5m timeout\n}', 2, 1, /unknown option "consolidat" \(did you mean "consolidate"\?\)$/),
    refused('errors\nerrors stdout', 2, 1, /errors is given twice in this block$/),
  ],
  { files: {} },
);
