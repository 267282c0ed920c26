/**
 * The dnssec plugin's pieces, in-process: canonical names and ordering (RFC 4034 §6), RDATA
 * canonical form, reading and writing messages, DNSKEYs as node:crypto keys for every
 * algorithm, NSEC3 hashing (RFC 5155 Appendix A), denial proofs, signature windows, the work
 * budget and trust anchor files (the configuration: setup.test.ts). Real signed zones are in
 * test/interop/dnssec.test.ts.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { buildQuery } from '../../core/dns/message.js';
import { encodeName, readEdns } from '../../core/dns/wire.js';
import { parseAnchors, AnchorError, ROOT_ANCHOR_TEXT } from './anchors.js';
import { hasEd448, keyTag, nsec3Hash, publicKeyOf, readDnskey, verifySignature } from './crypto.js';
import { base32hexDecode, base32hexEncode, Proofs } from './denial.js';
import { dnssecQuery } from './index.js';
import { compareNames, isAtOrBelow, lowerName, nameText, suffixName, type WireName } from './names.js';
import { canonicalRdata, groupRRsets, parseMessage, Type, writeMessage, type RRset, type Rr } from './records.js';
import { checkWindow } from './rrsig.js';
import { WorkBudget, WorkExceeded } from './verdict.js';
import { ZoneCache } from './zone-cache.js';

const wire = (text: string): WireName => lowerName(encodeName(text));

describe('names', () => {
  it('sort in RFC 4034 §6.1 canonical order (its own example)', () => {
    const ordered = ['example.', 'a.example.', 'yljkjljk.a.example.', 'Z.a.example.', 'zABC.a.EXAMPLE.', 'z.example.', '\\001.z.example.', '*.z.example.', '\\200.z.example.'];
    const shuffled = [...ordered].reverse().map(wire);
    shuffled.sort(compareNames);
    assert.deepEqual(shuffled.map(nameText), ordered.map((n) => nameText(wire(n))));
  });

  it('compare like labels compared from the right, as octet strings (property)', () => {
    const label = fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => Buffer.from(b.map((c) => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c))));
    const name = fc.array(label, { maxLength: 5 }).map((labels) => Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]));
    const reference = (a: Buffer, b: Buffer): number => {
      const labels = (n: Buffer) => {
        const out: Buffer[] = [];
        for (let p = 0; n[p] !== 0; p += n[p]! + 1) out.push(n.subarray(p + 1, p + 1 + n[p]!));
        return out.reverse();
      };
      const la = labels(a);
      const lb = labels(b);
      for (let i = 0; i < Math.min(la.length, lb.length); i++) {
        const c = Buffer.compare(la[i]!, lb[i]!);
        if (c !== 0) return c;
      }
      return la.length - lb.length;
    };
    fc.assert(
      fc.property(name, name, (a, b) => {
        const sign = (x: number) => (x > 0 ? 1 : x < 0 ? -1 : 0);
        assert.equal(sign(compareNames(a, b)), sign(reference(a, b)));
        assert.equal(sign(compareNames(a, b)), -sign(compareNames(b, a)) || 0);
        assert.equal(isAtOrBelow(a, b), countLabels(a) >= countLabels(b) && suffixName(a, countLabels(b)).equals(b));
      }),
      { numRuns: 2000, seed: 4034 },
    );
  });

  it('a label boundary decides what is below what', () => {
    assert.ok(isAtOrBelow(wire('www.example.'), wire('example.')));
    assert.ok(!isAtOrBelow(wire('wwwexample.'), wire('example.')));
    assert.ok(!isAtOrBelow(wire('a.bexample.'), wire('example.')));
    assert.ok(isAtOrBelow(wire('example.'), wire('.')));
  });
});

function countLabels(name: Buffer): number {
  let n = 0;
  for (let p = 0; name[p] !== 0; p += name[p]! + 1) n++;
  return n;
}

describe('records', () => {
  it('canonical RDATA lower-cases names for the types RFC 4034 §6.2 lists, not in NSEC (RFC 6840 §5.1)', () => {
    const mx = Buffer.concat([Buffer.from([0, 10]), encodeName('Mail.Example.')]);
    assert.deepEqual(canonicalRdata(Type.MX, mx), Buffer.concat([Buffer.from([0, 10]), encodeName('mail.example.')]));
    const nsec = Buffer.concat([encodeName('Next.Example.'), Buffer.from([0, 1, 0x40])]);
    assert.deepEqual(canonicalRdata(Type.NSEC, nsec), nsec);
    const txt = Buffer.from('\x05HeLLo');
    assert.deepEqual(canonicalRdata(Type.TXT, txt), txt);
  });

  it('a compressed message reads whole and writes back to the same records, compressed again', () => {
    const msg = dnsPacket.encode({
      type: 'response',
      id: 9,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'MX', name: 'Example.org' }],
      answers: [
        { type: 'MX', name: 'example.org', ttl: 60, data: { preference: 10, exchange: 'mail.example.org' } },
        { type: 'CNAME', name: 'www.example.org', ttl: 60, data: 'example.org' },
        { type: 'TXT', name: 'example.org', ttl: 60, data: ['hello'] },
      ],
      authorities: [{ type: 'SOA', name: 'example.org', ttl: 60, data: { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } }],
    });
    const parsed = parseMessage(msg);
    assert.equal(nameText(parsed.qname), 'example.org.');
    const mx = parsed.answer[0]!;
    assert.deepEqual(mx.rdata, Buffer.concat([Buffer.from([0, 10]), encodeName('mail.example.org')]), 'the MX exchange is decompressed');
    const written = writeMessage(parsed.header, parsed.question, [parsed.answer, parsed.authority, parsed.additional], null);
    const again = parseMessage(written);
    const strip = (rrs: Rr[]) => rrs.map((rr) => [nameText(rr.owner), rr.type, rr.ttl, rr.rdata.toString('hex')]);
    assert.deepEqual(strip(again.answer), strip(parsed.answer));
    assert.deepEqual(strip(again.authority), strip(parsed.authority));
    assert.ok(written.length < 12 + parsed.question.length + 4 * 40 + 100, `owner names compressed (${written.length} bytes)`);
    // names compare without case: an owner may point at the question's spelling
    assert.deepEqual(dnsPacket.decode(written).answers!.map((a) => a.name.toLowerCase()), ['example.org', 'www.example.org', 'example.org']);
  });

  it('malformed messages are WireErrors, never anything else (pointer loops, short RDATA)', () => {
    const good = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'a.test' }], answers: [{ type: 'MX', name: 'a.test', ttl: 1, data: { preference: 1, exchange: 'b.a.test' } }] });
    for (let cut = 0; cut < good.length; cut++) {
      assert.throws(() => parseMessage(good.subarray(0, cut)), (err: Error) => err.name === 'WireError');
    }
    const loop = Buffer.from(good);
    loop.writeUInt16BE(0xc000 | (loop.length - 2), loop.length - 2); // the exchange's pointer points at itself
    assert.throws(() => parseMessage(loop), (err: Error) => err.name === 'WireError');
  });

  it('the upstream query asks with DO=1 and CD=1, adding an OPT record when the client sent none', () => {
    const plain = dnssecQuery(buildQuery('a.test', 1));
    assert.equal(plain[3]! & 0x10, 0x10);
    assert.equal(readEdns(plain)?.dnssecOk, true);
    const withEdns = dnssecQuery(buildQuery('a.test', 1, { edns: { udpSize: 4096 } }));
    assert.equal(readEdns(withEdns)?.dnssecOk, true);
    assert.equal(readEdns(withEdns)?.udpSize, 4096);
    assert.equal(withEdns.readUInt16BE(10), 1);
  });
});

describe('crypto', () => {
  /** DNSKEY RDATA (flags 257) for a node:crypto key pair, in the algorithm's public key format. */
  function dnskeyFor(algorithm: number, publicKey: KeyObject): Buffer {
    const jwk = publicKey.export({ format: 'jwk' });
    const b = (s?: string) => Buffer.from(s!, 'base64url');
    let key: Buffer;
    if (jwk.kty === 'RSA') {
      const e = b(jwk.e);
      key = Buffer.concat([Buffer.from([e.length]), e, b(jwk.n)]);
    } else if (jwk.kty === 'EC') key = Buffer.concat([b(jwk.x), b(jwk.y)]);
    else key = b(jwk.x);
    return Buffer.concat([Buffer.from([1, 1, 3, algorithm]), key]);
  }

  const cases: Array<[number, () => { publicKey: KeyObject; privateKey: KeyObject }, string | null, object]> = [
    [8, () => generateKeyPairSync('rsa', { modulusLength: 2048 }), 'sha256', {}],
    [10, () => generateKeyPairSync('rsa', { modulusLength: 2048 }), 'sha512', {}],
    [5, () => generateKeyPairSync('rsa', { modulusLength: 1024 }), 'sha1', {}],
    [13, () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'sha256', { dsaEncoding: 'ieee-p1363' }],
    [14, () => generateKeyPairSync('ec', { namedCurve: 'P-384' }), 'sha384', { dsaEncoding: 'ieee-p1363' }],
    [15, () => generateKeyPairSync('ed25519'), null, {}],
    ...(hasEd448() ? [[16, () => generateKeyPairSync('ed448'), null, {}] as [number, () => { publicKey: KeyObject; privateKey: KeyObject }, string | null, object]] : []),
  ];
  for (const [algorithm, make, hash, options] of cases) {
    it(`algorithm ${algorithm}: a DNSKEY becomes a key that verifies its signatures, and only those`, () => {
      const pair = make();
      const dnskey = readDnskey(dnskeyFor(algorithm, pair.publicKey))!;
      const key = publicKeyOf(dnskey);
      assert.ok(key, 'the DNSKEY reads as a public key');
      const data = Buffer.from('signed data');
      const signature = sign(hash, data, { key: pair.privateKey, ...options });
      assert.ok(verifySignature(algorithm, key, data, signature));
      assert.ok(!verifySignature(algorithm, key, Buffer.from('other data'), signature));
      signature[signature.length - 1] = signature[signature.length - 1]! ^ 1;
      assert.ok(!verifySignature(algorithm, key, data, signature));
    });
  }

  it('RSA keys under 1024 bits and malformed keys are not keys', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 512 });
    assert.equal(publicKeyOf(readDnskey(dnskeyFor(8, small.publicKey))!), null);
    assert.equal(publicKeyOf(readDnskey(Buffer.from([1, 1, 3, 13, 1, 2, 3]))!), null);
    assert.equal(publicKeyOf(readDnskey(Buffer.from([1, 1, 3, 200, 1, 2, 3]))!), null);
  });

  it('key tags (RFC 4034 Appendix B) are the 16-bit one\'s complement sum', () => {
    assert.equal(keyTag(Buffer.from([0x01, 0x01, 0x03, 0x08])), (0x0101 + 0x0308) & 0xffff);
    assert.equal(keyTag(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x02])), 2, 'the carry folds back in');
    assert.equal(keyTag(Buffer.from([0x01, 0x02, 0x03])), 0x0402, 'an odd byte is a high byte');
  });

  it('NSEC3 hashes match RFC 5155 Appendix A', () => {
    const salt = Buffer.from('aabbccdd', 'hex');
    assert.equal(base32hexEncode(nsec3Hash(wire('example.'), salt, 12)), '0p9mhaveqvm6t7vbl5lop2u3t2rp3tom');
    assert.equal(base32hexEncode(nsec3Hash(wire('a.example.'), salt, 12)), '35mthgpgcu1qg68fab165klnsnk3dpvl');
    assert.deepEqual(base32hexDecode('0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM'), nsec3Hash(wire('example.'), salt, 12));
    assert.equal(base32hexDecode('not base32!'), null);
  });
});

