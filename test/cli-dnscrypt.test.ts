/** `veil stamp` and `veil dnscrypt keygen`: the commands' output, errors, and the real program. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { CommandIo } from '../cli/io.js';
import { runSubcommand } from '../cli/main.js';
import { parseProviderKey, providerKeyPair } from '../lib/dnscrypt/provider-key.js';
import { parseStamp } from '../lib/stamps.js';
import { runVeil } from './helpers/veil-process.js';

function capture(): CommandIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l) };
}

const KEY = 'c3846bf24b9e93ca64274c0ec67c1ecc5e024ffcacd2d74019350e81fe546ae4';
const LOCALHOST = 'sdns://AQcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5BkyLmRuc2NyeXB0LWNlcnQubG9jYWxob3N0';

describe('veil stamp', () => {
  it('decode prints every field', async () => {
    const io = capture();
    assert.equal(await runSubcommand('stamp', ['decode', LOCALHOST], io), 0);
    assert.deepEqual(io.stdout, [
      'protocol      dnscrypt',
      'dnssec        yes',
      'no logs       yes',
      'no filter     yes',
      'address       127.0.0.1:443',
      `provider key  ${KEY}`,
      'provider name 2.dnscrypt-cert.localhost',
    ]);
  });

  it('decode of a relay, a DoH stamp with hashes and a DoT stamp with bootstrap addresses', async () => {
    const io = capture();
    await runSubcommand('stamp', ['decode', 'sdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw'], io);
    await runSubcommand('stamp', ['decode', 'sdns://AgIAAAAAAAAAACAREREREREREREREREREREREREREREREREREREREREREQ9kbnMuZXhhbXBsZS5jb20KL2Rucy1xdWVyeQ'], io);
    await runSubcommand('stamp', ['decode', 'sdns://AwYAAAAAAAAACTE5Mi4wLjIuMQATZG90LmV4YW1wbGUuY29tOjg1M4wxOTguNTEuMTAwLjELMjAzLjAuMTEzLjE'], io);
    assert.ok(io.stdout.includes('protocol      dnscrypt-relay'));
    assert.ok(io.stdout.includes('address       94.198.41.235:443'));
    assert.ok(io.stdout.includes(`hashes        ${'11'.repeat(32)}`));
    assert.ok(io.stdout.includes('path          /dns-query'));
    assert.ok(io.stdout.includes('bootstrap     198.51.100.1 203.0.113.1'));
  });

  it('encode makes the same stamp from flags, for DNSCrypt, relays and DoH', async () => {
    const io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'dnscrypt', '--address', '127.0.0.1', '--provider-key', KEY, '--provider-name', '2.dnscrypt-cert.localhost', '--dnssec', '--nolog', '--nofilter'], io), 0);
    await runSubcommand('stamp', ['encode', '--protocol', 'dnscrypt-relay', '--address', '192.0.2.1:443'], io);
    await runSubcommand('stamp', ['encode', '--protocol', 'doh', '--host', 'dns.example.com', '--path', '/dns-query', '--hash', '11'.repeat(32), '--nolog'], io);
    assert.deepEqual(io.stdout, [LOCALHOST, 'sdns://gQkxOTIuMC4yLjE', 'sdns://AgIAAAAAAAAAACAREREREREREREREREREREREREREREREREREREREREREQ9kbnMuZXhhbXBsZS5jb20KL2Rucy1xdWVyeQ']);
  });

  it('mistakes: a bad stamp (exit 1, naming the field), missing or unknown flags (exit 2, with usage)', async () => {
    let io = capture();
    assert.equal(await runSubcommand('stamp', ['decode', 'sdns://AAEAAAAAAAAADlsyMDAxOmRiODo6MV0'], io), 1);
    assert.match(io.stderr.join('\n'), /bad stamp: stamp ends inside its address/);
    io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'dnscrypt', '--address', '127.0.0.1'], io), 2);
    assert.match(io.stderr.join('\n'), /needs --provider-key/);
    io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'dnscrypt', '--address', '127.0.0.1', '--provider-key', 'abcd', '--provider-name', 'x'], io), 2);
    assert.match(io.stderr.join('\n'), /--provider-key must be 32 bytes in hex/);
    io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'plain', '--address', 'dns.example'], io), 1);
    assert.match(io.stderr.join('\n'), /not an IP address/);
    io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'quic'], io), 2);
    assert.match(io.stderr.join('\n'), /--protocol must be one of/);
    io = capture();
    assert.equal(await runSubcommand('stamp', ['encode', '--protocol', 'plain', '--adress', '1.2.3.4'], io), 2);
    assert.match(io.stderr.join('\n'), /Unknown option '--adress'/);
  });
});

describe('veil dnscrypt keygen', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-keygen-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a secret key (0600) and a public key, and prints the stamp last', async () => {
    const io = capture();
    const out = path.join(dir, 'keys');
    assert.equal(await runSubcommand('dnscrypt', ['keygen', '--provider', '2.dnscrypt-cert.veil.test', '--out', out, '--addr', '127.0.0.1:5443', '--nolog'], io), 0);
    assert.equal(statSync(path.join(out, 'provider.key')).mode & 0o777, 0o600);
    const seed = parseProviderKey(readFileSync(path.join(out, 'provider.key')));
    const publicKey = readFileSync(path.join(out, 'provider.pub'), 'utf8').trim();
    assert.equal(providerKeyPair(seed).publicKey.toString('hex'), publicKey);
    const stamp = parseStamp(io.stdout.at(-1)!);
    assert.equal(stamp.protocol, 'dnscrypt');
    if (stamp.protocol !== 'dnscrypt') return;
    assert.deepEqual([stamp.address, stamp.providerName, stamp.providerKey.toString('hex'), stamp.props.noLogs], ['127.0.0.1:5443', '2.dnscrypt-cert.veil.test', publicKey, true]);
    assert.ok(io.stdout.some((l) => l.includes('listen dnscrypt://127.0.0.1:5443 {')));
  });

  it('never replaces an existing key; refuses a provider name without the prefix', async () => {
    let io = capture();
    const out = path.join(dir, 'keys');
    assert.equal(await runSubcommand('dnscrypt', ['keygen', '--provider', '2.dnscrypt-cert.veil.test', '--out', out], io), 1);
    assert.match(io.stderr.join('\n'), /exists already/);
    io = capture();
    assert.equal(await runSubcommand('dnscrypt', ['keygen', '--provider', 'veil.test', '--out', path.join(dir, 'other')], io), 2);
    assert.match(io.stderr.join('\n'), /--provider must be 2\.dnscrypt-cert\.NAME/);
  });

  it('the real program: keygen, then stamp decode of what it printed', async () => {
    const keygen = await runVeil(['dnscrypt', 'keygen', '--provider', '2.dnscrypt-cert.real.test', '--out', path.join(dir, 'real')], dir);
    assert.equal(keygen.code, 0, keygen.stderr);
    const stamp = keygen.stdout.trim().split('\n').at(-1)!;
    const decoded = await runVeil(['stamp', 'decode', stamp], dir);
    assert.equal(decoded.code, 0);
    assert.match(decoded.stdout, /provider name 2\.dnscrypt-cert\.real\.test/);
    assert.match(decoded.stdout, /address {7}127\.0\.0\.1:443/);
  });
});
