/**
 * `dnssec`: validates answers (RFC 4033–4035, 5155, 6840) between the cache and the upstreams.
 *
 *     dnssec {
 *         trust_anchor FILE…
 *         insecure ZONE…
 *         algorithms ALGORITHM…
 *         max_work N
 *     }
 *
 * Queries go upstream with DO=1 and CD=1 (a validating upstream then hands over what it would
 * have hidden); the DS and DNSKEY records the chain of trust needs are asked through the rest
 * of the chain, so through the block's own upstreams, policy, encryption and relays. Secure
 * answers get AD (for clients that asked with DO or AD), insecure ones pass as they are, bogus
 * ones become SERVFAIL with an Extended DNS Error. A client's CD=1 gets the answer unvalidated.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, parseInteger, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { EdnsOption, QClass, Rcode } from '../../core/dns/constants.js';
import { buildOpt, buildQuery, buildReply, ednsOption } from '../../core/dns/message.js';
import { canonicalName, encodeName, forEachRecord, isTruncated, rcodeOf, readEdns, WireError } from '../../core/dns/wire.js';
import type { Logger } from '../../core/logger.js';
import type { PluginCounter } from '../../core/plugin-metrics.js';
import type { BlockScope, Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { AnchorError, parseAnchors, ROOT_ANCHOR_TEXT, type TrustAnchor } from './anchors.js';
import { algorithmName, algorithmNumber, supportedAlgorithms } from './crypto.js';
import { lowerName, nameText, type WireName } from './names.js';
import { DNSSEC_TYPES, parseMessage, writeMessage, type Message, type Rr } from './records.js';
import { Validator } from './validator.js';
import { bogus, Ede, WorkBudget, WorkExceeded, type Verdict } from './verdict.js';
import { ZoneCache } from './zone-cache.js';

declare module '../../core/context.js' {
  interface QueryMeta {
    /** What the dnssec plugin concluded: secure, insecure, bogus, or unchecked (client set CD). */
    dnssec?: 'secure' | 'insecure' | 'bogus' | 'unchecked';
  }
}

const NAME = 'dnssec';
export const DEFAULT_MAX_WORK = 100;
/** Names the validator keeps what it learned about (zone keys, delegations). */
const ZONE_CACHE_CAPACITY = 10_000;
/** A bogus zone is logged once in this long. */
const LOG_AGAIN_MS = 10 * 60_000;
/** Zones remembered for that. */
const LOGGED_ZONES = 1000;
const AD = 0x20;
const CD = 0x10;

export interface DnssecOptions {
  anchors: Map<string, TrustAnchor>;
  /** Shown in logs: where the anchors came from. */
  anchorSource: string;
  negative: WireName[];
  algorithms: number[];
  maxWork: number;
}

export const dnssecPlugin: PluginDefinition<DnssecOptions> = {
  name: NAME,
  once: true,

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const supported = supportedAlgorithms();
    const options: DnssecOptions = { anchors: new Map(), anchorSource: 'built-in root anchors', negative: [], algorithms: supported, maxWork: DEFAULT_MAX_WORK };
    let anchorFiles: Token[] = [];
    readOptions(NAME, d.block, {
      trust_anchor: (line) => {
        expectNoBlock(NAME, line);
        anchorFiles = expectArgs(NAME, line, 1, Infinity);
      },
      insecure: (line) => {
        expectNoBlock(NAME, line);
        for (const token of expectArgs(NAME, line, 1, Infinity)) {
          try {
            options.negative.push(lowerName(encodeName(canonicalName(token.text))));
          } catch (err) {
            if (err instanceof WireError) throw configError(NAME, token, `"${token.text}" is not a domain name`);
            throw err;
          }
        }
      },
      algorithms: (line) => {
        expectNoBlock(NAME, line);
        options.algorithms = expectArgs(NAME, line, 1, Infinity).map((token) => {
          const n = algorithmNumber(token.text);
          if (n === undefined || !supported.includes(n)) {
            throw configError(NAME, token, `"${token.text}" is not an algorithm Veil validates (${supported.map(algorithmName).join(', ')})`);
          }
          return n;
        });
      },
      max_work: (line) => {
        expectNoBlock(NAME, line);
        options.maxWork = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 1, 100_000);
      },
    });
    if (anchorFiles.length === 0) {
      parseAnchors(ROOT_ANCHOR_TEXT, options.anchors);
    } else {
      for (const token of anchorFiles) readAnchorFile(token, options.anchors);
      options.anchorSource = anchorFiles.map((t) => t.text).join(' ');
    }
    return options;
  },

  create(options, scope) {
    return new DnssecPlugin(options, scope);
  },
};