/** A type bitmap with these types (RFC 4034 §4.1.2). */
function bitmap(...types: number[]): Buffer {
  const windows = new Map<number, number[]>();
  for (const t of types) {
    const bytes = windows.get(t >> 8) ?? [];
    const i = (t & 0xff) >> 3;
    while (bytes.length <= i) bytes.push(0);
    bytes[i] = bytes[i]! | (0x80 >> (t & 7));
    windows.set(t >> 8, bytes);
  }
  return Buffer.concat([...windows.entries()].sort(([a], [b]) => a - b).map(([w, bytes]) => Buffer.from([w, bytes.length, ...bytes])));
}

function nsecSet(owner: string, next: string, ...types: number[]): RRset {
  const rr: Rr = { owner: wire(owner), rawOwner: wire(owner), type: Type.NSEC, qclass: 1, ttl: 300, rdata: Buffer.concat([encodeName(next), bitmap(...types)]), section: 1 };
  return { owner: rr.owner, type: Type.NSEC, qclass: 1, rrs: [rr], sigs: [] };
}

describe('denial of existence (NSEC)', () => {
  const budget = () => new WorkBudget(100, () => false);
  const zone = wire('example.');
  const sets = [
    nsecSet('example.', 'a.example.', Type.SOA, Type.NS, Type.NSEC, Type.RRSIG, Type.DNSKEY),
    nsecSet('a.example.', 'deleg.example.', Type.A, Type.NSEC, Type.RRSIG),
    nsecSet('deleg.example.', 'x.y.example.', Type.NS, Type.NSEC, Type.RRSIG),
    nsecSet('x.y.example.', 'example.', Type.A, Type.NSEC, Type.RRSIG),
  ];
  const proofs = new Proofs(zone, sets, budget());

  it('NXDOMAIN: a covering NSEC and the wildcard denied', () => {
    assert.equal(proofs.nameError(wire('b.example.')).security, 'secure');
    assert.equal(proofs.nameError(wire('zz.example.')).security, 'secure'); // covered by the last NSEC
  });
  it('NXDOMAIN for a name that exists, or without proofs, is bogus', () => {
    assert.equal(proofs.nameError(wire('a.example.')).security, 'bogus');
    assert.equal(new Proofs(zone, [], budget()).nameError(wire('b.example.')).ede, 12);
  });
  it('NODATA: the NSEC at the name lacks the type (and CNAME)', () => {
    assert.equal(proofs.noData(wire('a.example.'), Type.MX).security, 'secure');
    assert.equal(proofs.noData(wire('a.example.'), Type.A).security, 'bogus');
  });
  it('an empty non-terminal: the covering NSEC leads below the name', () => {
    assert.equal(proofs.noData(wire('y.example.'), Type.A).security, 'secure');
  });
  it('the parent side of a delegation proves nothing about the child (RFC 6840 §4.1)', () => {
    assert.equal(proofs.noData(wire('deleg.example.'), Type.A).security, 'bogus');
    assert.equal(proofs.nameError(wire('www.deleg.example.')).security, 'bogus');
    assert.equal(proofs.noDs(wire('deleg.example.')), 'delegation');
    assert.equal(proofs.noDs(wire('a.example.')), 'inside');
    assert.equal(proofs.noDs(wire('b.example.')), 'nonexistent');
    assert.equal(proofs.noDs(wire('y.example.')), 'inside');
  });
  it('a wildcard answer needs the proof that no closer name exists', () => {
    assert.equal(proofs.wildcardAnswer(wire('b.example.'), zone).security, 'secure');
    assert.equal(proofs.wildcardAnswer(wire('a.example.'), zone).security, 'bogus');
  });
});

