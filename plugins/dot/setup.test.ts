/** dot: upstream lines (address, stamp, listed) and every option, servers_from, and the tls:// listener, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp } from '../../lib/stamps.js';
import { builds, refused, serversFromRows, setupTable } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const HASH = Buffer.alloc(32, 9);
const STAMP = encodeStamp({ protocol: 'dot', props, address: '10.0.0.9:8853', hashes: [HASH], host: 'dot.lab.test', bootstrap: [] });
const NOWHERE = encodeStamp({ protocol: 'dot', props, address: '', hashes: [], host: 'dot.lab.test', bootstrap: [] });
const DOH = encodeStamp({ protocol: 'doh', props, address: '10.0.0.9', hashes: [], host: 'doh.lab.test', path: '/dns-query', bootstrap: [] });
const TRUNCATED = 'sdns://' + Buffer.from([0x03, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0x31]).toString('base64url');
const PIN = Buffer.alloc(32, 1).toString('base64');
const PIN2 = Buffer.alloc(32, 2).toString('base64');
/** `dot { server a tls://10.0.0.1 { server_name dns.test; LINE } }`: LINE stands on line 4. */
const option = (line: string) => `dot {\nserver a tls://10.0.0.1 {\nserver_name dns.test\n${line}\n}\n}`;
/** A tls:// listener whose block holds `lines` from line 2 on. */
const listen = (...lines: string[]) => `listen tls://127.0.0.1:8853 {\n${lines.join('\n')}\n}`;

