/**
 * The HTTP/2 client's request fields (lib/http2/request-fields.ts) against the HPACK decoder that
 * stands for the server (lib/http2/hpack.ts): random sequences of requests of several kinds, with
 * table sizes the server changes between them, must decode to the fields sent, whatever the
 * client added to the table and evicted. A model that ran ahead of the server's table would name
 * an entry the server no longer has, or the wrong one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HpackDecoder } from '../lib/http2/hpack.js';
import { RequestFieldIndex } from '../lib/http2/request-fields.js';

/** A small deterministic generator: a failing seed can be run again. */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

const AUTHORITIES = ['dns.test', 'dns.test:8443', `${'long-label.'.repeat(22)}test`];
const PATHS = ['/dns-query', '/proxy', '/dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE'];
const TYPES = ['application/dns-message', 'application/oblivious-dns-message'];
const SIZES = [0, 40, 100, 160, 300, 4096, 65536];

describe('request fields: what the client indexes stays in step with the server table', () => {
  it('random requests and table sizes decode to the fields sent (300 sequences of 40 blocks)', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
      const fields = new RequestFieldIndex();
      const server = new HpackDecoder();
      for (let block = 0; block < 40; block++) {
        // The server changes its SETTINGS_HEADER_TABLE_SIZE (at most its initial 4096 here, which
        // the decoder holds the client to), sometimes twice between two blocks.
        if (next() < 0.15) fields.allow(Math.min(pick(SIZES), 4096));
        if (next() < 0.05) fields.allow(Math.min(pick(SIZES), 4096));
        const authority = pick(AUTHORITIES);
        const path = pick(PATHS);
        const type = pick(TYPES);
        const get = path.includes('?');
        const parts: number[] = [];
        fields.begin(parts);
        parts.push(0x80 | (get ? 2 : 3), 0x80 | 7);
        fields.field(parts, 1, ':authority', authority, true);
        fields.field(parts, 4, ':path', path, !get);
        fields.field(parts, 19, 'accept', type, true);
        if (!get) fields.field(parts, 31, 'content-type', type, true);
        const expected: [string, string][] = [
          [':method', get ? 'GET' : 'POST'],
          [':scheme', 'https'],
          [':authority', authority],
          [':path', path],
          ['accept', type],
        ];
        if (!get) expected.push(['content-type', type]);
        const decoded = server.decode(Buffer.from(parts), 1 << 20).headers;
        assert.deepEqual(decoded, expected, `seed ${seed}, block ${block}`);
      }
    }
  });

  it('a request of the same kind, once its fields are in the table, is the same bytes and adds nothing', () => {
    const fields = new RequestFieldIndex();
    const encode = () => {
      const parts: number[] = [];
      fields.begin(parts);
      fields.field(parts, 1, ':authority', 'dns.test', true);
      fields.field(parts, 4, ':path', '/dns-query', true);
      return Buffer.from(parts);
    };
    const first = encode();
    const generation = fields.generation;
    const second = encode();
    assert.notDeepEqual(second, first);
    assert.deepEqual([...second], [0x80 | 63, 0x80 | 62]);
    assert.equal(fields.generation, generation, 'nothing added or evicted');
    assert.deepEqual(encode(), second);
  });
});