describe('signature windows and work', () => {
  const sig = (inception: number, expiration: number) => ({ inception, expiration }) as Parameters<typeof checkWindow>[0];
  it('inside, expired, not yet valid; a tenth of the window (1 min to 1 h) forgiven', () => {
    const now = 1_800_000_000;
    assert.equal(checkWindow(sig(now - 1000, now + 1000), now), 'ok');
    assert.equal(checkWindow(sig(now - 30 * 86400, now - 86400), now), 'expired');
    assert.equal(checkWindow(sig(now + 86400, now + 30 * 86400), now), 'not-yet-valid');
    assert.equal(checkWindow(sig(now - 30 * 86400, now - 600), now), 'ok', '10 minutes late is within the hour allowed');
    assert.equal(checkWindow(sig(now - 1000, now - 100), now), 'expired', 'a 15-minute window forgives 90 s');
    assert.equal(checkWindow(sig(now - 1000, now - 80), now), 'ok');
  });
  it('serial arithmetic across 2106 (RFC 1982)', () => {
    const now = 0xffffff00;
    assert.equal(checkWindow(sig(now - 100_000, (now + 100_000) >>> 0), now), 'ok');
  });
  it('the budget stops at its limit and at the deadline', () => {
    const budget = new WorkBudget(3, () => false);
    budget.spend();
    budget.spend();
    budget.spend();
    assert.throws(() => budget.spend(), WorkExceeded);
    assert.throws(() => new WorkBudget(100, () => true).spend(), WorkExceeded);
  });
});

