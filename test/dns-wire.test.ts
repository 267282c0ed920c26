import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType, Rcode } from '../core/dns/constants.js';
import { FrameReader, frame } from '../core/dns/framing.js';
import { buildQuery, buildReply, errorReply, truncateReply } from '../core/dns/message.js';
import {
  canonicalName,
  encodeName,
  forEachEdnsOption,
  isSubdomain,
  minimumTtl,
  readEdns,
  readName,
  readQuestion,
  sameQuestion,
  WireError,
} from '../core/dns/wire.js';

/** Header + a raw question name + type A class IN. */
function withName(nameBytes: number[], qdcount = 1): Buffer {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, qdcount, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, Buffer.from(nameBytes), Buffer.from([0, 1, 0, 1])]);
}

describe('names on the wire', () => {
  it('decodes labels and keeps case; canonical form lower-cases', () => {
    const q = readQuestion(buildQuery('WeB.Veil.Test', QType.A));
    assert.equal(q.rawName, 'WeB.Veil.Test.');
    assert.equal(q.name, 'web.veil.test.');
    assert.equal(q.type, QType.A);
    assert.equal(q.qclass, 1);
  });

  it('follows a backward compression pointer', () => {
    // name at 12: "a" + pointer to... build: [1 'x' 0] at 12, then question 2 is pointer
    const msg = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([1, 0x78, 0]), Buffer.from([1, 0x79, 0xc0, 12])]);
    assert.deepEqual(readName(msg, 15), { name: 'y.x.', end: 19 });
  });

  for (const [label, bytes] of [
    ['a pointer to itself', [0xc0, 12]],
    ['a forward pointer', [0xc0, 40]],
    ['a truncated pointer', [0xc0]],
    ['a label running past the end', [10, 0x61]],
    ['the reserved 0x40 label type', [0x40, 0]],
    ['no terminating zero', [1, 0x61]],
  ] as const) {
    it(`rejects ${label}`, () => {
      assert.throws(() => readQuestion(withName([...bytes])), WireError);
    });
  }

  it('rejects a pointer loop between two names', () => {
    // offset 12: pointer to 14; offset 14: pointer to 12 — but must point backwards, so loop is caught
    const msg = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 14, 0xc0, 12, 0, 1, 0, 1])]);
    assert.throws(() => readName(msg, 12), WireError);
  });

  it('rejects names over 255 bytes', () => {
    const labels: number[] = [];
    for (let i = 0; i < 5; i++) labels.push(63, ...Buffer.alloc(63, 0x61));
    labels.push(0);
    assert.throws(() => readQuestion(withName(labels)), /255/);
  });

  it('escapes dots and odd bytes inside labels, and encodes them back', () => {
    const msg = withName([3, 0x61, 0x2e, 0x00, 0]);
    const q = readQuestion(msg);
    assert.equal(q.rawName, 'a\\.\\000.');
    assert.deepEqual(encodeName(q.rawName), Buffer.from([3, 0x61, 0x2e, 0x00, 0]));
  });

  it('encodes names and refuses bad ones', () => {
    assert.deepEqual(encodeName('.'), Buffer.from([0]));
    assert.deepEqual(encodeName('ab.c'), Buffer.from([2, 0x61, 0x62, 1, 0x63, 0]));
    assert.throws(() => encodeName('a..b'), WireError);
    assert.throws(() => encodeName(`${'a'.repeat(64)}.test`), /63/);
  });

  it('answers subdomain questions on label boundaries', () => {
    assert.ok(isSubdomain('a.veil.test.', 'veil.test.'));
    assert.ok(isSubdomain('veil.test.', 'veil.test.'));
    assert.ok(isSubdomain('anything.', '.'));
    assert.ok(!isSubdomain('aveil.test.', 'veil.test.'));
    assert.equal(canonicalName('Example.ORG'), 'example.org.');
  });

  it('rejects a message with QDCOUNT 0 or a short question', () => {
    assert.throws(() => readQuestion(withName([0], 0)), /no question/);
    assert.throws(() => readQuestion(Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1])), WireError);
  });
});

describe('EDNS', () => {
  it('reads the OPT record: size, DO bit, version, options', () => {
    const query = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ type: 'A', name: 'example.org' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: dnsPacket.DNSSEC_OK, options: [{ code: 12, length: 3 } as any] }],
    } as any);
    const edns = readEdns(query)!;
    assert.equal(edns.udpSize, 4096);
    assert.equal(edns.dnssecOk, true);
    assert.equal(edns.version, 0);
    const codes: number[] = [];
    forEachEdnsOption(query, edns, (code) => codes.push(code));
    assert.deepEqual(codes, [12]);
  });

  it('is null without OPT and an error with two', () => {
    assert.equal(readEdns(buildQuery('a.test', 1)), null);
    const one = buildQuery('a.test', 1, { edns: true });
    const two = Buffer.concat([one, one.subarray(one.length - 11)]);
    two.writeUInt16BE(2, 10);
    assert.throws(() => readEdns(two), /more than one OPT/);
  });
});

