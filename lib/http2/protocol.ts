/**
 * RFC 9113's numbers, for both ends of a connection: connection.ts (the server's) and
 * client-connection.ts (the DoH and ODoH client's) read them from here.
 */
import { Buffer } from 'node:buffer';

/** What a client sends first, before its SETTINGS (§3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Frame types (§6). */
export const enum Frame {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}

/** Frame flags; ACK shares END_STREAM's bit on the frames that carry it (SETTINGS, PING). */
export const enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}

/** Error codes (§7). */
export const enum H2Error {
  NO_ERROR = 0x0,
  PROTOCOL_ERROR = 0x1,
  INTERNAL_ERROR = 0x2,
  FLOW_CONTROL_ERROR = 0x3,
  STREAM_CLOSED = 0x5,
  FRAME_SIZE_ERROR = 0x6,
  REFUSED_STREAM = 0x7,
  CANCEL = 0x8,
  COMPRESSION_ERROR = 0x9,
  ENHANCE_YOUR_CALM = 0xb,
}

/** SETTINGS identifiers (§6.5.2) that either end reads or sends. */
export const enum Setting {
  HEADER_TABLE_SIZE = 0x1,
  ENABLE_PUSH = 0x2,
  MAX_CONCURRENT_STREAMS = 0x3,
  INITIAL_WINDOW_SIZE = 0x4,
  MAX_FRAME_SIZE = 0x5,
  MAX_HEADER_LIST_SIZE = 0x6,
}

/** Every frame starts with 9 bytes: length (24 bits), type, flags, stream (31 bits). */
export const FRAME_HEADER = 9;
/** The frame size both ends must accept, and the one we keep to (SETTINGS_MAX_FRAME_SIZE's initial value). */
export const MAX_FRAME_SIZE = 16_384;
/** A window's initial size, for the connection and each stream (§6.9.2). */
export const DEFAULT_WINDOW = 65_535;
/** The largest a flow-control window may grow (§6.9.1). */
export const MAX_WINDOW = 2 ** 31 - 1;
