import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { ManualClock } from '../../core/clock.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns, type FakeHandler } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { analyze } from './entry.js';
import { CellArena } from './arena.js';
import { CacheStore } from './store.js';
import { readQuestion } from '../../core/dns/wire.js';
import { testRegistry } from '../../test/helpers/plugins.js';

const SOA = { type: 'SOA' as const, name: 'veil.test', ttl: 60, data: { mname: 'ns.veil.test', rname: 'h.veil.test', serial: 1, refresh: 7200, retry: 3600, expire: 1209600, minimum: 30 } };

/** The origin: A answers with TTL 300, NXDOMAIN with a SOA for gone.*, without one for bare.*, SERVFAIL for fail.*, TC for big.* */
const origin: FakeHandler = (q) => {
  // Names arrive in random case (DNS 0x20).
  const name = q.packet.questions![0]!.name.toLowerCase();
  if (name.startsWith('gone.')) return dnsPacket.encode({ id: q.packet.id, type: 'response', flags: 0x0180 | 3, questions: q.packet.questions, authorities: [SOA] });
  if (name.startsWith('bare.')) return answerFor(q, [], { rcode: 'NXDOMAIN' });
  if (name.startsWith('fail.')) return answerFor(q, [], { rcode: 'SERVFAIL' });
  if (name.startsWith('big.')) return answerFor(q, [], { flags: 0x0180 | 0x0200 });
  if (name.startsWith('empty.')) return dnsPacket.encode({ id: q.packet.id, type: 'response', flags: 0x0180, questions: q.packet.questions, authorities: [SOA] });
  return answerFor(q, [
    { type: 'A', name, ttl: 300, data: '192.0.2.1' },
    { type: 'A', name, ttl: 200, data: '192.0.2.2' },
  ]);
};

const ttls = (wire: Buffer) => (dnsPacket.decode(wire).answers ?? []).map((a) => (a as { ttl: number }).ttl);
const rcode = (wire: Buffer) => (dnsPacket.decode(wire) as { rcode?: string }).rcode;