function readAnchorFile(token: Token, into: Map<string, TrustAnchor>): void {
  const full = path.resolve(path.dirname(path.resolve(token.file)), token.text);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (err) {
    throw configError(NAME, token, `cannot read ${token.text}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    const before = into.size;
    parseAnchors(text, into);
    if (into.size === before) throw new AnchorError(1, 'no DS or DNSKEY record in the file');
  } catch (err) {
    if (err instanceof AnchorError) throw configError(NAME, token, `${token.text}:${err.line}: ${err.message}`);
    throw err;
  }
}

class DnssecPlugin implements Plugin {
  readonly name = NAME;
  private readonly validator: Validator;
  private readonly logger: Logger;
  private readonly answers: PluginCounter;
  private readonly workExceeded: PluginCounter;
  /** Zones whose bogus answers were logged, and when. */
  private readonly logged: Map<string, number>;
  private clockWarnedAt = -Infinity;

  constructor(
    private readonly options: DnssecOptions,
    private readonly scope: BlockScope,
  ) {
    this.logger = scope.logger;
    // What was validated with one set of anchors and algorithms stays valid across reloads that keep them.
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([[...options.anchors.keys()], options.anchorSource, options.algorithms, options.negative.map(nameText)]))
      .digest('hex')
      .slice(0, 16);
    const cache = scope.keep(`zones ${fingerprint}`, () => new ZoneCache(ZONE_CACHE_CAPACITY, () => scope.clock.monotonic()));
    this.logged = scope.keep('logged', () => new Map<string, number>());
    this.validator = new Validator(
      { anchors: options.anchors, negative: options.negative, algorithms: new Set(options.algorithms) },
      cache,
      () => Math.floor(scope.clock.now() / 1000),
      (message) => this.clockProblem(message),
    );
    this.answers = scope.metrics.counter('answers_total', 'Answers by validation result: secure, insecure, bogus, unchecked (client set CD).', ['result']);
    this.workExceeded = scope.metrics.counter('work_exceeded_total', 'Validations stopped at max_work or the query deadline (SERVFAIL).');
  }

  start(): void {
    this.logger.info(`validating with ${this.options.anchorSource} (${[...this.options.anchors.keys()].join(' ')}); algorithms ${this.options.algorithms.map(algorithmName).join(' ')}; max_work ${this.options.maxWork}`);
  }

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    if (ctx.qclass !== QClass.IN) return next(ctx);
    if (ctx.checkingDisabled) {
      // RFC 4035 §3.2.2: the client validates; it gets what the upstream said, and no AD from us.
      const answer = await next(ctx);
      ctx.meta.dnssec = 'unchecked';
      this.answers.inc({ result: 'unchecked' });
      if (answer && answer.length > 3) answer[3]! &= ~AD;
      return answer;
    }
    const upstreamAnswer = await this.ask(ctx, dnssecQuery(ctx.query), next, true);
    if (!upstreamAnswer) return null;
    const rcode = rcodeOf(upstreamAnswer);
    if (isTruncated(upstreamAnswer) || (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN)) {
      // Nothing to validate (SERVFAIL, REFUSED, a cut answer): passed on without AD or DNSSEC records.
      return this.finish(ctx, safeParse(upstreamAnswer), null, upstreamAnswer);
    }
    let msg: Message;
    try {
      msg = parseMessage(upstreamAnswer);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      return this.bogusReply(ctx, bogus(Ede.BOGUS, `the upstream answer is malformed: ${err.message}`), ctx.name);
    }
    const budget = new WorkBudget(this.options.maxWork, () => ctx.clock.monotonic() >= ctx.deadline);
    const lookup = async (name: WireName, type: number): Promise<Message> => {
      const answer = await this.ask(ctx, buildQuery(nameText(name), type, { checkingDisabled: true, edns: { dnssecOk: true } }), next, false);
      if (!answer) throw new Error('no answer');
      return parseMessage(answer);
    };
    let outcome;
    try {
      outcome = await this.validator.validate(msg, lookup, budget);
    } catch (err) {
      if (err instanceof WireError) return this.bogusReply(ctx, bogus(Ede.BOGUS, `a malformed DNSSEC record: ${err.message}`), ctx.name);
      if (!(err instanceof WorkExceeded)) throw err;
      this.workExceeded.inc();
      return this.bogusReply(ctx, bogus(Ede.BOGUS, err.message), ctx.name);
    }
    const verdict = outcome.verdict;
    if (verdict.security === 'bogus') return this.bogusReply(ctx, verdict, ctx.name);
    if (verdict.security === 'secure') {
      ctx.meta.dnssec = 'secure';
      this.answers.inc({ result: 'secure' });
      return this.finish(ctx, { ...msg, answer: outcome.answer, authority: outcome.authority, additional: [] }, verdict, null);
    }
    ctx.meta.dnssec = 'insecure';
    this.answers.inc({ result: 'insecure' });
    return this.finish(ctx, msg, verdict, null);
  }

  /** Sends `query` down the chain with the client's deadline; the main query's notes go to `ctx`. */
  private async ask(ctx: RequestContext, query: Buffer, next: Next, main: boolean): Promise<Buffer | null> {
    const sub = ctx.withQuery(query);
    try {
      const answer = await next(sub);
      if (main) {
        if (sub.meta.upstream !== undefined) ctx.meta.upstream = sub.meta.upstream;
        if (sub.meta.attempts !== undefined) ctx.meta.attempts = sub.meta.attempts;
        if (sub.meta.relay !== undefined) ctx.meta.relay = sub.meta.relay;
      }
      return answer;
    } finally {
      sub.finish();
    }
  }

  /**
   * The answer for the client: AD only when secure and asked for (DO or AD in the query, RFC
   * 6840 §5.7), DNSSEC records only for DO=1 clients or when asked for by type (RFC 4035
   * §3.2.1), the client's CD bit, an OPT record only if the query had one.
   */
  private finish(ctx: RequestContext, msg: Message | null, verdict: Verdict | null, raw: Buffer | null): Buffer {
    if (!msg) {
      // unreadable and not validated: pass the header's verdict on, never an AD
      const out = Buffer.from(raw!);
      out[3] = (out[3]! & ~(AD | CD)) | (ctx.query[3]! & CD);
      return out;
    }
    const header = Buffer.from(msg.header);
    const secure = verdict?.security === 'secure';
    const wantsAd = ctx.dnssecOk || (ctx.query[3]! & AD) !== 0;
    header[3] = (header[3]! & ~(AD | CD)) | (secure && wantsAd ? AD : 0) | (ctx.query[3]! & CD);
    const keep = (rr: Rr) => ctx.dnssecOk || !DNSSEC_TYPES.has(rr.type) || rr.type === ctx.type;
    const opt = ctx.edns
      ? buildOpt({ dnssecOk: ctx.dnssecOk, ...(verdict?.ede !== undefined ? { options: edeOption(verdict) } : {}) })
      : null;
    return writeMessage(header, msg.question, [msg.answer.filter(keep), msg.authority.filter(keep), msg.additional.filter(keep)], opt);
  }

  private bogusReply(ctx: RequestContext, verdict: Verdict, zone: string): Buffer {
    ctx.meta.dnssec = 'bogus';
    this.answers.inc({ result: 'bogus' });
    this.logBogus(zone, verdict);
    return buildReply(ctx.query, { rcode: Rcode.SERVFAIL, questionEnd: ctx.question.end, edns: ctx.edns, ednsOptions: edeOption(verdict) });
  }

  /** Once per zone in LOG_AGAIN_MS, so a broken zone does not flood the log. */
  private logBogus(zone: string, verdict: Verdict): void {
    const now = this.scope.clock.monotonic();
    const key = verdict.zone ?? zone;
    const last = this.logged.get(key);
    if (last !== undefined && now - last < LOG_AGAIN_MS) return;
    this.logged.delete(key);
    this.logged.set(key, now);
    if (this.logged.size > LOGGED_ZONES) this.logged.delete(this.logged.keys().next().value!);
    this.logger.warn(`bogus answer for ${zone} (EDE ${verdict.ede}): ${verdict.why}`);
  }

  private clockProblem(message: string): void {
    const now = this.scope.clock.monotonic();
    if (now - this.clockWarnedAt < LOG_AGAIN_MS) return;
    this.clockWarnedAt = now;
    this.logger.error(message);
  }
}

/** The client's query with DO=1 (an OPT record added if it had none) and CD=1. */
export function dnssecQuery(query: Buffer): Buffer {
  const edns = readEdns(query);
  let out: Buffer;
  if (edns) {
    out = Buffer.from(query);
    // OPT: owner (1 byte, root), type, class, then TTL = extended rcode, version, flags
    const flagsAt = edns.start + 7;
    out.writeUInt16BE(out.readUInt16BE(flagsAt) | 0x8000, flagsAt);
  } else {
    const end = forEachRecord(query, () => {});
    out = Buffer.concat([query.subarray(0, end), buildOpt({ dnssecOk: true })]);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  out[3] = out[3]! | CD;
  return out;
}

function edeOption(verdict: Verdict): Buffer {
  const text = Buffer.from((verdict.why ?? '').slice(0, 200));
  const data = Buffer.alloc(2 + text.length);
  data.writeUInt16BE(verdict.ede ?? Ede.OTHER, 0);
  text.copy(data, 2);
  return ednsOption(EdnsOption.EDE, data);
}

function safeParse(msg: Buffer): Message | null {
  try {
    return parseMessage(msg);
  } catch {
    return null;
  }
}
