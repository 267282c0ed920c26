/**
 * `filter`: blocklists and allowlists for names, addresses in answers, query types and IPv6.
 *
 *     filter {
 *         block FILE|NAME…
 *         allow FILE|NAME…
 *         block_ips FILE|ADDRESS…
 *         block_qtype TYPE…
 *         block_ipv6
 *         response nxdomain|refused|nodata|null
 *         refresh DURATION
 *     }
 */
import { Buffer } from 'node:buffer';
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, flag, parseDuration, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { EdnsOption, QType, Rcode, typeNumber } from '../../core/dns/constants.js';
import { buildReply, ednsOption, type WireRecord } from '../../core/dns/message.js';
import { forEachRecord, readName, WireError } from '../../core/dns/wire.js';
import { filterBlocked } from '../../core/events.js';
import { FleetService, type Fleet } from '../../core/fleet.js';
import type { Logger } from '../../core/logger.js';
import type { BlockScope, Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { AddressRules, loadAddressList, loadNameList, NameRules } from './rules.js';

const NAME = 'filter';
/** RFC 8914 §4.16: "Blocked", the operator's own blocklist. */
const EDE_BLOCKED = 15;
/** TTL of the answers filter makes up (negative ones carry no SOA, so clients keep them briefly too). */
const BLOCKED_TTL = 60;

type ResponseKind = 'nxdomain' | 'refused' | 'nodata' | 'null';

interface ListSource {
  /** What logs and metrics call it: the file as written, or `inline`. */
  shown: string;
  /** Absolute path, for refresh; null for inline entries. */
  file: string | null;
  mtimeMs: number;
}

interface NameList extends ListSource {
  rules: NameRules;
}

interface AddressList extends ListSource {
  rules: AddressRules;
}

export interface FilterOptions {
  block: NameList[];
  allow: NameList[];
  blockIps: AddressList[];
  blockQtypes: Set<number>;
  blockIpv6: boolean;
  response: ResponseKind;
  refreshMs: number | null;
}

export const filterPlugin: PluginDefinition<FilterOptions> = {
  name: NAME,
  once: 'put every list in one filter directive',

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const options: FilterOptions = { block: [], allow: [], blockIps: [], blockQtypes: new Set(), blockIpv6: false, response: 'nxdomain', refreshMs: null };
    readOptions(
      NAME,
      d.block,
      {
        block: (line) => options.block.push(...nameLists(line)),
        allow: (line) => options.allow.push(...nameLists(line)),
        block_ips: (line) => options.blockIps.push(...addressLists(line)),
        block_qtype: (line) => {
          for (const token of expectArgs(NAME, line, 1, Infinity)) {
            const type = typeNumber(token.text);
            if (type === undefined) throw configError(NAME, token, `"${token.text}" is not a query type`);
            options.blockQtypes.add(type);
          }
        },
        block_ipv6: (line) => (options.blockIpv6 = flag(NAME, line)),
        response: (line) => {
          const [kind] = expectArgs(NAME, line, 1) as [Token];
          if (!['nxdomain', 'refused', 'nodata', 'null'].includes(kind.text)) throw configError(NAME, kind, `response is nxdomain, refused, nodata or null, not "${kind.text}"`);
          options.response = kind.text as ResponseKind;
        },
        refresh: (line) => (options.refreshMs = parseDuration(NAME, expectArgs(NAME, line, 1)[0]!, { min: 1000 })),
      },
      ['block', 'allow', 'block_ips', 'block_qtype'],
    );
    if (options.block.length + options.blockIps.length === 0 && options.blockQtypes.size === 0 && !options.blockIpv6) {
      throw configError(NAME, d.name, 'nothing to block: add "block FILE|NAME", "block_ips", "block_qtype" or "block_ipv6"');
    }
    return options;
  },

  create(options, scope) {
    return new FilterPlugin(options, scope);
  },
};

/** A token names a file when one exists there (relative to the Corefile), else it is a rule. */
function fileOf(token: Token): string | null {
  const full = path.resolve(path.dirname(path.resolve(token.file)), token.text);
  try {
    if (statSync(full).isFile()) return full;
  } catch {
    // not a file: a rule, or a mistake reported below
  }
  if (token.text.includes('/')) throw configError(NAME, token, `cannot read "${token.text}": no such file`);
  return null;
}

