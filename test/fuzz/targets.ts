/**
 * Fuzz targets: every parser that takes bytes or text from outside. A target's `check` throws
 * only for a bug: an error of a kind the parser must never throw, or a broken invariant (an
 * answer with another ID, a truncated reply larger than allowed, a round trip that changes).
 * Corpus seeds live in test/fuzz/corpus/TARGET/; a crash found by `npm run fuzz` is written
 * there and becomes a regression check in every test run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { parsePathAnswer } from '../../cli/path.js';
import { parseBlocks } from '../../core/block.js';
import { SystemClock } from '../../core/clock.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import { parseJsoncText } from '../../core/config/jsonc.js';
import { QClass, QType } from '../../core/dns/constants.js';
import { padMessage } from '../../core/dns/edns.js';
import { FrameReader, frame } from '../../core/dns/framing.js';
import { buildQuery, buildReply, truncateReply } from '../../core/dns/message.js';
import { forEachEdnsOption, forEachRecord, fullRcode, minimumTtl, readEdns, readQuestion } from '../../core/dns/wire.js';
import { ConfigError, WireError } from '../../core/errors.js';
import { MemoryLogger } from '../../core/logger.js';
import { buildConfig } from '../../core/server.js';
import { createDispatcher } from '../../core/dispatch.js';
import type { QueryHandler } from '../../core/listeners/listener.js';
import { encodeStamp, parseStamp, StampError } from '../../lib/stamps.js';
import { createBuiltinRegistry } from '../../plugins/index.js';
import { ROOT } from '../helpers/veil-process.js';
import { bytesLike, textLike } from './mutate.js';

export interface FuzzTarget<T = unknown> {
  name: string;
  /** What is fed, for the report. */
  inputs: string;
  arbitrary: fc.Arbitrary<T>;
  /** Seeds checked before any generated input. */
  seeds: T[];
  /** Turns a corpus file (a seed or a crash saved by `npm run fuzz`) back into an input. */
  fromCorpus(bytes: Buffer): T;
  check(input: T): void | Promise<void>;
}

/** The target's own seeds, then every file in its corpus folder. */
export function allSeeds<T>(target: FuzzTarget<T>): T[] {
  return [...target.seeds, ...corpusFiles(target.name).map((b) => target.fromCorpus(b))];
}

export const asBuffer = (b: Buffer): Buffer => b;
export const asText = (b: Buffer): string => b.toString('utf8');
export const asJson = <T>(b: Buffer): T => JSON.parse(b.toString('utf8'), (_k, v) => (v && v.type === 'Buffer' && Array.isArray(v.data) ? Buffer.from(v.data) : v)) as T;

export const CORPUS = path.join(ROOT, 'test/fuzz/corpus');

function corpusFiles(target: string): Buffer[] {
  try {
    const dir = path.join(CORPUS, target);
    return readdirSync(dir)
      .sort()
      .map((f) => readFileSync(path.join(dir, f)));
  } catch {
    return [];
  }
}

