/** hosts: its file, entries and every option, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

/** The entries as [address, names…]. */
const entries = (list: Array<{ address: string; names: string[] }>) => list.map((e) => [e.address, ...e.names]);

setupTable(
  'hosts',
  [
    builds('hosts {\n192.0.2.1 a.test b.test\n2001:db8::1 a.test\nfe80::1%eth0 link.test\n}', (o) => {
      assert.deepEqual(entries(o.inline), [['192.0.2.1', 'a.test', 'b.test'], ['2001:db8::1', 'a.test'], ['fe80::1%eth0', 'link.test']]);
      assert.deepEqual([o.file, o.ttl, o.reloadMs, o.reverse], [null, 3600, 5000, true]);
    }),
    builds('hosts etc/hosts {\nttl 60\nreload 0s\nno_reverse\n}', (o, { dir }) => {
      assert.deepEqual([o.file.path, o.file.shown, entries(o.file.entries), o.file.skipped], [path.join(dir, 'etc/hosts'), 'etc/hosts', [['192.0.2.7', 'router.lan']], 1]);
      assert.deepEqual([o.inline, o.ttl, o.reloadMs, o.reverse], [[], 60, 0, false]);
    }),
    builds('hosts etc/hosts {\n192.0.2.8 nas.lan\nreload 1m\n}', (o) => assert.deepEqual([entries(o.inline), o.reloadMs], [[['192.0.2.8', 'nas.lan']], 60_000])),
    refused('hosts', 1, 1, /no entries: give a hosts file or lines "IP NAME…" in a block$/),
    refused('hosts {\nttl 60\n}', 1, 1, /no entries/),
    refused('hosts etc/hosts more', 1, 17, /hosts takes 0 to 1 arguments, got 2$/),
    refused('hosts missing/hosts', 1, 7, /cannot read missing\/hosts: no such file$/),
    refused('hosts {\n192.0.2.1\n}', 2, 1, /no name after 192\.0\.2\.1$/),
    refused('hosts {\n192.0.2.1 ok.test a..test\n}', 2, 19, /"a\.\.test" is not a valid name: empty label/),
    refused('hosts {\n192.0.2.300 a.test\n}', 2, 1, /"192\.0\.2\.300" is not an IP address$/),
    refused('hosts {\n192.0.2.1 a.test\nttl 2147483648\n}', 3, 5, /2147483648 is out of range \(0-2147483647\)$/),
    refused('hosts {\n192.0.2.1 a.test\nttl\n}', 3, 1, /ttl takes 1 argument, got 0$/),
    refused('hosts {\n192.0.2.1 a.test\nreload often\n}', 3, 8, /"often" is not a duration/),
    refused('hosts {\n192.0.2.1 a.test\nno_reverse yes\n}', 3, 12, /no_reverse takes 0 arguments, got 1$/),
    refused('hosts {\n192.0.2.1 a.test\ntll 60\n}', 3, 1, /"tll" is neither an IP address starting an entry nor an option \(ttl, reload, no_reverse\) \(did you mean "ttl"\?\)$/),
    refused('hosts {\n192.0.2.1 a.test\nwhatever 60\n}', 3, 1, /"whatever" is neither an IP address starting an entry nor an option \(ttl, reload, no_reverse\)$/),
    refused('hosts {\n192.0.2.1 a.test\nttl 60 {\n}\n}', 3, 8, /ttl takes no block$/),
    refused('hosts {\n192.0.2.1 a.test\nttl 60\nttl 61\n}', 4, 1, /option "ttl" is given twice$/),
    refused('hosts etc/hosts\nhosts {\n192.0.2.1 a.test\n}', 2, 1, /hosts is given twice in this block; put every entry in one hosts directive$/),
  ],
  { files: { 'etc/hosts': '# the router\n192.0.2.7 router.lan\nnot-an-address x\n' } },
);
