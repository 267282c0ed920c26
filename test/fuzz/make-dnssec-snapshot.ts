/**
 * Writes test/fuzz/dnssec-snapshot.json: real answers from the DNSSEC lab (DO=1, CD=1, as the
 * dnssec plugin asks), with the lab's trust anchor and the time they were taken, so the dnssec
 * fuzz targets validate real signatures without nsd, unbound or ldnsutils, at a fixed clock.
 *
 *     npm run build && node dist/test/fuzz/make-dnssec-snapshot.js
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { QType, typeNumber } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryTcp } from '../../core/testing/client.js';
import { startDnssecLab } from '../helpers/dnssec-lab.js';
import { ROOT } from '../helpers/veil-process.js';

export const SNAPSHOT = path.join(ROOT, 'test/fuzz/dnssec-snapshot.json');

/** The client questions; their answers are the fuzz seeds. */
export const SNAPSHOT_QUESTIONS = [
  'www.secure.lab/A', 'nx.secure.lab/A', 'www.secure.lab/MX', 'x.wild.secure.lab/A', 'alias.secure.lab/A', 'www.dn.secure.lab/A',
  'sub.secure.lab/A', 'www.nsec3.lab/A', 'nx.nsec3.lab/A', 'www.nsec3.lab/TXT', 'x.wild.nsec3.lab/A', 'www.ed.lab/A', 'www.insecure.lab/A',
  'nx.lab/A',
];
/** What validating them asks for. */
const LOOKUPS = ['./DNSKEY', 'lab/DS', 'lab/DNSKEY', 'secure.lab/DS', 'secure.lab/DNSKEY', 'nsec3.lab/DS', 'nsec3.lab/DNSKEY', 'ed.lab/DS', 'ed.lab/DNSKEY', 'insecure.lab/DS', 'www.insecure.lab/DS', 'www.secure.lab/DS', 'sub.secure.lab/DS'];

async function main(): Promise<void> {
  const lab = await startDnssecLab();
  try {
    const answers: Record<string, string> = {};
    for (const key of [...SNAPSHOT_QUESTIONS, ...LOOKUPS]) {
      const [name, type] = key.split('/') as [string, string];
      const query = buildQuery(name, typeNumber(type) ?? QType.A, { id: 1, checkingDisabled: true, edns: { dnssecOk: true } });
      const [answer] = await queryTcp('127.0.0.1', lab.resolver.port, [query], 10_000);
      answers[key] = answer!.toString('base64');
    }
    const snapshot = { takenAt: Math.floor(Date.now() / 1000), anchor: readFileSync(lab.anchorFile, 'utf8'), answers };
    writeFileSync(SNAPSHOT, JSON.stringify(snapshot, null, 1) + '\n');
    console.log(`wrote ${SNAPSHOT}: ${Object.keys(answers).length} answers`);
  } finally {
    await lab.stop();
  }
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) await main();
