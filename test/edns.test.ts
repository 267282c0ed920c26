import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { EdnsOption, QType } from '../core/dns/constants.js';
import { ednsForUpstream, fitAnswerToQuery, padMessage } from '../core/dns/edns.js';
import { buildQuery, ednsOption } from '../core/dns/message.js';
import { forEachEdnsOption, readEdns, readQuestion } from '../core/dns/wire.js';

function optionCodes(msg: Buffer): number[] {
  const codes: number[] = [];
  forEachEdnsOption(msg, readEdns(msg)!, (code) => codes.push(code));
  return codes;
}

describe('EDNS padding (RFC 7830, RFC 8467 block policy)', () => {
  for (const name of ['a.test', 'a-much-longer-name.with.several.labels.example.org', 'x'.repeat(60) + '.test']) {
    it(`pads ${name.length}-character names to a multiple of 128`, () => {
      for (const edns of [false, true] as const) {
        const padded = padMessage(buildQuery(name, QType.A, { id: 9, edns }));
        assert.equal(padded.length % 128, 0, `length ${padded.length}`);
        assert.deepEqual(optionCodes(padded), [EdnsOption.PADDING]);
        assert.equal(readQuestion(padded).name, name + '.');
        assert.doesNotThrow(() => dnsPacket.decode(padded));
      }
    });
  }

  it('replaces existing padding and keeps other options', () => {
    const query = buildQuery('a.test', QType.A, { edns: { options: Buffer.concat([ednsOption(10, Buffer.alloc(8, 1)), ednsOption(EdnsOption.PADDING, Buffer.alloc(300))]) } });
    const padded = padMessage(query);
    assert.equal(padded.length, 128);
    assert.deepEqual(optionCodes(padded), [10, EdnsOption.PADDING]);
  });
});

describe('the EDNS a query carries upstream', () => {
  it('issue 24 low: every client option goes (Client Subnet, Cookie, any other), flags and version stay', () => {
    const ecs = ednsOption(EdnsOption.ECS, Buffer.from([0, 1, 24, 0, 192, 0, 2]));
    const options = Buffer.concat([ecs, ednsOption(EdnsOption.COOKIE, Buffer.alloc(8)), ednsOption(3, Buffer.alloc(0))]);
    const query = buildQuery('a.test', QType.A, { edns: { options, dnssecOk: true, udpSize: 1232 } });
    const out = ednsForUpstream(query);
    assert.deepEqual(optionCodes(out), []);
    const edns = readEdns(out)!;
    assert.equal(edns.dnssecOk, true);
    assert.equal(edns.version, 0);
    assert.equal(edns.udpSize, 1232);
    assert.equal(out.length, query.length - options.length);
    assert.equal(dnsPacket.decode(out).questions![0]!.name, 'a.test');
  });

  it('issue 24 finding 6: a client buffer size over 1232 is lowered to 1232; smaller ones stay', () => {
    const big = buildQuery('a.test', QType.A, { edns: { udpSize: 65535 } });
    assert.equal(readEdns(ednsForUpstream(big))!.udpSize, 1232);
    const small = buildQuery('a.test', QType.A, { edns: { udpSize: 1200 } });
    assert.equal(ednsForUpstream(small), small, 'nothing to change: the same buffer');
    const plain = buildQuery('a.test', QType.A, {});
    assert.equal(ednsForUpstream(plain), plain);
  });
});

describe('OPT removal (for clients that sent none)', () => {
  it('removes a last OPT record and fixes ARCOUNT; leaves other messages alone', () => {
    const answer = dnsPacket.encode({
      type: 'response',
      id: 5,
      questions: [{ type: 'A', name: 'a.test' }],
      answers: [{ type: 'A', name: 'a.test', ttl: 60, data: '192.0.2.1' }],
      additionals: [{ type: 'A', name: 'ns.a.test', ttl: 60, data: '192.0.2.2' }, { type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    const stripped = fitAnswerToQuery(answer, false);
    const decoded = dnsPacket.decode(stripped);
    assert.equal(readEdns(stripped), null);
    assert.deepEqual(decoded.additionals!.map((r) => r.name), ['ns.a.test']);
    assert.equal((decoded.answers![0] as { data: string }).data, '192.0.2.1');
    const noOpt = buildQuery('a.test', QType.A);
    assert.equal(fitAnswerToQuery(noOpt, false), noOpt);
    // OPT first, another record after it: cutting it out could break pointers, so it stays.
    const optFirst = dnsPacket.encode({
      type: 'response',
      questions: [{ type: 'A', name: 'a.test' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }, { type: 'A', name: 'a.test', ttl: 1, data: '192.0.2.3' }],
    });
    assert.equal(fitAnswerToQuery(optFirst, false), optFirst);
  });
});
