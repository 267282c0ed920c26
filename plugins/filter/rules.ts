/**
 * Name and address rules, in the formats blocklists come in, loaded unchanged:
 *
 * - dnscrypt-proxy's blocked_names patterns: `example.com`, `*.example.com` and `.example.com`
 *   (the name and every name under it), `=example.com` (that name only), `ads.*` (prefix),
 *   `*ads*` (substring), and globs with `?`, `[…]` or a `*` inside (matched on the whole name,
 *   in time linear in the name: see Glob);
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
  private readonly globs: Glob[] = [];

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
      if (p.length > MAX_GLOB_LENGTH) return `"${pattern.slice(0, 40)}…" is longer than a name can be`;
      this.globs.push(new Glob(p));
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
    for (const glob of this.globs) if (glob.matches(name)) return true;
    return false;
  }
}

/** A DNS name has at most 253 characters; a longer glob is a mistake (or an attack on matching time). */
const MAX_GLOB_LENGTH = 255;

/** One position of a glob: `*` (any run of characters, empty too), or a test for one character. */
type GlobPart = { star: true } | { star: false; test: (code: number) => boolean };

/**
 * A glob (`*`, `?`, `[a-z]`, `[!0-9]`) matched against a whole name without backtracking: the
 * classic two-pointer wildcard match, which on a mismatch moves only the last `*` one character
 * on. A name of n characters against a glob of m parts takes at most (n + 1) · (m + 1) steps,
 * where a regular expression such as /^.*a.*a.*a.*b$/ tries every way of splitting the name
 * among its stars (n^k for k stars: a list entry and a long query name could stop the server).
 */
export class Glob {
  private readonly parts: GlobPart[];
  /** Steps the last `matches` took: what the test of the bound counts. */
  steps = 0;

  constructor(pattern: string) {
    this.parts = parseGlob(pattern);
  }

  get size(): number {
    return this.parts.length;
  }

  matches(name: string): boolean {
    const parts = this.parts;
    let p = 0;
    let s = 0;
    let lastStar = -1;
    let starFrom = 0;
    let steps = 0;
    while (s < name.length) {
      steps++;
      const part = parts[p];
      if (part?.star) {
        // The star takes nothing for now; a later mismatch makes it take one more character.
        lastStar = p++;
        starFrom = s;
      } else if (part && part.test(name.charCodeAt(s))) {
        p++;
        s++;
      } else if (lastStar >= 0) {
        p = lastStar + 1;
        s = ++starFrom;
      } else {
        this.steps = steps;
        return false;
      }
    }
    while (p < parts.length && parts[p]!.star) p++;
    this.steps = steps;
    return p === parts.length;
  }
}

function parseGlob(glob: string): GlobPart[] {
  const parts: GlobPart[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (!parts.at(-1)?.star) parts.push({ star: true });
    } else if (c === '?') {
      parts.push({ star: false, test: () => true });
    } else if (c === '[' && glob.indexOf(']', i + 1) > 0) {
      const close = glob.indexOf(']', i + 1);
      parts.push({ star: false, test: characterClass(glob.slice(i + 1, close)) });
      i = close;
    } else {
      const code = glob.charCodeAt(i);
      parts.push({ star: false, test: (x) => x === code });
    }
  }
  return parts;
}

/** `[abc]`, `[a-z0-9]`, `[!…]` (any character but those); `[]` matches nothing. */
function characterClass(body: string): (code: number) => boolean {
  const negated = body.startsWith('!');
  const chars = negated ? body.slice(1) : body;
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i < chars.length; i++) {
    const from = chars.charCodeAt(i);
    if (chars[i + 1] === '-' && i + 2 < chars.length) {
      ranges.push([from, chars.charCodeAt(i + 2)]);
      i += 2;
    } else ranges.push([from, from]);
  }
  return (code) => ranges.some(([from, to]) => code >= from && code <= to) !== negated;
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
