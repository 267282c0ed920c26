/**
 * The UDP datagrams of a capture file as tcpdump writes it (`-w`: the classic pcap format, its
 * byte order and microsecond or nanosecond stamps), for the bench's hop timings. Only what the
 * bench captures is read: IPv4 over loopback's Ethernet framing or Linux's cooked captures.
 */
import { readFileSync } from 'node:fs';

export interface CapturedDatagram {
  /** When the kernel handed it to the capture, in microseconds. */
  at: number;
  sourcePort: number;
  destinationPort: number;
  /** What the capture kept of the payload (tcpdump's `-s` cuts it short). */
  payload: Buffer;
  /** The payload's whole length, from the UDP header. */
  length: number;
}

const LINK_ETHERNET = 1;
const LINK_LINUX_SLL = 113;
const LINK_LINUX_SLL2 = 276;
const LINK_HEADER: Record<number, number> = { [LINK_ETHERNET]: 14, [LINK_LINUX_SLL]: 16, [LINK_LINUX_SLL2]: 20 };
const UDP = 17;

export function readUdpCapture(file: string): CapturedDatagram[] {
  const data = readFileSync(file);
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const littleEndian = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!littleEndian && data.readUInt32BE(0) !== 0xa1b2c3d4 && data.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${file}: not a pcap file`);
  const u32 = (at: number) => (littleEndian ? data.readUInt32LE(at) : data.readUInt32BE(at));
  const nanoseconds = (littleEndian ? magic : data.readUInt32BE(0)) === 0xa1b23c4d;
  const linkHeader = LINK_HEADER[u32(20) & 0xffff];
  if (linkHeader === undefined) throw new Error(`${file}: link type ${u32(20) & 0xffff} is not one the bench reads`);
  const out: CapturedDatagram[] = [];
  for (let record = 24; record + 16 <= data.length; ) {
    const at = u32(record) * 1e6 + (nanoseconds ? u32(record + 4) / 1000 : u32(record + 4));
    const start = record + 16;
    const end = Math.min(data.length, start + u32(record + 8));
    record = end;
    const ip = start + linkHeader;
    if (ip + 20 > end || data[ip]! >> 4 !== 4 || data[ip + 9] !== UDP) continue;
    const udp = ip + (data[ip]! & 0x0f) * 4;
    if (udp + 8 > end) continue;
    out.push({ at, sourcePort: data.readUInt16BE(udp), destinationPort: data.readUInt16BE(udp + 2), payload: data.subarray(udp + 8, end), length: data.readUInt16BE(udp + 4) - 8 });
  }
  return out;
}
