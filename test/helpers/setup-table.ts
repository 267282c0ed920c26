/**
 * Table-driven setup tests, one table a plugin (plugins/NAME/setup.test.ts). A row is the body
 * of a server block, `. {` … `}`, written without indentation: it either builds, with the
 * plugin's options as the row says, or is refused with a ConfigError at a line and column
 * counted in the row's own text (line 1 is its first line, the Corefile's second), whose message
 * matches a pattern.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseBlocks } from '../../core/block.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import type { BuiltConfig } from '../../core/server.js';
import { checkCorefile, expectConfigError } from '../../core/testing/config.js';
import { testRegistry } from './plugins.js';

/** What a check of options gets besides them: the built configuration, the Corefile's folder. */
export interface Built {
  built: BuiltConfig;
  /** The folder the Corefile stands in ('.' without files). */
  dir: string;
}

/**
 * What a row that builds checks of the plugin's parsed options: an object, those of their
 * fields (deep-equal); an array, all of them; a function, anything (it asserts).
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
  /**
   * Files to write in a temporary folder for the Corefile (names relative to it); a function
   * when they are known only once the test's own `before` ran (certificates it made).
   */
  files?: Record<string, FileSpec> | (() => Record<string, FileSpec>);
  /** Or the folder the Corefile stands in, made by the test. */
  dir?: () => string;
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
        for (const [name, spec] of Object.entries(typeof files === 'function' ? files() : files)) {
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
    } else if (options.dir) {
      const made = options.dir;
      before(() => void (dir = made()));
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
        assert.ok(parsed, `no ${plugin} directive in the block`);
        if (typeof row.options === 'function') row.options(parsed.options, { built, dir });
        else if (Array.isArray(row.options)) assert.deepEqual(parsed.options, row.options);
        else for (const [key, value] of Object.entries(row.options)) assert.deepEqual((parsed.options as Record<string, unknown>)[key], value, key);
      });
    }
  });
}