export class BugError extends Error {}
export function expectOnly(err: unknown, ...kinds: Array<new (...args: any[]) => Error>): void {
  if (kinds.some((k) => err instanceof k)) return;
  throw new BugError(`unexpected ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err });
}

// ---- seeds: valid messages of every shape the server sees -------------------------------------

function seedMessages(): Buffer[] {
  const query = buildQuery('www.example.org', QType.A, { id: 0x1234, edns: { udpSize: 4096, dnssecOk: true } });
  const q = readQuestion(query);
  const reply = buildReply(query, {
    questionEnd: q.end,
    edns: readEdns(query, q.end),
    answers: [
      { type: QType.A, ttl: 300, rdata: Buffer.from([192, 0, 2, 1]) },
      { type: QType.AAAA, ttl: 60, rdata: Buffer.alloc(16, 1) },
    ],
  });
  const compressed = dnsPacket.encode({
    type: 'response',
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'MX', name: 'example.org' }],
    answers: [
      { type: 'MX', name: 'example.org', ttl: 60, data: { preference: 10, exchange: 'mail.example.org' } },
      { type: 'CNAME', name: 'www.example.org', ttl: 60, data: 'example.org' },
      { type: 'TXT', name: 'example.org', ttl: 60, data: ['hello', 'world'] },
    ],
    authorities: [{ type: 'SOA', name: 'example.org', ttl: 60, data: { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } }],
  });
  const pathQuery = buildQuery('www.example.org', QType.TXT, { qclass: QClass.CH, edns: true });
  const pathQ = readQuestion(pathQuery);
  const pathAnswer = buildReply(pathQuery, {
    questionEnd: pathQ.end,
    answers: ['transport=udp', 'upstream=quad9'].map((t) => ({ type: QType.TXT, qclass: QClass.CH, ttl: 0, rdata: Buffer.concat([Buffer.from([t.length]), Buffer.from(t)]) })),
  });
  return [
    query,
    reply,
    compressed,
    buildQuery('a.test', QType.TXT),
    padMessage(buildQuery('padded.example', QType.AAAA)),
    pathQuery,
    pathAnswer,
    buildQuery('c0ffee.canary.veil.test', QType.A),
  ];
}

// ---- targets ----------------------------------------------------------------------------------

export const wireSeeds = seedMessages();

const wire: FuzzTarget<Buffer> = {
  name: 'wire',
  inputs: 'bytes and mutated DNS messages → header, question, EDNS, record walk (the hot path), a path answer\'s facts',
  arbitrary: bytesLike(wireSeeds),
  seeds: wireSeeds,
  fromCorpus: asBuffer,
  check(msg) {
    try {
      const q = readQuestion(msg);
      if (q.end > msg.length) throw new BugError('question ends past the message');
      const edns = readEdns(msg, q.end);
      if (edns) forEachEdnsOption(msg, edns, (_code, start, length) => {
        if (start + length > msg.length) throw new BugError('EDNS option past the message');
      });
      forEachRecord(msg, (rr) => {
        if (rr.end > msg.length) throw new BugError('record past the message');
      });
      fullRcode(msg);
      minimumTtl(msg);
      // What veil query --path and veil doctor read from a server's answer.
      parsePathAnswer(msg);
    } catch (err) {
      expectOnly(err, WireError);
    }
  },
};

const fullDecode: FuzzTarget<Buffer> = {
  name: 'decode',
  inputs: 'bytes and mutated DNS messages → full decode (dns-packet, used by ctx.decode())',
  arbitrary: bytesLike(wireSeeds),
  seeds: wireSeeds,
  fromCorpus: asBuffer,
  check(msg) {
    try {
      dnsPacket.decode(msg);
    } catch (err) {
      // dns-packet throws plain Errors and RangeErrors on bad input; a hang or a crash is the bug
      expectOnly(err, Error);
    }
  },
};

const truncation: FuzzTarget<[Buffer, number]> = {
  name: 'truncate',
  inputs: 'mutated responses and a size limit → TC reply',
  arbitrary: fc.tuple(bytesLike(wireSeeds).filter((b) => b.length >= 12), fc.integer({ min: 12, max: 1500 })),
  seeds: wireSeeds.filter((b) => b.length >= 12).map((b) => [b, 40] as [Buffer, number]),
  fromCorpus: asJson,
  check([msg, limit]) {
    const out = truncateReply(msg, limit);
    if (out.length > limit) throw new BugError(`truncated reply of ${out.length} bytes over the limit ${limit}`);
    if (out.readUInt16BE(0) !== msg.readUInt16BE(0)) throw new BugError('truncation changed the ID');
    if (!(out[2]! & 0x02)) throw new BugError('truncated reply without TC');
  },
};

const padding: FuzzTarget<Buffer> = {
  name: 'edns',
  inputs: 'mutated queries → EDNS padding rewrite',
  arbitrary: bytesLike(wireSeeds),
  seeds: wireSeeds,
  fromCorpus: asBuffer,
  check(msg) {
    let padded: Buffer;
    try {
      padded = padMessage(msg);
    } catch (err) {
      expectOnly(err, WireError);
      return;
    }
    if (padded.length % 128 !== 0 && padded.length < 65535) throw new BugError(`padded length ${padded.length} is not a multiple of 128`);
  },
};

const framing: FuzzTarget<[Buffer[], number[]]> = {
  name: 'framing',
  inputs: 'messages cut into random chunks → TCP framing',
  arbitrary: fc.tuple(fc.array(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 20 })),
  seeds: [[[Buffer.alloc(0), Buffer.from([1])], [1]]],
  fromCorpus: asJson,
  check([messages, cuts]) {
    const stream = Buffer.concat(messages.map(frame));
    const reader = new FrameReader();
    const got: Buffer[] = [];
    let pos = 0;
    for (const size of [...cuts, stream.length]) {
      got.push(...reader.push(stream.subarray(pos, pos + size)));
      pos += size;
      if (pos >= stream.length) break;
    }
    if (got.length !== messages.length || got.some((m, i) => !m.equals(messages[i]!))) throw new BugError('framing lost or changed messages');
    if (reader.pending !== 0) throw new BugError('bytes left after whole messages');
  },
};

const STAMP_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=/:+.';
const stampSeeds = [
  'sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc',
  'sdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5',
  'sdns://AwYAAAAAAAAACTE5Mi4wLjIuMQATZG90LmV4YW1wbGUuY29tOjg1M4wxOTguNTEuMTAwLjELMjAzLjAuMTEzLjE',
  'sdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw',
  'sdns://BQcAAAAAAAAAEG9kb2guZXhhbXBsZS5jb20HL3RhcmdldA',
];

const stamps: FuzzTarget<string | Buffer> = {
  name: 'stamps',
  inputs: 'random text, mutated stamps, and stamps around mutated payload bytes → sdns:// parser',
  arbitrary: fc.oneof(
    textLike(stampSeeds, STAMP_ALPHABET),
    bytesLike(stampSeeds.map((s) => Buffer.from(s.slice(7), 'base64url'))),
  ),
  seeds: stampSeeds,
  fromCorpus: asText,
  check(input) {
    const text = typeof input === 'string' ? input : `sdns://${input.toString('base64url')}`;
    let stamp;
    try {
      stamp = parseStamp(text);
    } catch (err) {
      expectOnly(err, StampError);
      return;
    }
    const again = encodeStamp(stamp);
    const reparsed = parseStamp(again);
    if (encodeStamp(reparsed) !== again) throw new BugError(`stamp does not round-trip: ${text}`);
  },
};

