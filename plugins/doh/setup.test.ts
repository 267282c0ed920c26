/** doh: upstream lines (URL, stamp, listed) and every option, servers_from, and the https:// and http:// listeners, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp, type HttpsLikeStamp } from '../../lib/stamps.js';
import { builds, refused, serversFromRows, setupTable, type Built } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const stamp = (fields: Partial<HttpsLikeStamp>) => encodeStamp({ protocol: 'doh', props, address: '', hashes: [], host: 'dns.example', path: '/dns-query', bootstrap: [], ...fields });
const DOT = encodeStamp({ protocol: 'dot', props, address: '192.0.2.1', hashes: [], host: 'dns.example', bootstrap: [] });
const TRUNCATED = `sdns://${Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0]).toString('base64url')}`;
const PIN = Buffer.alloc(32, 1).toString('base64');
const PIN2 = Buffer.alloc(32, 2).toString('base64');
/** `doh { server q https://192.0.2.1 { LINE } }`: LINE stands on line 3. */
const option = (line: string) => `doh {\nserver q https://192.0.2.1 {\n${line}\n}\n}`;
/** The built upstreams' URLs, in the order declared. */
const urls = (...expected: string[]) => (_: unknown, { built }: Built) => assert.deepEqual(built.blocks[0]!.upstreams.all.map((u) => [u.protocol, u.address]), expected.map((url) => ['doh', url]));
/** The options of the one listener of a row. */
const listener = ({ built }: Built) => [...built.listeners.values()][0]!.options as Record<string, unknown>;

