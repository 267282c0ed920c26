/**
 * The shared cache without a server: what its keys and values reveal and accept (sealing), and
 * `veil cache flush`. How `shared { }` refuses a configuration that would be unsafe or cannot
 * work is in the cache's setup table (setup.test.ts).
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { FleetKeys, OVERHEAD, SIZE_STEP } from './shared/sealing.js';
import { reconnectDelay } from './shared/connection.js';
import { makeTempDir, runVeil } from '../../test/helpers/veil-process.js';

/** 32 distinct bytes from `start`. */
const secretFrom = (start: number) => Buffer.from(Array.from({ length: 32 }, (_, i) => (start + i) & 0xff));
const secret = secretFrom(7);
const keys = new FleetKeys(secret);
const query = (name: string, type: number = QType.A) => buildQuery(name, type);

describe('shared cache sealing', () => {
  it('one key per question, key bits, block and generation; the name in any case', () => {
    const q = query('www.example.org');
    const base = keys.entry(q, q.length, 0, '.', 0);
    assert.equal(keys.entry(query('WwW.ExAmPlE.oRg'), q.length, 0, '.', 0), base);
    const others = [
      keys.entry(query('www.example.org', QType.AAAA), q.length, 0, '.', 0),
      keys.entry(q, q.length, 1, '.', 0),
      keys.entry(q, q.length, 0, 'example.org', 0),
      keys.entry(q, q.length, 0, '.', 1),
      new FleetKeys(secretFrom(9)).entry(q, q.length, 0, '.', 0),
    ];
    assert.equal(new Set([base, ...others]).size, 6);
    assert.match(base, /^veil:1:[A-Za-z0-9_-]{22}$/, 'the key says nothing of the name');
  });

  it('a value opens under its own key only, and any damage is refused', () => {
    const q = query('a.example');
    const answer = Buffer.concat([q, Buffer.from('c00c000100010000012c0004c0000201', 'hex')]);
    const a = keys.entry(q, q.length, 0, '.', 0);
    const b = keys.entry(query('b.example'), q.length, 0, '.', 0);
    const sealed = keys.sealAnswer(a, answer, 300);
    assert.deepEqual(keys.openAnswer(a, sealed), { answer, ttl: 300 });
    assert.equal(keys.openAnswer(b, sealed), null, 'moved to another key');
    assert.equal(new FleetKeys(secretFrom(9)).openAnswer(a, sealed), null, 'another fleet');
    for (let i = 0; i < sealed.length; i++) {
      const damaged = Buffer.from(sealed);
      damaged[i]! ^= 0x01;
      assert.equal(keys.openAnswer(a, damaged), null, `byte ${i} flipped`);
    }
    assert.equal(keys.openAnswer(a, sealed.subarray(0, sealed.length - 1)), null);
    assert.equal(keys.openAnswer(a, Buffer.alloc(0)), null);
    assert.equal((sealed.length - OVERHEAD) % SIZE_STEP, 0, 'sizes are rounded');
    assert.equal(sealed.includes(answer.subarray(12)), false);
    // Two seals of one answer never share a nonce.
    const nonces = new Set(Array.from({ length: 1000 }, () => keys.sealAnswer(a, answer, 300).subarray(1, 13).toString('hex')));
    assert.equal(nonces.size, 1000);
  });

  it('random bytes never open and never throw', () => {
    const a = keys.entry(query('a.example'), 21, 0, '.', 0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        assert.equal(keys.openAnswer(a, Buffer.from(bytes)), null);
        assert.equal(keys.openMessage(Buffer.from(bytes)), null);
      }),
      { numRuns: 500 },
    );
  });

  it('fleet messages open under the same secret only', () => {
    const sealed = keys.sealMessage('{"kind":"flush","name":"secret.example"}');
    assert.equal(sealed.includes(Buffer.from('secret')), false);
    assert.equal(keys.openMessage(sealed), '{"kind":"flush","name":"secret.example"}');
    assert.equal(new FleetKeys(secretFrom(3)).openMessage(sealed), null);
    assert.notEqual(new FleetKeys(secretFrom(3)).channel, keys.channel, 'two fleets on one Valkey stay apart');
  });

  it('reconnects back off from 50 ms to about 5 s', () => {
    assert.ok(reconnectDelay(0) <= 63 && reconnectDelay(0) >= 37);
    for (let i = 7; i < 40; i++) assert.ok(reconnectDelay(i) <= 6250 && reconnectDelay(i) >= 3750);
  });
});

describe('veil cache flush', () => {
  it('needs a cache with a shared level, and a name that is one', async () => {
    const dir = makeTempDir({ Corefile: '. {\n listen udp://127.0.0.1:0\n cache\n forward . 127.0.0.1:5300\n}\n' });
    const none = await runVeil(['cache', 'flush', '-conf', 'Corefile'], dir);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /Corefile has no cache with a shared level/);
    const bad = await runVeil(['cache', 'flush', 'a..b', '-conf', 'Corefile'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"a\.\.b" is not a domain name/);
    const usage = await runVeil(['cache', 'purge'], dir);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown cache command "purge"/);
  });

  it('says so, and fails, when the fleet\'s Valkey cannot be reached', async () => {
    const dir = makeTempDir({ Corefile: '. {\n listen udp://127.0.0.1:0\n cache {\n  shared redis://127.0.0.1:1 {\n   key_file cache.key\n  }\n }\n forward . 127.0.0.1:5300\n}\n' });
    writeFileSync(path.join(dir, 'cache.key'), 'a1b2c3d4'.repeat(8));
    chmodSync(path.join(dir, 'cache.key'), 0o600);
    const result = await runVeil(['cache', 'flush', '-conf', 'Corefile'], dir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /redis:\/\/127\.0\.0\.1:1 \(server block \.\): unreachable \(.*ECONNREFUSED/);
  });
});
