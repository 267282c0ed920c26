/**
 * A DNSSEC lab on loopback: a signed root, a signed TLD `lab.` and child zones, secure and
 * broken in the ways a validator must catch, all signed here with ldns-keygen/ldns-signzone
 * (ldnsutils) relative to the current time, served by nsd, and resolved by unbound, which
 * forwards to nsd and validates with the lab's own trust anchor (the root's KSK). Veil goes
 * through the same unbound with CD=1, so both validators judge the very same data.
 *
 * Zones (below `lab.`, RSASHA512 under an RSASHA256 root):
 *   secure      ECDSAP256SHA256, NSEC; a wildcard, a CNAME into nsec3, a DNAME, a CNAME into
 *               insecure and one into expired
 *   nsec3       ECDSAP384SHA384, NSEC3 (0 iterations) with a wildcard
 *   ed, ed448   Ed25519, Ed448          rsa   RSASHA256 with a SHA-384 DS
 *   insecure    unsigned, delegated without DS
 *   expired     signatures expired ten days ago      future   valid only from ten days on
 *   badds       the DS digest in lab. is wrong        nosig    www's RRSIG removed
 *   nonsec      NSEC records removed (NXDOMAIN and wildcard answers lack their proofs)
 *   nonsec3     NSEC3 records removed                 iter     NSEC3 with 200 iterations
 *   nsec3x      NSEC3 with 150 iterations, for names long enough to exhaust a validator (CVE-2023-50868)
 *   unknownalg  DNSKEY, DS and RRSIG with algorithm 200
 *   keytrap     KeyTrap (CVE-2023-50387): 30 DNSKEYs sharing the ZSK's key tag and 30 junk
 *               RRSIGs with that tag on www's A RRset
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, startDaemon, startUnbound, waitForDns, which, type Peer, type TestCerts } from './peers.js';

export const LAB_PROGRAMS = ['nsd', 'unbound', 'ldns-keygen', 'ldns-signzone', 'ldns-key2ds'];

interface ZoneSpec {
  name: string;
  /** ldns-keygen algorithm; none: unsigned. */
  algorithm?: string;
  nsec3?: { iterations: number };
  /** Zone content besides SOA and NS, names relative to the zone. */
  records: string[];
  /** Signature window, seconds relative to now. */
  window?: [number, number];
  /** ldns-key2ds digest flag (-2 SHA-256, -4 SHA-384). */
  digest?: '-2' | '-4';
  /** Change the signed zone text (break it). */
  post?: (text: string, zone: string) => string;
  /** Change the DS lines the parent publishes. */
  postDs?: (ds: string) => string;
  /** Lines added before signing (KeyTrap's extra keys), made once the ZSK is known. */
  extra?: (zskTag: number, zskFile: string) => string[];
}

const DAY = 86400;
const COMMON = ['www 3600 IN A 192.0.2.1', 'www 3600 IN AAAA 2001:db8::1', 'txt 3600 IN TXT "hello"'];

/** Removes the records of `type` and their signatures. */
const withoutType = (type: string) => (text: string) =>
  text
    .split('\n')
    .filter((line) => !new RegExp(`\\sIN\\s+${type}\\s`).test(line) && !new RegExp(`\\sRRSIG\\s+${type}\\s`).test(line))
    .join('\n');

