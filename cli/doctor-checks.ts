/**
 * The checks of `veil doctor` that read this machine and Veil's configuration: the system
 * resolver (resolv.conf, systemd-resolved, NetworkManager), Veil's upstreams, and hints. The
 * canary, which needs the running Veil, is in doctor.ts.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { parseBlocks } from '../core/block.js';
import { isLoopback, isPrivateAddress, parseHostPort } from '../core/net/address.js';
import type { BuiltConfig } from '../core/server.js';
import {
  interfaces,
  nsswitchUsesResolved,
  parseNmcliDevices,
  parseResolvConf,
  parseResolvectlStatus,
  readText,
  RESOLVED_STUBS,
  runTool,
  VPN_INTERFACE,
  type DnsServer,
} from './system-dns.js';

export type Status = 'PASS' | 'WARN' | 'FAIL' | 'HINT';

export interface Check {
  /** Stable, for scripts: `resolv.conf`, `systemd-resolved`, `networkmanager`, `canary`, … */
  id: string;
  status: Status;
  /** What was found, in one sentence. */
  summary: string;
  /** What to do about it. */
  fix?: string;
  /** More lines: each server, each interface, each upstream. */
  details?: string[];
}

/** A plain-DNS address Veil listens on (what a system resolver can be pointed at). */
export interface VeilAddress {
  host: string;
  port: number;
  scheme: 'udp' | 'tcp';
}

// ---- Veil's addresses ---------------------------------------------------------------------------

export function veilAddresses(built: BuiltConfig): VeilAddress[] {
  const out: VeilAddress[] = [];
  for (const planned of built.listeners.values()) {
    const { scheme, host, port } = planned.endpoint;
    if (scheme === 'udp' || scheme === 'tcp') out.push({ scheme, host, port });
  }
  return out;
}

/** True when a resolver's server is one of Veil's plain listeners (a wildcard covers loopback and the machine's own addresses). */
export function isVeil(server: DnsServer, listening: VeilAddress[]): boolean {
  return listening.some((a) => {
    if (a.port !== server.port) return false;
    if (a.host === server.address) return true;
    if (a.host === '0.0.0.0') return isIPv4(server.address) && isLocalMachine(server.address);
    if (a.host === '::') return isLocalMachine(server.address);
    return false;
  });
}

let ownAddresses: string | null | undefined;

/** Loopback, or an address of one of this machine's interfaces (`ip -o addr show`, read once). */
function isLocalMachine(address: string): boolean {
  if (isLoopback(address)) return true;
  ownAddresses ??= runTool('ip', ['-o', 'addr', 'show']);
  return ownAddresses !== null && new RegExp(`\\s${address.replace(/[.:]/g, (c) => `\\${c}`)}/\\d+\\s`).test(ownAddresses);
}