setupTable(
  'doh',
  [
    builds('doh {\nserver one https://192.0.2.1\n}', (o, built) => {
      urls('https://192.0.2.1/dns-query')(o, built);
      const [one] = o.servers;
      assert.deepEqual([one.hostname, one.port, one.path, one.addresses, one.bootstrap, one.method, one.pool, one.timeoutMs, one.traceparent, one.zone, one.listed, one.http2], ['192.0.2.1', 443, '/dns-query', ['192.0.2.1'], null, 'post', 1, 2000, false, '.', false, 'veil']);
    }),
    builds(`doh corp.test {\nserver q https://dns.example:8443/q {\nbootstrap 192.0.2.1 [2001:db8::1]\nmethod get\npool 2\ntimeout 1s\nca ca.pem\npin_sha256 ${PIN} ${PIN2}\npin_sha256 ${PIN}\ntraceparent\nhttp2 node\n}\n}`, (o, built) => {
      urls('https://dns.example:8443/q')(o, built);
      const [q] = o.servers;
      assert.deepEqual([q.addresses, q.bootstrap, q.method, q.pool, q.timeoutMs, q.extraCa.length, q.pins.length, q.traceparent, q.zone, q.http2], [['192.0.2.1', '2001:db8::1'], ['192.0.2.1', '2001:db8::1'], 'get', 2, 1000, 1, 3, true, 'corp.test.', 'node']);
    }),
    builds('doh {\nserver a https://192.0.2.1\n}\ndoh corp.test {\nserver b https://192.0.2.2\n}', ({ servers }) => {
      assert.deepEqual(servers.map((s: { name: string; zone: string }) => [s.name, s.zone]), [['a', '.'], ['b', 'corp.test.']]);
    }),
    builds(`doh {\nserver s ${stamp({ address: '192.0.2.7:8443', host: 'dns.example', path: '/q' })}\nserver t ${stamp({ host: '192.0.2.8' })}\n}`, urls('https://dns.example:8443/q', 'https://192.0.2.8/dns-query')),
    builds(`doh {\nserver s ${stamp({ bootstrap: ['9.9.9.9'] })} {\nbootstrap 192.0.2.9\n}\n}`, (o) => assert.deepEqual(o.servers[0].addresses, ['192.0.2.9'])),
    builds('sources {\nlist public public.md\n}\ndoh {\nserver quad9 {\nmethod get\n}\n}', ({ servers: [q] }) => assert.deepEqual([q.name, q.listed, q.method], ['quad9', true, 'get'])),
    ...serversFromRows('doh'),
    refused('doh https://192.0.2.1', 1, 5, /the argument of doh is the zone to serve \(e\.g\. "doh \. \{ … \}"\); servers go inside the block as "server NAME https:\/\/192\.0\.2\.1"$/),
    refused('doh', 1, 1, /no server: add "server NAME https:\/\/HOST\/dns-query \{ … \}" \(or "servers_from LIST"\) lines in a block$/),
    refused('doh . corp.test {\nserver q https://192.0.2.1\n}', 1, 7, /doh takes 0 to 1 arguments, got 2$/),
    refused('doh {\nserver\n}', 2, 1, /server takes 1 to 2 arguments, got 0$/),
    refused('doh {\nserver https://192.0.2.1 q\n}', 2, 8, /a server line is "server NAME URL": the name comes first$/),
    refused('doh {\nserver q http://192.0.2.1/dns-query\n}', 2, 10, /http:\/\/ would send queries in plaintext; DoH upstreams are https:\/\/$/),
    refused('doh {\nserver q tls://192.0.2.1\n}', 2, 10, /doh upstreams are https:\/\/ URLs or sdns:\/\/ stamps, not tls:\/\/$/),
    refused('doh {\nserver q https://dns.example/dns-query\n}', 2, 10, /dns\.example is a host name: add "bootstrap IP…" with its addresses \(Veil never asks the system resolver/),
    refused(`doh {\nserver s ${stamp({ bootstrap: ['9.9.9.9'] })}\n}`, 2, 10, /the stamp gives no address for dns\.example: add a block with "bootstrap IP…" \(the stamp's bootstrap entries 9\.9\.9\.9 are plain-DNS resolvers/),
    refused(`doh {\nserver s ${TRUNCATED}\n}`, 2, 10, /bad stamp: stamp ends before its address$/),
    refused(`doh {\nserver s ${DOT}\n}`, 2, 10, /this is a dot stamp, not a DoH one; use the dot plugin$/),
    refused('doh {\nserver quad9\n}', 2, 8, /a server without a URL or stamp comes from the resolver lists, and this block has no sources directive$/),
    refused('doh {\nserver q https://192.0.2.1\nserver q https://192.0.2.2\n}', 3, 8, /two upstreams are named "q"/),
    refused(option('bootstrap 192.0.2.2'), 3, 1, /bootstrap gives the addresses of a host name, and 192\.0\.2\.1 is already an address$/),
    refused('doh {\nserver q https://dns.example {\nbootstrap 192.0.2.1 dns.google\n}\n}', 3, 21, /bootstrap takes IP addresses \(no names, no ports\): "dns\.google" is not one$/),
    refused('doh {\nserver q https://dns.example {\nbootstrap 192.0.2.1:53\n}\n}', 3, 11, /"192\.0\.2\.1:53" is not one$/),
    refused(option('pin_sha256 notbase64'), 3, 12, /"notbase64" is not a base64 SHA-256 digest/),
    refused(option('ca missing.pem'), 3, 4, /cannot read ca file "missing\.pem": ENOENT$/),
    refused(option('ca public.md'), 3, 4, /"public\.md" holds no PEM certificate$/),
    refused(option('method put'), 3, 8, /method is "post" or "get", not "put"$/),
    refused(option('pool 0'), 3, 6, /0 is out of range \(1-64\)$/),
    refused(option('http2 nghttp2'), 3, 7, /http2 is "veil" \(Veil's own HTTP\/2 client\) or "node" \(node:http2\), not "nghttp2"$/),
    refused(option('timeout 5ms'), 3, 9, /5ms is below the minimum of 10ms$/),
    refused(option('timeout 2m'), 3, 9, /2m is above the maximum of 1m$/),
    refused(option('traceparent yes'), 3, 13, /traceparent takes 0 arguments, got 1$/),
    refused(option('pol 2'), 3, 1, /unknown option "pol" \(did you mean "pool"\?\)$/),
    refused(option('method get\nmethod post'), 4, 1, /option "method" is given twice$/),

    // the https:// and http:// listeners
    builds('listen http://127.0.0.1:8080 {\ntrusted_proxies 10.0.0.0/8 ::1 192.0.2.1\nmax_streams 10\nidle_timeout 5s\n}', (_, built) => {
      const o = listener(built);
      assert.deepEqual([o.path, o.trustedProxies, o.maxStreams, o.idleTimeoutMs, o.requestTimeoutMs, o.maxConnections, o.maxConnectionsPerClient, o.http2, o.cert], ['/dns-query', ['10.0.0.0/8', '::1/128', '192.0.2.1/32'], 10, 5000, 5000, 1000, 100, 'veil', null]);
    }),
    builds('listen https://127.0.0.1:8443/q {\ncert chain.pem\nkey key.pem\nrequest_timeout 3s\nmax_connections 5\nmax_header_size 4096\nhttp2 node\n}', (_, built) => {
      const o = listener(built);
      assert.deepEqual([o.path, typeof o.cert, typeof o.key, o.idleTimeoutMs, o.requestTimeoutMs, o.maxConnections, o.maxConnectionsPerClient, o.maxHeaderSize, o.http2], ['/q', 'string', 'string', 30_000, 3000, 5, 1, 4096, 'node']);
    }),
    builds('listen http://127.0.0.1:8080 {\nmax_connections_per_client 7\n}', (_, built) => assert.deepEqual([listener(built).maxConnectionsPerClient, listener(built).requestTimeoutMs], [7, 10_000])),
    refused('listen https://127.0.0.1:8443/dns-query', 1, 8, /https:\/\/127\.0\.0\.1:8443\/dns-query needs "cert FILE" and "key FILE" in its block$/),
    refused('listen https://127.0.0.1:8443 {\ncert chain.pem\nkey other-key.pem\n}', 2, 6, /the certificate and key do not go together/),
    refused('listen https://127.0.0.1:8443 {\ncert nope.pem\nkey key.pem\n}', 2, 6, /cannot read cert file "nope\.pem": ENOENT$/),
    refused('listen https://127.0.0.1:8443 {\ncert chain.pem\nkey public.md\n}', 3, 5, /"public\.md" holds no PEM key$/),
    refused('listen http://127.0.0.1:8080/dns?x=1', 1, 8, /http:\/\/127\.0\.0\.1:8080\/dns\?x=1: the path must be a plain path like \/dns-query \(no query string\)$/),
    refused('listen http://127.0.0.1:8080 {\ncert chain.pem\n}', 2, 1, /unknown option "cert" for http$/),
    refused('listen http://127.0.0.1:8080 {\nmax_stream 10\n}', 2, 1, /unknown option "max_stream" for http \(did you mean "max_streams"\?\)$/),
    refused('listen http://127.0.0.1:8080 {\ntrusted_proxies 10.0.0.0/8 10.0.0.0/33\n}', 2, 28, /"10\.0\.0\.0\/33" is not an address or a CIDR range \(examples: 10\.0\.0\.0\/8, ::1\)$/),
    refused('listen http://127.0.0.1:8080 {\ntrusted_proxies\n}', 2, 1, /trusted_proxies takes at least 1 argument, got 0$/),
    refused('listen http://127.0.0.1:8080 {\nhttp2 nghttp2\n}', 2, 7, /http2 is veil or node \(Veil's own HTTP\/2, or the runtime's node:http2\), not "nghttp2"$/),
    refused('listen http://127.0.0.1:8080 {\nidle_timeout 50ms\n}', 2, 14, /50ms is below the minimum of 100ms$/),
    refused('listen http://127.0.0.1:8080 {\nrequest_timeout 2h\n}', 2, 17, /2h is above the maximum of 1h$/),
    refused('listen http://127.0.0.1:8080 {\nmax_connections 0\n}', 2, 17, /0 is out of range \(1-1000000\)$/),
    refused('listen http://127.0.0.1:8080 {\nmax_connections_per_client 0\n}', 2, 28, /0 is out of range \(1-1000000\)$/),
    refused('listen http://127.0.0.1:8080 {\nmax_streams 10001\n}', 2, 13, /10001 is out of range \(1-10000\)$/),
    refused('listen http://127.0.0.1:8080 {\nmax_header_size 512\n}', 2, 17, /512 is out of range \(1024-1048576\)$/),
    refused('listen http://127.0.0.1:8080 {\nmax_streams 1 2\n}', 2, 15, /max_streams takes 1 argument, got 2$/),
    refused('listen http://127.0.0.1:8080 {\nhttp2 veil\nhttp2 node\n}', 3, 1, /option "http2" is given twice$/),
  ],
  { certificates: true, files: { 'public.md': '# an empty list\n' } },
);
