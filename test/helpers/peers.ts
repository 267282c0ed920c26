/**
 * Real, independent DNS software for interop tests, started on loopback with configurations
 * written here, and stopped by PID. Tests that need a peer skip with "skipped: NAME not
 * installed" when it is missing; .ci/run installs them so CI runs those tests.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin', '/usr/local/sbin'];

/** The full path of an installed program, or null. */
export function which(program: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...SEARCH_PATH]) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    if (spawnSync('test', ['-x', candidate]).status === 0) return candidate;
  }
  return null;
}

/** Whether `npm run build` could compile the native addons here (the C compiler native/build.ts uses). */
export function hasCompiler(): boolean {
  return spawnSync(process.env.CC || 'cc', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** `false` when installed, else the skip message node:test prints. */
export function skipUnless(...programs: string[]): false | string {
  const missing = programs.filter((p) => !which(p));
  return missing.length === 0 ? false : `skipped: ${missing.join(', ')} not installed`;
}

/**
 * Where ports for tests come from: below the kernel's range for outgoing connections' own
 * ports, so that a port chosen now and listened on later (an upstream that comes up after Veil)
 * cannot be taken meanwhile by some other test's connection. Null where that range leaves no
 * room below it: the kernel chooses then.
 */
function quietPorts(): [number, number] | null {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (low > 11_000) return [10_000, low - 1];
  } catch {
    // not Linux: the kernel chooses
  }
  return null;
}

const QUIET_PORTS = quietPorts();

/** Binds UDP on 127.0.0.1 at `port` (0: the kernel chooses) and lets it go: the port, or null when taken. */
function udpFree(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(null));
    s.bind(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** A port free for both UDP and TCP on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const wanted = QUIET_PORTS ? QUIET_PORTS[0] + Math.floor(Math.random() * (QUIET_PORTS[1] - QUIET_PORTS[0] + 1)) : 0;
    const port = await udpFree(wanted);
    if (port === null) continue;
    const tcpFree = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (tcpFree) return port;
  }
  throw new Error('no free port');
}

