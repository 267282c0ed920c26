/**
 * The `shared` line of `cache`: where the fleet's Valkey (or Redis) is and how to reach it.
 *
 *     shared redis://IP[:PORT][/DB]|rediss://… [URL…] {
 *         key_file FILE
 *         timeout DURATION
 *         password_file FILE
 *         ca FILE
 *         server_name NAME
 *         sentinel MASTER
 *         cluster
 *         write_queue COUNT
 *     }
 *
 * Addresses are IP literals: Veil never asks the system resolver for a name (in Kubernetes,
 * `{$VALKEY_SERVICE_HOST}` gives the Service's address). Secrets live in files whose
 * permissions keep them secret, never in the Corefile.
 */
import { Buffer } from 'node:buffer';
import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Directive, Token } from '../../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, flag, parseDuration, parseInteger, readOptions } from '../../../core/config/options.js';
import { readCertificates } from '../../../lib/tls/files.js';
import { SECRET_BYTES } from './sealing.js';

const NAME = 'cache';
const DEFAULT_TIMEOUT_MS = 5;
const DEFAULT_WRITE_QUEUE = 10_000;

export interface SharedAddress {
  host: string;
  port: number;
}

export interface SharedOptions {
  /** As written, for logs: `redis://127.0.0.1:6379/0`. */
  shown: string;
  tls: boolean;
  addresses: SharedAddress[];
  db: number;
  username: string | null;
  password: string | null;
  secret: Buffer;
  timeoutMs: number;
  /** Extra trust anchors (PEM) for rediss://, added to the system's. */
  ca: string[];
  /** The name the server's certificate must carry; its address when not given. */
  serverName: string | null;
  /** The master's name when the addresses are sentinels. */
  sentinel: string | null;
  cluster: boolean;
  writeQueue: number;
}

/** Parses `shared URL… { … }` inside `cache { }`. */
export function parseShared(line: Directive): SharedOptions {
  const urls = expectArgs(NAME, line, 1, 16);
  if (!line.block) throw configError(NAME, line.name, 'shared needs a block with at least "key_file FILE" (the fleet\'s 32-byte secret)');
  const first = parseUrl(urls[0]!);
  const options: SharedOptions = {
    shown: urls.map((u) => u.text).join(' '),
    tls: first.tls,
    addresses: [],
    db: first.db,
    username: first.username,
    password: null,
    secret: Buffer.alloc(0),
    timeoutMs: DEFAULT_TIMEOUT_MS,
    ca: [],
    serverName: null,
    sentinel: null,
    cluster: false,
    writeQueue: DEFAULT_WRITE_QUEUE,
  };
  // Where the options were given, for errors about how they combine.
  const at: { key?: Token; ca?: Token; serverName?: Token } = {};
  readOptions(NAME, line.block, {
    key_file: (d) => {
      at.key = oneArg(d);
      options.secret = readSecret(at.key);
    },
    timeout: (d) => (options.timeoutMs = parseDuration(NAME, oneArg(d), { min: 1, max: 1000 })),
    password_file: (d) => (options.password = readPassword(oneArg(d))),
    ca: (d) => {
      at.ca = oneArg(d);
      options.ca = readCertificates(NAME, at.ca, 'CA');
    },
    server_name: (d) => {
      at.serverName = oneArg(d);
      options.serverName = at.serverName.text;
    },
    sentinel: (d) => (options.sentinel = oneArg(d).text),
    cluster: (d) => (options.cluster = flag(NAME, d)),
    write_queue: (d) => (options.writeQueue = parseInteger(NAME, oneArg(d), 1, 1_000_000)),
  });
  if (!at.key) throw configError(NAME, line.name, 'shared needs "key_file FILE": the fleet\'s 32-byte secret (make one with: openssl rand -hex 32 > FILE)');
  if (!options.tls && at.ca) throw configError(NAME, at.ca, 'ca is for rediss:// (TLS) only');
  if (!options.tls && at.serverName) throw configError(NAME, at.serverName, 'server_name is for rediss:// (TLS) only');
  if (options.sentinel && options.cluster) throw configError(NAME, line.name, 'shared is either a sentinel set or a cluster, not both');
  if (options.cluster && options.db !== 0) throw configError(NAME, urls[0]!, 'a cluster has only database 0');
  for (const token of urls) {
    const url = parseUrl(token, options.sentinel ? 26379 : 6379);
    if (url.tls !== first.tls || url.db !== first.db || url.username !== first.username) {
      throw configError(NAME, token, 'every address of shared must have the same scheme, user and database');
    }
    options.addresses.push({ host: url.host, port: url.port });
  }
  if (options.addresses.length > 1 && !options.sentinel && !options.cluster) {
    throw configError(NAME, urls[1]!, 'several addresses are for "sentinel MASTER" or "cluster"; a single server has one');
  }
  return options;
}

