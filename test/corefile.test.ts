import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { ConfigFile, Directive } from '../core/config/ast.js';
import { parseCorefile, parseCorefileText } from '../core/config/corefile.js';
import { parseJsoncText } from '../core/config/jsonc.js';
import { parseZoneKey } from '../core/config/zones.js';
import { ConfigError } from '../core/errors.js';
import { expectConfigError } from './helpers/plugins.js';

/** A compact view of a parsed config: blocks as [keys, directives as nested arrays]. */
function shape(config: ConfigFile): unknown {
  const directive = (d: Directive): unknown => (d.block ? [d.name.text, ...d.args.map((a) => a.text), d.block.map(directive)] : [d.name.text, ...d.args.map((a) => a.text)]);
  return config.blocks.map((b) => [b.keys.map((k) => k.text), b.directives.map(directive)]);
}

function parse(text: string, env: Record<string, string> = {}): unknown {
  return shape(parseCorefileText(text, 'Corefile', { env }));
}

describe('Corefile syntax', () => {
  const cases: Array<[string, string, unknown]> = [
    ['one block, directives with args', '. {\n  log\n  forward . 127.0.0.1\n}\n', [[['.'], [['log'], ['forward', '.', '127.0.0.1']]]]],
    ['several keys, commas allowed', 'a.test, b.test:53 dns://c.test {\n  log\n}', [[['a.test', 'b.test:53', 'dns://c.test'], [['log']]]]],
    ['comments anywhere, # inside a token is not one', '# top\n. { # after brace\n  hosts a#b # trailing\n}', [[['.'], [['hosts', 'a#b']]]]],
    ['quoted strings keep spaces, braces and escapes', '. {\n  x "a b" "{" "say \\"hi\\"" "c:\\\\d"\n}', [[['.'], [['x', 'a b', '{', 'say "hi"', 'c:\\d']]]]],
    [
      'nested blocks at any depth',
      '. {\n  dot {\n    server a tls://1.1.1.1 {\n      server_name x\n    }\n  }\n}',
      [[['.'], [['dot', [['server', 'a', 'tls://1.1.1.1', [['server_name', 'x']]]]]]]],
    ],
    ['a block on one line', '. { hosts { 192.0.2.1 a.test } }', [[['.'], [['hosts', [['192.0.2.1', 'a.test']]]]]]],
    ['two blocks', '. {\n log\n}\nveil.test {\n errors\n}', [[['.'], [['log']]], [['veil.test'], [['errors']]]]],
    ['CRLF line ends and tabs', '.\t{\r\n\tlog\r\n}\r\n', [[['.'], [['log']]]]],
    ['an empty block', '. {\n}', [[['.'], []]]],
  ];
  for (const [name, text, expected] of cases) {
    it(name, () => assert.deepEqual(parse(text), expected));
  }

  it('records line and column of every token', () => {
    const config = parseCorefileText('. {\n    forward . 127.0.0.1\n}', 'Corefile');
    const d = config.blocks[0]!.directives[0]!;
    assert.deepEqual([d.name.line, d.name.column, d.args[1]!.line, d.args[1]!.column], [2, 5, 2, 15]);
  });
});

describe('environment variables', () => {
  it('replaces {$NAME} inside tokens and quoted strings', () => {
    assert.deepEqual(parse('. {\n  listen udp://{$ADDR}:53 "x {$ADDR} y"\n}', { ADDR: '127.0.0.9' }), [[['.'], [['listen', 'udp://127.0.0.9:53', 'x 127.0.0.9 y']]]]);
  });
  it('takes {$NAME:default} when unset', () => {
    assert.deepEqual(parse('. {\n  cache {$SIZE:100}\n}'), [[['.'], [['cache', '100']]]]);
  });
  it('fails on an unset variable, pointing at the token', async () => {
    await expectConfigError('. {\n  tls {$VEIL_TEST_UNSET_CERT}\n}', 2, 7, /VEIL_TEST_UNSET_CERT is not set/);
  });
});

describe('snippets and imports', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-corefile-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };

  it('imports a snippet wherever it is used, with arguments', () => {
    const text = '(common) {\n  log\n  errors {args[0]}\n}\n. {\n  import common err.log\n  hosts {\n    import common x\n  }\n}';
    assert.deepEqual(parse(text), [[['.'], [['log'], ['errors', 'err.log'], ['hosts', [['log'], ['errors', 'x']]]]]]);
  });

  it('imports files relative to the importing file, and globs', () => {
    write('a.conf', 'log\n');
    write('b.conf', 'errors\n');
    write('blocks.corefile', 'extra.test {\n  log\n}\n');
    const main = write('Corefile', '. {\n  import *.conf\n}\nimport blocks.corefile\n');
    assert.deepEqual(shape(parseCorefile(main)), [[['.'], [['log'], ['errors']]], [['extra.test'], [['log']]]]);
  });

  it('keeps the imported file and its lines in error locations', () => {
    write('bad.conf', 'log\n  forward {\n');
    const main = write('Corefile2', '. {\n  import bad.conf\n}\n');
    assert.throws(() => parseCorefile(main), (err: ConfigError) => /bad\.conf:2:11: missing "}"/.test(err.message));
  });

  it('detects import cycles', () => {
    write('loop1.conf', 'import loop2.conf\n');
    write('loop2.conf', 'import loop1.conf\n');
    const main = write('Corefile3', '. {\n  import loop1.conf\n}\n');
    assert.throws(() => parseCorefile(main), /import cycle/);
  });

  it('detects a snippet importing itself', async () => {
    await expectConfigError('(a) {\n  import a\n}\n. {\n  import a\n}', 2, 10, /import cycle/);
  });

  it('fails on a missing file, and a snippet argument that was not passed', async () => {
    await expectConfigError('. {\n  import nothing-here.conf\n}', 2, 10, /no snippet named "nothing-here.conf" and no file/);
    await expectConfigError('(s) {\n  log {args[1]}\n}\n. {\n  import s one\n}', 5, 10, /passes 1 argument/);
  });

  it('a glob matching nothing imports nothing', () => {
    assert.deepEqual(parse('. {\n  import no-such-dir/*.conf\n}'), [[['.'], []]]);
  });
});

