/** sources: lists and every option of a list, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

const KEY = 'RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3';
const URL_TEXT = 'https://lists.test/v3/public-resolvers.md';
/** `sources` with a signed list (line 2) whose block holds `extra` on line 5. */
const signed = (extra: string) => `sources {\nlist pub ${URL_TEXT} {\nminisign_key ${KEY}\ncache pub.md\n${extra}\n}\n}`;

setupTable(
  'sources',
  [
    builds('sources {\nlist home lists/example.md\n}', (lists, { dir }) => {
      assert.deepEqual(lists.map((l: any) => [l.name, l.url, l.file, l.key, l.cache, l.refreshMs, l.prefix, l.bootstrap, l.ca]), [
        ['home', null, path.join(dir, 'lists/example.md'), null, null, 72 * 3_600_000, '', [], null],
      ]);
    }),
    builds(signed('refresh 24h\nprefix pub-\nbootstrap 192.0.2.1 2001:db8::1\nca ca.pem'), ([list], { dir }) => {
      assert.deepEqual([list.url.href, list.key.keyId.toString('hex'), list.cache, list.refreshMs, list.prefix, list.bootstrap, String(list.ca)], [
        URL_TEXT, '1fe8b442180f62e7', path.join(dir, 'pub.md'), 24 * 3_600_000, 'pub-', ['192.0.2.1', '2001:db8::1'], 'trust anchors\n',
      ]);
    }),
    builds('sources {\nlist a a.md\n}\nsources {\nlist b b.md\n}', (lists) => assert.deepEqual(lists.map((l: any) => l.name), ['a', 'b'])),
    refused('sources', 1, 1, /no lists: add "list NAME URL\|FILE \{ … \}" lines$/),
    refused('sources lists {\nlist a a.md\n}', 1, 9, /sources takes 0 arguments, got 1$/),
    refused('sources {\nlist a\n}', 2, 1, /list takes 2 arguments, got 1$/),
    refused('sources {\nlist a a.md b.md\n}', 2, 13, /list takes 2 arguments, got 3$/),
    refused('sources {\nlist a a.md\nlist a b.md\n}', 3, 6, /two lists are named "a"$/),
    refused('sources {\nlists a a.md\n}', 2, 1, /unknown option "lists" \(did you mean "list"\?\)$/),
    refused('sources {\nlist a http://lists.test/a.md\n}', 2, 8, /lists are fetched over https:\/\/ only$/),
    refused('sources {\nlist a https://\n}', 2, 8, /"https:\/\/" is not a valid URL$/),
    refused(`sources {\nlist a ${URL_TEXT} {\ncache a.md\n}\n}`, 2, 8, /a list fetched from a URL needs minisign_key: it is used only when its signature verifies$/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key ${KEY}\n}\n}`, 2, 8, /a list fetched from a URL needs a cache file/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key RWQnope\n}\n}`, 3, 14, /not a minisign Ed25519 public key \(expected 42 bytes starting with "Ed"\)$/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key RW!Q\n}\n}`, 3, 14, /minisign public key is not base64$/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key\n}\n}`, 3, 1, /minisign_key takes 1 argument, got 0$/),
    refused(signed('refresh 30s'), 5, 9, /30s is below the minimum of 1m$/),
    refused(signed('refresh'), 5, 1, /refresh takes 1 argument, got 0$/),
    refused(signed('prefix a- b-'), 5, 11, /prefix takes 1 argument, got 2$/),
    refused(signed('bootstrap 192.0.2.1 dns.google'), 5, 21, /bootstrap takes IP addresses; "dns\.google" is not one$/),
    refused(signed('bootstrap'), 5, 1, /bootstrap takes at least 1 argument, got 0$/),
    refused(signed('ca missing.pem'), 5, 4, /cannot read missing\.pem: ENOENT/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key ${KEY}\ncache\n}\n}`, 4, 1, /cache takes 1 argument, got 0$/),
    refused(`sources {\nlist a ${URL_TEXT} {\nminisign_key ${KEY}\ncache a.md {\n}\n}\n}`, 4, 12, /cache takes no block$/),
    refused(signed('refesh 1h'), 5, 1, /unknown option "refesh" \(did you mean "refresh"\?\)$/),
    refused(signed('cache other.md'), 5, 1, /option "cache" is given twice$/),
  ],
  { files: { 'ca.pem': 'trust anchors\n' } },
);
