/** path: its one option, good and bad, with the place of each mistake. */
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('path', [
  builds('path', { canaryZone: 'canary.veil.test.' }),
  builds('path {\ncanary Canary.Example\n}', { canaryZone: 'canary.example.' }),
  refused('path on', 1, 6, /path takes 0 arguments, got 1$/),
  refused('path {\ncanary .\n}', 2, 8, /the canary zone cannot be the root: every name would be a canary$/),
  refused('path {\ncanary a..example\n}', 2, 8, /"a\.\.example" is not a domain name: empty label/),
  refused('path {\ncanary\n}', 2, 1, /canary takes 1 argument, got 0$/),
  refused('path {\ncanary a.test b.test\n}', 2, 15, /canary takes 1 argument, got 2$/),
  refused('path {\ncanary a.test {\n}\n}', 2, 15, /canary takes no block$/),
  refused('path {\ncanry a.test\n}', 2, 1, /unknown option "canry" \(did you mean "canary"\?\)$/),
  refused('path {\ncanary a.test\ncanary b.test\n}', 3, 1, /option "canary" is given twice$/),
  refused('path\npath', 2, 1, /path is given twice in this block$/),
]);