export interface Peer {
  port: number;
  dir: string;
  process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** Waits until something answers DNS on 127.0.0.1:port over UDP. */
export async function waitForDns(port: number, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  const probe = Buffer.from('abcd01000001000000000000056865616c7468000001' + '0001', 'hex');
  while (Date.now() - started < timeoutMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      const t = setTimeout(() => {
        s.close();
        resolve(false);
      }, 200);
      s.on('message', () => {
        clearTimeout(t);
        s.close();
        resolve(true);
      });
      s.on('error', () => {
        clearTimeout(t);
        s.close();
        resolve(false);
      });
      s.send(probe, port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answered DNS on 127.0.0.1:${port} within ${timeoutMs}ms`);
}

export function startDaemon(program: string, args: string[], dir: string, port: number): Peer {
  let output = '';
  const child = spawn(which(program) ?? program, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => ((exited = true), resolve())));
  return {
    port,
    dir,
    process: child,
    log: () => output,
    async stop() {
      if (!exited && child.pid) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exit, new Promise((r) => (timer = setTimeout(r, 5000)))]);
        clearTimeout(timer);
        if (!exited) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts unbound in `dir` on 127.0.0.1 `port` (UDP and TCP) with what every test instance needs
 * (no privileges, no chroot, no pid file, no syslog, one thread, loopback clients, no remote
 * control) and `server` lines of its own (indented by four spaces), then `sections` (forward
 * zones and such); resolves once it answers DNS, and once `tlsPort` takes connections.
 */
export async function startUnbound(dir: string, port: number, server: string, options: { sections?: string; tlsPort?: number } = {}): Promise<Peer> {
  const config = `server:
    interface: 127.0.0.1@${port}
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    # dnsdist forwards what its DoT front-end gets over TCP, a connection per query in flight;
    # unbound's default of 10 TCP connections made those queries wait for a free one
    incoming-num-tcp: 256
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    username: ""
    chroot: ""
    directory: "${dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
${server}${options.sections ?? ''}remote-control:
    control-enable: no
`;
  writeFileSync(path.join(dir, 'unbound.conf'), config);
  const peer = startDaemon('unbound', ['-d', '-c', path.join(dir, 'unbound.conf')], dir, port);
  try {
    await waitForDns(port);
    if (options.tlsPort) await waitForTcp(options.tlsPort, 10_000);
  } catch (err) {
    const log = peer.log();
    await peer.stop();
    throw new Error(`${(err as Error).message}; unbound said: ${log}`);
  }
  return peer;
}

/**
 * unbound as an origin with local data only (never recurses): any name → A 203.0.113.1 /
 * AAAA 2001:db8::1; lab.test with MX, CNAME, a TTL-5 name, and big.lab.test TXT (~3.4 KB, so
 * UDP answers are truncated at 1232 bytes); nx.test answers NXDOMAIN; refused.test REFUSED.
 */
export async function startUnboundOrigin(): Promise<Peer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-unbound-'));
  const port = await freePort();
  const big = Array.from({ length: 16 }, (_, i) => `    local-data: 'big.lab.test. 60 IN TXT "${String(i).padStart(2, '0')}${'a'.repeat(198)}"'`).join('\n');
  return startUnbound(
    dir,
    port,
    `    do-not-query-localhost: yes
    module-config: "iterator"
    edns-buffer-size: 1232
    max-udp-size: 1232
    minimal-responses: yes
    local-zone: "." redirect
    local-data: ". 3600 IN A 203.0.113.1"
    local-data: ". 3600 IN AAAA 2001:db8::1"
    local-zone: "test." nodefault
    local-zone: "lab.test." static
    local-data: "lab.test. 3600 IN SOA ns1.lab.test. hostmaster.lab.test. 1 7200 3600 1209600 300"
    local-data: "lab.test. 3600 IN A 198.51.100.10"
    local-data: "lab.test. 3600 IN MX 10 mail.lab.test."
    local-data: "www.lab.test. 300 IN CNAME lab.test."
    local-data: "short-ttl.lab.test. 5 IN A 198.51.100.5"
${big}
    local-zone: "nx.test." static
    local-data: "nx.test. 3600 IN SOA ns.nx.test. admin.nx.test. 1 7200 3600 1209600 60"
    local-zone: "refused.test." refuse
`,
  );
}

export interface UnboundDotOptions {
  /** Reuse a port (to bring a stopped server back where it was); default a free one. */
  port?: number;
  /** The A record every name gets (default 203.0.113.1), to tell servers apart. */
  address?: string;
}

/**
 * unbound serving DNS over TLS (tls-service-key, tls-service-pem, tls-port) on loopback with
 * local data only: any name → A `address`; lab.test MX 10 mail.lab.test. Plain DNS over UDP on
 * the same port answers the readiness probe.
 */
export async function startUnboundDot(certs: TestCerts, options: UnboundDotOptions = {}): Promise<Peer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-unbound-dot-'));
  const port = options.port ?? (await freePort());
  return startUnbound(
    dir,
    port,
    `    tls-port: ${port}
    tls-service-key: "${certs.key}"
    tls-service-pem: "${certs.chain}"
    incoming-num-tcp: 64
    tcp-idle-timeout: 30000
    do-not-query-localhost: yes
    module-config: "iterator"
    local-zone: "." redirect
    local-data: ". 3600 IN A ${options.address ?? '203.0.113.1'}"
    local-zone: "test." nodefault
    local-zone: "lab.test." static
    local-data: "lab.test. 3600 IN SOA ns1.lab.test. hostmaster.lab.test. 1 7200 3600 1209600 300"
    local-data: "lab.test. 3600 IN MX 10 mail.lab.test."
`,
    { tlsPort: port },
  );
}

/** Runs a command to completion and returns its output (for dig, kdig and promtool, which reads `input`). */
export function run(program: string, args: string[], timeoutMs = 10_000, input?: string): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(which(program) ?? program, args, { encoding: 'utf8', timeout: timeoutMs, ...(input !== undefined ? { input } : {}) });
  return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

// ---- TLS material and dnsdist ----------------------------------------------------------------

export interface TestCerts {
  dir: string;
  /** The throw-away CA to trust. */
  ca: string;
  /** Server certificate for dns.test (SAN also localhost, 127.0.0.1, ::1), and its chain. */
  cert: string;
  chain: string;
  key: string;
  /** base64 SHA-256 of the server certificate's SubjectPublicKeyInfo (RFC 7858 pin). */
  spkiPin: string;
  /** A second CA and a certificate for dns.test from it: valid, but not from `ca`. */
  otherCa: string;
  otherCert: string;
  otherKey: string;
}

function openssl(args: string[], cwd: string, input?: string): string {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8', input });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

function issue(dir: string, prefix: string, caPrefix: string, cn: string, san: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${prefix}.key`], dir);
  openssl(['req', '-new', '-key', `${prefix}.key`, '-subj', `/O=Veil Test/CN=${cn}`, '-out', `${prefix}.csr`], dir);
  writeFileSync(
    path.join(dir, `${prefix}.ext`),
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
  openssl(['x509', '-req', '-in', `${prefix}.csr`, '-CA', `${caPrefix}.pem`, '-CAkey', `${caPrefix}.key`, '-CAcreateserial', '-days', '30', '-sha256', '-extfile', `${prefix}.ext`, '-out', `${prefix}.pem`], dir);
}

function makeCa(dir: string, prefix: string, cn: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${prefix}.key`], dir);
  openssl(['req', '-x509', '-new', '-key', `${prefix}.key`, '-sha256', '-days', '30', '-subj', `/O=Veil Test/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `${prefix}.pem`], dir);
}