const CHILDREN: ZoneSpec[] = [
  {
    name: 'secure.lab.',
    algorithm: 'ECDSAP256SHA256',
    records: [
      ...COMMON,
      '*.wild 3600 IN A 192.0.2.7',
      'alias 3600 IN CNAME www.nsec3.lab.',
      'dn 3600 IN DNAME nsec3.lab.',
      'toinsecure 3600 IN CNAME www.insecure.lab.',
      'tobogus 3600 IN CNAME www.expired.lab.',
      'deep.ent.sub 3600 IN A 192.0.2.9',
    ],
  },
  { name: 'nsec3.lab.', algorithm: 'ECDSAP384SHA384', nsec3: { iterations: 0 }, records: [...COMMON, '*.wild 3600 IN A 192.0.2.8'] },
  { name: 'ed.lab.', algorithm: 'ED25519', records: COMMON },
  { name: 'ed448.lab.', algorithm: 'ED448', records: COMMON },
  { name: 'rsa.lab.', algorithm: 'RSASHA256', digest: '-4', records: COMMON },
  { name: 'insecure.lab.', records: COMMON },
  { name: 'expired.lab.', algorithm: 'ECDSAP256SHA256', window: [-40 * DAY, -10 * DAY], records: COMMON },
  { name: 'future.lab.', algorithm: 'ECDSAP256SHA256', window: [10 * DAY, 40 * DAY], records: COMMON },
  {
    name: 'badds.lab.',
    algorithm: 'ECDSAP256SHA256',
    records: COMMON,
    // flip the last hex digit of every digest
    postDs: (ds) => ds.replace(/([0-9A-Fa-f])$/gm, (d) => (parseInt(d, 16) ^ 1).toString(16).toUpperCase()),
  },
  {
    name: 'nosig.lab.',
    algorithm: 'ECDSAP256SHA256',
    records: COMMON,
    post: (text) => text.split('\n').filter((line) => !/^www\.nosig\.lab\.\s.*\sRRSIG\s+A\s/.test(line)).join('\n'),
  },
  { name: 'nonsec.lab.', algorithm: 'ECDSAP256SHA256', records: [...COMMON, '*.wild 3600 IN A 192.0.2.7'], post: withoutType('NSEC') },
  { name: 'nonsec3.lab.', algorithm: 'ECDSAP256SHA256', nsec3: { iterations: 0 }, records: COMMON, post: withoutType('NSEC3') },
  { name: 'iter.lab.', algorithm: 'ECDSAP256SHA256', nsec3: { iterations: 200 }, records: COMMON },
  // NSEC3 hash exhaustion (CVE-2023-50868): the most iterations still validated, for long names
  { name: 'nsec3x.lab.', algorithm: 'ECDSAP256SHA256', nsec3: { iterations: 150 }, records: COMMON },
  {
    name: 'unknownalg.lab.',
    algorithm: 'ECDSAP256SHA256',
    records: COMMON,
    post: (text) =>
      text
        .replace(/(\sDNSKEY\s+\d+\s+3\s+)13(\s)/g, '$1200$2')
        .replace(/(\sRRSIG\s+\S+\s+)13(\s)/g, '$1200$2'),
  },
  {
    name: 'keytrap.lab.',
    algorithm: 'ED25519',
    records: COMMON,
    extra: (tag) => Array.from({ length: 30 }, () => `@ 3600 IN DNSKEY 256 3 15 ${collidingEd25519Key(tag).toString('base64')}`),
    post: (text) => {
      const lines = text.split('\n');
      const sig = lines.findIndex((line) => /^www\.keytrap\.lab\.\s.*\sRRSIG\s+A\s/.test(line));
      if (sig < 0) throw new Error('keytrap: no RRSIG for www A');
      const fields = lines[sig]!.split(/\s+/);
      // owner ttl IN RRSIG A alg labels ttl exp inc tag signer signature
      const junk = Array.from({ length: 30 }, () => [...fields.slice(0, 12), randomBytes(64).toString('base64')].join(' '));
      lines.splice(sig, 0, ...junk);
      return lines.join('\n');
    },
  },
];

/** RFC 4034 Appendix B, for making keys that collide on purpose. */
function keyTagOf(rdata: Buffer): number {
  let sum = 0;
  for (let i = 0; i < rdata.length; i++) sum += i & 1 ? rdata[i]! : rdata[i]! << 8;
  sum += (sum >> 16) & 0xffff;
  return sum & 0xffff;
}

/** 32 bytes that, as an Ed25519 zone key (flags 256), have key tag `tag`. */
function collidingEd25519Key(tag: number): Buffer {
  const key = randomBytes(32);
  const rdata = Buffer.concat([Buffer.from([1, 0, 3, 15]), key]);
  for (let v = 0; v < 65536; v++) {
    rdata.writeUInt16BE(v, rdata.length - 2);
    if (keyTagOf(rdata) === tag) return Buffer.from(rdata.subarray(4));
  }
  throw new Error('no colliding key');
}

