/** cache: its capacity and every option, `shared` and its block among them, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

const HEX = 'a1b2c3d4'.repeat(8);
const secret = (content: string | Buffer, mode = 0o600) => ({ content, mode });
/** `cache` with a `shared URLS` line (line 2) whose block holds `lines` from line 3 on. */
const shared = (urls: string, ...lines: string[]) => `cache {\nshared ${urls} {\n${lines.join('\n')}\n}\n}`;

setupTable(
  'cache',
  [
    builds('cache', { success: { capacity: 9984, maxTtl: 3600, minTtl: 5 }, denial: { capacity: 9984, maxTtl: 1800, minTtl: 5 }, servfailTtl: 5, prefetch: null, serveStaleMs: null, shared: null }),
    builds('cache 1000 {\nsuccess 500 600 10\ndenial 200 300\nservfail 0s\nprefetch 3 2m 20%\nserve_stale\n}', {
      success: { capacity: 500, maxTtl: 600, minTtl: 10 }, denial: { capacity: 200, maxTtl: 300, minTtl: 5 }, servfailTtl: 0, prefetch: { amount: 3, windowMs: 120_000, percentage: 20 }, serveStaleMs: 3_600_000,
    }),
    builds('cache 1000 {\ndenial 200\nprefetch 5\nserve_stale 2d\nservfail 5m\n}', { denial: { capacity: 200, maxTtl: 1800, minTtl: 5 }, prefetch: { amount: 5, windowMs: 60_000, percentage: 10 }, serveStaleMs: 2 * 86_400_000, servfailTtl: 300 }),
    refused('cache 0', 1, 7, /0 is out of range \(1-10000000\)$/),
    refused('cache lots', 1, 7, /"lots" is not a whole number$/),
    refused('cache 10 20', 1, 10, /cache takes 0 to 1 arguments, got 2$/),
    refused('cache {\nsuccess\n}', 2, 1, /success takes 1 to 3 arguments, got 0$/),
    refused('cache {\nsuccess 10 60 5 1\n}', 2, 17, /success takes 1 to 3 arguments, got 4$/),
    refused('cache {\nsuccess 10 5 60\n}', 2, 14, /MINTTL 60 is above MAXTTL 5$/),
    refused('cache {\ndenial 10 700000\n}', 2, 11, /700000 is out of range \(0-604800\)$/),
    refused('cache {\ndenial 10 {\n}\n}', 2, 11, /denial takes no block$/),
    refused('cache {\nservfail 10m\n}', 2, 10, /10m is above the maximum of 5m$/),
    refused('cache {\nservfail\n}', 2, 1, /servfail takes 1 argument, got 0$/),
    refused('cache {\nprefetch 0\n}', 2, 10, /0 is out of range \(1-1000000\)$/),
    refused('cache {\nprefetch 3 500ms\n}', 2, 12, /500ms is below the minimum of 1s$/),
    refused('cache {\nprefetch 3 1m 150%\n}', 2, 15, /"150%" is not a percentage like 10%$/),
    refused('cache {\nprefetch 3 1m 10\n}', 2, 15, /"10" is not a percentage like 10%$/),
    refused('cache {\nserve_stale 8d\n}', 2, 13, /8d is above the maximum of 168h$/),
    refused('cache {\nserve_stale 1h 2h\n}', 2, 16, /serve_stale takes 0 to 1 arguments, got 2$/),
    refused('cache {\nprefech 3\n}', 2, 1, /unknown option "prefech" \(did you mean "prefetch"\?\)$/),
    refused('cache {\nsuccess 10\nsuccess 20\n}', 3, 1, /option "success" is given twice$/),
    refused('cache\ncache 100', 2, 1, /cache is given twice in this block$/),

    // shared: the key as hex, base64 or raw bytes, and every option
    builds(shared('redis://127.0.0.1:6379/0', 'key_file cache.key'), { shared: { shown: 'redis://127.0.0.1:6379/0', tls: false, addresses: [{ host: '127.0.0.1', port: 6379 }], db: 0, username: null, password: null, secret: Buffer.from(HEX, 'hex'), timeoutMs: 5, ca: [], serverName: null, sentinel: null, cluster: false, writeQueue: 10_000 } }),
    builds(shared('redis://127.0.0.1', 'key_file b64.key'), (o) => assert.deepEqual(o.shared.secret, Buffer.from(HEX, 'hex'))),
    builds(shared('redis://127.0.0.1', 'key_file raw.key'), (o) => assert.deepEqual(o.shared.secret, Buffer.from(HEX, 'hex'))),
    builds(shared('redis://veil@[::1]:7000/3', 'key_file cache.key', 'timeout 20ms', 'write_queue 500', 'password_file pw'), (o) => {
      assert.deepEqual([o.shared.addresses, o.shared.db, o.shared.username, o.shared.password, o.shared.timeoutMs, o.shared.writeQueue], [[{ host: '::1', port: 7000 }], 3, 'veil', 'x', 20, 500]);
    }),
    builds(shared('redis://127.0.0.1 redis://127.0.0.2:26380', 'key_file cache.key', 'sentinel mymaster'), (o) => {
      assert.deepEqual([o.shared.addresses, o.shared.sentinel], [[{ host: '127.0.0.1', port: 26379 }, { host: '127.0.0.2', port: 26380 }], 'mymaster']);
    }),
    builds(shared('redis://127.0.0.1:7000 redis://127.0.0.1:7001', 'key_file cache.key', 'cluster'), (o) => assert.equal(o.shared.cluster, true)),
    builds(shared('redis://127.0.0.1', 'key_file group.key'), (o) => assert.deepEqual(o.shared.secret, Buffer.from(HEX, 'hex'))), // 640: a Kubernetes secret with fsGroup
    builds(shared('rediss://10.0.0.5', 'key_file cache.key', 'ca ca.pem', 'server_name valkey.test'), (o) => {
      assert.deepEqual([o.shared.tls, o.shared.ca.length, o.shared.serverName], [true, 1, 'valkey.test']);
    }),
    // shared: a missing, short, repeated or too open key file
    refused(shared('redis://127.0.0.1', 'timeout 5ms'), 2, 1, /shared needs "key_file FILE": the fleet's 32-byte secret \(make one with: openssl rand -hex 32 > FILE\)$/),
    refused('cache {\nshared redis://127.0.0.1\n}', 2, 1, /shared needs a block with at least "key_file FILE"/),
    refused(shared('redis://127.0.0.1', 'key_file missing.key'), 3, 10, /cannot read key_file "missing\.key": ENOENT$/),
    refused(shared('redis://127.0.0.1', 'key_file'), 3, 1, /key_file takes 1 argument, got 0$/),
    refused(shared('redis://127.0.0.1', 'key_file short.key'), 3, 10, /"short\.key" does not hold a 32-byte secret \(.*it holds 5 bytes\): make one with openssl rand -hex 32 > short\.key$/),
    refused(shared('redis://127.0.0.1', 'key_file repeated.key'), 3, 10, /"repeated\.key" holds one byte repeated, not a random secret/),
    refused(shared('redis://127.0.0.1', 'key_file open644.key'), 3, 10, /key_file "open644\.key" is too open \(mode 644\): others must not read it, nor the group change it \(chmod 600 or 640\)$/),
    refused(shared('redis://127.0.0.1', 'key_file open660.key'), 3, 10, /key_file "open660\.key" is too open \(mode 660\)/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'password_file pw-open'), 4, 15, /password_file "pw-open" is too open \(mode 604\)/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'password_file pw-lines'), 4, 15, /"pw-lines" must hold the password on one line$/),
    // shared: names, passwords in URLs, and options that do not fit
    refused(shared('redis://valkey:6379', 'key_file cache.key'), 2, 8, /"valkey" is not an IP address: Veil never asks the system resolver for a name \(in Kubernetes, write \{\$VALKEY_SERVICE_HOST\}\)$/),
    refused(shared('redis://:hunter2@127.0.0.1', 'key_file cache.key'), 2, 8, /no password in the URL: a Corefile is not a secret; use "password_file FILE"$/),
    refused(shared('http://127.0.0.1', 'key_file cache.key'), 2, 8, /shared speaks redis:\/\/ or rediss:\/\/ \(TLS\), not http:\/\/$/),
    refused(shared('redis://127.0.0.1/x', 'key_file cache.key'), 2, 8, /"\/x" is not a database number$/),
    refused(shared('redis://127.0.0.1?db=1', 'key_file cache.key'), 2, 8, /options go in the block, not in the URL$/),
    refused(shared('redis://[::1', 'key_file cache.key'), 2, 8, /"redis:\/\/\[::1" is not a URL like redis:\/\/127\.0\.0\.1:6379\/0 or rediss:\/\/…$/),
    refused(shared('redis://127.0.0.1 redis://127.0.0.2', 'key_file cache.key'), 2, 26, /several addresses are for "sentinel MASTER" or "cluster"; a single server has one$/),
    refused(shared('redis://127.0.0.1 rediss://127.0.0.2', 'key_file cache.key', 'cluster'), 2, 26, /every address of shared must have the same scheme, user and database$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'ca ca.pem'), 4, 4, /ca is for rediss:\/\/ \(TLS\) only$/),
    refused(shared('rediss://127.0.0.1', 'key_file cache.key', 'ca cache.key'), 4, 4, /"cache\.key" holds no PEM certificate$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'server_name x.test'), 4, 13, /server_name is for rediss:\/\/ \(TLS\) only$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'timeout 2s'), 4, 9, /2s is above the maximum of 1s$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'write_queue 0'), 4, 13, /0 is out of range \(1-1000000\)$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'sentinel'), 4, 1, /sentinel takes 1 argument, got 0$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'cluster yes'), 4, 9, /cluster takes 0 arguments, got 1$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'sentinel m', 'cluster'), 2, 1, /shared is either a sentinel set or a cluster, not both$/),
    refused(shared('redis://127.0.0.1:7000/1', 'key_file cache.key', 'cluster'), 2, 8, /a cluster has only database 0$/),
    refused(shared('redis://127.0.0.1', 'key_file cache.key', 'timout 5ms'), 4, 1, /unknown option "timout" \(did you mean "timeout"\?\)$/),
  ],
  {
    certificates: true,
    files: {
      'cache.key': secret(HEX),
      'b64.key': secret(Buffer.from(HEX, 'hex').toString('base64')),
      'raw.key': secret(Buffer.from(HEX, 'hex')),
      'group.key': secret(HEX, 0o640),
      'short.key': secret('abcd\n'),
      'repeated.key': secret('00'.repeat(32)),
      'open644.key': secret(HEX, 0o644),
      'open660.key': secret(HEX, 0o660),
      pw: secret('x\n'),
      'pw-open': secret('secret', 0o604),
      'pw-lines': secret('a\nb\n'),
    },
  },
);