setupTable(
  'dot',
  [
    builds('dot {\nserver a tls://10.0.0.1 {\nserver_name dns.test\n}\n}', ({ servers: [a] }) => {
      assert.deepEqual([a.name, a.host, a.port, a.serverName, a.zone, a.listed], ['a', '10.0.0.1', 853, 'dns.test', '.', false]);
      assert.deepEqual([a.extraCa, a.pins, a.certHashes, a.poolSize, a.connectTimeoutMs, a.handshakeTimeoutMs, a.readTimeoutMs, a.writeTimeoutMs, a.staleTimeoutMs, a.maxRetries], [[], [], [], 2, 2000, 2000, 2000, 2000, 10_000, 1]);
    }),
    builds(`dot corp.test {\nserver a tls://[fd00::1]:8853 {\nserver_name DNS.Test.\nca ca.pem\nca ca.pem\npin_sha256 ${PIN}\npin_sha256 ${PIN2}\npool 4\nconnect_timeout 1s\nhandshake_timeout 1500ms\nread_timeout 3s\nwrite_timeout 4s\nstale_timeout 30s\nmax_retries 0\n}\n}`, ({ servers: [a] }) => {
      assert.deepEqual([a.host, a.port, a.serverName, a.zone, a.extraCa.length, a.pins.map((p: Buffer) => p.toString('base64'))], ['fd00::1', 8853, 'dns.test', 'corp.test.', 2, [PIN, PIN2]]);
      assert.deepEqual([a.poolSize, a.connectTimeoutMs, a.handshakeTimeoutMs, a.readTimeoutMs, a.writeTimeoutMs, a.staleTimeoutMs, a.maxRetries], [4, 1000, 1500, 3000, 4000, 30_000, 0]);
    }),
    builds('dot {\nserver a tls://10.0.0.1 {\nserver_name dns.test\n}\n}\ndot corp.test {\nserver b tls://10.0.0.2 {\nserver_name dns.test\n}\n}', ({ servers }) => {
      assert.deepEqual(servers.map((s: { name: string; zone: string }) => [s.name, s.zone]), [['a', '.'], ['b', 'corp.test.']]);
    }),
    builds(`dot {\nserver a tls://10.0.0.1 {\npin_sha256 ${PIN}\n}\n}`, ({ servers: [a] }) => assert.deepEqual([a.serverName, a.pins.length], [null, 1])),
    // several pins on one line, as doh and odoh take them (one reading of ca and pin_sha256 for all three)
    builds(`dot {\nserver a tls://10.0.0.1 {\npin_sha256 ${PIN} ${PIN2}\n}\n}`, ({ servers: [a] }) => assert.equal(a.pins.length, 2)),
    builds(`dot {\nserver s ${STAMP}\nserver t ${STAMP} {\nserver_name other.lab.test\n}\n}`, ({ servers: [s, t] }) => {
      assert.deepEqual([s.host, s.port, s.serverName, s.certHashes], ['10.0.0.9', 8853, 'dot.lab.test', [HASH]]);
      assert.equal(t.serverName, 'other.lab.test');
    }),
    builds('sources {\nlist public public.md\n}\ndot {\nserver quad9 {\npool 3\n}\n}', ({ servers: [q] }) => assert.deepEqual([q.name, q.listed, q.poolSize], ['quad9', true, 3])),
    ...serversFromRows('dot'),
    refused('dot tls://10.0.0.1', 1, 5, /the argument of dot is the zone to send \(e\.g\. "\."\); servers go inside the block: server NAME tls:\/\/10\.0\.0\.1 \{ server_name HOST \}$/),
    refused('dot', 1, 1, /no upstream: add "server NAME tls:\/\/IP:PORT \{ server_name HOST \}" lines in a block$/),
    refused('dot {\n}', 1, 5, /no upstream/),
    refused('dot a.test b.test {\n}', 1, 12, /dot takes 0 to 1 arguments, got 2$/),
    refused('dot {\nserver\n}', 2, 1, /server takes 1 to 2 arguments, got 0$/),
    refused('dot {\nserver a tls://10.0.0.1 extra\n}', 2, 25, /server takes 1 to 2 arguments, got 3$/),
    refused('dot {\nserver tls://10.0.0.1 a\n}', 2, 8, /a server line is "server NAME ADDRESS": the name comes first$/),
    refused('dot {\nserver a tls://10.0.0.1\n}', 2, 10, /a needs server_name \(the name on its certificate\) or pin_sha256: without them nothing proves who answers$/),
    refused('dot {\nserver a tls://dns.example:853 {\nserver_name dns.example\n}\n}', 2, 10, /"dns\.example" is not an IP address/),
    refused('dot {\nserver a https://10.0.0.1 {\nserver_name dns.test\n}\n}', 2, 10, /dot upstreams are tls:\/\/IP\[:PORT\] or a DoT sdns:\/\/ stamp, not https:\/\/$/),
    refused('dot {\nserver a tls://10.0.0.1/dns {\nserver_name dns.test\n}\n}', 2, 10, /unexpected path "\/dns"$/),
    refused(`dot {\nserver a ${TRUNCATED}\n}`, 2, 10, /bad stamp: stamp ends inside its address$/),
    refused(`dot {\nserver a ${DOH}\n}`, 2, 10, /this is a doh stamp; dot takes DNS-over-TLS stamps$/),
    refused(`dot {\nserver a ${NOWHERE}\n}`, 2, 10, /the stamp has no address \(its bootstrap entries are plain-DNS resolvers, which Veil never asks\)/),
    refused('dot {\nserver quad9\n}', 2, 8, /dot: a server without an address comes from the resolver lists, and this block has no sources directive$/),
    refused(`dot {\nserver a ${STAMP}\nserver a tls://10.0.0.2 {\nserver_name dns.test\n}\n}`, 3, 8, /two upstreams are named "a"/),
    refused('dot {\nserver a tls://10.0.0.1 {\npin_sha256 abc\n}\n}', 3, 12, /"abc" is not a base64 SHA-256 digest \(44 characters/),
    refused(option('server_name other.test'), 4, 1, /option "server_name" is given twice$/),
    refused('dot {\nserver a tls://10.0.0.1 {\nserver_name bad_name!\n}\n}', 3, 13, /"bad_name!" is not a host name$/),
    refused(option('ca missing.pem'), 4, 4, /cannot read ca file "missing\.pem": ENOENT$/),
    refused(option('ca key.pem'), 4, 4, /"key\.pem" holds no PEM certificate$/),
    refused(option('pool 0'), 4, 6, /0 is out of range \(1-64\)$/),
    refused(option('pool 65'), 4, 6, /65 is out of range \(1-64\)$/),
    refused(option('connect_timeout 5ms'), 4, 17, /5ms is below the minimum of 10ms$/),
    refused(option('handshake_timeout 2m'), 4, 19, /2m is above the maximum of 1m$/),
    refused(option('read_timeout soon'), 4, 14, /"soon" is not a duration/),
    refused(option('write_timeout'), 4, 1, /write_timeout takes 1 argument, got 0$/),
    refused(option('stale_timeout 50ms'), 4, 15, /50ms is below the minimum of 100ms$/),
    refused(option('max_retries 6'), 4, 13, /6 is out of range \(0-5\)$/),
    refused(option('pool_size 3'), 4, 1, /unknown option "pool_size" \(did you mean "pool"\?\)$/),
    refused(option('pool 2\npool 3'), 5, 1, /option "pool" is given twice$/),
    refused('dot {\nservers a\n}', 2, 1, /unknown option "servers" \(did you mean "server"\?\)$/),

    // the tls:// listener
    builds(listen('cert chain.pem', 'key key.pem', 'handshake_timeout 2s', 'idle_timeout 20s', 'max_connections 50', 'pipeline 10'), (_, { built }) => {
      const { cert, key, ...rest } = built.listeners.get('tls://127.0.0.1:8853')!.options as Record<string, unknown>;
      assert.deepEqual([typeof cert, typeof key, rest], ['string', 'string', { handshakeTimeoutMs: 2000, idleTimeoutMs: 20_000, maxConnections: 50, pipeline: 10 }]);
    }),
    builds('listen tls://127.0.0.1 {\ncert chain.pem\nkey key.pem\n}', (_, { built }) => assert.equal((built.listeners.get('tls://127.0.0.1:853')!.options as { handshakeTimeoutMs: number }).handshakeTimeoutMs, 5000)),
    refused(listen('cert chain.pem'), 1, 8, /tls:\/\/127\.0\.0\.1:8853 needs "cert FILE" and "key FILE" in the listen block \(the server's certificate chain and its private key, PEM\)$/),
    refused('listen tls://127.0.0.1:8853', 1, 8, /needs "cert FILE" and "key FILE"/),
    refused(listen('cert missing.pem', 'key key.pem'), 2, 6, /listen: cannot read cert file "missing\.pem": ENOENT$/),
    refused(listen('cert chain.pem', 'key ca.pem'), 3, 5, /the certificate and key cannot be used together/),
    refused(listen('cert chain.pem', 'key other-key.pem'), 3, 5, /the certificate and key cannot be used together/),
    refused(listen('cert public.md', 'key key.pem'), 2, 6, /"public\.md" holds no PEM cert$/),
    refused(listen('cert chain.pem', 'key key.pem', 'handshake_timeout 1x'), 4, 19, /"1x" is not a duration/),
    refused(listen('cert chain.pem', 'key key.pem', 'handshake_timeout 50ms'), 4, 19, /50ms is below the minimum of 100ms$/),
    refused(listen('cert chain.pem', 'key key.pem', 'certificate x'), 4, 1, /unknown option "certificate" for tls/),
    refused(listen('cert chain.pem', 'key key.pem', 'key key.pem'), 4, 1, /option "key" is given twice$/),
  ],
  { certificates: true, files: { 'public.md': '# an empty list\n' } },
);
