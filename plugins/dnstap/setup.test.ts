/** dnstap: its reader, `full` and `queue`, good and bad, with the place of each mistake. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

const long = `/tmp/${'s'.repeat(110)}.sock`;

setupTable(
  'dnstap',
  [
    builds('dnstap unix:///run/dnstap.sock', { target: { kind: 'unix', path: '/run/dnstap.sock' }, full: false, queue: 10_000 }),
    builds('dnstap /run/dnstap.sock full', { target: { kind: 'unix', path: '/run/dnstap.sock' }, full: true }),
    builds('dnstap unix://dnstap.sock', (o, { dir }) => assert.deepEqual(o.target, { kind: 'unix', path: path.join(dir, 'dnstap.sock') })),
    builds('dnstap tcp://[::1]:6000 full {\nqueue 16\n}', { target: { kind: 'tcp', host: '::1', port: 6000 }, full: true, queue: 16 }),
    refused('dnstap', 1, 1, /dnstap takes 1 to 2 arguments, got 0$/),
    refused('dnstap tcp://127.0.0.1:6000 full extra', 1, 34, /dnstap takes 1 to 2 arguments, got 3$/),
    refused('dnstap tcp://127.0.0.1:6000 fast', 1, 29, /unexpected "fast" \(the only word allowed after the address is "full"\)$/),
    refused('dnstap unix://', 1, 8, /"unix:\/\/" names no socket file: unix:\/\/\/run\/dnstap\.sock$/),
    refused(`dnstap unix://${long}`, 1, 8, /the socket path \/tmp\/s+\.sock is longer than a Unix socket address allows \(107 bytes\)$/),
    refused('dnstap dnstap.sock', 1, 8, /"dnstap\.sock" is not an address of the form scheme:\/\/IP:PORT; dnstap takes unix:\/\/\/PATH or tcp:\/\/IP:PORT$/),
    refused('dnstap tcp://127.0.0.1', 1, 8, /"tcp:\/\/127\.0\.0\.1" needs a port; dnstap takes/),
    refused('dnstap tcp://collector.example:6000', 1, 8, /"collector\.example" is not an IP address/),
    refused('dnstap udp://127.0.0.1:6000', 1, 8, /dnstap takes unix:\/\/\/PATH or tcp:\/\/IP:PORT, not udp:\/\/$/),
    refused('dnstap tcp://127.0.0.1:6000/x', 1, 8, /a tcp:\/\/ address has no path$/),
    refused('dnstap tcp://127.0.0.1:6000 {\nqueue 15\n}', 2, 7, /15 is out of range \(16-1000000\)$/),
    refused('dnstap tcp://127.0.0.1:6000 {\nqueue\n}', 2, 1, /queue takes 1 argument, got 0$/),
    refused('dnstap tcp://127.0.0.1:6000 {\nqueues 100\n}', 2, 1, /unknown option "queues" \(did you mean "queue"\?\)$/),
    // a block after an option that takes none is refused (readOptions), no longer dropped
    refused('dnstap tcp://127.0.0.1:6000 {\nqueue 100 {\nx\n}\n}', 2, 11, /queue takes no block$/),
    refused('dnstap tcp://127.0.0.1:6000 {\nqueue 100\nqueue 200\n}', 3, 1, /option "queue" is given twice$/),
    refused('dnstap tcp://127.0.0.1:6000\ndnstap tcp://127.0.0.1:6001', 2, 1, /dnstap is given twice in this block$/),
  ],
  { files: {} },
);
