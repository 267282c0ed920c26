/**
 * `npm run demo [-- --once]`: the whole private path on loopback, without the internet.
 *
 *   resolver  bin/veil answering a small zone over DNSCrypt, DNS-over-TLS and DNS-over-HTTPS
 *   relay     bin/veil as an Anonymized DNSCrypt relay on 127.0.0.2
 *   proxy     bin/veil on plain UDP/TCP for local clients, sending `*.dot.demo` over TLS,
 *             `*.doh.demo` over HTTPS and everything else over DNSCrypt through the relay
 *
 * Certificates come from a throw-away CA (openssl), the DNSCrypt provider key from the same code
 * as `veil dnscrypt keygen`. The demo asks every path once with `veil query` and checks the
 * answers (exit 1 if one is wrong), prints commands to try, and then keeps running, showing the
 * proxy's query log, until Ctrl-C. `--once` stops after the checks (CI runs it so).
 */
import { rmSync } from 'node:fs';
import { runQuery } from '../cli/query.js';
import type { CommandIo } from '../cli/io.js';
import { writeProviderKeys } from '../lib/dnscrypt/provider-key.js';
import { dnscryptStamp, relayStamp } from '../test/helpers/dnscrypt.js';
import { makeTestCerts } from '../test/helpers/peers.js';
import { makeTempDir, startVeil, type VeilProcess } from '../test/helpers/veil-process.js';

const PROVIDER = '2.dnscrypt-cert.demo.veil';
/** The zone the resolver serves: name → address, one name per path so the log shows which went where. */
const ZONE: Record<string, string> = {
  'www.demo': '192.0.2.10',
  'www.dot.demo': '192.0.2.20',
  'www.doh.demo': '192.0.2.30',
};

interface Check {
  label: string;
  args: string[];
  expect: string;
}

async function ask(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CommandIo = { out: (line) => out.push(line), err: (line) => err.push(line) };
  const code = await runQuery(args, io);
  return { code, out, err };
}

async function main(): Promise<number> {
  const once = process.argv.includes('--once');
  const certs = makeTestCerts();
  const keyDir = makeTempDir();
  const keys = writeProviderKeys(keyDir);
  const running: VeilProcess[] = [];
  const stopAll = async () => {
    for (const veil of running.reverse()) await veil.stop();
    rmSync(certs.dir, { recursive: true, force: true });
    rmSync(keyDir, { recursive: true, force: true });
  };

  try {
    const hosts = Object.entries(ZONE).map(([name, ip]) => `        ${ip} ${name}`).join('\n');
    const resolver = await startVeil(`# The resolver: a small zone over DNSCrypt, TLS and HTTPS.
. {
    listen dnscrypt://127.0.0.1:0 {
        provider ${PROVIDER}
        key ${keys.keyFile}
    }
    listen tls://127.0.0.1:0 {
        cert ${certs.chain}
        key ${certs.key}
    }
    listen https://127.0.0.1:0/dns-query {
        cert ${certs.chain}
        key ${certs.key}
    }
    hosts {
${hosts}
    }
}
`);
    running.push(resolver);
    const dnscrypt = resolver.address('dnscrypt');
    const tls = resolver.address('tls');
    const https = resolver.address('https');
    const stamp = dnscryptStamp(`127.0.0.1:${dnscrypt.port}`, keys.publicKey, PROVIDER);

    const relay = await startVeil(`# An Anonymized DNSCrypt relay: it sees the client, never the query.
. {
    listen relay://127.0.0.2:0 {
        allow_ports ${dnscrypt.port}
        allow_private
    }
}
`);
    running.push(relay);
    const relayAt = relay.address('relay');
    const relayStampText = relayStamp(`127.0.0.2:${relayAt.port}`);

    const proxy = await startVeil(`# The proxy local clients use: plain DNS in, only encrypted DNS out.
dot.demo {
    listen udp://127.0.0.1:0 tcp://127.0.0.1:0
    dot {
        server resolver-tls tls://127.0.0.1:${tls.port} {
            server_name dns.test
            ca ${certs.ca}
        }
    }
    log
}
doh.demo {
    doh {
        server resolver-https https://127.0.0.1:${https.port}/dns-query {
            ca ${certs.ca}
        }
    }
    log
}
. {
    dnscrypt {
        server resolver ${stamp}
    }
    anonymize {
        relay demo-relay ${relayStampText}
        route resolver via demo-relay
    }
    log
}
`);
    running.push(proxy);
    await proxy.waitFor(/certificate serial/);
    const local = proxy.address('udp');

    const checks: Check[] = [
      { label: 'proxy → DoT', args: [`@127.0.0.1`, '-p', String(local.port), 'www.dot.demo'], expect: ZONE['www.dot.demo']! },
      { label: 'proxy → DoH', args: [`@127.0.0.1`, '-p', String(local.port), 'www.doh.demo'], expect: ZONE['www.doh.demo']! },
      { label: 'proxy → relay → DNSCrypt', args: [`@127.0.0.1`, '-p', String(local.port), 'www.demo'], expect: ZONE['www.demo']! },
      { label: 'direct DoT', args: ['@127.0.0.1', '-p', String(tls.port), '--tls', '--tls-hostname', 'dns.test', '--ca', certs.ca, 'www.dot.demo'], expect: ZONE['www.dot.demo']! },
      { label: 'direct DoH', args: ['--https', `https://127.0.0.1:${https.port}/dns-query`, '--ca', certs.ca, 'www.doh.demo'], expect: ZONE['www.doh.demo']! },
      { label: 'direct DNSCrypt via relay', args: ['--dnscrypt', stamp, '--relay', relayStampText, 'www.demo'], expect: ZONE['www.demo']! },
    ];
    let failed = 0;
    console.log('Veil demo: every path asked once with veil query\n');
    for (const check of checks) {
      const { code, out, err } = await ask([...check.args, '--short']);
      const ok = code === 0 && out.includes(check.expect);
      if (!ok) failed++;
      console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${check.label.padEnd(28)} ${out.join(' ') || '(no answer)'}${ok ? '' : `  expected ${check.expect}; ${err.join(' ')}`}`);
      console.log(`       bin/veil query ${check.args.join(' ')}`);
    }

    console.log(`
Listening:
  proxy     udp/tcp 127.0.0.1:${local.port}
  resolver  dnscrypt 127.0.0.1:${dnscrypt.port}, tls 127.0.0.1:${tls.port}, https://127.0.0.1:${https.port}/dns-query
  relay     127.0.0.2:${relayAt.port}
  stamps    resolver ${stamp}
            relay    ${relayStampText}

Try:
  dig @127.0.0.1 -p ${local.port} www.demo
  kdig @127.0.0.1 -p ${tls.port} +tls-ca=${certs.ca} +tls-hostname=dns.test www.dot.demo
  kdig @127.0.0.1 -p ${https.port} +https=/dns-query +tls-ca=${certs.ca} www.doh.demo
  curl --cacert ${certs.ca} -H 'accept: application/dns-json' 'https://127.0.0.1:${https.port}/dns-query?name=www.demo&type=A'
`);
    if (once || failed > 0) return failed > 0 ? 1 : 0;

    console.log('The proxy logs each query below. Ctrl-C stops the demo.\n');
    let shown = 0;
    const tail = setInterval(() => {
      const lines = proxy.stderr().split('\n');
      for (const line of lines.slice(shown, -1)) if (line.startsWith('{')) console.log(`  ${line}`);
      shown = Math.max(shown, lines.length - 1);
    }, 250);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    clearInterval(tail);
    return 0;
  } finally {
    await stopAll();
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(`demo: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
});