describe('building replies', () => {
  it('copies ID, RD, CD and the question byte for byte; sets QR and RA', () => {
    const query = buildQuery('MiXeD.test', QType.A, { id: 0xbeef, checkingDisabled: true });
    const q = readQuestion(query);
    const reply = buildReply(query, { questionEnd: q.end, answers: [{ type: QType.A, ttl: 60, rdata: Buffer.from([192, 0, 2, 1]) }], authoritative: true });
    const decoded = dnsPacket.decode(reply);
    assert.equal(decoded.id, 0xbeef);
    assert.equal(decoded.type, 'response');
    assert.ok(decoded.flag_rd && decoded.flag_ra && decoded.flag_aa && decoded.flag_cd);
    assert.equal(decoded.questions![0]!.name, 'MiXeD.test');
    assert.equal((decoded.answers![0] as any).data, '192.0.2.1');
    assert.equal(minimumTtl(reply), 60);
  });

  it('adds an OPT record to error replies when the query had one, with extended rcodes', () => {
    const query = buildQuery('a.test', 1, { edns: { dnssecOk: true } });
    const q = readQuestion(query);
    const reply = errorReply(query, Rcode.BADVERS, q.end, readEdns(query, q.end));
    assert.equal(reply[3]! & 0x0f, 0);
    const edns = readEdns(reply)!;
    assert.equal(edns.extendedRcode, 1);
    assert.equal(edns.dnssecOk, true);
  });

  it('truncates: TC set, sections emptied, question and OPT kept, fits the limit', () => {
    const query = buildQuery('big.test', QType.TXT, { edns: true });
    const q = readQuestion(query);
    const answers = Array.from({ length: 10 }, () => ({ type: QType.TXT, ttl: 60, rdata: Buffer.concat([Buffer.from([200]), Buffer.alloc(200, 0x61)]) }));
    const reply = buildReply(query, { questionEnd: q.end, answers, edns: readEdns(query, q.end) });
    assert.ok(reply.length > 1232);
    const cut = truncateReply(reply, 512);
    assert.ok(cut.length <= 512);
    const decoded = dnsPacket.decode(cut);
    assert.ok(decoded.flag_tc);
    assert.equal(decoded.answers!.length, 0);
    assert.equal(decoded.questions![0]!.name, 'big.test');
    assert.equal(decoded.additionals!.length, 1);
    assert.ok(sameQuestion(cut, query));
  });
});

describe('stream framing', () => {
  it('reassembles messages split anywhere and several in one chunk', () => {
    const a = buildQuery('a.test', 1, { id: 1 });
    const b = buildQuery('bb.test', 1, { id: 2 });
    const stream = Buffer.concat([frame(a), frame(b)]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader();
      const got = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
      assert.deepEqual(got, [a, b], `cut at ${cut}`);
      assert.equal(reader.pending, 0);
    }
    const reader = new FrameReader();
    for (const byte of stream) reader.push(Buffer.from([byte]));
    assert.equal(reader.pending, 0);
  });

  it('holds a partial message without returning it', () => {
    const reader = new FrameReader();
    assert.deepEqual(reader.push(Buffer.from([0xff, 0xff, 1, 2, 3])), []);
    assert.equal(reader.pending, 5);
  });
});

describe('matching an answer to its query', () => {
  it('compares the question case-insensitively and type and class exactly', () => {
    const q = buildQuery('WWW.Example.ORG', QType.A);
    assert.ok(sameQuestion(q, buildQuery('www.example.org', QType.A)));
    assert.ok(!sameQuestion(q, buildQuery('www.example.com', QType.A)));
    assert.ok(!sameQuestion(q, buildQuery('www.example.org', QType.AAAA)));
    assert.ok(!sameQuestion(q, buildQuery('www.example.org', QType.A, { qclass: 3 })));
    assert.ok(!sameQuestion(q, buildQuery('www.example.or', QType.A)));
    // bytes that differ only by 0x20 but are not letters are different names
    assert.ok(!sameQuestion(buildQuery('a[.test', QType.A), buildQuery('a{.test', QType.A)));
    assert.ok(!sameQuestion(q, q.subarray(0, 20)));
  });
});
