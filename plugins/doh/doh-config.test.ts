/** doh and the https/http listeners: what parse accepts, and the errors it gives (with file:line:col). */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildConfig } from '../../core/server.js';
import { parseCorefileText } from '../../core/config/corefile.js';
import { SystemClock } from '../../core/clock.js';
import { MemoryLogger } from '../../core/logger.js';
import { ConfigError } from '../../core/errors.js';
import { encodeStamp } from '../../lib/stamps.js';
import { createBuiltinRegistry } from '../index.js';
import type { DohUpstream } from './client/upstream.js';
import { makeTestCerts, type TestCerts } from '../../test/helpers/peers.js';

let certs: TestCerts;
before(() => {
  certs = makeTestCerts();
});
after(() => rmSync(certs.dir, { recursive: true, force: true }));

function build(text: string) {
  const env = { registry: createBuiltinRegistry(), logger: new MemoryLogger([]), clock: new SystemClock() };
  return buildConfig(parseCorefileText(text, path.join(certs.dir, 'Corefile')), env);
}

function upstreams(doh: string): DohUpstream[] {
  const built = build(`. {\n  listen udp://127.0.0.1:0\n  ${doh}\n}`);
  const list = built.blocks[0]!.upstreams.all as DohUpstream[];
  for (const u of list) u.destroy();
  return list;
}

/** The error message for a Corefile, which must fail. */
function failure(text: string): string {
  try {
    build(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('the configuration was accepted');
}

const doh = (body: string) => `. {\n  listen udp://127.0.0.1:0\n  doh {\n${body}\n  }\n}`;

const stamp = (fields: Partial<{ address: string; host: string; path: string; hashes: Buffer[]; bootstrap: string[] }>) =>
  encodeStamp({ protocol: 'doh', props: { dnssec: true, noLogs: true, noFilter: true }, address: '', hashes: [], host: 'dns.example', path: '/dns-query', bootstrap: [], ...fields });

describe('doh configuration', () => {
  it('a URL with an IP host needs nothing else; the path defaults to /dns-query', () => {
    const [u] = upstreams('doh {\n server one https://192.0.2.1 \n}');
    assert.equal(u!.address, 'https://192.0.2.1/dns-query');
    assert.equal(u!.protocol, 'doh');
  });

  it('a host name needs bootstrap, and the error says why', () => {
    const message = failure(doh('    server q https://dns.example/dns-query'));
    assert.match(message, /Corefile:4:14: doh: dns\.example is a host name: add "bootstrap IP…".*never asks the system resolver/);
    const [u] = upstreams('doh {\n server q https://dns.example:8443/q {\n bootstrap 192.0.2.1 [2001:db8::1]\n method get\n pool 2\n timeout 1s\n }\n}');
    assert.equal(u!.address, 'https://dns.example:8443/q');
  });

  it('refuses plaintext and other schemes', () => {
    assert.match(failure(doh('    server q http://192.0.2.1/dns-query')), /plaintext/);
    assert.match(failure(doh('    server q tls://192.0.2.1')), /https:\/\/ URLs or sdns:\/\/ stamps/);
  });

  it('option mistakes: unknown with did-you-mean, bad values, bootstrap on an IP', () => {
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      pol 2\n    }')), /unknown option "pol" \(did you mean "pool"\?\)/);
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      method put\n    }')), /method is "post" or "get"/);
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      pool 0\n    }')), /out of range/);
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      bootstrap 192.0.2.2\n    }')), /already an address/);
    assert.match(failure(doh('    server q https://dns.example {\n      bootstrap dns.google\n    }')), /bootstrap takes IP addresses/);
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      pin_sha256 notbase64\n    }')), /not a base64 SHA-256/);
    assert.match(failure(doh('    server q https://192.0.2.1 {\n      ca missing.pem\n    }')), /cannot read ca file "missing\.pem": ENOENT/);
    assert.match(failure(doh('    server q https://192.0.2.1\n    server q https://192.0.2.2')), /two upstreams are named "q"/);
    assert.match(failure(`. {\n  listen udp://127.0.0.1:0\n  doh\n}`), /no server/);
  });

  it('ca must hold certificates', () => {
    const notPem = path.join(certs.dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    assert.match(failure(doh(`    server q https://192.0.2.1 {\n      ca ${notPem}\n    }`)), /holds no PEM certificate/);
    upstreams(`doh {\n server q https://192.0.2.1 {\n ca ${certs.ca}\n pin_sha256 ${certs.spkiPin}\n }\n}`);
  });

  it('a DoH stamp gives address, host, port and path', () => {
    const [u] = upstreams(`doh {\n server s ${stamp({ address: '192.0.2.7:8443', host: 'dns.example', path: '/q' })}\n}`);
    assert.equal(u!.address, 'https://dns.example:8443/q');
    const [v] = upstreams(`doh {\n server s ${stamp({ host: '192.0.2.8' })}\n}`);
    assert.equal(v!.address, 'https://192.0.2.8/dns-query');
  });

  it('a stamp without an address needs bootstrap; its own bootstrap entries are resolvers, not used', () => {
    const message = failure(doh(`    server s ${stamp({ bootstrap: ['9.9.9.9'] })}`));
    assert.match(message, /the stamp gives no address for dns\.example: add a block with "bootstrap IP…".*9\.9\.9\.9 are plain-DNS resolvers/);
    upstreams(`doh {\n server s ${stamp({ bootstrap: ['9.9.9.9'] })} {\n bootstrap 192.0.2.9\n }\n}`);
  });

  it('bad stamps are config errors naming the field; other kinds point to their plugin', () => {
    const truncated = `sdns://${Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0]).toString('base64url')}`;
    assert.match(failure(doh(`    server s ${truncated}`)), /Corefile:4:14: doh: bad stamp: stamp ends before its address/);
    const dot = encodeStamp({ protocol: 'dot', props: { dnssec: false, noLogs: false, noFilter: false }, address: '192.0.2.1', hashes: [], host: 'dns.example', bootstrap: [] });
    assert.match(failure(doh(`    server s ${dot}`)), /this is a dot stamp, not a DoH one; use the dot plugin/);
  });
});

