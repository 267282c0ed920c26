/** dnssec: every option, with anchor files read relative to the Corefile, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';
import { supportedAlgorithms } from './crypto.js';
import { nameText } from './names.js';

setupTable(
  'dnssec',
  [
    builds('dnssec', (o) => {
      assert.deepEqual([[...o.anchors.keys()], o.anchorSource, o.negative, o.algorithms, o.maxWork], [['.'], 'built-in root anchors', [], supportedAlgorithms(), 100]);
      assert.deepEqual(o.anchors.get('.').ds.map((ds: { keyTag: number }) => ds.keyTag), [20326, 38696]);
    }),
    builds('dnssec {\ntrust_anchor lab.key anchors/corp.key\ninsecure broken.lab Other.Lab.\nalgorithms ECDSAP256SHA256 15\nmax_work 500\n}', (o) => {
      assert.deepEqual([[...o.anchors.keys()], o.anchorSource, o.negative.map(nameText), o.algorithms, o.maxWork], [['lab.', 'corp.'], 'lab.key anchors/corp.key', ['broken.lab.', 'other.lab.'], [13, 15], 500]);
    }),
    refused('dnssec on', 1, 8, /dnssec takes 0 arguments, got 1$/),
    refused('dnssec {\ntrust_anchor\n}', 2, 1, /trust_anchor takes at least 1 argument, got 0$/),
    refused('dnssec {\ntrust_anchor lab.key missing.key\n}', 2, 22, /cannot read missing\.key: no such file$/),
    refused('dnssec {\ntrust_anchor bad.key\n}', 2, 14, /bad\.key:2: a DS record is "NAME DS KEYTAG ALGORITHM DIGESTTYPE HEXDIGEST"$/),
    refused('dnssec {\ntrust_anchor empty.key\n}', 2, 14, /empty\.key:1: no DS or DNSKEY record in the file$/),
    refused('dnssec {\ntrust_anchor lab.key {\n}\n}', 2, 22, /trust_anchor takes no block$/),
    refused('dnssec {\ninsecure ok.lab a..b\n}', 2, 17, /"a\.\.b" is not a domain name$/),
    refused('dnssec {\ninsecure\n}', 2, 1, /insecure takes at least 1 argument, got 0$/),
    refused('dnssec {\nalgorithms ED25519 RSAMD5\n}', 2, 20, /"RSAMD5" is not an algorithm Veil validates \(.*ED25519.*\)$/),
    refused('dnssec {\nalgorithms 250\n}', 2, 12, /"250" is not an algorithm Veil validates/),
    refused('dnssec {\nmax_work 0\n}', 2, 10, /0 is out of range \(1-100000\)$/),
    refused('dnssec {\nmax_work 10 20\n}', 2, 13, /max_work takes 1 argument, got 2$/),
    refused('dnssec {\nmax_wrok 5\n}', 2, 1, /unknown option "max_wrok" \(did you mean "max_work"\?\)$/),
    refused('dnssec {\nmax_work 5\nmax_work 6\n}', 3, 1, /option "max_work" is given twice$/),
    refused('dnssec\ndnssec', 2, 1, /dnssec is given twice in this block$/),
  ],
  {
    files: {
      'lab.key': 'lab. IN DS 1234 13 2 AABBCCDD\n',
      'anchors/corp.key': `; corp's key\ncorp. 3600 IN DNSKEY 257 3 13 ${Buffer.alloc(64, 7).toString('base64')}\n`,
      'bad.key': '; header\nlab. IN DS 1 2 3\n',
      'empty.key': '; nothing yet\n',
    },
  },
);
