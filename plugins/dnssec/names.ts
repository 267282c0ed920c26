/**
 * Domain names in wire form, as DNSSEC needs them: uncompressed, lower-cased (RFC 4034 §6.2),
 * compared in canonical order (RFC 4034 §6.1) label by label from the right. A name here is a
 * Buffer holding length-prefixed labels ending with the root's zero byte.
 */
import { Buffer } from 'node:buffer';
import { WireError } from '../../core/dns/wire.js';

export type WireName = Buffer;

export const ROOT: WireName = Buffer.from([0]);

const MAX_NAME_LENGTH = 255;
const MAX_POINTER_JUMPS = 64;

/**
 * Reads the (possibly compressed) name at `offset` of `msg` into uncompressed wire form, case
 * kept. Pointers must point backwards, jumps are bounded and the name may not exceed 255 bytes.
 */
export function readWireName(msg: Buffer, offset: number): { name: WireName; end: number } {
  const parts: number[] = [];
  let pos = offset;
  let end = -1;
  let jumps = 0;
  for (;;) {
    if (pos >= msg.length) throw new WireError('name runs past the end of the message');
    const len = msg[pos]!;
    if (len === 0) {
      parts.push(0);
      if (end < 0) end = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= msg.length) throw new WireError('truncated compression pointer');
      const target = ((len & 0x3f) << 8) | msg[pos + 1]!;
      if (target >= pos) throw new WireError('compression pointer does not point backwards');
      if (++jumps > MAX_POINTER_JUMPS) throw new WireError('too many compression pointers');
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) throw new WireError(`unsupported label type 0x${kind.toString(16)}`);
    if (pos + 1 + len > msg.length) throw new WireError('label runs past the end of the message');
    if (parts.length + len + 2 > MAX_NAME_LENGTH) throw new WireError('name longer than 255 bytes');
    for (let i = pos; i <= pos + len; i++) parts.push(msg[i]!);
    pos += len + 1;
  }
  return { name: Buffer.from(parts), end };
}

/** A copy with ASCII letters lower-cased (RFC 4343: only those fold). */
export function lowerName(name: WireName): WireName {
  const out = Buffer.from(name);
  let pos = 0;
  while (pos < out.length && out[pos] !== 0) {
    const len = out[pos]!;
    for (let i = pos + 1; i <= pos + len; i++) {
      const c = out[i]!;
      if (c >= 0x41 && c <= 0x5a) out[i] = c | 0x20;
    }
    pos += len + 1;
  }
  return out;
}

/** Offsets of each label's length byte, leftmost first (the root's zero byte not included). */
function labelOffsets(name: WireName): number[] {
  const offsets: number[] = [];
  let pos = 0;
  while (pos < name.length && name[pos] !== 0) {
    offsets.push(pos);
    pos += name[pos]! + 1;
  }
  return offsets;
}

/** Labels in the name, the root not counted: `www.example.` has 2. */
export function labelCount(name: WireName): number {
  let count = 0;
  let pos = 0;
  while (pos < name.length && name[pos] !== 0) {
    count++;
    pos += name[pos]! + 1;
  }
  return count;
}

/** The name made of its last `count` labels (`count` 0 is the root). */
export function suffixName(name: WireName, count: number): WireName {
  const offsets = labelOffsets(name);
  if (count >= offsets.length) return name;
  if (count <= 0) return ROOT;
  return name.subarray(offsets[offsets.length - count]!);
}

/** The name one label up; the root's parent is the root. */
export function parentName(name: WireName): WireName {
  if (name.length <= 1) return ROOT;
  return name.subarray(name[0]! + 1);
}

/** `*.` + name: the wildcard that would answer below `name`. */
export function wildcardOf(name: WireName): WireName {
  return Buffer.concat([Buffer.from([1, 0x2a]), name]);
}

/** True when the leftmost label is `*`. */
export function isWildcard(name: WireName): boolean {
  return name.length >= 2 && name[0] === 1 && name[1] === 0x2a;
}

/** Both lower-case: true when `name` is `zone` or lies below it. */
export function isAtOrBelow(name: WireName, zone: WireName): boolean {
  if (zone.length > name.length) return false;
  const start = name.length - zone.length;
  if (!name.subarray(start).equals(zone)) return false;
  if (start === 0) return true;
  // the suffix must begin on a label boundary
  let pos = 0;
  while (pos < start) pos += name[pos]! + 1;
  return pos === start;
}

/** Both lower-case: true when `name` lies strictly below `zone`. */
export function isBelow(name: WireName, zone: WireName): boolean {
  return name.length > zone.length && isAtOrBelow(name, zone);
}

/**
 * RFC 4034 §6.1 canonical order of two lower-case names: compare label by label from the
 * rightmost, each label as an unsigned octet string (a shorter label that is a prefix of a
 * longer one sorts first); a name sorts before its descendants.
 */
export function compareNames(a: WireName, b: WireName): number {
  const la = labelOffsets(a);
  const lb = labelOffsets(b);
  let i = la.length - 1;
  let j = lb.length - 1;
  for (; i >= 0 && j >= 0; i--, j--) {
    const pa = la[i]!;
    const pb = lb[j]!;
    const c = Buffer.compare(a.subarray(pa + 1, pa + 1 + a[pa]!), b.subarray(pb + 1, pb + 1 + b[pb]!));
    if (c !== 0) return c;
  }
  return la.length - lb.length;
}

/** The longest name both are at or below (both lower-case). */
export function commonAncestor(a: WireName, b: WireName): WireName {
  const na = labelCount(a);
  const nb = labelCount(b);
  for (let n = Math.min(na, nb); n > 0; n--) {
    const sa = suffixName(a, n);
    if (sa.equals(suffixName(b, n))) return sa;
  }
  return ROOT;
}

/** Presentation form for logs and map keys: `www.example.`, the root `.`. */
export function nameText(name: WireName): string {
  if (name.length <= 1) return '.';
  let out = '';
  let pos = 0;
  while (pos < name.length && name[pos] !== 0) {
    const len = name[pos]!;
    for (let i = pos + 1; i <= pos + len; i++) {
      const c = name[i]!;
      if (c === 0x2e || c === 0x5c) out += '\\' + String.fromCharCode(c);
      else if (c <= 0x20 || c >= 0x7f) out += '\\' + String(c).padStart(3, '0');
      else out += String.fromCharCode(c);
    }
    out += '.';
    pos += len + 1;
  }
  return out;
}
