import assert from 'node:assert/strict';
import { rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { EdnsOption, QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { forEachEdnsOption, readEdns } from '../../core/dns/wire.js';
import { queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { startTestServer, type TestServer } from '../../core/testing/server.js';
import { Glob, loadNameList, NameRules, AddressRules } from './rules.js';
import { testRegistry } from '../../test/helpers/plugins.js';
import { makeTempDir, startVeil } from '../../test/helpers/veil-process.js';

/** Fixtures in the formats lists are published in. */
const HOSTS_LIST = `# a hosts-format blocklist
127.0.0.1 localhost
0.0.0.0 ads.example.com
0.0.0.0 tracker.example.net metrics.example.net   # two on a line
::1 ip6-localhost
`;
const DNSCRYPT_LIST = `# dnscrypt-proxy blocked_names
=exact.example.org
*.wild.example.org
banner.*
*telemetry*
ad[0-9].example.org
sched.example.org @work
||adblock-style.example^
`;

describe('filter rules', () => {
  it('reads dnscrypt-proxy patterns with their meanings', () => {
    const { rules, rejectedCount } = loadNameList(DNSCRYPT_LIST);
    assert.equal(rejectedCount, 0);
    const yes = ['exact.example.org', 'wild.example.org', 'a.b.wild.example.org', 'banner.ads.test', 'x.telemetry.y', 'ad7.example.org', 'sched.example.org', 'www.adblock-style.example'];
    const no = ['sub.exact.example.org', 'notwild.example.org', 'abanner.test', 'tele.metry', 'adx.example.org', 'ad10.example.org'];
    for (const name of yes) assert.ok(rules.matches(name), name);
    for (const name of no) assert.ok(!rules.matches(name), name);
  });

  it('reads hosts files, skipping the names a hosts file lists for itself', () => {
    const { rules } = loadNameList(HOSTS_LIST);
    for (const name of ['ads.example.com', 'x.ads.example.com', 'tracker.example.net', 'metrics.example.net']) assert.ok(rules.matches(name), name);
    for (const name of ['localhost', 'ip6-localhost', 'example.com']) assert.ok(!rules.matches(name), name);
  });

  it('refuses what is not a name or pattern', () => {
    const rules = new NameRules();
    assert.match(rules.add('bad$name') ?? '', /not a name or a pattern/);
    assert.match(rules.add('=') ?? '', /= takes a plain name/);
    const { rejectedCount, rejected } = loadNameList('good.example\nwe$ird\n');
    assert.equal(rejectedCount, 1);
    assert.equal(rejected[0]!.line, 2);
  });

  it('address rules: exact, CIDR and prefix, IPv4 and IPv6', () => {
    const rules = new AddressRules();
    for (const rule of ['192.0.2.1', '10.0.0.0/8', '198.51.100.*', '2001:db8::/32', 'fe80:53:*']) assert.equal(rules.add(rule), null);
    const v4 = (text: string) => Buffer.from(text.split('.').map(Number));
    assert.ok(rules.matches(v4('192.0.2.1')));
    assert.ok(!rules.matches(v4('192.0.2.2')));
    assert.ok(rules.matches(v4('10.200.3.4')));
    assert.ok(rules.matches(v4('198.51.100.77')));
    assert.ok(rules.matches(Buffer.from('20010db8000000000000000000000001', 'hex')));
    assert.ok(rules.matches(Buffer.from('fe800053000000000000000000000001', 'hex')));
    assert.ok(!rules.matches(Buffer.from('20010db9000000000000000000000001', 'hex')));
    assert.match(rules.add('10.0.0.0/33') ?? '', /not a prefix length/);
    assert.match(rules.add('nope') ?? '', /not an address/);
  });
});

describe('filter plugin', () => {
  let upstream: FakeDns;
  let veil: TestServer;
  let dir: string;
  before(async () => {
    dir = makeTempDir({ 'hosts.txt': HOSTS_LIST, 'names.txt': DNSCRYPT_LIST, 'allow.txt': 'ok.telemetry.example\n', 'ips.txt': '203.0.113.66\n' });
    upstream = await startFakeDns((q) => {
      const name = q.packet.questions![0]!.name;
      // Names arrive in random case (DNS 0x20).
      if (name.toLowerCase() === 'alias.example.com') return answerFor(q, [{ type: 'CNAME', name, ttl: 60, data: 'cdn.ads.example.com' }, { type: 'A', name: 'cdn.ads.example.com', ttl: 60, data: '192.0.2.9' }]);
      if (name.toLowerCase() === 'evil-ip.example.com') return answerFor(q, [{ type: 'A', name, ttl: 60, data: '203.0.113.66' }]);
      if (q.packet.questions![0]!.type === 'AAAA') return answerFor(q, [{ type: 'AAAA', name, ttl: 60, data: '2001:db8::1' }]);
      return answerFor(q, [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }]);
    });
  });
  after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => veil?.stop());

  async function start(filter: string): Promise<void> {
    veil = await startTestServer(`. {\n listen udp://127.0.0.1:0\n filter {\n${filter}\n }\n forward . 127.0.0.1:${upstream.port}\n}`, {
      registry: testRegistry(),
      file: path.join(dir, 'Corefile'),
    });
  }
  async function ask(name: string, type: number = QType.A, edns = false): Promise<Buffer> {
    const { host, port } = veil.address('udp://127.0.0.1:0');
    return queryUdp(host, port, buildQuery(name, type, { id: 7, edns }));
  }
  const rcode = (wire: Buffer) => (dnsPacket.decode(wire) as { rcode?: string }).rcode;
  const firstData = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: string } | undefined)?.data;

  it('blocks names from hosts-format and dnscrypt-proxy lists; allow wins; others pass', async () => {
    await start('  block hosts.txt names.txt\n  allow allow.txt');
    const before = upstream.queries.length;
    for (const name of ['ads.example.com', 'www.ads.example.com', 'metrics.example.net', 'exact.example.org', 'x.wild.example.org', 'banner.cdn.test', 'a.telemetry.example']) {
      assert.equal(rcode(await ask(name)), 'NXDOMAIN', name);
    }
    assert.equal(upstream.queries.length, before, 'blocked names never reach the upstream');
    assert.equal(firstData(await ask('ok.telemetry.example')), '192.0.2.1', 'allowed despite *telemetry*');
    assert.equal(firstData(await ask('sub.exact.example.org')), '192.0.2.1');
    assert.equal(firstData(await ask('example.com')), '192.0.2.1');
  });

  it('blocks an answer whose CNAME target is blocked, or whose address is on block_ips', async () => {
    await start('  block hosts.txt\n  block_ips ips.txt');
    assert.equal(rcode(await ask('alias.example.com')), 'NXDOMAIN');
    assert.equal(rcode(await ask('evil-ip.example.com')), 'NXDOMAIN');
    assert.equal(firstData(await ask('fine.example.com')), '192.0.2.1');
  });

  it('response null answers 0.0.0.0 and ::; clients with EDNS get EDE 15 "Blocked" naming the list', async () => {
    await start('  block ads.example.com\n  response null');
    assert.equal(firstData(await ask('ads.example.com')), '0.0.0.0');
    assert.equal(firstData(await ask('ads.example.com', QType.AAAA)), '::');
    const withEdns = await ask('ads.example.com', QType.A, true);
    const edns = readEdns(withEdns)!;
    const options: Array<[number, Buffer]> = [];
    forEachEdnsOption(withEdns, edns, (code, start, length) => options.push([code, withEdns.subarray(start, start + length)]));
    assert.equal(options.length, 1);
    assert.equal(options[0]![0], EdnsOption.EDE);
    assert.equal(options[0]![1].readUInt16BE(0), 15);
    assert.equal(options[0]![1].subarray(2).toString(), 'blocked by inline');
    assert.equal(readEdns(await ask('ads.example.com'))?.udpSize, undefined, 'no OPT for a client that sent none');
  });

  it('refused and nodata responses; block_qtype; block_ipv6 answers AAAA with nothing', async () => {
    await start('  block ads.example.com\n  block_qtype TXT\n  block_ipv6\n  response refused');
    assert.equal(rcode(await ask('ads.example.com')), 'REFUSED');
    assert.equal(rcode(await ask('any.example.com', QType.TXT)), 'REFUSED');
    const aaaa = await ask('any.example.com', QType.AAAA);
    assert.equal(rcode(aaaa), 'NOERROR');
    assert.equal(dnsPacket.decode(aaaa).answers!.length, 0);
    assert.equal(firstData(await ask('any.example.com')), '192.0.2.1');
    await veil.stop();
    await start('  block ads.example.com\n  response nodata');
    const nodata = await ask('ads.example.com');
    assert.equal(rcode(nodata), 'NOERROR');
    assert.equal(dnsPacket.decode(nodata).answers!.length, 0);
  });

  it('refresh reads a changed file without a reload; a broken one keeps the old rules', async () => {
    const file = path.join(dir, 'live.txt');
    writeFileSync(file, 'first.example\n');
    await start('  block live.txt\n  refresh 1s');
    assert.equal(rcode(await ask('first.example')), 'NXDOMAIN');
    writeFileSync(file, 'second.example\n');
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    let answer = '';
    for (let i = 0; i < 60 && answer !== 'NXDOMAIN'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      answer = rcode(await ask('second.example')) ?? '';
    }
    assert.equal(answer, 'NXDOMAIN');
    assert.equal(firstData(await ask('first.example')), '192.0.2.1');
    writeFileSync(file, '# nothing left\n');
    utimesSync(file, new Date(), new Date(Date.now() + 10_000));
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal(rcode(await ask('second.example')), 'NXDOMAIN', 'the old rules stay');
    assert.ok(veil.logs.some((l) => /live\.txt: keeping the rules loaded before: it holds no rule now/.test(l)), veil.logs.join('\n'));
  });
});

