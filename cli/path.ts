/**
 * The path query's answer (plugins/path): TXT strings `key=value` in the CHAOS class, read
 * back into facts, and said in sentences for `veil query --path` and `veil doctor`.
 */
import { QClass, QType } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { forEachRecord } from '../core/dns/wire.js';

/** The path query for `name`: TXT in the CHAOS class, with EDNS as most clients send it. */
export function buildPathQuery(name: string, id: number): Buffer {
  return buildQuery(name, QType.TXT, { id, qclass: QClass.CH, edns: true });
}

/** The `key=value` strings of the CH TXT records in the answer section; the first of each key wins. */
export function parsePathAnswer(answer: Buffer): Record<string, string> {
  const facts: Record<string, string> = {};
  forEachRecord(answer, (record) => {
    if (record.section !== 0 || record.type !== QType.TXT || answer.readUInt16BE(record.fixed + 2) !== QClass.CH) return;
    const end = record.rdataStart + record.rdataLength;
    let pos = record.rdataStart;
    while (pos < end) {
      const length = answer[pos]!;
      const text = answer.toString('utf8', pos + 1, Math.min(pos + 1 + length, end));
      pos += 1 + length;
      const eq = text.indexOf('=');
      if (eq > 0 && !Object.hasOwn(facts, text.slice(0, eq))) facts[text.slice(0, eq)] = text.slice(eq + 1);
    }
  });
  return facts;
}

/** The facts, in sentences, one a line. */
export function describePath(name: string, facts: Record<string, string>): string[] {
  const lines = [`your query came in on  ${facts.listener ?? '?'} (${facts.transport ?? '?'}) from ${facts.client ?? '?'}`, `server block           ${facts.block ?? '?'}`];
  if (facts.canary !== undefined) {
    lines.push(
      facts.canary === 'seen'
        ? `canary ${name}  seen ${facts.seen_ago} ago, over ${facts.seen_transport} on ${facts.seen_listener} from ${facts.seen_client}`
        : `canary ${name}  not seen by this Veil`,
    );
    return lines;
  }
  lines.push(`resolved               ${facts.query ?? name}`);
  if (facts.error) lines.push(`failed                 ${facts.error}`);
  const by = facts.answered_by ?? 'none';
  if (by === 'cache') lines.push('answered by            the cache (nothing left Veil)');
  else if (by === 'upstream' || facts.upstream) {
    lines.push(`answered by            upstream ${facts.upstream} (${facts.protocol}${facts.address ? ` ${facts.address}` : ''})`);
    lines.push(`through relay          ${facts.relay === 'none' ? 'none (direct)' : facts.relay}`);
    const sealed = facts.encrypted === 'yes' ? `encrypted${facts.padded === 'yes' ? ' and padded' : ', not padded'}` : 'IN PLAINTEXT';
    lines.push(`left Veil              ${sealed}; client subnet ${facts.client_subnet ?? 'removed'}${facts.attempts && facts.attempts !== '1' ? ` (attempt ${facts.attempts})` : ''}`);
  } else if (by !== 'none') lines.push(`answered by            ${by} (nothing left Veil)`);
  else if (facts.left_veil === 'tried') lines.push(`answered by            nobody (${facts.attempts} upstream attempt(s) failed)`);
  if (facts.blocked_by) lines.push(`blocked by             ${facts.blocked_by}`);
  if (facts.rcode) lines.push(`answer                 ${facts.rcode}`);
  if (facts.upstreams) lines.push(`upstreams for it       ${facts.upstreams}`);
  return lines;
}