describe('trust anchors', () => {
  it('the built-in root anchors are KSK-2017 and KSK-2024', () => {
    const root = parseAnchors(ROOT_ANCHOR_TEXT).get('.')!;
    assert.deepEqual(root.ds.map((d) => d.keyTag), [20326, 38696]);
  });
  it('anchor files: DS and DNSKEY lines, TTL and class optional, parentheses, comments', () => {
    const anchors = parseAnchors(`; lab\nlab. 3600 IN DS 1234 13 2 ( AABB\n CCDD ) ; split\nLab. DNSKEY 257 3 13 ${Buffer.alloc(64, 7).toString('base64')}\n`);
    const lab = anchors.get('lab.')!;
    assert.deepEqual(lab.ds[0]!.digest, Buffer.from('aabbccdd', 'hex'));
    assert.equal(lab.keys.length, 1);
    assert.throws(() => parseAnchors('lab. IN A 192.0.2.1\n'), (err: AnchorError) => err.line === 1 && /DS or DNSKEY/.test(err.message));
    assert.throws(() => parseAnchors('\nlab. DS 1 2 3 XYZ\n'), (err: AnchorError) => err.line === 2);
  });
});

// groupRRsets is what the validator reads answers through: RRSIGs go with the RRset they cover.
describe('RRsets', () => {
  it('group records by owner, type and class; RRSIGs by the type they cover; duplicates once', () => {
    const rr = (owner: string, type: number, rdata: Buffer): Rr => ({ owner: wire(owner), rawOwner: encodeName(owner), type, qclass: 1, ttl: 60, rdata, section: 0 });
    const rrsigA = Buffer.concat([Buffer.from([0, 1, 13, 2, 0, 0, 0, 60, 0, 0, 0, 2, 0, 0, 0, 1, 0, 7]), encodeName('Example.'), Buffer.alloc(64)]);
    const sets = groupRRsets([rr('a.example.', 1, Buffer.from([1, 2, 3, 4])), rr('A.example.', 1, Buffer.from([1, 2, 3, 4])), rr('a.example.', 1, Buffer.from([5, 6, 7, 8])), rr('a.example.', Type.RRSIG, rrsigA), rr('a.example.', 28, Buffer.alloc(16))]);
    assert.equal(sets.length, 2);
    assert.equal(sets[0]!.rrs.length, 2);
    assert.equal(sets[0]!.sigs.length, 1);
    assert.equal(nameText(sets[0]!.sigs[0]!.signer), 'example.');
    assert.equal(sets[1]!.sigs.length, 0);
  });
});

