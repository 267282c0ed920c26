/**
 * Table-driven setup tests, one table a plugin (plugins/NAME/setup.test.ts). A row is the body
 * of a server block, `. {` … `}`, written without indentation: it either builds, with the
 * plugin's options as the row says, or is refused with a ConfigError at a line and column
 * counted in the row's own text (line 1 is its first line, the Corefile's second), whose message
 * matches a pattern.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseBlocks } from '../../core/block.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import type { BuiltConfig } from '../../core/server.js';
import { checkCorefile, expectConfigError } from '../../core/testing/config.js';
import { makeTestCerts } from './peers.js';
import { testRegistry } from './plugins.js';

/** What a check of options gets besides them: the built configuration, the Corefile's folder. */
export interface Built {
  built: BuiltConfig;
  /** The folder the Corefile stands in ('.' without files). */
  dir: string;
}

/**
 * What a row that builds checks of the plugin's parsed options: an object, those of their
 * fields (deep-equal); an array, all of them; a function, anything (it asserts; it gets
 * undefined options when the row has no directive of the plugin, e.g. a listener's row).
 */
export type OptionsCheck = Record<string, unknown> | unknown[] | ((options: any, built: Built) => void);

export type SetupRow = { body: string; options?: OptionsCheck } | { body: string; line: number; column: number; pattern: RegExp };

/** A block body that builds; `options` (when given) are checked as OptionsCheck says. */
export function builds(body: string, options?: OptionsCheck): SetupRow {
  return { body, options };
}

/** A block body refused at `line`:`column` of `body` with a message that matches `pattern`. */
export function refused(body: string, line: number, column: number, pattern: RegExp): SetupRow {
  return { body, line, column, pattern };
}

/** A file's content, or its content and mode (secrets must be 0600). */
export type FileSpec = string | Buffer | { content: string | Buffer; mode: number };

export interface SetupTableOptions {
  /** Files to write in a temporary folder for the Corefile (names relative to it). */
  files?: Record<string, FileSpec>;
  /**
   * With `files`: test certificates (makeTestCerts) in the folder too: `ca.pem`, the server's
   * `chain.pem` and `key.pem` (dns.test), and `other-key.pem`, a key that is not the chain's.
   */
  certificates?: boolean;
}

/** makeTestCerts' certificates and keys, under the names SetupTableOptions.certificates gives. */
function certificateFiles(): Record<string, FileSpec> {
  const certs = makeTestCerts();
  try {
    return { 'ca.pem': readFileSync(certs.ca), 'chain.pem': readFileSync(certs.chain), 'key.pem': readFileSync(certs.key), 'other-key.pem': readFileSync(certs.otherKey) };
  } finally {
    rmSync(certs.dir, { recursive: true, force: true });
  }
}

/** The block around a row: its first line is the Corefile's second. */
const corefileOf = (body: string): string => `. {\n${body}\n}\n`;

/** One test a row, under `describe('NAME setup')`. */
export function setupTable(plugin: string, rows: readonly SetupRow[], options: SetupTableOptions = {}): void {
  describe(`${plugin} setup`, () => {
    let dir = '.';
    if (options.files) {
      const files = options.files;
      before(() => {
        dir = mkdtempSync(path.join(tmpdir(), `veil-${plugin}-setup-`));
        const all = { ...(options.certificates ? certificateFiles() : {}), ...files };
        for (const [name, spec] of Object.entries(all)) {
          const file = path.join(dir, name);
          mkdirSync(path.dirname(file), { recursive: true });
          if (typeof spec === 'string' || Buffer.isBuffer(spec)) writeFileSync(file, spec);
          else {
            writeFileSync(file, spec.content);
            chmodSync(file, spec.mode); // not through writeFileSync, where the umask would narrow it
          }
        }
      });
      after(() => rmSync(dir, { recursive: true, force: true }));
    }
    const file = () => (dir === '.' ? 'Corefile' : path.join(dir, 'Corefile'));

    for (const row of rows) {
      const title = row.body.replaceAll('\n', ' ⏎ ');
      if ('pattern' in row) {
        it(`refuses ${title} at ${row.line}:${row.column}`, async () => {
          await expectConfigError(corefileOf(row.body), row.line + 1, row.column, row.pattern, { registry: testRegistry(), file: file() });
        });
        continue;
      }
      it(`builds ${title}`, async () => {
        const text = corefileOf(row.body);
        const registry = testRegistry();
        const built = await checkCorefile(text, { registry, file: file() });
        if (row.options === undefined) return;
        const parsed = parseBlocks(parseCorefileText(text, file()), registry)[0]!.plugins.find((p) => p.definition.name === plugin);
        if (typeof row.options === 'function') row.options(parsed?.options, { built, dir });
        else if (!parsed) assert.fail(`no ${plugin} directive in the block`);
        else if (Array.isArray(row.options)) assert.deepEqual(parsed.options, row.options);
        else for (const [key, value] of Object.entries(row.options)) assert.deepEqual((parsed.options as Record<string, unknown>)[key], value, key);
      });
    }
  });
}