describe('syntax errors name file:line:column', () => {
  it('missing } points at the brace left open', async () => {
    await expectConfigError('. {\n  forward {\n    server a udp://1.1.1.1\n}', 1, 3, /missing "}"/);
  });
  it('unexpected }', async () => {
    await expectConfigError('. {\n  log\n}\n}', 4, 1, /unexpected "}"/);
  });
  it('{ on its own line', async () => {
    await expectConfigError('.\n{\n  log\n}', 2, 1, /same line/);
  });
  it('a block without braces', async () => {
    await expectConfigError('.\n  log\n', 1, 1, /expected a server block/);
  });
  it('unterminated quote', async () => {
    await expectConfigError('. {\n  x "abc\n}', 2, 5, /unterminated/);
  });
  it('a snippet defined twice', async () => {
    await expectConfigError('(a) {\n}\n(a) {\n}', 3, 1, /defined twice/);
  });
});

describe('server block keys', () => {
  const key = (text: string) => parseZoneKey({ text, file: 'Corefile', line: 1, column: 1, quoted: false, endLine: 1 });
  it('parses zone and port', () => {
    assert.deepEqual(key('.'), { zone: '.', port: null, text: '.' });
    assert.deepEqual(key('dns://Example.ORG:1053'), { zone: 'example.org.', port: 1053, text: 'dns://Example.ORG:1053' });
    assert.deepEqual(key(':5353'), { zone: '.', port: 5353, text: ':5353' });
  });
  it('turns CIDRs into reverse zones', () => {
    assert.equal(key('10.0.0.0/8').zone, '10.in-addr.arpa.');
    assert.equal(key('192.168.1.0/24').zone, '1.168.192.in-addr.arpa.');
    assert.equal(key('2001:db8::/32').zone, '8.b.d.0.1.0.0.2.ip6.arpa.');
  });
  it('refuses other schemes with a hint, bad ports and bad names', () => {
    assert.throws(() => key('tls://example.org'), /listen tls:\/\//);
    assert.throws(() => key('example.org:99999'), /out of range/);
    assert.throws(() => key('exa mple!.org'), /invalid character/);
    assert.throws(() => key('10.0.0.0/12'), /prefix must be/);
  });
});

describe('JSONC form', () => {
  it('means the same as the Corefile', () => {
    const corefile = '. {\n  listen udp://127.0.0.1:53\n  forward {\n    server origin udp://127.0.0.1:5300\n  }\n  log\n}\ncorp.test {\n  hosts {\n    192.0.2.10 web.corp.test\n  }\n}';
    const jsonc = `{
      // comments and trailing commas are fine
      "servers": [
        { "zones": ["."], "directives": [
          ["listen", "udp://127.0.0.1:53"],
          ["forward", [["server", "origin", "udp://127.0.0.1:5300"]]],
          ["log"],
        ] },
        { "zones": ["corp.test"], "directives": [["hosts", [["192.0.2.10", "web.corp.test"]]]] },
      ],
    }`;
    assert.deepEqual(shape(parseJsoncText(jsonc, 'veil.jsonc')), shape(parseCorefileText(corefile, 'Corefile')));
  });

  it('takes numbers as text and substitutes {$ENV}', () => {
    const config = parseJsoncText('{"servers":[{"zones":["."],"directives":[["cache", 100, "{$X}"]]}]}', 'v.jsonc', { X: 'y' });
    assert.deepEqual(shape(config), [[['.'], [['cache', '100', 'y']]]]);
  });

  it('points errors at file:line:column', () => {
    assert.throws(() => parseJsoncText('{\n  "servers": [\n    { "zones": ["."], "directives": [ "log" ] }\n  ]\n}', 'v.jsonc'), /^ConfigError: v\.jsonc:3:39: a directive is an array/);
    assert.throws(() => parseJsoncText('{\n  "servers": [,]\n}', 'v.jsonc'), /v\.jsonc:2:15: invalid JSONC: value expected/);
    assert.throws(() => parseJsoncText('{\n  "server": []\n}', 'v.jsonc'), /v\.jsonc:2:3: unknown key "server"/);
  });
});

describe('the global options block', () => {
  it('is read from a key-less block first in the file', () => {
    const config = parseCorefileText('{\n  workers 2\n}\n. {\n  log\n}\n', 'Corefile');
    assert.deepEqual(config.global.map((d) => [d.name.text, ...d.args.map((a) => a.text)]), [['workers', '2']]);
    assert.deepEqual(shape(config), [[['.'], [['log']]]]);
  });
  it('is the same in JSONC', () => {
    const config = parseJsoncText('{"global": [["workers", 2]], "servers": [{"zones": ["."], "directives": [["log"]]}]}', 'v.jsonc');
    assert.deepEqual(config.global.map((d) => [d.name.text, ...d.args.map((a) => a.text)]), [['workers', '2']]);
  });
});