describe('zone cache', () => {
  const key = (n: number) => readDnskey(Buffer.concat([Buffer.from([1, 0, 3, 13]), Buffer.alloc(n, 1)]))!;
  it('keeps at most its capacity, least recently used out first', () => {
    let now = 0;
    const cache = new ZoneCache(2, () => now);
    cache.set(wire('a.'), { kind: 'inside' }, 60);
    cache.set(wire('b.'), { kind: 'inside' }, 60);
    assert.ok(cache.get(wire('a.')));
    cache.set(wire('c.'), { kind: 'inside' }, 60);
    assert.deepEqual(cache.names().sort(), ['a.', 'c.']);
    now = 61_000;
    assert.equal(cache.get(wire('a.')), undefined, 'expired');
    assert.equal(cache.size, 1);
  });
  it('keeps at most its bytes: large key sets push others out', () => {
    const cache = new ZoneCache(1000, () => 0, 10_000);
    for (let i = 0; i < 10; i++) cache.set(wire(`z${i}.`), { kind: 'secure', zone: wire(`z${i}.`), keys: [key(3000)] }, 60);
    assert.ok(cache.byteSize <= 10_000, String(cache.byteSize));
    assert.ok(cache.size <= 3);
    assert.ok(cache.get(wire('z9.')));
  });
  it('failures are kept briefly whatever their TTL says', () => {
    let now = 0;
    const cache = new ZoneCache(10, () => now);
    cache.set(wire('bad.'), { kind: 'bogus', verdict: { security: 'bogus', ede: 6 } }, 86400);
    now = 61_000;
    assert.equal(cache.get(wire('bad.')), undefined);
  });
});
