/**
 * Servers and relays by name only, from a signed resolver list: the real bin/veil serves
 * DNSCrypt, another is a relay on 127.0.0.2, and a third is configured with nothing but names
 * (`dnscrypt { server lab }`, `anonymize { relay relay-a  route lab via relay-a }`), which a
 * list signed with a test key turns into stamps. Then the same through `servers_from` and
 * `via *`, and a list changed by one byte, which is refused.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { writeProviderKeys } from '../../lib/dnscrypt/provider-key.js';
import { generateMinisignKey, signMinisign } from '../../lib/minisign.js';
import { parseList } from '../../lib/sources/list.js';
import { DEFAULT_FILTER, selectServers } from '../../lib/sources/selection.js';
import { encodeStamp } from '../../lib/stamps.js';
import { dnscryptStamp, relayStamp } from '../helpers/dnscrypt.js';
import { freePort } from '../helpers/peers.js';
import { makeTempDir, runVeil, startVeil, type VeilProcess } from '../helpers/veil-process.js';

const key = generateMinisignKey(Buffer.alloc(32, 11), Buffer.from('a1a2a3a4a5a6a7a8', 'hex'));
const firstA = (b: Buffer) => (dnsPacket.decode(b).answers?.[0] as { data?: string } | undefined)?.data;

describe('servers and relays by name, from a signed list', () => {
  let server: VeilProcess;
  let relay: VeilProcess;
  let list = '';
  const clients: VeilProcess[] = [];

  before(async () => {
    const dir = makeTempDir();
    const keys = writeProviderKeys(path.join(dir, 'keys'));
    const port = await freePort();
    server = await startVeil(`. {
    listen dnscrypt://127.0.0.1:${port} {
        provider 2.dnscrypt-cert.lab.test
        key ${keys.keyFile}
    }
    hosts {
        192.0.2.42 named.veil.test
    }
    log
}
`);
    const relayPort = await freePort();
    relay = await startVeil(`. {\n    listen relay://127.0.0.2:${relayPort} {\n        allow_ports ${port}\n        allow_private\n    }\n}\n`);
    list = `# Test resolvers, signed with a key made for this test

## lab

The DNSCrypt server of this test.
${dnscryptStamp(`127.0.0.1:${port}`, keys.publicKey, '2.dnscrypt-cert.lab.test')}

## relay-a

The relay of this test.
${relayStamp(`127.0.0.2:${relayPort}`)}

## elsewhere

A relay that does not exist; never picked for a 127.0.0.1 server when relay-a is farther.
${relayStamp('127.0.0.0:443')}
`;
  });

  after(async () => {
    for (const client of clients) await client.stop();
    await relay?.stop();
    await server?.stop();
  });

  async function client(body: string, listText = list): Promise<VeilProcess> {
    const files = { 'resolvers.md': listText, 'resolvers.md.minisig': signMinisign(Buffer.from(list), key, 'timestamp:1 file:resolvers.md') };
    const veil = await startVeil(
      `. {
    listen udp://127.0.0.1:0
    sources {
        list public resolvers.md {
            minisign_key ${key.publicKey}
        }
    }
${body}
}
`,
      files,
    );
    clients.push(veil);
    return veil;
  }

  it('dnscrypt { server lab } with anonymize { relay relay-a; route lab via relay-a }: answers through the relay', async () => {
    const veil = await client('    dnscrypt {\n        server lab\n    }\n    anonymize {\n        relay relay-a\n        route lab via relay-a\n    }');
    await veil.waitFor(/certificate serial \d+.* via relay relay-a/);
    const { host, port } = veil.address('udp');
    assert.equal(firstA(await queryUdp(host, port, buildQuery('named.veil.test', QType.A, { id: 5 }), 5000)), '192.0.2.42');
    assert.match(veil.stderr(), /lab: from list public: 127\.0\.0\.1:\d+/);
  });

  it('servers_from with via *: every listed server that passes, through the farthest listed relay', async () => {
    const veil = await client('    dnscrypt {\n        servers_from public {\n            require nolog\n        }\n    }\n    anonymize {\n        route * via *\n    }');
    await veil.waitFor(/servers_from public: 1 server\(s\) from list public: lab/);
    await veil.waitFor(/certificate serial \d+.* via relay relay-a/);
    const { host, port } = veil.address('udp');
    assert.equal(firstA(await queryUdp(host, port, buildQuery('named.veil.test', QType.A, { id: 6 }), 5000)), '192.0.2.42');
  });

  it('a list changed by one byte is refused: the names are unavailable, and nothing is sent elsewhere', async () => {
    const veil = await client('    dnscrypt {\n        server lab\n    }', list.replace('The relay of this test.', 'The relay of this test!'));
    await veil.waitFor(/list public: .* is not usable: signature does not match the file/);
    const { host, port } = veil.address('udp');
    const answer = await queryUdp(host, port, buildQuery('named.veil.test', QType.A, { id: 7 }), 5000);
    assert.equal((dnsPacket.decode(answer) as { rcode?: string }).rcode, 'SERVFAIL');
  });

  it('veil sources list: what the list holds, and what the configuration names from it', async () => {
    const dir = makeTempDir({
      Corefile: `. {\n    listen udp://127.0.0.1:5353\n    sources {\n        list public resolvers.md {\n            minisign_key ${key.publicKey}\n        }\n    }\n    dnscrypt {\n        server lab\n        server gone\n    }\n}\n`,
      'resolvers.md': list,
      'resolvers.md.minisig': signMinisign(Buffer.from(list), key, 'timestamp:1 file:resolvers.md'),
    });
    const result = await runVeil(['sources', 'list', 'Corefile'], dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /list public \(.*resolvers\.md\): verified, 3 entries/);
    assert.match(result.stdout, /^ {4}lab +dnscrypt 127\.0\.0\.1:\d+ \[nolog,nofilter\]$/m);
    assert.match(result.stdout, /^ {4}relay-a +dnscryptRelay 127\.0\.0\.2:\d+$/m);
    assert.match(result.stdout, /dnscrypt lab: dnscrypt 127\.0\.0\.1:\d+ .*\(list public\)/);
    assert.match(result.stdout, /dnscrypt gone: "gone" is in none of the lists \(public\)/);
    const filtered = await runVeil(['sources', 'list', 'Corefile', '--filter', 'relay'], dir);
    assert.doesNotMatch(filtered.stdout, /^ {4}lab /m);
    assert.match(filtered.stdout, /^ {4}relay-a /m);
  });

  it('doh { servers_from LIST } takes the DoH entries of the list (the DNSCrypt ones are not for it)', async () => {
    const withDoh = `${list}\n## lab-doh\n\nA DoH server.\n${encodeStamp({ protocol: 'doh', props: { dnssec: false, noLogs: true, noFilter: true }, address: '127.0.0.1:1443', hashes: [], host: 'dns.test', path: '/dns-query', bootstrap: [] })}\n`;
    const dir = makeTempDir({ 'resolvers.md': withDoh, 'resolvers.md.minisig': signMinisign(Buffer.from(withDoh), key, 'timestamp:2 file:resolvers.md') });
    const veil = await startVeil(
      `. {\n    listen udp://127.0.0.1:0\n    sources {\n        list public ${dir}/resolvers.md {\n            minisign_key ${key.publicKey}\n        }\n    }\n    doh {\n        servers_from public\n    }\n}\n`,
    );
    clients.push(veil);
    await veil.waitFor(/servers_from public: 1 server\(s\) from list public: lab-doh/);
    await veil.waitFor(/lab-doh: from list public: https:\/\/dns\.test:1443\/dns-query/);
  });

  it('dot { servers_from LIST } takes the DoT entries of the list', async () => {
    const withDot = `${list}\n## lab-dot\n\nA DoT server.\n${encodeStamp({ protocol: 'dot', props: { dnssec: false, noLogs: true, noFilter: true }, address: '127.0.0.1:1853', hashes: [], host: 'dns.test', bootstrap: [] })}\n`;
    const dir = makeTempDir({ 'resolvers.md': withDot, 'resolvers.md.minisig': signMinisign(Buffer.from(withDot), key, 'timestamp:3 file:resolvers.md') });
    const veil = await startVeil(
      `. {\n    listen udp://127.0.0.1:0\n    sources {\n        list public ${dir}/resolvers.md {\n            minisign_key ${key.publicKey}\n        }\n    }\n    dot {\n        servers_from public\n    }\n}\n`,
    );
    clients.push(veil);
    await veil.waitFor(/servers_from public: 1 server\(s\) from list public: lab-dot/);
    await veil.waitFor(/lab-dot: from list public: 127\.0\.0\.1:1853/);
  });

  it('a name without sources is a configuration error', async () => {
    await assert.rejects(
      startVeil('. {\n    listen udp://127.0.0.1:0\n    dnscrypt {\n        server lab\n    }\n}\n'),
      /Corefile:4:16: dnscrypt: servers without a stamp come from resolver lists, and this block has no sources directive/,
    );
  });
});

describe('selecting servers from a list (dnscrypt-proxy semantics)', () => {
  const stamp = (address: string, props: { dnssec?: boolean; noLogs?: boolean; noFilter?: boolean }) =>
    encodeStamp({ protocol: 'dnscrypt', props: { dnssec: false, noLogs: false, noFilter: false, ...props }, address, providerKey: Buffer.alloc(32, 1), providerName: '2.dnscrypt-cert.x' });
  const entries = parseList(`## a
${stamp('192.0.2.1:443', { noLogs: true, dnssec: true })}
## b
${stamp('192.0.2.2:443', { noLogs: false, noFilter: true })}
## c6
${stamp('[2001:db8::1]:443', { noLogs: true })}
## d
${stamp('192.0.2.4:443', { noLogs: true, noFilter: true })}
## relay
sdns://gQsxOTIuMC4yLjk6NDQz
`);
  const names = (filter: Partial<typeof DEFAULT_FILTER>) => selectServers(entries, 'dnscrypt', { ...DEFAULT_FILTER, ...filter }).map((s) => s.name);

  const none = { nolog: false, nofilter: false, dnssec: false };

  it('IPv4 only by default; requirements filter; disabled removes; names override the filters', () => {
    assert.deepEqual(names({ require: none }), ['a', 'b', 'd']);
    assert.deepEqual(names({ require: none, ipv6: true }), ['a', 'b', 'c6', 'd']);
    assert.deepEqual(names({ require: none, ipv4: false, ipv6: true }), ['c6']);
    assert.deepEqual(names({ require: { nolog: true, nofilter: false, dnssec: false } }), ['a', 'd']);
    assert.deepEqual(names({ require: { nolog: false, nofilter: true, dnssec: false } }), ['b', 'd']);
    assert.deepEqual(names({ require: { nolog: false, nofilter: false, dnssec: true } }), ['a']);
    assert.deepEqual(names({ require: none, disabled: ['a'] }), ['b', 'd']);
    assert.deepEqual(names({ names: ['c6', 'b', 'relay', 'missing'] }), ['c6', 'b'], 'names take IPv6 and no-log-less servers alike; a relay is no DNSCrypt server');
  });

  it('issue 24 low: by default, only servers that say they keep no logs and filter nothing', () => {
    assert.deepEqual(names({}), ['d']);
  });
});

describe('issue 24 low: servers_from requires no logs and no filter by default, in dnscrypt, dot and doh', () => {
  const props = (noLogs: boolean, noFilter: boolean) => ({ dnssec: false, noLogs, noFilter });
  const stamps: Record<string, (noLogs: boolean, noFilter: boolean, i: number) => string> = {
    dnscrypt: (noLogs, noFilter, i) => encodeStamp({ protocol: 'dnscrypt', props: props(noLogs, noFilter), address: `127.0.0.1:${1440 + i}`, providerKey: Buffer.alloc(32, 1), providerName: '2.dnscrypt-cert.x' }),
    dot: (noLogs, noFilter, i) => encodeStamp({ protocol: 'dot', props: props(noLogs, noFilter), address: `127.0.0.1:${1850 + i}`, hashes: [], host: 'dns.test', bootstrap: [] }),
    doh: (noLogs, noFilter, i) => encodeStamp({ protocol: 'doh', props: props(noLogs, noFilter), address: `127.0.0.1:${1450 + i}`, hashes: [], host: 'dns.test', path: '/dns-query', bootstrap: [] }),
  };
  const clients: VeilProcess[] = [];
  after(async () => {
    for (const client of clients) await client.stop();
  });

  for (const [plugin, stamp] of Object.entries(stamps)) {
    const listText = `# Three servers: one that keeps no logs and filters nothing, one that logs, one that filters\n\n## private\n\nNo logs, no filter.\n${stamp(true, true, 1)}\n\n## logging\n\nKeeps logs.\n${stamp(false, true, 2)}\n\n## filtering\n\nFilters answers.\n${stamp(true, false, 3)}\n`;
    const start = async (options: string): Promise<VeilProcess> => {
      const dir = makeTempDir({ 'resolvers.md': listText, 'resolvers.md.minisig': signMinisign(Buffer.from(listText), key, 'timestamp:4 file:resolvers.md') });
      const veil = await startVeil(
        `. {\n    listen udp://127.0.0.1:0\n    sources {\n        list public ${dir}/resolvers.md {\n            minisign_key ${key.publicKey}\n        }\n    }\n    ${plugin} {\n        servers_from public${options}\n    }\n}\n`,
      );
      clients.push(veil);
      return veil;
    };

    it(`${plugin}: servers_from alone takes only the server with no logs and no filter; allow logging filtering takes all three`, async () => {
      const strict = await start('');
      await strict.waitFor(/servers_from public: 1 server\(s\) from list public: private\n/);
      const relaxed = await start(' {\n            allow logging filtering\n        }');
      await relaxed.waitFor(/servers_from public: 3 server\(s\) from list public: private, logging, filtering\n/);
      const logs = await start(' {\n            allow logging\n        }');
      await logs.waitFor(/servers_from public: 2 server\(s\) from list public: private, logging\n/);
    });
  }

  it('allow takes logging and filtering only, and cannot contradict require', async () => {
    const bad: Array<[string, RegExp]> = [
      ['allow everything', /Corefile:5:19: dnscrypt: allow takes logging and filtering \(servers that keep logs, servers that filter answers\), not "everything"/],
      ['require nolog\n            allow logging', /Corefile:6:19: dnscrypt: "allow logging" contradicts "require nolog"/],
    ];
    for (const [options, message] of bad) {
      const dir = makeTempDir({ Corefile: `. {\n    listen udp://127.0.0.1:0\n    dnscrypt {\n        servers_from public {\n            ${options}\n        }\n    }\n    sources {\n        list public resolvers.md\n    }\n}\n` });
      const result = await runVeil(['check', 'Corefile'], dir);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, message);
    }
  });
});
