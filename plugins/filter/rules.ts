/**
 * Name and address rules, in the formats blocklists come in, loaded unchanged:
 *
 * - dnscrypt-proxy's blocked_names patterns: `example.com`, `*.example.com` and `.example.com`
 *   (the name and every name under it), `=example.com` (that name only), `ads.*` (prefix),
 *   `*ads*` (substring), and globs with `?`, `[…]` or a `*` inside (matched on the whole name);
 *   `#` comments, and a trailing `@schedule`, which is ignored (time ranges are not supported);
 * - hosts files: `0.0.0.0 name…` (any address, then the names);
 * - plain domain lists, one name per line (and Adblock's `||example.com^`).
 *
 * A plain name blocks itself and every name under it, as in dnscrypt-proxy. Names are compared
 * in lower case without the trailing dot.
 */
import net from 'node:net';

/** Names a hosts file lists for itself, never meant as blocklist entries. */
const HOSTS_SELF = new Set(['localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', '0.0.0.0']);
const NAME_CHARS = /^[a-z0-9_*.?[\]!=-]+$/;

export class NameRules {
  private readonly exact = new Set<string>();
  private readonly suffixes = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly substrings: string[] = [];
  private readonly globs: RegExp[] = [];

  get size(): number {
    return this.exact.size + this.suffixes.size + this.prefixes.length + this.substrings.length + this.globs.length;
  }

  /** Adds one pattern; returns why it cannot be a rule, or null. */
  add(pattern: string): string | null {
    let p = pattern.toLowerCase();
    if (p.startsWith('||') && p.endsWith('^')) p = p.slice(2, -1);
    if (p.endsWith('.') && p.length > 1) p = p.slice(0, -1);
    if (!NAME_CHARS.test(p)) return `"${pattern}" is not a name or a pattern`;
    if (p.startsWith('=')) {
      if (p.length === 1 || /[*?[]/.test(p)) return `"${pattern}": = takes a plain name`;
      this.exact.add(p.slice(1));
    } else if (!/[*?[]/.test(p.replace(/^\*?\./, ''))) {
      this.suffixes.add(p.replace(/^\*?\./, ''));
    } else if (/^[^*?[]+\*$/.test(p)) {
      this.prefixes.push(p.slice(0, -1));
    } else if (/^\*[^*?[]+\*$/.test(p)) {
      this.substrings.push(p.slice(1, -1));
    } else {
      this.globs.push(globToRegExp(p));
    }
    return null;
  }

  /** True when `name` (lower case, no trailing dot) matches a rule. */
  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    if (this.suffixes.size > 0) {
      for (let n = name; ; ) {
        if (this.suffixes.has(n)) return true;
        const dot = n.indexOf('.');
        if (dot < 0) break;
        n = n.slice(dot + 1);
      }
    }
    for (const prefix of this.prefixes) if (name.startsWith(prefix)) return true;
    for (const part of this.substrings) if (name.includes(part)) return true;
    for (const glob of this.globs) if (glob.test(name)) return true;
    return false;
  }
}

function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') source += '.*';
    else if (c === '?') source += '.';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 1);
      if (close < 0) source += '\\[';
      else {
        const body = glob.slice(i + 1, close).replace(/^!/, '^').replace(/\\/g, '\\\\');
        source += `[${body}]`;
        i = close;
      }
    } else source += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

export interface ListLoad {
  rules: NameRules;
  /** Lines that could not be read, with their number (the first few). */
  rejected: Array<{ line: number; reason: string }>;
  rejectedCount: number;
}

/** Reads a list in any of the formats above (they may even be mixed). */
export function loadNameList(text: string): ListLoad {
  const rules = new NameRules();
  const rejected: ListLoad['rejected'] = [];
  let rejectedCount = 0;
  let lineNumber = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNumber++;
    let line = text.slice(start, end);
    start = end + 1;
    const hash = line.indexOf('#');
    if (hash >= 0) line = line.slice(0, hash);
    line = line.trim();
    if (line === '' || line.startsWith('!')) continue; // `!` starts an Adblock comment
    const words = line.split(/\s+/);
    let names: string[];
    if (net.isIP(words[0]!) !== 0) names = words.slice(1).filter((w) => !HOSTS_SELF.has(w.toLowerCase()));
    else names = [words[0]!]; // a pattern, maybe followed by `@schedule`
    for (const name of names) {
      const problem = rules.add(name);
      if (problem) {
        rejectedCount++;
        if (rejected.length < 5) rejected.push({ line: lineNumber, reason: problem });
      }
    }
  }
  return { rules, rejected, rejectedCount };
}

/**
 * Address rules, as dnscrypt-proxy's blocked_ips: an address, a CIDR range, or a prefix ending
 * in `*` (`192.0.2.*`, `fe80:53:*`). IPv6 prefixes match the address written in full groups
 * without leading zeros and without `::` (`fe80:53:0:0:0:0:0:1`).
 */
export class AddressRules {
  /** Addresses and ranges, matched by Node's own BlockList. */
  private readonly list = new net.BlockList();
  private readonly prefixes: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(rule: string): string | null {
    if (rule.endsWith('*')) {
      this.prefixes.push(rule.slice(0, -1).toLowerCase());
      this.count++;
      return null;
    }
    const [address = '', bitsText, extra] = rule.split('/');
    const family = net.isIP(address);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (family === 0 || extra !== undefined) return `"${rule}" is not an address, a CIDR range or a prefix*`;
    if (bitsText === undefined) {
      this.list.addAddress(address, type);
      this.count++;
      return null;
    }
    const bits = Number(bitsText);
    if (!/^\d+$/.test(bitsText) || bits > (family === 6 ? 128 : 32)) return `"${rule}": /${bitsText} is not a prefix length`;
    this.list.addSubnet(address, bits, type);
    this.count++;
    return null;
  }

  /** `rdata` is the 4 or 16 bytes of an A or AAAA record. */
  matches(rdata: Buffer): boolean {
    const v4 = rdata.length === 4;
    const text = v4 ? `${rdata[0]}.${rdata[1]}.${rdata[2]}.${rdata[3]}` : fullGroups(rdata);
    if (this.list.check(text, v4 ? 'ipv4' : 'ipv6')) return true;
    for (const prefix of this.prefixes) if (text.startsWith(prefix)) return true;
    return false;
  }
}

export function loadAddressList(text: string): { rules: AddressRules; rejected: Array<{ line: number; reason: string }> } {
  const rules = new AddressRules();
  const rejected: Array<{ line: number; reason: string }> = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const problem = rules.add(line.split(/\s+/)[0]!);
    if (problem && rejected.length < 5) rejected.push({ line: index + 1, reason: problem });
  });
  return { rules, rejected };
}

function fullGroups(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}
