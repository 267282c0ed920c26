/** odoh: targets, relays, routes, servers_from and every option, and the listener's odoh_target and odoh_relay, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp } from '../../lib/stamps.js';
import { builds, refused, serversFromRows, setupTable, type Built } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const TARGET = encodeStamp({ protocol: 'odohTarget', props, host: 'odoh.example:8443', path: '/q' });
const RELAY = encodeStamp({ protocol: 'odohRelay', props, address: '192.0.2.9:4443', hashes: [Buffer.alloc(32, 3)], host: 'relay.example', path: '/proxy', bootstrap: [] });
const RELAY_NOWHERE = encodeStamp({ protocol: 'odohRelay', props, address: '', hashes: [], host: 'relay.example', path: '/proxy', bootstrap: [] });
const DNSCRYPT_RELAY = encodeStamp({ protocol: 'dnscryptRelay', address: '192.0.2.9:443' });
const PIN = Buffer.alloc(32, 1).toString('base64');
const SEED = 'ab'.repeat(32);
/** A target and a relay on lines 2 and 3 of `odoh { … }`, then `lines` from line 4 on. */
const odoh = (...lines: string[]) => `odoh {\nserver t https://odoh.example/dns-query\nrelay r https://192.0.2.9/proxy\n${lines.join('\n')}\n}`;
/** An https:// listener (its cert and key on lines 2 and 3) whose block holds `lines` from line 4 on. */
const listen = (...lines: string[]) => `listen https://127.0.0.1:8443 {\ncert chain.pem\nkey key.pem\n${lines.join('\n')}\n}`;
/** `odoh_relay { … }` on line 4 of a listener, its lines from line 5 on. */
const relay = (...lines: string[]) => listen('odoh_relay {', ...lines, '}');
const listenerOptions = ({ built }: Built) => [...built.listeners.values()][0]!.options as { odohTarget: any; odohRelay: any };
const pick = (o: any, ...keys: string[]) => keys.map((k) => o[k]);

