/**
 * Fuzz targets for the dnssec plugin's hand-written protocol code, over real signed answers
 * (test/fuzz/dnssec-snapshot.json, taken from the DNSSEC lab) at the clock of the snapshot:
 *
 * - dnssec-message: mutated answers → reading, RRset grouping, canonical RDATA, writing back
 *   (the records must survive the round trip), and validation: nothing but a verdict comes out.
 * - dnssec-forgery: one byte of a signed record's data changed → the verdict is bogus, never
 *   secure; the same answer unchanged is secure.
 * - dnssec-anchors: text → the trust anchor parser fails only with its own errors.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { WireError } from '../../core/errors.js';
import { AnchorError, parseAnchors } from '../../plugins/dnssec/anchors.js';
import { supportedAlgorithms } from '../../plugins/dnssec/crypto.js';
import { nameText, type WireName } from '../../plugins/dnssec/names.js';
import { canonicalRdata, groupRRsets, parseMessage, writeMessage, type Message, type Rr } from '../../plugins/dnssec/records.js';
import { Validator } from '../../plugins/dnssec/validator.js';
import { WorkBudget, WorkExceeded } from '../../plugins/dnssec/verdict.js';
import { ZoneCache } from '../../plugins/dnssec/zone-cache.js';
import { typeName } from '../../core/dns/constants.js';
import { ROOT } from '../helpers/veil-process.js';
import { bytesLike, textLike } from './mutate.js';
import { asBuffer, asJson, asText, BugError, expectOnly, type FuzzTarget } from './targets.js';

interface Snapshot {
  takenAt: number;
  anchor: string;
  answers: Record<string, string>;
}

const snapshot = JSON.parse(readFileSync(path.join(ROOT, 'test/fuzz/dnssec-snapshot.json'), 'utf8')) as Snapshot;
const answers = new Map(Object.entries(snapshot.answers).map(([k, v]) => [k.toLowerCase(), Buffer.from(v, 'base64')]));
const clientAnswers = [...answers.entries()].filter(([k]) => !/\/(ds|dnskey)$/.test(k)).map(([, v]) => v);

/** A validator with the lab's anchor, its clock stopped an hour after the snapshot, a fresh cache. */
function validator(): Validator {
  return new Validator({ anchors: parseAnchors(snapshot.anchor), negative: [], algorithms: new Set(supportedAlgorithms()) }, new ZoneCache(1000, () => 0), () => snapshot.takenAt + 3600);
}

/** Lookups answered from the snapshot; anything else is "no answer". */
async function lookup(name: WireName, type: number): Promise<Message> {
  const text = nameText(name);
  const key = `${text === '.' ? '.' : text.slice(0, -1)}/${typeName(type)}`.toLowerCase();
  const answer = answers.get(key);
  if (!answer) throw new Error(`no answer for ${key}`);
  return parseMessage(answer);
}

async function verdictOf(msg: Message): Promise<string> {
  try {
    return (await validator().validate(msg, lookup, new WorkBudget(100, () => false))).verdict.security;
  } catch (err) {
    expectOnly(err, WorkExceeded);
    return 'bogus';
  }
}

const message: FuzzTarget<Buffer> = {
  name: 'dnssec-message',
  inputs: 'mutated signed answers → dnssec message reading, canonical form, writing back, validation',
  arbitrary: bytesLike(clientAnswers),
  seeds: clientAnswers,
  fromCorpus: asBuffer,
  async check(bytes) {
    let msg: Message;
    try {
      msg = parseMessage(bytes);
      for (const section of [msg.answer, msg.authority]) for (const set of groupRRsets(section)) for (const rr of set.rrs) canonicalRdata(rr.type, rr.rdata);
    } catch (err) {
      expectOnly(err, WireError);
      return;
    }
    const written = writeMessage(msg.header, msg.question, [msg.answer, msg.authority, msg.additional], null);
    const again = parseMessage(written);
    const shape = (rrs: Rr[]) => rrs.map((rr) => `${rr.owner.toString('hex')}/${rr.type}/${rr.ttl}/${rr.rdata.toString('hex')}`).join(' ');
    if (shape(again.answer) !== shape(msg.answer) || shape(again.authority) !== shape(msg.authority)) throw new BugError('records changed in a write and read back');
    await verdictOf(msg);
  },
};

/** Offsets of every byte of RDATA of signed (non-RRSIG) records in the answer section. */
function signedDataBytes(bytes: Buffer): number[] {
  const offsets: number[] = [];
  const msg = parseMessage(bytes);
  const sets = groupRRsets(msg.answer).filter((s) => s.sigs.length > 0 && s.type !== 5 && s.type !== 39);
  if (sets.length === 0) return offsets;
  // find each record's RDATA in the raw message by its bytes (uncompressed types only: A, AAAA, TXT)
  for (const set of sets) {
    for (const rr of set.rrs) {
      if (rr.type !== 1 && rr.type !== 28 && rr.type !== 16) continue;
      const at = bytes.indexOf(rr.rdata);
      for (let i = 0; i < rr.rdata.length && at >= 0; i++) offsets.push(at + i);
    }
  }
  return offsets;
}

const forgeable = clientAnswers.filter((a) => signedDataBytes(a).length > 0);

const forgery: FuzzTarget<[number, number, number]> = {
  name: 'dnssec-forgery',
  inputs: 'a signed answer with one byte of its records\' data changed → never secure',
  arbitrary: fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 })),
  seeds: [[0, 0, 1]],
  fromCorpus: asJson,
  async check([which, where, xor]) {
    const original = forgeable[which % forgeable.length]!;
    if ((await verdictOf(parseMessage(original))) !== 'secure') throw new BugError('the untouched answer should be secure');
    const offsets = signedDataBytes(original);
    const forged = Buffer.from(original);
    const at = offsets[where % offsets.length]!;
    forged[at] = forged[at]! ^ xor;
    const verdict = await verdictOf(parseMessage(forged));
    if (verdict === 'secure') throw new BugError(`a forged answer (byte ${at} ^ ${xor}) was found secure`);
  },
};

const anchorSeeds = [snapshot.anchor, `lab. 3600 IN DNSKEY 257 3 13 ( ${Buffer.alloc(64, 1).toString('base64')} ) ; c\n`, '; only a comment\n'];

const anchors: FuzzTarget<string> = {
  name: 'dnssec-anchors',
  inputs: 'random text and mutated anchor files → trust anchor parser',
  arbitrary: textLike(anchorSeeds, 'abcdefDSNKEYIN0123456789+/=.;() \t\n\\'),
  seeds: anchorSeeds,
  fromCorpus: asText,
  check(text) {
    try {
      parseAnchors(text);
    } catch (err) {
      expectOnly(err, AnchorError);
    }
  },
};

export const dnssecTargets: FuzzTarget<any>[] = [message, forgery, anchors];
