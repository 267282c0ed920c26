/**
 * `shuffle_answers`: CoreDNS's loadbalance, on the wire. Each A or AAAA RRset of the answer
 * section is rotated one place further for every answer, so that clients taking the first
 * address spread over all of them. Only the record data moves (4 or 16 bytes, in place): owner
 * names, TTLs and every byte offset stay where they were, so compression pointers stay valid.
 */
import { Buffer } from 'node:buffer';
import { QType } from '../../core/dns/constants.js';
import { forEachRecord, readName, WireError, type RecordPosition } from '../../core/dns/wire.js';

/** Rotates each A/AAAA RRset of `msg`'s answer section by `turn` places. Malformed: unchanged. */
export function rotateAddresses(msg: Buffer, turn: number): void {
  let run: RecordPosition[] = [];
  let runOwner = '';
  const flush = (): void => {
    if (run.length > 1) rotate(msg, run, turn % run.length);
    run = [];
  };
  try {
    forEachRecord(msg, (rr) => {
      if (rr.section !== 0) return false;
      if ((rr.type !== QType.A && rr.type !== QType.AAAA) || rr.rdataLength !== (rr.type === QType.A ? 4 : 16)) {
        flush();
        return;
      }
      const owner = readName(msg, rr.start).name.toLowerCase();
      const previous = run[run.length - 1];
      if (previous && (previous.type !== rr.type || owner !== runOwner || msg.readUInt16BE(previous.fixed + 2) !== msg.readUInt16BE(rr.fixed + 2))) flush();
      runOwner = owner;
      run.push(rr);
    });
  } catch (err) {
    if (err instanceof WireError) return;
    throw err;
  }
  flush();
}

function rotate(msg: Buffer, records: RecordPosition[], by: number): void {
  if (by === 0) return;
  const data = records.map((rr) => Buffer.from(msg.subarray(rr.rdataStart, rr.rdataStart + rr.rdataLength)));
  records.forEach((rr, i) => data[(i + by) % records.length]!.copy(msg, rr.rdataStart));
}
