/**
 * The ODoH lines of an `https://` (or `http://`) listener:
 *
 *     odoh_target [KEY_FILE] {          # this DoH path also takes ODoH; configs at /.well-known/odohconfigs
 *         rotate DURATION               # keys made at start: a new one this often (default 24h)
 *         overlap DURATION              # a replaced key is still accepted this long (default 1h)
 *     }
 *     odoh_relay {                      # this path is an oblivious relay, for these targets only
 *         target HOST[:PORT] IP...      # an allowed target and its addresses (no name lookups)
 *         targets_from FILE             # or every ODoH target of a list file (odoh-servers.md format)
 *         allow_private                 # targets may be on loopback or private addresses
 *         ca FILE                       # trust anchors for the targets, beside the system's
 *         rate N                        # requests per second from one client address (default 50)
 *         max_inflight N                # requests passed on at once (default 1000)
 *         timeout DURATION              # the longest a target may take (default 5s)
 *     }
 *
 * Parsed here, for `veil check` too: key files are read, addresses checked.
 */
import net from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, flag, parseDuration, parseInteger, readOptions } from '../../core/config/options.js';
import { destinationKind } from '../../core/net/destinations.js';
import { ipToBytes } from '../dnscrypt/relay-header.js';
import { readCertificates, readConfigFile } from '../tls/files.js';
import { parseList } from '../sources/list.js';
import { parseKeyFile } from './keys.js';

const PLUGIN = 'listen';

export interface OdohTargetOptions {
  /** The key file's seed, or null for keys made at start. */
  seed: Buffer | null;
  rotateMs: number;
  overlapMs: number;
}

export interface RelayTarget {
  /** Lower-case host name (or IP), as clients name it in `targethost`. */
  host: string;
  port: number;
  /** `host` or `host:port`: the key clients' `targethost` is matched against. */
  authority: string;
  /** Empty for a target from `targets_from`: the relay's own server block finds them. */
  addresses: string[];
}

export interface OdohRelayOptions {
  targets: RelayTarget[];
  allowPrivate: boolean;
  extraCa: string[];
  ratePerSecond: number;
  maxInflight: number;
  timeoutMs: number;
}

export const DEFAULT_ROTATE_MS = 24 * 3_600_000;
export const DEFAULT_OVERLAP_MS = 3_600_000;

export function parseOdohTarget(d: Directive): OdohTargetOptions {
  const [file] = expectArgs(PLUGIN, d, 0, 1);
  let seed: Buffer | null = null;
  if (file) {
    try {
      seed = parseKeyFile(readConfigFile(PLUGIN, file, 'ODoH key'));
    } catch (err) {
      if ((err as { code?: unknown }).code !== undefined || (err as Error).name === 'ConfigError') throw err;
      throw configError(PLUGIN, file, `${file.text}: ${(err as Error).message}`);
    }
  }
  let rotateMs = DEFAULT_ROTATE_MS;
  let overlapMs = DEFAULT_OVERLAP_MS;
  let rotateToken: Token | null = null;
  let overlapToken: Token | null = null;
  readOptions(PLUGIN, d.block, {
    rotate: (line) => {
      rotateToken = expectArgs(PLUGIN, line, 1)[0]!;
      if (file) throw configError(PLUGIN, line.name, 'a key from a file is not rotated here (several processes share it): replace the file and reload; "overlap" says how long the old key is still accepted');
      rotateMs = parseDuration(PLUGIN, rotateToken, { min: 60_000, max: 90 * 86_400_000 });
    },
    overlap: (line) => {
      overlapToken = expectArgs(PLUGIN, line, 1)[0]!;
      overlapMs = parseDuration(PLUGIN, overlapToken, { min: 0, max: 90 * 86_400_000 });
    },
  });
  if (!file && overlapMs > rotateMs) throw configError(PLUGIN, overlapToken ?? rotateToken ?? d.name, 'overlap must not be longer than rotate (only the key before the newest is kept)');
  return { seed, rotateMs, overlapMs };
}

