/** filter: every option, inline and from files, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

/** Each list as [shown, size]. */
const lists = (list: Array<{ shown: string; rules: { size: number } }>) => list.map((l) => [l.shown, l.rules.size]);

setupTable(
  'filter',
  [
    builds('filter {\nblock ads.example *.tracker.test lists/ads.txt\nallow ok.ads.example\nblock_ips 192.0.2.0/24 198.51.100.* lists/ips.txt\nblock_qtype ANY hinfo\nblock_ipv6\nresponse refused\nrefresh 1m\n}', (o) => {
      assert.deepEqual([lists(o.block), lists(o.allow), lists(o.blockIps)], [[['inline', 2], ['lists/ads.txt', 3]], [['inline', 1]], [['inline', 2], ['lists/ips.txt', 2]]]);
      assert.deepEqual([o.blockQtypes, o.blockIpv6, o.response, o.refreshMs], [new Set([255, 13]), true, 'refused', 60_000]);
    }),
    builds('filter {\nblock a.test\nblock b.test\nblock_qtype ANY\nblock_qtype AAAA\n}', (o) => assert.deepEqual([lists(o.block), o.blockQtypes], [[['inline', 1], ['inline', 1]], new Set([255, 28])])),
    builds('filter {\nblock_ipv6\n}', { block: [], blockIpv6: true, response: 'nxdomain', refreshMs: null }),
    builds('filter {\nblock_qtype ANY\nresponse null\n}', { response: 'null' }),
    refused('filter', 1, 1, /nothing to block: add "block FILE\|NAME", "block_ips", "block_qtype" or "block_ipv6"$/),
    refused('filter {\nallow a.test\n}', 1, 1, /nothing to block/),
    refused('filter ads {\nblock a.test\n}', 1, 8, /filter takes 0 arguments, got 1$/),
    refused('filter {\nblock\n}', 2, 1, /block takes at least 1 argument, got 0$/),
    refused('filter {\nblock a.test lists/missing.txt\n}', 2, 14, /cannot read "lists\/missing\.txt": no such file$/),
    refused('filter {\nblock a.test bad$name\n}', 2, 14, /"bad\$name" is not a name or a pattern; and there is no such file$/),
    refused('filter {\nblock =\n}', 2, 7, /"=": = takes a plain name; and there is no such file$/),
    refused('filter {\nblock lists/junk.txt\n}', 2, 7, /"lists\/junk\.txt" holds no name or pattern \(line 2: "not\/a\/name" is not a name or a pattern\)$/),
    refused('filter {\nblock a.test\nallow\n}', 3, 1, /allow takes at least 1 argument, got 0$/),
    refused('filter {\nblock a.test\nallow lists/none.txt\n}', 3, 7, /cannot read "lists\/none\.txt": no such file$/),
    refused('filter {\nblock_ips 10.0.0.0/40\n}', 2, 11, /"10\.0\.0\.0\/40": \/40 is not a prefix length$/),
    refused('filter {\nblock_ips 10.0.0.1 nothing\n}', 2, 20, /cannot read "nothing": no such file$/),
    refused('filter {\nblock_ips lists/junk.txt\n}', 2, 11, /"lists\/junk\.txt" holds no address or range$/),
    refused('filter {\nblock_qtype ANY NOPE\n}', 2, 17, /"NOPE" is not a query type$/),
    refused('filter {\nblock_ipv6 yes\n}', 2, 12, /block_ipv6 takes 0 arguments, got 1$/),
    refused('filter {\nblock_ipv6\nresponse drop\n}', 3, 10, /response is nxdomain, refused, nodata or null, not "drop"$/),
    refused('filter {\nblock_ipv6\nresponse\n}', 3, 1, /response takes 1 argument, got 0$/),
    refused('filter {\nblock_ipv6\nrefresh 500ms\n}', 3, 9, /500ms is below the minimum of 1s$/),
    refused('filter {\nblok a.example\n}', 2, 1, /unknown option "blok" \(did you mean "block"\?\)$/),
    refused('filter {\nblock_ip 10.0.0.1\n}', 2, 1, /unknown option "block_ip" \(did you mean "block_ips"\?\)$/),
    refused('filter {\nblock_ipv6\nresponse null\nresponse refused\n}', 4, 1, /option "response" is given twice$/),
    refused('filter {\nblock_ipv6\n}\nfilter {\nblock a.test\n}', 4, 1, /filter is given twice in this block; put every list in one filter directive$/),
  ],
  {
    files: {
      'lists/ads.txt': '# ads\nads.test\n0.0.0.0 tracker.test localhost metrics.test\n',
      'lists/ips.txt': '203.0.113.0/24\n2001:db8::/32 # documentation\n',
      'lists/junk.txt': '# nothing usable\nnot/a/name\n',
    },
  },
);
