/**
 * `hosts [FILE] { IP NAME…  ttl SECONDS  reload DURATION  no_reverse }`: answers A, AAAA and
 * PTR from static entries, inline or from a hosts-format file. A known name asked for another
 * type gets an empty NOERROR answer; unknown names go on to the next plugin.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Token } from '../../core/config/ast.js';
import { configError, didYouMean, expectArgs, expectNoBlock, flag, parseDuration, parseInteger } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { QClass, QType } from '../../core/dns/constants.js';
import { buildReply, type WireRecord } from '../../core/dns/message.js';
import type { Logger } from '../../core/logger.js';
import type { Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { checkEntry, HostsTable, parseHostsText, type HostsEntry } from './table.js';

const NAME = 'hosts';

export interface HostsOptions {
  file: { path: string; shown: string; entries: HostsEntry[]; skipped: number } | null;
  inline: HostsEntry[];
  ttl: number;
  reloadMs: number;
  reverse: boolean;
}

export const hostsPlugin: PluginDefinition<HostsOptions> = {
  name: NAME,
  once: 'put every entry in one hosts directive',

  parse(directives) {
    const d = directives[0]!;
    const [fileToken] = expectArgs(NAME, d, 0, 1);
    const options: HostsOptions = { file: null, inline: [], ttl: 3600, reloadMs: 5000, reverse: true };
    if (fileToken) options.file = readHostsFile(fileToken);
    const seen = new Set<string>();
    for (const line of d.block ?? []) {
      const word = line.name.text;
      if (/^[0-9a-f:.]+(%\S+)?$/i.test(word) && (word.includes('.') || word.includes(':'))) {
        const names = line.args.map((t) => t.text);
        const problem = checkEntry(word, names);
        if (problem) throw configError(NAME, problem.word === 0 ? line.name : line.args[problem.word - 1]!, problem.reason);
        options.inline.push({ address: word, names, line: line.name.line });
        continue;
      }
      if (seen.has(word)) throw configError(NAME, line.name, `option "${word}" is given twice`);
      seen.add(word);
      switch (word) {
        case 'ttl':
          expectNoBlock(NAME, line);
          options.ttl = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 0, 2_147_483_647);
          break;
        case 'reload':
          expectNoBlock(NAME, line);
          options.reloadMs = parseDuration(NAME, expectArgs(NAME, line, 1)[0]!);
          break;
        case 'no_reverse':
          options.reverse = !flag(NAME, line);
          break;
        default:
          throw configError(NAME, line.name, `"${word}" is neither an IP address starting an entry nor an option (ttl, reload, no_reverse)${didYouMean(word, ['ttl', 'reload', 'no_reverse'])}`);
      }
    }
    if (!options.file && options.inline.length === 0) throw configError(NAME, d.name, 'no entries: give a hosts file or lines "IP NAME…" in a block');
    return options;
  },

  create(options, scope) {
    return new HostsPlugin(options, scope.logger);
  },
};

function readHostsFile(token: Token): NonNullable<HostsOptions['file']> {
  const full = path.resolve(path.dirname(path.resolve(token.file)), token.text);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (err) {
    throw configError(NAME, token, `cannot read ${token.text}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const parsed = parseHostsText(text);
  return { path: full, shown: token.text, entries: parsed.entries, skipped: parsed.rejected.length };
}

export class HostsPlugin implements Plugin {
  readonly name = NAME;
  private table: HostsTable;
  private timer: NodeJS.Timeout | null = null;
  private fileStamp = '';

  constructor(
    private readonly options: HostsOptions,
    private readonly logger: Logger,
  ) {
    this.table = new HostsTable([...options.inline, ...(options.file?.entries ?? [])], options.reverse);
    if (options.file) {
      this.fileStamp = stampOf(options.file.path);
      if (options.file.skipped > 0) logger.warn(`${options.file.shown}: ${options.file.skipped} line(s) are not "IP NAME…" and were skipped`);
    }
  }

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    if (ctx.qclass !== QClass.IN) return next(ctx);
    const table = this.table;
    let rdata: Buffer[] | undefined;
    if (ctx.type === QType.A) rdata = table.v4.get(ctx.name);
    else if (ctx.type === QType.AAAA) rdata = table.v6.get(ctx.name);
    else if (ctx.type === QType.PTR) rdata = table.ptr.get(ctx.name);
    if (!rdata && !table.knows(ctx.name)) return next(ctx);
    const answers: WireRecord[] = (rdata ?? []).map((data) => ({ type: ctx.type, ttl: this.options.ttl, rdata: data }));
    return buildReply(ctx.query, { authoritative: true, answers, questionEnd: ctx.question.end, edns: ctx.edns });
  }

  start(): void {
    const file = this.options.file;
    if (!file || this.options.reloadMs <= 0) return;
    this.timer = setInterval(() => this.reloadIfChanged(), this.options.reloadMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Re-reads the file when its size or mtime changed; a file that fails to read keeps the old table. */
  reloadIfChanged(): void {
    const file = this.options.file!;
    const stamp = stampOf(file.path);
    if (stamp === this.fileStamp) return;
    this.fileStamp = stamp;
    try {
      const parsed = parseHostsText(readFileSync(file.path, 'utf8'));
      this.table = new HostsTable([...this.options.inline, ...parsed.entries], this.options.reverse);
      this.logger.info(`reloaded ${file.shown}: ${parsed.entries.length} entries${parsed.rejected.length ? `, ${parsed.rejected.length} lines skipped` : ''}`);
    } catch (err) {
      this.logger.warn(`cannot reload ${file.shown}, keeping the previous entries: ${(err as Error).message}`);
    }
  }
}

function stampOf(file: string): string {
  try {
    const s = statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}