const COREFILE_ALPHABET = 'abcdefghijklmnopqrstuvwxyz.:/0123456789 \n\t{}()"#$\\,*[]_-';
const corefileSeeds = [
  readFileSync(path.join(ROOT, 'Corefile.example'), 'utf8'),
  '(s) {\n  log {args[0]}\n}\n. corp.test:53 {\n  import s x\n  listen udp://127.0.0.1:0 tcp://[::1]:0 {\n    idle_timeout 5s\n  }\n  hosts {\n    192.0.2.1 a.test\n    ttl 60\n  }\n  forward . 127.0.0.1:53 {\n    timeout 1s\n  }\n}\n',
  '. {\n  x "quoted {$HOME} \\" string"\n}\n10.0.0.0/8 {\n  errors { consolidate 5m "a.*" }\n}\n',
];

const registry = createBuiltinRegistry();
export const env = { registry, logger: new MemoryLogger(), clock: new SystemClock() };

const corefile: FuzzTarget<string> = {
  name: 'corefile',
  inputs: 'random text and mutated Corefiles → lexer, parser, every plugin\'s parse step',
  arbitrary: textLike(corefileSeeds, COREFILE_ALPHABET),
  seeds: corefileSeeds,
  fromCorpus: asText,
  check(text) {
    try {
      const config = parseCorefileText(text, path.join(ROOT, 'test/fuzz/Corefile'), { env: { HOME: '/home/x' } });
      parseBlocks(config, registry);
    } catch (err) {
      expectOnly(err, ConfigError);
    }
  },
};

const jsoncSeeds = [
  '{"servers":[{"zones":["."],"directives":[["listen","udp://127.0.0.1:0"],["hosts",[["192.0.2.1","a.test"],["ttl",60]]],["log"]]}]}',
  '{\n // c\n "servers": [ { "zones": [".", "x.test:53"], "directives": [ ["forward", ".", "127.0.0.1", [["timeout", "1s"]]], ], }, ],\n}',
];

const jsonc: FuzzTarget<string> = {
  name: 'jsonc',
  inputs: 'random text and mutated JSONC configurations → JSONC form, every plugin\'s parse step',
  arbitrary: textLike(jsoncSeeds, '{}[]",:/ \n.0123456789abcdefghilnoprstuvwxz*'),
  seeds: jsoncSeeds,
  fromCorpus: asText,
  check(text) {
    try {
      parseBlocks(parseJsoncText(text, 'fuzz.jsonc', {}), registry);
    } catch (err) {
      expectOnly(err, ConfigError);
    }
  },
};

let door: QueryHandler | null = null;
export function theDoor(): QueryHandler {
  if (!door) {
    // With path: CHAOS queries (and the canary zone) are answered by a plugin that builds a query of its own.
    const built = buildConfig(parseCorefileText('. {\n  path\n  hosts {\n    192.0.2.1 www.example.org\n  }\n}\n', 'Corefile'), env);
    door = createDispatcher([{ zone: '.', block: built.blocks[0]! }], env.clock);
  }
  return door;
}

const dispatch: FuzzTarget<Buffer> = {
  name: 'dispatch',
  inputs: 'bytes and mutated messages → the whole door: checks, routing, chain, reply',
  arbitrary: bytesLike(wireSeeds),
  seeds: wireSeeds,
  fromCorpus: asBuffer,
  async check(msg) {
    const answer = await theDoor()(msg, { client: { address: '127.0.0.1', port: 1, family: 'IPv4' }, transport: 'udp', datagram: true });
    if (answer === null) return;
    if (answer.length < 12) throw new BugError('answer shorter than a header');
    if (answer.readUInt16BE(0) !== msg.readUInt16BE(0)) throw new BugError('answer with another ID');
    if (!(answer[2]! & 0x80)) throw new BugError('answer without QR');
    if (answer.length > 4096) throw new BugError('UDP answer larger than any EDNS size allows');
  },
};

export const targets: FuzzTarget<any>[] = [wire, fullDecode, truncation, padding, framing, stamps, corefile, jsonc, dispatch];
