/** DNS stamps: real list entries, synthetic vectors that round-trip exactly, and bad stamps. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkCorefile } from '../core/testing/config.js';
import { encodeStamp, parseStamp, splitStampHost, StampError, type Stamp } from '../lib/stamps.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { expectConfigError } from './helpers/plugins.js';

const KEY = 'c3846bf24b9e93ca64274c0ec67c1ecc5e024ffcacd2d74019350e81fe546ae4';

describe('stamps decode', () => {
  it('scaleway-fr (DNSCrypt)', () => {
    const s = parseStamp('sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc');
    assert.equal(s.protocol, 'dnscrypt');
    if (s.protocol !== 'dnscrypt') return;
    assert.deepEqual(s.props, { dnssec: true, noLogs: true, noFilter: true });
    assert.equal(s.address, '212.47.228.136:443');
    assert.equal(s.providerKey.toString('hex'), 'e801b84ea606bfb0bac0ce43445bb15eba64b02fa3c4aa31ae10636a0790324d');
    assert.equal(s.providerName, '2.dnscrypt-cert.fr.dnscrypt.org');
  });

  it('quad9 (DNSCrypt on 8443, filtering)', () => {
    const s = parseStamp('sdns://AQMAAAAAAAAADDkuOS45Ljk6ODQ0MyBnyEe4yHWM0SAkVUO-dWdG3zTfHYTAC4xHA2jfgh2GPhkyLmRuc2NyeXB0LWNlcnQucXVhZDkubmV0');
    assert.deepEqual(s.protocol === 'dnscrypt' && [s.address, s.props.noFilter, s.providerName], ['9.9.9.9:8443', false, '2.dnscrypt-cert.quad9.net']);
  });

  it('cloudflare (DoH)', () => {
    const s = parseStamp('sdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5');
    assert.deepEqual(s.protocol === 'doh' && [s.address, s.hashes.length, s.host, s.path, s.bootstrap], ['1.0.0.1:443', 0, 'dns.cloudflare.com', '/dns-query', []]);
  });

  it('relays with explicit :443 and IPv6', () => {
    assert.deepEqual(parseStamp('sdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw'), { protocol: 'dnscryptRelay', address: '94.198.41.235:443' });
    assert.deepEqual(parseStamp('sdns://gRhbMjAwMTphYzg6Mjk6YTE6OjUzXTo0NDM'), { protocol: 'dnscryptRelay', address: '[2001:ac8:29:a1::53]:443' });
    // re-encoding drops the default port, as go-dnsstamps does
    assert.equal(encodeStamp(parseStamp('sdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw')), 'sdns://gQ05NC4xOTguNDEuMjM1');
  });

  it('DoH with two hashes; DoT with bootstrap addresses', () => {
    const doh = parseStamp('sdns://AgAAAAAAAAAAAKARERERERERERERERERERERERERERERERERERERERERESAiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIg9kbnMuZXhhbXBsZS5jb20KL2Rucy1xdWVyeQ');
    assert.ok(doh.protocol === 'doh');
    assert.deepEqual(doh.protocol === 'doh' && doh.hashes.map((h) => h[0]), [0x11, 0x22]);
    assert.equal(doh.protocol === 'doh' && doh.address, '');
    const dot = parseStamp('sdns://AwYAAAAAAAAACTE5Mi4wLjIuMQATZG90LmV4YW1wbGUuY29tOjg1M4wxOTguNTEuMTAwLjELMjAzLjAuMTEzLjE');
    assert.deepEqual(dot.protocol === 'dot' && [dot.address, dot.host, dot.bootstrap, dot.props], ['192.0.2.1:853', 'dot.example.com:853', ['198.51.100.1', '203.0.113.1'], { dnssec: false, noLogs: true, noFilter: true }]);
  });
});

describe('stamps round-trip exactly', () => {
  const vectors = [
    'sdns://AQcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5BkyLmRuc2NyeXB0LWNlcnQubG9jYWxob3N0',
    'sdns://AgcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5AtleGFtcGxlLmNvbQovZG5zLXF1ZXJ5',
    'sdns://AwcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5A9kbnMuZXhhbXBsZS5jb20',
    'sdns://BAcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5A9kbnMuZXhhbXBsZS5jb20',
    'sdns://BQcAAAAAAAAAEG9kb2guZXhhbXBsZS5jb20HL3RhcmdldA',
    'sdns://hQcAAAAAAAAAB1s6OjFdOjEgw4Rr8kuek8pkJ0wOxnwezF4CT_ys0tdAGTUOgf5UauQPZG9oLmV4YW1wbGUuY29tBi9yZWxheQ',
    'sdns://AAcAAAAAAAAABzguOC44Ljg',
    'sdns://AAcAAAAAAAAADDguOC44Ljg6ODA1Mw',
    'sdns://AAEAAAAAAAAADVsyMDAxOmRiODo6MV0',
    'sdns://AAEAAAAAAAAACjE5Mi4wLjIuNTM',
    'sdns://AgIAAAAAAAAAACAREREREREREREREREREREREREREREREREREREREREREQ9kbnMuZXhhbXBsZS5jb20KL2Rucy1xdWVyeQ',
    'sdns://AwYAAAAAAAAACTE5Mi4wLjIuMQATZG90LmV4YW1wbGUuY29tOjg1M4wxOTguNTEuMTAwLjELMjAzLjAuMTEzLjE',
    'sdns://AQcAAAAAAAAAETE5OC41MS4xMDAuMTo1NTUzIOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNGzIuZG5zY3J5cHQtY2VydC5leGFtcGxlLmNvbQ',
    'sdns://gQkxOTIuMC4yLjE',
    'sdns://gRJbMjAwMTpkYjg6OjFdOjg0NDM',
  ];
  for (const vector of vectors) {
    it(vector.slice(0, 40), () => assert.equal(encodeStamp(parseStamp(vector)), vector));
  }

  it('encodes from values', () => {
    const stamp: Stamp = { protocol: 'dnscrypt', props: { dnssec: true, noLogs: true, noFilter: true }, address: '127.0.0.1:443', providerKey: Buffer.from(KEY, 'hex'), providerName: '2.dnscrypt-cert.localhost' };
    assert.equal(encodeStamp(stamp), vectors[0]);
  });
});

describe('bad stamps are refused, naming the field', () => {
  const bad: Array<[string, RegExp]> = [
    ['sdns://AAEAAAAAAAAADlsyMDAxOmRiODo6MV0', /ends inside its address/],
    ['sdns://AQcAAAAAAAAAAAAQMi5kbnNjcnlwdC1jZXJ0Lg', /address is empty/],
    ['sdns://gQA', /address is empty/],
    ['sdns://AAcAAAAAAAAABzguOC44Ljg=', /base64url/],
    ['sdns://AAcAAAAAAAAABzguOC44Ljg+', /base64url/],
    ['https://dns.example', /starts with sdns/],
    ['sdns://', /empty/],
    ['sdns://CQ', /unknown stamp protocol 0x09/],
    ['sdns://AAcAAAAAAAAABzguOC44LjgA', /garbage after the end/],
    ['sdns://AAcAAAAAAAAAB2V4YW1wbGU', /not an IP address/],
  ];
  for (const [stamp, message] of bad) {
    it(stamp, () => assert.throws(() => parseStamp(stamp), (err: unknown) => err instanceof StampError && message.test(err.message)));
  }
});

describe("a stamp's host field: one rule for dot, doh and odoh", () => {
  // dot took `_` and any port; doh refused `_` and checked the port; now both take `_` (DNS names
  // may hold it, and the certificate decides whether the server may use it) and check the port.
  const good: Array<[string, { host: string; port: number | null }]> = [
    ['dns.example', { host: 'dns.example', port: null }],
    ['DNS.Example.', { host: 'dns.example', port: null }],
    ['_dns.resolver.example', { host: '_dns.resolver.example', port: null }],
    ['dns_1.example:8443', { host: 'dns_1.example', port: 8443 }],
    ['192.0.2.1:853', { host: '192.0.2.1', port: 853 }],
    ['[2001:DB8::1]', { host: '2001:db8::1', port: null }],
    ['[2001:db8::1]:65535', { host: '2001:db8::1', port: 65535 }],
  ];
  for (const [text, parts] of good) it(`takes ${text}`, () => assert.deepEqual(splitStampHost(text), parts));

  const bad: Array<[string, RegExp]> = [
    ['dns.example:0', /port 0 is out of range/],
    ['dns.example:70000', /port 70000 is out of range/],
    ['2001:db8::1', /is not NAME\[:PORT\] or \[IPv6\]\[:PORT\]/],
    ['[dns.example]:443', /only an IPv6 address goes in brackets/],
    ['-dns.example', /is not a valid host name/],
    ['dns..example', /is not a valid host name/],
    ['dns example', /is not a valid host name/],
    ['dns.example:', /is not NAME\[:PORT\]/],
  ];
  for (const [text, message] of bad) {
    it(`refuses ${text}`, () => assert.throws(() => splitStampHost(text), (err: unknown) => err instanceof StampError && message.test(err.message)));
  }

  const props = { dnssec: false, noLogs: false, noFilter: false };
  const corefile = (plugin: string, stamp: string) => `. {\n  listen udp://127.0.0.1:0\n  ${plugin} {\n    server a ${stamp}\n  }\n}`;
  const dot = (host: string) => encodeStamp({ protocol: 'dot', props, address: '127.0.0.1', hashes: [], host, bootstrap: [] });
  const doh = (host: string) => encodeStamp({ protocol: 'doh', props, address: '127.0.0.1', hashes: [], host, path: '/dns-query', bootstrap: [] });

  it('dot and doh take the same host names and ports from their stamps', async () => {
    for (const [plugin, stamp] of [['dot', dot], ['doh', doh]] as const) {
      const built = await checkCorefile(corefile(plugin, stamp('_dns.resolver.example')), { registry: createBuiltinRegistry() });
      for (const upstream of built.blocks[0]!.upstreams.all) upstream.destroy?.();
      await expectConfigError(corefile(plugin, stamp('dns.example:70000')), 4, 14, new RegExp(`${plugin}: bad stamp: port 70000 is out of range`));
      await expectConfigError(corefile(plugin, stamp('[dns.example]')), 4, 14, /bad stamp: host "\[dns\.example\]": only an IPv6 address goes in brackets/);
    }
  });
});
