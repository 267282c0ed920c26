/**
 * dnstap's protobuf message (https://dnstap.info, dnstap.proto), encoded with protobufjs: a
 * well-kept library (the one OpenTelemetry and gRPC use in Node) that builds its encoder from
 * the schema below, so Veil holds no hand-written protobuf wire code. Only the fields Veil
 * fills are declared; their numbers are dnstap.proto's. Loaded only when a block says `dnstap`.
 */
import protobuf from 'protobufjs';

const SCHEMA = {
  nested: {
    dnstap: {
      nested: {
        Dnstap: {
          fields: {
            identity: { type: 'bytes', id: 1 },
            version: { type: 'bytes', id: 2 },
            message: { type: 'Message', id: 14 },
            type: { type: 'uint32', id: 15 },
          },
        },
        Message: {
          fields: {
            type: { type: 'uint32', id: 1 },
            socketFamily: { type: 'uint32', id: 2 },
            socketProtocol: { type: 'uint32', id: 3 },
            queryAddress: { type: 'bytes', id: 4 },
            responseAddress: { type: 'bytes', id: 5 },
            queryPort: { type: 'uint32', id: 6 },
            responsePort: { type: 'uint32', id: 7 },
            queryTimeSec: { type: 'uint64', id: 8 },
            queryTimeNsec: { type: 'fixed32', id: 9 },
            queryMessage: { type: 'bytes', id: 10 },
            responseTimeSec: { type: 'uint64', id: 12 },
            responseTimeNsec: { type: 'fixed32', id: 13 },
            responseMessage: { type: 'bytes', id: 14 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(SCHEMA);
const DnstapType = root.lookupType('dnstap.Dnstap');

/** Dnstap.Type: the only kind there is. */
const DNSTAP_MESSAGE = 1;

export const MessageType = {
  CLIENT_QUERY: 5,
  CLIENT_RESPONSE: 6,
  FORWARDER_QUERY: 7,
  FORWARDER_RESPONSE: 8,
} as const;

export const SocketFamily = { INET: 1, INET6: 2 } as const;
export const SocketProtocol = { UDP: 1, TCP: 2, DOT: 3, DOH: 4, DNSCryptUDP: 5, DNSCryptTCP: 6 } as const;

export interface DnstapEvent {
  type: number;
  family?: number;
  protocol?: number;
  queryAddress?: Buffer;
  queryPort?: number;
  responseAddress?: Buffer;
  responsePort?: number;
  /** Unix milliseconds (fractional). */
  queryTime?: number;
  responseTime?: number;
  queryMessage?: Buffer;
  responseMessage?: Buffer;
}

export interface DnstapIdentity {
  identity?: Buffer;
  version?: Buffer;
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function nanos(ms: number): number {
  return Math.min(999_999_999, Math.round((ms - seconds(ms) * 1000) * 1e6));
}

/** One Dnstap protobuf, ready to go in a data frame. */
export function encodeDnstap(event: DnstapEvent, who: DnstapIdentity): Uint8Array {
  const message: Record<string, unknown> = { type: event.type };
  if (event.family !== undefined) message.socketFamily = event.family;
  if (event.protocol !== undefined) message.socketProtocol = event.protocol;
  if (event.queryAddress) message.queryAddress = event.queryAddress;
  if (event.queryPort !== undefined) message.queryPort = event.queryPort;
  if (event.responseAddress) message.responseAddress = event.responseAddress;
  if (event.responsePort !== undefined) message.responsePort = event.responsePort;
  if (event.queryTime !== undefined) {
    message.queryTimeSec = seconds(event.queryTime);
    message.queryTimeNsec = nanos(event.queryTime);
  }
  if (event.responseTime !== undefined) {
    message.responseTimeSec = seconds(event.responseTime);
    message.responseTimeNsec = nanos(event.responseTime);
  }
  if (event.queryMessage) message.queryMessage = event.queryMessage;
  if (event.responseMessage) message.responseMessage = event.responseMessage;
  return DnstapType.encode({ ...who, type: DNSTAP_MESSAGE, message }).finish();
}

/** Decodes a Dnstap protobuf (for tests and fuzzing). */
export function decodeDnstap(bytes: Uint8Array): Record<string, any> {
  return DnstapType.toObject(DnstapType.decode(bytes), { longs: Number, bytes: Buffer }) as Record<string, any>;
}