export function formatAddress(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function describeServers(servers: DnsServer[]): string {
  return servers.map((s) => `${s.text} (${s.family})`).join(', ');
}

// ---- the system resolver ------------------------------------------------------------------------

export function systemResolverChecks(listening: VeilAddress[]): Check[] {
  const checks: Check[] = [];
  const veilText = listening.map((a) => `${a.scheme}://${formatAddress(a.host, a.port)}`).join(', ') || 'nothing (no configuration)';
  const on53 = listening.some((a) => a.port === 53);
  const fixResolv = on53
    ? `write "nameserver ${loopbackOf(listening)}" as the only nameserver in /etc/resolv.conf, or point systemd-resolved at Veil (docs/install.md)`
    : `Veil listens on ${veilText}, and resolv.conf cannot name a port: listen on port 53 (veil init --listen 127.0.0.1:53), or point systemd-resolved at Veil's port (docs/install.md)`;

  const resolvText = readText('/etc/resolv.conf');
  const nsswitch = readText('/etc/nsswitch.conf') ?? '';
  let resolvedInUse = nsswitchUsesResolved(nsswitch);
  if (resolvText === null) {
    checks.push({ id: 'resolv.conf', status: 'FAIL', summary: '/etc/resolv.conf cannot be read', fix: fixResolv });
  } else {
    const conf = parseResolvConf(resolvText);
    const servers = conf.servers.length > 0 ? conf.servers : [{ address: '127.0.0.1', port: 53, family: 'IPv4' as const, text: '127.0.0.1 (none written: the default)' }];
    const stubs = servers.filter((s) => RESOLVED_STUBS.has(s.address));
    const others = servers.filter((s) => !RESOLVED_STUBS.has(s.address) && !isVeil(s, listening));
    if (stubs.length > 0) resolvedInUse = true;
    const details = [
      ...servers.map((s) => `nameserver ${s.text} (${s.family}): ${RESOLVED_STUBS.has(s.address) ? 'systemd-resolved, checked below' : isVeil(s, listening) ? 'Veil' : 'NOT Veil'}`),
      ...conf.unreadable.map((u) => `nameserver ${u}: not an address glibc reads (ignored)`),
    ];
    if (others.length > 0) {
      checks.push({ id: 'resolv.conf', status: 'FAIL', summary: `/etc/resolv.conf names ${describeServers(others)}, which ${others.length === 1 ? 'is' : 'are'} not Veil: queries to ${others.length === 1 ? 'it' : 'them'} bypass Veil`, fix: fixResolv, details });
    } else {
      checks.push({ id: 'resolv.conf', status: 'PASS', summary: stubs.length > 0 ? '/etc/resolv.conf hands every query to systemd-resolved' : '/etc/resolv.conf names Veil only', details });
    }
    if (conf.byNetworkManager && others.length === 0) {
      checks.push({ id: 'resolv.conf', status: 'WARN', summary: 'NetworkManager writes /etc/resolv.conf: it may put other servers there when a connection comes up', fix: 'set dns=none in /etc/NetworkManager/conf.d/veil.conf, or ignore-auto-dns on each connection (docs/install.md)' });
    }
  }

  // systemd-resolved: every server it may use, per link.
  const status = runTool('resolvectl', ['status', '--no-pager']);
  if (status === null) {
    if (resolvedInUse) checks.push({ id: 'systemd-resolved', status: 'FAIL', summary: 'queries go to systemd-resolved, but resolvectl status does not answer', fix: 'systemctl status systemd-resolved; or write Veil in /etc/resolv.conf instead (docs/install.md)' });
  } else if (!resolvedInUse) {
    checks.push({ id: 'systemd-resolved', status: 'PASS', summary: 'systemd-resolved runs, but the system resolver does not ask it (resolv.conf names servers directly)' });
  } else {
    const links = parseResolvectlStatus(status);
    const configured = links.flatMap((l) => l.servers);
    const details: string[] = [];
    const leaks: string[] = [];
    for (const link of links) {
      for (const s of link.servers) {
        const veil = isVeil(s, listening);
        details.push(`${link.name}: ${s.text} (${s.family}) ${veil ? 'Veil' : link.defaultRoute ? 'NOT Veil' : 'NOT Veil (only for its own domains)'}`);
        if (!veil && link.defaultRoute) leaks.push(`${s.text} on ${link.name} (${s.family})`);
      }
    }
    if (configured.length === 0) {
      const fallback = links.flatMap((l) => l.fallback);
      checks.push({
        id: 'systemd-resolved',
        status: 'FAIL',
        summary: `systemd-resolved has no DNS server configured, so it uses its fallback servers${fallback.length ? ` (${describeServers(fallback)})` : ''}, not Veil`,
        fix: `DNS=${resolvedEntry(listening)} and Domains=~. in /etc/systemd/resolved.conf.d/veil.conf, then systemctl restart systemd-resolved (docs/install.md)`,
      });
    } else if (leaks.length > 0) {
      checks.push({
        id: 'systemd-resolved',
        status: 'FAIL',
        summary: `systemd-resolved also uses ${leaks.join(', ')}: queries it sends there bypass Veil`,
        fix: `DNS=${resolvedEntry(listening)} and Domains=~. in /etc/systemd/resolved.conf.d/veil.conf, and remove the per-link servers (NetworkManager: ignore-auto-dns) (docs/install.md)`,
        details,
      });
    } else {
      const partial = details.some((d) => d.includes('NOT Veil'));
      checks.push({ id: 'systemd-resolved', status: partial ? 'WARN' : 'PASS', summary: partial ? 'systemd-resolved sends to Veil, but some links have servers of their own for their domains' : 'every server systemd-resolved uses is Veil', details, ...(partial ? { fix: 'Domains=~. on Veil\'s entry makes it the route for every name (docs/install.md)' } : {}) });
    }
  }

  // NetworkManager: the servers each device was given, which it writes on (re)connection.
  const nmRunning = runTool('nmcli', ['-t', '-f', 'RUNNING', 'general'])?.trim() === 'running';
  if (nmRunning) {
    const devices = parseNmcliDevices(runTool('nmcli', ['-t', '-f', 'GENERAL.DEVICE,IP4.DNS,IP6.DNS', 'device', 'show']) ?? '');
    const foreign = devices.flatMap((d) => d.servers.filter((s) => !isVeil(s, listening)).map((s) => `${d.device}: ${s.text} (${s.family})`));
    checks.push(
      foreign.length > 0
        ? { id: 'networkmanager', status: 'WARN', summary: `NetworkManager has DNS servers that are not Veil (${foreign.length})`, details: foreign, fix: 'nmcli connection modify NAME ipv4.ignore-auto-dns yes ipv6.ignore-auto-dns yes (each connection), or dns=none in NetworkManager.conf (docs/install.md)' }
        : { id: 'networkmanager', status: 'PASS', summary: 'no NetworkManager device has a DNS server other than Veil' },
    );
  }
  return checks;
}

/** Veil as resolved.conf's DNS= names it: the address, with the port when it is not 53. */
function resolvedEntry(listening: VeilAddress[]): string {
  const port = listening.find((a) => a.port === 53)?.port ?? listening[0]?.port ?? 53;
  return port === 53 ? loopbackOf(listening) : formatAddress(loopbackOf(listening), port);
}

function loopbackOf(listening: VeilAddress[]): string {
  const host = listening.find((a) => a.port === 53)?.host ?? listening[0]?.host ?? '127.0.0.1';
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}

// ---- Veil's configuration -----------------------------------------------------------------------

const ENCRYPTED = new Set(['dot', 'doh', 'dnscrypt', 'odoh']);

export function configurationChecks(built: BuiltConfig, parsed: ReturnType<typeof parseBlocks>, upstreams: string | null): Check[] {
  const checks: Check[] = [];
  const plain: string[] = [];
  const plainPublic: string[] = [];
  for (const block of built.blocks) {
    for (const u of block.upstreams.all) {
      if (ENCRYPTED.has(u.protocol)) continue;
      const host = parseHostPort(u.address, 53).host;
      (isPrivateAddress(host) ? plain : plainPublic).push(`${u.name} (${u.protocol} ${u.address}) in block ${block.server}`);
    }
  }
  if (plainPublic.length > 0) {
    checks.push({ id: 'plaintext', status: 'FAIL', summary: `plain DNS to the internet (insecure): ${plainPublic.join('; ')}`, fix: 'replace it with a dot, doh or dnscrypt upstream (Corefile.example)' });
  } else if (plain.length > 0) {
    checks.push({ id: 'plaintext', status: 'WARN', summary: `plain DNS on this machine or network: ${plain.join('; ')}`, fix: 'fine when that resolver is your own and encrypts onward; otherwise use dot, doh or dnscrypt' });
  } else {
    checks.push({ id: 'plaintext', status: 'PASS', summary: 'no upstream is asked in plaintext' });
  }

  const tls: string[] = [];
  for (const block of parsed) {
    for (const plugin of block.plugins) {
      if (plugin.definition.name === 'dot') {
        for (const s of (plugin.options as { servers: Array<{ name: string; serverName: string | null; pins: unknown[]; listed: boolean }> }).servers) {
          tls.push(`dot ${s.name}: ${s.listed ? 'the name in its list stamp' : [s.serverName && `certificate for ${s.serverName}`, s.pins.length > 0 && `${s.pins.length} pin(s)`].filter(Boolean).join(' and ')}`);
        }
      }
      if (plugin.definition.name === 'doh') {
        for (const s of (plugin.options as { servers: Array<{ name: string; hostname: string; pins: unknown[]; listed: boolean }> }).servers) {
          tls.push(`doh ${s.name}: ${s.listed ? 'the name in its list stamp' : [`certificate for ${s.hostname}`, s.pins.length > 0 && `${s.pins.length} pin(s)`].filter(Boolean).join(' and ')}`);
        }
      }
    }
  }
  if (tls.length > 0) checks.push({ id: 'tls', status: 'PASS', summary: 'every DNS-over-TLS and DNS-over-HTTPS upstream is verified by name or pin (Veil refuses one that is not)', details: tls });

  const encrypted = built.blocks.some((b) => b.upstreams.all.some((u) => ENCRYPTED.has(u.protocol))) || parsed.some((b) => b.plugins.some((p) => ['dnscrypt', 'doh', 'dot'].includes(p.definition.name)));
  checks.push(
    plain.length + plainPublic.length > 0
      ? { id: 'padding', status: 'WARN', summary: 'queries to plain-DNS upstreams are not padded (those to encrypted ones are)', fix: 'use encrypted upstreams only' }
      : { id: 'padding', status: 'PASS', summary: encrypted ? 'every query leaves padded (EDNS padding for DoT and DoH, DNSCrypt\'s own; built in)' : 'no upstream: nothing leaves' },
  );
  checks.push({ id: 'client-subnet', status: 'PASS', summary: 'EDNS Client Subnet is removed from every query before any upstream sees it (built in)' });

  const logs = built.blocks.filter((b) => b.plugins.some((p) => p.name === 'log')).map((b) => b.server);
  if (logs.length > 0) checks.push({ id: 'query-log', status: 'HINT', summary: `the log plugin writes every name asked (block ${logs.join(', ')}): keep it only if you want that record` });

  // Anonymization: configured, and usable now (the running Veil's own count).
  const anonymized = parsed.some((b) => b.plugins.some((p) => p.definition.name === 'anonymize'));
  const counts = upstreams ? /^(\d+) usable of (\d+), (\d+) through relays$/.exec(upstreams) : null;
  if (counts) {
    const [usable, total, relayed] = [Number(counts[1]), Number(counts[2]), Number(counts[3])];
    if (total > 0 && usable === 0) checks.push({ id: 'upstreams', status: 'FAIL', summary: `no upstream can take a query now (0 of ${total})`, fix: 'offline? Veil retries by itself; journalctl -u veil says why' });
    else if (total === 0) checks.push({ id: 'upstreams', status: 'WARN', summary: 'no upstream yet: Veil answers only its own names (lists not fetched yet?)', fix: 'veil sources list FILE; journalctl -u veil' });
    else checks.push({ id: 'upstreams', status: 'PASS', summary: `${usable} of ${total} upstreams can take a query now` });
    if (anonymized) {
      checks.push(
        relayed > 0
          ? { id: 'anonymization', status: 'PASS', summary: `${relayed} DNSCrypt server(s) usable through relays now` }
          : { id: 'anonymization', status: 'FAIL', summary: 'anonymization is configured, but no DNSCrypt server is usable through a relay now', fix: 'the relay and resolver lists may not be fetched yet (veil sources list FILE), or the relays are unreachable (journalctl -u veil)' },
      );
    }
  } else if (anonymized) {
    checks.push({ id: 'anonymization', status: 'WARN', summary: 'anonymization is configured; whether a relay is usable needs the running Veil with the path plugin' });
  }
  return checks;
}

// ---- what it cannot see -------------------------------------------------------------------------

export function hints(): Check[] {
  const checks: Check[] = [];
  const names = interfaces();
  const vpn = names.filter((n) => VPN_INTERFACE.test(n) && (readText(`/sys/class/net/${n}/operstate`) ?? '').trim() !== 'down');
  checks.push(
    vpn.length > 0
      ? { id: 'vpn', status: 'WARN', summary: `VPN interface(s) ${vpn.join(', ')}: VPN clients often set DNS servers of their own`, fix: 'run veil doctor again with the VPN connected; point the VPN client\'s DNS at Veil, or let it use the system resolver' }
      : { id: 'vpn', status: 'HINT', summary: 'a VPN client may set DNS servers of its own when it connects: run veil doctor again with it connected' },
  );
  const up = names.filter((n) => (readText(`/sys/class/net/${n}/operstate`) ?? '').trim() === 'up');
  const ra = up.filter((n) => (readText(`/proc/sys/net/ipv6/conf/${n}/accept_ra`) ?? '0').trim() !== '0');
  checks.push({
    id: 'ipv6-ra',
    status: 'HINT',
    summary: ra.length > 0 ? `${ra.join(', ')} accept IPv6 router advertisements, which may announce DNS servers (RDNSS); those in use appear above, and a new network may bring others` : 'IPv6 router advertisements can announce DNS servers (RDNSS) on a new network: run veil doctor there too',
  });
  checks.push({ id: 'browser', status: 'HINT', summary: 'browsers may use DNS-over-HTTPS of their own and bypass Veil: Firefox (Settings, Privacy: DNS over HTTPS off), Chrome (Settings, Privacy: Use secure DNS off)' });
  return checks;
}
