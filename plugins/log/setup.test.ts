/** log: its destination and every option, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable(
  'log',
  [
    builds('log', { destination: 'stdout', classes: new Set(), format: 'json', clientAddress: 'full', rotation: null, nx: null, blocked: null }),
    builds('log stderr {\nformat ltsv\nclass success denial\nclient_address hash\nnx stdout\nblocked stderr\n}', {
      destination: 'stderr', classes: new Set(['success', 'denial']), format: 'ltsv', clientAddress: 'hash', nx: 'stdout', blocked: 'stderr',
    }),
    builds('log {\nclass error all\nformat tsv\nclient_address none\n}', { classes: new Set(), format: 'tsv', clientAddress: 'none' }),
    builds('log queries.log {\nmax_size 10M\nmax_files 3\nnx nx.log\nblocked blocked.log\n}', (o, { dir }) => {
      assert.deepEqual([o.destination, o.rotation, o.nx, o.blocked], [path.join(dir, 'queries.log'), { maxBytes: 10 * 1024 ** 2, keep: 3 }, path.join(dir, 'nx.log'), path.join(dir, 'blocked.log')]);
    }),
    builds('log queries.log {\nmax_size 4096\nformat text\n}', { rotation: { maxBytes: 4096, keep: 5 }, format: 'text' }),
    refused('log stdout stderr', 1, 12, /log takes 0 to 1 arguments, got 2$/),
    refused('log {\nformat csv\n}', 2, 8, /format is one of json, text, tsv, ltsv, not "csv"$/),
    refused('log {\nformat json {\nx\n}\n}', 2, 13, /format takes no block$/),
    refused('log {\nformat\n}', 2, 1, /format takes 1 argument, got 0$/),
    refused('log {\nclass success failure\n}', 2, 15, /unknown class "failure" \(one of all, success, denial, error\)$/),
    refused('log {\nclass all success denial error all\n}', 2, 32, /class takes 1 to 4 arguments, got 5$/),
    refused('log {\nclient_address partial\n}', 2, 16, /client_address is one of full, hash, none, not "partial"$/),
    refused('log {\nmax_size 10M\n}', 1, 1, /max_size rotates a file: give the log a FILE, not stdout$/),
    refused('log q.log {\nmax_size 10\n}', 2, 10, /10 is outside 4K to 64G$/),
    refused('log q.log {\nmax_size 65G\n}', 2, 10, /65G is outside 4K to 64G$/),
    refused('log q.log {\nmax_size ten\n}', 2, 10, /"ten" is not a size \(examples: 512K, 10M, 1G\)$/),
    refused('log q.log {\nmax_size 10M\nmax_files 0\n}', 3, 11, /0 is out of range \(1-100\)$/),
    refused('log q.log {\nmax_files 3\n}', 2, 11, /max_files says how many rotated files to keep: add max_size$/),
    refused('log {\nnx\n}', 2, 1, /nx takes 1 argument, got 0$/),
    refused('log {\nblocked a.log b.log\n}', 2, 15, /blocked takes 1 argument, got 2$/),
    refused('log {\nformats json\n}', 2, 1, /unknown option "formats" \(did you mean "format"\?\)$/),
    refused('log {\nformat json\nformat text\n}', 3, 1, /option "format" is given twice$/),
    refused('log\nlog stderr', 2, 1, /log is given twice in this block$/),
  ],
  { files: {} },
);