describe('cache', () => {
  let upstream: FakeDns;
  let veil: TestServer;
  let clock: ManualClock;

  async function start(cache = 'cache', handler: FakeHandler = origin): Promise<void> {
    upstream = await startFakeDns(handler);
    clock = new ManualClock();
    veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n ${cache}\n forward . 127.0.0.1:${upstream.port}\n}`, { registry: testRegistry(), clock, queryTimeoutMs: 2000 });
  }
  async function ask(name: string, options: Parameters<typeof buildQuery>[2] = {}, type: number = QType.A): Promise<Buffer> {
    const { host, port } = veil.address('udp://127.0.0.1:0');
    return queryUdp(host, port, buildQuery(name, type, { id: Math.floor(Math.random() * 65536), ...options }), 3000);
  }
  afterEach(async () => {
    await veil?.stop();
    await upstream?.close().catch(() => {}); // some tests close it themselves
  });

  it('a hit is the stored answer, byte for byte, but for the ID and the TTLs, which count down', async () => {
    await start();
    const first = await ask('www.veil.test', { id: 1 });
    const second = await ask('www.veil.test', { id: 2 });
    assert.equal(upstream.queries.length, 1, 'the second answer came from the cache');
    assert.equal(second.readUInt16BE(0), 2);
    assert.deepEqual(second.subarray(2), first.subarray(2), 'same bytes after the ID while no time passed');
    clock.advance(100_500);
    const later = await ask('www.veil.test', { id: 3 });
    assert.deepEqual(ttls(later), [200, 100], 'each TTL minus the 100 s the entry has been kept');
    const blank = (b: Buffer) => Buffer.from(b).fill(0, 0, 2);
    const zeroTtls = (b: Buffer) => {
      const copy = blank(b);
      for (let i = 0; i + 4 <= copy.length; i++) if (copy.readUInt32BE(i) === 300 || copy.readUInt32BE(i) === 200 || copy.readUInt32BE(i) === 100) copy.writeUInt32BE(0, i);
      return copy;
    };
    assert.deepEqual(zeroTtls(later), zeroTtls(first), 'only ID and TTLs differ');
    clock.advance(200_000);
    await ask('www.veil.test');
    assert.equal(upstream.queries.length, 2, 'expired after the smallest TTL (200 s): asked again');
  });

  it("answers in the asking client's case (DNS 0x20)", async () => {
    await start();
    await ask('www.veil.test');
    const mixed = await ask('wWw.VeIl.test');
    assert.equal(upstream.queries.length, 1);
    assert.equal(dnsPacket.decode(mixed).questions![0]!.name, 'wWw.VeIl.test');
  });

  it('keeps apart what changes the answer: type, DO, CD, EDNS', async () => {
    await start();
    await ask('www.veil.test');
    await ask('www.veil.test', {}, QType.AAAA);
    await ask('www.veil.test', { edns: true });
    await ask('www.veil.test', { edns: { dnssecOk: true } });
    await ask('www.veil.test', { checkingDisabled: true });
    assert.equal(upstream.queries.length, 5);
    await ask('WWW.veil.test', { edns: { dnssecOk: true } });
    assert.equal(upstream.queries.length, 5, 'and finds each again');
  });

  it('caches denials for the SOA minimum (RFC 2308), not those without a SOA', async () => {
    await start();
    assert.equal(rcode(await ask('gone.veil.test')), 'NXDOMAIN');
    assert.equal(rcode(await ask('gone.veil.test')), 'NXDOMAIN');
    await ask('empty.veil.test', {}, QType.MX);
    await ask('empty.veil.test', {}, QType.MX);
    assert.equal(upstream.queries.length, 2, 'NXDOMAIN and NODATA with a SOA: cached');
    await ask('bare.veil.test');
    await ask('bare.veil.test');
    assert.equal(upstream.queries.length, 4, 'no SOA: not cached');
    clock.advance(31_000);
    await ask('gone.veil.test');
    assert.equal(upstream.queries.length, 5, 'min(SOA TTL 60, MINIMUM 30) = 30 s');
  });

  it('SERVFAIL for a few seconds only; truncated answers never', async () => {
    await start('cache {\n servfail 3s\n }');
    await ask('fail.veil.test');
    await ask('fail.veil.test');
    assert.equal(upstream.queries.length, 1);
    clock.advance(3_500);
    await ask('fail.veil.test');
    assert.equal(upstream.queries.length, 2);
    await ask('big.veil.test');
    await ask('big.veil.test');
    // (forward asks again over TCP after each truncated UDP answer; count the UDP ones)
    assert.equal(upstream.queries.filter((q) => q.packet.questions![0]!.name.toLowerCase() === 'big.veil.test' && q.transport === 'udp').length, 2);
  });

  it('success MAXTTL caps how long an answer is kept', async () => {
    await start('cache {\n success 100 60 5\n }');
    await ask('www.veil.test');
    clock.advance(30_000);
    assert.deepEqual(ttls(await ask('www.veil.test')), [30, 30], 'TTLs as if 60 at most');
    clock.advance(31_000);
    await ask('www.veil.test');
    assert.equal(upstream.queries.length, 2);
  });

  it('is bounded: the capacity holds, the least useful entries go', async () => {
    await start('cache 3');
    for (const n of [1, 2, 3]) await ask(`n${n}.veil.test`);
    await ask('n3.veil.test'); // visited: survives
    for (const n of [4, 5]) await ask(`n${n}.veil.test`);
    assert.equal(upstream.queries.length, 5);
    await ask('n3.veil.test');
    assert.equal(upstream.queries.length, 5, 'n3 was kept');
    await ask('n1.veil.test');
    assert.equal(upstream.queries.length, 6, 'n1 was evicted');
  });

  it('with the upstream gone: cached names are still served; expired ones only with serve_stale (TTL 30)', async () => {
    await start('cache {\n serve_stale 1h\n }');
    await ask('www.veil.test');
    await upstream.close();
    assert.deepEqual(ttls(await ask('www.veil.test')), [300, 200]);
    clock.advance(250_000);
    const stale = await ask('www.veil.test');
    assert.equal(rcode(stale), 'NOERROR');
    assert.deepEqual(ttls(stale), [30, 30]);
    clock.advance(3_600_000);
    assert.equal(rcode(await ask('www.veil.test')), 'SERVFAIL', 'past the serve_stale window');
  });

  it('without serve_stale an expired entry is not served', async () => {
    await start('cache');
    await ask('www.veil.test');
    await upstream.close();
    clock.advance(250_000);
    assert.equal(rcode(await ask('www.veil.test')), 'SERVFAIL');
  });

  it('prefetch refreshes a popular entry before it expires', async () => {
    await start('cache {\n prefetch 2 1m 50%\n }');
    await ask('www.veil.test');
    clock.advance(150_000); // 200 s TTL: 25% left
    await ask('www.veil.test');
    assert.equal(upstream.queries.length, 1, 'one hit is not enough');
    await ask('www.veil.test');
    for (let i = 0; i < 100 && upstream.queries.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(upstream.queries.length, 2, 'the second hit started a refresh');
    for (let i = 0; i < 100 && ttls(await ask('www.veil.test'))[0] !== 300; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(ttls(await ask('www.veil.test')), [300, 200], 'the refreshed entry is in use');
  });
});

describe('CacheStore', () => {
  let evicted = 0;
  const store = () => new CacheStore(3, () => evicted++);
  /** An answer for `name` with one A record of TTL 300. */
  const answer = (name: string) =>
    dnsPacket.encode({ type: 'response', id: 1, flags: 0x8180, questions: [{ type: 'A', name }], answers: [{ type: 'A', name, ttl: 300, data: '192.0.2.1' }] });
  const ttlOffset = (wire: Buffer) => analyze(wire)!.ttlOffsets[0]!;
  const put = (s: CacheStore, name: string, bits = 0) => {
    const wire = answer(name);
    s.set(wire, readQuestion(wire).end, bits, 'success', [ttlOffset(wire)], 0, 300);
  };
  const has = (s: CacheStore, name: string, bits = 0) => {
    const q = buildQuery(name, QType.A);
    return s.get(q, readQuestion(q).end, bits) !== null;
  };

  it('never holds more than its capacity; a used entry gets a second chance', () => {
    const s = store();
    evicted = 0;
    put(s, 'a.test');
    put(s, 'b.test');
    put(s, 'c.test');
    assert.ok(has(s, 'a.test'));
    put(s, 'd.test');
    assert.equal(s.size, 3);
    assert.equal(evicted, 1);
    assert.ok(has(s, 'a.test'), 'used since it was stored: kept');
    assert.ok(!has(s, 'b.test'), 'the first one not used: evicted');
    for (let i = 0; i < 100; i++) put(s, `n${i}.test`);
    assert.equal(s.size, 3);
    assert.equal(evicted, 101);
  });

  it('finds an entry in any case, keeps key bits apart, and replaces in place', () => {
    const s = store();
    put(s, 'Mixed.Case.test');
    assert.ok(has(s, 'mixed.case.test'));
    assert.ok(has(s, 'MIXED.CASE.TEST'));
    assert.ok(!has(s, 'mixed.case.test', 1), 'another DO/CD/EDNS combination');
    put(s, 'mixed.case.test');
    assert.equal(s.size, 1);
    s.delete(buildQuery('MIXED.case.test', QType.A), readQuestion(answer('mixed.case.test')).end, 0);
    assert.equal(s.size, 0);
  });

  it('renders a copy: TTLs rewritten, the query\'s case, the rest byte for byte', () => {
    const s = store();
    put(s, 'web.test');
    const query = buildQuery('WEB.test', QType.A);
    const found = s.get(query, readQuestion(query).end, 0)!;
    const out = s.render(found.slot, query, (ttl) => ttl - 100);
    const expected = answer('web.test');
    expected.write('WEB', 13, 'latin1'); // the question only: names in records stay as stored
    expected.writeUInt32BE(200, ttlOffset(expected));
    assert.deepEqual(out, expected);
  });

  it('keeps its memory bounded while answers of every size come and go', () => {
    const s = new CacheStore(64);
    const sized = (name: string, records: number) =>
      dnsPacket.encode({ type: 'response', id: 1, flags: 0x8180, questions: [{ type: 'A', name }], answers: Array.from({ length: records }, (_, i) => ({ type: 'A' as const, name, ttl: 300, data: `192.0.2.${i}` })) });
    let peak = 0;
    for (let i = 0; i < 20_000; i++) {
      const wire = sized(`n${i}.test`, 1 + (i % 40));
      s.set(wire, readQuestion(wire).end, 0, 'success', analyze(wire)!.ttlOffsets, 0, 300);
      if (i === 2_000) peak = s.arenaBytes;
    }
    assert.equal(s.size, 64);
    assert.equal(s.arenaBytes, peak, 'after the first turns of the hand, freed cells hold the new answers: no growth');
  });

  it('stays correct through many deletes (the table is rebuilt without its tombstones)', () => {
    const s = new CacheStore(64);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 64; i++) put(s, `r${round}-${i}.test`);
      for (let i = 0; i < 64; i += 2) s.delete(buildQuery(`r${round}-${i}.test`, QType.A), readQuestion(answer(`r${round}-${i}.test`)).end, 0);
    }
    assert.ok(has(s, 'r19-1.test'));
    assert.ok(!has(s, 'r19-2.test'));
    assert.ok(s.size <= 64);
  });
});

describe('CellArena', () => {
  const bytes = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
  const readAll = (arena: CellArena, first: number, length: number) => {
    const out = Buffer.alloc(length);
    arena.read(first, 0, length, out, 0);
    return out;
  };

  it('gives back what was written, from any offset, across cells', () => {
    const arena = new CellArena();
    const entries = [1, 47, 48, 49, 95, 96, 500, 4096].map((length, i) => ({ data: bytes(length, i), first: 0 }));
    for (const e of entries) e.first = arena.write(e.data, 0, e.data.length);
    for (const e of entries) {
      assert.deepEqual(readAll(arena, e.first, e.data.length), e.data);
      if (e.data.length > 60) {
        const part = Buffer.alloc(40);
        arena.read(e.first, 30, 70, part, 0);
        assert.deepEqual(part, e.data.subarray(30, 70), 'a range that starts in one cell and ends in the next');
      }
    }
  });

  it('compares in place, folding the message\'s capitals before the given offset only', () => {
    const arena = new CellArena();
    const stored = Buffer.from('x'.repeat(40) + 'abcdefghij' + 'KLMNOP' + 'y'.repeat(40), 'latin1');
    const first = arena.write(stored, 0, stored.length);
    const msg = Buffer.from(stored);
    msg.write('ABCDEFGHIJ', 40, 'latin1');
    assert.ok(arena.equalsFolded(first, msg, 10, 80, 50), 'capitals before 50 match lower case across the cell boundary');
    assert.ok(!arena.equalsFolded(first, msg, 10, 80, 45), 'capitals past the fold limit do not');
    msg[70] = 0x21;
    assert.ok(!arena.equalsFolded(first, msg, 10, 80, 50), 'a byte in the second cell differs');
    assert.ok(arena.equalsFolded(first, msg, 10, 60, 50));
  });

  it('reuses freed cells whatever size held them', () => {
    const arena = new CellArena();
    const big = Array.from({ length: 200 }, (_, i) => arena.write(bytes(2000, i), 0, 2000));
    const size = arena.byteSize;
    for (const first of big) arena.free(first);
    const small = Array.from({ length: 4000 }, (_, i) => ({ first: arena.write(bytes(90, i), 0, 90), seed: i }));
    assert.equal(arena.byteSize, size, 'no new slab: the big entries\' cells hold the small ones');
    for (const s of small) assert.deepEqual(readAll(arena, s.first, 90), bytes(90, s.seed));
  });
});
