/** dnscrypt: server lines (stamp, listed), servers_from and every option, and the dnscrypt:// listener, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp } from '../../lib/stamps.js';
import { builds, refused, serversFromRows, setupTable, type Built } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const KEY = Buffer.alloc(32, 1);
const PROVIDER = '2.dnscrypt-cert.lab.test';
const STAMP = encodeStamp({ protocol: 'dnscrypt', props, address: '192.0.2.53', providerKey: KEY, providerName: PROVIDER });
const STAMP_V6 = encodeStamp({ protocol: 'dnscrypt', props, address: '[2001:db8::53]:5443', providerKey: KEY, providerName: PROVIDER });
/** A DNSCrypt stamp whose provider key is 31 bytes (encodeStamp refuses to make one): kind, props, then length-prefixed fields. */
const field = (bytes: Buffer) => Buffer.concat([Buffer.from([bytes.length]), bytes]);
const SHORT_KEY = `sdns://${Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0]), field(Buffer.from('192.0.2.53')), field(Buffer.alloc(31, 1)), field(Buffer.from(PROVIDER))]).toString('base64url')}`;
const RELAY = encodeStamp({ protocol: 'dnscryptRelay', address: '192.0.2.9:443' });
const DOH = encodeStamp({ protocol: 'doh', props, address: '192.0.2.1', hashes: [], host: 'doh.lab.test', path: '/dns-query', bootstrap: [] });
const SEED = 'cd'.repeat(32);
/** `dnscrypt { server s STAMP; LINE }`: LINE stands on line 3. */
const option = (line: string) => `dnscrypt {\nserver s ${STAMP}\n${line}\n}`;
/** A dnscrypt:// listener whose block holds `lines` from line 2 on. */
const listen = (...lines: string[]) => `listen dnscrypt://127.0.0.1:5443 {\n${lines.join('\n')}\n}`;
const listener = ({ built }: Built) => [...built.listeners.values()][0]!.options as Record<string, unknown>;
const server = (s: Record<string, unknown>) => [s.name, s.host, s.port, s.providerName, s.providerKey, s.listed];