function oneArg(d: Directive): Token {
  expectNoBlock(NAME, d);
  return expectArgs(NAME, d, 1)[0]!;
}

function parseUrl(token: Token, defaultPort = 6379): { tls: boolean; host: string; port: number; db: number; username: string | null } {
  let url: URL;
  try {
    url = new URL(token.text);
  } catch {
    throw configError(NAME, token, `"${token.text}" is not a URL like redis://127.0.0.1:6379/0 or rediss://…`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw configError(NAME, token, `shared speaks redis:// or rediss:// (TLS), not ${url.protocol}//`);
  if (url.password) throw configError(NAME, token, 'no password in the URL: a Corefile is not a secret; use "password_file FILE"');
  if (url.search || url.hash) throw configError(NAME, token, `"${token.text}": options go in the block, not in the URL`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (net.isIP(host) === 0) {
    throw configError(NAME, token, `"${url.hostname}" is not an IP address: Veil never asks the system resolver for a name (in Kubernetes, write {$VALKEY_SERVICE_HOST})`);
  }
  const dbText = url.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw configError(NAME, token, `"/${dbText}" is not a database number`);
  return {
    tls: url.protocol === 'rediss:',
    host,
    port: url.port ? Number(url.port) : defaultPort,
    db: dbText === '' ? 0 : Number(dbText),
    username: url.username ? decodeURIComponent(url.username) : null,
  };
}

/**
 * The fleet's secret: 64 hex digits, 44 characters of base64, or 32 raw bytes. A file others
 * may read (or anyone but its owner and group may change) is refused: whoever has the secret
 * reads the whole fleet's cache.
 */
function readSecret(token: Token): Buffer {
  const bytes = readPrivateFile(token, 'key_file');
  const text = bytes.toString('latin1').trim();
  let secret: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(text)) secret = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) secret = Buffer.from(text, 'base64');
  else if (bytes.length === SECRET_BYTES) secret = bytes;
  if (!secret || secret.length !== SECRET_BYTES) {
    throw configError(
      NAME,
      token,
      `"${token.text}" does not hold a ${SECRET_BYTES}-byte secret (64 hex digits, base64, or ${SECRET_BYTES} raw bytes; it holds ${bytes.length} bytes): make one with openssl rand -hex 32 > ${token.text}`,
    );
  }
  if (secret.every((b) => b === secret[0])) throw configError(NAME, token, `"${token.text}" holds one byte repeated, not a random secret: make one with openssl rand -hex 32`);
  return secret;
}

function readPassword(token: Token): string {
  const password = readPrivateFile(token, 'password_file').toString('utf8').replace(/\r?\n$/, '');
  if (password === '' || password.includes('\n')) throw configError(NAME, token, `"${token.text}" must hold the password on one line`);
  return password;
}

function readPrivateFile(token: Token, what: string): Buffer {
  const full = path.resolve(path.dirname(path.resolve(token.file)), token.text);
  let mode: number;
  let bytes: Buffer;
  try {
    mode = statSync(full).mode;
    bytes = readFileSync(full);
  } catch (err) {
    throw configError(NAME, token, `cannot read ${what} "${token.text}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if ((mode & 0o027) !== 0) {
    throw configError(
      NAME,
      token,
      `${what} "${token.text}" is too open (mode ${(mode & 0o777).toString(8).padStart(3, '0')}): others must not read it, nor the group change it (chmod 600 or 640)`,
    );
  }
  return bytes;
}
