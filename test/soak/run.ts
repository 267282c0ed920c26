/**
 * `npm run soak -- --minutes M --qps Q [--out FILE.json]`: a long mixed load on a real bin/veil
 * (the front), whose upstreams are a second bin/veil (the back) serving DNS over TLS, DNS over
 * HTTPS and DNSCrypt on loopback, in front of a small origin in this process. Each minute it
 * samples the front's resident memory, its event-loop lag, V8 heap (in use and reserved) and
 * memory outside the heap (from its /metrics), and the queries sent, answered, unanswered and
 * failed by kind; at the end it prints the RSS growth after warm-up.
 *
 * The mix: a quarter of the queries repeat a hundred names per protocol (cache hits when a
 * `cache` plugin is built in; repeated misses otherwise), three fifths are names never asked
 * before (misses over dot, doh and dnscrypt in turn), the rest are answered locally by `hosts`
 * and, when a `filter` plugin is built in, blocked by it (NXDOMAIN). The tool looks the two
 * plugins up in the registry, so one Corefile form serves builds with and without them.
 * Everything stays on loopback.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { QType, rcodeName } from '../../core/dns/constants.js';
import { buildQuery, buildReply } from '../../core/dns/message.js';
import { fullRcode, readEdns, readId, readQuestion } from '../../core/dns/wire.js';
import { builtinPlugins } from '../../plugins/index.js';
import { dnscryptStamp, makeProviderKeys } from '../helpers/dnscrypt.js';
import { freePort, makeTestCerts } from '../helpers/peers.js';
import { startVeil } from '../helpers/veil-process.js';

interface Options {
  minutes: number;
  qps: number;
  out: string | null;
  /** Seconds per sample (60; shorter for trying the tool out). */
  sampleSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { minutes: 10, qps: 500, out: null, sampleSeconds: 60 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--minutes') options.minutes = Number(value());
    else if (arg === '--qps') options.qps = Number(value());
    else if (arg === '--out') options.out = value();
    else if (arg === '--sample-seconds') options.sampleSeconds = Number(value());
    else throw new Error(`unknown argument ${arg}; usage: npm run soak -- --minutes M --qps Q [--out FILE.json]`);
  }
  if (!(options.minutes > 0) || !(options.qps > 0) || !(options.sampleSeconds > 0)) throw new Error('--minutes, --qps and --sample-seconds take positive numbers');
  return options;
}

const KINDS = ['hit', 'dot', 'doh', 'dnscrypt', 'local', 'blocked'] as const;
type Kind = (typeof KINDS)[number];
const PROTOCOLS = ['dot', 'doh', 'dnscrypt'] as const;

interface Counts {
  sent: number;
  answered: number;
  unanswered: number;
  /** Answers by rcode name. */
  rcodes: Record<string, number>;
  /** Milliseconds, for the percentiles of the minute. */
  latencies: number[];
}
const emptyCounts = (): Counts => ({ sent: 0, answered: 0, unanswered: 0, rcodes: {}, latencies: [] });

interface Sample {
  minute: number;
  frontRssMiB: number;
  backRssMiB: number;
  heapMiB: number | null;
  heapTotalMiB: number | null;
  externalMiB: number | null;
  lagP99Ms: number | null;
  lagMaxMs: number | null;
  sent: number;
  answered: number;
  unanswered: number;
  servfail: number;
  otherErrors: number;
  upstreamErrors: number | null;
  p50Ms: number;
  p99Ms: number;
  byKind: Record<string, { sent: number; unanswered: number; servfail: number; p99Ms: number }>;
}

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 10) / 10;
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('metrics scrape timed out')));
    req.on('error', reject);
  });
}
/**
 * The sum of a metric's series whose labels match `labels` (a regular expression): 0 when the
 * metric is there but no series matches, null when the metric is not there at all.
 */
function metric(text: string, name: string, labels = /.*/): number | null {
  let found = text.includes(`# TYPE ${name} `);
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name || !labels.test(m[2] ?? '')) continue;
    found = true;
    sum += Number(m[3]);
  }
  return found ? sum : null;
}

// ---- the peers ------------------------------------------------------------------------------------

/**
 * The origin behind the back: every name exists, with one A record. Lean on purpose (wire
 * helpers, nothing kept), so that the load generator's process stays flat over a long run.
 */