setupTable(
  'dnscrypt',
  [
    builds(`dnscrypt {\nserver s ${STAMP}\n}`, ([group]) => {
      assert.deepEqual([group.zone, group.servers.map(server), group.serversFrom, group.client], ['.', [['s', '192.0.2.53', 443, PROVIDER, KEY, false]], [], { certRefreshMs: 4 * 3_600_000, ephemeralKeys: false, tcpOnly: false }]);
    }),
    builds(`dnscrypt corp.test {\nserver s ${STAMP}\nserver t ${STAMP_V6}\ncert_refresh 1h\nephemeral_keys\ntcp_only\n}\ndnscrypt {\nserver u ${STAMP}\n}`, (groups) => {
      assert.deepEqual(groups.map((g: { zone: string; servers: Array<Record<string, unknown>>; client: unknown }) => [g.zone, g.servers.map(server), g.client]), [
        ['corp.test.', [['s', '192.0.2.53', 443, PROVIDER, KEY, false], ['t', '2001:db8::53', 5443, PROVIDER, KEY, false]], { certRefreshMs: 3_600_000, ephemeralKeys: true, tcpOnly: true }],
        ['.', [['u', '192.0.2.53', 443, PROVIDER, KEY, false]], { certRefreshMs: 4 * 3_600_000, ephemeralKeys: false, tcpOnly: false }],
      ]);
    }),
    builds('sources {\nlist public public.md\n}\ndnscrypt {\nserver quad9\n}', ([group]) => assert.deepEqual(group.servers.map((s: { name: string; listed: boolean }) => [s.name, s.listed]), [['quad9', true]])),
    ...serversFromRows('dnscrypt'),
    refused('dnscrypt', 1, 1, /no server: add "server NAME sdns:\/\/…" \(or "servers_from LIST"\) lines in a block$/),
    refused('dnscrypt {\ncert_refresh 1h\n}', 1, 1, /no server/),
    refused(`dnscrypt . corp.test {\nserver s ${STAMP}\n}`, 1, 12, /dnscrypt takes 0 to 1 arguments, got 2$/),
    refused('dnscrypt {\nserver\n}', 2, 1, /server takes 1 to 2 arguments, got 0$/),
    refused(`dnscrypt {\nserver s ${STAMP} more\n}`, 2, 11 + STAMP.length, /server takes 1 to 2 arguments, got 3$/),
    refused(`dnscrypt {\nserver ${STAMP} s\n}`, 2, 8, /a server line is "server NAME sdns:\/\/…": the name comes first$/),
    refused(`dnscrypt {\nserver s ${RELAY}\n}`, 2, 10, /s: a relay stamp: relays go in the anonymize plugin$/),
    refused(`dnscrypt {\nserver s ${DOH}\n}`, 2, 10, /s: a doh stamp, not DNSCrypt$/),
    refused('dnscrypt {\nserver s sdns://AQcAAAAAAAAACTEyNy4wLjAuMSA\n}', 2, 10, /bad stamp: stamp ends inside its provider public key$/),
    refused(`dnscrypt {\nserver s ${SHORT_KEY}\n}`, 2, 10, /bad stamp: provider public key is 31 bytes, not 32$/),
    refused(`dnscrypt {\nserver s ${STAMP} {\n}\n}`, 2, 11 + STAMP.length, /server takes no block$/),
    refused('dnscrypt {\nserver quad9\n}', 2, 8, /servers without a stamp come from resolver lists, and this block has no sources directive$/),
    refused(`dnscrypt {\nserver s ${STAMP}\n}\ndnscrypt corp.test {\nserver s ${STAMP_V6}\n}`, 5, 8, /two upstreams are named "s"/),
    refused(option('cert_refresh 5s'), 3, 14, /5s is below the minimum of 10s$/),
    refused(option('cert_refresh 8d'), 3, 14, /8d is above the maximum of 168h$/),
    refused(option('cert_refresh'), 3, 1, /cert_refresh takes 1 argument, got 0$/),
    refused(option('ephemeral_keys yes'), 3, 16, /ephemeral_keys takes 0 arguments, got 1$/),
    refused(option('tcp_only {\n}'), 3, 10, /tcp_only takes no block$/),
    refused(option('cert_refrsh 1h'), 3, 1, /unknown option "cert_refrsh" \(did you mean "cert_refresh"\?\)$/),
    refused(option('tcp_only\ntcp_only'), 4, 1, /option "tcp_only" is given twice$/),

    // the dnscrypt:// listener
    builds(listen(`provider ${PROVIDER}.`, 'key provider.key', 'key_exchanges 50 500', 'idle_timeout 20s', 'max_connections 10', 'pipeline 5', 'max_inflight 100'), (_, built) => {
      assert.deepEqual(listener(built), {
        providerName: PROVIDER, keyFile: 'provider.key', providerSeed: SEED, keyExchanges: { perClient: 50, total: 500 },
        stream: { idleTimeoutMs: 20_000, maxConnections: 10, pipeline: 5 }, datagram: { maxInflight: 100 },
      });
    }),
    builds(`listen dnscrypt://127.0.0.1 {\nprovider ${PROVIDER}\nkey provider.key\nkey_exchanges 300\n}`, (_, built) => {
      assert.deepEqual([[...built.built.listeners.keys()], listener(built).keyExchanges], [['dnscrypt://127.0.0.1:443'], { perClient: 300, total: 2000 }]);
    }),
    refused(listen('key provider.key'), 1, 8, /dnscrypt:\/\/127\.0\.0\.1:5443 needs "provider 2\.dnscrypt-cert\.NAME" in its block$/),
    refused(listen(`provider ${PROVIDER}`), 1, 8, /dnscrypt:\/\/127\.0\.0\.1:5443 needs "key FILE" \(the provider's secret key; make one with "veil dnscrypt keygen"\)$/),
    refused(listen(`provider ${PROVIDER}`, 'key missing.key'), 3, 5, /cannot read provider key missing\.key: no such file \(make one with "veil dnscrypt keygen"\)$/),
    refused(listen(`provider ${PROVIDER}`, 'key public.md'), 3, 5, /cannot read provider key public\.md: not a provider key/),
    refused(listen('provider example.org', 'key provider.key'), 2, 10, /provider "example\.org" must be 2\.dnscrypt-cert\.NAME \(relays and clients recognise certificates by that prefix\)$/),
    refused(listen('provider 2.dnscrypt-cert.a..b', 'key provider.key'), 2, 10, /provider "2\.dnscrypt-cert\.a\.\.b" is not a valid name: empty label/),
    refused(listen(`provider ${PROVIDER}`, 'key provider.key', 'key_exchanges 0'), 4, 15, /0 is out of range \(1-1000000\)$/),
    refused(listen(`provider ${PROVIDER}`, 'key provider.key', 'key_exchanges 100 10'), 4, 19, /key_exchanges: the listener's budget \(10\) is below one client's \(100\)$/),
    refused(listen(`provider ${PROVIDER}`, 'key provider.key', 'key_exchanges 1 2 3'), 4, 19, /key_exchanges takes 1 to 2 arguments, got 3$/),
    refused(listen(`provider ${PROVIDER}`, 'key provider.key', 'max_inflight 0'), 4, 14, /0 is out of range \(1-10000000\)$/),
    refused(listen(`provider ${PROVIDER}`, 'key provider.key', 'providr x'), 4, 1, /unknown option "providr" for dnscrypt \(did you mean "provider"\?\)$/),
  ],
  { files: { 'public.md': '# an empty list\n', 'provider.key': { content: `${SEED}\n`, mode: 0o600 } } },
);
