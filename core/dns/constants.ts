/** Numeric DNS constants and their presentation names (RFC 1035, 6891, IANA registries). */

export const HEADER_SIZE = 12;
/** The largest DNS message a 16-bit TCP length prefix can carry. */
export const MAX_MESSAGE_SIZE = 65535;
/** What a client without EDNS(0) can receive over UDP (RFC 1035 §4.2.1). */
export const CLASSIC_UDP_SIZE = 512;
/** Sizes below 512 in an OPT record are treated as 512 (RFC 6891 §6.2.5). */
export const MIN_EDNS_UDP_SIZE = 512;
/** The payload size Veil advertises itself: the DNS Flag Day 2020 value, safe from fragmentation. */
export const DEFAULT_EDNS_UDP_SIZE = 1232;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended rcode 16 (needs an OPT record): unsupported EDNS version. */
  BADVERS: 16,
} as const;

export const Opcode = { QUERY: 0 } as const;

export const QType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  HTTPS: 65,
  ANY: 255,
} as const;

export const QClass = { IN: 1, CH: 3, ANY: 255 } as const;

export const EdnsOption = { ECS: 8, COOKIE: 10, PADDING: 12, EDE: 15 } as const;

const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 13: 'HINFO', 15: 'MX', 16: 'TXT', 17: 'RP',
  18: 'AFSDB', 24: 'SIG', 25: 'KEY', 28: 'AAAA', 29: 'LOC', 33: 'SRV', 35: 'NAPTR', 36: 'KX',
  37: 'CERT', 39: 'DNAME', 41: 'OPT', 42: 'APL', 43: 'DS', 44: 'SSHFP', 45: 'IPSECKEY', 46: 'RRSIG',
  47: 'NSEC', 48: 'DNSKEY', 49: 'DHCID', 50: 'NSEC3', 51: 'NSEC3PARAM', 52: 'TLSA', 53: 'SMIMEA',
  55: 'HIP', 59: 'CDS', 60: 'CDNSKEY', 61: 'OPENPGPKEY', 62: 'CSYNC', 63: 'ZONEMD', 64: 'SVCB',
  65: 'HTTPS', 99: 'SPF', 108: 'EUI48', 109: 'EUI64', 249: 'TKEY', 250: 'TSIG', 251: 'IXFR',
  252: 'AXFR', 255: 'ANY', 256: 'URI', 257: 'CAA',
};
const TYPE_NUMBERS: Record<string, number> = Object.fromEntries(
  Object.entries(TYPE_NAMES).map(([n, name]) => [name, Number(n)]),
);

const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED',
  6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE', 16: 'BADVERS',
};

/** `A`, `AAAA`, … or RFC 3597's `TYPE123` for types without a mnemonic. */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** The number for a type mnemonic or `TYPE123`; undefined when neither. Case-insensitive. */
export function typeNumber(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = TYPE_NUMBERS[upper];
  if (known !== undefined) return known;
  const generic = /^TYPE(\d{1,5})$/.exec(upper);
  if (generic && Number(generic[1]) <= 0xffff) return Number(generic[1]);
  return undefined;
}

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

export function className(qclass: number): string {
  return qclass === 1 ? 'IN' : qclass === 3 ? 'CH' : qclass === 4 ? 'HS' : qclass === 255 ? 'ANY' : `CLASS${qclass}`;
}
