/**
 * Trust anchors: the DS or DNSKEY records validation starts from. Built in: the root zone's
 * KSK-2017 (20326) and KSK-2024 (38696), as IANA publishes them. A file holds records in zone
 * file form, one per line (parentheses may join lines), as unbound's and BIND's anchor files do:
 *
 *     example.  IN DS 31589 8 1 ( 3490A6806D47F17A34C29E2CE80E8A999FFBE4BE )
 *     example.  3600 IN DNSKEY 257 3 13 kXKk...==
 */
import { Buffer } from 'node:buffer';
import { encodeName, WireError } from '../../core/dns/wire.js';
import { readDnskey, type Dnskey, type Ds } from './crypto.js';
import { lowerName, nameText, type WireName } from './names.js';

export interface TrustAnchor {
  zone: WireName;
  ds: Ds[];
  keys: Dnskey[];
}

export const ROOT_ANCHOR_TEXT = `; IANA root-anchors.xml: KSK-2017 and KSK-2024
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
`;

/** A problem in an anchor file, with its line number. */
export class AnchorError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

/** Reads anchor records into `into` (several files may add to one map, keyed by zone). */
export function parseAnchors(text: string, into = new Map<string, TrustAnchor>()): Map<string, TrustAnchor> {
  const lines = text.split('\n');
  let pending = '';
  let pendingLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i]!);
    if (!pending && !line.trim()) continue;
    if (!pending) pendingLine = i + 1;
    pending += ' ' + line;
    const open = (pending.match(/\(/g) ?? []).length;
    const close = (pending.match(/\)/g) ?? []).length;
    if (open > close) continue;
    addRecord(pending.replace(/[()]/g, ' ').trim().split(/\s+/), pendingLine, into);
    pending = '';
  }
  if (pending) throw new AnchorError(pendingLine, 'unclosed parenthesis');
  return into;
}

function stripComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') quoted = !quoted;
    if (line[i] === ';' && !quoted) return line.slice(0, i);
  }
  return line;
}

function addRecord(words: string[], line: number, into: Map<string, TrustAnchor>): void {
  const [ownerText, ...rest] = words;
  let owner: WireName;
  try {
    owner = lowerName(encodeName(ownerText!));
  } catch (err) {
    if (err instanceof WireError) throw new AnchorError(line, `"${ownerText}" is not a domain name`);
    throw err;
  }
  // optional TTL and class, in either order
  while (rest.length > 0 && (/^\d+$/.test(rest[0]!) || /^(IN|CH|HS)$/i.test(rest[0]!))) rest.shift();
  const type = rest.shift()?.toUpperCase();
  const key = nameText(owner);
  const anchor = into.get(key) ?? { zone: owner, ds: [], keys: [] };
  if (type === 'DS') {
    const [tag, algorithm, digestType, ...hex] = rest;
    const digest = hex.join('');
    if (!/^\d+$/.test(tag ?? '') || !/^\d+$/.test(algorithm ?? '') || !/^\d+$/.test(digestType ?? '') || !/^([0-9a-fA-F]{2})+$/.test(digest)) {
      throw new AnchorError(line, 'a DS record is "NAME DS KEYTAG ALGORITHM DIGESTTYPE HEXDIGEST"');
    }
    anchor.ds.push({ keyTag: Number(tag), algorithm: Number(algorithm), digestType: Number(digestType), digest: Buffer.from(digest, 'hex') });
  } else if (type === 'DNSKEY') {
    const [flags, protocol, algorithm, ...b64] = rest;
    const data = b64.join('');
    if (!/^\d+$/.test(flags ?? '') || !/^\d+$/.test(protocol ?? '') || !/^\d+$/.test(algorithm ?? '') || !/^[A-Za-z0-9+/]+=*$/.test(data)) {
      throw new AnchorError(line, 'a DNSKEY record is "NAME DNSKEY FLAGS PROTOCOL ALGORITHM BASE64KEY"');
    }
    const rdata = Buffer.concat([Buffer.from([Number(flags) >> 8, Number(flags) & 0xff, Number(protocol), Number(algorithm)]), Buffer.from(data, 'base64')]);
    anchor.keys.push(readDnskey(rdata)!);
  } else {
    throw new AnchorError(line, `expected a DS or DNSKEY record, found ${type ? `"${type}"` : 'nothing'}`);
  }
  into.set(key, anchor);
}