async function startOrigin(): Promise<{ port: number; close(): Promise<void> }> {
  const socket = createSocket('udp4');
  const address = Buffer.from([198, 51, 100, 7]);
  socket.on('message', (query, from) => {
    let question;
    try {
      question = readQuestion(query);
    } catch {
      return;
    }
    const answers = question.type === QType.A ? [{ type: QType.A, ttl: 300, rdata: address }] : [];
    socket.send(buildReply(query, { questionEnd: question.end, edns: readEdns(query, question.end), answers }), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { port: socket.address().port, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

async function startPeers(hasCache: boolean, hasFilter: boolean) {
  const certs = makeTestCerts();
  const keys = makeProviderKeys();
  const origin = await startOrigin();
  const [tlsPort, httpsPort, dnscryptPort, frontPort, metricsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const provider = '2.dnscrypt-cert.soak.test';
  const back = await startVeil(`. {
    listen tls://127.0.0.1:${tlsPort} {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen https://127.0.0.1:${httpsPort}/dns-query {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen dnscrypt://127.0.0.1:${dnscryptPort} {
        provider ${provider}
        key ${keys.keyFile}
    }
    forward . 127.0.0.1:${origin.port}
}
`);
  await back.waitFor(`listening on dnscrypt://`);
  const cache = hasCache ? '    cache\n' : '';
  const local = Array.from({ length: 10 }, (_, i) => `        192.0.2.${i + 1} local${i}.soak`).join('\n');
  const front = await startVeil(`. {
    listen udp://127.0.0.1:${frontPort} tcp://127.0.0.1:${frontPort}
    metrics 127.0.0.1:${metricsPort}
${hasFilter ? '    filter {\n        block blocked.soak\n    }\n' : ''}    hosts {
${local}
    }
}

dot.soak {
    metrics 127.0.0.1:${metricsPort}
${cache}    dot {
        server back tls://127.0.0.1:${tlsPort} {
            server_name dns.test
            ca ${certs.ca}
        }
    }
}

doh.soak {
    metrics 127.0.0.1:${metricsPort}
${cache}    doh {
        server back https://dns.test:${httpsPort}/dns-query {
            bootstrap 127.0.0.1
            ca ${certs.ca}
        }
    }
}

dnscrypt.soak {
    metrics 127.0.0.1:${metricsPort}
${cache}    dnscrypt {
        server back ${dnscryptStamp(`127.0.0.1:${dnscryptPort}`, keys.publicKey, provider)}
    }
}
`);
  await front.waitFor('serving');
  return {
    front,
    back,
    frontPort,
    metricsPort,
    async stop() {
      await front.stop();
      await back.stop();
      await origin.close();
      rmSync(certs.dir, { recursive: true, force: true });
      keys.cleanup();
    },
  };
}

// ---- the load -------------------------------------------------------------------------------------

interface Pending {
  kind: Kind;
  sentAt: number;
}

class LoadClient {
  private readonly sockets: Socket[] = [];
  private readonly pending: Array<Map<number, Pending>> = [];
  private nextId: number[] = [];
  private missCounter = 0;
  private turn = 0;
  counts = new Map<Kind, Counts>(KINDS.map((k) => [k, emptyCounts()]));

  constructor(
    private readonly port: number,
    private readonly mix: Array<[Kind, number]>,
  ) {
    for (let i = 0; i < 8; i++) {
      const socket = createSocket('udp4');
      const pending = new Map<number, Pending>();
      socket.on('message', (msg) => this.onAnswer(pending, msg));
      socket.on('error', () => {});
      this.sockets.push(socket);
      this.pending.push(pending);
      this.nextId.push(0);
    }
  }

  private pickKind(): Kind {
    let r = Math.random();
    for (const [kind, share] of this.mix) {
      if (r < share) return kind;
      r -= share;
    }
    return this.mix[this.mix.length - 1]![0];
  }

  private nameFor(kind: Kind): string {
    switch (kind) {
      case 'hit':
        return `hit${Math.floor(Math.random() * 100)}.${PROTOCOLS[Math.floor(Math.random() * 3)]}.soak`;
      case 'local':
        return `local${Math.floor(Math.random() * 10)}.soak`;
      case 'blocked':
        return `b${Math.floor(Math.random() * 1000)}.blocked.soak`;
      default:
        return `m${(this.missCounter++).toString(36)}-${process.pid}.${kind}.soak`;
    }
  }

  send(): void {
    const kind = this.pickKind();
    const index = this.turn++ % this.sockets.length;
    const pending = this.pending[index]!;
    if (pending.size >= 60_000) return; // never reuse an ID still waiting
    let id = this.nextId[index]!;
    while (pending.has(id)) id = (id + 1) & 0xffff;
    this.nextId[index] = (id + 1) & 0xffff;
    pending.set(id, { kind, sentAt: performance.now() });
    this.counts.get(kind)!.sent++;
    this.sockets[index]!.send(buildQuery(this.nameFor(kind), QType.A, { id }), this.port, '127.0.0.1');
  }

  private onAnswer(pending: Map<number, Pending>, msg: Buffer): void {
    if (msg.length < 12) return;
    const entry = pending.get(readId(msg));
    if (!entry) return;
    pending.delete(readId(msg));
    const counts = this.counts.get(entry.kind)!;
    counts.answered++;
    const rcode = rcodeName(fullRcode(msg));
    counts.rcodes[rcode] = (counts.rcodes[rcode] ?? 0) + 1;
    counts.latencies.push(performance.now() - entry.sentAt);
  }

  /** Queries waiting longer than `ms` count as unanswered (their late answers are ignored). */
  expire(ms: number): void {
    const now = performance.now();
    for (const pending of this.pending) {
      for (const [id, entry] of pending) {
        if (now - entry.sentAt < ms) continue;
        pending.delete(id);
        this.counts.get(entry.kind)!.unanswered++;
      }
    }
  }

  get waiting(): number {
    return this.pending.reduce((n, p) => n + p.size, 0);
  }

  /** This period's counts; starts the next. */
  take(): Map<Kind, Counts> {
    const taken = this.counts;
    this.counts = new Map(KINDS.map((k) => [k, emptyCounts()]));
    return taken;
  }

  close(): void {
    for (const s of this.sockets) s.close();
  }
}

// ---- the run --------------------------------------------------------------------------------------

const UNANSWERED_AFTER_MS = 5000;

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const names = new Set(builtinPlugins.map((p) => p.name));
  const hasCache = names.has('cache');
  const hasFilter = names.has('filter');
  const mix: Array<[Kind, number]> = [
    ['hit', 0.25],
    ['dot', 0.2],
    ['doh', 0.2],
    ['dnscrypt', 0.2],
    ['local', hasFilter ? 0.1 : 0.15],
    ...(hasFilter ? [['blocked', 0.05] as [Kind, number]] : []),
  ];
  console.log(
    `soak: ${options.minutes} min at ${options.qps} qps; cache plugin ${hasCache ? 'present' : 'absent (repeated names go upstream)'}; filter plugin ${hasFilter ? 'present (5 % blocked names)' : 'absent (no blocked names in the mix)'}`,
  );
  const peers = await startPeers(hasCache, hasFilter);
  // Interrupted: stop the two Veil processes and remove the temporary files before leaving.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void peers.stop().finally(() => process.exit(130)));
  }
  const client = new LoadClient(peers.frontPort, mix);
  const ownLag = monitorEventLoopDelay({ resolution: 20 });
  ownLag.enable();

  // Sending: every 10 ms, the queries due by now (the rate holds even when a tick is late).
  const started = performance.now();
  let sent = 0;
  const sender = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * options.qps);
    for (; sent < due; sent++) client.send();
    client.expire(UNANSWERED_AFTER_MS);
  }, 10);

  const samples: Sample[] = [];
  const totalSamples = Math.round((options.minutes * 60) / options.sampleSeconds);
  let upstreamErrorsBefore = 0;
  for (let minute = 1; minute <= totalSamples; minute++) {
    await new Promise((r) => setTimeout(r, options.sampleSeconds * 1000));
    const counts = client.take();
    let text = '';
    try {
      text = await scrape(peers.metricsPort);
    } catch (err) {
      console.error(`metrics scrape failed: ${(err as Error).message}`);
    }
    const upstreamErrorsNow = metric(text, 'veil_upstream_requests_total', /rcode="(?!NOERROR|NXDOMAIN)/);
    const all = [...counts.values()];
    const sum = (f: (c: Counts) => number) => all.reduce((n, c) => n + f(c), 0);
    const latencies = all.flatMap((c) => c.latencies);
    const lagP99 = metric(text, 'veil_event_loop_lag_seconds', /quantile="0.99"/);
    const lagMax = metric(text, 'veil_event_loop_lag_seconds', /quantile="1"/);
    const heap = metric(text, 'nodejs_heap_used_bytes');
    const heapTotal = metric(text, 'nodejs_heap_total_bytes');
    const external = metric(text, 'nodejs_external_memory_bytes');
    const sample: Sample = {
      minute: (minute * options.sampleSeconds) / 60,
      frontRssMiB: mib(rssOf(peers.front.child.pid!)),
      backRssMiB: mib(rssOf(peers.back.child.pid!)),
      heapMiB: heap === null ? null : mib(heap),
      heapTotalMiB: heapTotal === null ? null : mib(heapTotal),
      externalMiB: external === null ? null : mib(external),
      lagP99Ms: lagP99 === null ? null : Math.round(lagP99 * 10_000) / 10,
      lagMaxMs: lagMax === null ? null : Math.round(lagMax * 10_000) / 10,
      sent: sum((c) => c.sent),
      answered: sum((c) => c.answered),
      unanswered: sum((c) => c.unanswered),
      servfail: sum((c) => c.rcodes.SERVFAIL ?? 0),
      // every name asked exists (or is blocked): any other rcode is an error too
      otherErrors: [...counts].reduce((n, [kind, c]) => n + c.answered - (c.rcodes[kind === 'blocked' ? 'NXDOMAIN' : 'NOERROR'] ?? 0) - (c.rcodes.SERVFAIL ?? 0), 0),
      upstreamErrors: upstreamErrorsNow === null ? null : upstreamErrorsNow - upstreamErrorsBefore,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      byKind: Object.fromEntries(
        [...counts].filter(([, c]) => c.sent > 0).map(([k, c]) => [k, { sent: c.sent, unanswered: c.unanswered, servfail: c.rcodes.SERVFAIL ?? 0, p99Ms: percentile(c.latencies, 99) }]),
      ),
    };
    upstreamErrorsBefore = upstreamErrorsNow ?? upstreamErrorsBefore;
    samples.push(sample);
    console.log(
      `${sample.minute.toFixed(1).padStart(5)} min  rss ${sample.frontRssMiB} MiB (back ${sample.backRssMiB})  heap ${sample.heapMiB}/${sample.heapTotalMiB} MiB external ${sample.externalMiB} MiB  lag p99 ${sample.lagP99Ms} ms max ${sample.lagMaxMs} ms  ` +
        `sent ${sample.sent} answered ${sample.answered} unanswered ${sample.unanswered} servfail ${sample.servfail} other ${sample.otherErrors} upstream-errors ${sample.upstreamErrors}  p50 ${sample.p50Ms} ms p99 ${sample.p99Ms} ms  (load generator: rss ${mib(process.memoryUsage.rss())} MiB, lag max ${Math.round(ownLag.max / 1e6)} ms)`,
    );
    ownLag.reset();
  }
  clearInterval(sender);
  // the last queries get their time to be answered
  await new Promise((r) => setTimeout(r, UNANSWERED_AFTER_MS + 100));
  client.expire(UNANSWERED_AFTER_MS);
  const tail = client.take();
  const last = samples[samples.length - 1]!;
  for (const c of tail.values()) {
    last.answered += c.answered;
    last.unanswered += c.unanswered;
    last.servfail += c.rcodes.SERVFAIL ?? 0;
  }
  client.close();
  await peers.stop();

  // Warm-up: the first fifth of the run (at least one sample): pools, JIT, caches fill.
  const warm = samples[Math.max(0, Math.ceil(samples.length / 5) - 1)]!;
  const growth = ((last.frontRssMiB - warm.frontRssMiB) / warm.frontRssMiB) * 100;
  const totals = {
    sent: samples.reduce((n, s) => n + s.sent, 0),
    unanswered: samples.reduce((n, s) => n + s.unanswered, 0),
    servfail: samples.reduce((n, s) => n + s.servfail, 0),
  };
  const summary = {
    options,
    hasCache,
    hasFilter,
    rssAfterWarmupMiB: warm.frontRssMiB,
    rssEndMiB: last.frontRssMiB,
    rssGrowthPercent: Math.round(growth * 10) / 10,
    maxLagP99Ms: Math.max(...samples.map((s) => s.lagP99Ms ?? 0)),
    ...totals,
  };
  console.log(`\nsummary: ${JSON.stringify(summary)}`);
  if (options.out) writeFileSync(options.out, JSON.stringify({ summary, samples }, null, 2));
  process.exit(totals.unanswered === 0 ? 0 : 1);
}

await main();