setupTable(
  'odoh',
  [
    builds(odoh(), ({ servers: [t], relays: [r], routes }) => {
      assert.deepEqual(pick(t, 'name', 'host', 'port', 'path', 'authority', 'addresses', 'configsVia', 'timeoutMs', 'traceparent', 'listed', 'zone'), ['t', 'odoh.example', 443, '/dns-query', 'odoh.example', [], 'relay', 2500, false, false, '.']);
      assert.deepEqual([pick(r, 'name', 'host', 'port', 'path', 'addresses', 'listed'), routes], [['r', '192.0.2.9', 443, '/proxy', ['192.0.2.9'], false], []]);
      assert.deepEqual([t.http2, r.http2], ['veil', 'veil']);
    }),
    builds(`odoh corp.test {\nserver t https://odoh.example:8443 {\nbootstrap 192.0.2.10\nconfigs direct\nca ca.pem\npin_sha256 ${PIN} ${PIN}\ntimeout 1s\ntraceparent\nhttp2 node\n}\nrelay r https://relay.example/p {\nbootstrap 192.0.2.9 [2001:db8::9]\nca ca.pem\npin_sha256 ${PIN}\nhttp2 node\n}\nroute t via r direct\nroute * via *\n}`, ({ servers: [t], relays: [r], routes }) => {
      assert.deepEqual(pick(t, 'port', 'authority', 'path', 'addresses', 'configsVia', 'timeoutMs', 'traceparent', 'zone'), [8443, 'odoh.example:8443', '/dns-query', ['192.0.2.10'], 'direct', 1000, true, 'corp.test.']);
      assert.deepEqual([t.extraCa.length, t.pins.length, t.http2, r.path, r.addresses, r.bootstrap, r.extraCa.length, r.pins.length, r.http2], [1, 2, 'node', '/p', ['192.0.2.9', '2001:db8::9'], ['192.0.2.9', '2001:db8::9'], 1, 1, 'node']);
      assert.deepEqual(routes.map((x: { server: { text: string }; via: string[]; wildcard: boolean }) => [x.server.text, x.via, x.wildcard]), [['t', ['r', 'direct'], false], ['*', [], true]]);
    }),
    builds(`odoh {\nserver t ${TARGET}\nrelay r ${RELAY}\n}`, ({ servers: [t], relays: [r] }) => {
      assert.deepEqual(pick(t, 'host', 'port', 'path', 'authority'), ['odoh.example', 8443, '/q', 'odoh.example:8443']);
      assert.deepEqual(pick(r, 'host', 'port', 'path', 'authority', 'addresses', 'certHashes'), ['relay.example', 4443, '/proxy', 'relay.example:4443', ['192.0.2.9'], [Buffer.alloc(32, 3)]]);
    }),
    builds(`${odoh()}\nodoh corp.test {\nserver c https://192.0.2.3\n}`, ({ servers, relays }) => {
      assert.deepEqual([servers.map((s: { name: string; zone: string }) => [s.name, s.zone]), relays.length], [[['t', '.'], ['c', 'corp.test.']], 1]);
    }),
    builds(`odoh {\nserver t https://192.0.2.1\nroute t via direct\n}`, ({ servers: [t], relays }) => assert.deepEqual([t.addresses, relays], [['192.0.2.1'], []])),
    builds('sources {\nlist public public.md\n}\nodoh {\nserver quad9 {\nbootstrap 192.0.2.10\nconfigs direct\n}\nrelay anon\n}', ({ servers: [t], relays: [r] }) => {
      assert.deepEqual([t.listed, t.addresses, r.listed], [true, ['192.0.2.10'], true]);
    }),
    ...serversFromRows('odoh'),
    refused('odoh https://odoh.example', 1, 6, /the argument of odoh is the zone to serve \(e\.g\. "odoh \. \{ … \}"\); targets go inside the block as "server NAME https:\/\/odoh\.example"$/),
    refused('odoh', 1, 1, /no target: add "server NAME sdns:\/\/…\|https:\/\/HOST\/PATH" \(or "servers_from LIST"\) lines in a block$/),
    refused('odoh {\nrelay r https://192.0.2.9/proxy\n}', 1, 1, /no target/),
    refused('odoh {\nserver t https://odoh.example/dns-query\n}', 1, 1, /no relay: add "relay NAME sdns:\/\/…\|https:\/\/HOST\/PATH" lines/),
    refused('odoh {\nserver quad9\nrelay r https://192.0.2.9/proxy\n}', 2, 8, /a target or relay without a URL or stamp comes from the resolver lists, and this block has no sources directive$/),
    refused('odoh {\nserver\n}', 2, 1, /server takes 1 to 2 arguments, got 0$/),
    refused('odoh {\nserver https://odoh.example t\n}', 2, 8, /a line is "server NAME URL" or "relay NAME URL": the name comes first$/),
    refused('odoh {\nserver direct https://odoh.example\n}', 2, 8, /"direct" cannot be a name: routes use it$/),
    refused('odoh {\nrelay * https://192.0.2.9\n}', 2, 7, /"\*" cannot be a name: routes use it$/),
    refused('odoh {\nserver t http://odoh.example/dns-query\n}', 2, 10, /an ODoH server is an https:\/\/ URL or an sdns:\/\/ stamp, not http:\/\/$/),
    refused(`odoh {\nserver t ${RELAY}\n}`, 2, 10, /this is a odohRelay stamp, not an ODoH target one \(sdns:\/\/BQ…\); relays go on "relay" lines$/),
    refused(odoh(`relay q ${TARGET}`), 4, 9, /this is a odohTarget stamp, not an ODoH relay one \(sdns:\/\/hQ…\)$/),
    refused(odoh(`relay q ${DNSCRYPT_RELAY}`), 4, 9, /not an ODoH relay one \(sdns:\/\/hQ…\); DNSCrypt relays cannot carry ODoH$/),
    refused(odoh(`relay q ${RELAY_NOWHERE}`), 4, 9, /the stamp gives no address for relay\.example: add a block with "bootstrap IP…"/),
    refused(odoh('relay q https://relay.example/proxy'), 4, 9, /relay\.example is a host name: add a block with "bootstrap IP…" \(Veil never asks the system resolver\)$/),
    refused(odoh('relay q https://192.0.2.8 {', 'bootstrap 192.0.2.7', '}'), 4, 9, /bootstrap gives the addresses of a host name, and 192\.0\.2\.8 is already an address$/),
    refused(odoh('relay t https://192.0.2.8'), 4, 9, /two targets or relays are named "t"$/),
    refused('odoh {\nserver t https://odoh.example {\nconfigs direct\n}\nrelay r https://192.0.2.9\n}', 2, 10, /odoh\.example is a host name: "configs direct" needs "bootstrap IP…" \(Veil never asks the system resolver\)$/),
    refused('sources {\nlist public public.md\n}\nodoh {\nserver quad9 {\nconfigs direct\n}\n}', 5, 8, /configs direct needs the target's addresses: add "bootstrap IP…"$/),
    refused('odoh {\nserver t https://192.0.2.1 {\nbootstrap 192.0.2.2\n}\nroute t via direct\n}', 2, 10, /bootstrap gives the addresses of a host name, and 192\.0\.2\.1 is already an address$/),
    refused('odoh {\nserver t https://odoh.example {\nbootstrap dns.google\n}\n}', 3, 11, /bootstrap takes IP addresses \(no names, no ports\): "dns\.google" is not one$/),
    refused('odoh {\nserver t https://odoh.example {\nconfigs sideways\n}\n}', 3, 9, /configs is "relay" or "direct", not "sideways"$/),
    refused('odoh {\nserver t https://odoh.example {\ntimeout 5ms\n}\n}', 3, 9, /5ms is below the minimum of 10ms$/),
    refused('odoh {\nserver t https://odoh.example {\npin_sha256 nope\n}\n}', 3, 12, /"nope" is not a base64 SHA-256 digest/),
    refused('odoh {\nserver t https://odoh.example {\nca missing.pem\n}\n}', 3, 4, /cannot read ca file "missing\.pem": ENOENT$/),
    refused('odoh {\nserver t https://odoh.example {\ntraceparent on\n}\n}', 3, 13, /traceparent takes 0 arguments, got 1$/),
    refused('odoh {\nserver t https://odoh.example {\nhttp2 h2\n}\n}', 3, 7, /http2 is "veil" \(Veil's own HTTP\/2 client\) or "node" \(node:http2\), not "h2"$/),
    refused('odoh {\nserver t https://odoh.example\nrelay r https://192.0.2.9 {\nhttp2\n}\n}', 4, 1, /http2 takes 1 argument, got 0$/),
    refused('odoh {\nserver t https://odoh.example {\nboostrap 192.0.2.1\n}\n}', 3, 1, /unknown option "boostrap" \(did you mean "bootstrap"\?\)$/),
    refused(odoh('relay q https://relay.example {', 'timeout 1s', '}'), 5, 1, /unknown option "timeout"/),
    refused(odoh('route t via q'), 4, 13, /no relay named "q" \(relays: r\)$/),
    refused(odoh('route u via r'), 4, 7, /no ODoH server named "u" in this block \(servers: t\)$/),
    refused(odoh('route t through r'), 4, 9, /expected "via" after the server name, got "through" \(route SERVER via RELAY…\)$/),
    refused(odoh('route t via'), 4, 1, /route takes at least 3 arguments, got 2$/),
    refused(odoh('route t via r {', '}'), 4, 15, /route takes no block$/),
    refused(odoh('route t via r', 'route t via r'), 5, 7, /t has two routes$/),
    refused(odoh('relays q https://192.0.2.8'), 4, 1, /unknown option "relays" \(did you mean "relay"\?\)$/),

    // the listener's roles
    builds(listen('odoh_target'), (_, built) => assert.deepEqual(listenerOptions(built).odohTarget, { seed: null, rotateMs: 24 * 3_600_000, overlapMs: 3_600_000 })),
    builds(listen('odoh_target {', 'rotate 2h', 'overlap 30m', '}'), (_, built) => assert.deepEqual(listenerOptions(built).odohTarget, { seed: null, rotateMs: 7_200_000, overlapMs: 1_800_000 })),
    builds(listen('odoh_target target.key {', 'overlap 10m', '}'), (_, built) => assert.deepEqual(listenerOptions(built).odohTarget, { seed: Buffer.from(SEED, 'hex'), rotateMs: 24 * 3_600_000, overlapMs: 600_000 })),
    builds(relay('target Odoh.Example 1.2.3.4 [2606:4700::1]', 'target odoh.example:8443 1.2.3.5', 'target local.test 127.0.0.1', 'targets_from odoh-servers.md', 'allow_private', 'ca ca.pem', 'rate 10', 'max_inflight 100', 'timeout 2s'), (_, built) => {
      const o = listenerOptions(built).odohRelay;
      assert.deepEqual(o.targets.map((t: { authority: string; addresses: string[] }) => [t.authority, t.addresses]), [
        ['odoh.example', ['1.2.3.4', '2606:4700::1']], ['odoh.example:8443', ['1.2.3.5']], ['local.test', ['127.0.0.1']], ['listed.example:9443', []],
      ]);
      assert.deepEqual([o.allowPrivate, o.extraCa.length, o.ratePerSecond, o.maxInflight, o.timeoutMs], [true, 1, 10, 100, 2000]);
    }),
    builds(relay('target odoh.example 1.2.3.4'), (_, built) => assert.deepEqual(pick(listenerOptions(built).odohRelay, 'allowPrivate', 'ratePerSecond', 'maxInflight', 'timeoutMs'), [false, 50, 1000, 5000])),
    refused(listen('odoh_target', 'odoh_relay {', 'target odoh.example 1.2.3.4', '}'), 5, 1, /one ODoH role per listener: a relay and a target run by the same server would see both who asks and what/),
    refused(listen('odoh_target {', 'rotate 1h', 'overlap 2h', '}'), 6, 9, /overlap must not be longer than rotate \(only the key before the newest is kept\)$/),
    refused(listen('odoh_target target.key {', 'rotate 1h', '}'), 5, 1, /a key from a file is not rotated here \(several processes share it\)/),
    refused(listen('odoh_target {', 'rotate 30s', '}'), 5, 8, /30s is below the minimum of 1m$/),
    refused(listen('odoh_target missing.key'), 4, 13, /cannot read ODoH key file "missing\.key": ENOENT$/),
    refused(listen('odoh_target public.md'), 4, 13, /public\.md: no "seed HEX" line \(make one with veil odoh keygen\)$/),
    refused(listen('odoh_target a.key b.key'), 4, 19, /odoh_target takes 0 to 1 arguments, got 2$/),
    refused(listen('odoh_target {', 'rotat 2h', '}'), 5, 1, /unknown option "rotat" \(did you mean "rotate"\?\)$/),
    refused(listen('odoh_relay'), 4, 1, /odoh_relay needs a block with the targets it may reach: odoh_relay \{ target HOST\[:PORT\] IP… \}$/),
    refused(relay('allow_private'), 4, 1, /odoh_relay has no target: add "target HOST\[:PORT\] IP…" lines or a list with ODoH targets \(a relay open to any target would be an open proxy\)$/),
    refused(relay('targets_from public.md'), 5, 14, /odoh_relay has no target/),
    refused(relay('targets_from missing.md'), 5, 14, /cannot read list file "missing\.md": ENOENT$/),
    refused(relay('target odoh.example'), 5, 1, /target takes at least 2 arguments, got 1$/),
    refused(relay('target odoh.example:70000 1.2.3.4'), 5, 8, /"odoh\.example:70000" is not HOST or HOST:PORT \(with a port from 1 to 65535\)$/),
    refused(relay('target odoh.example dns.google'), 5, 21, /"dns\.google" is not an IP address \(the relay looks no name up: give the target's addresses\)$/),
    refused(relay('target dns.test 127.0.0.1'), 5, 17, /127\.0\.0\.1 is a loopback or private address: add "allow_private" to the odoh_relay block to allow it$/),
    refused(relay('target dns.test 192.0.2.1'), 5, 17, /192\.0\.2\.1 is not an address a relay may send to \(unspecified, multicast, documentation or reserved\)$/),
    refused(relay('target odoh.example 1.2.3.4', 'target odoh.example 1.2.3.5'), 6, 8, /odoh\.example is listed twice$/),
    refused(relay('target odoh.example 1.2.3.4', 'rate 0'), 6, 6, /0 is out of range \(1-1000000\)$/),
    refused(relay('target odoh.example 1.2.3.4', 'max_inflight 100001'), 6, 14, /100001 is out of range \(1-100000\)$/),
    refused(relay('target odoh.example 1.2.3.4', 'timeout 50ms'), 6, 9, /50ms is below the minimum of 100ms$/),
    refused(relay('target odoh.example 1.2.3.4', 'ca missing.pem'), 6, 4, /cannot read ca file "missing\.pem": ENOENT$/),
    refused(relay('target odoh.example 1.2.3.4', 'allow_private yes'), 6, 15, /allow_private takes 0 arguments, got 1$/),
    refused(relay('targets odoh.example 1.2.3.4'), 5, 1, /unknown option "targets" \(did you mean "target"\?\)$/),
  ],
  {
    certificates: true,
    files: {
      'public.md': '# an empty list\n',
      'target.key': { content: `# key\nseed ${SEED}\n`, mode: 0o600 },
      'odoh-servers.md': `# ODoH targets\n\n## listed\nA target.\n${encodeStamp({ protocol: 'odohTarget', props, host: 'listed.example:9443', path: '/dns-query' })}\n`,
    },
  },
);