function tool(dir: string, program: string, args: string[]): string {
  const result = spawnSync(which(program) ?? program, args, { cwd: dir, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${program} ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

function soaAndNs(zone: string): string[] {
  return [`$ORIGIN ${zone}`, '$TTL 3600', `@ 3600 IN SOA ns.lab. hostmaster.lab. 1 3600 600 86400 300`, '@ 3600 IN NS ns.lab.'];
}

interface Signed {
  file: string;
  ds: string;
}

/** Writes, keys and signs one zone; returns the signed file and the DS lines for its parent. */
function signZone(dir: string, spec: ZoneSpec, body: string[]): Signed {
  const base = spec.name === '.' ? 'root' : spec.name.slice(0, -1);
  const file = `${base}.zone`;
  if (!spec.algorithm) {
    writeFileSync(path.join(dir, file), [...soaAndNs(spec.name), ...body].join('\n') + '\n');
    return { file, ds: '' };
  }
  const zsk = tool(dir, 'ldns-keygen', ['-a', spec.algorithm, ...(spec.algorithm.startsWith('RSA') ? ['-b', '2048'] : []), spec.name]).trim();
  const ksk = tool(dir, 'ldns-keygen', ['-k', '-a', spec.algorithm, ...(spec.algorithm.startsWith('RSA') ? ['-b', '2048'] : []), spec.name]).trim();
  const zskTag = Number(/\+(\d+)$/.exec(zsk)![1]);
  const extra = spec.extra?.(zskTag, zsk) ?? [];
  writeFileSync(path.join(dir, file), [...soaAndNs(spec.name), ...body, ...extra].join('\n') + '\n');
  const now = Math.floor(Date.now() / 1000);
  const [from, to] = spec.window ?? [-DAY, 30 * DAY];
  const args = ['-i', String(now + from), '-e', String(now + to), '-o', spec.name, '-f', `${file}.signed`];
  if (spec.nsec3) args.push('-n', '-t', String(spec.nsec3.iterations));
  tool(dir, 'ldns-signzone', [...args, file, zsk, ksk]);
  let signed = readFileSync(path.join(dir, `${file}.signed`), 'utf8');
  if (spec.post) signed = spec.post(signed, spec.name);
  writeFileSync(path.join(dir, `${file}.signed`), signed);
  // The DS from the KSK as published (after `post`, which may have changed its algorithm).
  const kskLine = signed.split('\n').find((line) => /\sDNSKEY\s+257\s/.test(line));
  if (!kskLine) throw new Error(`${spec.name}: no KSK in the signed zone`);
  writeFileSync(path.join(dir, `${base}.ksk.key`), kskLine + '\n');
  let ds = tool(dir, 'ldns-key2ds', ['-n', spec.digest ?? '-2', `${base}.ksk.key`]).trim();
  if (spec.postDs) ds = spec.postDs(ds);
  return { file: `${file}.signed`, ds };
}

export interface DnssecLab {
  dir: string;
  /** The root's DS, as a trust anchor file. */
  anchorFile: string;
  /** unbound, validating: plain DNS on `port`, DNS over TLS on `tlsPort` (when certificates were given). */
  resolver: Peer & { tlsPort?: number };
  nsd: Peer;
  stop(): Promise<void>;
}

/**
 * Builds the zones and starts nsd and unbound. `certs` makes unbound serve DNS over TLS too.
 */
export async function startDnssecLab(certs?: TestCerts): Promise<DnssecLab> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-dnssec-lab-'));
  const zones: Array<{ name: string; file: string }> = [];
  const labBody = ['ns 3600 IN A 127.0.0.1'];
  for (const child of CHILDREN) {
    const signed = signZone(dir, child, child.records);
    zones.push({ name: child.name, file: signed.file });
    const label = child.name.split('.')[0]!;
    labBody.push(`${label} 3600 IN NS ns.lab.`);
    if (signed.ds) labBody.push(...signed.ds.split('\n').map((line) => line.trim()).filter(Boolean));
  }
  const lab = signZone(dir, { name: 'lab.', algorithm: 'RSASHA512', records: [] }, labBody);
  zones.push({ name: 'lab.', file: lab.file });
  const root = signZone(dir, { name: '.', algorithm: 'RSASHA256', records: [] }, ['lab. 3600 IN NS ns.lab.', 'ns.lab. 3600 IN A 127.0.0.1', ...lab.ds.split('\n').filter(Boolean)]);
  zones.push({ name: '.', file: root.file });
  const anchorFile = path.join(dir, 'root.anchor');
  writeFileSync(anchorFile, root.ds + '\n');

  const nsdPort = await freePort();
  writeFileSync(
    path.join(dir, 'nsd.conf'),
    `server:
    ip-address: 127.0.0.1@${nsdPort}
    port: ${nsdPort}
    ip4-only: yes
    username: ""
    chroot: ""
    zonesdir: "${dir}"
    database: ""
    zonelistfile: "${dir}/zone.list"
    xfrdfile: "${dir}/xfrd.state"
    pidfile: "${dir}/nsd.pid"
    server-count: 1
    verbosity: 1
    hide-version: yes
remote-control:
    control-enable: no
${zones.map((z) => `zone:\n    name: "${z.name}"\n    zonefile: "${z.file}"\n`).join('')}`,
  );
  const nsd = startDaemon('nsd', ['-d', '-c', path.join(dir, 'nsd.conf')], mkdtempSync(path.join(tmpdir(), 'veil-nsd-')), nsdPort);
  try {
    await waitForDns(nsdPort);
  } catch (err) {
    const log = nsd.log();
    await nsd.stop();
    throw new Error(`${(err as Error).message}; nsd said: ${log}`);
  }

  const port = await freePort();
  const tlsPort = certs ? await freePort() : undefined;
  let unbound: Peer;
  try {
    unbound = await startUnbound(
      dir,
      port,
      `${certs ? `    interface: 127.0.0.1@${tlsPort}\n    tls-port: ${tlsPort}\n    tls-service-key: "${certs.key}"\n    tls-service-pem: "${certs.chain}"\n` : ''}    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor-file: "${anchorFile}"
    ede: yes
    val-log-level: 2
    qname-minimisation: no
    harden-referral-path: no
    target-fetch-policy: "0 0 0 0 0"
    edns-buffer-size: 1232
    minimal-responses: yes
`,
      { sections: `forward-zone:\n    name: "."\n    forward-addr: 127.0.0.1@${nsdPort}\n`, ...(tlsPort ? { tlsPort } : {}) },
    );
  } catch (err) {
    await nsd.stop();
    throw err;
  }
  return {
    dir,
    anchorFile,
    resolver: { ...unbound, ...(tlsPort ? { tlsPort } : {}) },
    nsd,
    async stop() {
      await unbound.stop();
      await nsd.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
