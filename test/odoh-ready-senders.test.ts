/**
 * HPKE sender set-ups made ahead (lib/odoh/ready-senders.ts): what a made-ahead set-up seals
 * opens at the target and its answer at the client; no encapsulated key is handed out twice,
 * across refills; a new config never gets a set-up of the old key; the pool stays bounded and
 * makes nothing after close.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openQuery, prepareSender, sealQuery, sealResponse } from '../lib/odoh/crypto.js';
import { deriveTargetKey, newSeed } from '../lib/odoh/keys.js';
import { parseMessage, QUERY_PADDING_BLOCK } from '../lib/odoh/message.js';
import { ReadySenders } from '../lib/odoh/ready-senders.js';

/** Lets the pool's refills run (one every two turns of the event loop). */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('ODoH sender set-ups made ahead', () => {
  it('a query sealed with a made-ahead set-up opens at the target, and its answer at the client', async () => {
    const key = deriveTargetKey(newSeed());
    const senders = new ReadySenders(2);
    senders.take(key.config);
    await turns(8);
    assert.equal(senders.readyCount, 2, 'refilled between queries');
    const dns = Buffer.from('a query of some sort');
    const { message, pending } = sealQuery(key.config, dns, QUERY_PADDING_BLOCK, senders.take(key.config));
    assert.equal(senders.readyCount, 1, 'the query took a ready one');
    const opened = openQuery(key, parseMessage(message));
    assert.deepEqual(opened.dns, dns);
    assert.deepEqual(pending.openResponse(sealResponse(opened, Buffer.from('its answer'), 468)), Buffer.from('its answer'));
    senders.close();
  });

  it("makes no set-up before the turn's writes (a flush queued with setImmediate after the query was sealed)", async () => {
    const key = deriveTargetKey(newSeed());
    const senders = new ReadySenders(2);
    senders.take(key.config);
    const readyAtFlush = await new Promise<number>((resolve) => setImmediate(() => resolve(senders.readyCount)));
    assert.equal(readyAtFlush, 0, 'a set-up was made before the query went out');
    await turns(8);
    assert.equal(senders.readyCount, 2);
    senders.close();
  });

  it('never hands out an encapsulated key twice, ready or made at once', async () => {
    const key = deriveTargetKey(newSeed());
    const senders = new ReadySenders(3);
    const seen = new Set<string>();
    for (let round = 0; round < 20; round++) {
      // Some taken in a burst (the pool runs dry and makes them at once), then a refill.
      for (let i = 0; i < (round % 5) + 1; i++) {
        const enc = senders.take(key.config).enc.toString('hex');
        assert.ok(!seen.has(enc), `encapsulated key ${enc} handed out twice`);
        seen.add(enc);
      }
      await turns(round % 4);
    }
    assert.equal(seen.size, 60);
    senders.close();
  });

  it('a new config gets set-ups of its own key only', async () => {
    const first = deriveTargetKey(newSeed());
    const second = deriveTargetKey(newSeed());
    const senders = new ReadySenders(4);
    senders.take(first.config);
    await turns(12);
    assert.equal(senders.readyCount, 4);
    const sender = senders.take(second.config);
    assert.equal(sender.config, second.config);
    assert.equal(senders.readyCount, 0, "the old key's ready set-ups are dropped");
    const { message } = sealQuery(second.config, Buffer.from('q'), QUERY_PADDING_BLOCK, sender);
    assert.deepEqual(openQuery(second, parseMessage(message)).dns, Buffer.from('q'));
    assert.throws(() => openQuery(first, parseMessage(message)), /does not open/);
    senders.close();
  });

  it('a set-up of another config is refused, not sent', () => {
    const first = deriveTargetKey(newSeed());
    const second = deriveTargetKey(newSeed());
    assert.throws(() => sealQuery(second.config, Buffer.from('q'), QUERY_PADDING_BLOCK, prepareSender(first.config)), /another ODoH config/);
  });

  it('stays within its size, and makes nothing after close', async () => {
    const key = deriveTargetKey(newSeed());
    const senders = new ReadySenders(3);
    for (let i = 0; i < 10; i++) senders.take(key.config);
    await turns(20);
    assert.equal(senders.readyCount, 3);
    senders.take(key.config);
    senders.close();
    await turns(5);
    assert.equal(senders.readyCount, 0);
  });
});