/**
 * A throw-away CA and server certificates, made with openssl in a temporary folder. The server
 * certificate carries dns.test, localhost and the loopback addresses, and `extraNames` too.
 */
export function makeTestCerts(extraNames: readonly string[] = []): TestCerts {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-certs-'));
  makeCa(dir, 'ca', 'Veil Test CA');
  issue(dir, 'server', 'ca', 'dns.test', ['DNS:dns.test', 'DNS:localhost', 'IP:127.0.0.1', 'IP:::1', ...extraNames.map((n) => `DNS:${n}`)].join(','));
  makeCa(dir, 'other-ca', 'Veil Other CA');
  issue(dir, 'other', 'other-ca', 'dns.test', 'DNS:dns.test,DNS:localhost,IP:127.0.0.1,IP:::1');
  writeFileSync(path.join(dir, 'server-chain.pem'), openssl(['x509', '-in', 'server.pem'], dir) + openssl(['x509', '-in', 'ca.pem'], dir));
  const spki = openssl(['x509', '-in', 'server.pem', '-noout', '-pubkey'], dir);
  const der = spawnSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { cwd: dir, input: spki });
  const spkiPin = createHash('sha256').update(der.stdout).digest('base64');
  const p = (f: string) => path.join(dir, f);
  return { dir, ca: p('ca.pem'), cert: p('server.pem'), chain: p('server-chain.pem'), key: p('server.key'), spkiPin, otherCa: p('other-ca.pem'), otherCert: p('other.pem'), otherKey: p('other.key') };
}

export interface DnsdistOptions {
  /** The backend dnsdist forwards to (e.g. an unbound origin's port on 127.0.0.1). */
  backendPort: number;
  /** Reach the backend over DNS-over-TLS, verifying its certificate for `serverName` with `ca`. */
  backendTls?: { serverName: string; ca: string };
  /** Plain UDP+TCP front-end. */
  plain?: boolean;
  /** A packet cache in front of the backend (for every front-end). */
  cache?: boolean;
  /** DNS over TLS front-end. */
  tls?: TestCerts;
  /**
   * Queries the TLS front-end reads ahead and answers out of order per connection. dnsdist's
   * default (0) reads the next query only after answering the previous one, and then misses
   * queries that arrived together: RFC 7766 pipelining needs this set.
   */
  tlsMaxInFlight?: number;
  /** DNS over HTTPS front-end (HTTP/2, path /dns-query). */
  doh?: TestCerts;
  /**
   * DNSCrypt front-end with two certificates: es-version 1 serial 1, es-version 2 serial 2;
   * `esVersions: [1]` serves the es-version 1 certificate alone.
   */
  dnscrypt?: { providerName: string; esVersions?: Array<1 | 2> };
  /** Log every query dnsdist receives (source address, name, type) to a file; see `queryLog()`. */
  queryLog?: boolean;
  /** Address dnsdist listens on (default 127.0.0.1). */
  host?: string;
}

export interface Dnsdist extends Peer {
  ports: { plain?: number; tls?: number; doh?: number; dnscrypt?: number };
  /** Provider public key (32 bytes) when the DNSCrypt front-end is on. */
  providerKey?: Buffer;
  /** With `queryLog`: the lines so far, `Packet from 127.0.0.2:41234 for name. A with id 1`. */
  queryLog(): string;
}

/**
 * dnsdist (1.7 on Debian 12) with the front-ends asked for, on free ports, forwarding to the
 * backend. Quirks of that version: it does not serve the DNSCrypt certificate over TCP, and it
 * drops DNSCrypt TCP queries with more than 256 bytes of padding.
 */
