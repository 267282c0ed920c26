// The whoami plugin's own tests, written only against Veil's test kit: `node --test` in this
// folder (with Veil installed or linked as `veil`).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildQuery, QType, rcodeName, rcodeOf } from 'veil/plugin';
import { createBuiltinRegistry, expectConfigError, inject } from 'veil/plugin/testing';
import whoami from './index.js';

function registry() {
  const plugins = createBuiltinRegistry();
  plugins.register(whoami);
  return plugins;
}

describe('whoami', () => {
  it('answers whoami. TXT with the client, its port and its transport', async () => {
    const veil = await inject('. {\n  whoami {\n    ttl 5\n  }\n}', { registry: registry() });
    try {
      // A client on a private network: the door admits those without an acl.
    const answer = await veil.query(buildQuery('whoami', QType.TXT, { id: 1 }), { client: { address: '10.1.2.44', port: 5300 }, transport: 'tcp' });
      assert.equal(rcodeName(rcodeOf(answer)), 'NOERROR');
      assert.ok(answer.includes(Buffer.from('10.1.2.44 port 5300 via tcp')), answer.toString('latin1'));
      assert.ok(veil.logs.some((line) => line.includes('plugin/whoami: answering TXT whoami. (0 answered so far)')));
    } finally {
      await veil.stop();
    }
  });

  it('passes every other query on', async () => {
    const veil = await inject('. {\n  whoami\n  hosts {\n    192.0.2.1 a.test\n  }\n}', { registry: registry() });
    try {
      const answer = await veil.query(buildQuery('a.test', QType.A, { id: 2 }));
      assert.ok(answer.includes(Buffer.from([192, 0, 2, 1])));
    } finally {
      await veil.stop();
    }
  });

  it('refuses a bad ttl and a second whoami, at their line and column', async () => {
    await expectConfigError('. {\n  whoami {\n    ttl forever\n  }\n}', 3, 9, /whoami: "forever" is not a whole number/, { registry: registry() });
    await expectConfigError('. {\n  whoami\n  whoami other\n}', 3, 3, /whoami: whoami is given twice in this block/, { registry: registry() });
  });
});