export function parseOdohRelay(d: Directive): OdohRelayOptions {
  expectArgs(PLUGIN, d, 0);
  if (!d.block) throw configError(PLUGIN, d.name, 'odoh_relay needs a block with the targets it may reach: odoh_relay { target HOST[:PORT] IP… }');
  const options: OdohRelayOptions = { targets: [], allowPrivate: false, extraCa: [], ratePerSecond: 50, maxInflight: 1000, timeoutMs: 5000 };
  const targetLines: Directive[] = [];
  const listFiles: Token[] = [];
  readOptions(
    PLUGIN,
    d.block,
    {
      target: (line) => targetLines.push(line),
      targets_from: (line) => {
        expectNoBlock(PLUGIN, line);
        listFiles.push(expectArgs(PLUGIN, line, 1)[0]!);
      },
      allow_private: (line) => (options.allowPrivate = flag(PLUGIN, line)),
      ca: (line) => {
        expectNoBlock(PLUGIN, line);
        options.extraCa.push(...readCertificates(PLUGIN, expectArgs(PLUGIN, line, 1)[0]!, 'ca'));
      },
      rate: (line) => (options.ratePerSecond = parseInteger(PLUGIN, expectArgs(PLUGIN, line, 1)[0]!, 1, 1_000_000)),
      max_inflight: (line) => (options.maxInflight = parseInteger(PLUGIN, expectArgs(PLUGIN, line, 1)[0]!, 1, 100_000)),
      timeout: (line) => (options.timeoutMs = parseDuration(PLUGIN, expectArgs(PLUGIN, line, 1)[0]!, { min: 100, max: 60_000 })),
    },
    ['target', 'ca', 'targets_from'],
  );
  for (const line of targetLines) {
    const target = parseTargetLine(line, options.allowPrivate);
    if (options.targets.some((t) => t.authority === target.authority)) throw configError(PLUGIN, line.args[0]!, `${target.authority} is listed twice`);
    options.targets.push(target);
  }
  // Listed targets after the lines: a `target` line for the same name (with its addresses) wins.
  for (const file of listFiles) {
    for (const target of targetsOfList(file)) if (!options.targets.some((t) => t.authority === target.authority)) options.targets.push(target);
  }
  if (options.targets.length === 0) throw configError(PLUGIN, listFiles[0] ?? d.name, 'odoh_relay has no target: add "target HOST[:PORT] IP…" lines or a list with ODoH targets (a relay open to any target would be an open proxy)');
  return options;
}

/** Every ODoH target stamp of a list file (read at load; a reload reads it again). */
function targetsOfList(file: Token): RelayTarget[] {
  const targets: RelayTarget[] = [];
  for (const entry of parseList(readConfigFile(PLUGIN, file, 'list'))) {
    for (const stamp of entry.stamps) {
      if (stamp.protocol !== 'odohTarget') continue;
      const where = hostPort(stamp.host);
      if (where) targets.push({ ...where, addresses: [] });
    }
  }
  return targets;
}

/** `host`, `host:port`, `[v6]:port` → host, port and the authority clients name; null if not one. */
function hostPort(text: string): Omit<RelayTarget, 'addresses'> | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text);
  const host = (m?.[1] ?? m?.[2])?.replace(/\.$/, '').toLowerCase();
  if (!m || !host || (!m[1] && net.isIP(host) === 0 && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(host))) return null;
  const port = m[3] ? Number(m[3]) : 443;
  if (port < 1 || port > 65535) return null;
  const authorityHost = net.isIPv6(host) ? `[${host}]` : host;
  return { host, port, authority: port === 443 ? authorityHost : `${authorityHost}:${port}` };
}

function parseTargetLine(line: Directive, allowPrivate: boolean): RelayTarget {
  expectNoBlock(PLUGIN, line);
  const [where, ...ips] = expectArgs(PLUGIN, line, 2, Infinity) as [Token, ...Token[]];
  const place = hostPort(where.text);
  if (!place) throw configError(PLUGIN, where, `"${where.text}" is not HOST or HOST:PORT (with a port from 1 to 65535)`);
  const addresses = ips.map((ip) => {
    const bare = ip.text.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(bare) === 0) throw configError(PLUGIN, ip, `"${ip.text}" is not an IP address (the relay looks no name up: give the target's addresses)`);
    const kind = destinationKind(ipToBytes(bare));
    if (kind === 'forbidden') throw configError(PLUGIN, ip, `${bare} is not an address a relay may send to (unspecified, multicast, documentation or reserved)`);
    if (kind === 'private' && !allowPrivate) throw configError(PLUGIN, ip, `${bare} is a loopback or private address: add "allow_private" to the odoh_relay block to allow it`);
    return bare;
  });
  return { ...place, addresses };
}