describe('https and http listener configuration', () => {
  it('https needs cert and key, and they must match', () => {
    assert.match(failure(`. {\n  listen https://127.0.0.1:0/dns-query\n}`), /Corefile:2:10: listen: https:\/\/127\.0\.0\.1:0\/dns-query needs "cert FILE" and "key FILE"/);
    assert.match(failure(`. {\n  listen https://127.0.0.1:0 {\n    cert ${certs.otherCert}\n    key ${certs.key}\n  }\n}`), /do not go together/);
    assert.match(failure(`. {\n  listen https://127.0.0.1:0 {\n    cert nope.pem\n    key ${certs.key}\n  }\n}`), /cannot read cert file "nope\.pem": ENOENT/);
  });

  it('options: limits, trusted_proxies, did-you-mean', () => {
    const built = build(`. {\n  listen http://127.0.0.1:0 {\n    trusted_proxies 10.0.0.0/8 ::1 192.0.2.1\n    max_streams 10\n    idle_timeout 5s\n  }\n}`);
    const options = [...built.listeners.values()][0]!.options as { path: string; trustedProxies: string[]; maxStreams: number; idleTimeoutMs: number };
    assert.equal(options.path, '/dns-query');
    assert.deepEqual(options.trustedProxies, ['10.0.0.0/8', '::1/128', '192.0.2.1/32']);
    assert.equal(options.maxStreams, 10);
    assert.equal(options.idleTimeoutMs, 5000);
    assert.match(failure(`. {\n  listen http://127.0.0.1:0 {\n    trusted_proxies 10.0.0.0/33\n  }\n}`), /not an address or a CIDR range/);
    assert.match(failure(`. {\n  listen http://127.0.0.1:0 {\n    max_stream 10\n  }\n}`), /unknown option "max_stream".*did you mean "max_streams"/);
    assert.match(failure(`. {\n  listen http://127.0.0.1:0 {\n    cert x.pem\n  }\n}`), /unknown option "cert" for http/);
    assert.match(failure(`. {\n  listen http://127.0.0.1:0/dns?x=1\n}`), /plain path/);
  });

  it('http2 veil|node: veil unless told; anything else is an error at its token', () => {
    const options = (block: string) => ([...build(`. {\n  listen http://127.0.0.1:0 {\n${block}  }\n}`).listeners.values()][0]!.options as { http2: string }).http2;
    assert.equal(options(''), 'veil');
    assert.equal(options('    http2 node\n'), 'node');
    assert.match(failure(`. {\n  listen http://127.0.0.1:0 {\n    http2 nghttp2\n  }\n}`), /Corefile:3:11: listen: http2 is veil or node .*not "nghttp2"/);
  });

  it('cert and key are PEM files', () => {
    const notPem = path.join(certs.dir, 'not-a-key.pem');
    writeFileSync(notPem, 'hello');
    assert.match(failure(`. {\n  listen https://127.0.0.1:0 {\n    cert ${certs.chain}\n    key ${notPem}\n  }\n}`), /Corefile:4:9: listen: ".*not-a-key\.pem" holds no PEM key/);
  });
});