export async function startDnsdist(options: DnsdistOptions): Promise<Dnsdist> {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-dnsdist-'));
  const host = options.host ?? '127.0.0.1';
  const ports: Dnsdist['ports'] = {};
  const lua: string[] = [
    'setSecurityPollSuffix("")',
    `setACL({"127.0.0.0/8", "::1/128"})`,
    options.backendTls
      ? `newServer({address="127.0.0.1:${options.backendPort}", name="origin", checkInterval=3600, tls="openssl", subjectName="${options.backendTls.serverName}", caStore="${options.backendTls.ca}", validateCertificates=true})`
      : `newServer({address="127.0.0.1:${options.backendPort}", name="origin", checkInterval=3600})`,
  ];
  if (options.cache) lua.push('getPool(""):setCache(newPacketCache(1000000, {maxTTL=86400, minTTL=0}))');
  if (options.plain) {
    ports.plain = await freePort();
    lua.push(`setLocal("${host}:${ports.plain}")`);
  } else {
    // dnsdist always listens somewhere; keep its default plain listener on a free port
    lua.push(`setLocal("127.0.0.1:${await freePort()}")`);
  }
  if (options.tls) {
    ports.tls = await freePort();
    const inflight = options.tlsMaxInFlight ? `, maxInFlight=${options.tlsMaxInFlight}` : '';
    lua.push(`addTLSLocal("${host}:${ports.tls}", "${options.tls.chain}", "${options.tls.key}", {provider="openssl", minTLSVersion="tls1.2"${inflight}})`);
  }
  if (options.doh) {
    ports.doh = await freePort();
    lua.push(`addDOHLocal("${host}:${ports.doh}", "${options.doh.chain}", "${options.doh.key}", {"/dns-query"}, {minTLSVersion="tls1.2"})`);
  }
  let providerKey: Buffer | undefined;
  if (options.dnscrypt) {
    ports.dnscrypt = await freePort();
    const gen = [
      `generateDNSCryptProviderKeys('${dir}/provider.pub', '${dir}/provider.key')`,
      `generateDNSCryptCertificate('${dir}/provider.key', '${dir}/resolver-1.cert', '${dir}/resolver-1.key', 1, os.time() - 3600, os.time() + 86400, 0)`,
      `generateDNSCryptCertificate('${dir}/provider.key', '${dir}/resolver-2.cert', '${dir}/resolver-2.key', 2, os.time() - 3600, os.time() + 86400, 1)`,
    ].join('\n');
    writeFileSync(path.join(dir, 'gen.lua'), gen);
    const result = spawnSync(which('dnsdist') ?? 'dnsdist', ['--check-config', '-C', path.join(dir, 'gen.lua')], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`dnsdist could not make DNSCrypt keys: ${result.stderr}${result.stdout}`);
    providerKey = readFileSync(path.join(dir, 'provider.pub'));
    const versions = options.dnscrypt.esVersions ?? [1, 2];
    const list = (suffix: string) => versions.map((v) => `"${dir}/resolver-${v}.${suffix}"`).join(', ');
    lua.push(`addDNSCryptBind("${host}:${ports.dnscrypt}", "${options.dnscrypt.providerName}", {${list('cert')}}, {${list('key')}})`);
  }
  const queryLog = path.join(dir, 'queries.log');
  if (options.queryLog) lua.push(`addAction(AllRule(), LogAction("${queryLog}", false, true, false))`);
  writeFileSync(path.join(dir, 'dnsdist.conf'), lua.join('\n') + '\n');
  const check = spawnSync(which('dnsdist') ?? 'dnsdist', ['--check-config', '-C', path.join(dir, 'dnsdist.conf')], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`dnsdist configuration refused: ${check.stderr}${check.stdout}`);
  const peer = startDaemon('dnsdist', ['--supervised', '--disable-syslog', '-C', path.join(dir, 'dnsdist.conf')], dir, ports.plain ?? ports.tls ?? ports.doh ?? ports.dnscrypt ?? 0);
  // wait for every TCP front-end to accept connections
  for (const port of [ports.plain, ports.tls, ports.doh, ports.dnscrypt].filter((p): p is number => p !== undefined)) {
    await waitForTcp(port, 10_000).catch(async (err: Error) => {
      const log = peer.log();
      await peer.stop();
      throw new Error(`${err.message}; dnsdist said: ${log}`);
    });
  }
  const readQueryLog = (): string => {
    try {
      return readFileSync(queryLog, 'utf8');
    } catch {
      return '';
    }
  };
  return { ...peer, ports, queryLog: readQueryLog, ...(providerKey ? { providerKey } : {}) };
}

export async function waitForTcp(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing accepted TCP on ${host}:${port} within ${timeoutMs}ms`);
}
