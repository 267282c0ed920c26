/**
 * Reads a classic pcap file (what `tcpdump -w` writes) into IPv4/IPv6 TCP and UDP packets with
 * their times, ports and payloads: enough to check what crossed an interface, or when (the
 * bench's hop timings), not a general decoder.
 */
import { readFileSync } from 'node:fs';

export interface CapturedPacket {
  protocol: 'tcp' | 'udp';
  /** When the kernel handed it to the capture, in microseconds. */
  at: number;
  srcPort: number;
  dstPort: number;
  /** What the capture kept of the payload (tcpdump's `-s` cuts it short). */
  payload: Buffer;
  /** The payload's whole length, from the IP and transport headers. */
  length: number;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;

export function readPcap(file: string): CapturedPacket[] {
  const data = readFileSync(file);
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && data.readUInt32BE(0) !== 0xa1b2c3d4 && data.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${file} is not a pcap file`);
  const u32 = (at: number) => (le ? data.readUInt32LE(at) : data.readUInt32BE(at));
  const nanoseconds = u32(0) === 0xa1b23c4d;
  const linkType = u32(20);
  const packets: CapturedPacket[] = [];
  for (let pos = 24; pos + 16 <= data.length; ) {
    const at = u32(pos) * 1e6 + (nanoseconds ? u32(pos + 4) / 1000 : u32(pos + 4));
    const length = u32(pos + 8);
    const frame = data.subarray(pos + 16, pos + 16 + length);
    pos += 16 + length;
    let ip: Buffer;
    let etherType: number;
    if (linkType === LINKTYPE_ETHERNET) {
      etherType = frame.readUInt16BE(12);
      ip = frame.subarray(14);
    } else if (linkType === LINKTYPE_LINUX_SLL) {
      etherType = frame.readUInt16BE(14);
      ip = frame.subarray(16);
    } else {
      throw new Error(`link type ${linkType} is not read here`);
    }
    let protocol: number;
    let transport: Buffer;
    /** The transport segment's whole length, as the IP header gives it. */
    let carried: number;
    if (etherType === 0x0800) {
      protocol = ip[9]!;
      carried = ip.readUInt16BE(2) - (ip[0]! & 0x0f) * 4;
      transport = ip.subarray((ip[0]! & 0x0f) * 4, ip.readUInt16BE(2));
    } else if (etherType === 0x86dd) {
      protocol = ip[6]!;
      carried = ip.readUInt16BE(4);
      transport = ip.subarray(40, 40 + carried);
    } else {
      continue;
    }
    if (protocol === 17 && transport.length >= 8) {
      packets.push({ protocol: 'udp', at, srcPort: transport.readUInt16BE(0), dstPort: transport.readUInt16BE(2), payload: transport.subarray(8), length: carried - 8 });
    } else if (protocol === 6 && transport.length >= 20) {
      const header = (transport[12]! >> 4) * 4;
      packets.push({ protocol: 'tcp', at, srcPort: transport.readUInt16BE(0), dstPort: transport.readUInt16BE(2), payload: transport.subarray(header), length: carried - header });
    }
  }
  return packets;
}
