/** anonymize: relays, routes and every option, and the relay:// listener, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp } from '../../lib/stamps.js';
import { builds, refused, setupTable, type Built } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const SERVER = encodeStamp({ protocol: 'dnscrypt', props, address: '192.0.2.53', providerKey: Buffer.alloc(32, 1), providerName: '2.dnscrypt-cert.lab.test' });
const RELAY = encodeStamp({ protocol: 'dnscryptRelay', address: '192.0.2.10:4443' });
const OTHER_RELAY = encodeStamp({ protocol: 'dnscryptRelay', address: '192.0.2.11' });
/** A dnscrypt server `s` on lines 1 to 3, then `anonymize {` on line 4 and `lines` from line 5 on. */
const anon = (...lines: string[]) => `dnscrypt {\nserver s ${SERVER}\n}\nanonymize {\n${lines.join('\n')}\n}`;
/** The routes as [server, relay names or addresses, wildcard]. */
const routes = (o: { routes: Array<{ server: { text: string }; relays: Array<string | { name: string; host: string; port: number }>; wildcard: boolean }> }) =>
  o.routes.map((r) => [r.server.text, r.relays.map((x) => (typeof x === 'string' ? x : `${x.name}=${x.host}:${x.port}`)), r.wildcard]);
/** A relay:// listener whose block holds `lines` from line 2 on. */
const listen = (...lines: string[]) => `listen relay://127.0.0.1:4443 {\n${lines.join('\n')}\n}`;
const listener = ({ built }: Built) => [...built.listeners.values()][0]!.options as Record<string, unknown>;