function readList(token: Token, file: string): { text: string; mtimeMs: number } {
  try {
    return { text: readFileSync(file, 'utf8'), mtimeMs: statSync(file).mtimeMs };
  } catch (err) {
    throw configError(NAME, token, `cannot read "${token.text}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function nameLists(line: Directive): NameList[] {
  const lists: NameList[] = [];
  let inline: NameList | null = null;
  for (const token of expectArgs(NAME, line, 1, Infinity)) {
    const file = fileOf(token);
    if (file) {
      const { text, mtimeMs } = readList(token, file);
      const loaded = loadNameList(text);
      if (loaded.rules.size === 0) {
        const first = loaded.rejected[0];
        throw configError(NAME, token, `"${token.text}" holds no name or pattern${first ? ` (line ${first.line}: ${first.reason})` : ''}`);
      }
      lists.push({ shown: token.text, file, mtimeMs, rules: loaded.rules });
      continue;
    }
    if (!inline) {
      inline = { shown: 'inline', file: null, mtimeMs: 0, rules: new NameRules() };
      lists.push(inline);
    }
    const problem = inline.rules.add(token.text);
    if (problem) throw configError(NAME, token, `${problem}; and there is no such file`);
  }
  return lists;
}

function addressLists(line: Directive): AddressList[] {
  const lists: AddressList[] = [];
  let inline: AddressList | null = null;
  for (const token of expectArgs(NAME, line, 1, Infinity)) {
    // An address, a range or a prefix is a rule; anything else names a file.
    const looksLikeRule = net.isIP(token.text.split('/')[0]!) !== 0 || token.text.endsWith('*');
    const file = looksLikeRule ? null : fileOf(token);
    if (!looksLikeRule && !file) throw configError(NAME, token, `cannot read "${token.text}": no such file`);
    if (file) {
      const { text, mtimeMs } = readList(token, file);
      const loaded = loadAddressList(text);
      if (loaded.rules.size === 0) throw configError(NAME, token, `"${token.text}" holds no address or range`);
      lists.push({ shown: token.text, file, mtimeMs, rules: loaded.rules });
      continue;
    }
    if (!inline) {
      inline = { shown: 'inline', file: null, mtimeMs: 0, rules: new AddressRules() };
      lists.push(inline);
    }
    const problem = inline.rules.add(token.text);
    if (problem) throw configError(NAME, token, problem);
  }
  return lists;
}

class FilterPlugin implements Plugin {
  readonly name = NAME;
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | null = null;
  /** Checks answers only when something could block them there. */
  private readonly checkAnswers: boolean;
  /** The fleet this instance shares a cache with (cache's `shared`), told when a list changes. */
  private fleet: Fleet | null = null;
  private stopListening: (() => void) | null = null;

  constructor(
    private readonly options: FilterOptions,
    private readonly scope: BlockScope,
  ) {
    this.logger = scope.logger;
    this.checkAnswers = options.block.length > 0 || options.blockIps.length > 0;
  }

  start(): void {
    const sizes = [...this.options.block, ...this.options.allow].map((l) => `${l.shown}: ${l.rules.size}`);
    if (sizes.length) this.logger.info(`rules loaded (${sizes.join(', ')})`);
    if (this.options.refreshMs !== null) {
      this.timer = setInterval(() => void this.refresh(true), this.options.refreshMs);
      this.timer.unref();
    }
    // Looked up now, once every plugin of the block is created: the cache offers it (with `shared`).
    this.fleet = this.scope.service(FleetService);
    if (this.fleet) {
      this.stopListening = this.fleet.listen((message) => {
        if (message.kind === 'lists') void this.refresh(false);
      });
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stopListening?.();
    this.stopListening = null;
  }

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    const name = bare(ctx.name);
    if (this.allowed(name)) return next(ctx);
    if (this.options.blockQtypes.has(ctx.type)) return this.blocked(ctx, 'block_qtype', this.options.response);
    if (this.options.blockIpv6 && ctx.type === QType.AAAA) return this.blocked(ctx, 'block_ipv6', 'nodata');
    const list = this.blockList(name);
    if (list) return this.blocked(ctx, list, this.options.response);
    const answer = await next(ctx);
    if (!answer || !this.checkAnswers) return answer;
    const inAnswer = this.checkAnswer(answer);
    return inAnswer ? this.blocked(ctx, inAnswer, this.options.response) : answer;
  }

  private allowed(name: string): boolean {
    for (const list of this.options.allow) if (list.rules.matches(name)) return true;
    return false;
  }

  private blockList(name: string): string | null {
    for (const list of this.options.block) if (list.rules.matches(name)) return list.shown;
    return null;
  }

  /** A CNAME target on a blocklist (and not allowed), or an address on block_ips: who blocks it. */
  private checkAnswer(answer: Buffer): string | null {
    let found: string | null = null;
    try {
      forEachRecord(answer, (rr) => {
        if (rr.section !== 0) return false;
        if (rr.type === QType.CNAME && this.options.block.length > 0) {
          const target = bare(readName(answer, rr.rdataStart).name.toLowerCase());
          if (!this.allowed(target)) found = this.blockList(target);
        } else if ((rr.type === QType.A && rr.rdataLength === 4) || (rr.type === QType.AAAA && rr.rdataLength === 16)) {
          const rdata = answer.subarray(rr.rdataStart, rr.rdataStart + rr.rdataLength);
          for (const list of this.options.blockIps) if (list.rules.matches(rdata)) found = `block_ips ${list.shown}`;
        }
        return found === null;
      });
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
    }
    return found;
  }

  private blocked(ctx: RequestContext, list: string, kind: ResponseKind): Buffer {
    ctx.meta.blockedBy = list;
    if (filterBlocked.hasSubscribers) filterBlocked.publish({ ctx, list });
    const answers: WireRecord[] = [];
    let rcode: number = Rcode.NOERROR;
    if (kind === 'nxdomain') rcode = Rcode.NXDOMAIN;
    else if (kind === 'refused') rcode = Rcode.REFUSED;
    else if (kind === 'null' && ctx.type === QType.A) answers.push({ type: QType.A, ttl: BLOCKED_TTL, rdata: Buffer.alloc(4) });
    else if (kind === 'null' && ctx.type === QType.AAAA) answers.push({ type: QType.AAAA, ttl: BLOCKED_TTL, rdata: Buffer.alloc(16) });
    // RFC 8914: say why, to clients that speak EDNS.
    const ede = ednsOption(EdnsOption.EDE, Buffer.concat([Buffer.from([0, EDE_BLOCKED]), Buffer.from(`blocked by ${list}`)]));
    return buildReply(ctx.query, { rcode, questionEnd: ctx.question.end, edns: ctx.edns, ednsOptions: ede, answers });
  }

  /**
   * Reads again the files that changed; a list that cannot be read keeps its last rules. A
   * change found on this instance's own schedule is announced to the fleet, whose instances
   * then check their copies at once (not when they check because of an announcement: no echo).
   */
  private async refresh(announce: boolean): Promise<void> {
    let reloaded = false;
    const lists: Array<NameList | AddressList> = [...this.options.block, ...this.options.allow, ...this.options.blockIps];
    for (const list of lists) {
      if (!list.file) continue;
      let mtimeMs: number;
      try {
        mtimeMs = (await stat(list.file)).mtimeMs;
      } catch (err) {
        if (list.mtimeMs !== -1) this.logger.warn(`${list.shown}: keeping the rules loaded before: ${(err as Error).message}`);
        list.mtimeMs = -1; // said once, until the file is back
        continue;
      }
      if (mtimeMs === list.mtimeMs) continue;
      // Whatever happens next, this version of the file has been seen: warn once per change.
      list.mtimeMs = mtimeMs;
      try {
        const text = await readFile(list.file, 'utf8');
        const rules = list.rules instanceof NameRules ? loadNameList(text).rules : loadAddressList(text).rules;
        if (rules.size === 0) throw new Error('it holds no rule now');
        // One assignment: queries see the old rules or the new ones, never a mix.
        (list as { rules: NameRules | AddressRules }).rules = rules;
        this.logger.info(`${list.shown}: reloaded, ${rules.size} rules`);
        reloaded = true;
      } catch (err) {
        this.logger.warn(`${list.shown}: keeping the rules loaded before: ${(err as Error).message}`);
      }
    }
    if (reloaded && announce) this.fleet?.announce({ kind: 'lists' });
  }
}

/** `www.example.org.` → `www.example.org`; the root → ``. */
function bare(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}
