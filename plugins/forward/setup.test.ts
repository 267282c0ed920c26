/** forward: both forms and every option, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { encodeStamp } from '../../lib/stamps.js';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

const props = { dnssec: true, noLogs: true, noFilter: true };
const PLAIN = encodeStamp({ protocol: 'plain', props, address: '10.0.0.54:5353' });
const PUBLIC = encodeStamp({ protocol: 'plain', props, address: '9.9.9.9' });
const DNSCRYPT = encodeStamp({ protocol: 'dnscrypt', props, address: '10.0.0.55', providerKey: Buffer.alloc(32, 1), providerName: '2.dnscrypt-cert.lab.test' });

/** Each upstream as [name, host, port, tcpOnly, zone]. */
const upstreams = (...expected: Array<[string, string, number, boolean, string]>) => (servers: Array<{ name: string; host: string; port: number; tcpOnly: boolean; zone: string }>) =>
  assert.deepEqual(servers.map((s) => [s.name, s.host, s.port, s.tcpOnly, s.zone]), expected);

setupTable('forward', [
  builds('forward . 127.0.0.1 [::1]:5353 udp://10.0.0.1:5300 tcp://192.168.1.1 dns://[fd00::1]', upstreams(
    ['127.0.0.1', '127.0.0.1', 53, false, '.'], ['[::1]:5353', '::1', 5353, false, '.'], ['udp://10.0.0.1:5300', '10.0.0.1', 5300, false, '.'],
    ['tcp://192.168.1.1', '192.168.1.1', 53, true, '.'], ['dns://[fd00::1]', 'fd00::1', 53, false, '.'],
  )),
  builds('forward corp.test 10.0.0.53 {\ntimeout 500ms\n}\nforward . 10.0.0.54', (servers) => {
    assert.deepEqual(servers.map((s: { zone: string; timeoutMs: number; randomizeCase: boolean }) => [s.zone, s.timeoutMs, s.randomizeCase]), [['corp.test.', 500, true], ['.', 2000, true]]);
  }),
  builds(`forward {\nserver lan udp://10.0.0.53\nserver quad9 tcp://9.9.9.9 insecure\nserver stamped ${PLAIN}\ntimeout 1s\nno_0x20\n}`, (servers) => {
    upstreams(['lan', '10.0.0.53', 53, false, '.'], ['quad9', '9.9.9.9', 53, true, '.'], ['stamped', '10.0.0.54', 5353, false, '.'])(servers);
    assert.deepEqual(servers.map((s: { timeoutMs: number; randomizeCase: boolean }) => [s.timeoutMs, s.randomizeCase]), [[1000, false], [1000, false], [1000, false]]);
  }),
  builds('forward . 9.9.9.9 1.1.1.1 insecure', upstreams(['9.9.9.9', '9.9.9.9', 53, false, '.'], ['1.1.1.1', '1.1.1.1', 53, false, '.'])),
  refused('forward', 1, 1, /no upstream: add "server NAME udp:\/\/IP:PORT" lines or addresses after the zone$/),
  refused('forward 127.0.0.1:53', 1, 9, /"127\.0\.0\.1:53" looks like an address, but the first argument is the zone to forward \(write "forward \. 127\.0\.0\.1:53" for every name\)$/),
  refused('forward udp://10.0.0.1', 1, 9, /looks like an address, but the first argument is the zone/),
  refused('forward . 10.0.0.1 9.9.9.9', 1, 20, /9\.9\.9\.9 \(9\.9\.9\.9\) is on the public internet: plaintext DNS to it is a DNS leak\. Use dot, doh or dnscrypt, or end the line with "insecure" if plaintext is what you want$/),
  refused('forward . 169.254.0.53', 1, 11, /is link-local, not on a private network/),
  refused('forward . 100.64.0.53', 1, 11, /is in 100\.64\.0\.0\/10, the carrier's NAT network/),
  refused('forward . insecure', 1, 11, /"insecure" goes after the addresses it applies to, or at the end of a server line$/),
  refused('forward . dns.example', 1, 11, /"dns\.example" is not an IP address/),
  refused('forward . 10.0.0.1:99999', 1, 11, /port 99999 is out of range \(0-65535\)$/),
  refused('forward . tls://10.0.0.1:853', 1, 11, /forward speaks plain DNS \(udp:\/\/, tcp:\/\/\); for tls:\/\/ use the dot plugin$/),
  refused('forward . udp://10.0.0.1/dns', 1, 11, /unexpected path "\/dns"$/),
  // an IPv6 address without brackets: the hint, not only "not an address of the form …"
  refused('forward . udp://fd00::53', 1, 11, /IPv6 addresses go in brackets: udp:\/\/\[fd00::53\]:PORT$/),
  refused('forward {\nserver a udp://fd00::53/x\n}', 2, 10, /IPv6 addresses go in brackets: udp:\/\/\[fd00::53\]:PORT$/),
  refused('forward . udp://not-an-address:53:1', 1, 11, /"udp:\/\/not-an-address:53:1" is not an address of the form scheme:\/\/IP:PORT$/),
  refused('forward . 10.0.0.1 10.0.0.1', 1, 20, /two upstreams are named "10\.0\.0\.1"; names must be unique in a server block$/),
  refused('forward {\nserver a\n}', 2, 1, /server takes 2 to 3 arguments, got 1$/),
  refused('forward {\nserver a udp://10.0.0.1 insecure more\n}', 2, 34, /server takes 2 to 3 arguments, got 4$/),
  refused('forward {\nserver udp://10.0.0.1 a\n}', 2, 8, /a server line is "server NAME ADDRESS": the name comes first$/),
  refused('forward {\nserver a udp://10.0.0.1 plain\n}', 2, 25, /unexpected "plain" \(the only word allowed after the address is "insecure"\)$/),
  refused('forward {\nserver a udp://dns.example:53\n}', 2, 10, /"dns\.example" is not an IP address/),
  refused('forward {\nserver a https://10.0.0.1\n}', 2, 10, /for https:\/\/ use the doh plugin$/),
  refused('forward {\nserver a udp://9.9.9.9\n}', 2, 10, /a \(9\.9\.9\.9\) is on the public internet/),
  refused(`forward {\nserver a ${DNSCRYPT}\n}`, 2, 10, /a dnscrypt stamp: forward takes plain DNS stamps \(sdns:\/\/AA…\); use the dnscrypt plugin$/),
  refused(`forward {\nserver quad9 ${PUBLIC}\n}`, 2, 14, /quad9 \(9\.9\.9\.9\) is on the public internet/),
  refused('forward {\nserver a sdns://AA\n}', 2, 10, /bad stamp: stamp ends inside its props$/),
  refused('forward {\nserver a sdns://AAcAAAAAAAAAB2V4YW1wbGU\n}', 2, 10, /bad stamp: address "example" is not an IP address$/),
  refused('forward {\nserver a udp://10.0.0.1 {\n}\n}', 2, 25, /server takes no block$/),
  refused('forward {\nserver a udp://10.0.0.1\nserver a udp://10.0.0.2\n}', 3, 8, /two upstreams are named "a"/),
  refused('forward . 10.0.0.1 {\ntimeout 5ms\n}', 2, 9, /5ms is below the minimum of 10ms$/),
  refused('forward . 10.0.0.1 {\ntimeout 2m\n}', 2, 9, /2m is above the maximum of 1m$/),
  refused('forward . 10.0.0.1 {\ntimeout 2parsecs\n}', 2, 9, /"2parsecs" is not a duration/),
  refused('forward . 10.0.0.1 {\ntimeout\n}', 2, 1, /timeout takes 1 argument, got 0$/),
  refused('forward . 10.0.0.1 {\nno_0x20 please\n}', 2, 9, /no_0x20 takes 0 arguments, got 1$/),
  refused('forward . 10.0.0.1 {\ntimout 2s\n}', 2, 1, /unknown option "timout" \(did you mean "timeout"\?\)$/),
  refused('forward . 10.0.0.1 {\ntimeout 1s\ntimeout 2s\n}', 3, 1, /option "timeout" is given twice$/),
]);