describe('issue 24 low: globs match without backtracking', () => {
  // Ten stars: as a regular expression (/^.*a.*a…b$/) this tries every way of splitting a name
  // among the stars, n^10 for a name of n characters; 40 characters took ten seconds.
  const PATHOLOGICAL = '*a*a*a*a*a*a*a*a*a*a*b';
  const LONG_NAME = ['a'.repeat(63), 'a'.repeat(63), 'a'.repeat(63), 'a'.repeat(61)].join('.');

  it('issue 24 low: a ten-star glob against a 253-character name takes at most (n + 1) · (m + 1) steps', () => {
    const glob = new Glob(PATHOLOGICAL);
    assert.equal(LONG_NAME.length, 253);
    assert.equal(glob.matches(LONG_NAME), false);
    assert.ok(glob.steps <= (LONG_NAME.length + 1) * (glob.size + 1), `${glob.steps} steps`);
    assert.equal(glob.matches(`${LONG_NAME.slice(0, 250)}.b`), true);
    assert.ok(glob.steps <= (LONG_NAME.length + 1) * (glob.size + 1), `${glob.steps} steps`);
  });

  it('a glob means what it meant as a regular expression (property test, short names)', () => {
    // The regular expression the rules used to build, as the reference on inputs small enough for it.
    const reference = (glob: string): RegExp => {
      let source = '';
      for (let i = 0; i < glob.length; i++) {
        const c = glob[i]!;
        if (c === '*') source += '.*';
        else if (c === '?') source += '.';
        else if (c === '[' && glob.indexOf(']', i + 1) > 0) {
          const close = glob.indexOf(']', i + 1);
          source += `[${glob.slice(i + 1, close).replace(/^!/, '^')}]`;
          i = close;
        } else source += c.replace(/[.+^${}()|\\[\]]/g, '\\$&');
      }
      return new RegExp(`^${source}$`);
    };
    const globChar = fc.constantFrom('a', 'b', '.', '-', '*', '?', '[ab]', '[!a]', '[a-c]', '[]', '[');
    fc.assert(
      fc.property(fc.array(globChar, { maxLength: 8 }), fc.stringMatching(/^[ab.c-]{0,12}$/), (chars, name) => {
        const glob = chars.join('');
        let expected: RegExp;
        try {
          expected = reference(glob);
        } catch {
          return; // a class with a range out of order, which the old code could not even load
        }
        assert.equal(new Glob(glob).matches(name), expected.test(name), `${glob} vs ${name}`);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses a glob longer than a name can be; a range out of order matches nothing (it used to throw)', () => {
    const rules = new NameRules();
    assert.match(rules.add(`*${'a*'.repeat(130)}`) ?? '', /longer than a name can be/);
    assert.equal(rules.add('ad[z-a]*.example'), null);
    assert.equal(rules.matches('adb.x.example'), false);
  });

  it('issue 24 low: bin/veil with that glob on its blocklist answers a 253-character name, and the next query', async () => {
    const veil = await startVeil(
      `. {\n  listen udp://127.0.0.1:0\n  filter {\n    block ${PATHOLOGICAL}\n  }\n  hosts {\n    192.0.2.53 ${LONG_NAME}\n    192.0.2.54 next.veil.test\n  }\n}\n`,
    );
    try {
      const { host, port } = veil.address('udp');
      const ask = async (name: string) => dnsPacket.decode(await queryUdp(host, port, buildQuery(name, QType.A, { id: 9 }), 5000));
      // Before: the server spent years on the first query and never answered anyone again.
      assert.equal((((await ask(LONG_NAME)).answers ?? [])[0] as { data?: string } | undefined)?.data, '192.0.2.53');
      assert.equal((((await ask('next.veil.test')).answers ?? [])[0] as { data?: string } | undefined)?.data, '192.0.2.54');
      assert.equal((await ask(`${'a'.repeat(10)}.b`) as { rcode?: string }).rcode, 'NXDOMAIN', 'the glob still blocks what it matches');
    } finally {
      await veil.stop();
    }
  });
});
