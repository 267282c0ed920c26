/**
 * A query that fails gets SERVFAIL with an Extended DNS Error (RFC 8914) saying why, whether
 * the errors plugin or the door turns the failure into the answer; a client without EDNS gets
 * a plain SERVFAIL (EDE needs an OPT record).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EdnsOption, QType, rcodeName } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { forEachEdnsOption, fullRcode, readEdns } from '../core/dns/wire.js';
import { queryUdp } from '../core/testing/client.js';
import { startTestServer } from '../core/testing/server.js';
import { freePort } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

/** The EDE options of an answer: [code, text]. */
function extendedErrors(answer: Buffer): Array<[number, string]> {
  const found: Array<[number, string]> = [];
  const edns = readEdns(answer);
  if (!edns) return found;
  forEachEdnsOption(answer, edns, (code, start, length) => {
    if (code === EdnsOption.EDE) found.push([answer.readUInt16BE(start), answer.toString('utf8', start + 2, start + length)]);
  });
  return found;
}

describe('SERVFAIL with an Extended DNS Error', () => {
  for (const errors of [true, false]) {
    it(`no upstream reachable: EDE 22 (${errors ? 'errors plugin' : 'the door, without errors'})`, async () => {
      const dead = await freePort();
      const veil = await startTestServer(`. {\n  listen udp://127.0.0.1:0\n${errors ? '  errors\n' : ''}  forward {\n    server gone tcp://127.0.0.1:${dead}\n  }\n}`, {
        registry: testRegistry(),
        queryTimeoutMs: 1500,
      });
      try {
        const at = veil.address('udp://127.0.0.1:0');
        const withEdns = await queryUdp(at.host, at.port, buildQuery('example.test', QType.A, { id: 1, edns: true }), 5000);
        assert.equal(rcodeName(fullRcode(withEdns)), 'SERVFAIL');
        assert.deepEqual(extendedErrors(withEdns), [[22, 'no upstream reachable']]);
        const without = await queryUdp(at.host, at.port, buildQuery('example.test', QType.A, { id: 2 }), 5000);
        assert.equal(rcodeName(fullRcode(without)), 'SERVFAIL');
        assert.equal(readEdns(without), null);
      } finally {
        await veil.stop();
      }
    });
  }
});