/**
 * The rows of `servers_from LIST { … }` (lib/sources/servers-from.ts), which dot, doh, odoh and
 * dnscrypt share: `PLUGIN { servers_from public { … } }` after a `sources` block of 3 lines, so
 * that `servers_from` stands on line 5 and its options from line 6.
 */
export function serversFromRows(plugin: string): SetupRow[] {
  const lists = 'sources {\nlist public public.md\n}\n';
  const from = (...lines: string[]) => `${lists}${plugin} {\nservers_from public${lines.length ? ` {\n${lines.join('\n')}\n}` : ''}\n}`;
  /** The filter of the first servers_from line (dnscrypt's options are a list of its directives). */
  const filter = (options: any) => (Array.isArray(options) ? options[0] : options).serversFrom[0].filter;
  return [
    builds(from(), (o) => assert.deepEqual(filter(o), { names: null, disabled: [], require: { nolog: true, nofilter: true, dnssec: false }, ipv4: true, ipv6: false })),
    builds(from('names a b', 'names c', 'disabled d', 'disabled e', 'require nolog dnssec', 'allow filtering', 'ipv6'), (o) => {
      assert.deepEqual(filter(o), { names: ['a', 'b', 'c'], disabled: ['d', 'e'], require: { nolog: true, nofilter: false, dnssec: true }, ipv4: false, ipv6: true });
    }),
    builds(from('allow logging filtering', 'ipv4', 'ipv6'), (o) => assert.deepEqual(filter(o), { names: null, disabled: [], require: { nolog: false, nofilter: false, dnssec: false }, ipv4: true, ipv6: true })),
    refused(`${plugin} {\nservers_from public\n}`, 2, 14, /this block has no sources directive$/),
    refused(from().replace('servers_from public', 'servers_from'), 5, 1, /servers_from takes 1 argument, got 0$/),
    refused(from().replace('servers_from public', 'servers_from public other'), 5, 21, /servers_from takes 1 argument, got 2$/),
    refused(from('names'), 6, 1, /names takes at least 1 argument, got 0$/),
    refused(from('disabled a {', '}'), 6, 12, /disabled takes no block$/),
    refused(from('require nolog fast'), 6, 15, /require takes nolog, nofilter and dnssec, not "fast"$/),
    refused(from('require nolog nofilter dnssec nolog'), 6, 31, /require takes 1 to 3 arguments, got 4$/),
    refused(from('allow logging everything'), 6, 15, /allow takes logging and filtering \(servers that keep logs, servers that filter answers\), not "everything"$/),
    refused(from('require nolog', 'allow logging'), 7, 7, /"allow logging" contradicts "require nolog"$/),
    refused(from('ipv4 only'), 6, 6, /ipv4 takes 0 arguments, got 1$/),
    refused(from('nmes a'), 6, 1, /unknown option "nmes" \(did you mean "names"\?\)$/),
    refused(from('ipv6', 'ipv6'), 7, 1, /option "ipv6" is given twice$/),
  ];
}