setupTable('anonymize', [
  builds(anon('relay r 192.0.2.9', 'route s via r'), (o) => {
    assert.deepEqual([[...o.relays], routes(o), o.skipIncompatible, o.listedRelays, o.fragmentsBlocked], [[['r', { name: 'r', host: '192.0.2.9', port: 443 }]], [['s', ['r=192.0.2.9:443'], false]], false, [], []]);
  }),
  builds(anon('relay a 192.0.2.9:8443', `relay b ${RELAY}`, 'relay c [2001:db8::9]:4443', 'route * via *', `route s via a ${OTHER_RELAY} a`, 'skip_incompatible', 'fragments_blocked s', 'fragments_blocked s'), (o) => {
    assert.deepEqual(routes(o), [['*', ['a=192.0.2.9:8443', 'b=192.0.2.10:4443', 'c=2001:db8::9:4443'], true], ['s', ['a=192.0.2.9:8443', `${OTHER_RELAY}=192.0.2.11:443`], false]]);
    assert.deepEqual([o.skipIncompatible, o.fragmentsBlocked.map((t: { text: string }) => t.text)], [true, ['s', 's']]);
  }),
  builds(`sources {\nlist public public.md\n}\n${anon('relay r1', 'route * via r1 *')}`, (o) => {
    assert.deepEqual([[...o.relays], o.listedRelays.map((t: { text: string }) => t.text), routes(o)], [[['r1', null]], ['r1'], [['*', ['r1'], true]]]);
  }),
  refused('anonymize', 1, 1, /no route: add "route SERVER via RELAY…" \(or "route \* via …" for every DNSCrypt server\)$/),
  refused(anon('relay r 192.0.2.9'), 4, 1, /no route/),
  refused('anonymize all {\nroute * via *\n}', 1, 11, /anonymize takes 0 arguments, got 1$/),
  refused(anon('relay r 192.0.2.9', 'route t via r'), 6, 7, /no DNSCrypt server named "t" in this block \(DNSCrypt servers: s\); only DNSCrypt servers can be anonymized$/),
  refused(`forward . 127.0.0.1\n${anon('relay r 192.0.2.9', 'route 127.0.0.1 via r')}`, 7, 7, /no DNSCrypt server named "127\.0\.0\.1" in this block \(DNSCrypt servers: s\); only DNSCrypt servers can be anonymized$/),
  refused('forward . 127.0.0.1\nanonymize {\nrelay r 192.0.2.9\nroute * via r\n}', 4, 7, /route \* applies to DNSCrypt servers, and this block has none \(add a dnscrypt directive\)$/),
  refused(anon('relay r 192.0.2.9', 'route s via q'), 6, 13, /no relay named "q" \(relays: r\)$/),
  refused(anon('route s via q'), 5, 13, /no relay named "q"; add a "relay NAME sdns:\/\/…" \(or "relay NAME", from the lists\) line$/),
  refused(anon('route s via *'), 5, 13, /"via \*" picks among the relay lines \(or the lists' relays\), and there are none$/),
  refused(anon('relay r [2001:db8::9]:443', 'route * via *'), 6, 7, /no IPv4 relay for s \(192\.0\.2\.53:443\) among those of "via \*"$/),
  refused(anon('relay r 192.0.2.9', 'route s r'), 6, 1, /route takes at least 3 arguments, got 2$/),
  refused(anon('relay r 192.0.2.9', 'route s through r'), 6, 9, /expected "via" after the server name, got "through" \(route SERVER via RELAY…\)$/),
  refused(anon('relay r 192.0.2.9', 'route s via r', 'route s via r'), 7, 7, /s has two routes$/),
  refused(anon('relay r 192.0.2.9', 'route s via r {', '}'), 6, 15, /route takes no block$/),
  refused(anon(`relay r ${SERVER}`, 'route s via r'), 5, 9, /r: a dnscrypt stamp, not a DNSCrypt relay stamp \(sdns:\/\/gQ…\)$/),
  refused(anon('relay r sdns://gQA', 'route s via r'), 5, 9, /bad relay stamp: address is empty$/),
  refused(anon('relay r relay.example:443', 'route s via r'), 5, 9, /"relay\.example" is not an IP address .*\(a relay is sdns:\/\/… or IP:PORT\)$/),
  refused(anon('relay', 'route s via *'), 5, 1, /relay takes 1 to 2 arguments, got 0$/),
  refused(anon('relay r 192.0.2.9 192.0.2.10', 'route s via r'), 5, 19, /relay takes 1 to 2 arguments, got 3$/),
  refused(anon(`relay ${RELAY}`, 'route s via *'), 5, 7, /a relay line is "relay NAME sdns:\/\/…\|IP:PORT": the name comes first$/),
  refused(anon('relay * 192.0.2.9', 'route s via *'), 5, 7, /the name comes first$/),
  refused(anon('relay r 192.0.2.9', 'relay r 192.0.2.10', 'route s via r'), 6, 7, /two relays are named "r"$/),
  refused(anon('relay r 192.0.2.9 {', '}', 'route s via r'), 5, 19, /relay takes no block$/),
  refused(anon('relay r 192.0.2.9', 'route s via r', 'fragments_blocked'), 7, 1, /fragments_blocked takes at least 1 argument, got 0$/),
  refused(anon('relay r 192.0.2.9', 'route s via r', 'fragments_blocked s t'), 7, 21, /fragments_blocked: no DNSCrypt server named "t" in this block \(DNSCrypt servers: s\)$/),
  refused(anon('relay r 192.0.2.9', 'route s via r', 'skip_incompatible yes'), 7, 19, /skip_incompatible takes 0 arguments, got 1$/),
  refused(anon('relay r 192.0.2.9', 'route s via r', 'skip_incompatible', 'skip_incompatible'), 8, 1, /option "skip_incompatible" is given twice$/),
  refused(anon('relays r 192.0.2.9'), 5, 1, /unknown option "relays" \(did you mean "relay"\?\)$/),
  refused(anon('relay r1', 'route * via r1'), 5, 7, /a relay without an address comes from the resolver lists, and this block has no sources directive$/),
  refused(`${anon('relay r 192.0.2.9', 'route s via r')}\nanonymize {\nroute s via *\n}`, 8, 1, /anonymize is given twice in this block; put every relay and route in one$/),

  // the relay:// listener
  builds(listen('allow_ports 443 8443', 'allow_private', 'max_inflight 100', 'max_inflight_per_client 5', 'max_inflight_per_server 20', 'idle_timeout 20s', 'max_connections 10', 'pipeline 5'), (_, built) => {
    assert.deepEqual(listener(built), {
      allowPorts: [443, 8443], allowPrivate: true, maxRelayed: 100, maxPerClient: 5, maxPerServer: 20,
      stream: { idleTimeoutMs: 20_000, maxConnections: 10, pipeline: 5 }, datagram: { maxInflight: 100 + 1024 },
    });
  }),
  builds('listen relay://127.0.0.1', (_, built) => {
    const o = listener(built);
    assert.deepEqual([[...built.built.listeners.keys()], o.allowPorts, o.allowPrivate, o.maxRelayed, o.maxPerClient, o.maxPerServer], [['relay://127.0.0.1:443'], [443, 553, 853, 1443, 2053, 4343, 4434, 4443, 5353, 5443, 8443, 15353], false, 1000, 100, 250]);
  }),
  builds(listen('max_inflight 200'), (_, built) => assert.deepEqual([listener(built).maxPerClient, listener(built).maxPerServer], [20, 50])),
  refused(listen('allow_ports 443 70000'), 2, 17, /70000 is out of range \(1-65535\)$/),
  refused(listen('allow_ports'), 2, 1, /allow_ports takes at least 1 argument, got 0$/),
  refused(listen('allow_private yes'), 2, 15, /allow_private takes 0 arguments, got 1$/),
  refused(listen('max_inflight 100001'), 2, 14, /100001 is out of range \(1-100000\)$/),
  refused(listen('max_inflight_per_client 0'), 2, 25, /0 is out of range \(1-100000\)$/),
  refused(listen('max_inflight_per_server many'), 2, 25, /"many" is not a whole number$/),
  refused(listen('allow_port 443'), 2, 1, /unknown option "allow_port" for relay \(did you mean "allow_ports"\?\)$/),
], { files: { 'public.md': '# an empty list\n' } });
